//! The service's state: topics and subscriptions in memory over `sns.db`, and
//! every operation that changes them. Each change is one SQLite transaction
//! (`synchronous=FULL`) before the answer; a publish commits its message and one
//! outbox row per matching subscription together, so an acknowledged publish is
//! on disk with all of its deliveries.

use crate::model::*;
use crate::sign::Signer;
use nimbus_triggers::sinks::Sinks;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped: AtomicU64,
    /// Deliveries put back by a `throttlePolicy`.
    pub throttled: AtomicU64,
}

pub(crate) struct Inner {
    pub conn: Connection,
    pub topics: BTreeMap<String, Topic>,
    pub subs: BTreeMap<String, Subscription>,
}

/// SNS.
pub struct Sns {
    pub region: String,
    pub account: String,
    pub endpoint: String,
    pub(crate) inner: Mutex<Inner>,
    /// Wakes the outbox drain.
    pub notify: Notify,
    pub sinks: Arc<Sinks>,
    pub signer: Signer,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    /// `throttlePolicy` pacing of HTTP/S subscriptions, by subscription ARN.
    pub(crate) pacing: Mutex<HashMap<String, Pace>>,
}

/// One throttled subscription's schedule (microseconds since the epoch): the
/// next free delivery slot, and how far deliveries put back have been spread out.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pace {
    next_us: i64,
    horizon_us: i64,
}

/// What [`Sns::pace`] decides for one delivery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// Send after waiting this long (less than [`PACE_WINDOW_US`]).
    Wait(std::time::Duration),
    /// Put the delivery back until this time (ms), without counting an attempt.
    Later(i64),
}

impl Sns {
    /// Reserve a delivery slot for subscription `arn` limited to `per_second`
    /// deliveries a second: a slot within [`PACE_WINDOW_US`] is taken (the caller
    /// waits for it); beyond that the delivery is put back until shortly before
    /// its turn, each one a slot further, so a backlog is not re-read at every
    /// wake-up and slow subscriptions do not hold the delivery tasks.
    pub(crate) fn pace(&self, arn: &str, per_second: u32, now_us: i64) -> Pacing {
        let mut m = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(arn.to_string())
            .or_default()
            .take(per_second, now_us)
    }
}

/// How far ahead a delivery may wait for its slot while holding a delivery task.
const PACE_WINDOW_US: i64 = 250_000;

impl Pace {
    fn take(&mut self, per_second: u32, now_us: i64) -> Pacing {
        let interval = 1_000_000 / i64::from(per_second.max(1));
        let slot = self.next_us.max(now_us);
        if slot - now_us < PACE_WINDOW_US {
            self.next_us = slot + interval;
            return Pacing::Wait(std::time::Duration::from_micros((slot - now_us) as u64));
        }
        self.horizon_us = self.horizon_us.max(slot) + interval;
        Pacing::Later((self.horizon_us - PACE_WINDOW_US) / 1000)
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    #[test]
    fn slots_are_spaced_and_a_backlog_is_spread_out() {
        let mut p = Pace::default();
        let t0 = 1_000_000_000;
        // 10 a second: the first three fit in the 250 ms window, 100 ms apart.
        let waits: Vec<Pacing> = (0..3).map(|_| p.take(10, t0)).collect();
        assert_eq!(
            waits,
            [0, 100, 200].map(|ms| Pacing::Wait(std::time::Duration::from_millis(ms)))
        );
        // The rest go back, each one slot later than the one before.
        let later: Vec<i64> = (0..3)
            .map(|_| match p.take(10, t0) {
                Pacing::Later(at) => at,
                w => panic!("{w:?}"),
            })
            .collect();
        assert!(later.windows(2).all(|w| w[1] - w[0] == 100), "{later:?}");
        // Come back at its time: a slot is free within the window again.
        let back = later[0] * 1000;
        assert!(matches!(p.take(10, back), Pacing::Wait(_)));
    }
}

/// One message's outcome in a publish: its id and, on a FIFO topic, its
/// sequence number.
pub type Published = Result<(String, Option<String>), AwsError>;

/// What a `Publish` carries.
#[derive(Debug, Clone, Default)]
pub struct PublishInput {
    pub message: String,
    pub subject: Option<String>,
    pub structure_json: bool,
    pub attributes: BTreeMap<String, Attr>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn timestamp() -> String {
    nimbus_protocol::timestamp::format_iso8601(time::OffsetDateTime::now_utc())
}

pub(crate) fn json_map(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn parse_map(s: &str) -> BTreeMap<String, String> {
    serde_json::from_str(s).unwrap_or_default()
}

const TOPIC_ATTRS: &[&str] = &[
    "DeliveryPolicy",
    "DisplayName",
    "Policy",
    "KmsMasterKeyId",
    "SignatureVersion",
    "TracingConfig",
    "ContentBasedDeduplication",
    "ArchivePolicy",
    "DataProtectionPolicy",
    "FifoThroughputScope",
];

fn is_feedback_attr(name: &str) -> bool {
    ["Application", "Firehose", "HTTP", "Lambda", "SQS"]
        .iter()
        .any(|p| {
            name.strip_prefix(p).is_some_and(|r| {
                matches!(
                    r,
                    "SuccessFeedbackRoleArn"
                        | "SuccessFeedbackSampleRate"
                        | "FailureFeedbackRoleArn"
                )
            })
        })
}

const SUB_ATTRS: &[&str] = &[
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "SubscriptionRoleArn",
    "ReplayPolicy",
];

const PROTOCOLS: &[&str] = &[
    "http",
    "https",
    "email",
    "email-json",
    "sms",
    "sqs",
    "application",
    "lambda",
    "firehose",
];

fn random_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    let c = uuid::Uuid::new_v4().simple().to_string();
    format!("2336412f37fb687f5d51e6e2425{a}{b}{c}")
}

impl Sns {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Load the state from an opened database.
    pub(crate) fn load(conn: Connection) -> rusqlite::Result<Inner> {
        let mut topics = BTreeMap::new();
        {
            let mut st = conn.prepare("SELECT arn, name, attrs, tags FROM topics")?;
            let rows = st.query_map([], |r| {
                Ok(Topic {
                    arn: r.get(0)?,
                    name: r.get(1)?,
                    attrs: parse_map(&r.get::<_, String>(2)?),
                    tags: parse_map(&r.get::<_, String>(3)?),
                })
            })?;
            for t in rows {
                let t = t?;
                topics.insert(t.arn.clone(), t);
            }
        }
        let mut subs = BTreeMap::new();
        {
            let mut st = conn.prepare(
                "SELECT arn, topic_arn, protocol, endpoint, owner, attrs, confirmed, token FROM subscriptions",
            )?;
            let rows = st.query_map([], |r| {
                Ok(Subscription {
                    arn: r.get(0)?,
                    topic_arn: r.get(1)?,
                    protocol: r.get(2)?,
                    endpoint: r.get(3)?,
                    owner: r.get(4)?,
                    attrs: parse_map(&r.get::<_, String>(5)?),
                    confirmed: r.get::<_, i64>(6)? != 0,
                    token: r.get(7)?,
                    filter: None,
                })
            })?;
            for s in rows {
                let mut s = s?;
                s.filter = s
                    .attrs
                    .get("FilterPolicy")
                    .and_then(|p| compile_filter_policy(p, s.body_scope()).ok().map(Arc::new));
                subs.insert(s.arn.clone(), s);
            }
        }
        Ok(Inner { conn, topics, subs })
    }

    pub fn topic_arn(&self, name: &str) -> String {
        format!("arn:aws:sns:{}:{}:{name}", self.region, self.account)
    }

    pub fn cert_url(&self) -> String {
        format!(
            "{}/_nimbus/services/sns/public/SimpleNotificationService-nimbus.pem",
            self.endpoint
        )
    }

    pub fn unsubscribe_url(&self, sub_arn: &str) -> String {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("SubscriptionArn", sub_arn)
            .finish();
        format!(
            "{}/_nimbus/services/sns/public/unsubscribe?{q}",
            self.endpoint
        )
    }

    pub fn subscribe_url(&self, topic_arn: &str, token: &str) -> String {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("TopicArn", topic_arn)
            .append_pair("Token", token)
            .finish();
        format!("{}/_nimbus/services/sns/public/confirm?{q}", self.endpoint)
    }

    fn topic<'a>(inner: &'a Inner, arn: &str) -> Result<&'a Topic, AwsError> {
        inner
            .topics
            .get(arn)
            .ok_or_else(|| not_found("Topic does not exist"))
    }

    // -- topics ---------------------------------------------------------------

    pub fn create_topic(
        &self,
        name: &str,
        attrs: BTreeMap<String, String>,
        tags: Vec<(String, String)>,
    ) -> Result<String, AwsError> {
        let fifo = match attrs.get("FifoTopic").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(invalid_parameter(
                    "Invalid parameter: Attributes Reason: FifoTopic: Invalid value. Valid values: true, false",
                ))
            }
        };
        if !valid_topic_name(name, fifo) {
            let reason = if fifo || name.ends_with(".fifo") {
                "Invalid parameter: Topic Name Reason: FIFO topic names must end with .fifo and FifoTopic must be true"
            } else {
                "Invalid parameter: Topic Name"
            };
            return Err(invalid_parameter(reason));
        }
        let mut stored = BTreeMap::new();
        for (k, v) in &attrs {
            if k == "FifoTopic" {
                if fifo {
                    stored.insert(k.clone(), v.clone());
                }
                continue;
            }
            validate_topic_attr(k, v, fifo)?;
            stored.insert(k.clone(), v.clone());
        }
        validate_tags(&tags)?;
        let arn = self.topic_arn(name);
        let mut inner = self.lock();
        if let Some(t) = inner.topics.get(&arn) {
            let same = attrs.iter().all(|(k, v)| {
                t.attrs
                    .get(k)
                    .map(String::as_str)
                    .unwrap_or(if k == "FifoTopic" { "false" } else { "" })
                    == v
            });
            if !same {
                return Err(invalid_parameter(
                    "Invalid parameter: Attributes Reason: Topic already exists with different attributes",
                ));
            }
            let same_tags = tags.iter().all(|(k, v)| t.tags.get(k) == Some(v));
            if !tags.is_empty() && !same_tags {
                return Err(invalid_parameter(
                    "Invalid parameter: Tags Reason: Topic already exists with different tags",
                ));
            }
            return Ok(arn);
        }
        let tags: BTreeMap<String, String> = tags.into_iter().collect();
        inner
            .conn
            .execute(
                "INSERT INTO topics(arn, name, attrs, tags) VALUES (?1, ?2, ?3, ?4)",
                params![arn, name, json_map(&stored), json_map(&tags)],
            )
            .map_err(internal)?;
        inner.topics.insert(
            arn.clone(),
            Topic {
                arn: arn.clone(),
                name: name.to_string(),
                attrs: stored,
                tags,
            },
        );
        tracing::info!(topic = %arn, fifo, "topic created");
        Ok(arn)
    }

    pub fn delete_topic(&self, arn: &str) -> Result<(), AwsError> {
        let mut inner = self.lock();
        if !inner.topics.contains_key(arn) {
            // DeleteTopic of a missing topic succeeds (idempotent), as in AWS.
            return Ok(());
        }
        let tx = inner.conn.transaction().map_err(internal)?;
        tx.execute("DELETE FROM topics WHERE arn = ?1", [arn])
            .map_err(internal)?;
        tx.execute("DELETE FROM subscriptions WHERE topic_arn = ?1", [arn])
            .map_err(internal)?;
        tx.execute("DELETE FROM dedup WHERE topic_arn = ?1", [arn])
            .map_err(internal)?;
        tx.commit().map_err(internal)?;
        inner.topics.remove(arn);
        inner.subs.retain(|_, s| s.topic_arn != arn);
        tracing::info!(topic = %arn, "topic deleted");
        Ok(())
    }

    pub fn list_topics(
        &self,
        next: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), AwsError> {
        let inner = self.lock();
        page(inner.topics.keys().cloned().collect(), next, 100)
    }

    pub fn topic_attributes(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let inner = self.lock();
        let t = Self::topic(&inner, arn)?;
        let mut out = t.attrs.clone();
        out.insert("TopicArn".into(), arn.to_string());
        out.insert("Owner".into(), self.account.clone());
        out.entry("Policy".into())
            .or_insert_with(|| default_policy(arn, &self.account));
        out.entry("DisplayName".into()).or_default();
        out.entry("SignatureVersion".into())
            .or_insert_with(|| "1".into());
        let (mut confirmed, mut pending) = (0, 0);
        for s in inner.subs.values().filter(|s| s.topic_arn == arn) {
            if s.confirmed {
                confirmed += 1
            } else {
                pending += 1
            }
        }
        out.insert("SubscriptionsConfirmed".into(), confirmed.to_string());
        out.insert("SubscriptionsPending".into(), pending.to_string());
        out.insert("SubscriptionsDeleted".into(), "0".into());
        out.insert(
            "EffectiveDeliveryPolicy".into(),
            effective_delivery_policy(t.attrs.get("DeliveryPolicy")),
        );
        if t.fifo() {
            out.entry("ContentBasedDeduplication".into())
                .or_insert_with(|| "false".into());
        }
        Ok(out)
    }

    pub fn set_topic_attribute(&self, arn: &str, name: &str, value: &str) -> Result<(), AwsError> {
        let mut inner = self.lock();
        let t = Self::topic(&inner, arn)?;
        if name == "FifoTopic" {
            return Err(invalid_parameter(
                "Invalid parameter: AttributeName Reason: FifoTopic can only be set when the topic is created",
            ));
        }
        validate_topic_attr(name, value, t.fifo())?;
        let mut attrs = t.attrs.clone();
        if value.is_empty() && name != "DisplayName" {
            attrs.remove(name);
        } else {
            attrs.insert(name.to_string(), value.to_string());
        }
        inner
            .conn
            .execute(
                "UPDATE topics SET attrs = ?2 WHERE arn = ?1",
                params![arn, json_map(&attrs)],
            )
            .map_err(internal)?;
        if let Some(t) = inner.topics.get_mut(arn) {
            t.attrs = attrs;
        }
        Ok(())
    }

    /// `AddPermission` (`add`: accounts and actions) or `RemovePermission`
    /// (`add`: `None`): edit the statement `label` of the topic's `Policy`.
    pub fn edit_permission(
        &self,
        arn: &str,
        label: &str,
        add: Option<(&[String], &[String])>,
    ) -> Result<(), AwsError> {
        let current = self
            .topic_attributes(arn)?
            .remove("Policy")
            .unwrap_or_else(|| default_policy(arn, &self.account));
        let mut policy: Value = serde_json::from_str(&current).unwrap_or_else(|_| {
            serde_json::from_str(&default_policy(arn, &self.account)).unwrap_or_default()
        });
        let Some(statements) = policy.get_mut("Statement").and_then(Value::as_array_mut) else {
            return Err(invalid_parameter("Invalid parameter: Policy"));
        };
        let exists = statements
            .iter()
            .any(|st| st.get("Sid").and_then(Value::as_str) == Some(label));
        match add {
            Some((accounts, actions)) => {
                if exists {
                    return Err(invalid_parameter(
                        "Invalid parameter: Statement already exists",
                    ));
                }
                if accounts.is_empty() || actions.is_empty() {
                    return Err(invalid_parameter(
                        "Invalid parameter: AWSAccountId and ActionName are required",
                    ));
                }
                let principals: Vec<String> = accounts
                    .iter()
                    .map(|a| format!("arn:aws:iam::{a}:root"))
                    .collect();
                let actions: Vec<String> = actions.iter().map(|a| format!("SNS:{a}")).collect();
                statements.push(serde_json::json!({
                    "Sid": label,
                    "Effect": "Allow",
                    "Principal": {"AWS": principals},
                    "Action": actions,
                    "Resource": arn,
                }));
            }
            None => {
                if !exists {
                    return Err(not_found("Label does not exist"));
                }
                statements.retain(|st| st.get("Sid").and_then(Value::as_str) != Some(label));
            }
        }
        self.set_topic_attribute(arn, "Policy", &policy.to_string())
    }

    // -- tags -----------------------------------------------------------------

    fn tag_target<'a>(inner: &'a Inner, arn: &str) -> Result<&'a Topic, AwsError> {
        inner.topics.get(arn).ok_or_else(|| {
            AwsError::new(
                http::StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "Resource does not exist",
            )
        })
    }

    pub fn tag(&self, arn: &str, tags: Vec<(String, String)>) -> Result<(), AwsError> {
        validate_tags(&tags)?;
        let mut inner = self.lock();
        let mut all = Self::tag_target(&inner, arn)?.tags.clone();
        all.extend(tags);
        if all.len() > 50 {
            return Err(AwsError::new(
                http::StatusCode::BAD_REQUEST,
                "TagLimitExceeded",
                "Could not complete request: tag quota of per resource exceeded",
            ));
        }
        self.store_tags(&mut inner, arn, all)
    }

    pub fn untag(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        let mut inner = self.lock();
        let mut all = Self::tag_target(&inner, arn)?.tags.clone();
        for k in keys {
            all.remove(k);
        }
        self.store_tags(&mut inner, arn, all)
    }

    fn store_tags(
        &self,
        inner: &mut Inner,
        arn: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        inner
            .conn
            .execute(
                "UPDATE topics SET tags = ?2 WHERE arn = ?1",
                params![arn, json_map(&tags)],
            )
            .map_err(internal)?;
        if let Some(t) = inner.topics.get_mut(arn) {
            t.tags = tags;
        }
        Ok(())
    }

    pub fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let inner = self.lock();
        Ok(Self::tag_target(&inner, arn)?.tags.clone())
    }

    // -- subscriptions --------------------------------------------------------

    pub fn subscribe(
        &self,
        topic_arn: &str,
        protocol: &str,
        endpoint: Option<&str>,
        attrs: BTreeMap<String, String>,
    ) -> Result<(String, bool), AwsError> {
        if !PROTOCOLS.contains(&protocol) {
            return Err(invalid_parameter(format!(
                "Invalid parameter: Amazon SNS does not support this protocol string: {protocol}"
            )));
        }
        let endpoint = endpoint.unwrap_or("");
        validate_endpoint(protocol, endpoint)?;
        for (k, v) in &attrs {
            validate_sub_attr(protocol, k, v, &attrs)?;
        }
        let mut inner = self.lock();
        let topic = Self::topic(&inner, topic_arn)?.clone();
        if let Some(existing) = inner
            .subs
            .values()
            .find(|s| s.topic_arn == topic_arn && s.protocol == protocol && s.endpoint == endpoint)
        {
            let same = attrs.iter().all(|(k, v)| existing.attrs.get(k) == Some(v));
            if !same {
                return Err(invalid_parameter(
                    "Invalid parameter: Attributes Reason: Subscription already exists with different attributes",
                ));
            }
            return Ok((existing.arn.clone(), existing.confirmed));
        }
        let arn = format!("{topic_arn}:{}", uuid::Uuid::new_v4());
        let needs_confirmation = matches!(protocol, "http" | "https" | "email" | "email-json");
        let token = needs_confirmation.then(random_token);
        let filter = match attrs.get("FilterPolicy") {
            Some(p) => Some(Arc::new(compile_filter_policy(
                p,
                attrs
                    .get("FilterPolicyScope")
                    .is_some_and(|s| s == "MessageBody"),
            )?)),
            None => None,
        };
        let mut stored = attrs.clone();
        if stored.contains_key("FilterPolicy") {
            stored
                .entry("FilterPolicyScope".into())
                .or_insert_with(|| "MessageAttributes".into());
        }
        let sub = Subscription {
            arn: arn.clone(),
            topic_arn: topic_arn.to_string(),
            protocol: protocol.to_string(),
            endpoint: endpoint.to_string(),
            owner: self.account.clone(),
            attrs: stored,
            confirmed: !needs_confirmation,
            token: token.clone(),
            filter,
        };
        let tx = inner.conn.transaction().map_err(internal)?;
        tx.execute(
            "INSERT INTO subscriptions(arn, topic_arn, protocol, endpoint, owner, attrs, confirmed, token)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                arn,
                topic_arn,
                protocol,
                endpoint,
                self.account,
                json_map(&sub.attrs),
                !needs_confirmation as i64,
                token
            ],
        )
        .map_err(internal)?;
        if let Some(token) = &token {
            let msg = StoredMessage {
                message_id: uuid::Uuid::new_v4().to_string(),
                topic_arn: topic_arn.to_string(),
                kind: "SubscriptionConfirmation".into(),
                message: format!(
                    "You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
                ),
                subject: None,
                structure_json: false,
                attributes: BTreeMap::new(),
                timestamp: timestamp(),
                group_id: None,
                dedup_id: None,
                sequence_number: None,
                token: Some(token.clone()),
                subscribe_url: Some(self.subscribe_url(topic_arn, token)),
                signature_version: topic.signature_version().to_string(),
            };
            insert_message(&tx, &msg, &[(&arn, None)]).map_err(internal)?;
        }
        tx.commit().map_err(internal)?;
        inner.subs.insert(arn.clone(), sub);
        drop(inner);
        if needs_confirmation {
            self.notify.notify_one();
        }
        tracing::info!(subscription = %arn, protocol, "subscribed");
        Ok((arn, !needs_confirmation))
    }

    pub fn confirm(&self, topic_arn: &str, token: &str) -> Result<String, AwsError> {
        let mut inner = self.lock();
        Self::topic(&inner, topic_arn)?;
        let Some(sub) = inner
            .subs
            .values()
            .find(|s| s.topic_arn == topic_arn && s.token.as_deref() == Some(token))
            .cloned()
        else {
            return Err(invalid_parameter("Invalid parameter: Token"));
        };
        if !sub.confirmed {
            inner
                .conn
                .execute(
                    "UPDATE subscriptions SET confirmed = 1 WHERE arn = ?1",
                    [&sub.arn],
                )
                .map_err(internal)?;
            if let Some(s) = inner.subs.get_mut(&sub.arn) {
                s.confirmed = true;
            }
            tracing::info!(subscription = %sub.arn, "subscription confirmed");
        }
        Ok(sub.arn)
    }

    pub fn unsubscribe(&self, arn: &str) -> Result<(), AwsError> {
        let mut inner = self.lock();
        if !inner.subs.contains_key(arn) {
            return Err(not_found("Subscription does not exist"));
        }
        inner
            .conn
            .execute("DELETE FROM subscriptions WHERE arn = ?1", [arn])
            .map_err(internal)?;
        inner.subs.remove(arn);
        tracing::info!(subscription = %arn, "unsubscribed");
        Ok(())
    }

    pub fn list_subscriptions(
        &self,
        topic: Option<&str>,
        next: Option<&str>,
    ) -> Result<(Vec<Subscription>, Option<String>), AwsError> {
        let inner = self.lock();
        if let Some(t) = topic {
            Self::topic(&inner, t)?;
        }
        let keys: Vec<String> = inner
            .subs
            .values()
            .filter(|s| topic.is_none_or(|t| s.topic_arn == t))
            .map(|s| s.arn.clone())
            .collect();
        let (keys, next) = page(keys, next, 100)?;
        Ok((
            keys.iter()
                .filter_map(|k| inner.subs.get(k).cloned())
                .collect(),
            next,
        ))
    }

    pub fn subscription(&self, arn: &str) -> Option<Subscription> {
        self.lock().subs.get(arn).cloned()
    }

    pub fn subscription_attributes(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let inner = self.lock();
        let s = inner
            .subs
            .get(arn)
            .ok_or_else(|| not_found("Subscription does not exist"))?;
        let mut out = s.attrs.clone();
        out.insert("SubscriptionArn".into(), s.arn.clone());
        out.insert("TopicArn".into(), s.topic_arn.clone());
        out.insert("Owner".into(), s.owner.clone());
        out.insert("Protocol".into(), s.protocol.clone());
        out.insert("Endpoint".into(), s.endpoint.clone());
        out.insert("PendingConfirmation".into(), (!s.confirmed).to_string());
        out.insert("ConfirmationWasAuthenticated".into(), "true".into());
        out.entry("RawMessageDelivery".into())
            .or_insert_with(|| "false".into());
        if matches!(s.protocol.as_str(), "http" | "https") {
            let topic_policy = inner
                .topics
                .get(&s.topic_arn)
                .and_then(|t| t.attrs.get("DeliveryPolicy").cloned());
            let p = HttpPolicy::effective(
                s.attrs.get("DeliveryPolicy").map(String::as_str),
                topic_policy.as_deref(),
            );
            out.insert(
                "EffectiveDeliveryPolicy".into(),
                p.to_subscription_json().to_string(),
            );
        }
        Ok(out)
    }

    pub fn set_subscription_attribute(
        &self,
        arn: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        let mut inner = self.lock();
        let s = inner
            .subs
            .get(arn)
            .ok_or_else(|| not_found("Subscription does not exist"))?
            .clone();
        let mut attrs = s.attrs.clone();
        if value.is_empty() && matches!(name, "FilterPolicy" | "RedrivePolicy" | "DeliveryPolicy") {
            attrs.remove(name);
        } else {
            validate_sub_attr(&s.protocol, name, value, &attrs)?;
            attrs.insert(name.to_string(), value.to_string());
        }
        if attrs.contains_key("FilterPolicy") {
            attrs
                .entry("FilterPolicyScope".into())
                .or_insert_with(|| "MessageAttributes".into());
        } else {
            attrs.remove("FilterPolicyScope");
        }
        let filter = match attrs.get("FilterPolicy") {
            Some(p) => Some(Arc::new(compile_filter_policy(
                p,
                attrs
                    .get("FilterPolicyScope")
                    .is_some_and(|s| s == "MessageBody"),
            )?)),
            None => None,
        };
        inner
            .conn
            .execute(
                "UPDATE subscriptions SET attrs = ?2 WHERE arn = ?1",
                params![arn, json_map(&attrs)],
            )
            .map_err(internal)?;
        if let Some(s) = inner.subs.get_mut(arn) {
            s.attrs = attrs;
            s.filter = filter;
        }
        Ok(())
    }

    // -- publish --------------------------------------------------------------

    /// Validate a message the way `Publish` does (shared with `PublishBatch`).
    pub fn validate_publish(&self, topic: &Topic, p: &PublishInput) -> Result<(), AwsError> {
        if p.message.is_empty() {
            return Err(invalid_parameter("Invalid parameter: Empty message"));
        }
        if message_size(&p.message, &p.attributes) > MAX_MESSAGE_BYTES {
            return Err(invalid_parameter("Invalid parameter: Message too long"));
        }
        if let Some(s) = &p.subject {
            if s.is_empty()
                || s.len() > 100
                || !s.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
            {
                return Err(invalid_parameter("Invalid parameter: Subject"));
            }
        }
        validate_attributes(&p.attributes)?;
        if p.structure_json {
            match serde_json::from_str::<Value>(&p.message) {
                Ok(Value::Object(m)) => {
                    if !m.contains_key("default") {
                        return Err(invalid_parameter(
                            "Invalid parameter: Message Structure - No default entry in JSON message body",
                        ));
                    }
                }
                _ => {
                    return Err(invalid_parameter(
                        "Invalid parameter: Message Structure - JSON message body failed to parse",
                    ))
                }
            }
        }
        if topic.fifo() {
            if p.group_id.is_none() {
                return Err(invalid_parameter(
                    "Invalid parameter: The MessageGroupId parameter is required for FIFO topics",
                ));
            }
            if p.dedup_id.is_none() && !topic.content_dedup() {
                return Err(invalid_parameter(
                    "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
            for (what, v) in [
                ("MessageGroupId", &p.group_id),
                ("MessageDeduplicationId", &p.dedup_id),
            ] {
                if let Some(v) = v {
                    if v.is_empty() || v.len() > 128 || !v.chars().all(|c| c.is_ascii_graphic()) {
                        return Err(invalid_parameter(format!(
                            "Invalid parameter: {what} Reason: {what} can contain up to 128 alphanumeric and punctuation characters"
                        )));
                    }
                }
            }
        } else {
            if p.dedup_id.is_some() {
                return Err(invalid_parameter(
                    "Invalid parameter: MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type",
                ));
            }
            if p.group_id.is_some() {
                return Err(invalid_parameter(
                    "Invalid parameter: MessageGroupId Reason: The request includes MessageGroupId parameter that is not valid for this topic type",
                ));
            }
        }
        Ok(())
    }

    /// Publish to a topic: validated, then committed with its outbox rows.
    /// Returns the message id and, on a FIFO topic, its sequence number.
    pub fn publish(
        &self,
        topic_arn: &str,
        p: PublishInput,
    ) -> Result<(String, Option<String>), AwsError> {
        let out = self.publish_many(topic_arn, vec![p])?;
        out.into_iter()
            .next()
            .unwrap_or_else(|| Err(internal("no result")))
    }

    /// Publish several validated-or-not messages to one topic in one
    /// transaction (one fsync for the whole batch); per-message results.
    pub fn publish_many(
        &self,
        topic_arn: &str,
        inputs: Vec<PublishInput>,
    ) -> Result<Vec<Published>, AwsError> {
        let mut inner = self.lock();
        let topic = Self::topic(&inner, topic_arn)?.clone();
        let subs: Vec<Subscription> = inner
            .subs
            .values()
            .filter(|s| s.topic_arn == topic_arn && s.confirmed)
            .cloned()
            .collect();
        let now = now_ms();
        let tx = inner.conn.transaction().map_err(internal)?;
        let mut results = Vec::with_capacity(inputs.len());
        let mut any = false;
        for p in inputs {
            if let Err(e) = self.validate_publish(&topic, &p) {
                results.push(Err(e));
                continue;
            }
            let mut msg = StoredMessage {
                message_id: uuid::Uuid::new_v4().to_string(),
                topic_arn: topic_arn.to_string(),
                kind: "Notification".into(),
                message: p.message,
                subject: p.subject,
                structure_json: p.structure_json,
                attributes: p.attributes,
                timestamp: timestamp(),
                group_id: p.group_id,
                dedup_id: p.dedup_id,
                sequence_number: None,
                token: None,
                subscribe_url: None,
                signature_version: topic.signature_version().to_string(),
            };
            if topic.fifo() {
                let dedup = msg.dedup_id.clone().unwrap_or_else(|| {
                    use sha2::Digest;
                    hex_lower(&sha2::Sha256::digest(msg.message.as_bytes()))
                });
                msg.dedup_id = Some(dedup.clone());
                let seen: Option<(String, Option<String>)> = tx
                    .query_row(
                        "SELECT message_id, seq FROM dedup WHERE topic_arn = ?1 AND dedup_id = ?2 AND expires_ms > ?3",
                        params![topic_arn, dedup, now],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(internal)?;
                if let Some(prev) = seen {
                    results.push(Ok(prev));
                    continue;
                }
                tx.execute(
                    "UPDATE topics SET seq = seq + 1 WHERE arn = ?1",
                    [topic_arn],
                )
                .map_err(internal)?;
                let n: i64 = tx
                    .query_row("SELECT seq FROM topics WHERE arn = ?1", [topic_arn], |r| {
                        r.get(0)
                    })
                    .map_err(internal)?;
                let seq = format!("{:020}", 10_000_000_000_000_000i64 + n);
                msg.sequence_number = Some(seq.clone());
                tx.execute(
                    "INSERT OR REPLACE INTO dedup(topic_arn, dedup_id, message_id, seq, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![topic_arn, dedup, msg.message_id, seq, now + 5 * 60 * 1000],
                )
                .map_err(internal)?;
            }
            let targets: Vec<(&str, Option<String>)> = subs
                .iter()
                .filter(|s| s.accepts(&msg))
                .map(|s| {
                    let group = msg.group_id.as_ref().map(|g| format!("{}\n{g}", s.arn));
                    (s.arn.as_str(), group)
                })
                .collect();
            if !targets.is_empty() {
                let refs: Vec<(&str, Option<&str>)> =
                    targets.iter().map(|(a, g)| (*a, g.as_deref())).collect();
                insert_message(&tx, &msg, &refs).map_err(internal)?;
                any = true;
            }
            tracing::debug!(topic = %topic_arn, message_id = %msg.message_id, deliveries = targets.len(), "published");
            results.push(Ok((msg.message_id, msg.sequence_number)));
        }
        if topic.fifo() {
            tx.execute("DELETE FROM dedup WHERE expires_ms <= ?1", [now])
                .map_err(internal)?;
        }
        tx.commit().map_err(internal)?;
        drop(inner);
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.metrics.published.fetch_add(ok, Ordering::Relaxed);
        if any {
            self.notify.notify_one();
        }
        Ok(results)
    }

    /// `Publish` with a `PhoneNumber`: recorded for inspection, unless the
    /// number opted out.
    pub fn record_sms(&self, phone: &str, message: &str) -> Result<String, AwsError> {
        let valid = phone.starts_with('+')
            && phone.len() >= 8
            && phone.len() <= 16
            && phone[1..].chars().all(|c| c.is_ascii_digit());
        if !valid {
            return Err(invalid_parameter(
                "Invalid parameter: PhoneNumber Reason: input incorrectly formatted",
            ));
        }
        if message.is_empty() {
            return Err(invalid_parameter("Invalid parameter: Empty message"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        // An opted-out number is not sent to; the publish still succeeds (AWS).
        if self.opted_out(phone).map_err(internal)? {
            tracing::info!(message_id = %id, "SMS not sent: the number opted out");
            return Ok(id);
        }
        self.record("sms", phone, "", "", &id, message)
            .map_err(internal)?;
        Ok(id)
    }

    pub fn record(
        &self,
        protocol: &str,
        endpoint: &str,
        sub_arn: &str,
        topic_arn: &str,
        message_id: &str,
        body: &str,
    ) -> rusqlite::Result<()> {
        self.lock().conn.execute(
            "INSERT INTO recorded(protocol, endpoint, sub_arn, topic_arn, message_id, body, at_ms) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![protocol, endpoint, sub_arn, topic_arn, message_id, body, now_ms()],
        )?;
        Ok(())
    }

    pub fn topic_snapshot(&self, arn: &str) -> Option<Topic> {
        self.lock().topics.get(arn).cloned()
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Insert a message and its outbox rows (in the caller's transaction).
pub(crate) fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    msg: &StoredMessage,
    targets: &[(&str, Option<&str>)],
) -> rusqlite::Result<()> {
    let body = serde_json::to_string(msg).unwrap_or_default();
    tx.execute(
        "INSERT INTO messages(id, body) VALUES (?1, ?2)",
        params![msg.message_id, body],
    )?;
    let now = now_ms();
    let mut st = tx.prepare_cached(
        "INSERT INTO outbox(sub_arn, message_id, due_ms, group_key) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (sub, group) in targets {
        st.execute(params![sub, msg.message_id, now, group])?;
    }
    Ok(())
}

pub(crate) fn page(
    keys: Vec<String>,
    next: Option<&str>,
    size: usize,
) -> Result<(Vec<String>, Option<String>), AwsError> {
    let start = match next {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= keys.len())
            .ok_or_else(|| invalid_parameter("Invalid parameter: NextToken"))?,
    };
    let end = (start + size).min(keys.len());
    let next = (end < keys.len()).then(|| end.to_string());
    Ok((keys[start..end].to_vec(), next))
}

fn default_policy(arn: &str, account: &str) -> String {
    serde_json::json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission",
                       "SNS:RemovePermission", "SNS:DeleteTopic", "SNS:Subscribe",
                       "SNS:ListSubscriptionsByTopic", "SNS:Publish"],
            "Resource": arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account}}
        }]
    })
    .to_string()
}

fn effective_delivery_policy(topic: Option<&String>) -> String {
    let h = HttpPolicy::effective(None, topic.map(String::as_str));
    let disable = topic
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| {
            v.pointer("/http/disableSubscriptionOverrides")
                .and_then(|b| b.as_bool())
        })
        .unwrap_or(false);
    let p = &h.retry;
    let mut v = serde_json::json!({
        "http": {
            "defaultHealthyRetryPolicy": {
                "minDelayTarget": p.min_delay, "maxDelayTarget": p.max_delay,
                "numRetries": p.num_retries, "numMaxDelayRetries": p.max_delay_retries,
                "numNoDelayRetries": p.no_delay, "numMinDelayRetries": p.min_delay_retries,
                "backoffFunction": format!("{:?}", p.backoff).to_lowercase()
            },
            "disableSubscriptionOverrides": disable,
            "defaultRequestPolicy": {"headerContentType": h.content_type}
        }
    });
    if let Some(n) = h.max_per_second {
        v["http"]["defaultThrottlePolicy"] = serde_json::json!({ "maxReceivesPerSecond": n });
    }
    v.to_string()
}

fn validate_tags(tags: &[(String, String)]) -> Result<(), AwsError> {
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            return Err(invalid_parameter(format!(
                "Invalid parameter: Tags Reason: invalid tag key or value: {k}"
            )));
        }
    }
    if tags.len() > 50 {
        return Err(AwsError::new(
            http::StatusCode::BAD_REQUEST,
            "TagLimitExceeded",
            "Could not complete request: tag quota of per resource exceeded",
        ));
    }
    Ok(())
}

fn validate_topic_attr(name: &str, value: &str, fifo: bool) -> Result<(), AwsError> {
    if !TOPIC_ATTRS.contains(&name) && !is_feedback_attr(name) {
        return Err(invalid_parameter("Invalid parameter: AttributeName"));
    }
    match name {
        "Policy" | "DataProtectionPolicy" | "ArchivePolicy"
            if !value.is_empty()
                && !serde_json::from_str::<Value>(value).is_ok_and(|v| v.is_object()) =>
        {
            return Err(invalid_parameter(format!(
                "Invalid parameter: {name} Error: failed to parse JSON"
            )));
        }
        "DeliveryPolicy" if !value.is_empty() => validate_delivery_policy(value)?,
        "SignatureVersion" if !matches!(value, "1" | "2") => {
            return Err(invalid_parameter(format!(
                "Invalid parameter: SignatureVersion: Invalid value [{value}]. Valid values: 1, 2"
            )))
        }
        "TracingConfig" if !matches!(value, "PassThrough" | "Active") => {
            return Err(invalid_parameter(
                "Invalid parameter: TracingConfig: Invalid value. Valid values: PassThrough, Active",
            ))
        }
        "ContentBasedDeduplication" => {
            if !fifo {
                return Err(invalid_parameter(
                    "Invalid parameter: ContentBasedDeduplication Reason: ContentBasedDeduplication can only be set for FIFO topics",
                ));
            }
            if !matches!(value, "true" | "false") {
                return Err(invalid_parameter(
                    "Invalid parameter: ContentBasedDeduplication: Invalid value. Valid values: true, false",
                ));
            }
        }
        "DisplayName" if value.len() > 100 => {
            return Err(invalid_parameter("Invalid parameter: DisplayName"))
        }
        _ => {}
    }
    Ok(())
}

fn validate_endpoint(protocol: &str, endpoint: &str) -> Result<(), AwsError> {
    let arn_of = |svc: &str| {
        let p: Vec<&str> = endpoint.splitn(6, ':').collect();
        p.len() == 6 && p[0] == "arn" && p[2] == svc && !p[5].is_empty()
    };
    let ok = match protocol {
        "sqs" => arn_of("sqs"),
        "lambda" => arn_of("lambda") && endpoint.contains(":function:"),
        "firehose" => arn_of("firehose"),
        "application" => arn_of("sns"),
        "http" => endpoint.starts_with("http://") && endpoint.len() > 7,
        "https" => endpoint.starts_with("https://") && endpoint.len() > 8,
        "email" | "email-json" => {
            let (user, domain) = endpoint.split_once('@').unwrap_or(("", ""));
            !user.is_empty() && domain.contains('.') && !endpoint.contains(char::is_whitespace)
        }
        "sms" => {
            let digits = endpoint.trim_start_matches('+');
            !digits.is_empty() && digits.len() <= 15 && digits.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let what = match protocol {
        "sqs" => "Invalid parameter: SQS endpoint ARN",
        "lambda" => "Invalid parameter: Lambda endpoint ARN",
        "email" | "email-json" => "Invalid parameter: Email address",
        "sms" => "Invalid SMS endpoint: phone number is not valid",
        "http" | "https" => "Invalid parameter: Endpoint must match the specified protocol",
        _ => "Invalid parameter: Endpoint",
    };
    Err(invalid_parameter(what))
}

fn validate_sub_attr(
    protocol: &str,
    name: &str,
    value: &str,
    all: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    if !SUB_ATTRS.contains(&name) {
        return Err(invalid_parameter("Invalid parameter: AttributeName"));
    }
    match name {
        "RawMessageDelivery" => {
            if !matches!(value.to_ascii_lowercase().as_str(), "true" | "false") {
                return Err(invalid_parameter(
                    "Invalid parameter: RawMessageDelivery: Invalid value. Valid values: true, false",
                ));
            }
            if value.eq_ignore_ascii_case("true")
                && !matches!(protocol, "sqs" | "http" | "https" | "firehose")
            {
                return Err(invalid_parameter(format!(
                    "Invalid parameter: Attributes Reason: Delivery protocol [{protocol}] does not support raw message delivery."
                )));
            }
        }
        "FilterPolicyScope" => {
            if !matches!(value, "MessageAttributes" | "MessageBody") {
                return Err(invalid_parameter(
                    "Invalid parameter: Attributes Reason: FilterPolicyScope: Invalid value ["
                        .to_string()
                        + value
                        + "]. Please use either MessageBody or MessageAttributes",
                ));
            }
            if let Some(p) = all.get("FilterPolicy") {
                compile_filter_policy(p, value == "MessageBody")?;
            }
        }
        "FilterPolicy" => {
            compile_filter_policy(
                value,
                all.get("FilterPolicyScope")
                    .is_some_and(|s| s == "MessageBody"),
            )?;
        }
        "RedrivePolicy" => {
            let v: Value = serde_json::from_str(value).map_err(|_| {
                invalid_parameter("Invalid parameter: RedrivePolicy: failed to parse JSON")
            })?;
            let arn = v.get("deadLetterTargetArn").and_then(Value::as_str);
            let ok = arn.is_some_and(|a| {
                let p: Vec<&str> = a.splitn(6, ':').collect();
                p.len() == 6 && p[0] == "arn" && p[2] == "sqs" && !p[5].is_empty()
            });
            if !ok {
                return Err(invalid_parameter(
                    "Invalid parameter: RedrivePolicy: deadLetterTargetArn is invalid",
                ));
            }
        }
        "DeliveryPolicy" => {
            if !matches!(protocol, "http" | "https") {
                return Err(invalid_parameter(format!(
                    "Invalid parameter: DeliveryPolicy: Delivery protocol [{protocol}] does not support delivery policies"
                )));
            }
            validate_delivery_policy(value)?;
        }
        _ => {}
    }
    Ok(())
}

use nimbus_protocol::AwsError;

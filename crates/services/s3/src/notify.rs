//! Bucket notifications: the configuration (`Put/GetBucketNotificationConfiguration`
//! to Lambda, SQS, SNS and EventBridge, with event types and prefix/suffix
//! filters, validated for overlaps as S3 does), the event records (AWS's
//! `eventVersion` 2.1 record, and EventBridge's "Object Created"/"Object Deleted"
//! events), and the durable outbox they go through.
//!
//! A change's notifications are rows of the `outbox` table inserted in the same
//! transaction as the change itself, so an acknowledged write's notification
//! survives a crash; [`Notifier`]'s task, woken by a `Notify` on every commit that
//! queued something, delivers them in order through `ctx.sinks` and deletes each
//! row once its target has it (at least once). A transient failure keeps the row
//! and retries it with backoff; a permanent one (the target is gone) drops it.

use crate::error::{internal, S3Error};
use crate::store::{self, Bucket, Object, Store};
use crate::wire::{self, S3Request};
use crate::State;
use axum::response::Response;
use http::StatusCode;
use nimbus_protocol::S3_NAMESPACE;
use nimbus_triggers::sinks::{BusEvent, Delivery, SinkError, Sinks, TargetKind};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What changed, for the records it may produce.
#[derive(Debug, Clone)]
pub struct Change {
    /// `ObjectCreated`, `ObjectRemoved`, `ObjectTagging`.
    pub category: &'static str,
    /// `Put`, `Post`, `Copy`, `CompleteMultipartUpload`, `Delete`…
    pub name: &'static str,
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub request_id: String,
    pub principal: String,
    pub time_ms: i64,
    /// The version created (or the delete marker's) in a versioned bucket.
    pub version_id: Option<String>,
}

impl Change {
    pub fn created(name: &'static str, r: &S3Request, obj: &Object) -> Self {
        Self {
            category: "ObjectCreated",
            name,
            key: obj.key.clone(),
            size: Some(obj.size),
            etag: Some(obj.etag.clone()),
            request_id: r.request_id.clone(),
            principal: r.principal(),
            time_ms: store::now_ms(),
            version_id: None,
        }
    }

    pub fn removed(r: &S3Request, key: &str) -> Self {
        Self {
            category: "ObjectRemoved",
            name: "Delete",
            key: key.to_string(),
            size: None,
            etag: None,
            request_id: r.request_id.clone(),
            principal: r.principal(),
            time_ms: store::now_ms(),
            version_id: None,
        }
    }

    pub fn tagging(name: &'static str, r: &S3Request, key: &str) -> Self {
        Self {
            category: "ObjectTagging",
            name,
            key: key.to_string(),
            size: None,
            etag: None,
            request_id: r.request_id.clone(),
            principal: r.principal(),
            time_ms: store::now_ms(),
            version_id: None,
        }
    }

    /// The same change, describing `obj` (known only inside the transaction).
    pub fn with_object(mut self, obj: &Object) -> Self {
        self.key = obj.key.clone();
        if self.category == "ObjectCreated" {
            self.size = Some(obj.size);
            self.etag = Some(obj.etag.clone());
            self.version_id = obj.version_id.clone();
        }
        self
    }

    fn event_name(&self) -> String {
        format!("{}:{}", self.category, self.name)
    }
}

/// A bucket's notification configuration as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    pub rules: Vec<Rule>,
    /// The default bus's ARN when `EventBridgeConfiguration` is on.
    #[serde(default)]
    pub event_bridge: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// `Topic`, `Queue`, `CloudFunction`.
    pub kind: String,
    pub arn: String,
    pub events: Vec<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

impl Rule {
    fn matches(&self, event: &str, key: &str) -> bool {
        self.events.iter().any(|e| event_matches(e, event))
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }
}

/// `s3:ObjectCreated:*` matches `ObjectCreated:Put`.
fn event_matches(pattern: &str, event: &str) -> bool {
    let p = pattern.strip_prefix("s3:").unwrap_or(pattern);
    match p.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => p == event,
    }
}

/// The event types S3 takes in a configuration.
const EVENTS: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectTagging:*",
    "s3:ObjectTagging:Put",
    "s3:ObjectTagging:Delete",
    "s3:LifecycleExpiration:*",
    "s3:LifecycleExpiration:Delete",
    "s3:LifecycleExpiration:DeleteMarkerCreated",
    "s3:ObjectRestore:*",
    "s3:ObjectRestore:Post",
    "s3:ObjectRestore:Completed",
    "s3:ObjectRestore:Delete",
    "s3:ReducedRedundancyLostObject",
    "s3:Replication:*",
    "s3:ObjectAcl:Put",
    "s3:LifecycleTransition",
    "s3:IntelligentTiering",
];

/// Two event types overlap when one covers the other.
fn events_overlap(a: &str, b: &str) -> bool {
    let a = a.strip_prefix("s3:").unwrap_or(a);
    let b = b.strip_prefix("s3:").unwrap_or(b);
    let norm = |s: &str| s.strip_suffix('*').map(str::to_string);
    match (norm(a), norm(b)) {
        (Some(pa), _) if b.starts_with(&pa) => true,
        (_, Some(pb)) if a.starts_with(&pb) => true,
        _ => a == b,
    }
}

/// S3's rule: two rules with an overlapping event type may not both match one
/// key (their prefixes overlap and their suffixes overlap).
fn rules_overlap(a: &Rule, b: &Rule) -> bool {
    let ev = a
        .events
        .iter()
        .any(|x| b.events.iter().any(|y| events_overlap(x, y)));
    let p = |x: &Option<String>, y: &Option<String>| {
        let (x, y) = (x.as_deref().unwrap_or(""), y.as_deref().unwrap_or(""));
        x.starts_with(y) || y.starts_with(x)
    };
    let s = |x: &Option<String>, y: &Option<String>| {
        let (x, y) = (x.as_deref().unwrap_or(""), y.as_deref().unwrap_or(""));
        x.ends_with(y) || y.ends_with(x)
    };
    ev && p(&a.prefix, &b.prefix) && s(&a.suffix, &b.suffix)
}

/// Queue a change's notifications in the caller's transaction; whether any
/// was queued (the caller then wakes the [`Notifier`] after commit).
pub fn enqueue(tx: &Connection, bucket: &Bucket, change: Change) -> Result<bool, S3Error> {
    let Some(text) = bucket.notification.as_deref() else {
        return Ok(false);
    };
    let config: Config = serde_json::from_str(text).map_err(internal)?;
    let event = change.event_name();
    let matching: Vec<&Rule> = config
        .rules
        .iter()
        .filter(|r| r.matches(&event, &change.key))
        .collect();
    let bus = config.event_bridge.as_deref().filter(|_| {
        matches!(
            change.category,
            "ObjectCreated" | "ObjectRemoved" | "ObjectTagging"
        )
    });
    if matching.is_empty() && bus.is_none() {
        return Ok(false);
    }
    let sequencer = format!("{:016X}", store::next_counter(tx, "sequencer")?);
    for rule in matching {
        let body = json!({ "Records": [record(bucket, &change, &rule.id, &sequencer)] });
        insert(tx, "deliver", &rule.arn, &body.to_string())?;
    }
    if let Some(bus) = bus {
        let body = bus_event(bucket, &change, &sequencer);
        insert(tx, "bus", bus, &body.to_string())?;
    }
    Ok(true)
}

fn insert(tx: &Connection, kind: &str, target: &str, body: &str) -> Result<(), S3Error> {
    tx.execute(
        "INSERT INTO outbox(kind, target, body) VALUES (?1, ?2, ?3)",
        params![kind, target, body],
    )
    .map_err(internal)?;
    Ok(())
}

/// One AWS event record (eventVersion 2.1).
fn record(bucket: &Bucket, c: &Change, config_id: &str, sequencer: &str) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("key".into(), wire::url_encode(&c.key).into());
    if let Some(size) = c.size {
        object.insert("size".into(), size.into());
    }
    if let Some(etag) = &c.etag {
        object.insert("eTag".into(), etag.clone().into());
    }
    if let Some(v) = &c.version_id {
        object.insert("versionId".into(), v.clone().into());
    }
    object.insert("sequencer".into(), sequencer.into());
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": bucket.region,
        "eventTime": wire::iso8601_ms(c.time_ms),
        "eventName": c.event_name(),
        "userIdentity": { "principalId": c.principal },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": {
            "x-amz-request-id": c.request_id,
            "x-amz-id-2": c.request_id,
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": config_id,
            "bucket": {
                "name": bucket.name,
                "ownerIdentity": { "principalId": c.principal },
                "arn": format!("arn:aws:s3:::{}", bucket.name),
            },
            "object": object,
        }
    })
}

/// The EventBridge event ("Object Created" / "Object Deleted" / "Object Tags
/// Added"), as the outbox row stores it.
fn bus_event(bucket: &Bucket, c: &Change, sequencer: &str) -> serde_json::Value {
    let (detail_type, reason) = match (c.category, c.name) {
        ("ObjectCreated", "Copy") => ("Object Created", "CopyObject"),
        ("ObjectCreated", "CompleteMultipartUpload") => {
            ("Object Created", "CompleteMultipartUpload")
        }
        ("ObjectCreated", "Post") => ("Object Created", "PostObject"),
        ("ObjectCreated", _) => ("Object Created", "PutObject"),
        ("ObjectTagging", "Delete") => ("Object Tags Deleted", ""),
        ("ObjectTagging", _) => ("Object Tags Added", ""),
        ("LifecycleExpiration", _) => ("Object Deleted", "Lifecycle Expiration"),
        _ => ("Object Deleted", "DeleteObject"),
    };
    let mut object = serde_json::Map::new();
    object.insert("key".into(), c.key.clone().into());
    if let Some(size) = c.size {
        object.insert("size".into(), size.into());
    }
    if let Some(etag) = &c.etag {
        object.insert("etag".into(), etag.clone().into());
    }
    if let Some(v) = &c.version_id {
        object.insert("version-id".into(), v.clone().into());
    }
    object.insert("sequencer".into(), sequencer.into());
    let mut detail = json!({
        "version": "0",
        "bucket": { "name": bucket.name },
        "object": object,
        "request-id": c.request_id,
        "requester": c.principal,
        "source-ip-address": "127.0.0.1",
    });
    if !reason.is_empty() {
        detail["reason"] = reason.into();
    }
    if detail_type == "Object Deleted" {
        detail["deletion-type"] = if c.name == "DeleteMarkerCreated" {
            "Delete Marker Created"
        } else {
            "Permanently Deleted"
        }
        .into();
    }
    json!({
        "detail-type": detail_type,
        "detail": detail,
        "resources": [format!("arn:aws:s3:::{}", bucket.name)],
        "time": c.time_ms,
    })
}

/// The outbox's drain.
pub struct Notifier {
    wake: Arc<Notify>,
    pub delivered: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
    pub retried: Arc<AtomicU64>,
}

impl Notifier {
    /// Start draining (on the current Tokio runtime).
    pub fn start(store: Store, sinks: Arc<Sinks>) -> Self {
        let n = Self {
            wake: Arc::new(Notify::new()),
            delivered: Arc::default(),
            dropped: Arc::default(),
            retried: Arc::default(),
        };
        let task = Drain {
            store,
            sinks,
            wake: n.wake.clone(),
            delivered: n.delivered.clone(),
            dropped: n.dropped.clone(),
            retried: n.retried.clone(),
        };
        tokio::spawn(task.run());
        n
    }

    /// Something was committed to the outbox.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

struct Drain {
    store: Store,
    sinks: Arc<Sinks>,
    wake: Arc<Notify>,
    delivered: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    retried: Arc<AtomicU64>,
}

type Row = (i64, String, String, String, i64);

impl Drain {
    async fn run(self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let rows: Result<Vec<Row>, S3Error> = self
                .store
                .read(|c| {
                    let mut st = c
                        .prepare("SELECT seq, kind, target, body, attempts FROM outbox ORDER BY seq LIMIT 64")
                        .map_err(internal)?;
                    let rows = st
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                        .map_err(internal)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(internal)?;
                    Ok(rows)
                })
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if rows.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let mut blocked: Vec<String> = Vec::new();
            for (seq, kind, target, body, attempts) in rows {
                // Order per target: after one of its rows fails, its later rows wait.
                if blocked.contains(&target) {
                    continue;
                }
                match self.deliver(&kind, &target, body).await {
                    Ok(()) => {
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                        self.remove(seq).await;
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(target_arn = %target, attempts, error = %e, "s3 notification delivery failed; will retry");
                        self.retried.fetch_add(1, Ordering::Relaxed);
                        let _ = self
                            .store
                            .read(move |c| {
                                c.execute(
                                    "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?1",
                                    [seq],
                                )
                                .map_err(internal)
                            })
                            .await;
                        blocked.push(target);
                    }
                    Err(e) => {
                        tracing::warn!(target_arn = %target, error = %e, "s3 notification dropped: target refused it");
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        self.remove(seq).await;
                    }
                }
            }
            if blocked.is_empty() {
                backoff = Duration::from_millis(50);
            } else {
                // Something is failing: wait (or for new work), then try again.
                let _ = tokio::time::timeout(backoff, self.wake.notified()).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }

    async fn remove(&self, seq: i64) {
        let _ = self
            .store
            .read(move |c| {
                c.execute("DELETE FROM outbox WHERE seq = ?1", [seq])
                    .map_err(internal)
            })
            .await;
    }

    async fn deliver(&self, kind: &str, target: &str, body: String) -> Result<(), SinkError> {
        if kind == "bus" {
            let v: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| SinkError::Rejected {
                    code: "Invalid".into(),
                    message: e.to_string(),
                })?;
            let ev = BusEvent {
                source: "aws.s3".into(),
                detail_type: v["detail-type"].as_str().unwrap_or_default().to_string(),
                detail: v["detail"].to_string(),
                resources: v["resources"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                time_ms: v["time"].as_i64(),
                trace_header: None,
            };
            return self.sinks.buses()?.put_event(target, ev).await.map(|_| ());
        }
        // A function's policy decides whether this bucket may invoke it.
        let source = (TargetKind::of(target) == Some(TargetKind::Function))
            .then(|| serde_json::from_str::<serde_json::Value>(&body).ok())
            .flatten()
            .and_then(|v| {
                v["Records"][0]["s3"]["bucket"]["arn"]
                    .as_str()
                    .map(str::to_string)
            })
            .map(|bucket| nimbus_triggers::sinks::InvokeSource {
                service: "s3.amazonaws.com".into(),
                source_arn: bucket,
                source_account: nimbus_core::ACCOUNT_ID.into(),
            });
        let payload = Delivery::Json {
            body,
            source: "aws.s3".into(),
            detail_type: "S3 Event Notification".into(),
            group_id: None,
            deduplication_id: None,
            partition_key: None,
            trace_header: None,
            resources: Vec::new(),
        };
        self.sinks
            .deliver_from(target, payload, source.as_ref())
            .await
            .map(|_| ())
    }
}

// ---- the configuration operations ------------------------------------------

#[derive(Deserialize, Default)]
struct XmlConfig {
    #[serde(rename = "TopicConfiguration", default)]
    topics: Vec<XmlRule>,
    #[serde(rename = "QueueConfiguration", default)]
    queues: Vec<XmlRule>,
    #[serde(rename = "CloudFunctionConfiguration", default)]
    functions: Vec<XmlRule>,
    #[serde(rename = "EventBridgeConfiguration", default)]
    event_bridge: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct XmlRule {
    #[serde(rename = "Id", default)]
    id: Option<String>,
    #[serde(rename = "Topic", default)]
    topic: Option<String>,
    #[serde(rename = "Queue", default)]
    queue: Option<String>,
    #[serde(rename = "CloudFunction", default)]
    function: Option<String>,
    #[serde(rename = "Event", default)]
    events: Vec<String>,
    #[serde(rename = "Filter", default)]
    filter: Option<XmlFilter>,
}

#[derive(Deserialize)]
struct XmlFilter {
    #[serde(rename = "S3Key", default)]
    key: Option<XmlS3Key>,
}

#[derive(Deserialize)]
struct XmlS3Key {
    #[serde(rename = "FilterRule", default)]
    rules: Vec<XmlFilterRule>,
}

#[derive(Deserialize)]
struct XmlFilterRule {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Value", default)]
    value: String,
}

fn parse_config(body: &[u8], bus_arn: &str) -> Result<Config, S3Error> {
    let x: XmlConfig = if body.iter().all(|b| b.is_ascii_whitespace()) {
        XmlConfig::default()
    } else {
        nimbus_protocol::decode_xml(body).map_err(S3Error::from)?
    };
    let mut rules = Vec::new();
    let groups = [
        ("Topic", x.topics),
        ("Queue", x.queues),
        ("CloudFunction", x.functions),
    ];
    for (kind, list) in groups {
        for r in list {
            let arn = match kind {
                "Topic" => r.topic,
                "Queue" => r.queue,
                _ => r.function,
            }
            .ok_or_else(|| S3Error::from(nimbus_protocol::malformed_xml()))?;
            if r.events.is_empty() {
                return Err(S3Error::from(nimbus_protocol::malformed_xml()));
            }
            for e in &r.events {
                if !EVENTS.contains(&e.as_str()) {
                    return Err(S3Error::invalid_argument(
                        "The event is not supported for notifications",
                    )
                    .field("ArgumentName", "Event")
                    .field("ArgumentValue", e.clone()));
                }
            }
            let (mut prefix, mut suffix) = (None, None);
            for f in r
                .filter
                .and_then(|f| f.key)
                .map(|k| k.rules)
                .unwrap_or_default()
            {
                let slot = match f.name.to_ascii_lowercase().as_str() {
                    "prefix" => &mut prefix,
                    "suffix" => &mut suffix,
                    _ => {
                        return Err(S3Error::invalid_argument(
                            "filter rule name must be either prefix or suffix",
                        )
                        .field("ArgumentName", "FilterRule.Name")
                        .field("ArgumentValue", f.name))
                    }
                };
                if slot.is_some() {
                    return Err(S3Error::invalid_argument(
                        "Cannot specify more than one prefix rule in a filter.",
                    )
                    .field("ArgumentName", "FilterRule.Name")
                    .field("ArgumentValue", f.name));
                }
                *slot = Some(f.value);
            }
            let id =
                r.id.filter(|i| !i.is_empty())
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            rules.push(Rule {
                id,
                kind: kind.to_string(),
                arn,
                events: r.events,
                prefix,
                suffix,
            });
        }
    }
    for (i, a) in rules.iter().enumerate() {
        for b in &rules[i + 1..] {
            if rules_overlap(a, b) {
                return Err(S3Error::invalid_argument(
                    "Configuration is ambiguously defined. Cannot have overlapping suffixes in two \
                     rules if the prefixes are overlapping for the same event type.",
                )
                .field("ArgumentName", "Event")
                .field("ArgumentValue", a.events.join(",")));
            }
        }
    }
    Ok(Config {
        rules,
        event_bridge: x.event_bridge.map(|_| bus_arn.to_string()),
    })
}

pub async fn put_configuration(state: &Arc<State>, mut r: S3Request) -> Result<Response, S3Error> {
    let body = r.read_xml_body().await?;
    let region = r.region().unwrap_or(&state.region).to_string();
    let bus = format!(
        "arn:aws:events:{region}:{}:event-bus/default",
        state.account_id
    );
    let config = parse_config(&body, &bus)?;
    let skip_validation = r
        .header("x-amz-skip-destination-validation")
        .is_some_and(|v| v == "true");
    if !skip_validation {
        for rule in &config.rules {
            let ok = TargetKind::of(&rule.arn).is_some() && state.sinks.target_exists(&rule.arn);
            if !ok {
                return Err(S3Error::invalid_argument(
                    "Unable to validate the following destination configurations",
                )
                .field("ArgumentName", rule.arn.clone())
                .field(
                    "ArgumentValue",
                    "The destination does not exist or is not reachable",
                ));
            }
        }
    }
    let bucket = r.bucket.clone();
    let request_id = r.request_id.clone();
    let queued = state
        .store
        .tx(move |tx, _| {
            let b = store::require_bucket(tx, &bucket)?;
            let text = if config.rules.is_empty() && config.event_bridge.is_none() {
                None
            } else {
                Some(serde_json::to_string(&config).map_err(internal)?)
            };
            tx.execute(
                "UPDATE buckets SET notification = ?2 WHERE name = ?1",
                params![bucket, text],
            )
            .map_err(internal)?;
            // S3 sends a test event to each queue and topic it validated.
            let mut queued = false;
            for rule in config.rules.iter().filter(|r| r.kind != "CloudFunction") {
                let ev = json!({
                    "Service": "Amazon S3",
                    "Event": "s3:TestEvent",
                    "Time": wire::iso8601_ms(store::now_ms()),
                    "Bucket": b.name,
                    "RequestId": request_id,
                    "HostId": request_id,
                });
                insert(tx, "deliver", &rule.arn, &ev.to_string())?;
                queued = true;
            }
            Ok(queued)
        })
        .await?;
    if queued {
        state.notify.wake();
    }
    r.empty(StatusCode::OK)
}

pub async fn get_configuration(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    let bucket = r.bucket.clone();
    let b = state
        .store
        .read(move |c| store::require_bucket(c, &bucket))
        .await?;
    let config: Config = match b.notification.as_deref() {
        Some(t) => serde_json::from_str(t).map_err(internal)?,
        None => Config::default(),
    };
    let doc = nimbus_protocol::xml_document("NotificationConfiguration", Some(S3_NAMESPACE), |w| {
        for kind in ["Topic", "Queue", "CloudFunction"] {
            for rule in config.rules.iter().filter(|r| r.kind == kind) {
                w.nested(&format!("{kind}Configuration"), |w| {
                    w.element("Id", &rule.id);
                    w.element(kind, &rule.arn);
                    for e in &rule.events {
                        w.element("Event", e);
                    }
                    if rule.prefix.is_some() || rule.suffix.is_some() {
                        w.nested("Filter", |w| {
                            w.nested("S3Key", |w| {
                                for (name, v) in
                                    [("Prefix", &rule.prefix), ("Suffix", &rule.suffix)]
                                {
                                    if let Some(v) = v {
                                        w.nested("FilterRule", |w| {
                                            w.element("Name", name);
                                            w.element("Value", v);
                                        });
                                    }
                                }
                            });
                        });
                    }
                });
            }
        }
        if config.event_bridge.is_some() {
            w.start("EventBridgeConfiguration")
                .end("EventBridgeConfiguration");
        }
    });
    r.xml(doc)
}

/// The outbox's backlog (admin, metrics).
pub fn backlog(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> Rule {
        Rule {
            id: "x".into(),
            kind: "Queue".into(),
            arn: "a".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            prefix: prefix.map(str::to_string),
            suffix: suffix.map(str::to_string),
        }
    }

    #[test]
    fn overlapping_rules_are_told_apart_from_disjoint_ones() {
        let a = rule(&["s3:ObjectCreated:*"], Some("images/"), None);
        let b = rule(&["s3:ObjectCreated:Put"], Some("images/raw/"), Some(".jpg"));
        assert!(rules_overlap(&a, &b));
        let c = rule(&["s3:ObjectCreated:Put"], Some("docs/"), None);
        assert!(!rules_overlap(&a, &c));
        let d = rule(&["s3:ObjectRemoved:*"], Some("images/"), None);
        assert!(!rules_overlap(&a, &d));
        let e = rule(&["s3:ObjectCreated:*"], Some("images/"), Some(".png"));
        let f = rule(&["s3:ObjectCreated:*"], Some("images/"), Some(".jpg"));
        assert!(!rules_overlap(&e, &f));
    }

    #[test]
    fn events_match_wildcards() {
        assert!(event_matches("s3:ObjectCreated:*", "ObjectCreated:Put"));
        assert!(event_matches("s3:ObjectCreated:Copy", "ObjectCreated:Copy"));
        assert!(!event_matches("s3:ObjectCreated:Put", "ObjectCreated:Copy"));
        assert!(!event_matches("s3:ObjectRemoved:*", "ObjectCreated:Put"));
    }

    #[test]
    fn configurations_parse_with_filters_and_event_bridge() {
        let xml = br#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
            <QueueConfiguration><Id>q</Id><Queue>arn:aws:sqs:us-east-1:000000000000:q</Queue>
              <Event>s3:ObjectCreated:*</Event>
              <Filter><S3Key><FilterRule><Name>Prefix</Name><Value>in/</Value></FilterRule>
              <FilterRule><Name>Suffix</Name><Value>.jpg</Value></FilterRule></S3Key></Filter>
            </QueueConfiguration>
            <CloudFunctionConfiguration><CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:f</CloudFunction>
              <Event>s3:ObjectRemoved:*</Event></CloudFunctionConfiguration>
            <EventBridgeConfiguration></EventBridgeConfiguration>
            </NotificationConfiguration>"#;
        let c = parse_config(xml, "bus").unwrap();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].prefix.as_deref(), Some("in/"));
        assert_eq!(c.rules[0].suffix.as_deref(), Some(".jpg"));
        assert_eq!(c.rules[1].kind, "CloudFunction");
        assert_eq!(c.event_bridge.as_deref(), Some("bus"));
        let none = parse_config(b"<NotificationConfiguration/>", "bus").unwrap();
        assert!(none.rules.is_empty() && none.event_bridge.is_none());
        let e =
            parse_config(b"<NotificationConfiguration><QueueConfiguration>", "bus").unwrap_err();
        assert_eq!(e.0.code, "MalformedXML");
    }
}

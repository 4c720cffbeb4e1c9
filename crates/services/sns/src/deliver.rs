//! The outbox drain: delivers each `outbox` row to its subscription, at least
//! once, with the protocol's retries; a FIFO topic's rows for one subscription
//! and message group go one at a time, in order.
//!
//! One task owns the drain. It fetches due rows, starts a delivery task for each
//! (up to [`MAX_IN_FLIGHT`]), and applies finished deliveries in one transaction
//! per wake-up (delete, reschedule), so a fan-out to ten queues costs one fsync
//! for the publish and one for the ten completions. It sleeps on the service's
//! `Notify` (a publish, a subscription) or until the next retry is due.

use crate::model::*;
use crate::sign::string_to_sign;
use crate::state::{now_ms, Pacing, Sns};
use base64::Engine;
use nimbus_triggers::sinks::{Delivery, MessageAttribute, OutgoingMail, QueueMessage, SinkError};
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

pub const MAX_IN_FLIGHT: usize = 256;

struct Row {
    id: i64,
    sub_arn: String,
    attempts: u32,
    group_key: Option<String>,
    due_ms: i64,
    /// The stored message (shared by the rows of one fan-out); empty for rows
    /// already in flight, whose bodies are not read again.
    body: Arc<String>,
}

enum Outcome {
    /// Delivered, given up, or for a subscription that is gone: remove.
    Done,
    /// Try again at this time.
    Retry(i64),
    /// Not attempted (a subscription's `throttlePolicy`): due again at this time,
    /// with no attempt counted.
    Defer(i64),
}

struct Finished {
    id: i64,
    group_key: Option<String>,
    outcome: Outcome,
}

/// Run the drain until the process ends.
pub async fn run(sns: Arc<Sns>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut busy_groups: HashSet<String> = HashSet::new();
    let mut finished: Vec<Finished> = Vec::new();
    loop {
        while let Ok(f) = rx.try_recv() {
            finished.push(f);
        }
        if !finished.is_empty() {
            let batch = std::mem::take(&mut finished);
            for f in &batch {
                in_flight.remove(&f.id);
                if let Some(g) = &f.group_key {
                    busy_groups.remove(g);
                }
            }
            let s = sns.clone();
            let applied = tokio::task::spawn_blocking(move || apply(&s, &batch)).await;
            if let Ok(Err(e)) | Err(e) = applied
                .map_err(|e| e.to_string())
                .map(|r| r.map_err(|e| e.to_string()))
            {
                tracing::error!(error = %e, "sns outbox: recording deliveries failed");
            }
        }
        let mut next_due: Option<i64> = None;
        if in_flight.len() < MAX_IN_FLIGHT {
            let s = sns.clone();
            let limit = in_flight.len() + MAX_IN_FLIGHT;
            let now = now_ms();
            let skip = in_flight.clone();
            let rows = tokio::task::spawn_blocking(move || fetch(&s, now, limit, &skip))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let (rows, later) = match rows {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "sns outbox: reading the backlog failed");
                    (Vec::new(), Some(now + 1000))
                }
            };
            next_due = later;
            let mut blocked: HashSet<String> = HashSet::new();
            for row in rows {
                if in_flight.contains(&row.id) {
                    if let Some(g) = &row.group_key {
                        blocked.insert(g.clone());
                    }
                    continue;
                }
                if let Some(g) = &row.group_key {
                    // FIFO: only the oldest row of a (subscription, group) moves.
                    if busy_groups.contains(g) || !blocked.insert(g.clone()) {
                        continue;
                    }
                    if row.due_ms > now {
                        next_due = Some(next_due.map_or(row.due_ms, |n: i64| n.min(row.due_ms)));
                        continue;
                    }
                    busy_groups.insert(g.clone());
                }
                if in_flight.len() >= MAX_IN_FLIGHT {
                    next_due = Some(now);
                    break;
                }
                in_flight.insert(row.id);
                let s = sns.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let id = row.id;
                    let group_key = row.group_key.clone();
                    let outcome = deliver(&s, row).await;
                    let _ = tx.send(Finished {
                        id,
                        group_key,
                        outcome,
                    });
                });
            }
        }
        let sleep = match next_due {
            Some(t) => std::time::Duration::from_millis((t - now_ms()).clamp(0, 60_000) as u64),
            None => std::time::Duration::from_secs(60),
        };
        tokio::select! {
            _ = sns.notify.notified() => {}
            Some(f) = rx.recv() => finished.push(f),
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

type Fetched = (Vec<Row>, Option<i64>);

fn fetch(sns: &Sns, now: i64, limit: usize, in_flight: &HashSet<i64>) -> rusqlite::Result<Fetched> {
    let inner = sns.lock();
    let mut st = inner.conn.prepare_cached(
        "SELECT id, sub_arn, attempts, group_key, due_ms, message_id FROM outbox
         WHERE due_ms <= ?1 OR group_key IS NOT NULL
         ORDER BY id LIMIT ?2",
    )?;
    let listed = st
        .query_map(params![now, limit as i64], |r| {
            Ok((
                Row {
                    id: r.get(0)?,
                    sub_arn: r.get(1)?,
                    attempts: r.get::<_, i64>(2)? as u32,
                    group_key: r.get(3)?,
                    due_ms: r.get(4)?,
                    body: Arc::default(),
                },
                r.get::<_, String>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut body_of = inner
        .conn
        .prepare_cached("SELECT body FROM messages WHERE id = ?1")?;
    let mut bodies: std::collections::HashMap<String, Arc<String>> = Default::default();
    let mut rows = Vec::with_capacity(listed.len());
    for (mut row, message_id) in listed {
        if !in_flight.contains(&row.id) {
            row.body = match bodies.get(&message_id) {
                Some(b) => b.clone(),
                None => {
                    let b: Arc<String> = Arc::new(
                        body_of
                            .query_row([&message_id], |r| r.get(0))
                            .optional()?
                            .unwrap_or_default(),
                    );
                    bodies.insert(message_id, b.clone());
                    b
                }
            };
        }
        rows.push(row);
    }
    let next: Option<i64> = inner.conn.query_row(
        "SELECT MIN(due_ms) FROM outbox WHERE due_ms > ?1 AND group_key IS NULL",
        [now],
        |r| r.get(0),
    )?;
    Ok((rows, next))
}

fn apply(sns: &Sns, batch: &[Finished]) -> rusqlite::Result<()> {
    let mut inner = sns.lock();
    let tx = inner.conn.transaction()?;
    {
        let mut msg_of = tx.prepare_cached("SELECT message_id FROM outbox WHERE id = ?1")?;
        let mut del = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
        let mut del_msg = tx.prepare_cached(
            "DELETE FROM messages WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM outbox WHERE message_id = ?1)",
        )?;
        let mut retry = tx.prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, due_ms = ?2 WHERE id = ?1",
        )?;
        let mut defer = tx.prepare_cached("UPDATE outbox SET due_ms = ?2 WHERE id = ?1")?;
        for f in batch {
            match f.outcome {
                Outcome::Done => {
                    let mid: Option<String> = msg_of.query_row([f.id], |r| r.get(0)).ok();
                    del.execute([f.id])?;
                    if let Some(mid) = mid {
                        del_msg.execute([mid])?;
                    }
                }
                Outcome::Retry(at) => {
                    retry.execute(params![f.id, at])?;
                }
                Outcome::Defer(at) => {
                    defer.execute(params![f.id, at])?;
                }
            }
        }
    }
    tx.commit()
}

/// The outbox backlog (rows waiting), for admin and metrics.
pub fn backlog(sns: &Sns) -> i64 {
    sns.lock()
        .conn
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap_or(0)
}

/// When retry `n` (1-based) of a protocol without a delivery policy is due, on
/// SNS's documented schedule for it ([`RetryPolicy::managed`]); `None` once its
/// retries are spent.
fn managed_retry(protocol: &str, n: u32) -> Option<i64> {
    RetryPolicy::managed(protocol)
        .delay(n)
        .map(|d| now_ms() + i64::from(d) * 1000)
}

async fn deliver(sns: &Arc<Sns>, row: Row) -> Outcome {
    let Some(sub) = sns.subscription(&row.sub_arn) else {
        sns.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        return Outcome::Done;
    };
    let msg: StoredMessage = match serde_json::from_str(&row.body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "sns outbox: unreadable message dropped");
            return Outcome::Done;
        }
    };
    if msg.kind == "SubscriptionConfirmation" && sub.confirmed {
        return Outcome::Done;
    }
    let http_policy = matches!(sub.protocol.as_str(), "http" | "https").then(|| {
        let topic_policy = sns
            .topic_snapshot(&sub.topic_arn)
            .and_then(|t| t.attrs.get("DeliveryPolicy").cloned());
        HttpPolicy::effective(
            sub.attrs.get("DeliveryPolicy").map(String::as_str),
            topic_policy.as_deref(),
        )
    });
    if let Some(per_second) = http_policy.as_ref().and_then(|p| p.max_per_second) {
        match sns.pace(&sub.arn, per_second, now_ms() * 1000) {
            Pacing::Wait(d) => {
                if !d.is_zero() {
                    tokio::time::sleep(d).await;
                }
            }
            Pacing::Later(at) => {
                sns.metrics.throttled.fetch_add(1, Ordering::Relaxed);
                return Outcome::Defer(at);
            }
        }
    }
    let content_type = http_policy
        .as_ref()
        .map(|p| p.content_type.as_str())
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    let result = send(sns, &sub, &msg, content_type).await;
    match result {
        Ok(()) => {
            sns.metrics.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(subscription = %sub.arn, message_id = %msg.message_id, "delivered");
            Outcome::Done
        }
        Err(failure) => {
            let next_attempt = row.attempts + 1;
            let retry_at = match (&failure, sub.protocol.as_str()) {
                (Failure::Permanent(_), _) => None,
                (Failure::Transient(_), "http" | "https") => http_policy
                    .as_ref()
                    .and_then(|p| p.retry.delay(next_attempt))
                    .map(|d| now_ms() + d as i64 * 1000),
                (Failure::Transient(_), protocol) => managed_retry(protocol, next_attempt),
            };
            match retry_at {
                Some(at) => {
                    sns.metrics.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(subscription = %sub.arn, message_id = %msg.message_id, attempt = next_attempt, reason = %failure, "delivery failed; will retry");
                    Outcome::Retry(at)
                }
                None => dead_letter(sns, &sub, &msg, &failure, row.attempts).await,
            }
        }
    }
}

#[derive(Debug)]
enum Failure {
    Transient(String),
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(m) | Failure::Permanent(m) => f.write_str(m),
        }
    }
}

impl From<SinkError> for Failure {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::Transient(m) => Failure::Transient(m),
            other => Failure::Permanent(other.to_string()),
        }
    }
}

async fn dead_letter(
    sns: &Arc<Sns>,
    sub: &Subscription,
    msg: &StoredMessage,
    failure: &Failure,
    attempts: u32,
) -> Outcome {
    let Some(dlq) = sub.dead_letter_arn() else {
        sns.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(subscription = %sub.arn, message_id = %msg.message_id, reason = %failure, "delivery given up (no RedrivePolicy)");
        return Outcome::Done;
    };
    if msg.kind != "Notification" {
        return Outcome::Done;
    }
    let body = if sub.raw() {
        msg.body_for(&sub.protocol)
    } else {
        envelope(sns, sub, msg, &msg.body_for(&sub.protocol))
    };
    let qm = QueueMessage {
        body,
        attributes: if sub.raw() {
            queue_attributes(&msg.attributes)
        } else {
            BTreeMap::new()
        },
        ..Default::default()
    };
    let sent = match sns.sinks.queues() {
        Ok(q) => q.send(&dlq, qm).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {
            sns.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(subscription = %sub.arn, message_id = %msg.message_id, dead_letter = %dlq, reason = %failure, "delivery moved to the dead-letter queue");
            Outcome::Done
        }
        // The dead-letter queue is an SQS queue: SQS's schedule (then its last delay).
        Err(e) if e.is_transient() => {
            Outcome::Retry(managed_retry("sqs", attempts + 1).unwrap_or_else(|| now_ms() + 20_000))
        }
        Err(e) => {
            sns.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subscription = %sub.arn, message_id = %msg.message_id, error = %e, "dead-letter queue refused the message; dropped");
            Outcome::Done
        }
    }
}

fn queue_attributes(attrs: &BTreeMap<String, Attr>) -> BTreeMap<String, MessageAttribute> {
    attrs
        .iter()
        .map(|(k, a)| {
            let binary = a.binary_value.as_ref().and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()
                    .map(bytes::Bytes::from)
            });
            (
                k.clone(),
                MessageAttribute {
                    data_type: a.data_type.clone(),
                    string_value: a.string_value.clone(),
                    binary_value: binary,
                },
            )
        })
        .collect()
}

fn envelope_attributes(attrs: &BTreeMap<String, Attr>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, a) in attrs {
        m.insert(k.clone(), json!({"Type": a.data_type, "Value": a.value()}));
    }
    Value::Object(m)
}

/// Write an object with its keys in this order.
fn ordered(fields: &[(&str, Value)]) -> String {
    let raw: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
    ordered_raw(&raw)
}

/// [`ordered`] with values that are JSON text already.
fn ordered_raw(fields: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String((*k).to_string()).to_string());
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// The JSON document SNS delivers to SQS, HTTP(S) and email-json subscribers,
/// signed, with AWS's field order.
pub fn envelope(sns: &Sns, sub: &Subscription, msg: &StoredMessage, body: &str) -> String {
    let version = if msg.signature_version.is_empty() {
        "1"
    } else {
        msg.signature_version.as_str()
    };
    let s = |v: &str| Value::String(v.to_string());
    if msg.kind == "SubscriptionConfirmation" {
        let token = msg.token.clone().unwrap_or_default();
        let url = msg.subscribe_url.clone().unwrap_or_default();
        let text = string_to_sign(&[
            ("Type", Some("SubscriptionConfirmation")),
            ("MessageId", Some(&msg.message_id)),
            ("Token", Some(&token)),
            ("TopicArn", Some(&msg.topic_arn)),
            ("Message", Some(&msg.message)),
            ("SubscribeURL", Some(&url)),
            ("Timestamp", Some(&msg.timestamp)),
        ]);
        return ordered(&[
            ("Type", s("SubscriptionConfirmation")),
            ("MessageId", s(&msg.message_id)),
            ("Token", s(&token)),
            ("TopicArn", s(&msg.topic_arn)),
            ("Message", s(&msg.message)),
            ("SubscribeURL", s(&url)),
            ("Timestamp", s(&msg.timestamp)),
            ("SignatureVersion", s(version)),
            ("Signature", s(&sns.signer.sign(version, &text))),
            ("SigningCertURL", s(&sns.cert_url())),
        ]);
    }
    let text = string_to_sign(&[
        ("Type", Some("Notification")),
        ("MessageId", Some(&msg.message_id)),
        ("TopicArn", Some(&msg.topic_arn)),
        ("Subject", msg.subject.as_deref()),
        ("Message", Some(body)),
        ("Timestamp", Some(&msg.timestamp)),
    ]);
    let mut fields: Vec<(&str, Value)> = vec![
        ("Type", s("Notification")),
        ("MessageId", s(&msg.message_id)),
    ];
    if let Some(seq) = &msg.sequence_number {
        fields.push(("SequenceNumber", s(seq)));
    }
    fields.push(("TopicArn", s(&msg.topic_arn)));
    if let Some(subj) = &msg.subject {
        fields.push(("Subject", s(subj)));
    }
    fields.push(("Message", s(body)));
    fields.push(("Timestamp", s(&msg.timestamp)));
    fields.push(("SignatureVersion", s(version)));
    fields.push(("Signature", s(&sns.signer.sign(version, &text))));
    fields.push(("SigningCertURL", s(&sns.cert_url())));
    fields.push(("UnsubscribeURL", s(&sns.unsubscribe_url(&sub.arn))));
    if !msg.attributes.is_empty() {
        fields.push(("MessageAttributes", envelope_attributes(&msg.attributes)));
    }
    ordered(&fields)
}

/// The event a Lambda subscriber is invoked with.
pub fn lambda_event(sns: &Sns, sub: &Subscription, msg: &StoredMessage, body: &str) -> String {
    let version = if msg.signature_version.is_empty() {
        "1"
    } else {
        msg.signature_version.as_str()
    };
    let text = string_to_sign(&[
        ("Type", Some("Notification")),
        ("MessageId", Some(&msg.message_id)),
        ("TopicArn", Some(&msg.topic_arn)),
        ("Subject", msg.subject.as_deref()),
        ("Message", Some(body)),
        ("Timestamp", Some(&msg.timestamp)),
    ]);
    let s = |v: &str| Value::String(v.to_string());
    let sns_obj = ordered(&[
        ("Type", s("Notification")),
        ("MessageId", s(&msg.message_id)),
        ("TopicArn", s(&msg.topic_arn)),
        ("Subject", msg.subject.as_deref().map_or(Value::Null, s)),
        ("Message", s(body)),
        ("Timestamp", s(&msg.timestamp)),
        ("SignatureVersion", s(version)),
        ("Signature", s(&sns.signer.sign(version, &text))),
        ("SigningCertUrl", s(&sns.cert_url())),
        ("UnsubscribeUrl", s(&sns.unsubscribe_url(&sub.arn))),
        ("MessageAttributes", envelope_attributes(&msg.attributes)),
    ]);
    let q = |v: &str| Value::String(v.to_string()).to_string();
    let record = ordered_raw(&[
        ("EventSource", q("aws:sns")),
        ("EventVersion", q("1.0")),
        ("EventSubscriptionArn", q(&sub.arn)),
        ("Sns", sns_obj),
    ]);
    format!("{{\"Records\":[{record}]}}")
}

async fn send(
    sns: &Arc<Sns>,
    sub: &Subscription,
    msg: &StoredMessage,
    content_type: &str,
) -> Result<(), Failure> {
    let body = msg.body_for(&sub.protocol);
    match sub.protocol.as_str() {
        "sqs" => {
            let q = sns.sinks.queues()?;
            let fifo_queue = q.queue_is_fifo(&sub.endpoint);
            if fifo_queue.is_none() {
                return Err(Failure::Permanent(format!(
                    "queue {} does not exist",
                    sub.endpoint
                )));
            }
            let fifo = fifo_queue == Some(true);
            let qm = QueueMessage {
                body: if sub.raw() {
                    body
                } else {
                    envelope(sns, sub, msg, &body)
                },
                attributes: if sub.raw() {
                    queue_attributes(&msg.attributes)
                } else {
                    BTreeMap::new()
                },
                group_id: if fifo { msg.group_id.clone() } else { None },
                deduplication_id: if fifo { msg.dedup_id.clone() } else { None },
                sender_id: Some(format!("AIDAIT2UOQQY3AUEKVGXU-{}", sns.account)),
                ..Default::default()
            };
            q.send(&sub.endpoint, qm).await?;
            Ok(())
        }
        "lambda" => {
            let event = lambda_event(sns, sub, msg, &body);
            // The function's policy decides whether this topic may invoke it.
            let source = nimbus_triggers::sinks::InvokeSource {
                service: "sns.amazonaws.com".into(),
                source_arn: msg.topic_arn.clone(),
                source_account: sns.account.clone(),
            };
            sns.sinks
                .deliver_from(
                    &sub.endpoint,
                    Delivery::Json {
                        body: event,
                        source: "aws.sns".into(),
                        detail_type: "SNS Notification".into(),
                        group_id: None,
                        deduplication_id: None,
                        partition_key: None,
                        trace_header: None,
                        resources: Vec::new(),
                    },
                    Some(&source),
                )
                .await?;
            Ok(())
        }
        "http" | "https" => {
            let (payload, raw) = if msg.kind == "Notification" && sub.raw() {
                (body, true)
            } else {
                (envelope(sns, sub, msg, &body), false)
            };
            let mut req = sns
                .http
                .post(&sub.endpoint)
                .header("content-type", content_type)
                .header("x-amz-sns-message-type", msg.kind.as_str())
                .header("x-amz-sns-message-id", msg.message_id.as_str())
                .header("x-amz-sns-topic-arn", msg.topic_arn.as_str())
                .header("user-agent", "Amazon Simple Notification Service Agent");
            if msg.kind == "Notification" {
                req = req.header("x-amz-sns-subscription-arn", sub.arn.as_str());
            }
            if raw {
                req = req.header("x-amz-sns-rawdelivery", "true");
            }
            match req.body(payload).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(Failure::Transient(format!(
                    "endpoint answered {}",
                    r.status()
                ))),
                Err(e) => Err(Failure::Transient(format!("endpoint unreachable: {e}"))),
            }
        }
        "email" | "email-json" => {
            let mail = sns.sinks.mail()?;
            let (subject, text) = if msg.kind == "SubscriptionConfirmation" {
                let text = if sub.protocol == "email-json" {
                    envelope(sns, sub, msg, &body)
                } else {
                    format!(
                        "You have chosen to subscribe to the topic: \n{}\n\nTo confirm this subscription, click or visit the link below (If this was in error no action is necessary):\n{}\n",
                        msg.topic_arn,
                        msg.subscribe_url.clone().unwrap_or_default()
                    )
                };
                (
                    "AWS Notification - Subscription Confirmation".to_string(),
                    text,
                )
            } else {
                let text = if sub.protocol == "email-json" {
                    envelope(sns, sub, msg, &body)
                } else {
                    format!(
                        "{body}\n\n--\nIf you wish to stop receiving notifications from this topic, please click or visit the link below to unsubscribe:\n{}\n",
                        sns.unsubscribe_url(&sub.arn)
                    )
                };
                (
                    msg.subject
                        .clone()
                        .unwrap_or_else(|| "AWS Notification Message".into()),
                    text,
                )
            };
            mail.send_mail(OutgoingMail {
                from: "no-reply@sns.amazonaws.com".into(),
                to: vec![sub.endpoint.clone()],
                subject,
                text,
                origin: "sns".into(),
            })
            .await?;
            Ok(())
        }
        "sms" | "application" | "firehose" => {
            let s = sns.clone();
            let (p, e, a, t, m) = (
                sub.protocol.clone(),
                sub.endpoint.clone(),
                sub.arn.clone(),
                msg.topic_arn.clone(),
                msg.message_id.clone(),
            );
            let rec = match sub.protocol.as_str() {
                "firehose" if !sub.raw() => envelope(sns, sub, msg, &body),
                "application" if sub.endpoint.contains(":endpoint/") => {
                    let (s, ep, m) = (sns.clone(), sub.endpoint.clone(), msg.clone());
                    let picked = tokio::task::spawn_blocking(move || s.application_body(&ep, &m))
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?
                        .map_err(|e| Failure::Transient(e.message))?;
                    picked.ok_or_else(|| {
                        Failure::Permanent(format!(
                            "endpoint {} is disabled or does not exist",
                            sub.endpoint
                        ))
                    })?
                }
                "sms" => {
                    let phone = if sub.endpoint.starts_with('+') {
                        sub.endpoint.clone()
                    } else {
                        format!("+{}", sub.endpoint)
                    };
                    let s = sns.clone();
                    let out = tokio::task::spawn_blocking(move || s.opted_out(&phone))
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?
                        .map_err(|e| Failure::Transient(e.to_string()))?;
                    if out {
                        return Err(Failure::Permanent("the phone number opted out".to_string()));
                    }
                    body
                }
                _ => body,
            };
            tokio::task::spawn_blocking(move || s.record(&p, &e, &a, &t, &m, &rec))
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?
                .map_err(|e| Failure::Transient(e.to_string()))
        }
        other => Err(Failure::Permanent(format!("unsupported protocol {other}"))),
    }
}

//! The async queue's durable outbox: what a finished event owes to other places
//! (its `OnSuccess`/`OnFailure` destination record, its dead letter).
//!
//! * The rows are written in the transaction that deletes the finished event
//!   ([`nimbus_store::EventQueueStore::finish`]), so a `kill -9` between the end
//!   of an invocation and the delivery of its record loses nothing: the record is
//!   delivered after the restart.
//! * One task drains the outbox, woken by a [`Notify`] when rows are added or
//!   come due; it sleeps only until the next retry is due (never polls).
//! * A target that answers "try later" ([`SinkError::Transient`]: its service is
//!   not running, its storage is busy) is retried with a doubling backoff from
//!   100 ms up to a minute, for as long as Lambda keeps an async event (6 hours);
//!   a target that refuses the delivery for good (gone, wrong type) is logged and
//!   counted as a failed destination delivery. A row is deleted once its target
//!   acknowledged it, so delivery is at-least-once.
//! * After a restart every pending row is due at once.

use super::AsyncQueue;
use crate::{Invocation, InvokeError};
use bytes::Bytes;
use nimbus_core::Trigger;
use nimbus_store::OutboxEntry;
use nimbus_telemetry::metrics::DestinationKind;
use nimbus_triggers::sinks::{
    Delivery, MessageAttribute, QueueMessage, SinkError, SinkResult, TargetKind, TopicMessage,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long an undeliverable record is retried (Lambda keeps async events 6 h).
const GIVE_UP_AFTER_MS: i64 = 6 * 3600 * 1000;
/// First retry of a transient failure; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 32;

/// One delivery a finished event owes; stored as JSON in the outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Item {
    /// Lambda's destination record, to a function, queue, topic or bus.
    Destination {
        success: bool,
        /// The record (JSON text).
        record: String,
        /// The version that ran, for the bus event's `resources`.
        function_arn: String,
        trace: Option<String>,
    },
    /// The original payload, to the function's `DeadLetterConfig` queue or topic.
    DeadLetter {
        payload: String,
        request_id: String,
        error_message: String,
        trace: Option<String>,
    },
}

impl Item {
    pub(crate) fn entry(&self, function: &str, target: &str) -> OutboxEntry {
        OutboxEntry {
            id: 0,
            function: function.to_string(),
            target: target.to_string(),
            item: serde_json::to_string(self).expect("an outbox item serialises"),
            created_ms: nimbus_core::now_ms(),
        }
    }
}

struct Pending {
    entry: OutboxEntry,
    item: Item,
    due_ms: i64,
    attempts: u32,
    running: bool,
}

/// The outbox rows memory holds (every undelivered one).
#[derive(Default)]
pub(crate) struct Outbox {
    pending: BTreeMap<i64, Pending>,
    in_flight: usize,
}

impl Outbox {
    /// Take rows read from the store (at start: all due now) or just written.
    pub(crate) fn add(&mut self, entries: Vec<OutboxEntry>) -> Vec<i64> {
        let now = nimbus_core::now_ms();
        let mut corrupt = Vec::new();
        for entry in entries {
            match serde_json::from_str::<Item>(&entry.item) {
                Ok(item) => {
                    self.pending.insert(
                        entry.id,
                        Pending {
                            entry,
                            item,
                            due_ms: now,
                            attempts: 0,
                            running: false,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(outbox = entry.id, target = %entry.target, error = %e, "unreadable outbox row dropped");
                    corrupt.push(entry.id);
                }
            }
        }
        corrupt
    }

    /// Undelivered rows per function.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for p in self.pending.values() {
            *out.entry(p.entry.function.clone()).or_default() += 1;
        }
        out
    }
}

fn backoff(attempts: u32) -> Duration {
    RETRY_MIN
        .saturating_mul(1u32 << attempts.min(16))
        .min(RETRY_MAX)
}

impl AsyncQueue {
    /// Store what a finished event owes in the transaction that deletes it, then
    /// hand the rows to the drain.
    pub(crate) async fn finish_owing(&self, function: &str, id: i64, owed: Vec<OutboxEntry>) {
        let n = owed.len();
        match self.inner.store.finish(id, owed.clone()).await {
            Ok(ids) => {
                if n > 0 {
                    let rows = owed
                        .into_iter()
                        .zip(ids)
                        .map(|(e, id)| OutboxEntry { id, ..e })
                        .collect();
                    self.take_outbox(rows);
                }
            }
            Err(e) => {
                // The event stays in the store (nothing committed): it runs again
                // after a restart, and its end is owed again then.
                tracing::error!(function, event = id, error = %e, "cannot record the end of an async event");
            }
        }
        self.forget(function, id);
    }

    /// Rows now in the store, for the drain.
    pub(crate) fn take_outbox(&self, rows: Vec<OutboxEntry>) {
        let corrupt = self.inner.outbox.lock().unwrap().add(rows);
        for id in corrupt {
            self.inner.store.outbox_done(id);
        }
        self.inner.outbox_wake.notify_one();
    }

    /// Undelivered destination records and dead letters per function.
    pub fn outbox_pending(&self) -> BTreeMap<String, u64> {
        self.inner.outbox.lock().unwrap().counts()
    }

    /// The drain: deliver what is due, sleep until the next retry or a wake.
    pub(crate) async fn drain_outbox(self) {
        loop {
            let now = nimbus_core::now_ms();
            let mut next: Option<i64> = None;
            let mut launch = Vec::new();
            {
                let mut ob = self.inner.outbox.lock().unwrap();
                let mut free = IN_FLIGHT.saturating_sub(ob.in_flight);
                for p in ob.pending.values_mut() {
                    if p.running {
                        continue;
                    }
                    if p.due_ms > now {
                        next = Some(next.map_or(p.due_ms, |n: i64| n.min(p.due_ms)));
                        continue;
                    }
                    if free == 0 {
                        break;
                    }
                    free -= 1;
                    p.running = true;
                    launch.push((p.entry.clone(), p.item.clone()));
                }
                ob.in_flight += launch.len();
            }
            for (entry, item) in launch {
                let q = self.clone();
                tokio::spawn(async move { q.deliver_owed(entry, item).await });
            }
            let wait = next.map_or(Duration::from_secs(3600), |d| {
                Duration::from_millis((d - now).max(1) as u64)
            });
            tokio::select! {
                _ = self.inner.outbox_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn deliver_owed(&self, entry: OutboxEntry, item: Item) {
        let result = self.deliver_item(&entry, &item).await;
        let metrics = self
            .inner
            .invoker
            .telemetry()
            .metrics()
            .async_function(&entry.function);
        let kind = match &item {
            Item::Destination { success: true, .. } => Some(DestinationKind::OnSuccess),
            Item::Destination { success: false, .. } => Some(DestinationKind::OnFailure),
            Item::DeadLetter { .. } => None,
        };
        let what = if kind.is_some() {
            "destination record"
        } else {
            "dead letter"
        };
        let now = nimbus_core::now_ms();
        match result {
            Ok(id) => {
                tracing::info!(function = %entry.function, target = %entry.target, message_id = %id, "{what} delivered");
                if let Some(k) = kind {
                    metrics.destination(k, true);
                }
            }
            Err(e) if e.is_transient() && now - entry.created_ms < GIVE_UP_AFTER_MS => {
                let mut ob = self.inner.outbox.lock().unwrap();
                ob.in_flight -= 1;
                if let Some(p) = ob.pending.get_mut(&entry.id) {
                    p.attempts += 1;
                    p.running = false;
                    p.due_ms = now + backoff(p.attempts - 1).as_millis() as i64;
                    tracing::warn!(function = %entry.function, target = %entry.target, attempt = p.attempts, error = %e, "{what} not delivered; will retry");
                }
                drop(ob);
                self.inner.outbox_wake.notify_one();
                return;
            }
            Err(e) => {
                tracing::error!(function = %entry.function, target = %entry.target, error = %e, "{what} could not be delivered; giving up");
                if let Some(k) = kind {
                    metrics.destination(k, false);
                }
            }
        }
        self.inner.store.outbox_done(entry.id);
        {
            let mut ob = self.inner.outbox.lock().unwrap();
            ob.in_flight -= 1;
            ob.pending.remove(&entry.id);
        }
        self.inner.outbox_wake.notify_one();
    }

    async fn deliver_item(&self, entry: &OutboxEntry, item: &Item) -> SinkResult<String> {
        let target = entry.target.as_str();
        let invoker = &self.inner.invoker;
        match item {
            Item::Destination {
                success,
                record,
                function_arn,
                trace,
            } => match super::Destination::parse(target) {
                Ok(super::Destination::Function { name, qualifier }) => {
                    let inv = Invocation {
                        function: name,
                        qualifier,
                        payload: Bytes::from(record.clone()),
                        trigger: Trigger::Event,
                        client_context: None,
                        trace_id: trace.clone(),
                    };
                    self.enqueue(inv, "destination").await.map_err(|e| match e {
                        InvokeError::NotFound(m) => SinkError::NotFound(m),
                        e @ (InvokeError::TooLarge { .. }
                        | InvokeError::InvalidParameter(_)
                        | InvokeError::Missing { .. }) => SinkError::Rejected {
                            code: "InvalidParameterValueException".into(),
                            message: e.to_string(),
                        },
                        other => SinkError::Transient(other.to_string()),
                    })
                }
                Ok(super::Destination::Service(arn)) => {
                    let sinks = invoker.sinks().ok_or_else(|| {
                        SinkError::Transient("the services are not started".into())
                    })?;
                    let detail_type = if *success {
                        "Lambda Function Invocation Result - Success"
                    } else {
                        "Lambda Function Invocation Result - Failure"
                    };
                    sinks
                        .deliver(
                            &arn,
                            Delivery::Json {
                                body: record.clone(),
                                source: "lambda".into(),
                                detail_type: detail_type.into(),
                                group_id: None,
                                deduplication_id: None,
                                partition_key: None,
                                trace_header: trace.clone(),
                                // As Lambda names them: the bus, then the function version.
                                resources: vec![arn.clone(), function_arn.clone()],
                            },
                        )
                        .await
                }
                Err(e) => Err(SinkError::NotFound(e)),
            },
            Item::DeadLetter {
                payload,
                request_id,
                error_message,
                trace,
            } => {
                let sinks = invoker
                    .sinks()
                    .ok_or_else(|| SinkError::Transient("the services are not started".into()))?;
                let string = |v: &str| MessageAttribute {
                    data_type: "String".into(),
                    string_value: Some(v.to_string()),
                    binary_value: None,
                };
                let attributes: BTreeMap<String, MessageAttribute> = [
                    ("RequestID".to_string(), string(request_id)),
                    (
                        "ErrorCode".to_string(),
                        MessageAttribute {
                            data_type: "Number".into(),
                            string_value: Some("200".into()),
                            binary_value: None,
                        },
                    ),
                    ("ErrorMessage".to_string(), string(error_message)),
                ]
                .into_iter()
                .collect();
                match TargetKind::of(target) {
                    Some(TargetKind::Queue) => {
                        let msg = QueueMessage {
                            body: payload.clone(),
                            attributes,
                            trace_header: trace.clone(),
                            ..Default::default()
                        };
                        Ok(sinks.queues()?.send(target, msg).await?.message_id)
                    }
                    Some(TargetKind::Topic) => {
                        let msg = TopicMessage {
                            message: payload.clone(),
                            attributes,
                            ..Default::default()
                        };
                        sinks.topics()?.publish(target, msg).await
                    }
                    _ => Err(SinkError::NotFound(format!(
                        "{target}: a dead-letter target must be an SQS queue or an SNS topic"
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_through_their_row() {
        let item = Item::DeadLetter {
            payload: "{\"a\":1}".into(),
            request_id: "r".into(),
            error_message: "boom".into(),
            trace: None,
        };
        let e = item.entry("f", "arn:aws:sqs:us-east-1:123456789012:dlq");
        let mut ob = Outbox::default();
        assert!(ob
            .add(vec![
                OutboxEntry { id: 1, ..e.clone() },
                OutboxEntry {
                    id: 2,
                    item: "not json".into(),
                    ..e
                }
            ])
            .eq(&[2]));
        assert_eq!(ob.pending[&1].item, item);
        assert_eq!(ob.counts().get("f"), Some(&1));
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(30), RETRY_MAX);
    }
}

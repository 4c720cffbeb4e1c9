//! The durable async invocation queue (Lambda's `InvocationType=Event`).
//!
//! * An event is in `events.db` (fsynced, group-committed) before the caller's 202.
//! * A dispatcher runs due events under the function's concurrency limits; a throttled
//!   event stays queued and is tried again shortly (throttles never count as attempts).
//! * A function error is retried up to `MaximumRetryAttempts` (default 2) after
//!   `retry_base × attempt` (Lambda waits about 1 then 2 minutes; the base is a server
//!   setting so tests run in seconds); an event older than `MaximumEventAgeInSeconds`
//!   is not tried again.
//! * `OnSuccess` / `OnFailure` destinations receive Lambda's destination record.
//!   A function destination is itself an async event, queued durably in the same
//!   transaction-per-batch path.
//! * Delivery is at-least-once: an event that was running when the server died is
//!   run again after restart (the request id stays the same, as on Lambda).

use crate::{Invocation, InvokeError, Invoker};
use bytes::Bytes;
use nimbus_core::{function_arn, limits, EventInvokeConfig, Trigger};
use nimbus_store::{EventStore, QueuedEvent};
use nimbus_telemetry::metrics::{DestinationKind, DropReason};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Where a destination ARN points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Function {
        name: String,
        qualifier: Option<String>,
    },
}

impl Destination {
    pub fn parse(arn: &str) -> Result<Self, String> {
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() < 6 || parts[0] != "arn" {
            return Err(format!("Destination ARN {arn} is invalid"));
        }
        match (parts[2], parts.get(5)) {
            ("lambda", Some(&"function")) if parts.len() >= 7 => Ok(Destination::Function {
                name: parts[6].to_string(),
                qualifier: parts.get(7).map(|q| q.to_string()),
            }),
            (svc @ ("sqs" | "sns" | "events"), _) => Err(format!(
                "Destinations of type {svc} are not supported by Nimbus yet; use a Lambda function ARN"
            )),
            _ => Err(format!("Destination ARN {arn} is invalid")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Delay before the first retry; the second waits twice as long.
    pub retry_base: Duration,
}

/// Depth and age of one function's backlog.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    pub depth: u64,
    pub oldest_age_ms: i64,
}

struct Inner {
    store: EventStore,
    invoker: Invoker,
    settings: QueueSettings,
    /// Due time and id → event. Events being run are not in here.
    pending: Mutex<BTreeMap<(i64, i64), QueuedEvent>>,
    /// Events being run, by function (for the stats).
    running: Mutex<HashMap<i64, (String, i64)>>,
    wake: Notify,
}

/// The async queue. Cheap to clone.
#[derive(Clone)]
pub struct AsyncQueue {
    inner: Arc<Inner>,
}

/// How often a throttled backlog is looked at again.
const THROTTLE_RETRY: Duration = Duration::from_millis(20);

impl AsyncQueue {
    /// Load what is queued and start dispatching.
    pub fn start(
        store: EventStore,
        invoker: Invoker,
        settings: QueueSettings,
    ) -> Result<Self, InvokeError> {
        let leftovers = store.load_all()?;
        if !leftovers.is_empty() {
            tracing::info!(events = leftovers.len(), "resuming queued async events");
        }
        let pending = leftovers
            .into_iter()
            .map(|e| ((e.due_ms, e.id), e))
            .collect();
        let q = AsyncQueue {
            inner: Arc::new(Inner {
                store,
                invoker,
                settings,
                pending: Mutex::new(pending),
                running: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        };
        let d = q.clone();
        tokio::spawn(async move { d.dispatch().await });
        Ok(q)
    }

    /// Accept an event: validated, stored durably, then queued. Returns the request id.
    pub async fn enqueue(&self, inv: Invocation, source: &str) -> Result<String, InvokeError> {
        if inv.payload.len() > limits::ASYNC_PAYLOAD_MAX {
            return Err(InvokeError::TooLarge {
                size: inv.payload.len(),
                max: limits::ASYNC_PAYLOAD_MAX,
                kind: "Event",
            });
        }
        let invoker = &self.inner.invoker;
        if !invoker.qualifier_exists(&inv.function, inv.qualifier.as_deref()) {
            return Err(InvokeError::NotFound(function_arn(
                invoker.region(),
                &inv.function,
                inv.qualifier.as_deref(),
            )));
        }
        let now = nimbus_core::now_ms();
        let request_id = nimbus_core::new_request_id();
        let mut ev = QueuedEvent {
            id: 0,
            request_id: request_id.clone(),
            function: inv.function,
            qualifier: inv.qualifier,
            payload: inv.payload.to_vec(),
            enqueued_ms: now,
            attempts: 0,
            due_ms: now,
            trace_id: Some(crate::trace_header(inv.trace_id.as_deref(), None)),
            source: source.to_string(),
        };
        ev.id = self.inner.store.insert(vec![ev.clone()]).await?[0];
        invoker
            .telemetry()
            .metrics()
            .async_function(&ev.function)
            .enqueued();
        self.inner
            .pending
            .lock()
            .unwrap()
            .insert((ev.due_ms, ev.id), ev);
        self.inner.wake.notify_one();
        Ok(request_id)
    }

    /// Backlog of one function (queued plus running).
    pub fn stats(&self, function: &str) -> QueueStats {
        let now = nimbus_core::now_ms();
        let mut st = QueueStats::default();
        let mut oldest = i64::MAX;
        for e in self
            .inner
            .pending
            .lock()
            .unwrap()
            .values()
            .filter(|e| e.function == function)
        {
            st.depth += 1;
            oldest = oldest.min(e.enqueued_ms);
        }
        for (f, enq) in self.inner.running.lock().unwrap().values() {
            if f == function {
                st.depth += 1;
                oldest = oldest.min(*enq);
            }
        }
        if st.depth > 0 {
            st.oldest_age_ms = now - oldest;
        }
        st
    }

    /// Backlog of every function with one (queued plus running), by function name.
    pub fn all_stats(&self) -> BTreeMap<String, QueueStats> {
        let now = nimbus_core::now_ms();
        let mut out: BTreeMap<String, QueueStats> = BTreeMap::new();
        let mut add = |function: &str, enqueued_ms: i64| {
            let st = match out.get_mut(function) {
                Some(st) => st,
                None => out.entry(function.to_string()).or_default(),
            };
            st.depth += 1;
            st.oldest_age_ms = st.oldest_age_ms.max(now - enqueued_ms);
        };
        for e in self.inner.pending.lock().unwrap().values() {
            add(&e.function, e.enqueued_ms);
        }
        for (f, enq) in self.inner.running.lock().unwrap().values() {
            add(f, *enq);
        }
        out
    }

    async fn dispatch(self) {
        loop {
            let now = nimbus_core::now_ms();
            let mut throttled: HashSet<String> = HashSet::new();
            let mut to_run = Vec::new();
            let mut dropped = Vec::new();
            let next_due = {
                let mut pending = self.inner.pending.lock().unwrap();
                let due: Vec<(i64, i64)> = pending
                    .range(..(now + 1, i64::MIN))
                    .map(|(k, _)| *k)
                    .collect();
                for key in due {
                    let ev = &pending[&key];
                    if throttled.contains(&ev.function) {
                        continue;
                    }
                    match self
                        .inner
                        .invoker
                        .admit(&ev.function, ev.qualifier.as_deref())
                    {
                        Ok(admitted) => {
                            let ev = pending.remove(&key).expect("present");
                            to_run.push((ev, admitted));
                        }
                        Err(InvokeError::Throttled(_)) => {
                            throttled.insert(ev.function.clone());
                        }
                        Err(e) => {
                            let ev = pending.remove(&key).expect("present");
                            dropped.push((ev, e));
                        }
                    }
                }
                pending
                    .keys()
                    .find(|(due, _)| *due > now)
                    .map(|(due, _)| *due)
            };
            for (ev, e) in dropped {
                tracing::warn!(function = %ev.function, request_id = %ev.request_id, error = %e, "dropping async event");
                self.inner.store.delete(ev.id);
            }
            for (ev, (dep, permit)) in to_run {
                self.inner
                    .running
                    .lock()
                    .unwrap()
                    .insert(ev.id, (ev.function.clone(), ev.enqueued_ms));
                let q = self.clone();
                tokio::spawn(async move { q.run_one(ev, dep, permit).await });
            }
            let wait = if !throttled.is_empty() {
                THROTTLE_RETRY
            } else {
                next_due.map_or(Duration::from_secs(3600), |d| {
                    Duration::from_millis((d - now).max(1) as u64)
                })
            };
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn run_one(
        &self,
        mut ev: QueuedEvent,
        dep: Arc<nimbus_runtime::Deployment>,
        permit: crate::Permit,
    ) {
        let invoker = &self.inner.invoker;
        let qualifier = ev.qualifier.clone().unwrap_or_else(|| "$LATEST".into());
        let cfg = invoker
            .event_invoke_config(&ev.function, &qualifier)
            .unwrap_or_default();
        let now = nimbus_core::now_ms();
        if now - ev.enqueued_ms > cfg.max_age_ms() {
            drop(permit);
            self.finish(&ev);
            self.destination(&ev, &cfg, Condition::EventAgeExceeded, None)
                .await;
            return;
        }
        let inv = Invocation {
            function: ev.function.clone(),
            qualifier: ev.qualifier.clone(),
            payload: Bytes::from(ev.payload.clone()),
            trigger: if ev.source == "destination" {
                Trigger::Event
            } else {
                trigger_of(&ev.source)
            },
            client_context: None,
            trace_id: ev.trace_id.clone(),
        };
        let result = invoker.run(dep, inv, permit, ev.request_id.clone()).await;
        match result {
            Ok(r) if !r.function_error => {
                ev.attempts += 1;
                self.finish(&ev);
                self.destination(&ev, &cfg, Condition::Success, Some(&r))
                    .await;
            }
            Ok(r) => {
                ev.attempts += 1;
                let retry_at = nimbus_core::now_ms()
                    + self.inner.settings.retry_base.as_millis() as i64 * ev.attempts as i64;
                if ev.attempts > cfg.retries() {
                    self.finish(&ev);
                    self.destination(&ev, &cfg, Condition::RetriesExhausted, Some(&r))
                        .await;
                } else if retry_at - ev.enqueued_ms > cfg.max_age_ms() {
                    self.finish(&ev);
                    self.destination(&ev, &cfg, Condition::EventAgeExceeded, Some(&r))
                        .await;
                } else {
                    tracing::info!(function = %ev.function, request_id = %ev.request_id, attempt = ev.attempts, "async invocation failed; will retry");
                    invoker
                        .telemetry()
                        .metrics()
                        .async_function(&ev.function)
                        .retried();
                    self.requeue(ev, retry_at);
                }
            }
            Err(InvokeError::NotFound(_)) => self.finish(&ev),
            Err(e) => {
                // Platform trouble (not the function's fault): try again later without
                // spending an attempt, within the event's maximum age.
                tracing::warn!(function = %ev.function, request_id = %ev.request_id, error = %e, "async invocation could not run; will retry");
                let retry_at = nimbus_core::now_ms() + 1000;
                self.requeue(ev, retry_at);
            }
        }
    }

    fn finish(&self, ev: &QueuedEvent) {
        self.inner.running.lock().unwrap().remove(&ev.id);
        self.inner.store.delete(ev.id);
    }

    fn requeue(&self, mut ev: QueuedEvent, due_ms: i64) {
        ev.due_ms = due_ms;
        self.inner.store.reschedule(ev.id, ev.attempts, due_ms);
        self.inner.running.lock().unwrap().remove(&ev.id);
        self.inner
            .pending
            .lock()
            .unwrap()
            .insert((ev.due_ms, ev.id), ev);
        self.inner.wake.notify_one();
    }

    async fn destination(
        &self,
        ev: &QueuedEvent,
        cfg: &EventInvokeConfig,
        cond: Condition,
        res: Option<&crate::InvokeResult>,
    ) {
        let target = match cond {
            Condition::Success => cfg.on_success.as_deref(),
            _ => cfg.on_failure.as_deref(),
        };
        let invoker = &self.inner.invoker;
        let metrics = invoker.telemetry().metrics().async_function(&ev.function);
        let kind = match cond {
            Condition::Success => DestinationKind::OnSuccess,
            _ => DestinationKind::OnFailure,
        };
        let Some(target) = target else {
            if cond != Condition::Success {
                tracing::warn!(function = %ev.function, request_id = %ev.request_id, condition = cond.as_str(), "async event discarded: no on-failure destination");
                metrics.dropped(match cond {
                    Condition::EventAgeExceeded => DropReason::EventAgeExceeded,
                    _ => DropReason::RetriesExhausted,
                });
            }
            return;
        };
        let qualifier = ev.qualifier.as_deref().unwrap_or("$LATEST");
        let request_payload: serde_json::Value = serde_json::from_slice(&ev.payload)
            .unwrap_or_else(|_| String::from_utf8_lossy(&ev.payload).into());
        let mut response_context = json!({ "statusCode": 200, "executedVersion": qualifier });
        let mut response_payload = serde_json::Value::Null;
        if let Some(r) = res {
            response_context["executedVersion"] = r.executed_version.clone().into();
            if r.function_error {
                response_context["functionError"] = "Unhandled".into();
            }
            response_payload = serde_json::from_slice(&r.payload)
                .unwrap_or_else(|_| String::from_utf8_lossy(&r.payload).into());
        }
        let mut record = json!({
            "version": "1.0",
            "timestamp": rfc3339_ms(nimbus_core::now_ms()),
            "requestContext": {
                "requestId": ev.request_id,
                "functionArn": function_arn(invoker.region(), &ev.function, Some(qualifier)),
                "condition": cond.as_str(),
                "approximateInvokeCount": ev.attempts,
            },
            "requestPayload": request_payload,
        });
        if res.is_some() {
            record["responseContext"] = response_context;
            record["responsePayload"] = response_payload;
        }
        match Destination::parse(target) {
            Ok(Destination::Function { name, qualifier }) => {
                let inv = Invocation {
                    function: name,
                    qualifier,
                    payload: Bytes::from(record.to_string()),
                    trigger: Trigger::Event,
                    client_context: None,
                    trace_id: ev.trace_id.clone(),
                };
                let delivered = self.enqueue(inv, "destination").await;
                if let Err(e) = &delivered {
                    tracing::error!(function = %ev.function, destination = %target, error = %e, "could not deliver to destination");
                }
                metrics.destination(kind, delivered.is_ok());
            }
            Err(e) => {
                tracing::error!(destination = %target, error = %e, "invalid destination");
                metrics.destination(kind, false);
            }
        }
    }
}

fn trigger_of(source: &str) -> Trigger {
    match source {
        "schedule" => Trigger::Schedule,
        _ => Trigger::Event,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(&self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

fn rfc3339_ms(ms: i64) -> String {
    nimbus_core::format_ms(ms, "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_arns() {
        assert_eq!(
            Destination::parse("arn:aws:lambda:us-east-1:123456789012:function:dlq").unwrap(),
            Destination::Function {
                name: "dlq".into(),
                qualifier: None
            }
        );
        assert_eq!(
            Destination::parse("arn:aws:lambda:us-east-1:123456789012:function:dlq:prod").unwrap(),
            Destination::Function {
                name: "dlq".into(),
                qualifier: Some("prod".into())
            }
        );
        assert!(Destination::parse("arn:aws:sqs:us-east-1:123456789012:q")
            .unwrap_err()
            .contains("not supported"));
        assert!(Destination::parse("nonsense").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(1_573_755_365_568), "2019-11-14T18:16:05.568Z");
    }
}

//! SQS event-source mappings: the [`MappingSource`] for queue ARNs — Lambda's SQS
//! pollers.
//!
//! A running mapping scales its pollers with the backlog as Lambda does: it starts
//! with 5 (fewer if `ScalingConfig.MaximumConcurrency` is lower); a poller that takes
//! a batch and still sees messages waiting adds another, at most 300 a minute (a
//! token bucket of 5 refilled at 5 a second), up to `MaximumConcurrency` (Lambda's
//! 1,250 when unset) and the function's reserved concurrency. A throttled invoke
//! stops the growth for a second and retires the poller after its batch (never
//! below 5); a poller that finds the queue empty retires too (never below 5). Each
//! poller waits on the queue's `Notify` — a send wakes it at once, no timer polls —
//! takes a batch (up to `BatchSize`, collecting for up
//! to `MaximumBatchingWindowInSeconds`), drops and deletes the messages no
//! `FilterCriteria` pattern matches, invokes the function synchronously with
//! Lambda's SQS event, and deletes what succeeded: the whole batch, or with
//! `ReportBatchItemFailures` all but the listed items. Failed messages stay in
//! flight until their visibility timeout, so the queue's redrive policy
//! dead-letters them after `maxReceiveCount`. FIFO queues hand a poller whole
//! groups in order, never a group that is in flight elsewhere, and a failed item
//! fails the rest of its group in the batch. A throttled invoke is retried while
//! the batch is still in flight; a message is never dropped for it.

use crate::core::{name_of_arn, Received, Sqs};
use crate::wire::attr_json;
use nimbus_dispatch::{Invocation, InvokeError};
use nimbus_patterns::Pattern;
use nimbus_triggers::esm::{MappingContext, MappingSource, MappingSpec};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Pollers a mapping starts with (and keeps at least).
pub const DEFAULT_POLLERS: u32 = 5;
/// Most pollers (concurrent batches) when `MaximumConcurrency` is not set.
pub const MAX_POLLERS: u32 = 1250;
/// Pollers added per second at most (Lambda: up to 300 a minute), and the burst.
const GROWTH_PER_SEC: f64 = 5.0;
/// How long growth stops after a throttle.
const THROTTLE_COOLDOWN: Duration = Duration::from_secs(1);

/// How many pollers a mapping runs, and whether it may add or retire one.
struct Scaler {
    state: std::sync::Mutex<ScaleState>,
    /// `MaximumConcurrency` (or Lambda's ceiling).
    cap: u32,
    /// The pollers kept however idle.
    floor: u32,
}

/// What [`Scaler::try_grow`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Grow {
    Grown,
    /// Not before then (the growth rate, or a throttle's cooldown).
    Later(tokio::time::Instant),
    /// `MaximumConcurrency` or the function's reserved concurrency reached.
    AtCap,
}

struct ScaleState {
    active: u32,
    /// Additions allowed now (a bucket of [`GROWTH_PER_SEC`]).
    tokens: f64,
    refilled: tokio::time::Instant,
    cooldown_until: Option<tokio::time::Instant>,
}

impl Scaler {
    fn new(cap: u32) -> Self {
        let floor = DEFAULT_POLLERS.min(cap).max(1);
        Self {
            state: std::sync::Mutex::new(ScaleState {
                active: floor,
                tokens: 0.0,
                refilled: tokio::time::Instant::now(),
                cooldown_until: None,
            }),
            cap,
            floor,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ScaleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one more poller if the limits allow it now; `limit` is the function's
    /// reserved concurrency, if any.
    fn try_grow(&self, limit: Option<u32>) -> Grow {
        let now = tokio::time::Instant::now();
        let mut st = self.lock();
        let elapsed = now.duration_since(st.refilled).as_secs_f64();
        st.tokens = (st.tokens + elapsed * GROWTH_PER_SEC).min(GROWTH_PER_SEC);
        st.refilled = now;
        let cap = limit.map_or(self.cap, |l| self.cap.min(l.max(1)));
        if st.active >= cap {
            return Grow::AtCap;
        }
        if let Some(c) = st.cooldown_until.filter(|c| now < *c) {
            return Grow::Later(c);
        }
        if st.tokens < 1.0 {
            let wait = (1.0 - st.tokens) / GROWTH_PER_SEC;
            return Grow::Later(now + Duration::from_secs_f64(wait));
        }
        st.tokens -= 1.0;
        st.active += 1;
        Grow::Grown
    }

    /// Count one poller less unless only the floor is left.
    fn try_shrink(&self) -> bool {
        let mut st = self.lock();
        if st.active > self.floor {
            st.active -= 1;
            true
        } else {
            false
        }
    }

    fn throttled(&self) {
        self.lock().cooldown_until = Some(tokio::time::Instant::now() + THROTTLE_COOLDOWN);
    }
}
/// Lambda's synchronous payload cap: a batch stops growing before it.
const BATCH_BYTES: usize = 5 * 1024 * 1024;

pub struct SqsMappingSource {
    sqs: Arc<Sqs>,
}

impl SqsMappingSource {
    pub fn new(sqs: Arc<Sqs>) -> Self {
        Self { sqs }
    }
}

impl MappingSource for SqsMappingSource {
    fn name(&self) -> &'static str {
        "sqs"
    }

    fn accepts(&self, event_source_arn: &str) -> bool {
        event_source_arn.starts_with("arn:aws:sqs:") && name_of_arn(event_source_arn).is_some()
    }

    fn fill_defaults(&self, spec: &mut MappingSpec) {
        if spec.batch_size.is_none() {
            spec.batch_size = Some(10);
        }
        if spec.maximum_batching_window_in_seconds.is_none() {
            spec.maximum_batching_window_in_seconds = Some(0);
        }
    }

    fn validate(&self, spec: &MappingSpec) -> Result<(), String> {
        let Some(name) = name_of_arn(&spec.event_source_arn) else {
            return Err(format!(
                "Invalid event source ARN: {}",
                spec.event_source_arn
            ));
        };
        let Some(fifo) = self.sqs.is_fifo(name) else {
            return Err("Error occurred while ReceiveMessage. SQS Error Code: \
                 AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue \
                 does not exist or you do not have access to it."
                .to_string());
        };
        let batch = spec.batch_size.unwrap_or(10);
        let window = spec.maximum_batching_window_in_seconds.unwrap_or(0);
        if fifo && !(1..=10).contains(&batch) {
            return Err(format!(
                "BatchSize must be between 1 and 10 for FIFO queues, but was {batch}."
            ));
        }
        if !(1..=10_000).contains(&batch) {
            return Err(format!(
                "1 validation error detected: Value '{batch}' at 'batchSize' failed to satisfy \
                 constraint: Member must have value less than or equal to 10000"
            ));
        }
        if window > 300 {
            return Err(format!(
                "1 validation error detected: Value '{window}' at 'maximumBatchingWindowInSeconds' \
                 failed to satisfy constraint: Member must have value less than or equal to 300"
            ));
        }
        if batch > 10 && window < 1 {
            return Err(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is \
                 greater than 10"
                    .to_string(),
            );
        }
        if let Some(c) = spec.maximum_concurrency {
            if !(2..=1000).contains(&c) {
                return Err(format!(
                    "1 validation error detected: Value '{c}' at 'scalingConfig.maximumConcurrency' \
                     failed to satisfy constraint: Member must have value between 2 and 1000"
                ));
            }
        }
        if spec.starting_position.is_some() {
            return Err("StartingPosition is not valid for an SQS event source.".to_string());
        }
        for p in &spec.filter_patterns {
            Pattern::parse(p).map_err(|e| format!("Invalid filter pattern definition. {e}"))?;
        }
        for t in &spec.function_response_types {
            if t != "ReportBatchItemFailures" {
                return Err(format!("Invalid FunctionResponseType: {t}"));
            }
        }
        Ok(())
    }

    fn run(&self, spec: Arc<MappingSpec>, ctx: MappingContext) -> tokio::task::JoinHandle<()> {
        let sqs = self.sqs.clone();
        tokio::spawn(async move {
            let Some(queue) = name_of_arn(&spec.event_source_arn).map(str::to_string) else {
                return;
            };
            let filters: Vec<Pattern> = spec
                .filter_patterns
                .iter()
                .filter_map(|p| Pattern::parse(p).ok())
                .collect();
            let scaler = Arc::new(Scaler::new(
                spec.maximum_concurrency.unwrap_or(MAX_POLLERS).max(1),
            ));
            let (grow, mut backlog) = tokio::sync::mpsc::unbounded_channel::<()>();
            let poller = Arc::new(Poller {
                sqs: sqs.clone(),
                spec: spec.clone(),
                ctx,
                queue,
                filters,
                scaler: scaler.clone(),
                grow,
            });
            let n = scaler.floor;
            tracing::info!(mapping = %spec.uuid, queue = %poller.queue, function = %spec.function_name, pollers = n, max = scaler.cap, "sqs: mapping running");
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let p = poller.clone();
                set.spawn(async move { p.run().await });
            }
            // Aborting this task drops the set, which aborts every poller; a batch
            // in flight returns to the queue when its visibility timeout passes.
            // A poller that saw a backlog behind its batch asks for one more; the
            // growth rate may make that wait (a timer until the next token).
            let mut retry: Option<tokio::time::Instant> = None;
            loop {
                let wanted = tokio::select! {
                    Some(()) = backlog.recv() => true,
                    _ = tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)), if retry.is_some() => {
                        retry = None;
                        sqs.has_visible(&poller.queue)
                    }
                    r = set.join_next() => {
                        if r.is_none() {
                            break;
                        }
                        false
                    }
                };
                if !wanted || retry.is_some() {
                    continue;
                }
                let reserved = poller
                    .ctx
                    .dispatch
                    .function(&spec.function_name)
                    .and_then(|f| f.spec.reserved_concurrency);
                match scaler.try_grow(reserved) {
                    Grow::Grown => {
                        let p = poller.clone();
                        set.spawn(async move { p.run().await });
                        tracing::debug!(mapping = %spec.uuid, pollers = set.len(), "sqs: poller added");
                    }
                    Grow::Later(at) => retry = Some(at),
                    Grow::AtCap => {}
                }
            }
        })
    }
}

struct Poller {
    sqs: Arc<Sqs>,
    spec: Arc<MappingSpec>,
    ctx: MappingContext,
    queue: String,
    filters: Vec<Pattern>,
    scaler: Arc<Scaler>,
    /// Tells the mapping a batch left a backlog behind it (it may add a poller).
    grow: tokio::sync::mpsc::UnboundedSender<()>,
}

enum Outcome {
    /// Delete every message of the batch but these (by message id).
    Keep(BTreeSet<String>),
    /// The whole batch failed.
    Failed,
}

impl Poller {
    async fn run(&self) {
        loop {
            let Some(notify) = self.sqs.notifier(&self.queue) else {
                // The queue is gone; the mapping stays (as on Lambda) but idles
                // until it is recreated — checked when the queue's service
                // restarts the mapping.
                tracing::warn!(queue = %self.queue, mapping = %self.spec.uuid, "sqs: mapped queue does not exist");
                return;
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = self.collect(&notify).await;
            if batch.is_empty() {
                // Idle: past the floor, this poller retires.
                if self.scaler.try_shrink() {
                    return;
                }
                let far = tokio::time::Instant::now() + Duration::from_secs(3600);
                let until = self.sqs.wake_at(&self.queue, far);
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(until) => {}
                }
                continue;
            }
            // A backlog behind this batch: the mapping may add a poller.
            if self.sqs.has_visible(&self.queue) {
                let _ = self.grow.send(());
            }
            if self.process(batch).await && self.scaler.try_shrink() {
                // Throttled: fewer pollers.
                return;
            }
        }
    }

    /// Take a batch: whatever is receivable now, and for up to the batching window
    /// what arrives, until `BatchSize` (or the payload cap).
    async fn collect(&self, notify: &tokio::sync::Notify) -> Vec<Received> {
        let size = self.spec.batch_size.unwrap_or(10).max(1) as usize;
        let window = self.spec.maximum_batching_window_in_seconds.unwrap_or(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(window.into());
        let mut batch: Vec<Received> = Vec::new();
        let mut bytes = 0usize;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            while batch.len() < size && bytes < BATCH_BYTES {
                let want = (size - batch.len()).min(10);
                match self.sqs.try_receive(&self.queue, want, None) {
                    Ok(got) if !got.is_empty() => {
                        bytes += got.iter().map(|m| m.body.len()).sum::<usize>();
                        // With a visibility timeout of 0 a message comes back at
                        // once: keep its newest receipt, once, and stop there.
                        let mut again = false;
                        for m in got {
                            match batch.iter_mut().find(|b| b.message_id == m.message_id) {
                                Some(b) => {
                                    *b = m;
                                    again = true;
                                }
                                None => batch.push(m),
                            }
                        }
                        if again {
                            return batch;
                        }
                    }
                    _ => break,
                }
            }
            if batch.is_empty()
                || batch.len() >= size
                || bytes >= BATCH_BYTES
                || tokio::time::Instant::now() >= deadline
            {
                return batch;
            }
            let until = self.sqs.wake_at(&self.queue, deadline);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Invoke for one batch; whether the invoke was throttled on the way.
    async fn process(&self, batch: Vec<Received>) -> bool {
        let arn = self.spec.event_source_arn.clone();
        let region = self.ctx.region.clone();
        let mut records = Vec::with_capacity(batch.len());
        let mut filtered_out = Vec::new();
        for m in &batch {
            let rec = record(m, &arn, &region);
            if self.filters.is_empty() || self.filters.iter().any(|f| f.matches(&filter_view(&rec)))
            {
                records.push(rec);
            } else {
                filtered_out.push(m.receipt_handle.clone());
            }
        }
        for h in filtered_out {
            let _ = self.sqs.delete_message(&self.queue, &h).await;
        }
        let batch: Vec<&Received> = batch
            .iter()
            .filter(|m| {
                records
                    .iter()
                    .any(|r| r["messageId"] == m.message_id.as_str())
            })
            .collect();
        if records.is_empty() {
            return false;
        }
        let trace_id = batch
            .first()
            .and_then(|m| m.system.get("AWSTraceHeader").cloned());
        let payload = json!({ "Records": records }).to_string();
        let (outcome, throttled) = self.invoke(payload, trace_id).await;
        let keep = match outcome {
            Outcome::Failed => {
                self.ctx
                    .status
                    .set_last_result("PROBLEM: Function call failed");
                return throttled;
            }
            Outcome::Keep(k) => k,
        };
        // FIFO: a failed item fails the rest of its group in this batch.
        let mut failed_groups = BTreeSet::new();
        for m in &batch {
            let group = m.system.get("MessageGroupId").cloned();
            let failed = keep.contains(&m.message_id)
                || group.as_ref().is_some_and(|g| failed_groups.contains(g));
            if failed {
                if let Some(g) = group {
                    if m.system.contains_key("SequenceNumber") {
                        failed_groups.insert(g);
                    }
                }
                continue;
            }
            if let Err(e) = self
                .sqs
                .delete_message(&self.queue, &m.receipt_handle)
                .await
            {
                tracing::warn!(queue = %self.queue, error = %e, "sqs: delete after invoke failed");
            }
        }
        self.ctx.status.set_last_result("OK");
        throttled
    }

    /// Invoke synchronously; retry throttles while the batch is still in flight.
    async fn invoke(&self, payload: String, trace_id: Option<String>) -> (Outcome, bool) {
        let inv = Invocation {
            function: self.spec.function_name.clone(),
            qualifier: self.spec.qualifier.clone(),
            payload: bytes::Bytes::from(payload),
            trigger: nimbus_core::Trigger::Sqs,
            client_context: None,
            trace_id,
        };
        let mut backoff = Duration::from_millis(50);
        let start = tokio::time::Instant::now();
        let mut throttled = false;
        loop {
            match self.ctx.dispatch.invoke(inv.clone()).await {
                Ok(r) if r.function_error => {
                    tracing::debug!(mapping = %self.spec.uuid, "sqs: function error; batch returns to the queue");
                    return (Outcome::Failed, throttled);
                }
                Ok(r) => return (self.item_failures(&r.payload), throttled),
                Err(InvokeError::Throttled(_)) => {
                    // Keep the messages; try again while they are ours, and stop
                    // adding pollers for a while.
                    throttled = true;
                    self.scaler.throttled();
                    if start.elapsed() > Duration::from_secs(25) {
                        return (Outcome::Failed, throttled);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::warn!(mapping = %self.spec.uuid, error = %e, "sqs: invoke failed");
                    self.ctx.status.set_last_result(format!("PROBLEM: {e}"));
                    // Do not spin on a missing function: the batch returns after
                    // its visibility timeout anyway.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return (Outcome::Failed, throttled);
                }
            }
        }
    }

    /// With `ReportBatchItemFailures`, the ids the function listed; an invalid
    /// answer fails the whole batch, as on Lambda.
    fn item_failures(&self, payload: &[u8]) -> Outcome {
        if !self.spec.reports_item_failures() {
            return Outcome::Keep(BTreeSet::new());
        }
        let v: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(_) => return Outcome::Keep(BTreeSet::new()),
        };
        let Some(items) = v.get("batchItemFailures") else {
            return Outcome::Keep(BTreeSet::new());
        };
        let items = match items {
            Value::Null => return Outcome::Keep(BTreeSet::new()),
            Value::Array(a) => a,
            _ => return Outcome::Failed,
        };
        let mut keep = BTreeSet::new();
        for it in items {
            match it.get("itemIdentifier").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => {
                    keep.insert(id.to_string());
                }
                _ => return Outcome::Failed,
            }
        }
        Outcome::Keep(keep)
    }
}

/// One record of Lambda's SQS event.
pub fn record(m: &Received, arn: &str, region: &str) -> Value {
    let mut attributes = Map::new();
    for (k, v) in &m.system {
        if k != "DeadLetterQueueSourceArn" {
            attributes.insert(k.clone(), v.clone().into());
        }
    }
    let mut message_attributes = Map::new();
    for (k, a) in &m.attrs {
        let wire = attr_json(a);
        let mut v = Map::new();
        if let Some(s) = wire.get("StringValue") {
            v.insert("stringValue".into(), s.clone());
        }
        if let Some(b) = wire.get("BinaryValue") {
            v.insert("binaryValue".into(), b.clone());
        }
        v.insert("stringListValues".into(), json!([]));
        v.insert("binaryListValues".into(), json!([]));
        v.insert("dataType".into(), a.data_type.clone().into());
        message_attributes.insert(k.clone(), Value::Object(v));
    }
    json!({
        "messageId": m.message_id,
        "receiptHandle": m.receipt_handle,
        "body": m.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": m.md5_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": region,
    })
}

/// What filter patterns see: the record, with a JSON body parsed (Lambda filters
/// on the body's fields when it is JSON).
fn filter_view(rec: &Value) -> Value {
    let mut v = rec.clone();
    if let Some(body) = rec.get("body").and_then(Value::as_str) {
        if let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(body) {
            v["body"] = parsed;
        }
    }
    v
}

#[cfg(test)]
mod tests;

//! The generic stream poller: one [`MappingSource`] per registered
//! [`ShardSource`] (DynamoDB Streams, Kinesis), with everything Lambda's stream
//! pollers do written once.
//!
//! * Shards are read parents first: a shard starts once its parent and adjacent
//!   parent (when the stream still lists them) are finished, so a key's records
//!   stay in order across splits and merges.
//! * A shard without a checkpoint starts at the mapping's `StartingPosition`
//!   (`LATEST` is pinned to when the mapping first ran, recorded in `esm.db`, so a
//!   restart before the first record skips nothing); with one, right after it.
//! * Readers wake on [`ShardSource::watch`], never on a timer; a batch is sent
//!   when it holds `BatchSize` records or `MaximumBatchingWindowInSeconds` has
//!   passed since its first record.
//! * Records no `FilterCriteria` pattern matches are skipped (Kinesis: the
//!   pattern sees the `kinesis` object with `data` decoded when it is JSON;
//!   DynamoDB: the whole record).
//! * A batch is invoked synchronously through the dispatcher. Success: the
//!   checkpoint moves past it, durably, before the next batch. Function error:
//!   retried (`MaximumRetryAttempts`, -1 = until the records expire), split in two
//!   first when `BisectBatchOnFunctionError` (a split spends no retry), records
//!   older than `MaximumRecordAgeInSeconds` dropped; a batch given up goes to
//!   `DestinationConfig.OnFailure` as AWS's failure record. Throttles and a
//!   missing function are retried without spending an attempt.
//! * `ReportBatchItemFailures`: the records before the lowest reported sequence
//!   number are checkpointed and the batch is retried from it; an unreadable or
//!   unknown identifier fails the whole batch, as on Lambda.
//! * `ParallelizationFactor` N: a batch's records are split by partition key into
//!   N lanes invoked concurrently (each lane keeps its keys' order); the
//!   checkpoint moves once every lane is done.
//! * `TumblingWindowInSeconds`: records are grouped into windows by arrival time;
//!   each invoke gets `window`, `state` (the previous response's `state`),
//!   `shardId`, `eventSourceARN`; a window closes with an invoke whose
//!   `isFinalInvokeForWindow` is true. The open window's `state` is durable with
//!   each checkpoint (`esm.db`), so a restart mid-window carries it on.

use crate::store::{Checkpoint, Store, StoredWindow};
use base64::Engine;
use bytes::Bytes;
use nimbus_dispatch::{Invocation, InvokeError};
use nimbus_triggers::esm::{
    MappingContext, MappingSource, MappingSpec, ShardInfo, ShardPosition, ShardRecord, ShardSource,
};
use nimbus_triggers::sinks::Delivery;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The stream poller over one [`ShardSource`].
pub struct StreamSource {
    shards: Arc<dyn ShardSource>,
    store: Store,
}

impl StreamSource {
    pub fn new(shards: Arc<dyn ShardSource>, store: Store) -> Self {
        Self { shards, store }
    }
}

/// Longest wait between retries of a failing batch.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);

fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(10))
        .min(BACKOFF_MAX)
}

impl MappingSource for StreamSource {
    fn name(&self) -> &'static str {
        self.shards.name()
    }

    fn accepts(&self, event_source_arn: &str) -> bool {
        self.shards.accepts(event_source_arn)
    }

    fn fill_defaults(&self, spec: &mut MappingSpec) {
        spec.batch_size.get_or_insert(100);
        spec.maximum_batching_window_in_seconds.get_or_insert(0);
        spec.parallelization_factor.get_or_insert(1);
        spec.maximum_retry_attempts.get_or_insert(-1);
        spec.maximum_record_age_in_seconds.get_or_insert(-1);
        spec.bisect_batch_on_function_error.get_or_insert(false);
        spec.tumbling_window_in_seconds.get_or_insert(0);
    }

    fn validate(&self, spec: &MappingSpec) -> Result<(), String> {
        let Some(pos) = spec.starting_position.as_deref() else {
            return Err("1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: Member must not be null".into());
        };
        if pos == "AT_TIMESTAMP" {
            if self.shards.name() == "dynamodb" {
                return Err(
                    "Unsupported starting position for a DynamoDB stream: AT_TIMESTAMP".into(),
                );
            }
            if spec.starting_position_timestamp.is_none() {
                return Err(
                    "StartingPositionTimestamp is required when StartingPosition is AT_TIMESTAMP"
                        .into(),
                );
            }
        } else if spec.starting_position_timestamp.is_some() {
            return Err(
                "StartingPositionTimestamp is only valid when StartingPosition is AT_TIMESTAMP"
                    .into(),
            );
        }
        if spec.maximum_concurrency.is_some() {
            return Err(
                "ScalingConfig is not supported for Kinesis and DynamoDB event sources".into(),
            );
        }
        if !self.shards.stream_exists(&spec.event_source_arn) {
            return Err(format!("Stream not found: {}", spec.event_source_arn));
        }
        Ok(())
    }

    fn run(&self, spec: Arc<MappingSpec>, ctx: MappingContext) -> tokio::task::JoinHandle<()> {
        let filters = spec
            .filter_patterns
            .iter()
            .filter_map(|p| nimbus_patterns::Pattern::parse(p).ok())
            .collect();
        let poller = Arc::new(Poller {
            spec,
            ctx,
            shards: self.shards.clone(),
            store: self.store.clone(),
            filters,
            written: Default::default(),
        });
        tokio::spawn(poller.run())
    }

    fn forget(&self, uuid: &str) {
        if let Err(e) = self.store.forget_progress(uuid) {
            tracing::warn!(uuid, error = %e, "cannot forget a deleted mapping's checkpoints");
        }
    }
}

/// One running stream mapping.
struct Poller {
    spec: Arc<MappingSpec>,
    ctx: MappingContext,
    shards: Arc<dyn ShardSource>,
    store: Store,
    filters: Vec<nimbus_patterns::Pattern>,
    /// The checkpoint last written per shard (a batch's lane and its end may
    /// name the same record: one fsync, not two).
    written: std::sync::Mutex<HashMap<String, String>>,
}

/// What one invoke of a batch came to.
enum Outcome {
    /// Processed whole; the response (for a tumbling window's `state`).
    Ok(Value),
    /// `ReportBatchItemFailures`: the records from this index on failed.
    Partial(usize, Value),
    /// The function failed (or its partial answer was unreadable).
    FunctionError(FailureInfo),
    /// Nothing ran: throttled, missing function, platform trouble.
    Unavailable(String),
}

/// The invoke's context for a failure record.
#[derive(Clone, Default)]
struct FailureInfo {
    request_id: String,
    executed_version: String,
    function_error: bool,
}

/// An open tumbling window of a shard.
struct Window {
    start_ms: i64,
    state: Value,
}

impl Poller {
    fn arn(&self) -> &str {
        &self.spec.event_source_arn
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn problem(&self, what: &str) {
        self.ctx.status.set_last_result(format!("PROBLEM: {what}"));
    }

    async fn run(self: Arc<Self>) {
        let uuid = self.spec.uuid.clone();
        let start_ms = loop {
            let u = uuid.clone();
            match self
                .blocking(move |s| s.start_ms(&u, nimbus_core::now_ms()))
                .await
            {
                Ok(ms) => break ms,
                Err(e) => {
                    tracing::error!(uuid = %uuid, error = %e, "cannot read the mapping's start");
                    tokio::time::sleep(BACKOFF_MAX).await;
                }
            }
        };
        let start = match self.spec.starting_position.as_deref() {
            Some("TRIM_HORIZON") => ShardPosition::TrimHorizon,
            Some("AT_TIMESTAMP") => ShardPosition::AtTimestamp(
                (self.spec.starting_position_timestamp.unwrap_or(0.0) * 1000.0) as i64,
            ),
            _ => ShardPosition::AtTimestamp(start_ms),
        };
        let mut rx = self.shards.watch(self.arn());
        let mut watching = true;
        let mut workers: JoinSet<(String, bool)> = JoinSet::new();
        let mut running: HashSet<String> = HashSet::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut checkpoints: HashMap<String, Checkpoint> = {
            let u = uuid.clone();
            self.blocking(move |s| s.checkpoints(&u))
                .await
                .unwrap_or_default()
        };
        for (id, cp) in &checkpoints {
            if cp.done {
                done.insert(id.clone());
            }
        }
        loop {
            rx.borrow_and_update();
            match self.shards.shards(self.arn()).await {
                Ok(list) => {
                    let known: HashSet<&str> = list.iter().map(|s| s.shard_id.as_str()).collect();
                    for sh in &list {
                        if running.contains(&sh.shard_id) || done.contains(&sh.shard_id) {
                            continue;
                        }
                        let parents_done = [&sh.parent_shard_id, &sh.adjacent_parent_shard_id]
                            .into_iter()
                            .flatten()
                            .filter(|p| known.contains(p.as_str()))
                            .all(|p| done.contains(p));
                        if !parents_done {
                            continue;
                        }
                        let pos = match checkpoints
                            .remove(&sh.shard_id)
                            .and_then(|c| c.sequence_number)
                        {
                            Some(seq) => ShardPosition::AfterSequence(seq),
                            None => start.clone(),
                        };
                        running.insert(sh.shard_id.clone());
                        let me = self.clone();
                        let id = sh.shard_id.clone();
                        workers.spawn(async move {
                            let finished = me.clone().read_shard(id.clone(), pos).await;
                            (id, finished)
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(uuid = %uuid, stream = %self.arn(), error = %e, "cannot list the stream's shards");
                    self.problem(&e);
                    tokio::time::sleep(BACKOFF_MAX).await;
                    continue;
                }
            }
            tokio::select! {
                changed = rx.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                    }
                }
                Some(res) = workers.join_next(), if !workers.is_empty() => {
                    if let Ok((id, finished)) = res {
                        running.remove(&id);
                        if finished {
                            done.insert(id);
                        }
                    }
                }
                _ = tokio::time::sleep(BACKOFF_MAX), if !watching && workers.is_empty() => {}
            }
        }
    }

    /// Whether the shard is closed (no record will be added).
    async fn closed(&self, shard_id: &str) -> bool {
        match self.shards.shards(self.arn()).await {
            Ok(list) => list
                .iter()
                .find(|s| s.shard_id == shard_id)
                .is_none_or(|s: &ShardInfo| s.ending_sequence_number.is_some()),
            Err(_) => false,
        }
    }

    async fn read(
        &self,
        shard_id: &str,
        pos: &ShardPosition,
        limit: usize,
    ) -> Option<Vec<ShardRecord>> {
        match self
            .shards
            .read(self.arn(), shard_id, pos.clone(), limit)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(uuid = %self.spec.uuid, shard = shard_id, error = %e, "cannot read the shard");
                self.problem(&e);
                tokio::time::sleep(BACKOFF_MAX).await;
                None
            }
        }
    }

    /// Read one shard to its end (`true`: closed and fully processed) or forever.
    async fn read_shard(self: Arc<Self>, shard_id: String, mut pos: ShardPosition) -> bool {
        let batch_size = self.spec.batch_size.unwrap_or(100).max(1) as usize;
        let window =
            Duration::from_secs(self.spec.maximum_batching_window_in_seconds.unwrap_or(0) as u64);
        let tumbling_ms = self.spec.tumbling_window_in_seconds.unwrap_or(0) as i64 * 1000;
        let mut tumbling: Option<Window> = None;
        if tumbling_ms > 0 {
            // A window a stop interrupted goes on with its state.
            let (u, id) = (self.spec.uuid.clone(), shard_id.clone());
            match self.blocking(move |s| s.window(&u, &id)).await {
                Ok(Some(w)) => {
                    tumbling = Some(Window {
                        start_ms: w.start_ms,
                        state: serde_json::from_str(&w.state).unwrap_or_else(|_| json!({})),
                    })
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(uuid = %self.spec.uuid, shard = %shard_id, error = %e, "cannot read the tumbling window's state")
                }
            }
        }
        let mut rx = self.shards.watch(self.arn());
        loop {
            rx.borrow_and_update();
            let Some(mut recs) = self.read(&shard_id, &pos, batch_size).await else {
                continue;
            };
            if recs.is_empty() {
                // Closed, and nothing after the position: the shard is done (the
                // check comes before a last read, so no record lands in between).
                if self.closed(&shard_id).await {
                    match self.read(&shard_id, &pos, batch_size).await {
                        Some(r) if r.is_empty() => {
                            if let Some(w) = tumbling.take() {
                                self.final_invoke(&shard_id, w, tumbling_ms).await;
                            }
                            let cp = Checkpoint {
                                sequence_number: match &pos {
                                    ShardPosition::AfterSequence(s) => Some(s.clone()),
                                    _ => None,
                                },
                                done: true,
                            };
                            let (u, id) = (self.spec.uuid.clone(), shard_id.clone());
                            if let Err(e) =
                                self.blocking(move |s| s.set_checkpoint(&u, &id, &cp)).await
                            {
                                tracing::error!(error = %e, "cannot checkpoint a finished shard");
                            }
                            tracing::debug!(uuid = %self.spec.uuid, shard = %shard_id, "shard finished");
                            return true;
                        }
                        Some(r) => recs = r,
                        None => continue,
                    }
                } else {
                    // Idle: wait for records, or for an open tumbling window's end.
                    let wait = tumbling.as_ref().map(|w| {
                        let end = w.start_ms + tumbling_ms;
                        Duration::from_millis((end - nimbus_core::now_ms()).max(0) as u64)
                    });
                    match wait {
                        Some(d) => {
                            if tokio::time::timeout(d, rx.changed()).await.is_err() {
                                if let Some(w) = tumbling.take() {
                                    self.final_invoke(&shard_id, w, tumbling_ms).await;
                                }
                            }
                        }
                        None => {
                            if rx.changed().await.is_err() {
                                // The stream is gone: nothing will wake us.
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                    continue;
                }
            }
            // Batching window: wait for a full batch, at most the window.
            if recs.len() < batch_size && !window.is_zero() {
                let deadline = tokio::time::Instant::now() + window;
                while recs.len() < batch_size {
                    match tokio::time::timeout_at(deadline, rx.changed()).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                    let after = ShardPosition::AfterSequence(
                        recs.last().expect("non-empty").sequence_number.clone(),
                    );
                    if let Some(more) = self.read(&shard_id, &after, batch_size - recs.len()).await
                    {
                        recs.extend(more);
                    }
                }
            }
            let last = recs.last().expect("non-empty").sequence_number.clone();
            self.process(&shard_id, recs, &mut tumbling, tumbling_ms)
                .await;
            self.checkpoint(&shard_id, &last).await;
            pos = ShardPosition::AfterSequence(last);
        }
    }

    async fn checkpoint(&self, shard_id: &str, seq: &str) {
        self.checkpoint_with(shard_id, seq, None).await
    }

    /// Checkpoint at `seq`, with the shard's open tumbling window when given (one
    /// transaction).
    async fn checkpoint_with(&self, shard_id: &str, seq: &str, window: Option<&Window>) {
        let window = window.map(|w| StoredWindow {
            start_ms: w.start_ms,
            state: w.state.to_string(),
        });
        let written = |w: &std::sync::Mutex<HashMap<String, String>>| {
            w.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(shard_id)
                .is_some_and(|s| s == seq)
        };
        if window.is_none() && written(&self.written) {
            return;
        }
        let cp = Checkpoint {
            sequence_number: Some(seq.to_string()),
            done: false,
        };
        let (u, id) = (self.spec.uuid.clone(), shard_id.to_string());
        // A checkpoint that cannot be written is retried: moving on without it
        // would be fine for progress, but a restart would redo more.
        for attempt in 0..5 {
            let (u, id, cp, w) = (u.clone(), id.clone(), cp.clone(), window.clone());
            let wrote = self
                .blocking(move |s| match &w {
                    Some(w) => s.set_checkpoint_and_window(&u, &id, &cp, w),
                    None => s.set_checkpoint(&u, &id, &cp),
                })
                .await;
            match wrote {
                Ok(()) => {
                    self.written
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(shard_id.to_string(), seq.to_string());
                    return;
                }
                Err(e) => {
                    tracing::error!(uuid = %self.spec.uuid, shard = shard_id, error = %e, "cannot write the checkpoint");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// What a filter pattern sees of a record.
    fn filter_view(&self, r: &ShardRecord) -> Value {
        if self.shards.name() == "kinesis" {
            let mut k = r
                .event_record
                .get("kinesis")
                .cloned()
                .unwrap_or(Value::Null);
            if let Some(data) = k.get("data").and_then(Value::as_str) {
                if let Some(v) = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                {
                    k["data"] = v;
                }
            }
            k
        } else {
            r.event_record.clone()
        }
    }

    fn wanted(&self, r: &ShardRecord) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let view = self.filter_view(r);
        self.filters.iter().any(|p| p.matches(&view))
    }

    /// Process one batch to the end: every record is either handled by the
    /// function, filtered out, or given up (to the on-failure destination).
    async fn process(
        self: &Arc<Self>,
        shard_id: &str,
        recs: Vec<ShardRecord>,
        tumbling: &mut Option<Window>,
        tumbling_ms: i64,
    ) {
        let recs: Vec<ShardRecord> = recs.into_iter().filter(|r| self.wanted(r)).collect();
        if recs.is_empty() {
            return;
        }
        if tumbling_ms > 0 {
            // One window at a time, in arrival order.
            let mut groups: Vec<(i64, Vec<ShardRecord>)> = Vec::new();
            for r in recs {
                let start =
                    r.approximate_arrival_ms - r.approximate_arrival_ms.rem_euclid(tumbling_ms);
                match groups.last_mut() {
                    Some((s, g)) if *s == start => g.push(r),
                    _ => groups.push((start, vec![r])),
                }
            }
            for (start, group) in groups {
                if tumbling.as_ref().is_some_and(|w| w.start_ms != start) {
                    let w = tumbling.take().expect("checked");
                    self.final_invoke(shard_id, w, tumbling_ms).await;
                }
                let w = tumbling.get_or_insert(Window {
                    start_ms: start,
                    state: json!({}),
                });
                self.lane(shard_id, group, true, Some((w, tumbling_ms)))
                    .await;
            }
            return;
        }
        let n = self.spec.parallelization_factor.unwrap_or(1).clamp(1, 10) as usize;
        if n == 1 {
            self.lane(shard_id, recs, true, None).await;
            return;
        }
        let mut lanes: Vec<Vec<ShardRecord>> = vec![Vec::new(); n];
        for r in recs {
            lanes[lane_of(&r.partition_key, n)].push(r);
        }
        let mut set = JoinSet::new();
        for lane in lanes.into_iter().filter(|l| !l.is_empty()) {
            let me = self.clone();
            let id = shard_id.to_string();
            set.spawn(async move { me.lane(&id, lane, false, None).await });
        }
        while set.join_next().await.is_some() {}
    }

    fn exhausted(&self, attempts: u32) -> bool {
        let max = self.spec.maximum_retry_attempts.unwrap_or(-1);
        max >= 0 && attempts as i64 > max
    }

    /// Invoke a lane's records until each is done. `progressive`: checkpoint
    /// after each part that succeeded (a lane alone on its shard).
    async fn lane(
        &self,
        shard_id: &str,
        recs: Vec<ShardRecord>,
        progressive: bool,
        mut window: Option<(&mut Window, i64)>,
    ) {
        let mut pending: VecDeque<(Vec<ShardRecord>, u32)> = VecDeque::from([(recs, 0)]);
        while let Some((mut batch, mut attempts)) = pending.pop_front() {
            let mut unavailable = 0u32;
            loop {
                let max_age = self.spec.maximum_record_age_in_seconds.unwrap_or(-1);
                if max_age >= 0 {
                    let cutoff = nimbus_core::now_ms() - max_age * 1000;
                    let (old, fresh): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .partition(|r| r.approximate_arrival_ms < cutoff);
                    if !old.is_empty() {
                        self.give_up(shard_id, &old, "RecordAgeExceeded", attempts, None)
                            .await;
                    }
                    batch = fresh;
                    if batch.is_empty() {
                        break;
                    }
                }
                let win = window.as_mut().map(|(w, ms)| (&mut **w, *ms));
                match self.invoke(shard_id, &batch, win, false).await {
                    Outcome::Ok(resp) => {
                        if let Some((w, _)) = window.as_mut() {
                            if let Some(s) = resp.get("state") {
                                w.state = s.clone();
                            }
                        }
                        self.ctx.status.set_last_result("OK");
                        if progressive {
                            let last = &batch.last().expect("non-empty").sequence_number;
                            let w = window.as_ref().map(|p| &*p.0);
                            self.checkpoint_with(shard_id, last, w).await;
                        }
                        break;
                    }
                    Outcome::Partial(idx, resp) => {
                        if let Some((w, _)) = window.as_mut() {
                            if let Some(s) = resp.get("state") {
                                w.state = s.clone();
                            }
                        }
                        if progressive && idx > 0 {
                            let seq = batch[idx - 1].sequence_number.clone();
                            let w = window.as_ref().map(|p| &*p.0);
                            self.checkpoint_with(shard_id, &seq, w).await;
                        }
                        batch = batch.split_off(idx);
                        attempts += 1;
                        self.problem("Function call failed");
                        if self.exhausted(attempts) {
                            self.give_up(
                                shard_id,
                                &batch,
                                "RetryAttemptsExhausted",
                                attempts,
                                None,
                            )
                            .await;
                            break;
                        }
                        tokio::time::sleep(backoff(attempts)).await;
                    }
                    Outcome::FunctionError(info) => {
                        self.problem("Function call failed");
                        if self.spec.bisect_batch_on_function_error == Some(true) && batch.len() > 1
                        {
                            // A split spends no retry.
                            let second = batch.split_off(batch.len() / 2);
                            pending.push_front((second, attempts));
                            pending.push_front((batch, attempts));
                            break;
                        }
                        attempts += 1;
                        if self.exhausted(attempts) {
                            self.give_up(
                                shard_id,
                                &batch,
                                "RetryAttemptsExhausted",
                                attempts,
                                Some(&info),
                            )
                            .await;
                            break;
                        }
                        tokio::time::sleep(backoff(attempts)).await;
                    }
                    Outcome::Unavailable(why) => {
                        self.problem(&why);
                        unavailable += 1;
                        tokio::time::sleep(backoff(unavailable)).await;
                    }
                }
            }
        }
    }

    /// Invoke the function with `batch` (and a tumbling window's context).
    async fn invoke(
        &self,
        shard_id: &str,
        batch: &[ShardRecord],
        window: Option<(&mut Window, i64)>,
        is_final: bool,
    ) -> Outcome {
        let records: Vec<&Value> = batch.iter().map(|r| &r.event_record).collect();
        let mut event = json!({ "Records": records });
        if let Some((w, ms)) = &window {
            event["window"] = json!({
                "start": nimbus_core::format_ms(w.start_ms, "Z"),
                "end": nimbus_core::format_ms(w.start_ms + *ms, "Z"),
            });
            event["state"] = w.state.clone();
            event["shardId"] = shard_id.into();
            event["eventSourceARN"] = self.arn().into();
            event["isFinalInvokeForWindow"] = is_final.into();
            event["isWindowTerminatedEarly"] = false.into();
        }
        let inv = Invocation {
            function: self.spec.function_name.clone(),
            qualifier: self.spec.qualifier.clone(),
            payload: Bytes::from(event.to_string()),
            trigger: nimbus_core::Trigger::Event,
            client_context: None,
            trace_id: None,
        };
        let res = match self.ctx.dispatch.invoke(inv).await {
            Ok(r) => r,
            Err(InvokeError::NotFound(_)) => {
                return Outcome::Unavailable("Function not found".into())
            }
            Err(InvokeError::Throttled(_)) => {
                return Outcome::Unavailable("Function throttled".into())
            }
            Err(e) => return Outcome::Unavailable(e.to_string()),
        };
        let info = FailureInfo {
            request_id: res.request_id.clone(),
            executed_version: res.executed_version.clone(),
            function_error: res.function_error,
        };
        if res.function_error {
            tracing::info!(uuid = %self.spec.uuid, shard = shard_id, request_id = %res.request_id, records = batch.len(), "stream batch failed");
            return Outcome::FunctionError(info);
        }
        let resp: Value = serde_json::from_slice(&res.payload).unwrap_or(Value::Null);
        if !self.spec.reports_item_failures() {
            return Outcome::Ok(resp);
        }
        match first_failed(&resp, batch) {
            Ok(None) => Outcome::Ok(resp),
            Ok(Some(idx)) => Outcome::Partial(idx, resp),
            Err(()) => Outcome::FunctionError(info),
        }
    }

    /// Close a tumbling window: one invoke with no records and
    /// `isFinalInvokeForWindow` (retried a few times, then dropped).
    async fn final_invoke(&self, shard_id: &str, mut w: Window, ms: i64) {
        let mut closed = false;
        for attempt in 0..4 {
            match self.invoke(shard_id, &[], Some((&mut w, ms)), true).await {
                Outcome::Ok(_) | Outcome::Partial(..) => {
                    closed = true;
                    break;
                }
                _ => tokio::time::sleep(backoff(attempt)).await,
            }
        }
        if !closed {
            tracing::warn!(uuid = %self.spec.uuid, shard = shard_id, "the final invoke of a tumbling window failed; its state is dropped");
        }
        let (u, id, start) = (self.spec.uuid.clone(), shard_id.to_string(), w.start_ms);
        if let Err(e) = self.blocking(move |s| s.clear_window(&u, &id, start)).await {
            tracing::error!(uuid = %self.spec.uuid, shard = shard_id, error = %e, "cannot forget a closed tumbling window");
        }
    }

    /// Records given up: their batch's failure record to the on-failure
    /// destination, retried while the target says so.
    async fn give_up(
        &self,
        shard_id: &str,
        batch: &[ShardRecord],
        condition: &str,
        attempts: u32,
        info: Option<&FailureInfo>,
    ) {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let Some(dest) = self.spec.on_failure_destination.clone() else {
            tracing::warn!(uuid = %self.spec.uuid, shard = shard_id, records = batch.len(), condition, "stream records discarded: no on-failure destination");
            return;
        };
        let info = info.cloned().unwrap_or_default();
        let batch_info = json!({
            "shardId": shard_id,
            "startSequenceNumber": first.sequence_number,
            "endSequenceNumber": last.sequence_number,
            "approximateArrivalOfFirstRecord": nimbus_core::format_ms(first.approximate_arrival_ms, "Z"),
            "approximateArrivalOfLastRecord": nimbus_core::format_ms(last.approximate_arrival_ms, "Z"),
            "batchSize": batch.len(),
            "streamArn": self.arn(),
        });
        let qualifier = self.spec.qualifier.as_deref().unwrap_or("$LATEST");
        let mut response_context = json!({
            "statusCode": 200,
            "executedVersion": if info.executed_version.is_empty() { qualifier.to_string() } else { info.executed_version.clone() },
        });
        if info.function_error {
            response_context["functionError"] = "Unhandled".into();
        }
        let mut record = json!({
            "requestContext": {
                "requestId": if info.request_id.is_empty() { nimbus_core::new_request_id() } else { info.request_id.clone() },
                "functionArn": nimbus_core::function_arn(&self.ctx.region, &self.spec.function_name, self.spec.qualifier.as_deref()),
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": nimbus_core::format_ms(nimbus_core::now_ms(), "Z"),
        });
        let key = if self.shards.name() == "kinesis" {
            "KinesisBatchInfo"
        } else {
            "DDBStreamBatchInfo"
        };
        record[key] = batch_info;
        let body = record.to_string();
        for attempt in 0..20 {
            let delivery = Delivery::Json {
                body: body.clone(),
                source: "aws.lambda".into(),
                detail_type: "Lambda Function Invocation Result - Failure".into(),
                group_id: None,
                deduplication_id: None,
                partition_key: None,
                trace_header: None,
                resources: Vec::new(),
            };
            match self.ctx.sinks.deliver(&dest, delivery).await {
                Ok(id) => {
                    tracing::info!(uuid = %self.spec.uuid, shard = shard_id, destination = %dest, message_id = %id, records = batch.len(), condition, "stream batch sent to the on-failure destination");
                    return;
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(destination = %dest, error = %e, "on-failure destination unavailable; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    tracing::error!(destination = %dest, error = %e, "cannot deliver to the on-failure destination; records dropped");
                    return;
                }
            }
        }
        tracing::error!(destination = %dest, "on-failure destination unavailable too long; records dropped");
    }
}

/// A partition key's lane among `n` (FNV-1a: stable across restarts).
fn lane_of(key: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// `ReportBatchItemFailures`: the index of the lowest failed record (`None`:
/// all succeeded; `Err`: the answer names no record of the batch — the whole
/// batch failed).
fn first_failed(resp: &Value, batch: &[ShardRecord]) -> Result<Option<usize>, ()> {
    let Some(items) = resp.get("batchItemFailures") else {
        return Ok(None);
    };
    let items = match items {
        Value::Null => return Ok(None),
        Value::Array(a) if a.is_empty() => return Ok(None),
        Value::Array(a) => a,
        _ => return Err(()),
    };
    let mut lowest: Option<usize> = None;
    for it in items {
        let id = it
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(())?;
        let idx = batch
            .iter()
            .position(|r| r.sequence_number == id)
            .ok_or(())?;
        lowest = Some(lowest.map_or(idx, |l| l.min(idx)));
    }
    Ok(lowest)
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

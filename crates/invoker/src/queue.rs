//! The durable async invocation queue (Lambda's `InvocationType=Event`).
//!
//! * An event is in `events.db` (fsynced, group-committed) before the caller's 202.
//! * The queue lives in the store, not in memory. Per function, the dispatcher keeps
//!   a bounded window of the next events' metadata (id, due time, age, attempts; no
//!   payload), paged in due order from the store's `(function, due_ms, id)` index; a
//!   payload is read only when its event is about to run. With a million events
//!   queued, memory holds at most [`WINDOW`] entries per function with a backlog
//!   (plus those running).
//! * A due event runs under the function's concurrency limits. A throttled function
//!   is parked: none of its events is looked at until one of its runs finishes (or,
//!   when the cap is the account's, any run), or after a backoff when the capacity is
//!   held by synchronous traffic the queue does not see. No tick does work in
//!   proportion to the queue.
//! * The drain obeys the pool's scale-up policy: at most one run per CPU may be
//!   waiting for an instance that is not yet up (across all functions), so a backlog
//!   (after a restart, say) grows the pool as live traffic does, a CPU's worth of cold
//!   starts at a time, instead of cold-starting an instance per queued event.
//! * A function error is retried up to `MaximumRetryAttempts` (default 2) after
//!   `retry_base × attempt` (Lambda waits about 1 then 2 minutes; the base is a server
//!   setting so tests run in seconds); an event older than `MaximumEventAgeInSeconds`
//!   is not tried again. An init that timed out while the host was overloaded (its
//!   CPUs saturated or a CPU's worth of other inits in flight) is the platform's
//!   fault, not the function's: it is tried again soon and does not count.
//! * `OnSuccess` / `OnFailure` destinations receive Lambda's destination record,
//!   and `DeadLetterConfig` the payload of an event given up. What a finished
//!   event owes is written to the durable outbox in the transaction that deletes
//!   the event and delivered from there (module `outbox`): a `kill -9` between
//!   the end of an invocation and the delivery loses nothing.
//! * Delivery is at-least-once: an event that was running when the server died is
//!   run again after restart (the request id stays the same, as on Lambda).

mod outbox;

use crate::{Invocation, InvokeError, Invoker};
use bytes::Bytes;
use nimbus_core::{function_arn, limits, EventInvokeConfig, Outcome, Trigger};
use nimbus_store::{EventMeta, EventQueueStore, QueuedEvent};
use nimbus_telemetry::metrics::{DestinationKind, DropReason};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
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
    /// An SQS queue, an SNS topic or an EventBridge bus, reached through the
    /// services' sinks.
    Service(String),
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
            ("sqs" | "sns", _) => Ok(Destination::Service(arn.to_string())),
            ("events", Some(r)) if r.starts_with("event-bus/") => {
                Ok(Destination::Service(arn.to_string()))
            }
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

/// Most event entries the dispatcher keeps in memory per function (not counting
/// those running); refilled from the store when half of it has gone.
pub const WINDOW: usize = 256;

/// First wait of a parked (throttled) function before it is looked at again when
/// nothing wakes it sooner; doubles up to [`PARK_MAX`].
const PARK_MIN: Duration = Duration::from_millis(20);
const PARK_MAX: Duration = Duration::from_millis(500);

/// How soon an init that failed only because the host was overloaded is retried,
/// and how many such retries an event gets for free before they count.
const OVERLOAD_RETRY: Duration = Duration::from_secs(1);
const MAX_OVERLOAD_RETRIES: u32 = 3;

/// How soon an event that could not run for the platform's sake is tried again.
const PLATFORM_RETRY: Duration = Duration::from_secs(1);

type Key = (i64, i64);

/// Why a function is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Park {
    /// Its own reserved concurrency is taken: one of its runs must finish.
    Own,
    /// The account's capacity, or the drain's budget of cold starts: any run
    /// finishing may free it.
    Shared,
}

/// One function's share of the dispatcher's memory.
#[derive(Default)]
struct FnQueue {
    /// Its events in the store (queued and running).
    depth: u64,
    /// The next events not running, by (due time, id).
    window: BTreeMap<Key, EventMeta>,
    /// Every stored event of the function with a key up to `cursor` is in `window`
    /// or running; `exhausted`: every stored event is.
    cursor: Option<Key>,
    exhausted: bool,
    /// The largest key ever held in memory.
    hi: Option<Key>,
    /// A window read is under way; events written meanwhile past the cursor wait in
    /// `stash` to be merged with its answer.
    refilling: bool,
    stash: Vec<EventMeta>,
    /// Its events being run: id → enqueued time.
    running: HashMap<i64, i64>,
    parked: Option<(i64, Park)>,
    backoff: Duration,
}

impl FnQueue {
    fn holds(&self, key: Key) -> bool {
        self.exhausted || self.cursor.is_some_and(|c| key <= c)
    }

    /// An event that is (again) waiting: into the window when it falls in the part of
    /// the queue memory covers, else it stays in the store only.
    fn offer(&mut self, meta: EventMeta) {
        let key = (meta.due_ms, meta.id);
        if self.holds(key) {
            self.window.insert(key, meta);
            self.hi = self.hi.max(Some(key));
            if self.exhausted && self.window.len() > WINDOW {
                // Memory no longer holds the whole backlog: from here on it holds the
                // events up to the largest it has seen, the rest is paged in.
                self.exhausted = false;
                self.cursor = self.hi;
            }
        } else if self.refilling {
            self.stash.push(meta);
        }
    }

    /// Merge a window read (asked for with `want` rows) into memory.
    fn merge(&mut self, rows: Vec<EventMeta>, want: usize) {
        self.refilling = false;
        if rows.len() < want {
            self.exhausted = true;
        }
        if let Some(last) = rows.last() {
            if !self.exhausted {
                self.cursor = Some((last.due_ms, last.id));
            }
        }
        for m in rows.into_iter().chain(std::mem::take(&mut self.stash)) {
            if self.running.contains_key(&m.id) {
                continue;
            }
            let key = (m.due_ms, m.id);
            if self.holds(key) {
                self.window.insert(key, m);
                self.hi = self.hi.max(Some(key));
            }
        }
    }

    fn unpark(&mut self) {
        self.parked = None;
    }

    fn park(&mut self, now: i64, why: Park) {
        self.backoff = (self.backoff * 2).clamp(PARK_MIN, PARK_MAX);
        self.parked = Some((now + self.backoff.as_millis() as i64, why));
    }

    fn idle(&self) -> bool {
        self.depth == 0 && !self.refilling && self.running.is_empty()
    }
}

#[derive(Default)]
struct State {
    fns: HashMap<String, FnQueue>,
    /// Free retries spent per event on inits that timed out on an overloaded host.
    overload_retries: HashMap<i64, u32>,
}

struct Inner {
    store: Arc<dyn EventQueueStore>,
    invoker: Invoker,
    settings: QueueSettings,
    state: Mutex<State>,
    wake: Notify,
    cpus: usize,
    outbox: Mutex<outbox::Outbox>,
    outbox_wake: Notify,
}

/// The async queue. Cheap to clone.
#[derive(Clone)]
pub struct AsyncQueue {
    inner: Arc<Inner>,
}

impl AsyncQueue {
    /// Find what is queued (counts per function, not the events) and start
    /// dispatching.
    pub fn start(
        store: impl EventQueueStore,
        invoker: Invoker,
        settings: QueueSettings,
    ) -> Result<Self, InvokeError> {
        let backlog = store.backlog()?;
        let total: u64 = backlog.iter().map(|(_, n)| n).sum();
        if total > 0 {
            tracing::info!(
                events = total,
                functions = backlog.len(),
                "resuming queued async events"
            );
        }
        let owed = store.outbox()?;
        if !owed.is_empty() {
            tracing::info!(
                deliveries = owed.len(),
                "resuming undelivered destination records and dead letters"
            );
        }
        let fns = backlog
            .into_iter()
            .map(|(f, depth)| {
                (
                    f,
                    FnQueue {
                        depth,
                        ..FnQueue::default()
                    },
                )
            })
            .collect();
        let q = AsyncQueue {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                invoker,
                settings,
                state: Mutex::new(State {
                    fns,
                    overload_retries: HashMap::new(),
                }),
                wake: Notify::new(),
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                outbox: Mutex::new(outbox::Outbox::default()),
                outbox_wake: Notify::new(),
            }),
        };
        q.take_outbox(owed);
        let d = q.clone();
        tokio::spawn(async move { d.dispatch().await });
        let o = q.clone();
        tokio::spawn(async move { o.drain_outbox().await });
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
        let ev = QueuedEvent {
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
        let function = ev.function.clone();
        let id = self.inner.store.insert(vec![ev]).await?[0];
        invoker
            .telemetry()
            .metrics()
            .async_function(&function)
            .enqueued();
        {
            let mut st = self.inner.state.lock().unwrap();
            let fresh = !st.fns.contains_key(&function);
            let fq = st.fns.entry(function).or_default();
            if fresh {
                // Nothing of it was queued: memory holds its whole backlog.
                fq.exhausted = true;
            }
            fq.depth += 1;
            fq.offer(EventMeta {
                id,
                due_ms: now,
                enqueued_ms: now,
                attempts: 0,
            });
        }
        self.inner.wake.notify_one();
        Ok(request_id)
    }

    /// Backlog of one function (queued plus running).
    pub fn stats(&self, function: &str) -> QueueStats {
        let depth = {
            let st = self.inner.state.lock().unwrap();
            st.fns.get(function).map_or(0, |f| f.depth)
        };
        self.stats_of(function, depth)
    }

    fn stats_of(&self, function: &str, depth: u64) -> QueueStats {
        let mut st = QueueStats {
            depth,
            oldest_age_ms: 0,
        };
        if depth > 0 {
            match self.inner.store.oldest_enqueued(function) {
                Ok(Some(oldest)) => st.oldest_age_ms = (nimbus_core::now_ms() - oldest).max(0),
                Ok(None) => {}
                Err(e) => tracing::warn!(function, error = %e, "cannot read the queue's age"),
            }
        }
        st
    }

    /// Backlog of every function with one (queued plus running), by function name.
    pub fn all_stats(&self) -> BTreeMap<String, QueueStats> {
        let depths: Vec<(String, u64)> = {
            let st = self.inner.state.lock().unwrap();
            st.fns
                .iter()
                .filter(|(_, f)| f.depth > 0)
                .map(|(n, f)| (n.clone(), f.depth))
                .collect()
        };
        depths
            .into_iter()
            .map(|(f, d)| {
                let s = self.stats_of(&f, d);
                (f, s)
            })
            .collect()
    }

    /// How many events the dispatcher holds in memory (windows, stashes and
    /// running), whatever the depth of the queue.
    pub fn resident(&self) -> usize {
        let st = self.inner.state.lock().unwrap();
        st.fns
            .values()
            .map(|f| f.window.len() + f.stash.len() + f.running.len())
            .sum()
    }

    async fn dispatch(self) {
        loop {
            let wait = self.pass();
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One look at every function with a backlog: refill windows, launch what is due
    /// and allowed, park what is throttled. Work is per function, never per queued
    /// event beyond those launched. Returns how long to sleep unless woken.
    fn pass(&self) -> Duration {
        let now = nimbus_core::now_ms();
        let invoker = &self.inner.invoker;
        // Instances up (idle or busy) per function, for the drain's budget of runs
        // waiting on a cold start.
        let mut ready: HashMap<String, usize> = HashMap::new();
        for c in invoker.pool().census() {
            *ready.entry(c.function).or_default() += c.idle + c.busy;
        }
        let cpus = self.inner.cpus;
        let mut next: Option<i64> = None;
        let mut refills = Vec::new();
        let mut launches = Vec::new();
        let mut dropped = Vec::new();
        {
            let mut st = self.inner.state.lock().unwrap();
            let mut cold: usize = st
                .fns
                .iter()
                .map(|(f, q)| {
                    q.running
                        .len()
                        .saturating_sub(ready.get(f).copied().unwrap_or(0))
                })
                .sum();
            st.fns.retain(|_, q| !q.idle());
            for (name, fq) in st.fns.iter_mut() {
                if let Some((until, _)) = fq.parked {
                    if until > now {
                        next = Some(next.map_or(until, |n: i64| n.min(until)));
                        continue;
                    }
                    fq.parked = None;
                }
                if !fq.exhausted && !fq.refilling && fq.window.len() < WINDOW / 2 {
                    fq.refilling = true;
                    refills.push((name.clone(), fq.cursor, WINDOW - fq.window.len()));
                }
                let up = ready.get(name).copied().unwrap_or(0);
                while let Some((&key, meta)) = fq.window.first_key_value() {
                    if key.0 > now {
                        next = Some(next.map_or(key.0, |n: i64| n.min(key.0)));
                        break;
                    }
                    // A run past the instances that are up waits for a start: at
                    // most one per CPU of those across the drain.
                    let needs_start = fq.running.len() >= up;
                    if needs_start && cold >= cpus {
                        fq.park(now, Park::Shared);
                        break;
                    }
                    let meta = *meta;
                    match invoker.admit(name, None) {
                        Ok(admitted) => {
                            fq.window.remove(&key);
                            fq.running.insert(meta.id, meta.enqueued_ms);
                            fq.backoff = Duration::ZERO;
                            if needs_start {
                                cold += 1;
                            }
                            launches.push((name.clone(), meta, admitted));
                        }
                        Err(InvokeError::Throttled(reason)) => {
                            let why = match reason {
                                crate::ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded => Park::Own,
                                crate::ThrottleReason::ConcurrentInvocationLimitExceeded => Park::Shared,
                            };
                            fq.park(now, why);
                            break;
                        }
                        Err(e) => {
                            // The function is gone: its events go with it.
                            fq.window.remove(&key);
                            fq.depth = fq.depth.saturating_sub(1);
                            dropped.push((name.clone(), meta, e));
                        }
                    }
                }
                if let Some((until, _)) = fq.parked {
                    next = Some(next.map_or(until, |n: i64| n.min(until)));
                }
            }
        }
        for (function, meta, e) in dropped {
            tracing::warn!(function = %function, event = meta.id, error = %e, "dropping async event");
            self.inner.store.delete(meta.id);
        }
        for (function, meta, (dep, permit)) in launches {
            let q = self.clone();
            tokio::spawn(async move { q.run_one(function, meta, dep, permit).await });
        }
        for (function, cursor, want) in refills {
            let q = self.clone();
            tokio::spawn(async move { q.refill(function, cursor, want).await });
        }
        next.map_or(Duration::from_secs(3600), |d| {
            Duration::from_millis((d - now).max(1) as u64)
        })
    }

    async fn refill(&self, function: String, cursor: Option<Key>, want: usize) {
        let rows = self.inner.store.due_window(&function, cursor, want).await;
        {
            let mut st = self.inner.state.lock().unwrap();
            let Some(fq) = st.fns.get_mut(&function) else {
                return;
            };
            match rows {
                Ok(rows) => fq.merge(rows, want),
                Err(e) => {
                    tracing::error!(function = %function, error = %e, "cannot read the event queue");
                    fq.refilling = false;
                    // Anything stashed is past the cursor, still in the store: the
                    // next read finds it.
                    fq.stash.clear();
                    fq.park(nimbus_core::now_ms(), Park::Own);
                }
            }
        }
        self.inner.wake.notify_one();
    }

    async fn run_one(
        &self,
        function: String,
        meta: EventMeta,
        dep: Arc<nimbus_runtime::Deployment>,
        permit: crate::Permit,
    ) {
        let store = self.inner.store.clone();
        let id = meta.id;
        let loaded = tokio::task::spawn_blocking(move || store.load(id)).await;
        let mut ev = match loaded {
            Ok(Ok(Some(ev))) => ev,
            Ok(Ok(None)) => {
                // Already gone (deleted with its function): nothing to run.
                drop(permit);
                self.forget(&function, id);
                return;
            }
            Ok(Err(e)) => {
                drop(permit);
                tracing::error!(function = %function, event = id, error = %e, "cannot read a queued event");
                self.requeue_meta(
                    &function,
                    meta,
                    nimbus_core::now_ms() + PLATFORM_RETRY.as_millis() as i64,
                );
                return;
            }
            Err(e) => {
                drop(permit);
                tracing::error!(function = %function, event = id, error = %e, "event read task failed");
                self.requeue_meta(
                    &function,
                    meta,
                    nimbus_core::now_ms() + PLATFORM_RETRY.as_millis() as i64,
                );
                return;
            }
        };
        // What memory says wins over a row whose reschedule may not be committed yet.
        ev.attempts = ev.attempts.max(meta.attempts);
        ev.due_ms = meta.due_ms;
        // The admitted deployment was resolved without the event's qualifier: an
        // event for a version or alias runs that.
        let (dep, permit) = if ev.qualifier.is_some() {
            drop(permit);
            match self
                .inner
                .invoker
                .admit(&ev.function, ev.qualifier.as_deref())
            {
                Ok(a) => a,
                Err(InvokeError::Throttled(_)) => {
                    // Lost the slot in between: wait for the next one.
                    let due = ev.due_ms;
                    self.requeue(ev, due);
                    return;
                }
                Err(e) => {
                    tracing::warn!(function = %ev.function, request_id = %ev.request_id, error = %e, "dropping async event");
                    self.finish(&ev);
                    return;
                }
            }
        } else {
            (dep, permit)
        };
        let invoker = &self.inner.invoker;
        let qualifier = ev.qualifier.clone().unwrap_or_else(|| "$LATEST".into());
        let cfg = invoker
            .event_invoke_config(&ev.function, &qualifier)
            .unwrap_or_default();
        let now = nimbus_core::now_ms();
        if now - ev.enqueued_ms > cfg.max_age_ms() {
            drop(permit);
            self.conclude(&ev, &cfg, Condition::EventAgeExceeded, None)
                .await;
            return;
        }
        let inv = Invocation {
            function: ev.function.clone(),
            qualifier: ev.qualifier.clone(),
            payload: Bytes::from(std::mem::take(&mut ev.payload)),
            trigger: if ev.source == "destination" {
                Trigger::Event
            } else {
                trigger_of(&ev.source)
            },
            client_context: None,
            trace_id: ev.trace_id.clone(),
        };
        let payload = inv.payload.clone();
        let result = invoker.run(dep, inv, permit, ev.request_id.clone()).await;
        ev.payload = payload.to_vec();
        match result {
            Ok(r) if !r.function_error => {
                ev.attempts += 1;
                self.conclude(&ev, &cfg, Condition::Success, Some(&r)).await;
            }
            Ok(r)
                if r.outcome == Outcome::InitError
                    && init_timed_out(&r)
                    && self.overloaded()
                    && self.spend_overload_retry(ev.id) =>
            {
                // The init ran out of time because the host was saturated, not
                // because of the function: soon again, and it does not count.
                tracing::info!(function = %ev.function, request_id = %ev.request_id, "init timed out on an overloaded host; will retry without counting the attempt");
                let retry_at = nimbus_core::now_ms() + OVERLOAD_RETRY.as_millis() as i64;
                self.requeue(ev, retry_at);
            }
            Ok(r) => {
                ev.attempts += 1;
                let retry_at = nimbus_core::now_ms()
                    + self.inner.settings.retry_base.as_millis() as i64 * ev.attempts as i64;
                if ev.attempts > cfg.retries() {
                    self.conclude(&ev, &cfg, Condition::RetriesExhausted, Some(&r))
                        .await;
                } else if retry_at - ev.enqueued_ms > cfg.max_age_ms() {
                    self.conclude(&ev, &cfg, Condition::EventAgeExceeded, Some(&r))
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
                let retry_at = nimbus_core::now_ms() + PLATFORM_RETRY.as_millis() as i64;
                self.requeue(ev, retry_at);
            }
        }
    }

    /// Whether the host is overloaded: its CPUs saturated (load average at or
    /// above the CPU count) or a CPU's worth of instance inits under way.
    fn overloaded(&self) -> bool {
        let cpus = self.inner.cpus as f64;
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        let initialising: usize = self
            .inner
            .invoker
            .pool()
            .census()
            .iter()
            .map(|c| c.initialising)
            .sum();
        load >= cpus || initialising as f64 >= cpus
    }

    /// Take one of the event's free retries for an overloaded host, if any is left.
    fn spend_overload_retry(&self, id: i64) -> bool {
        let mut st = self.inner.state.lock().unwrap();
        let n = st.overload_retries.entry(id).or_insert(0);
        *n += 1;
        *n <= MAX_OVERLOAD_RETRIES
    }

    /// A run of `function` ended (its event finished or went back to waiting):
    /// wake what its end may unblock.
    fn ended(st: &mut State, function: &str) {
        for (name, fq) in st.fns.iter_mut() {
            match fq.parked {
                Some((_, Park::Shared)) => fq.unpark(),
                Some((_, Park::Own)) if name == function => fq.unpark(),
                _ => {}
            }
        }
    }

    /// Drop an event that disappeared from the store from memory.
    fn forget(&self, function: &str, id: i64) {
        {
            let mut st = self.inner.state.lock().unwrap();
            st.overload_retries.remove(&id);
            if let Some(fq) = st.fns.get_mut(function) {
                if fq.running.remove(&id).is_some() {
                    fq.depth = fq.depth.saturating_sub(1);
                }
            }
            Self::ended(&mut st, function);
        }
        self.inner.wake.notify_one();
    }

    fn finish(&self, ev: &QueuedEvent) {
        self.inner.store.delete(ev.id);
        self.forget(&ev.function, ev.id);
    }

    fn requeue(&self, ev: QueuedEvent, due_ms: i64) {
        let meta = EventMeta {
            id: ev.id,
            due_ms,
            enqueued_ms: ev.enqueued_ms,
            attempts: ev.attempts,
        };
        self.requeue_meta(&ev.function, meta, due_ms);
    }

    fn requeue_meta(&self, function: &str, mut meta: EventMeta, due_ms: i64) {
        meta.due_ms = due_ms;
        {
            let mut st = self.inner.state.lock().unwrap();
            // Sent under the lock, so a window read asked for after this sees it.
            self.inner.store.reschedule(meta.id, meta.attempts, due_ms);
            if let Some(fq) = st.fns.get_mut(function) {
                fq.running.remove(&meta.id);
                fq.offer(meta);
            }
            Self::ended(&mut st, function);
        }
        self.inner.wake.notify_one();
    }

    /// End an event that ran (or aged out): delete it and, in the same
    /// transaction, store what it owes (destination record, dead letter).
    async fn conclude(
        &self,
        ev: &QueuedEvent,
        cfg: &EventInvokeConfig,
        cond: Condition,
        res: Option<&crate::InvokeResult>,
    ) {
        let owed = self.owed(ev, cfg, cond, res);
        if owed.is_empty() {
            // Nothing owed: the delete need not be waited for.
            self.finish(ev);
        } else {
            self.finish_owing(&ev.function, ev.id, owed).await;
        }
    }

    /// The outbox rows an ended event owes.
    fn owed(
        &self,
        ev: &QueuedEvent,
        cfg: &EventInvokeConfig,
        cond: Condition,
        res: Option<&crate::InvokeResult>,
    ) -> Vec<nimbus_store::OutboxEntry> {
        let mut owed = Vec::new();
        if cond != Condition::Success {
            owed.extend(self.dead_letter(ev, res));
        }
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
            if cond != Condition::Success && owed.is_empty() {
                tracing::warn!(function = %ev.function, request_id = %ev.request_id, condition = cond.as_str(), "async event discarded: no on-failure destination");
                metrics.dropped(match cond {
                    Condition::EventAgeExceeded => DropReason::EventAgeExceeded,
                    _ => DropReason::RetriesExhausted,
                });
            }
            return owed;
        };
        if let Err(e) = Destination::parse(target) {
            tracing::error!(destination = %target, error = %e, "invalid destination");
            metrics.destination(kind, false);
            return owed;
        }
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
        let function_arn = function_arn(invoker.region(), &ev.function, Some(qualifier));
        let mut record = json!({
            "version": "1.0",
            "timestamp": rfc3339_ms(nimbus_core::now_ms()),
            "requestContext": {
                "requestId": ev.request_id,
                "functionArn": function_arn,
                "condition": cond.as_str(),
                "approximateInvokeCount": ev.attempts,
            },
            "requestPayload": request_payload,
        });
        if res.is_some() {
            record["responseContext"] = response_context;
            record["responsePayload"] = response_payload;
        }
        let item = outbox::Item::Destination {
            success: cond == Condition::Success,
            record: record.to_string(),
            function_arn,
            trace: ev.trace_id.clone(),
        };
        owed.push(item.entry(&ev.function, target));
        owed
    }

    /// The function's `DeadLetterConfig`: an event given up lands there as its
    /// original payload with Lambda's `RequestID`, `ErrorCode` and
    /// `ErrorMessage` message attributes.
    fn dead_letter(
        &self,
        ev: &QueuedEvent,
        res: Option<&crate::InvokeResult>,
    ) -> Option<nimbus_store::OutboxEntry> {
        let invoker = &self.inner.invoker;
        let (_, cfg) = invoker
            .get_qualified(&ev.function, ev.qualifier.as_deref())
            .ok()?;
        let target = cfg.spec.dead_letter_target.clone()?;
        let error_message = res
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "Event age exceeded".to_string());
        let item = outbox::Item::DeadLetter {
            payload: String::from_utf8_lossy(&ev.payload).into_owned(),
            request_id: ev.request_id.clone(),
            error_message: error_message.chars().take(1024).collect(),
            trace: ev.trace_id.clone(),
        };
        Some(item.entry(&ev.function, &target))
    }
}

/// Whether an init failure was the init phase running out of time.
fn init_timed_out(r: &crate::InvokeResult) -> bool {
    serde_json::from_slice::<serde_json::Value>(&r.payload)
        .ok()
        .and_then(|v| v.get("errorType")?.as_str().map(str::to_string))
        .is_some_and(|t| t == "Sandbox.Timedout")
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
        assert_eq!(
            Destination::parse("arn:aws:sqs:us-east-1:123456789012:q").unwrap(),
            Destination::Service("arn:aws:sqs:us-east-1:123456789012:q".into())
        );
        assert_eq!(
            Destination::parse("arn:aws:events:us-east-1:123456789012:event-bus/default").unwrap(),
            Destination::Service("arn:aws:events:us-east-1:123456789012:event-bus/default".into())
        );
        assert!(Destination::parse("arn:aws:events:us-east-1:123456789012:rule/r").is_err());
        assert!(Destination::parse("nonsense").is_err());
    }

    fn meta(due_ms: i64, id: i64) -> EventMeta {
        EventMeta {
            id,
            due_ms,
            enqueued_ms: 0,
            attempts: 0,
        }
    }

    fn keys(q: &FnQueue) -> Vec<i64> {
        q.window.values().map(|m| m.id).collect()
    }

    #[test]
    fn paging_never_skips_nor_doubles_an_event() {
        // As after a restart: a backlog in the store, nothing in memory yet.
        let mut q = FnQueue {
            refilling: true,
            ..FnQueue::default()
        };
        q.merge(vec![meta(1, 1), meta(2, 2)], 2);
        assert!(!q.exhausted);
        assert_eq!(q.cursor, Some((2, 2)));
        // Past the cursor: stays in the store until a read reaches it.
        q.offer(meta(5, 5));
        assert_eq!(keys(&q), [1, 2]);
        // Within the cursor (a retry due soon): memory must hold it.
        q.offer(meta(1, 9));
        assert_eq!(keys(&q), [1, 9, 2]);
        // Claimed and running: a read that returns it again is ignored.
        q.window.remove(&(1, 1));
        q.running.insert(1, 0);
        // A read under way; an event written meanwhile past the cursor waits in the
        // stash, and the read's answer (which may or may not include it) is merged.
        q.refilling = true;
        q.offer(meta(7, 7));
        assert_eq!(q.stash.len(), 1);
        q.merge(vec![meta(1, 1), meta(5, 5), meta(7, 7)], 4);
        assert!(q.exhausted, "a short read means the store has no more");
        assert_eq!(keys(&q), [9, 2, 5, 7]);
        assert!(q.stash.is_empty());
        // Exhausted: new events go straight to memory, until it outgrows the window.
        for i in 0..WINDOW as i64 {
            q.offer(meta(100 + i, 100 + i));
        }
        assert!(!q.exhausted);
        // It flipped when the window outgrew WINDOW; later offers stayed in the store.
        assert_eq!(q.window.len(), WINDOW + 1);
        assert_eq!(q.cursor, q.window.keys().last().copied());
        let held = q.window.len();
        q.offer(meta(10_000, 10_000));
        assert_eq!(
            q.window.len(),
            held,
            "past the cursor again: the store keeps it"
        );
    }

    #[test]
    fn parking_backs_off_and_resets() {
        let mut q = FnQueue::default();
        q.park(0, Park::Own);
        assert_eq!(q.parked, Some((20, Park::Own)));
        q.park(0, Park::Own);
        assert_eq!(q.parked, Some((40, Park::Own)));
        for _ in 0..10 {
            q.park(0, Park::Shared);
        }
        assert_eq!(q.parked, Some((PARK_MAX.as_millis() as i64, Park::Shared)));
        q.unpark();
        assert_eq!(q.parked, None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(1_573_755_365_568), "2019-11-14T18:16:05.568Z");
    }
}

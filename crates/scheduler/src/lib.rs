//! Nimbus schedules (EventBridge rules' `rate()` / `cron()` and Scheduler's
//! ScheduleV2 time zones): the trigger that invokes functions on a clock.
//!
//! * [`Expression`]: `rate(N minute|minutes|hour|hours|day|days)` and AWS's six-field
//!   `cron(...)`, from the pure `nimbus-schedule-expr` crate (re-exported here).
//! * [`Scheduler`]: the durable scheduler. Schedules live in SQLite ([`store`]); each
//!   firing is an async invocation through a [`Target`] (in the server: the
//!   dispatcher, `nimbus_triggers::DispatchTarget`, so retries, maximum event age
//!   and destinations apply) carrying the schedule's `input`, or else EventBridge's
//!   `Scheduled Event`. The scheduler is a [`nimbus_triggers::Trigger`].
//! * [`Clock`]: the time source, injectable so tests drive time ([`FakeClock`]).
//!
//! Restart policy (see `docs/compat/schedules.md`):
//! * **No slot is enqueued twice.** Marking a slot fired and enqueuing its event
//!   commit in one SQLite transaction (see [`store`]), so `kill -9` at any point
//!   leaves either both or neither.
//! * **Missed runs are caught up once.** Slots that passed while the server was down
//!   (or the scheduler was late) are owed; the first tick after start fires exactly
//!   one event for the latest of them, with that slot's `time`, and goes on from
//!   there. A schedule never fires for a span it was disabled in.
//! * Delivery after the enqueue is the queue's: at least once, and a run that was in
//!   flight at a crash runs again with the same request id and event id.

pub mod clock;
pub mod store;

pub use clock::{Clock, FakeClock, ScaledClock, SystemClock};
// The expressions live in the pure `nimbus-schedule-expr` crate (so the manifest
// loaders need not pull in the engine); re-exported here for compatibility.
pub use nimbus_schedule_expr::{cron, expr, parse_timezone, ExprError, Expression};
pub use store::{ScheduleStore, StoredSchedule};

use chrono::{TimeZone, Utc};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Notify;

/// What a scheduler operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ExprError),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("Function not found: {0}")]
    FunctionNotFound(String),
    #[error("Schedule not found: {0}")]
    NotFound(String),
    #[error("schedule store: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// What a trigger hands over and how it can fail are the triggers crate's; the
// scheduler is one trigger among several.
pub use nimbus_triggers::{BoxFuture, SubmitError};

/// Where firings go: a trigger [`nimbus_triggers::Target`] taking [`Firing`]s. In the
/// server it is the dispatcher ([`nimbus_triggers::DispatchTarget`]): an async
/// invocation, so retries, maximum event age and destinations apply.
pub use nimbus_triggers::Target;

/// One firing handed to a [`Target`].
#[derive(Debug, Clone)]
pub struct Firing {
    pub schedule: String,
    pub slot_ms: i64,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    /// Unique per firing; the store recognises the queued event by it.
    pub trace_id: String,
}

impl From<Firing> for nimbus_triggers::Event {
    /// A firing as an async invocation whose record says `trigger: schedule`.
    fn from(f: Firing) -> Self {
        nimbus_triggers::Event {
            kind: nimbus_core::Trigger::Schedule,
            source: "schedule",
            function: f.function,
            qualifier: f.qualifier,
            payload: bytes::Bytes::from(f.payload),
            trace_id: Some(f.trace_id),
        }
    }
}

/// A schedule's definition as a client gives it.
#[derive(Debug, Clone, Default)]
pub struct ScheduleSpec {
    pub expression: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub input: Option<serde_json::Value>,
    /// Empty: UTC.
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    pub app: Option<String>,
}

/// A schedule as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleView {
    pub name: String,
    pub expression: String,
    pub timezone: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub input: Option<serde_json::Value>,
    pub enabled: bool,
    pub app: String,
    pub last_fired_ms: Option<i64>,
    /// `None` when disabled or when the expression never fires again.
    pub next_fire_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Region named in the scheduled event and its rule ARN.
    pub region: String,
}

struct Inner {
    store: ScheduleStore,
    target: Arc<dyn Target<Firing>>,
    clock: Arc<dyn Clock>,
    settings: SchedulerSettings,
    /// Serialises firing with definition changes.
    ops: tokio::sync::Mutex<()>,
    wake: Notify,
}

/// The scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// How long a transient enqueue failure waits before the slot is tried again.
const RETRY_MS: i64 = 1000;
/// Longest idle wait between ticks when nothing is due.
const IDLE_MS: i64 = 3_600_000;

/// Names follow EventBridge rule names: 1-64 of letters, digits, `.`, `-`, `_`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl Scheduler {
    pub fn new(
        store: ScheduleStore,
        target: Arc<dyn Target<Firing>>,
        clock: Arc<dyn Clock>,
        settings: SchedulerSettings,
    ) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                store,
                target,
                clock,
                settings,
                ops: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
            }),
        }
    }

    /// Start firing: the first tick (which catches up what was missed) runs now.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let s = self.clone();
        tokio::spawn(async move { s.run().await })
    }

    async fn run(self) {
        loop {
            let now = self.inner.clock.now_ms();
            let next = match self.tick().await {
                Ok(n) => n.unwrap_or(now + IDLE_MS),
                Err(e) => {
                    tracing::error!(error = %e, "scheduler tick failed");
                    now + RETRY_MS
                }
            };
            tokio::select! {
                _ = self.inner.clock.sleep_until(next) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ScheduleStore) -> store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::Store(e.to_string()))?
            .map_err(Error::from)
    }

    fn view(&self, s: &StoredSchedule) -> ScheduleView {
        ScheduleView {
            name: s.name.clone(),
            expression: s.expression.clone(),
            timezone: s.timezone.clone(),
            function: s.function.clone(),
            qualifier: s.qualifier.clone(),
            input: s
                .input
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok()),
            enabled: s.enabled,
            app: s.app.clone(),
            last_fired_ms: s.last_fired_ms,
            next_fire_ms: if s.enabled { next_fire(s) } else { None },
        }
    }

    pub async fn list(&self) -> Result<Vec<ScheduleView>> {
        let all = self.blocking(|s| s.list()).await?;
        Ok(all.iter().map(|s| self.view(s)).collect())
    }

    pub async fn get(&self, name: &str) -> Result<ScheduleView> {
        let n = name.to_string();
        match self.blocking(move |s| s.get(&n)).await? {
            Some(s) => Ok(self.view(&s)),
            None => Err(Error::NotFound(name.to_string())),
        }
    }

    /// Create or update a schedule; `true` when created. An update that keeps the
    /// expression and zone keeps the schedule's timing (a redeploy changes nothing);
    /// a new expression or zone, or enabling a disabled schedule, counts from now.
    pub async fn put(&self, name: &str, spec: ScheduleSpec) -> Result<(ScheduleView, bool)> {
        if !valid_name(name) {
            return Err(Error::InvalidParameter(format!(
                "Schedule name '{name}' is invalid: use 1 to 64 letters, digits, '.', '-' or '_'"
            )));
        }
        let expression = spec.expression.trim().to_string();
        Expression::parse(&expression)?;
        let timezone = match spec.timezone.as_deref().map(str::trim) {
            None | Some("") => "UTC".to_string(),
            Some(z) => z.to_string(),
        };
        parse_timezone(&timezone)?;
        if spec.function.is_empty() {
            return Err(Error::InvalidParameter("function is required".into()));
        }
        let qualifier = spec.qualifier.filter(|q| !q.is_empty());
        if !self
            .inner
            .target
            .exists(&spec.function, qualifier.as_deref())
        {
            let what = match &qualifier {
                Some(q) => format!("{}:{q}", spec.function),
                None => spec.function.clone(),
            };
            return Err(Error::FunctionNotFound(what));
        }
        let input = match spec.input {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.to_string()),
        };
        if input
            .as_ref()
            .is_some_and(|i| i.len() > nimbus_core::limits::ASYNC_PAYLOAD_MAX)
        {
            return Err(Error::InvalidParameter(format!(
                "input is larger than the {} byte limit of an async invocation",
                nimbus_core::limits::ASYNC_PAYLOAD_MAX
            )));
        }
        let _serial = self.inner.ops.lock().await;
        let now = self.inner.clock.now_ms();
        let n = name.to_string();
        let previous = self.blocking(move |s| s.get(&n)).await?;
        let enabled = spec
            .enabled
            .unwrap_or(previous.as_ref().map(|p| p.enabled).unwrap_or(true));
        let anchor_ms = match &previous {
            Some(p)
                if p.expression == expression
                    && p.timezone == timezone
                    && (p.enabled || !enabled) =>
            {
                p.anchor_ms
            }
            _ => now,
        };
        let stored = StoredSchedule {
            name: name.to_string(),
            expression,
            timezone,
            function: spec.function,
            qualifier,
            input,
            enabled,
            app: spec
                .app
                .or_else(|| previous.as_ref().map(|p| p.app.clone()))
                .unwrap_or_default(),
            anchor_ms,
            last_fired_ms: previous.as_ref().and_then(|p| p.last_fired_ms),
            pending_slot_ms: None,
            created_ms: previous.as_ref().map_or(now, |p| p.created_ms),
            updated_ms: now,
        };
        let s2 = stored.clone();
        let created = self.blocking(move |s| s.put(&s2)).await?;
        drop(_serial);
        self.inner.wake.notify_one();
        tracing::info!(schedule = %name, expression = %stored.expression, timezone = %stored.timezone, function = %stored.function, enabled, "schedule {}", if created { "created" } else { "updated" });
        Ok((self.view(&stored), created))
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let _serial = self.inner.ops.lock().await;
        let n = name.to_string();
        if !self.blocking(move |s| s.delete(&n)).await? {
            return Err(Error::NotFound(name.to_string()));
        }
        self.inner.wake.notify_one();
        tracing::info!(schedule = %name, "schedule deleted");
        Ok(())
    }

    /// Fire every schedule that is due by the clock (at most once each: runs missed
    /// in the past collapse into one), and return the next fire time of any.
    pub async fn tick(&self) -> Result<Option<i64>> {
        let _serial = self.inner.ops.lock().await;
        let now = self.inner.clock.now_ms();
        let all = self.blocking(|s| s.list()).await?;
        let mut next: Option<i64> = None;
        let mut soonest = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        for s in all.iter().filter(|s| s.enabled) {
            let (Ok(expr), Ok(tz)) = (
                Expression::parse(&s.expression),
                parse_timezone(&s.timezone),
            ) else {
                tracing::error!(schedule = %s.name, expression = %s.expression, "stored schedule does not parse; skipped");
                continue;
            };
            let from = s.last_fired_ms.map_or(s.anchor_ms, |l| l.max(s.anchor_ms));
            let Some(slot) = expr.latest_in(from, now, s.anchor_ms, tz) else {
                if let Some(t) = expr.next_after(from, s.anchor_ms, tz) {
                    soonest(t);
                }
                continue;
            };
            let first_owed = expr.next_after(from, s.anchor_ms, tz);
            if first_owed != Some(slot) {
                tracing::warn!(
                    schedule = %s.name,
                    first_missed = %format_time(first_owed.unwrap_or(slot)),
                    firing = %format_time(slot),
                    "runs missed while the scheduler was not running: firing once for the latest"
                );
            }
            match self.fire(s, slot).await {
                Ok(()) => {
                    if let Some(t) = expr.next_after(slot, s.anchor_ms, tz) {
                        soonest(t);
                    }
                }
                Err(e) => {
                    tracing::warn!(schedule = %s.name, error = %e, "could not enqueue the firing; will retry");
                    soonest(now + RETRY_MS);
                }
            }
        }
        Ok(next)
    }

    /// The payload of a firing: the schedule's input, else EventBridge's scheduled event.
    fn payload(&self, s: &StoredSchedule, slot_ms: i64) -> Vec<u8> {
        if let Some(input) = &s.input {
            return input.clone().into_bytes();
        }
        let region = &self.inner.settings.region;
        json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": nimbus_core::ACCOUNT_ID,
            "time": format_time(slot_ms),
            "region": region,
            "resources": [rule_arn(region, &s.name)],
            "detail": {},
        })
        .to_string()
        .into_bytes()
    }

    async fn fire(&self, s: &StoredSchedule, slot_ms: i64) -> Result<()> {
        let trace_id = nimbus_dispatch::new_trace_id();
        let (name, trace) = (s.name.clone(), trace_id.clone());
        if !self
            .blocking(move |st| st.begin_firing(&name, slot_ms, &trace))
            .await?
        {
            return Ok(());
        }
        let firing = Firing {
            schedule: s.name.clone(),
            slot_ms,
            function: s.function.clone(),
            qualifier: s.qualifier.clone(),
            payload: self.payload(s, slot_ms),
            trace_id: trace_id.clone(),
        };
        match self.inner.target.submit(firing).await {
            Ok(request_id) => {
                let name = s.name.clone();
                self.blocking(move |st| st.confirm(&name, &trace_id))
                    .await?;
                tracing::info!(schedule = %s.name, function = %s.function, slot = %format_time(slot_ms), request_id = %request_id, "schedule fired");
                Ok(())
            }
            Err(SubmitError::Permanent(e)) => {
                tracing::error!(schedule = %s.name, function = %s.function, slot = %format_time(slot_ms), error = %e, "schedule firing dropped");
                let name = s.name.clone();
                self.blocking(move |st| st.skip(&name, slot_ms)).await
            }
            Err(SubmitError::Transient(e)) => Err(Error::Store(e)),
        }
    }
}

/// The fire time a stored schedule is waiting for.
pub fn next_fire(s: &StoredSchedule) -> Option<i64> {
    let expr = Expression::parse(&s.expression).ok()?;
    let tz = parse_timezone(&s.timezone).ok()?;
    let from = s.last_fired_ms.map_or(s.anchor_ms, |l| l.max(s.anchor_ms));
    expr.next_after(from, s.anchor_ms, tz)
}

/// `arn:aws:events:<region>:<account>:rule/<name>`
pub fn rule_arn(region: &str, name: &str) -> String {
    format!(
        "arn:aws:events:{region}:{}:rule/{name}",
        nimbus_core::ACCOUNT_ID
    )
}

/// EventBridge's `time`: `2019-11-14T18:16:00Z`.
pub fn format_time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

impl Scheduler {
    /// The server's scheduler: state in the async queue's database (`events_db`,
    /// opened by the queue's `EventStore` first), firings into `dispatch` as async
    /// invocations, on the host clock (`clock_speed` above 1 runs it faster, for
    /// end-to-end tests only). Starts firing at once.
    pub fn start_for_server(
        events_db: &std::path::Path,
        dispatch: Arc<dyn nimbus_dispatch::Dispatch>,
        region: String,
        clock_speed: u32,
    ) -> Result<Self> {
        let store = ScheduleStore::open(events_db)?;
        let clock: Arc<dyn Clock> = if clock_speed > 1 {
            let origin = store.meta_or_init("scaled_clock_origin_ms", nimbus_core::now_ms())?;
            tracing::warn!(
                speed = clock_speed,
                "schedule clock runs {clock_speed}x faster than real time (testing only)"
            );
            Arc::new(ScaledClock::new(origin, clock_speed))
        } else {
            Arc::new(SystemClock)
        };
        let s = Scheduler::new(
            store,
            Arc::new(nimbus_triggers::DispatchTarget::new(dispatch)),
            clock,
            SchedulerSettings { region },
        );
        nimbus_triggers::Trigger::start(&s);
        Ok(s)
    }
}

/// The scheduler is a self-driven trigger: it fires on its clock.
impl nimbus_triggers::Trigger for Scheduler {
    fn kind(&self) -> nimbus_core::Trigger {
        nimbus_core::Trigger::Schedule
    }

    fn name(&self) -> &str {
        "schedules"
    }

    fn start(&self) -> tokio::task::JoinHandle<()> {
        Scheduler::start(self)
    }
}

//! Nimbus's Amazon EventBridge: event buses, rules (event patterns and schedules),
//! targets, `PutEvents`, archives and replays, connections and API destinations,
//! wire-compatible with the awsJson 1.1 API (`AWSEvents.<Operation>`).
//!
//! * [`ops`]: the API's exhaustive operation table, generated from the AWS model by
//!   `scripts/gen-ops.py`; the operations not built answer `501 NotImplemented`.
//! * [`store`]: `<data>/eventbridge.db` — resources as documents, the delivery
//!   outbox, archived events.
//! * [`state`]: the resources in memory and each bus's compiled rules
//!   ([`nimbus_patterns::PatternSet`]).
//! * `api`: the operations.
//! * [`transform`]: `Input`, `InputPath`, `InputTransformer`.
//! * `deliver`: the outbox drain (at least once, the target's `RetryPolicy`, its
//!   `DeadLetterConfig`), the schedule rules' timer, and the [`BusSink`] other
//!   services deliver into.
//! * `admin`: `/_nimbus/services/events/…` and the metrics.
//!
//! A `PutEvents` matches each entry against its bus's enabled rules and commits one
//! outbox row per (matched rule, target) — payload already transformed — together
//! with the archive rows, in one fsynced transaction, before it answers; a task
//! woken by a `Notify` drains the outbox into `ctx.sinks.deliver` (Lambda, SQS,
//! SNS, Kinesis), into a bus (cross-bus), or over HTTP (API destinations).
//!
//! [`BusSink`]: nimbus_triggers::sinks::BusSink

// Handlers answer `AwsError` (as nimbus-protocol does): its size is the wire's.
#![allow(clippy::result_large_err)]

mod admin;
mod api;
mod deliver;
pub mod ops;
pub mod state;
pub mod store;
pub mod transform;

pub use ops::{Op, META};

use nimbus_protocol::{Frontend, ResponseFuture, ServiceMeta};
use nimbus_svc_common::{Call, Service, ServiceContext, StartError};
use state::{Bus, State};
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The running service, shared by the front-end, the drain and the sink.
pub struct Inner {
    pub(crate) ctx: ServiceContext,
    pub(crate) store: store::Store,
    pub(crate) state: Mutex<State>,
    /// Wakes the outbox drain.
    pub(crate) outbox: Notify,
    /// Wakes the schedule timer (a schedule rule changed).
    pub(crate) schedules: Notify,
    pub(crate) metrics: Metrics,
    /// The last deliveries, for the admin surface.
    pub(crate) recent: Mutex<VecDeque<serde_json::Value>>,
    pub(crate) http: reqwest::Client,
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub events_put: AtomicU64,
    pub events_failed: AtomicU64,
    pub matched: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped: AtomicU64,
}

impl Inner {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn arn(&self, resource: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:{resource}",
            self.ctx.region, self.ctx.account_id
        )
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The front-end the edge registers for this API.
#[derive(Clone)]
pub struct EventsFrontend(Arc<Inner>);

impl Frontend for EventsFrontend {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: axum::extract::Request) -> ResponseFuture {
        let inner = self.0.clone();
        Box::pin(async move {
            match Call::<Op>::decode(req).await {
                Ok(call) => api::handle(inner, call).await,
                Err(resp) => resp,
            }
        })
    }
}

/// Start the service: open `<data>/eventbridge.db`, load the resources, make the
/// default bus, start the outbox drain and the schedule timer, register the bus
/// sink.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let inner = open(ctx)?;
    deliver::spawn(inner.clone());
    ctx.sinks
        .register_buses(Arc::new(deliver::Sink(inner.clone())));
    Ok(Service {
        frontend: Arc::new(EventsFrontend(inner.clone())),
        admin: Some(Arc::new(admin::Admin(inner))),
    })
}

/// Open the store, load the resources, make the default bus.
fn open(ctx: &ServiceContext) -> Result<Arc<Inner>, StartError> {
    let err = |e: &dyn std::fmt::Display| StartError::new("events", e);
    let store = store::Store::open(&ctx.data_dir.join("eventbridge.db")).map_err(|e| err(&e))?;
    let state = State::load(&store).map_err(|e| err(&e))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| err(&e))?;
    let inner = Arc::new(Inner {
        ctx: ctx.clone(),
        store,
        state: Mutex::new(state),
        outbox: Notify::new(),
        schedules: Notify::new(),
        metrics: Metrics::default(),
        recent: Mutex::new(VecDeque::new()),
        http,
    });
    {
        let mut st = inner.lock();
        if !st.buses.contains_key("default") {
            let now = now_ms();
            let bus = Bus {
                name: "default".into(),
                arn: inner.arn("event-bus/default"),
                description: None,
                policy: None,
                created_ms: now,
                modified_ms: now,
                tags: Default::default(),
            };
            let doc = serde_json::to_string(&bus).map_err(|e| err(&e))?;
            inner
                .store
                .put_doc(state::K_BUS, "default", &doc)
                .map_err(|e| err(&e))?;
            st.buses.insert("default".into(), bus);
        }
    }
    Ok(inner)
}

#[cfg(test)]
mod tests;

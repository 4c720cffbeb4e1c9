//! Nimbus's durable state behind backend-neutral traits.
//!
//! Each trait is one kind of state, in the vocabulary of this crate's own types (no
//! SQLite type appears in a signature; errors are [`StoreError`](crate::StoreError)).
//! The SQLite types implement them — [`Db`] ([`FunctionStore`], [`TelemetryStore`]),
//! [`EventStore`] ([`EventQueueStore`]), [`RouteStore`] ([`GatewayRouteStore`]) and
//! [`GatewayAuthStore`] ([`GatewayAccessStore`]) — keeping their inherent methods of
//! the same names, so a caller can hold either the concrete type or a trait object.
//! Another backend (JetStream key-value and streams, say) is an addition: implement
//! the traits and hand the implementations to the components that take them (the
//! async queue takes any [`EventQueueStore`] today).
//!
//! Every method but the queue's `insert`, `due_window` and `flush` may block on I/O:
//! async callers use `spawn_blocking` for anything but tiny calls.

use crate::{
    Db, EventMeta, EventStore, FunctionObject, GatewayAuthStore, LogLine, MeterRow, OutboxEntry,
    QueuedEvent, RecordQuery, Result, RouteStore, StoredObject, StoredRoute, UsageRow,
};
use nimbus_core::{EventInvokeConfig, FunctionConfig, InvocationRecord, Outcome};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so the async methods keep the traits object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The function registry: configurations, their versions/aliases/provisioned
/// configs (opaque JSON objects), and async-invocation settings.
pub trait FunctionStore: Send + Sync {
    fn put_function(&self, cfg: &FunctionConfig) -> Result<()>;
    fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>>;
    /// Delete a function with its objects and async settings; `false` if absent.
    fn delete_function(&self, name: &str) -> Result<bool>;
    fn list_functions(&self) -> Result<Vec<FunctionConfig>>;
    /// Store (`Some`) and delete (`None`) objects atomically.
    fn write_objects(&self, changes: &[FunctionObject]) -> Result<()>;
    fn list_objects(&self) -> Result<Vec<FunctionObject>>;
    fn put_event_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
        cfg: &EventInvokeConfig,
    ) -> Result<()>;
    fn delete_event_invoke_config(&self, function: &str, qualifier: &str) -> Result<bool>;
    fn list_event_invoke_configs(&self) -> Result<Vec<(String, String, EventInvokeConfig)>>;
}

/// Invocation records, function logs and the hourly metering rollup.
pub trait TelemetryStore: Send + Sync {
    /// Store records and lines atomically; assigns the lines' ids.
    fn append_telemetry(&self, records: &[InvocationRecord], logs: &mut [LogLine]) -> Result<()>;
    fn logs(
        &self,
        function: &str,
        after_id: i64,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>>;
    fn tail_logs(&self, function: &str, limit: u32) -> Result<Vec<LogLine>>;
    fn records(&self, q: &RecordQuery) -> Result<Vec<InvocationRecord>>;
    fn trace_records(&self, root: &str, limit: u32) -> Result<Vec<InvocationRecord>>;
    fn request_logs(&self, request_ids: &[String], limit: u32) -> Result<Vec<LogLine>>;
    fn count_outcomes(&self, function: &str) -> Result<Vec<(Outcome, u64)>>;
    fn metering(&self, since_ms: i64) -> Result<Vec<MeterRow>>;
    fn prune_batch(&self, cutoff_ms: i64, limit: usize) -> Result<usize>;
    fn prune_before(&self, cutoff_ms: i64) -> Result<usize>;
}

/// The durable async event queue.
///
/// The contract the dispatcher relies on: `insert` answers only once the events are
/// durable; `delete` and `reschedule` are fire-and-forget but ordered, and
/// `due_window` reflects every write issued before it (so a window never shows an
/// event already deleted, nor an event's old due time after its reschedule).
pub trait EventQueueStore: Send + Sync + 'static {
    /// Store events durably; their ids, once they would survive a crash.
    fn insert(&self, events: Vec<QueuedEvent>) -> BoxFuture<'_, Result<Vec<i64>>>;
    fn delete(&self, id: i64);
    /// Delete event `id` and store what its end owes (destination records, dead
    /// letters) in one transaction; the entries' ids once durable.
    fn finish(&self, id: i64, outbox: Vec<OutboxEntry>) -> BoxFuture<'_, Result<Vec<i64>>>;
    /// Every undelivered outbox entry, oldest first (blocking).
    fn outbox(&self) -> Result<Vec<OutboxEntry>>;
    /// An outbox entry was delivered or given up (fire-and-forget, ordered).
    fn outbox_done(&self, id: i64);
    fn reschedule(&self, id: i64, attempts: u32, due_ms: i64);
    /// Wait until every write issued so far is durable.
    fn flush(&self) -> BoxFuture<'_, ()>;
    /// Functions with queued events and how many each has.
    fn backlog(&self) -> Result<Vec<(String, u64)>>;
    /// Up to `limit` of `function`'s events in (due time, id) order after `after`
    /// (exclusive), without payloads.
    fn due_window<'a>(
        &'a self,
        function: &'a str,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventMeta>>>;
    /// One event with its payload, `None` once gone (blocking).
    fn load(&self, id: i64) -> Result<Option<QueuedEvent>>;
    /// When `function`'s oldest queued event was enqueued (blocking, indexed).
    fn oldest_enqueued(&self, function: &str) -> Result<Option<i64>>;
}

/// The gateway's routes and per-kind settings (opaque JSON owned by the gateway).
pub trait GatewayRouteStore: Send + Sync {
    fn list(&self) -> Result<Vec<StoredRoute>>;
    fn put(&self, route: &StoredRoute) -> Result<()>;
    fn delete(&self, api: &str, route_key: &str) -> Result<bool>;
    fn list_settings(&self, kind: &str) -> Result<Vec<(String, String)>>;
    fn put_setting(&self, kind: &str, key: &str, config: &str, updated_ms: i64) -> Result<()>;
    fn delete_setting(&self, kind: &str, key: &str) -> Result<bool>;
}

/// The gateway's authorizers, usage plans and API keys, and the keys' quota counters.
pub trait GatewayAccessStore: Send + Sync {
    fn list(&self) -> Result<Vec<StoredObject>>;
    fn put(&self, o: &StoredObject) -> Result<()>;
    fn delete(&self, kind: &str, name: &str) -> Result<bool>;
    /// Every counter as `(key id, period start, used)`.
    fn usage(&self) -> Result<Vec<(String, i64, u64)>>;
    fn put_usage(&self, rows: &[UsageRow<'_>]) -> Result<()>;
}

impl FunctionStore for Db {
    fn put_function(&self, cfg: &FunctionConfig) -> Result<()> {
        Db::put_function(self, cfg)
    }
    fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>> {
        Db::get_function(self, name)
    }
    fn delete_function(&self, name: &str) -> Result<bool> {
        Db::delete_function(self, name)
    }
    fn list_functions(&self) -> Result<Vec<FunctionConfig>> {
        Db::list_functions(self)
    }
    fn write_objects(&self, changes: &[FunctionObject]) -> Result<()> {
        Db::write_objects(self, changes)
    }
    fn list_objects(&self) -> Result<Vec<FunctionObject>> {
        Db::list_objects(self)
    }
    fn put_event_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
        cfg: &EventInvokeConfig,
    ) -> Result<()> {
        Db::put_event_invoke_config(self, function, qualifier, cfg)
    }
    fn delete_event_invoke_config(&self, function: &str, qualifier: &str) -> Result<bool> {
        Db::delete_event_invoke_config(self, function, qualifier)
    }
    fn list_event_invoke_configs(&self) -> Result<Vec<(String, String, EventInvokeConfig)>> {
        Db::list_event_invoke_configs(self)
    }
}

impl TelemetryStore for Db {
    fn append_telemetry(&self, records: &[InvocationRecord], logs: &mut [LogLine]) -> Result<()> {
        Db::append_telemetry(self, records, logs)
    }
    fn logs(
        &self,
        function: &str,
        after_id: i64,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>> {
        Db::logs(self, function, after_id, since_ms, limit)
    }
    fn tail_logs(&self, function: &str, limit: u32) -> Result<Vec<LogLine>> {
        Db::tail_logs(self, function, limit)
    }
    fn records(&self, q: &RecordQuery) -> Result<Vec<InvocationRecord>> {
        Db::records(self, q)
    }
    fn trace_records(&self, root: &str, limit: u32) -> Result<Vec<InvocationRecord>> {
        Db::trace_records(self, root, limit)
    }
    fn request_logs(&self, request_ids: &[String], limit: u32) -> Result<Vec<LogLine>> {
        Db::request_logs(self, request_ids, limit)
    }
    fn count_outcomes(&self, function: &str) -> Result<Vec<(Outcome, u64)>> {
        Db::count_outcomes(self, function)
    }
    fn metering(&self, since_ms: i64) -> Result<Vec<MeterRow>> {
        Db::metering(self, since_ms)
    }
    fn prune_batch(&self, cutoff_ms: i64, limit: usize) -> Result<usize> {
        Db::prune_batch(self, cutoff_ms, limit)
    }
    fn prune_before(&self, cutoff_ms: i64) -> Result<usize> {
        Db::prune_before(self, cutoff_ms)
    }
}

impl EventQueueStore for EventStore {
    fn insert(&self, events: Vec<QueuedEvent>) -> BoxFuture<'_, Result<Vec<i64>>> {
        Box::pin(EventStore::insert(self, events))
    }
    fn delete(&self, id: i64) {
        EventStore::delete(self, id)
    }
    fn finish(&self, id: i64, outbox: Vec<OutboxEntry>) -> BoxFuture<'_, Result<Vec<i64>>> {
        Box::pin(EventStore::finish(self, id, outbox))
    }
    fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        EventStore::outbox(self)
    }
    fn outbox_done(&self, id: i64) {
        EventStore::outbox_done(self, id)
    }
    fn reschedule(&self, id: i64, attempts: u32, due_ms: i64) {
        EventStore::reschedule(self, id, attempts, due_ms)
    }
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(EventStore::flush(self))
    }
    fn backlog(&self) -> Result<Vec<(String, u64)>> {
        EventStore::backlog(self)
    }
    fn due_window<'a>(
        &'a self,
        function: &'a str,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventMeta>>> {
        Box::pin(EventStore::due_window(self, function, after, limit))
    }
    fn load(&self, id: i64) -> Result<Option<QueuedEvent>> {
        EventStore::load(self, id)
    }
    fn oldest_enqueued(&self, function: &str) -> Result<Option<i64>> {
        EventStore::oldest_enqueued(self, function)
    }
}

impl GatewayRouteStore for RouteStore {
    fn list(&self) -> Result<Vec<StoredRoute>> {
        RouteStore::list(self)
    }
    fn put(&self, route: &StoredRoute) -> Result<()> {
        RouteStore::put(self, route)
    }
    fn delete(&self, api: &str, route_key: &str) -> Result<bool> {
        RouteStore::delete(self, api, route_key)
    }
    fn list_settings(&self, kind: &str) -> Result<Vec<(String, String)>> {
        RouteStore::list_settings(self, kind)
    }
    fn put_setting(&self, kind: &str, key: &str, config: &str, updated_ms: i64) -> Result<()> {
        RouteStore::put_setting(self, kind, key, config, updated_ms)
    }
    fn delete_setting(&self, kind: &str, key: &str) -> Result<bool> {
        RouteStore::delete_setting(self, kind, key)
    }
}

impl GatewayAccessStore for GatewayAuthStore {
    fn list(&self) -> Result<Vec<StoredObject>> {
        GatewayAuthStore::list(self)
    }
    fn put(&self, o: &StoredObject) -> Result<()> {
        GatewayAuthStore::put(self, o)
    }
    fn delete(&self, kind: &str, name: &str) -> Result<bool> {
        GatewayAuthStore::delete(self, kind, name)
    }
    fn usage(&self) -> Result<Vec<(String, i64, u64)>> {
        GatewayAuthStore::usage(self)
    }
    fn put_usage(&self, rows: &[UsageRow<'_>]) -> Result<()> {
        GatewayAuthStore::put_usage(self, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry through the trait object, as another backend would be used.
    #[test]
    fn db_serves_the_registry_through_the_trait() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("n.db")).unwrap();
        let store: &dyn FunctionStore = &db;
        let cfg = FunctionConfig {
            spec: nimbus_core::FunctionSpec::new("f", "python3.12".parse().unwrap(), "app.handler"),
            code_sha256: "ab".repeat(32),
            code_size: 10,
            revision: 1,
            revision_id: "r1".into(),
            created_ms: 1,
            last_modified_ms: 1,
        };
        store.put_function(&cfg).unwrap();
        assert_eq!(store.list_functions().unwrap().len(), 1);
        assert!(store.delete_function("f").unwrap());
        assert!(store.get_function("f").unwrap().is_none());
    }

    #[tokio::test]
    async fn the_queue_through_the_trait() {
        let dir = tempfile::tempdir().unwrap();
        let q: Box<dyn EventQueueStore> =
            Box::new(EventStore::open(&dir.path().join("e.db")).unwrap());
        let ev = QueuedEvent {
            id: 0,
            request_id: "r".into(),
            function: "f".into(),
            qualifier: None,
            payload: b"{}".to_vec(),
            enqueued_ms: 1,
            attempts: 0,
            due_ms: 1,
            trace_id: None,
            source: "event".into(),
        };
        let ids = q.insert(vec![ev.clone(), ev]).await.unwrap();
        q.delete(ids[0]);
        let w = q.due_window("f", None, 10).await.unwrap();
        assert_eq!(w.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]]);
        assert_eq!(q.backlog().unwrap(), [("f".to_string(), 1)]);
    }
}

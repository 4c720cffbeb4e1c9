//! Per-invocation telemetry for Nimbus (DESIGN.md decision 8).
//!
//! Owns the Lambda log framing (`START`/`END`/`REPORT` lines, [`lines`]) and the
//! [`Telemetry`] sink: log lines and invocation records go through a bounded channel
//! to one writer thread that batches them into the store (one transaction per batch,
//! so a chatty function costs one fsync per batch rather than per line) and then
//! publishes them, with their store ids, to live subscribers (`nimbus logs --follow`).
//! When the writer falls behind and the channel is full, a line or record is dropped
//! and counted (`nimbus_telemetry_dropped_total`): an invocation never waits for the
//! telemetry writer, and memory stays bounded.
//!
//! It also owns the Prometheus [`metrics`], the hourly usage rollup's pricing
//! ([`metering`]) and the [`retention`] of records and logs.

pub mod lines;
pub mod metering;
pub mod metrics;
pub mod retention;

pub use metrics::Metrics;

use nimbus_core::InvocationRecord;
use nimbus_store::{Db, LogLine};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

enum Msg {
    Log(LogLine),
    Record(InvocationRecord),
    Flush(oneshot::Sender<()>),
}

/// Handle to the telemetry writer. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    tx: mpsc::SyncSender<Msg>,
    live: broadcast::Sender<LogLine>,
    metrics: Metrics,
}

const BATCH_MAX: usize = 2048;
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// Messages the channel holds before new ones are dropped: about a second of the
/// writer's throughput, a few MB of lines at most.
pub const CHANNEL_CAPACITY: usize = 32 * 1024;

impl Telemetry {
    /// Start the writer thread over `db`.
    pub fn start(db: Db) -> Self {
        Self::start_with_capacity(db, CHANNEL_CAPACITY)
    }

    /// Start the writer thread over `db` with a channel of `capacity` messages.
    pub fn start_with_capacity(db: Db, capacity: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Msg>(capacity.max(1));
        let (live, _) = broadcast::channel(4096);
        let live2 = live.clone();
        std::thread::Builder::new()
            .name("nimbus-telemetry".into())
            .spawn(move || writer(db, rx, live2))
            .expect("spawn telemetry thread");
        Self {
            tx,
            live,
            metrics: Metrics::new(),
        }
    }

    /// The server's Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Append one line to a function's log.
    pub fn log(&self, function: &str, request_id: Option<&str>, line: String) {
        self.offer(
            Msg::Log(LogLine {
                id: 0,
                function: function.to_string(),
                request_id: request_id.map(str::to_string),
                ts_ms: nimbus_core::now_ms(),
                line,
            }),
            "log",
        );
    }

    /// Hand a message to the writer without waiting: when its channel is full the
    /// message is dropped and counted.
    fn offer(&self, msg: Msg, kind: &'static str) {
        match self.tx.try_send(msg) {
            Ok(()) | Err(mpsc::TrySendError::Disconnected(_)) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                self.metrics.telemetry_dropped(kind);
                tracing::debug!(kind, "telemetry writer behind: dropped");
            }
        }
    }

    /// Store one invocation's record, and log it once as a structured server log line
    /// (target `nimbus::invocation`; silence it with `NIMBUS_LOG=info,nimbus::invocation=off`).
    pub fn record(&self, rec: InvocationRecord) {
        tracing::info!(
            target: "nimbus::invocation",
            request_id = %rec.request_id,
            function = %rec.function,
            version = %rec.version,
            trigger = rec.trigger.as_str(),
            outcome = rec.outcome.as_str(),
            cold = rec.cold,
            init_ms = rec.init_ms.unwrap_or(0.0),
            duration_ms = rec.duration_ms,
            billed_ms = rec.billed_ms,
            memory_mb = rec.memory_mb,
            max_memory_used_mb = rec.max_memory_used_mb,
            error_type = rec.error_type.as_deref().unwrap_or(""),
            trace_id = rec.trace_id.as_deref().unwrap_or(""),
            "invocation"
        );
        self.offer(Msg::Record(rec), "record");
    }

    /// Lines as they are stored, for live tails. Lagging receivers lose lines (and
    /// can re-read them from the store by id).
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }

    /// Wait until everything sent so far is in the store (or dropped). A flush is
    /// never dropped: it waits for room, off the async runtime's worker threads.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let sender = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || sender.send(Msg::Flush(tx)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = rx.await;
        }
    }
}

fn writer(db: Db, rx: mpsc::Receiver<Msg>, live: broadcast::Sender<LogLine>) {
    let mut logs = Vec::new();
    let mut records = Vec::new();
    let mut waiters = Vec::new();
    loop {
        let first = match rx.recv() {
            Ok(m) => m,
            Err(_) => return,
        };
        let mut closed = false;
        fn push(
            m: Msg,
            logs: &mut Vec<LogLine>,
            records: &mut Vec<InvocationRecord>,
            waiters: &mut Vec<oneshot::Sender<()>>,
        ) {
            match m {
                Msg::Log(l) => logs.push(l),
                Msg::Record(r) => records.push(r),
                Msg::Flush(w) => waiters.push(w),
            }
        }
        push(first, &mut logs, &mut records, &mut waiters);
        // Let a batch gather by sleeping rather than by waiting on the channel: a
        // sender wakes this thread only for the first message of a batch, not for
        // each of the several lines every invocation sends. A flush waits at most
        // one BATCH_WAIT for it.
        if waiters.is_empty() {
            std::thread::sleep(BATCH_WAIT);
        }
        // Everything already queued joins the batch.
        loop {
            match rx.try_recv() {
                Ok(m) => push(m, &mut logs, &mut records, &mut waiters),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
            if logs.len() + records.len() >= BATCH_MAX {
                break;
            }
        }
        if !logs.is_empty() || !records.is_empty() {
            if let Err(e) = db.append_telemetry(&records, &mut logs) {
                tracing::error!(error = %e, lines = logs.len(), records = records.len(), "telemetry write failed");
            }
            for l in logs.drain(..) {
                let _ = live.send(l);
            }
            records.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_reach_store_and_subscribers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let t = Telemetry::start(db.clone());
        let mut sub = t.subscribe();
        for i in 0..100 {
            t.log("f", Some("r"), format!("line {i}"));
        }
        t.flush().await;
        let stored = db.logs("f", 0, 0, 1000).unwrap();
        assert_eq!(stored.len(), 100);
        assert_eq!(stored[99].line, "line 99");
        let first = sub.recv().await.unwrap();
        assert_eq!(first.line, "line 0");
        assert_eq!(first.id, stored[0].id);
    }

    /// With the writer stuck (another connection holds the database's write lock),
    /// a flood of lines and records neither blocks the caller nor grows memory: what
    /// does not fit in the channel is dropped and counted; once the writer is free,
    /// lines reach the store again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_dropped_and_counted_never_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        let t = Telemetry::start_with_capacity(db.clone(), 8);
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let flood = t.clone();
        std::thread::spawn(move || {
            for i in 0..10_000 {
                flood.log("f", Some("r"), format!("line {i}"));
            }
            for i in 0..100 {
                flood.record(nimbus_core::InvocationRecord {
                    request_id: format!("r{i}"),
                    function: "f".into(),
                    version: "$LATEST".into(),
                    revision: 1,
                    trigger: nimbus_core::Trigger::Api,
                    start_ms: 1,
                    cold: false,
                    init_ms: None,
                    duration_ms: 1.0,
                    billed_ms: 1,
                    memory_mb: 128,
                    max_memory_used_mb: 1,
                    outcome: nimbus_core::Outcome::Success,
                    error_type: None,
                    trace_id: None,
                });
            }
            let _ = done_tx.send(());
        });
        // A liveness bound, not a latency assertion: a blocking sender would wait
        // for the lock's holder, which waits for this.
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("logging blocked on a stuck telemetry writer");
        let dropped_logs = t.metrics().telemetry_dropped_count("log");
        assert!(dropped_logs > 0, "a full channel drops");
        // At most the channel and one batch in the writer's hands were kept.
        assert!(
            dropped_logs >= 10_000 - 8 - BATCH_MAX as u64,
            "{dropped_logs}"
        );
        assert!(t.metrics().telemetry_dropped_count("record") > 0);
        let text = t.metrics().encode(Vec::new(), false);
        assert!(
            text.contains("nimbus_telemetry_dropped_total{kind=\"log\"}"),
            "{text}"
        );
        blocker.execute_batch("COMMIT").unwrap();
        t.flush().await;
        t.log("f", Some("r"), "after".into());
        t.flush().await;
        let tail = db.tail_logs("f", 1).unwrap();
        assert_eq!(tail[0].line, "after");
    }
}

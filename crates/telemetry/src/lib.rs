//! Per-invocation telemetry for Nimbus (DESIGN.md decision 8).
//!
//! Owns the Lambda log framing (`START`/`END`/`REPORT` lines, [`lines`]) and the
//! [`Telemetry`] sink: log lines and invocation records go through a channel to one
//! writer thread that batches them into the store (one transaction per batch, so a
//! chatty function costs one fsync per batch rather than per line) and then publishes
//! them, with their store ids, to live subscribers (`nimbus logs --follow`).
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
    tx: mpsc::Sender<Msg>,
    live: broadcast::Sender<LogLine>,
    metrics: Metrics,
}

const BATCH_MAX: usize = 2048;
const BATCH_WAIT: Duration = Duration::from_millis(50);

impl Telemetry {
    /// Start the writer thread over `db`.
    pub fn start(db: Db) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>();
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
        let _ = self.tx.send(Msg::Log(LogLine {
            id: 0,
            function: function.to_string(),
            request_id: request_id.map(str::to_string),
            ts_ms: nimbus_core::now_ms(),
            line,
        }));
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
        let _ = self.tx.send(Msg::Record(rec));
    }

    /// Lines as they are stored, for live tails. Lagging receivers lose lines (and
    /// can re-read them from the store by id).
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }

    /// Wait until everything sent so far is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
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
}

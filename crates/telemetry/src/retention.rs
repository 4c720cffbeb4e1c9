//! Retention of invocation records and log lines (`nimbus up --retention 7d`).
//!
//! A background task deletes what is older than the retention, in batches of
//! [`BATCH`] rows per table, each its own short transaction, with a pause between
//! batches: the telemetry writer shares the database connection and never waits
//! behind more than one batch. The hourly metering rollup is not pruned (it is
//! small: one row per function, hour and memory size), so `nimbus cost` still sees
//! usage whose records are gone.

use nimbus_store::Db;
use std::time::Duration;

/// Rows deleted per table per transaction.
pub const BATCH: usize = 2000;
/// Pause between two batches, so the writer gets the connection.
const PAUSE: Duration = Duration::from_millis(10);

/// How often the task looks for expired rows: a tenth of the retention, between one
/// second and ten minutes.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Delete everything older than `cutoff_ms`, batch by batch. Returns rows deleted.
pub async fn prune(db: &Db, cutoff_ms: i64) -> nimbus_store::Result<u64> {
    let mut total = 0u64;
    loop {
        let db2 = db.clone();
        let n = tokio::task::spawn_blocking(move || db2.prune_batch(cutoff_ms, BATCH))
            .await
            .map_err(|e| nimbus_store::StoreError::Corrupt(format!("prune task: {e}")))??;
        total += n as u64;
        if n < BATCH {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Start the retention task: every [`interval`], prune what is older than
/// `retention`.
pub fn spawn(db: Db, retention: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval(retention));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cutoff = nimbus_core::now_ms() - retention.as_millis() as i64;
            match prune(&db, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "retention: pruned old records and log lines"),
                Err(e) => tracing::warn!(error = %e, "retention: prune failed"),
            }
        }
    })
}

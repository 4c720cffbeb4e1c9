//! The narrow reads the control API makes of the engine (health, `/metrics`, logs,
//! invocation records, traces, metering), so that no handler reaches through the
//! invoker for the database or the pool.

use crate::{InvokeError, Invoker};
use nimbus_core::InvocationRecord;
use nimbus_runtime::pool::PoolCensus;
use nimbus_store::{Db, LogLine, MeterRow, RecordQuery, StoreError};

impl Invoker {
    /// How instance limits are enforced on this host (cgroup v2, rlimits…).
    pub fn limits_mechanism(&self) -> &'static str {
        self.pool().limits_mechanism()
    }

    /// Instances per function version and state.
    pub fn instance_census(&self) -> Vec<PoolCensus> {
        self.pool().census()
    }

    /// The last `limit` log lines of `function`, oldest first.
    pub async fn tail_logs(&self, function: &str, limit: u32) -> Result<Vec<LogLine>, InvokeError> {
        let f = function.to_owned();
        self.read(move |db| db.tail_logs(&f, limit)).await
    }

    /// Log lines of `function` with id above `after_id`, at or after `since_ms`.
    pub async fn logs(
        &self,
        function: &str,
        after_id: i64,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>, InvokeError> {
        let f = function.to_owned();
        self.read(move |db| db.logs(&f, after_id, since_ms, limit))
            .await
    }

    /// Invocation records matching `query`.
    pub async fn records(&self, query: RecordQuery) -> Result<Vec<InvocationRecord>, InvokeError> {
        self.read(move |db| db.records(&query)).await
    }

    /// The invocation records of one trace and (when `with_logs`) their log lines.
    pub async fn trace(
        &self,
        root: &str,
        with_logs: bool,
        limit: u32,
    ) -> Result<(Vec<InvocationRecord>, Vec<LogLine>), InvokeError> {
        let root = root.to_owned();
        self.read(move |db| {
            let recs = db.trace_records(&root, limit)?;
            let logs = if with_logs {
                let ids: Vec<String> = recs.iter().map(|r| r.request_id.clone()).collect();
                db.request_logs(&ids, limit)?
            } else {
                Vec::new()
            };
            Ok((recs, logs))
        })
        .await
    }

    /// Metered usage since `since_ms`.
    pub async fn metering(&self, since_ms: i64) -> Result<Vec<MeterRow>, InvokeError> {
        self.read(move |db| db.metering(since_ms)).await
    }

    /// Run a read of the database off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, InvokeError> {
        let db = self.db().clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| InvokeError::Service(e.to_string()))?
            .map_err(|e| InvokeError::Service(e.to_string()))
    }
}

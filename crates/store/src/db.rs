//! The SQLite side of the store.

use crate::{Result, StoreError};
use nimbus_core::{EventInvokeConfig, FunctionConfig, InvocationRecord, Outcome};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

const HOUR_MS: i64 = 3_600_000;

/// One row of the hourly metering rollup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeterRow {
    pub function: String,
    /// Start of the hour (UTC), ms since the epoch.
    pub hour_ms: i64,
    pub memory_mb: u32,
    pub requests: u64,
    /// Sum of billed durations (each rounded up to 1 ms).
    pub billed_ms: u64,
    pub max_memory_used_mb: u32,
}

/// One line of a function's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Monotonic id; `logs --follow` resumes after the last id it saw.
    pub id: i64,
    pub function: String,
    pub request_id: Option<String>,
    pub ts_ms: i64,
    pub line: String,
}

/// One stored object of a function (a published version, an alias, …); `value` is
/// JSON, `None` in a [`Db::write_objects`] call means delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionObject {
    pub function: String,
    pub kind: String,
    pub key: String,
    pub value: Option<String>,
}

/// Filters for [`Db::records`].
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    pub function: Option<String>,
    pub since_ms: Option<i64>,
    pub errors_only: bool,
    pub cold_only: bool,
    pub limit: Option<u32>,
}

/// The database. Cheap to clone; every call takes the one connection's lock, so
/// callers on an async runtime should use `spawn_blocking` for anything but tiny calls.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Open (or create) the database file with WAL and full durability, and bring
    /// its schema up to date ([`crate::schema::MAIN_DB`]).
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = crate::open_durable(path)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        crate::migrate::migrate(&mut conn, &crate::schema::MAIN_DB)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    pub fn put_function(&self, cfg: &FunctionConfig) -> Result<()> {
        let json = serde_json::to_string(cfg).expect("config serialises");
        self.with(|c| {
            c.execute(
                "INSERT INTO functions(name, config, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated_ms = excluded.updated_ms",
                params![cfg.name(), json, cfg.last_modified_ms],
            )?;
            Ok(())
        })
    }

    pub fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>> {
        self.with(|c| {
            let json: Option<String> = c
                .query_row(
                    "SELECT config FROM functions WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            json.map(|j| parse_config(&j)).transpose()
        })
    }

    /// Delete a function and its async settings.
    pub fn delete_function(&self, name: &str) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM event_invoke_configs WHERE function = ?1",
                [name],
            )?;
            tx.execute("DELETE FROM function_objects WHERE function = ?1", [name])?;
            let n = tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// Write and delete objects of functions (versions, aliases, …) in one transaction:
    /// `Some(value)` stores, `None` deletes.
    pub fn write_objects(&self, changes: &[FunctionObject]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for o in changes {
                match &o.value {
                    Some(v) => tx.execute(
                        "INSERT INTO function_objects(function, kind, key, value) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(function, kind, key) DO UPDATE SET value = excluded.value",
                        params![o.function, o.kind, o.key, v],
                    )?,
                    None => tx.execute(
                        "DELETE FROM function_objects WHERE function = ?1 AND kind = ?2 AND key = ?3",
                        params![o.function, o.kind, o.key],
                    )?,
                };
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Every stored object, ordered by function, kind and key.
    pub fn list_objects(&self) -> Result<Vec<FunctionObject>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT function, kind, key, value FROM function_objects ORDER BY function, kind, key",
            )?;
            let rows = st.query_map([], |r| {
                Ok(FunctionObject {
                    function: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    value: Some(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub fn put_event_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
        cfg: &EventInvokeConfig,
    ) -> Result<()> {
        let json = serde_json::to_string(cfg).expect("config serialises");
        self.with(|c| {
            c.execute(
                "INSERT INTO event_invoke_configs(function, qualifier, config) VALUES (?1, ?2, ?3)
                 ON CONFLICT(function, qualifier) DO UPDATE SET config = excluded.config",
                params![function, qualifier, json],
            )?;
            Ok(())
        })
    }

    pub fn delete_event_invoke_config(&self, function: &str, qualifier: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM event_invoke_configs WHERE function = ?1 AND qualifier = ?2",
                params![function, qualifier],
            )? > 0)
        })
    }

    /// Every stored async configuration as `(function, qualifier, config)`.
    pub fn list_event_invoke_configs(&self) -> Result<Vec<(String, String, EventInvokeConfig)>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT function, qualifier, config FROM event_invoke_configs")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (f, q, j) = row?;
                let cfg = serde_json::from_str(&j)
                    .map_err(|e| StoreError::Corrupt(format!("event invoke config: {e}")))?;
                out.push((f, q, cfg));
            }
            Ok(out)
        })
    }

    pub fn list_functions(&self) -> Result<Vec<FunctionConfig>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT config FROM functions ORDER BY name")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(parse_config(&row?)?);
            }
            Ok(out)
        })
    }

    /// Store invocation records and log lines in one transaction (the telemetry
    /// writer batches them). Log ids are assigned here.
    pub fn append_telemetry(
        &self,
        records: &[InvocationRecord],
        logs: &mut [LogLine],
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO invocations(request_id, function, start_ms, outcome, cold, record, trace_root)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for r in records {
                    ins.execute(params![
                        r.request_id,
                        r.function,
                        r.start_ms,
                        r.outcome.as_str(),
                        r.cold,
                        serde_json::to_string(r).expect("record serialises"),
                        r.trace_id.as_deref().and_then(trace_root),
                    ])?;
                }
                let mut ins = tx.prepare_cached(
                    "INSERT INTO logs(function, request_id, ts_ms, line) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for l in logs.iter_mut() {
                    ins.execute(params![l.function, l.request_id, l.ts_ms, l.line])?;
                    l.id = tx.last_insert_rowid();
                }
                // The batch's usage, folded into the hourly rollup.
                let mut usage: std::collections::HashMap<(&str, i64, u32), (u64, u64, u32)> =
                    std::collections::HashMap::new();
                for r in records {
                    let u = usage
                        .entry((&r.function, r.start_ms.div_euclid(HOUR_MS) * HOUR_MS, r.memory_mb))
                        .or_default();
                    u.0 += 1;
                    u.1 += r.billed_ms;
                    u.2 = u.2.max(r.max_memory_used_mb);
                }
                let mut up = tx.prepare_cached(
                    "INSERT INTO metering_hourly(function, hour_ms, memory_mb, requests, billed_ms, max_memory_used_mb)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(function, hour_ms, memory_mb) DO UPDATE SET
                       requests = requests + excluded.requests,
                       billed_ms = billed_ms + excluded.billed_ms,
                       max_memory_used_mb = MAX(max_memory_used_mb, excluded.max_memory_used_mb)",
                )?;
                for ((function, hour_ms, memory_mb), (n, billed, max)) in usage {
                    up.execute(params![function, hour_ms, memory_mb, n as i64, billed as i64, max])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Log lines of a function with id greater than `after_id`, oldest first.
    pub fn logs(
        &self,
        function: &str,
        after_id: i64,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, function, request_id, ts_ms, line FROM logs
                 WHERE function = ?1 AND id > ?2 AND ts_ms >= ?3 ORDER BY id LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![function, after_id, since_ms, limit], row_to_log)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The last `limit` log lines of a function, oldest first.
    pub fn tail_logs(&self, function: &str, limit: u32) -> Result<Vec<LogLine>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, function, request_id, ts_ms, line FROM logs
                 WHERE function = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![function, limit], row_to_log)?;
            let mut v = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            v.reverse();
            Ok(v)
        })
    }

    pub fn records(&self, q: &RecordQuery) -> Result<Vec<InvocationRecord>> {
        self.with(|c| {
            let mut sql = String::from("SELECT record FROM invocations WHERE start_ms >= ?1");
            if q.function.is_some() {
                sql.push_str(" AND function = ?2");
            } else {
                sql.push_str(" AND ?2 IS NULL");
            }
            if q.errors_only {
                sql.push_str(" AND outcome != 'success'");
            }
            if q.cold_only {
                sql.push_str(" AND cold = 1");
            }
            sql.push_str(" ORDER BY start_ms DESC LIMIT ?3");
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(
                params![q.since_ms.unwrap_or(0), q.function, q.limit.unwrap_or(1000)],
                |r| r.get::<_, String>(0),
            )?;
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                out.push(
                    serde_json::from_str(&row).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            Ok(out)
        })
    }

    /// The records of one trace (by its Root, `1-<8 hex>-<24 hex>`), oldest first.
    pub fn trace_records(&self, root: &str, limit: u32) -> Result<Vec<InvocationRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT record FROM invocations WHERE trace_root = ?1
                 ORDER BY start_ms, rowid LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![root, limit], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(
                    serde_json::from_str(&row?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            Ok(out)
        })
    }

    /// The log lines of the given requests, in the order they were written.
    pub fn request_logs(&self, request_ids: &[String], limit: u32) -> Result<Vec<LogLine>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, function, request_id, ts_ms, line FROM logs
                 WHERE request_id = ?1 ORDER BY id LIMIT ?2",
            )?;
            let mut out = Vec::new();
            for id in request_ids {
                let rows = stmt.query_map(params![id, limit], row_to_log)?;
                out.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
            }
            out.sort_by_key(|l| l.id);
            out.truncate(limit as usize);
            Ok(out)
        })
    }

    /// Count records of a function by outcome (used by tests and `nimbus get`).
    pub fn count_outcomes(&self, function: &str) -> Result<Vec<(Outcome, u64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT outcome, COUNT(*) FROM invocations WHERE function = ?1 GROUP BY outcome",
            )?;
            let rows = stmt.query_map([function], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (o, n) = row?;
                if let Some(o) = Outcome::parse(&o) {
                    out.push((o, n as u64));
                }
            }
            Ok(out)
        })
    }

    /// The metering rollup from the hour holding `since_ms` on, by function and hour.
    pub fn metering(&self, since_ms: i64) -> Result<Vec<MeterRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT function, hour_ms, memory_mb, requests, billed_ms, max_memory_used_mb
                 FROM metering_hourly WHERE hour_ms >= ?1 ORDER BY function, hour_ms, memory_mb",
            )?;
            let rows = st.query_map([since_ms.div_euclid(HOUR_MS) * HOUR_MS], |r| {
                Ok(MeterRow {
                    function: r.get(0)?,
                    hour_ms: r.get(1)?,
                    memory_mb: r.get(2)?,
                    requests: r.get::<_, i64>(3)? as u64,
                    billed_ms: r.get::<_, i64>(4)? as u64,
                    max_memory_used_mb: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Delete at most `limit` records and at most `limit` log lines older than
    /// `cutoff_ms`, in one short transaction; returns the larger of the two counts
    /// (below `limit`: nothing older is left). Log lines are looked for among the
    /// `limit` oldest ids only, so a batch reads at most `limit` rows of the log
    /// whatever its size (ids follow time: the writer assigns them in arrival order).
    pub fn prune_batch(&self, cutoff_ms: i64, limit: usize) -> Result<usize> {
        self.with(|c| {
            let tx = c.transaction()?;
            let records = tx.execute(
                "DELETE FROM invocations WHERE rowid IN
                 (SELECT rowid FROM invocations WHERE start_ms < ?1 LIMIT ?2)",
                params![cutoff_ms, limit as i64],
            )?;
            let logs = tx.execute(
                "DELETE FROM logs WHERE id IN
                 (SELECT id FROM (SELECT id, ts_ms FROM logs ORDER BY id LIMIT ?2) WHERE ts_ms < ?1)",
                params![cutoff_ms, limit as i64],
            )?;
            tx.commit()?;
            Ok(records.max(logs))
        })
    }

    /// Delete records and logs older than `cutoff_ms`; returns rows removed.
    pub fn prune_before(&self, cutoff_ms: i64) -> Result<usize> {
        self.with(|c| {
            let a = c.execute("DELETE FROM invocations WHERE start_ms < ?1", [cutoff_ms])?;
            let b = c.execute("DELETE FROM logs WHERE ts_ms < ?1", [cutoff_ms])?;
            Ok(a + b)
        })
    }
}

/// The `Root` of an X-Ray trace header.
fn trace_root(header: &str) -> Option<&str> {
    header
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Root="))
        .filter(|r| !r.is_empty())
}

fn row_to_log(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogLine> {
    Ok(LogLine {
        id: r.get(0)?,
        function: r.get(1)?,
        request_id: r.get(2)?,
        ts_ms: r.get(3)?,
        line: r.get(4)?,
    })
}

fn parse_config(json: &str) -> Result<FunctionConfig> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("function config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::{FunctionSpec, Trigger};

    #[test]
    fn function_objects_round_trip_and_go_with_the_function() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("o.db")).unwrap();
        db.put_function(&cfg("f")).unwrap();
        let obj = |k: &str, v: Option<&str>| FunctionObject {
            function: "f".into(),
            kind: "alias".into(),
            key: k.into(),
            value: v.map(str::to_string),
        };
        db.write_objects(&[obj("a", Some("1")), obj("b", Some("2"))])
            .unwrap();
        db.write_objects(&[obj("a", None), obj("b", Some("3"))])
            .unwrap();
        assert_eq!(db.list_objects().unwrap(), vec![obj("b", Some("3"))]);
        db.delete_function("f").unwrap();
        assert!(db.list_objects().unwrap().is_empty());
    }

    #[test]
    fn metering_rolls_up_by_hour_and_outlives_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db")).unwrap();
        let rec = |start: i64, billed: u64, mem: u32, used: u32| InvocationRecord {
            request_id: format!("r{start}"),
            function: "f".into(),
            version: "$LATEST".into(),
            revision: 1,
            trigger: Trigger::Api,
            start_ms: start,
            cold: false,
            init_ms: None,
            duration_ms: billed as f64 - 0.5,
            billed_ms: billed,
            memory_mb: mem,
            max_memory_used_mb: used,
            outcome: Outcome::Success,
            error_type: None,
            trace_id: None,
        };
        let h = HOUR_MS;
        db.append_telemetry(&[rec(10, 5, 128, 20), rec(h - 1, 7, 128, 30)], &mut [])
            .unwrap();
        db.append_telemetry(&[rec(20, 1, 128, 25), rec(h, 3, 256, 40)], &mut [])
            .unwrap();
        let rows = db.metering(0).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            (
                rows[0].hour_ms,
                rows[0].requests,
                rows[0].billed_ms,
                rows[0].max_memory_used_mb
            ),
            (0, 3, 13, 30)
        );
        assert_eq!(
            (rows[1].hour_ms, rows[1].memory_mb, rows[1].requests),
            (h, 256, 1)
        );
        // The hour holding `since` counts whole.
        assert_eq!(db.metering(h + 5).unwrap().len(), 1);
        assert_eq!(db.prune_before(i64::MAX).unwrap(), 4);
        assert_eq!(db.metering(0).unwrap(), rows);
    }

    #[test]
    fn prune_batch_deletes_old_rows_a_batch_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.db")).unwrap();
        let mut logs: Vec<LogLine> = (0..25)
            .map(|i| LogLine {
                id: 0,
                function: "f".into(),
                request_id: None,
                ts_ms: if i < 20 { 100 } else { 1000 },
                line: format!("{i}"),
            })
            .collect();
        db.append_telemetry(&[], &mut logs).unwrap();
        assert_eq!(db.prune_batch(500, 8).unwrap(), 8);
        assert_eq!(db.prune_batch(500, 8).unwrap(), 8);
        assert_eq!(db.prune_batch(500, 8).unwrap(), 4);
        assert_eq!(db.prune_batch(500, 8).unwrap(), 0);
        let left = db.logs("f", 0, 0, 100).unwrap();
        assert_eq!(left.len(), 5);
        assert_eq!(left[0].line, "20");
    }

    fn cfg(name: &str) -> FunctionConfig {
        FunctionConfig {
            spec: FunctionSpec::new(name, "python3.12".parse().unwrap(), "app.handler"),
            code_sha256: "ab".repeat(32),
            code_size: 10,
            revision: 1,
            revision_id: "r1".into(),
            created_ms: 1,
            last_modified_ms: 1,
        }
    }

    #[test]
    fn functions_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nimbus.db");
        {
            let db = Db::open(&path).unwrap();
            db.put_function(&cfg("b")).unwrap();
            db.put_function(&cfg("a")).unwrap();
            let mut c = cfg("a");
            c.revision = 2;
            db.put_function(&c).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let all = db.list_functions().unwrap();
        assert_eq!(all.iter().map(|c| c.name()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(db.get_function("a").unwrap().unwrap().revision, 2);
        assert!(db.delete_function("a").unwrap());
        assert!(!db.delete_function("a").unwrap());
        assert!(db.get_function("a").unwrap().is_none());
    }

    #[test]
    fn a_store_from_before_traces_gets_its_trace_roots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let root = "1-5759e988-bd862e3fe1be46a994272793";
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE invocations (request_id TEXT NOT NULL, function TEXT NOT NULL,
                   start_ms INTEGER NOT NULL, outcome TEXT NOT NULL, cold INTEGER NOT NULL,
                   record TEXT NOT NULL);",
            )
            .unwrap();
            let rec = serde_json::json!({
                "request_id": "r", "function": "f", "version": "$LATEST", "revision": 1,
                "trigger": "api", "start_ms": 5, "cold": false, "init_ms": null,
                "duration_ms": 1.0, "billed_ms": 1, "memory_mb": 128,
                "max_memory_used_mb": 1, "outcome": "success", "error_type": null,
                "trace_id": format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=0"),
            });
            c.execute(
                "INSERT INTO invocations VALUES ('r', 'f', 5, 'success', 0, ?1)",
                [rec.to_string()],
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let t = db.trace_records(root, 10).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].request_id, "r");
    }

    /// A database made by the schema of before versioning (every table already
    /// there, `user_version` 0) is adopted as it is: nothing is folded twice, and the
    /// gateway's tables keep their rows.
    #[test]
    fn an_unversioned_store_is_adopted_without_refolding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nimbus.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE functions (name TEXT PRIMARY KEY, config TEXT NOT NULL, updated_ms INTEGER NOT NULL);
                 CREATE TABLE invocations (request_id TEXT NOT NULL, function TEXT NOT NULL,
                    start_ms INTEGER NOT NULL, outcome TEXT NOT NULL, cold INTEGER NOT NULL,
                    record TEXT NOT NULL, trace_root TEXT);
                 CREATE INDEX invocations_by_fn ON invocations(function, start_ms);
                 CREATE INDEX invocations_by_time ON invocations(start_ms);
                 CREATE INDEX invocations_by_trace ON invocations(trace_root, start_ms);
                 CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT, function TEXT NOT NULL,
                    request_id TEXT, ts_ms INTEGER NOT NULL, line TEXT NOT NULL);
                 CREATE TABLE function_objects (function TEXT NOT NULL, kind TEXT NOT NULL,
                    key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (function, kind, key));
                 CREATE TABLE event_invoke_configs (function TEXT NOT NULL, qualifier TEXT NOT NULL,
                    config TEXT NOT NULL, PRIMARY KEY (function, qualifier));
                 CREATE TABLE metering_hourly (function TEXT NOT NULL, hour_ms INTEGER NOT NULL,
                    memory_mb INTEGER NOT NULL, requests INTEGER NOT NULL, billed_ms INTEGER NOT NULL,
                    max_memory_used_mb INTEGER NOT NULL, PRIMARY KEY (function, hour_ms, memory_mb));
                 CREATE TABLE gateway_routes (api TEXT NOT NULL, route_key TEXT NOT NULL,
                    config TEXT NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (api, route_key));
                 INSERT INTO invocations VALUES ('r', 'f', 5, 'success', 0,
                    '{\"memory_mb\":128,\"billed_ms\":7,\"max_memory_used_mb\":9}', NULL);
                 INSERT INTO metering_hourly VALUES ('f', 0, 128, 1, 7, 9);
                 INSERT INTO gateway_routes VALUES ('default', 'GET /', '{}', 1);",
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let m = db.metering(0).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].requests, m[0].billed_ms), (1, 7), "not folded again");
        let routes = crate::RouteStore::open(&path).unwrap();
        assert_eq!(routes.list().unwrap().len(), 1);
        let c = Connection::open(&path).unwrap();
        assert_eq!(
            crate::migrate::version(&c).unwrap(),
            crate::schema::MAIN_DB.latest()
        );
        // A file from a newer Nimbus is refused with a clear error.
        c.pragma_update(None, "user_version", 1000).unwrap();
        drop((db, routes));
        let err = Db::open(&path).err().expect("refused").to_string();
        assert!(
            err.contains("nimbus.db") && err.contains("1000") && err.contains("newer"),
            "{err}"
        );
    }

    #[test]
    fn telemetry_and_queries() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("n.db")).unwrap();
        let rec = |id: &str, start: i64, outcome: Outcome, cold: bool| InvocationRecord {
            request_id: id.into(),
            function: "f".into(),
            version: "$LATEST".into(),
            revision: 1,
            trigger: Trigger::Api,
            start_ms: start,
            cold,
            init_ms: None,
            duration_ms: 1.0,
            billed_ms: 1,
            memory_mb: 128,
            max_memory_used_mb: 20,
            outcome,
            error_type: None,
            trace_id: None,
        };
        let root = "1-5759e988-bd862e3fe1be46a994272793";
        let traced = |id: &str, start: i64| InvocationRecord {
            function: "g".into(),
            trace_id: Some(format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=0")),
            ..rec(id, start, Outcome::Success, false)
        };
        db.append_telemetry(&[traced("t2", 50), traced("t1", 40)], &mut [])
            .unwrap();
        let t = db.trace_records(root, 10).unwrap();
        assert_eq!(
            t.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
            ["t1", "t2"],
            "oldest first"
        );
        assert!(db
            .trace_records("1-00000000-000000000000000000000000", 10)
            .unwrap()
            .is_empty());
        let mut logs = vec![
            LogLine {
                id: 0,
                function: "f".into(),
                request_id: Some("1".into()),
                ts_ms: 100,
                line: "a".into(),
            },
            LogLine {
                id: 0,
                function: "f".into(),
                request_id: Some("2".into()),
                ts_ms: 300,
                line: "b".into(),
            },
        ];
        db.append_telemetry(
            &[
                rec("1", 100, Outcome::Success, true),
                rec("2", 300, Outcome::Timeout, false),
            ],
            &mut logs,
        )
        .unwrap();
        assert!(logs[1].id > logs[0].id);
        let all = db
            .records(&RecordQuery {
                function: Some("f".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].request_id, "2", "newest first");
        let errs = db
            .records(&RecordQuery {
                errors_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(errs.len(), 1);
        let cold = db
            .records(&RecordQuery {
                cold_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(cold[0].request_id, "1");
        let after = db.logs("f", logs[0].id, 0, 10).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].line, "b");
        assert_eq!(db.tail_logs("f", 1).unwrap()[0].line, "b");
        // Record "1", its log line and the two traced records.
        assert_eq!(db.prune_before(200).unwrap(), 4);
        assert_eq!(db.records(&RecordQuery::default()).unwrap().len(), 1);
    }
}

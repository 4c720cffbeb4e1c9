//! The SQLite side of the store.

use crate::{Result, StoreError};
use nimbus_core::{EventInvokeConfig, FunctionConfig, InvocationRecord, Outcome};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS functions (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS invocations (
    request_id  TEXT NOT NULL,
    function    TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    cold        INTEGER NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invocations_by_fn ON invocations(function, start_ms);
CREATE INDEX IF NOT EXISTS invocations_by_time ON invocations(start_ms);
CREATE TABLE IF NOT EXISTS logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    function    TEXT NOT NULL,
    request_id  TEXT,
    ts_ms       INTEGER NOT NULL,
    line        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_fn ON logs(function, id);
CREATE INDEX IF NOT EXISTS logs_by_request ON logs(request_id);
-- Published versions, aliases, provisioned-concurrency configs and the version
-- counter of a function, each a JSON value under (function, kind, key).
CREATE TABLE IF NOT EXISTS function_objects (
    function    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (function, kind, key)
);
CREATE TABLE IF NOT EXISTS event_invoke_configs (
    function    TEXT NOT NULL,
    qualifier   TEXT NOT NULL,
    config      TEXT NOT NULL,
    PRIMARY KEY (function, qualifier)
);
"#;

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
    /// Open (or create) the database file with WAL and full durability.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
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
                    "INSERT INTO invocations(request_id, function, start_ms, outcome, cold, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for r in records {
                    ins.execute(params![
                        r.request_id,
                        r.function,
                        r.start_ms,
                        r.outcome.as_str(),
                        r.cold,
                        serde_json::to_string(r).expect("record serialises"),
                    ])?;
                }
                let mut ins = tx.prepare_cached(
                    "INSERT INTO logs(function, request_id, ts_ms, line) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for l in logs.iter_mut() {
                    ins.execute(params![l.function, l.request_id, l.ts_ms, l.line])?;
                    l.id = tx.last_insert_rowid();
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

    /// Delete records and logs older than `cutoff_ms`; returns rows removed.
    pub fn prune_before(&self, cutoff_ms: i64) -> Result<usize> {
        self.with(|c| {
            let a = c.execute("DELETE FROM invocations WHERE start_ms < ?1", [cutoff_ms])?;
            let b = c.execute("DELETE FROM logs WHERE ts_ms < ?1", [cutoff_ms])?;
            Ok(a + b)
        })
    }
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
        db.write_objects(&[obj("a", Some("1")), obj("b", Some("2"))]).unwrap();
        db.write_objects(&[obj("a", None), obj("b", Some("3"))]).unwrap();
        assert_eq!(db.list_objects().unwrap(), vec![obj("b", Some("3"))]);
        db.delete_function("f").unwrap();
        assert!(db.list_objects().unwrap().is_empty());
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
        assert_eq!(db.prune_before(200).unwrap(), 2);
        assert_eq!(db.records(&RecordQuery::default()).unwrap().len(), 1);
    }
}

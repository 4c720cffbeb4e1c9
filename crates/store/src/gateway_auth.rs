//! The gateway's access-control objects — authorizers, usage plans, API keys — and
//! the API keys' quota counters.
//!
//! Like routes, each object is an opaque JSON document owned by the gateway crate,
//! stored under `(kind, name)`. Quota counters live in their own table, one row per
//! API key and quota period; the gateway counts in memory and writes the counters
//! back in batches ([`GatewayAuthStore::put_usage`]), so a restart resumes a
//! period's count instead of resetting it.

use crate::{Result, SharedConn};
use rusqlite::{params, Connection};
use std::path::Path;

/// One stored object: `config` is the gateway's JSON for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `authorizer`, `usage_plan`, `api_key`.
    pub kind: String,
    pub name: String,
    pub config: String,
    pub updated_ms: i64,
}

/// One quota counter: requests an API key made in the period starting at
/// `period_start` (epoch ms, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRow<'a> {
    pub key_id: &'a str,
    pub period_start: i64,
    pub used: u64,
}

/// Handle to the gateway's access-control tables. Cheap to clone.
#[derive(Clone)]
pub struct GatewayAuthStore {
    conn: SharedConn,
}

impl GatewayAuthStore {
    /// Open the tables in the database at `path`, creating them if needed.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            conn: SharedConn::open_schema(path, &crate::schema::MAIN_DB)?,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.conn.with(f)
    }

    /// Every stored object, ordered by kind then name.
    pub fn list(&self) -> Result<Vec<StoredObject>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT kind, name, config, updated_ms FROM gateway_objects ORDER BY kind, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredObject {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    config: r.get(2)?,
                    updated_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Insert or replace an object; returns once the write is durable.
    pub fn put(&self, o: &StoredObject) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO gateway_objects(kind, name, config, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(kind, name) DO UPDATE
                 SET config = excluded.config, updated_ms = excluded.updated_ms",
                params![o.kind, o.name, o.config, o.updated_ms],
            )?;
            Ok(())
        })
    }

    /// Delete an object; `false` when there was none. Deleting an API key drops its
    /// counters too.
    pub fn delete(&self, kind: &str, name: &str) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM gateway_objects WHERE kind = ?1 AND name = ?2",
                params![kind, name],
            )?;
            if kind == "api_key" {
                tx.execute("DELETE FROM gateway_usage WHERE key_id = ?1", params![name])?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// The newest counter of every API key: `(key_id, period_start, used)`.
    pub fn usage(&self) -> Result<Vec<(String, i64, u64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT key_id, period_start, used FROM gateway_usage u
                 WHERE period_start = (SELECT MAX(period_start) FROM gateway_usage
                                       WHERE key_id = u.key_id)",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Write counters in one transaction, dropping each key's older periods.
    pub fn put_usage(&self, rows: &[UsageRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            for r in rows {
                tx.execute(
                    "INSERT INTO gateway_usage(key_id, period_start, used) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key_id, period_start) DO UPDATE SET used = excluded.used",
                    params![r.key_id, r.period_start, r.used as i64],
                )?;
                tx.execute(
                    "DELETE FROM gateway_usage WHERE key_id = ?1 AND period_start < ?2",
                    params![r.key_id, r.period_start],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_usage_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nimbus.db");
        let s = GatewayAuthStore::open(&path).unwrap();
        s.put(&StoredObject {
            kind: "api_key".into(),
            name: "k1".into(),
            config: "{}".into(),
            updated_ms: 1,
        })
        .unwrap();
        s.put_usage(&[UsageRow {
            key_id: "k1",
            period_start: 10,
            used: 3,
        }])
        .unwrap();
        s.put_usage(&[UsageRow {
            key_id: "k1",
            period_start: 20,
            used: 1,
        }])
        .unwrap();
        drop(s);
        let s = GatewayAuthStore::open(&path).unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
        assert_eq!(s.usage().unwrap(), vec![("k1".to_string(), 20, 1)]);
        assert!(s.delete("api_key", "k1").unwrap());
        assert!(s.usage().unwrap().is_empty());
        assert!(!s.delete("api_key", "k1").unwrap());
    }
}

//! Gateway routes (`METHOD /path` → function), the durable side of the gateway's
//! route table.
//!
//! The store keeps each route as an opaque JSON document under `(api, route_key)`:
//! the gateway crate owns the route's shape, so fields added later (authorizers,
//! throttling, CORS) need no schema change here. The table lives in the main
//! database file but behind its own connection, so a route write never queues
//! behind a telemetry batch; WAL with `synchronous=FULL` makes an acknowledged
//! write survive `kill -9`. Routes are read once at start-up: the gateway serves
//! requests from memory and never queries SQLite per request.

use crate::{Result, SharedConn};
use rusqlite::{params, Connection};
use std::path::Path;

/// One stored route: `config` is the gateway's JSON for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoute {
    /// Which API the route belongs to (`default` for the gateway listener's own).
    pub api: String,
    /// `GET /users/{id}`, `ANY /{proxy+}`, `$default`.
    pub route_key: String,
    pub config: String,
    pub updated_ms: i64,
}

/// Handle to the routes table. Cheap to clone.
#[derive(Clone)]
pub struct RouteStore {
    conn: SharedConn,
}

impl RouteStore {
    /// Open the routes table in the database at `path`, creating it if needed.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            conn: SharedConn::open_schema(path, &crate::schema::MAIN_DB)?,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.conn.with(f)
    }

    /// Every stored route, ordered by API then route key.
    pub fn list(&self) -> Result<Vec<StoredRoute>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT api, route_key, config, updated_ms FROM gateway_routes
                 ORDER BY api, route_key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredRoute {
                    api: r.get(0)?,
                    route_key: r.get(1)?,
                    config: r.get(2)?,
                    updated_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Insert or replace a route; returns once the write is durable.
    pub fn put(&self, route: &StoredRoute) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO gateway_routes(api, route_key, config, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(api, route_key) DO UPDATE
                 SET config = excluded.config, updated_ms = excluded.updated_ms",
                params![route.api, route.route_key, route.config, route.updated_ms],
            )?;
            Ok(())
        })
    }

    /// Delete a route; `false` when there was none.
    pub fn delete(&self, api: &str, route_key: &str) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "DELETE FROM gateway_routes WHERE api = ?1 AND route_key = ?2",
                params![api, route_key],
            )?;
            Ok(n > 0)
        })
    }
}

/// Other gateway settings, each an opaque JSON document under `(kind, key)`: an
/// API's CORS configuration (`cors`, the API's id), a function URL's (`function_url`,
/// `function` or `function:alias`).
impl RouteStore {
    /// Every setting of `kind` as `(key, config)`, ordered by key.
    pub fn list_settings(&self, kind: &str) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT key, config FROM gateway_settings WHERE kind = ?1 ORDER BY key")?;
            let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Insert or replace a setting; returns once the write is durable.
    pub fn put_setting(&self, kind: &str, key: &str, config: &str, updated_ms: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO gateway_settings(kind, key, config, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(kind, key) DO UPDATE
                 SET config = excluded.config, updated_ms = excluded.updated_ms",
                params![kind, key, config, updated_ms],
            )?;
            Ok(())
        })
    }

    /// Delete a setting; `false` when there was none.
    pub fn delete_setting(&self, kind: &str, key: &str) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "DELETE FROM gateway_settings WHERE kind = ?1 AND key = ?2",
                params![kind, key],
            )?;
            Ok(n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nimbus.db");
        let s = RouteStore::open(&path).unwrap();
        let r = StoredRoute {
            api: "default".into(),
            route_key: "GET /users/{id}".into(),
            config: "{}".into(),
            updated_ms: 1,
        };
        s.put(&r).unwrap();
        s.put(&StoredRoute {
            config: r#"{"x":1}"#.into(),
            updated_ms: 2,
            ..r.clone()
        })
        .unwrap();
        drop(s);
        let s = RouteStore::open(&path).unwrap();
        let all = s.list().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].config, r#"{"x":1}"#);
        assert!(s.delete("default", "GET /users/{id}").unwrap());
        assert!(!s.delete("default", "GET /users/{id}").unwrap());
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn settings_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nimbus.db");
        let s = RouteStore::open(&path).unwrap();
        s.put_setting("cors", "default", "{}", 1).unwrap();
        s.put_setting("cors", "default", r#"{"a":1}"#, 2).unwrap();
        s.put_setting("function_url", "f", "{}", 3).unwrap();
        drop(s);
        let s = RouteStore::open(&path).unwrap();
        assert_eq!(
            s.list_settings("cors").unwrap(),
            [("default".to_string(), r#"{"a":1}"#.to_string())]
        );
        assert!(s.delete_setting("function_url", "f").unwrap());
        assert!(!s.delete_setting("function_url", "f").unwrap());
        assert!(s.list_settings("function_url").unwrap().is_empty());
    }
}

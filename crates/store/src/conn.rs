//! One SQLite connection shared behind a mutex, opened with the durability settings
//! every Nimbus table relies on: WAL, `synchronous=FULL` (a write that returns has
//! been fsynced) and a busy timeout for the other connections to the same file.

use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Open `path` with WAL, `synchronous=FULL` and a 5 s busy timeout.
pub fn open_durable(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// [`open_durable`], then [`crate::migrate::migrate`] to `schema`.
pub fn open_migrated(path: &Path, schema: &crate::migrate::Schema) -> crate::Result<Connection> {
    let mut conn = open_durable(path)?;
    crate::migrate::migrate(&mut conn, schema)?;
    Ok(conn)
}

/// A connection for one store's tables. Cheap to clone; calls are serialised, so
/// async callers should use `spawn_blocking` for anything but tiny calls.
#[derive(Clone)]
pub struct SharedConn {
    conn: Arc<Mutex<Connection>>,
}

impl SharedConn {
    /// Open `path` durably and migrate it to `schema`'s latest version.
    pub fn open_schema(path: &Path, schema: &crate::migrate::Schema) -> crate::Result<Self> {
        Ok(Self::new(open_migrated(path, schema)?))
    }

    pub fn new(conn: Connection) -> Self {
        Self {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Run `f` on the connection (a poisoned lock is taken over: SQLite rolls back
    /// whatever the panicking holder left open).
    pub fn with<T, E>(&self, f: impl FnOnce(&mut Connection) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_durably() {
        let dir = tempfile::tempdir().unwrap();
        let c = SharedConn::new(open_durable(&dir.path().join("x.db")).unwrap());
        c.with(|c| c.execute_batch("CREATE TABLE t(a)")).unwrap();
        let mode: String = c
            .with(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = c
            .with(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        c.with(|c| c.execute("INSERT INTO t VALUES (1)", []))
            .unwrap();
    }
}

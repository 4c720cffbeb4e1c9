//! `<data>/esm.db`: mapping records and stream checkpoints, opened durably (WAL,
//! `synchronous=FULL`): a mapping acknowledged by the API, and a checkpoint taken
//! after a successful batch, are on disk. An open tumbling window's `state` is
//! written with the checkpoint that follows the invoke that returned it (one
//! transaction), so a restart resumes the window where its records left off.

use nimbus_store::migrate::{Migration, Schema, Step};
use nimbus_store::SharedConn;
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;

/// The file's migrations.
pub static ESM_DB: Schema = Schema {
    file: "esm.db",
    migrations: &[
        Migration {
            name: "mappings and checkpoints",
            step: Step::Sql(
                "CREATE TABLE mappings (
                uuid TEXT PRIMARY KEY,
                created_ms INTEGER NOT NULL,
                record TEXT NOT NULL
            );
            CREATE TABLE checkpoints (
                uuid TEXT NOT NULL,
                shard_id TEXT NOT NULL,
                sequence_number TEXT,
                done INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (uuid, shard_id)
            );
            CREATE TABLE stream_starts (
                uuid TEXT PRIMARY KEY,
                start_ms INTEGER NOT NULL
            );",
            ),
        },
        Migration {
            name: "tumbling windows",
            step: Step::Sql(
                "CREATE TABLE windows (
                    uuid TEXT NOT NULL,
                    shard_id TEXT NOT NULL,
                    start_ms INTEGER NOT NULL,
                    state TEXT NOT NULL,
                    PRIMARY KEY (uuid, shard_id)
                );",
            ),
        },
    ],
};

/// An open tumbling window of a shard as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWindow {
    pub start_ms: i64,
    /// The `state` the function last returned (JSON text).
    pub state: String,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("esm.db: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("esm.db: {0}")]
    Store(#[from] nimbus_store::StoreError),
    #[error("esm.db: a stored mapping is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// A shard's durable progress for one mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last sequence number processed (the next read starts after it).
    pub sequence_number: Option<String>,
    /// The shard is closed and every record of it was processed.
    pub done: bool,
}

/// The mapping and checkpoint tables. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: SharedConn,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: SharedConn::open_schema(path, &ESM_DB)?,
        })
    }

    /// Every mapping record (JSON), oldest first.
    pub fn load(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        self.conn.with(|c| {
            let mut st = c.prepare(
                "SELECT uuid, created_ms, record FROM mappings ORDER BY created_ms, uuid",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    pub fn put(&self, uuid: &str, created_ms: i64, record: &str) -> Result<(), StoreError> {
        self.conn.with(|c| {
            c.execute(
                "INSERT INTO mappings (uuid, created_ms, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT(uuid) DO UPDATE SET record = excluded.record",
                params![uuid, created_ms, record],
            )?;
            Ok(())
        })
    }

    /// Remove a mapping with its checkpoints.
    pub fn delete(&self, uuid: &str) -> Result<(), StoreError> {
        self.conn.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM mappings WHERE uuid = ?1", [uuid])?;
            tx.execute("DELETE FROM checkpoints WHERE uuid = ?1", [uuid])?;
            tx.execute("DELETE FROM stream_starts WHERE uuid = ?1", [uuid])?;
            tx.execute("DELETE FROM windows WHERE uuid = ?1", [uuid])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Forget a mapping's stream progress only.
    pub fn forget_progress(&self, uuid: &str) -> Result<(), StoreError> {
        self.conn.with(|c| {
            c.execute("DELETE FROM checkpoints WHERE uuid = ?1", [uuid])?;
            c.execute("DELETE FROM stream_starts WHERE uuid = ?1", [uuid])?;
            c.execute("DELETE FROM windows WHERE uuid = ?1", [uuid])?;
            Ok(())
        })
    }

    /// Write a checkpoint and, in the same transaction, the shard's open window.
    pub fn set_checkpoint_and_window(
        &self,
        uuid: &str,
        shard_id: &str,
        cp: &Checkpoint,
        window: &StoredWindow,
    ) -> Result<(), StoreError> {
        self.conn.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO checkpoints (uuid, shard_id, sequence_number, done) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(uuid, shard_id) DO UPDATE SET sequence_number = excluded.sequence_number, done = excluded.done",
                params![uuid, shard_id, cp.sequence_number, cp.done as i64],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO windows (uuid, shard_id, start_ms, state) VALUES (?1, ?2, ?3, ?4)",
                params![uuid, shard_id, window.start_ms, window.state],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The shard's open window, if one was stored.
    pub fn window(&self, uuid: &str, shard_id: &str) -> Result<Option<StoredWindow>, StoreError> {
        self.conn.with(|c| {
            Ok(c.query_row(
                "SELECT start_ms, state FROM windows WHERE uuid = ?1 AND shard_id = ?2",
                params![uuid, shard_id],
                |r| {
                    Ok(StoredWindow {
                        start_ms: r.get(0)?,
                        state: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// A window closed (its final invoke ran, or was given up).
    pub fn clear_window(
        &self,
        uuid: &str,
        shard_id: &str,
        start_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.with(|c| {
            c.execute(
                "DELETE FROM windows WHERE uuid = ?1 AND shard_id = ?2 AND start_ms = ?3",
                params![uuid, shard_id, start_ms],
            )?;
            Ok(())
        })
    }

    pub fn checkpoints(&self, uuid: &str) -> Result<HashMap<String, Checkpoint>, StoreError> {
        self.conn.with(|c| {
            let mut st = c.prepare(
                "SELECT shard_id, sequence_number, done FROM checkpoints WHERE uuid = ?1",
            )?;
            let rows = st
                .query_map([uuid], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Checkpoint {
                            sequence_number: r.get(1)?,
                            done: r.get::<_, i64>(2)? != 0,
                        },
                    ))
                })?
                .collect::<Result<HashMap<_, _>, _>>()?;
            Ok(rows)
        })
    }

    pub fn set_checkpoint(
        &self,
        uuid: &str,
        shard_id: &str,
        cp: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.conn.with(|c| {
            c.execute(
                "INSERT INTO checkpoints (uuid, shard_id, sequence_number, done) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(uuid, shard_id) DO UPDATE SET sequence_number = excluded.sequence_number, done = excluded.done",
                params![uuid, shard_id, cp.sequence_number, cp.done as i64],
            )?;
            Ok(())
        })
    }

    /// When the mapping first ran (what `LATEST` means for it), recorded once.
    pub fn start_ms(&self, uuid: &str, now_ms: i64) -> Result<i64, StoreError> {
        self.conn.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO stream_starts (uuid, start_ms) VALUES (?1, ?2)",
                params![uuid, now_ms],
            )?;
            let v: Option<i64> = c
                .query_row(
                    "SELECT start_ms FROM stream_starts WHERE uuid = ?1",
                    [uuid],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(v.unwrap_or(now_ms))
        })
    }
}

//! `<data>/eventbridge.db`: the resources (buses, rules with their targets,
//! archives, replays, connections, API destinations) as JSON documents, the
//! delivery outbox and the archived events.
//!
//! (`events.db` is the async queue's file: this service's is `eventbridge.db`.)
//!
//! Resources are few and small: they live in memory ([`crate::state::State`]) and
//! every change writes its document through here before it is acknowledged. The
//! outbox rows of a `PutEvents` and its archive rows are committed in one
//! transaction, fsynced (`synchronous=FULL`) before the answer.

use nimbus_store::migrate::{Migration, Schema, Step};
use nimbus_store::SharedConn;
use rusqlite::{params, OptionalExtension};
use std::path::Path;

pub static SCHEMA: Schema = Schema {
    file: "eventbridge.db",
    migrations: &[Migration {
        name: "eventbridge: resources, outbox, archived events",
        step: Step::Sql(
            "CREATE TABLE docs (
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                doc TEXT NOT NULL,
                PRIMARY KEY (kind, key)
            );
            CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                created_ms INTEGER NOT NULL,
                next_ms INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                event_id TEXT NOT NULL,
                rule_arn TEXT NOT NULL,
                target_id TEXT NOT NULL,
                target_arn TEXT NOT NULL,
                payload TEXT NOT NULL,
                spec TEXT NOT NULL
            );
            CREATE INDEX outbox_next ON outbox(next_ms);
            CREATE TABLE archive_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                archive TEXT NOT NULL,
                time_ms INTEGER NOT NULL,
                event TEXT NOT NULL
            );
            CREATE INDEX archive_events_time ON archive_events(archive, time_ms);",
        ),
    }],
};

/// One pending delivery.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub created_ms: i64,
    pub attempts: u32,
    pub event_id: String,
    pub rule_arn: String,
    pub target_id: String,
    pub target_arn: String,
    pub payload: String,
    /// [`crate::deliver::Spec`] as JSON.
    pub spec: String,
}

/// A delivery to commit.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub event_id: String,
    pub rule_arn: String,
    pub target_id: String,
    pub target_arn: String,
    pub payload: String,
    pub spec: String,
}

#[derive(Clone)]
pub struct Store {
    conn: SharedConn,
}

pub type DbResult<T> = Result<T, nimbus_store::StoreError>;

impl Store {
    pub fn open(path: &Path) -> DbResult<Store> {
        Ok(Store {
            conn: SharedConn::open_schema(path, &SCHEMA)?,
        })
    }

    /// Every document of `kind`.
    pub fn docs(&self, kind: &str) -> DbResult<Vec<String>> {
        self.conn.with(|c| {
            let mut st = c.prepare("SELECT doc FROM docs WHERE kind = ?1 ORDER BY key")?;
            let rows = st
                .query_map([kind], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    pub fn put_doc(&self, kind: &str, key: &str, doc: &str) -> DbResult<()> {
        self.conn.with(|c| {
            c.execute(
                "INSERT INTO docs(kind, key, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT(kind, key) DO UPDATE SET doc = excluded.doc",
                params![kind, key, doc],
            )?;
            Ok(())
        })
    }

    pub fn delete_doc(&self, kind: &str, key: &str) -> DbResult<()> {
        self.conn.with(|c| {
            c.execute(
                "DELETE FROM docs WHERE kind = ?1 AND key = ?2",
                params![kind, key],
            )?;
            Ok(())
        })
    }

    /// Commit deliveries and archived events together (one `PutEvents`).
    pub fn commit_events(
        &self,
        now_ms: i64,
        deliveries: &[NewDelivery],
        archived: &[(String, i64, String)],
    ) -> DbResult<()> {
        self.conn.with(|c| {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO outbox(created_ms, next_ms, event_id, rule_arn, target_id, target_arn, payload, spec)
                     VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for d in deliveries {
                    ins.execute(params![
                        now_ms,
                        d.event_id,
                        d.rule_arn,
                        d.target_id,
                        d.target_arn,
                        d.payload,
                        d.spec
                    ])?;
                }
                let mut arc = tx.prepare_cached(
                    "INSERT INTO archive_events(archive, time_ms, event) VALUES (?1, ?2, ?3)",
                )?;
                for (archive, time_ms, event) in archived {
                    arc.execute(params![archive, time_ms, event])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Up to `limit` deliveries due at `now_ms`, oldest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> DbResult<Vec<OutboxRow>> {
        self.conn.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, created_ms, attempts, event_id, rule_arn, target_id, target_arn, payload, spec
                 FROM outbox WHERE next_ms <= ?1 ORDER BY next_ms, id LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![now_ms, limit as i64], |r| {
                    Ok(OutboxRow {
                        id: r.get(0)?,
                        created_ms: r.get(1)?,
                        attempts: r.get::<_, i64>(2)? as u32,
                        event_id: r.get(3)?,
                        rule_arn: r.get(4)?,
                        target_id: r.get(5)?,
                        target_arn: r.get(6)?,
                        payload: r.get(7)?,
                        spec: r.get(8)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// When the next delivery is due, if any.
    pub fn next_due(&self) -> DbResult<Option<i64>> {
        self.conn.with(|c| {
            Ok(c.query_row("SELECT MIN(next_ms) FROM outbox", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()?
            .flatten())
        })
    }

    pub fn backlog(&self) -> DbResult<i64> {
        self.conn
            .with(|c| Ok(c.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?))
    }

    pub fn done(&self, id: i64) -> DbResult<()> {
        self.conn.with(|c| {
            c.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    pub fn retry_at(&self, id: i64, attempts: u32, next_ms: i64) -> DbResult<()> {
        self.conn.with(|c| {
            c.execute(
                "UPDATE outbox SET attempts = ?2, next_ms = ?3 WHERE id = ?1",
                params![id, attempts as i64, next_ms],
            )?;
            Ok(())
        })
    }

    /// Archived events of `archive` with `start_ms <= time < end_ms`, in order.
    pub fn archived(
        &self,
        archive: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> DbResult<Vec<(i64, String)>> {
        self.conn.with(|c| {
            let mut st = c.prepare(
                "SELECT time_ms, event FROM archive_events
                 WHERE archive = ?1 AND time_ms >= ?2 AND time_ms < ?3 ORDER BY seq",
            )?;
            let rows = st
                .query_map(params![archive, start_ms, end_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Count and size of an archive's events.
    pub fn archive_stats(&self, archive: &str) -> DbResult<(i64, i64)> {
        self.conn.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(event)), 0) FROM archive_events WHERE archive = ?1",
                [archive],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
    }

    pub fn drop_archive(&self, archive: &str) -> DbResult<()> {
        self.conn.with(|c| {
            c.execute("DELETE FROM archive_events WHERE archive = ?1", [archive])?;
            Ok(())
        })
    }
}

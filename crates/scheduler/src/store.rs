//! Durable schedule state: the `schedules` table, kept in the async queue's own
//! database file (`events.db`) so that a firing and the event it enqueues commit in
//! one SQLite transaction.
//!
//! How a firing is recorded exactly once:
//! 1. the scheduler marks the slot as pending (`pending_slot_ms`, plus the unique
//!    X-Ray trace id it will give the event) and commits;
//! 2. it enqueues the event through the async queue, which inserts it into `events`;
//! 3. the trigger `schedules_fired` on that insert moves the pending slot to
//!    `last_fired_ms` **inside the queue's own transaction**.
//!
//! So after `kill -9` either the event is in the queue and the slot is recorded as
//! fired, or neither: a restart never enqueues a slot twice, and a slot whose event
//! never committed is still owed. WAL with `synchronous=FULL` on every connection.
//!
//! The tables and the trigger are part of `events.db`'s versioned schema
//! (`nimbus_store::schema::EVENTS_DB`, migration "schedules"), which opening either
//! store applies.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// One stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub name: String,
    pub expression: String,
    /// IANA zone name, or `UTC`.
    pub timezone: String,
    pub function: String,
    pub qualifier: Option<String>,
    /// JSON text of the payload; `None` sends EventBridge's scheduled event.
    pub input: Option<String>,
    pub enabled: bool,
    /// Owner tag (a manifest deploy's app), may be empty.
    pub app: String,
    /// Where fire times are counted from: set at creation, when the expression or
    /// zone changes, and when the schedule is enabled again.
    pub anchor_ms: i64,
    pub last_fired_ms: Option<i64>,
    pub pending_slot_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Handle to the schedules table. Cheap to clone.
#[derive(Clone)]
pub struct ScheduleStore {
    conn: nimbus_store::SharedConn,
}

pub type Result<T> = std::result::Result<T, rusqlite::Error>;

const COLUMNS: &str = "name, expression, timezone, function, qualifier, input, enabled, app, \
                       anchor_ms, last_fired_ms, pending_slot_ms, created_ms, updated_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredSchedule> {
    Ok(StoredSchedule {
        name: r.get(0)?,
        expression: r.get(1)?,
        timezone: r.get(2)?,
        function: r.get(3)?,
        qualifier: r.get(4)?,
        input: r.get(5)?,
        enabled: r.get(6)?,
        app: r.get(7)?,
        anchor_ms: r.get(8)?,
        last_fired_ms: r.get(9)?,
        pending_slot_ms: r.get(10)?,
        created_ms: r.get(11)?,
        updated_ms: r.get(12)?,
    })
}

impl ScheduleStore {
    /// Open the schedules table in the event queue's database at `path`, creating or
    /// migrating the file (a file newer than this build knows is refused).
    pub fn open(path: &Path) -> Result<Self> {
        let conn = nimbus_store::SharedConn::open_schema(path, &nimbus_store::schema::EVENTS_DB)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self { conn })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.conn.with(f)
    }

    /// Every schedule, by name.
    pub fn list(&self) -> Result<Vec<StoredSchedule>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM schedules ORDER BY name"))?;
            let rows = stmt.query_map([], row)?;
            rows.collect()
        })
    }

    pub fn get(&self, name: &str) -> Result<Option<StoredSchedule>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM schedules WHERE name = ?1"),
                [name],
                row,
            )
            .optional()
        })
    }

    /// Create a schedule, or update its definition (never its firing state);
    /// `true` when it was created.
    pub fn put(&self, s: &StoredSchedule) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE schedules SET expression = ?2, timezone = ?3, function = ?4,
                        qualifier = ?5, input = ?6, enabled = ?7, app = ?8, anchor_ms = ?9,
                        updated_ms = ?10
                  WHERE name = ?1",
                params![
                    s.name,
                    s.expression,
                    s.timezone,
                    s.function,
                    s.qualifier,
                    s.input,
                    s.enabled,
                    s.app,
                    s.anchor_ms,
                    s.updated_ms
                ],
            )?;
            if n > 0 {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO schedules(name, expression, timezone, function, qualifier, input,
                        enabled, app, anchor_ms, last_fired_ms, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?10)",
                params![
                    s.name,
                    s.expression,
                    s.timezone,
                    s.function,
                    s.qualifier,
                    s.input,
                    s.enabled,
                    s.app,
                    s.anchor_ms,
                    s.updated_ms
                ],
            )?;
            Ok(true)
        })
    }

    /// `false` when there was no such schedule.
    pub fn delete(&self, name: &str) -> Result<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM schedules WHERE name = ?1", [name])? > 0))
    }

    /// Step 1 of a firing: `slot_ms` is owed and will be enqueued with `trace_id`.
    /// `false` when the schedule is gone.
    pub fn begin_firing(&self, name: &str, slot_ms: i64, trace_id: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE schedules SET pending_slot_ms = ?2, pending_trace = ?3 WHERE name = ?1",
                params![name, slot_ms, trace_id],
            )? > 0)
        })
    }

    /// Record the pending slot as fired. The `schedules_fired` trigger has already
    /// done it when the event went through the queue's store; this is for other
    /// targets, and is a no-op when the trigger ran. `true` when it changed a row.
    pub fn confirm(&self, name: &str, trace_id: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE schedules
                    SET last_fired_ms = pending_slot_ms, pending_slot_ms = NULL, pending_trace = NULL
                  WHERE name = ?1 AND pending_trace = ?2",
                params![name, trace_id],
            )? > 0)
        })
    }

    /// Give up on a slot that can never be enqueued (its function is gone): it counts
    /// as done so the scheduler moves on.
    pub fn skip(&self, name: &str, slot_ms: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE schedules
                    SET last_fired_ms = MAX(COALESCE(last_fired_ms, ?2), ?2),
                        pending_slot_ms = NULL, pending_trace = NULL
                  WHERE name = ?1",
                params![name, slot_ms],
            )?;
            Ok(())
        })
    }

    /// A number kept under `key`, set to `init` the first time it is asked for.
    pub fn meta_or_init(&self, key: &str, init: i64) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO schedule_meta(key, value) VALUES (?1, ?2)",
                params![key, init],
            )?;
            c.query_row(
                "SELECT value FROM schedule_meta WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
        })
    }
}

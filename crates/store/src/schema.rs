//! The schema history of each Nimbus database file (see [`crate::migrate`]).
//!
//! * [`MAIN_DB`] (`nimbus.db`): the function registry, invocation records and logs,
//!   the metering rollup, and the gateway's routes and access objects.
//! * [`EVENTS_DB`] (`events.db`): the async event queue, its destination outbox, and
//!   the schedules (which
//!   share the file so a firing and its event commit in one transaction).
//!
//! To change a schema, append a migration to the file's list; never edit one that
//! has shipped. Migrations 1–4 of `nimbus.db` and 1–2 of `events.db` adopt files made
//! before versioning (`user_version` 0, some tables already there), so they are
//! written to be harmless on such a file.

use crate::migrate::{has_column, has_table, Migration, Schema, Step};
use rusqlite::Transaction;

/// `nimbus.db`.
pub static MAIN_DB: Schema = Schema {
    file: "nimbus.db",
    migrations: &[
        Migration {
            name: "functions, records, logs, versions, async configs",
            step: Step::Sql(
                r#"
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
"#,
            ),
        },
        Migration {
            name: "hourly metering rollup",
            step: Step::Code(metering_hourly),
        },
        Migration {
            name: "trace roots of invocation records",
            step: Step::Code(trace_roots),
        },
        Migration {
            name: "gateway routes, settings, access objects and usage",
            step: Step::Sql(
                r#"
CREATE TABLE IF NOT EXISTS gateway_routes (
    api         TEXT NOT NULL,
    route_key   TEXT NOT NULL,
    config      TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (api, route_key)
);
CREATE TABLE IF NOT EXISTS gateway_settings (
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    config      TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS gateway_objects (
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    config      TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS gateway_usage (
    key_id        TEXT NOT NULL,
    period_start  INTEGER NOT NULL,
    used          INTEGER NOT NULL,
    PRIMARY KEY (key_id, period_start)
);
"#,
            ),
        },
        Migration {
            name: "lambda layer versions",
            step: Step::Sql(
                r#"
-- One row per published layer version; `config` and `policy` are JSON.
CREATE TABLE IF NOT EXISTS layer_versions (
    layer       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    config      TEXT NOT NULL,
    policy      TEXT,
    PRIMARY KEY (layer, version)
);
-- The last version number given per layer: numbers are never reused, even
-- after every version of a layer is deleted.
CREATE TABLE IF NOT EXISTS layer_counters (
    layer       TEXT PRIMARY KEY,
    last        INTEGER NOT NULL
);
"#,
            ),
        },
    ],
};

const HOUR_MS: i64 = 3_600_000;

/// Hourly usage per function and memory size, folded in from every record as it is
/// stored; not pruned by retention (the cost report reads it). A file from before
/// metering has its remaining records folded in once; one that already has the
/// table (made before versioning) is left as it is.
fn metering_hourly(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    if has_table(tx, "metering_hourly")? {
        return Ok(());
    }
    tx.execute_batch(
        "CREATE TABLE metering_hourly (
            function            TEXT NOT NULL,
            hour_ms             INTEGER NOT NULL,
            memory_mb           INTEGER NOT NULL,
            requests            INTEGER NOT NULL,
            billed_ms           INTEGER NOT NULL,
            max_memory_used_mb  INTEGER NOT NULL,
            PRIMARY KEY (function, hour_ms, memory_mb)
        );",
    )?;
    tx.execute(
        "INSERT INTO metering_hourly(function, hour_ms, memory_mb, requests, billed_ms, max_memory_used_mb)
         SELECT function, (start_ms / ?1) * ?1, json_extract(record, '$.memory_mb'), COUNT(*),
                SUM(json_extract(record, '$.billed_ms')), MAX(json_extract(record, '$.max_memory_used_mb'))
         FROM invocations GROUP BY 1, 2, 3",
        [HOUR_MS],
    )?;
    Ok(())
}

/// The trace Root of a record, for `nimbus trace`: the column, filled from the
/// records' trace headers, and its index.
fn trace_roots(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    if !has_column(tx, "invocations", "trace_root")? {
        tx.execute_batch(
            "ALTER TABLE invocations ADD COLUMN trace_root TEXT;
             UPDATE invocations SET trace_root = substr(json_extract(record, '$.trace_id'),
                    instr(json_extract(record, '$.trace_id'), 'Root=') + 5, 35)
              WHERE instr(json_extract(record, '$.trace_id'), 'Root=') > 0;",
        )?;
    }
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS invocations_by_trace ON invocations(trace_root, start_ms)",
    )
}

/// `events.db`.
pub static EVENTS_DB: Schema = Schema {
    file: "events.db",
    migrations: &[
        Migration {
            name: "async event queue",
            step: Step::Sql(
                r#"
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT NOT NULL,
    function     TEXT NOT NULL,
    qualifier    TEXT,
    payload      BLOB NOT NULL,
    enqueued_ms  INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due_ms       INTEGER NOT NULL,
    trace_id     TEXT,
    source       TEXT NOT NULL DEFAULT 'event'
);
CREATE INDEX IF NOT EXISTS events_by_function ON events(function);
"#,
            ),
        },
        Migration {
            // How a firing is recorded exactly once: see nimbus-scheduler's store.
            name: "schedules",
            step: Step::Sql(
                r#"
CREATE TABLE IF NOT EXISTS schedules (
    name            TEXT PRIMARY KEY,
    expression      TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    function        TEXT NOT NULL,
    qualifier       TEXT,
    input           TEXT,
    enabled         INTEGER NOT NULL,
    app             TEXT NOT NULL DEFAULT '',
    anchor_ms       INTEGER NOT NULL,
    last_fired_ms   INTEGER,
    pending_slot_ms INTEGER,
    pending_trace   TEXT,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS schedules_fired AFTER INSERT ON events
WHEN NEW.source = 'schedule' AND NEW.trace_id IS NOT NULL
BEGIN
    UPDATE schedules
       SET last_fired_ms = pending_slot_ms, pending_slot_ms = NULL, pending_trace = NULL
     WHERE pending_trace = NEW.trace_id;
END;
"#,
            ),
        },
        Migration {
            // The dispatcher reads each function's due events in due order a window
            // at a time, and the oldest event's age per function.
            name: "queue indexes by function and due time, and by age",
            step: Step::Sql(
                r#"
CREATE INDEX IF NOT EXISTS events_due ON events(function, due_ms, id);
CREATE INDEX IF NOT EXISTS events_age ON events(function, enqueued_ms);
DROP INDEX IF EXISTS events_by_function;
"#,
            ),
        },
        Migration {
            // Lambda destinations and dead letters of finished async events: a row
            // is written in the transaction that deletes its event, and deleted once
            // the target acknowledged it (the invoker's outbox drains it).
            name: "destination outbox",
            step: Step::Sql(
                r#"
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    function    TEXT NOT NULL,
    target      TEXT NOT NULL,
    item        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
"#,
            ),
        },
    ],
};

//! `apps.db`: the apps, their resources as applied, exports, and the journal of
//! changes (WAL, `synchronous=FULL`: a step recorded is on disk).
//!
//! * `apps` — one row per app: its template and evaluated outputs, as last committed;
//! * `resources` — one row per (app, logical id): what exists now (physical id,
//!   evaluated properties, attributes); a step's row change commits with the step;
//! * `exports` — `Outputs.*.Export.Name` → value, and `imports`, which app reads which;
//! * `changes` and `steps` — the journal: a change's plan, its state
//!   (`applying` → `cleanup` → `done`, or `rolling_back` → `rolled_back`), and per
//!   step the row before and the row intended after, so a restart can finish
//!   or undo what a crash interrupted.

use crate::model::{ResourceRow, StepRecord};
use nimbus_store::migrate::{Migration, Schema, Step};
use nimbus_store::SharedConn;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

static SCHEMA: Schema = Schema {
    file: "apps.db",
    migrations: &[Migration {
        name: "apps, resources, exports, changes, steps",
        step: Step::Sql(
            "CREATE TABLE apps (
                name TEXT PRIMARY KEY,
                template TEXT NOT NULL,
                outputs TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                updated_ms INTEGER NOT NULL
            );
            CREATE TABLE resources (
                app TEXT NOT NULL,
                logical_id TEXT NOT NULL,
                row TEXT NOT NULL,
                PRIMARY KEY (app, logical_id)
            );
            CREATE TABLE exports (
                name TEXT PRIMARY KEY,
                app TEXT NOT NULL,
                value TEXT NOT NULL
            );
            CREATE TABLE imports (
                app TEXT NOT NULL,
                export TEXT NOT NULL,
                PRIMARY KEY (app, export)
            );
            CREATE TABLE changes (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                app TEXT NOT NULL,
                kind TEXT NOT NULL,
                state TEXT NOT NULL,
                request TEXT NOT NULL,
                error TEXT,
                created_ms INTEGER NOT NULL,
                updated_ms INTEGER NOT NULL
            );
            CREATE INDEX changes_by_app ON changes (app, id);
            CREATE TABLE steps (
                change_id INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                logical_id TEXT NOT NULL,
                action TEXT NOT NULL,
                state TEXT NOT NULL,
                before TEXT,
                after TEXT,
                error TEXT,
                PRIMARY KEY (change_id, seq)
            );",
        ),
    }],
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("apps.db: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("apps.db: {0}")]
    Open(#[from] nimbus_store::StoreError),
    #[error("apps.db: bad JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One change as journaled.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub id: i64,
    pub app: String,
    /// `deploy` or `remove`.
    pub kind: String,
    pub state: String,
    pub request: Value,
    pub error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One app as committed.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub name: String,
    pub template: Value,
    pub outputs: Value,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Clone)]
pub struct Store {
    conn: SharedConn,
}

fn now() -> i64 {
    nimbus_core::now_ms()
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            conn: SharedConn::open_schema(path, &SCHEMA)?,
        })
    }

    pub fn apps(&self) -> Result<Vec<AppRecord>> {
        self.conn.with(|c| {
            let mut st = c.prepare(
                "SELECT name, template, outputs, created_ms, updated_ms FROM apps ORDER BY name",
            )?;
            let rows = st.query_map([], app_record)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r?);
            }
            Ok(out)
        })
    }

    pub fn app(&self, name: &str) -> Result<Option<AppRecord>> {
        self.conn.with(|c| {
            Ok(c.query_row(
                "SELECT name, template, outputs, created_ms, updated_ms FROM apps WHERE name = ?1",
                [name],
                app_record,
            )
            .optional()?)
        })
    }

    pub fn resources(&self, app: &str) -> Result<BTreeMap<String, ResourceRow>> {
        self.conn.with(|c| {
            let mut st = c.prepare(
                "SELECT logical_id, row FROM resources WHERE app = ?1 ORDER BY logical_id",
            )?;
            let rows = st.query_map([app], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = BTreeMap::new();
            for r in rows {
                let (id, json) = r?;
                out.insert(id, serde_json::from_str(&json)?);
            }
            Ok(out)
        })
    }

    /// Every resource of every app (for `nimbus rm` of a function).
    pub fn all_resources(&self) -> Result<Vec<(String, ResourceRow)>> {
        self.conn.with(|c| {
            let mut st = c.prepare("SELECT app, row FROM resources ORDER BY app, logical_id")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for r in rows {
                let (app, json) = r?;
                out.push((app, serde_json::from_str(&json)?));
            }
            Ok(out)
        })
    }

    pub fn export(&self, name: &str) -> Result<Option<(String, Value)>> {
        self.conn.with(|c| {
            let r: Option<(String, String)> = c
                .query_row(
                    "SELECT app, value FROM exports WHERE name = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(match r {
                Some((app, v)) => Some((app, serde_json::from_str(&v)?)),
                None => None,
            })
        })
    }

    pub fn exports(&self) -> Result<Vec<(String, String, Value)>> {
        self.conn.with(|c| {
            let mut st = c.prepare("SELECT name, app, value FROM exports ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (n, a, v) = r?;
                out.push((n, a, serde_json::from_str(&v)?));
            }
            Ok(out)
        })
    }

    /// The apps (other than `except`) importing `export`.
    pub fn importers(&self, export: &str, except: &str) -> Result<Vec<String>> {
        self.conn.with(|c| {
            let mut st =
                c.prepare("SELECT app FROM imports WHERE export = ?1 AND app != ?2 ORDER BY app")?;
            let rows = st.query_map(params![export, except], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r?);
            }
            Ok(out)
        })
    }

    /// Journal a new change; its id.
    pub fn begin_change(&self, app: &str, kind: &str, state: &str, request: &Value) -> Result<i64> {
        self.conn.with(|c| {
            c.execute(
                "INSERT INTO changes (app, kind, state, request, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![app, kind, state, request.to_string(), now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn set_change_state(&self, id: i64, state: &str, error: Option<&str>) -> Result<()> {
        self.conn.with(|c| {
            c.execute(
                "UPDATE changes SET state = ?2, error = COALESCE(?3, error), updated_ms = ?4 WHERE id = ?1",
                params![id, state, error, now()],
            )?;
            Ok(())
        })
    }

    /// Changes a crash left unfinished.
    pub fn unfinished(&self) -> Result<Vec<ChangeRecord>> {
        self.changes_where("state IN ('applying', 'rolling_back', 'cleanup')", None)
    }

    pub fn changes(&self, app: &str) -> Result<Vec<ChangeRecord>> {
        self.changes_where("app = ?1", Some(app))
    }

    fn changes_where(&self, cond: &str, app: Option<&str>) -> Result<Vec<ChangeRecord>> {
        self.conn.with(|c| {
            let sql = format!(
                "SELECT id, app, kind, state, request, error, created_ms, updated_ms FROM changes WHERE {cond} ORDER BY id"
            );
            let mut st = c.prepare(&sql)?;
            let map = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            };
            let rows: Vec<_> = match app {
                Some(a) => st.query_map([a], map)?.collect::<rusqlite::Result<_>>()?,
                None => st.query_map([], map)?.collect::<rusqlite::Result<_>>()?,
            };
            let mut out = Vec::new();
            for (id, app, kind, state, request, error, created_ms, updated_ms) in rows {
                out.push(ChangeRecord {
                    id,
                    app,
                    kind,
                    state,
                    request: serde_json::from_str(&request)?,
                    error,
                    created_ms,
                    updated_ms,
                });
            }
            Ok(out)
        })
    }

    pub fn steps(&self, change: i64) -> Result<Vec<StepRecord>> {
        self.conn.with(|c| {
            let mut st = c.prepare(
                "SELECT seq, logical_id, action, state, before, after, error FROM steps
                 WHERE change_id = ?1 ORDER BY seq",
            )?;
            let rows = st.query_map([change], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (seq, logical_id, action, state, before, after, error) = r?;
                out.push(StepRecord {
                    seq,
                    logical_id,
                    action,
                    state,
                    before: before.map(|b| serde_json::from_str(&b)).transpose()?,
                    after: after.map(|a| serde_json::from_str(&a)).transpose()?,
                    error,
                });
            }
            Ok(out)
        })
    }

    /// Record a step about to run (before its service call).
    pub fn start_step(&self, change: i64, step: &StepRecord) -> Result<()> {
        self.conn.with(|c| {
            c.execute(
                "INSERT INTO steps (change_id, seq, logical_id, action, state, before, after)
                 VALUES (?1, ?2, ?3, ?4, 'started', ?5, ?6)",
                params![
                    change,
                    step.seq,
                    step.logical_id,
                    step.action,
                    step.before
                        .as_ref()
                        .map(|b| serde_json::to_string(b).expect("json")),
                    step.after
                        .as_ref()
                        .map(|a| serde_json::to_string(a).expect("json")),
                ],
            )?;
            Ok(())
        })
    }

    /// Record a step's outcome and, in the same transaction, the resource row it
    /// leaves (`None`: the resource is gone).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_step(
        &self,
        change: i64,
        seq: i64,
        state: &str,
        app: &str,
        logical_id: &str,
        after: Option<&ResourceRow>,
        row: Option<Option<&ResourceRow>>,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE steps SET state = ?3, after = COALESCE(?4, after), error = ?5
                 WHERE change_id = ?1 AND seq = ?2",
                params![
                    change,
                    seq,
                    state,
                    after.map(|a| serde_json::to_string(a).expect("json")),
                    error
                ],
            )?;
            match row {
                Some(Some(r)) => {
                    tx.execute(
                        "INSERT INTO resources (app, logical_id, row) VALUES (?1, ?2, ?3)
                         ON CONFLICT (app, logical_id) DO UPDATE SET row = excluded.row",
                        params![app, logical_id, serde_json::to_string(r)?],
                    )?;
                }
                Some(None) => {
                    tx.execute(
                        "DELETE FROM resources WHERE app = ?1 AND logical_id = ?2",
                        params![app, logical_id],
                    )?;
                }
                None => {}
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The commit point of a deploy: the app's template and outputs, its exports
    /// and imports, and the change moving to `cleanup`, in one transaction.
    pub fn commit_deploy(
        &self,
        change: i64,
        app: &str,
        template: &Value,
        outputs: &Value,
        exports: &BTreeMap<String, Value>,
        imports: &[String],
    ) -> Result<()> {
        self.conn.with(|c| {
            let tx = c.transaction()?;
            let t = now();
            tx.execute(
                "INSERT INTO apps (name, template, outputs, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (name) DO UPDATE SET template = excluded.template,
                   outputs = excluded.outputs, updated_ms = excluded.updated_ms",
                params![app, template.to_string(), outputs.to_string(), t],
            )?;
            tx.execute("DELETE FROM exports WHERE app = ?1", [app])?;
            for (n, v) in exports {
                tx.execute(
                    "INSERT INTO exports (name, app, value) VALUES (?1, ?2, ?3)",
                    params![n, app, v.to_string()],
                )?;
            }
            tx.execute("DELETE FROM imports WHERE app = ?1", [app])?;
            for n in imports {
                tx.execute(
                    "INSERT OR IGNORE INTO imports (app, export) VALUES (?1, ?2)",
                    params![app, n],
                )?;
            }
            tx.execute(
                "UPDATE changes SET state = 'cleanup', updated_ms = ?2 WHERE id = ?1",
                params![change, t],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The end of an app's removal: its row, exports and imports go, with the change.
    pub fn forget_app(&self, change: i64, app: &str) -> Result<()> {
        self.conn.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM apps WHERE name = ?1", [app])?;
            tx.execute("DELETE FROM exports WHERE app = ?1", [app])?;
            tx.execute("DELETE FROM imports WHERE app = ?1", [app])?;
            tx.execute(
                "UPDATE changes SET state = 'done', updated_ms = ?2 WHERE id = ?1",
                params![change, now()],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Remove an app's exports at the start of its removal (after checking no
    /// other app imports them).
    pub fn drop_exports(&self, app: &str) -> Result<()> {
        self.conn.with(|c| {
            c.execute("DELETE FROM exports WHERE app = ?1", [app])?;
            Ok(())
        })
    }
}

fn app_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    let t: String = r.get(1)?;
    let o: String = r.get(2)?;
    Ok(AppRecord {
        name: r.get(0)?,
        template: serde_json::from_str(&t).unwrap_or(Value::Null),
        outputs: serde_json::from_str(&o).unwrap_or(Value::Null),
        created_ms: r.get(3)?,
        updated_ms: r.get(4)?,
    })
}

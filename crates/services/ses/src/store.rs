//! `<data>/ses.db`: identities, templates, configuration sets and their event
//! destinations, the account's settings, the outbox of every accepted message
//! (raw MIME, relay state) and the outbox of events owed to SNS/EventBridge.
//! Every write is one SQLite transaction on a `synchronous=FULL` connection; a
//! message and the events it causes commit together.

use crate::SesError;
use nimbus_store::migrate::{Migration, Schema, Step};
use nimbus_store::SharedConn;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub(crate) static SES_DB: Schema = Schema {
    file: "ses.db",
    migrations: &[
        Migration {
            name: "identities, templates, configuration sets, outbox",
            step: Step::Sql(
                "CREATE TABLE identities(
                identity TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                token TEXT NOT NULL,
                created_ms INTEGER NOT NULL
            );
            CREATE TABLE templates(
                name TEXT PRIMARY KEY,
                subject TEXT,
                html TEXT,
                text TEXT,
                created_ms INTEGER NOT NULL
            );
            CREATE TABLE config_sets(
                name TEXT PRIMARY KEY,
                created_ms INTEGER NOT NULL
            );
            CREATE TABLE event_destinations(
                config_set TEXT NOT NULL,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                PRIMARY KEY(config_set, name)
            );
            CREATE TABLE account(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE messages(
                n INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                created_ms INTEGER NOT NULL,
                origin TEXT NOT NULL,
                source TEXT NOT NULL,
                destinations TEXT NOT NULL,
                subject TEXT NOT NULL,
                config_set TEXT,
                raw BLOB NOT NULL,
                status TEXT NOT NULL,
                error TEXT,
                relay_status TEXT NOT NULL,
                relay_error TEXT,
                relay_attempts INTEGER NOT NULL DEFAULT 0,
                relay_next_ms INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX messages_relay ON messages(relay_status, relay_next_ms);
            CREATE TABLE event_outbox(
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                target TEXT NOT NULL,
                detail_type TEXT NOT NULL,
                payload TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_ms INTEGER NOT NULL DEFAULT 0,
                done INTEGER NOT NULL DEFAULT 0,
                error TEXT
            );
            CREATE INDEX event_outbox_due ON event_outbox(done, next_ms);",
            ),
        },
        Migration {
            name: "identity notification topics",
            step: Step::Sql(
                "CREATE TABLE identity_topics(
                identity TEXT NOT NULL COLLATE NOCASE,
                kind TEXT NOT NULL,
                topic TEXT NOT NULL,
                PRIMARY KEY(identity, kind)
            );",
            ),
        },
    ],
};

/// An event destination, in one form for both API versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventDest {
    pub name: String,
    pub enabled: bool,
    /// SES v2 spellings: `SEND`, `DELIVERY`, `BOUNCE`, `COMPLAINT`, `REJECT`,
    /// `RENDERING_FAILURE`, …
    pub types: Vec<String>,
    pub sns_topic_arn: Option<String>,
    pub event_bus_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub identity: String,
    pub kind: String,
    pub token: String,
    pub created_ms: i64,
}

/// One message of the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub id: String,
    pub created_ms: i64,
    pub origin: String,
    pub source: String,
    pub destinations: Vec<String>,
    pub subject: String,
    pub config_set: Option<String>,
    #[serde(skip)]
    pub raw: Vec<u8>,
    pub status: String,
    pub error: Option<String>,
    pub relay_status: String,
    pub relay_error: Option<String>,
    pub relay_attempts: i64,
}

/// A message to commit with the events it causes.
pub struct NewMessage {
    pub id: String,
    pub origin: String,
    pub source: String,
    pub destinations: Vec<String>,
    pub subject: String,
    pub config_set: Option<String>,
    pub raw: Vec<u8>,
    pub status: String,
    pub error: Option<String>,
    pub relay: bool,
    /// (target ARN, detail type, payload JSON).
    pub events: Vec<(String, String, String)>,
}

/// An owed event delivery.
#[derive(Debug, Clone)]
pub struct OwedEvent {
    pub id: i64,
    pub target: String,
    pub detail_type: String,
    pub payload: String,
    pub attempts: i64,
}

type Result<T> = std::result::Result<T, SesError>;

#[derive(Clone)]
pub struct Store {
    conn: SharedConn,
}

const MSG_COLS: &str = "id, created_ms, origin, source, destinations, subject, config_set, raw, status, error, relay_status, relay_error, relay_attempts";

fn msg_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    let dest: String = r.get(4)?;
    Ok(MessageRow {
        id: r.get(0)?,
        created_ms: r.get(1)?,
        origin: r.get(2)?,
        source: r.get(3)?,
        destinations: serde_json::from_str(&dest).unwrap_or_default(),
        subject: r.get(5)?,
        config_set: r.get(6)?,
        raw: r.get(7)?,
        status: r.get(8)?,
        error: r.get(9)?,
        relay_status: r.get(10)?,
        relay_error: r.get(11)?,
        relay_attempts: r.get(12)?,
    })
}

impl Store {
    pub fn open(path: &Path) -> std::result::Result<Self, nimbus_store::StoreError> {
        Ok(Self {
            conn: SharedConn::open_schema(path, &SES_DB)?,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.conn.with(f)
    }

    fn tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.conn.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    // ---- identities ---------------------------------------------------------

    /// Add (or keep) an identity; returns it.
    pub fn put_identity(&self, identity: &str, kind: &str, now_ms: i64) -> Result<Identity> {
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO identities(identity, kind, token, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(identity) DO NOTHING",
                params![identity, kind, token_for(identity), now_ms],
            )?;
            Ok(tx.query_row(
                "SELECT identity, kind, token, created_ms FROM identities WHERE identity = ?1",
                [identity],
                identity_from_row,
            )?)
        })
    }

    pub fn identities(&self) -> Result<Vec<Identity>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT identity, kind, token, created_ms FROM identities ORDER BY identity",
            )?;
            let rows = st
                .query_map([], identity_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn identity(&self, identity: &str) -> Result<Option<Identity>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT identity, kind, token, created_ms FROM identities WHERE identity = ?1 COLLATE NOCASE",
                [identity],
                identity_from_row,
            )
            .optional()?)
        })
    }

    pub fn delete_identity(&self, identity: &str) -> Result<bool> {
        self.tx(|tx| {
            Ok(tx.execute(
                "DELETE FROM identities WHERE identity = ?1 COLLATE NOCASE",
                [identity],
            )? > 0)
        })
    }

    /// Set (or, with `None`, clear) an identity's notification topic for `kind`
    /// (`Bounce`, `Complaint`, `Delivery`).
    pub fn set_identity_topic(
        &self,
        identity: &str,
        kind: &str,
        topic: Option<&str>,
    ) -> Result<()> {
        self.tx(|tx| {
            match topic {
                Some(t) => tx.execute(
                    "INSERT INTO identity_topics(identity, kind, topic) VALUES (?1, ?2, ?3)
                     ON CONFLICT(identity, kind) DO UPDATE SET topic = ?3",
                    params![identity, kind, t],
                )?,
                None => tx.execute(
                    "DELETE FROM identity_topics WHERE identity = ?1 AND kind = ?2",
                    params![identity, kind],
                )?,
            };
            Ok(())
        })
    }

    /// An identity's notification topics: (kind, topic).
    pub fn identity_topics(&self, identity: &str) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT kind, topic FROM identity_topics WHERE identity = ?1 ORDER BY kind",
            )?;
            let rows = st
                .query_map([identity], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // ---- templates ----------------------------------------------------------

    /// Create (`create`) or replace an existing template.
    pub fn put_template(&self, t: &Template, create: bool) -> Result<()> {
        for (part, text) in [
            ("SubjectPart", &t.subject),
            ("TextPart", &t.text),
            ("HtmlPart", &t.html),
        ] {
            if let Some(text) = text {
                crate::mail::validate_template(part, text)?;
            }
        }
        self.tx(|tx| {
            let exists = tx
                .query_row("SELECT 1 FROM templates WHERE name = ?1", [&t.name], |_| {
                    Ok(())
                })
                .optional()?
                .is_some();
            match (create, exists) {
                (true, true) => return Err(SesError::AlreadyExists(Kind::Template, t.name.clone())),
                (false, false) => return Err(SesError::NotFound(Kind::Template, t.name.clone())),
                _ => {}
            }
            tx.execute(
                "INSERT INTO templates(name, subject, html, text, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET subject = ?2, html = ?3, text = ?4",
                params![t.name, t.subject, t.html, t.text, t.created_ms],
            )?;
            Ok(())
        })
    }

    pub fn template(&self, name: &str) -> Result<Template> {
        self.with(|c| {
            c.query_row(
                "SELECT name, subject, html, text, created_ms FROM templates WHERE name = ?1",
                [name],
                template_from_row,
            )
            .optional()?
            .ok_or_else(|| SesError::NotFound(Kind::Template, name.to_string()))
        })
    }

    pub fn templates(&self) -> Result<Vec<Template>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, subject, html, text, created_ms FROM templates ORDER BY name",
            )?;
            let rows = st
                .query_map([], template_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn delete_template(&self, name: &str) -> Result<bool> {
        self.tx(|tx| Ok(tx.execute("DELETE FROM templates WHERE name = ?1", [name])? > 0))
    }

    // ---- configuration sets --------------------------------------------------

    pub fn create_config_set(&self, name: &str, now_ms: i64) -> Result<()> {
        self.tx(|tx| {
            let n = tx.execute(
                "INSERT INTO config_sets(name, created_ms) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, now_ms],
            )?;
            if n == 0 {
                return Err(SesError::AlreadyExists(Kind::ConfigSet, name.to_string()));
            }
            Ok(())
        })
    }

    pub fn config_sets(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT name, created_ms FROM config_sets ORDER BY name")?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn config_set_exists(c: &Connection, name: &str) -> Result<()> {
        c.query_row("SELECT 1 FROM config_sets WHERE name = ?1", [name], |_| {
            Ok(())
        })
        .optional()?
        .ok_or_else(|| SesError::NotFound(Kind::ConfigSet, name.to_string()))
    }

    pub fn delete_config_set(&self, name: &str) -> Result<()> {
        self.tx(|tx| {
            Self::config_set_exists(tx, name)?;
            tx.execute("DELETE FROM config_sets WHERE name = ?1", [name])?;
            tx.execute(
                "DELETE FROM event_destinations WHERE config_set = ?1",
                [name],
            )?;
            Ok(())
        })
    }

    /// The configuration set's event destinations (it must exist).
    pub fn destinations(&self, config_set: &str) -> Result<Vec<EventDest>> {
        self.with(|c| Self::destinations_in(c, config_set))
    }

    fn destinations_in(c: &Connection, config_set: &str) -> Result<Vec<EventDest>> {
        Self::config_set_exists(c, config_set)?;
        let mut st = c.prepare_cached(
            "SELECT spec FROM event_destinations WHERE config_set = ?1 ORDER BY name",
        )?;
        let rows = st
            .query_map([config_set], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// Add (`create`) or replace an event destination.
    pub fn put_destination(&self, config_set: &str, d: &EventDest, create: bool) -> Result<()> {
        self.tx(|tx| {
            Self::config_set_exists(tx, config_set)?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM event_destinations WHERE config_set = ?1 AND name = ?2",
                    params![config_set, d.name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            match (create, exists) {
                (true, true) => {
                    return Err(SesError::AlreadyExists(
                        Kind::EventDestination,
                        d.name.clone(),
                    ))
                }
                (false, false) => {
                    return Err(SesError::NotFound(Kind::EventDestination, d.name.clone()))
                }
                _ => {}
            }
            tx.execute(
                "INSERT INTO event_destinations(config_set, name, spec) VALUES (?1, ?2, ?3)
                 ON CONFLICT(config_set, name) DO UPDATE SET spec = ?3",
                params![
                    config_set,
                    d.name,
                    serde_json::to_string(d).unwrap_or_default()
                ],
            )?;
            Ok(())
        })
    }

    pub fn delete_destination(&self, config_set: &str, name: &str) -> Result<()> {
        self.tx(|tx| {
            Self::config_set_exists(tx, config_set)?;
            let n = tx.execute(
                "DELETE FROM event_destinations WHERE config_set = ?1 AND name = ?2",
                params![config_set, name],
            )?;
            if n == 0 {
                return Err(SesError::NotFound(Kind::EventDestination, name.to_string()));
            }
            Ok(())
        })
    }

    // ---- account --------------------------------------------------------------

    pub fn sending_enabled(&self) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT value FROM account WHERE key = 'sending_enabled'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .is_none_or(|v| v == "true"))
        })
    }

    pub fn set_sending_enabled(&self, enabled: bool) -> Result<()> {
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO account(key, value) VALUES ('sending_enabled', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = ?1",
                [if enabled { "true" } else { "false" }],
            )?;
            Ok(())
        })
    }

    /// Messages SES accepted since `since_ms`, and their (created, status,
    /// destinations) for statistics.
    pub fn sent_since(&self, since_ms: i64) -> Result<Vec<(i64, String, Vec<String>)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT created_ms, status, destinations FROM messages
                 WHERE origin = 'ses' AND created_ms >= ?1 ORDER BY n",
            )?;
            let rows = st
                .query_map([since_ms], |r| {
                    let d: String = r.get(2)?;
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        serde_json::from_str(&d).unwrap_or_default(),
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // ---- the outbox -------------------------------------------------------------

    /// Commit a message and the events it causes, in one transaction.
    pub fn insert_message(&self, m: &NewMessage, now_ms: i64) -> Result<()> {
        self.tx(|tx| {
            if let Some(cs) = &m.config_set {
                Self::config_set_exists(tx, cs)?;
            }
            tx.execute(
                "INSERT INTO messages(id, created_ms, origin, source, destinations, subject, config_set,
                                      raw, status, error, relay_status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    m.id,
                    now_ms,
                    m.origin,
                    m.source,
                    serde_json::to_string(&m.destinations).unwrap_or_default(),
                    m.subject,
                    m.config_set,
                    m.raw,
                    m.status,
                    m.error,
                    if m.relay { "pending" } else { "none" },
                ],
            )?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO event_outbox(target, detail_type, payload) VALUES (?1, ?2, ?3)",
            )?;
            for (target, kind, payload) in &m.events {
                ins.execute(params![target, kind, payload])?;
            }
            Ok(())
        })
    }

    /// The newest messages first.
    pub fn messages(&self, limit: usize) -> Result<Vec<MessageRow>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {MSG_COLS} FROM messages ORDER BY n DESC LIMIT ?1"
            ))?;
            let rows = st
                .query_map([limit as i64], msg_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn message(&self, id: &str) -> Result<Option<MessageRow>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {MSG_COLS} FROM messages WHERE id = ?1"),
                [id],
                msg_from_row,
            )
            .optional()?)
        })
    }

    /// Messages waiting for the relay, due now; and the next due time of the others.
    pub fn relay_due(&self, now_ms: i64, limit: usize) -> Result<(Vec<MessageRow>, Option<i64>)> {
        self.with(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM messages WHERE relay_status IN ('pending', 'retrying')
                 AND relay_next_ms <= ?1 ORDER BY n LIMIT ?2"
            ))?;
            let rows = st
                .query_map(params![now_ms, limit as i64], msg_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next: Option<i64> = c.query_row(
                "SELECT min(relay_next_ms) FROM messages WHERE relay_status IN ('pending', 'retrying')
                 AND relay_next_ms > ?1",
                [now_ms],
                |r| r.get(0),
            )?;
            Ok((rows, next))
        })
    }

    pub fn relay_result(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
        next_ms: i64,
    ) -> Result<()> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE messages SET relay_status = ?2, relay_error = ?3,
                        relay_attempts = relay_attempts + 1, relay_next_ms = ?4 WHERE id = ?1",
                params![id, status, error, next_ms],
            )?;
            Ok(())
        })
    }

    /// Events owed now; and the next due time of the others.
    pub fn events_due(&self, now_ms: i64, limit: usize) -> Result<(Vec<OwedEvent>, Option<i64>)> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, target, detail_type, payload, attempts FROM event_outbox
                 WHERE done = 0 AND next_ms <= ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![now_ms, limit as i64], |r| {
                    Ok(OwedEvent {
                        id: r.get(0)?,
                        target: r.get(1)?,
                        detail_type: r.get(2)?,
                        payload: r.get(3)?,
                        attempts: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next: Option<i64> = c.query_row(
                "SELECT min(next_ms) FROM event_outbox WHERE done = 0 AND next_ms > ?1",
                [now_ms],
                |r| r.get(0),
            )?;
            Ok((rows, next))
        })
    }

    /// Record an event delivery's outcome: `done` (delivered or given up) or
    /// retried at `next_ms`.
    pub fn event_result(
        &self,
        id: i64,
        done: bool,
        error: Option<&str>,
        next_ms: i64,
    ) -> Result<()> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE event_outbox SET done = ?2, error = ?3, attempts = attempts + 1, next_ms = ?4
                 WHERE id = ?1",
                params![id, done as i64, error, next_ms],
            )?;
            Ok(())
        })
    }

    /// The newest event notifications, for the admin surface: (id, target, type,
    /// payload, attempts, done, error).
    #[allow(clippy::type_complexity)]
    pub fn events(
        &self,
        limit: usize,
    ) -> Result<Vec<(i64, String, String, String, i64, bool, Option<String>)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, target, detail_type, payload, attempts, done, error FROM event_outbox
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st
                .query_map([limit as i64], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get::<_, i64>(5)? != 0,
                        r.get(6)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// (pending events, failed events) for metrics.
    pub fn event_counts(&self) -> Result<(i64, i64)> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT coalesce(sum(done = 0), 0), coalesce(sum(done = 1 AND error IS NOT NULL), 0) FROM event_outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
    }
}

fn identity_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Identity> {
    Ok(Identity {
        identity: r.get(0)?,
        kind: r.get(1)?,
        token: r.get(2)?,
        created_ms: r.get(3)?,
    })
}

fn template_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Template> {
    Ok(Template {
        name: r.get(0)?,
        subject: r.get(1)?,
        html: r.get(2)?,
        text: r.get(3)?,
        created_ms: r.get(4)?,
    })
}

/// A domain's verification token (made once, kept with the identity).
fn token_for(_identity: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// What a lookup or a create names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Template,
    ConfigSet,
    EventDestination,
    Identity,
}

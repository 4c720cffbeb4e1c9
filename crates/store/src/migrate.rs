//! Versioned schema migrations, one ordered list per database file.
//!
//! A file's schema version is SQLite's `PRAGMA user_version`: migration `n` (1-based
//! position in the list) brings the file from version `n-1` to `n`. Each migration
//! runs in its own `BEGIN IMMEDIATE` transaction together with the `user_version`
//! bump, so a crash mid-migration leaves the file at the previous version and the
//! next start applies it again. Several connections may open one file at once (the
//! main database is opened by the registry, the route table and the gateway's
//! access store): the version is re-read inside each transaction, so each migration
//! runs exactly once. A file whose version is newer than the list knows (written by
//! a newer Nimbus) is refused rather than used.
//!
//! The first migrations of each list adopt files made before versioning existed
//! (`user_version` 0 with some of the tables present): they check what is there
//! instead of assuming an empty file. Every migration added after them is plain DDL.

use crate::{Result, StoreError};
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// One step of a file's schema history.
pub struct Migration {
    /// What it does, for the log and the error messages.
    pub name: &'static str,
    pub step: Step,
}

/// What a migration runs.
pub enum Step {
    /// A batch of SQL statements.
    Sql(&'static str),
    /// Code, for a step that depends on what a pre-versioning file already has.
    Code(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// The ordered migrations of one database file.
pub struct Schema {
    /// The file's role (`nimbus.db`, `events.db`), for messages.
    pub file: &'static str,
    pub migrations: &'static [Migration],
}

impl Schema {
    /// The version a file has once every migration ran.
    pub fn latest(&self) -> u32 {
        self.migrations.len() as u32
    }
}

/// The file's current schema version.
pub fn version(conn: &Connection) -> Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(v.max(0) as u32)
}

/// Bring `conn`'s file up to `schema`'s latest version; returns that version.
/// Refuses ([`StoreError::SchemaTooNew`]) a file newer than `schema` knows.
pub fn migrate(conn: &mut Connection, schema: &Schema) -> Result<u32> {
    let latest = schema.latest();
    let found = version(conn)?;
    if found > latest {
        return Err(too_new(schema, found));
    }
    for (i, m) in schema.migrations.iter().enumerate() {
        let target = i as u32 + 1;
        if target <= found {
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another connection may have migrated since the first read.
        let now = version(&tx)?;
        if now > latest {
            return Err(too_new(schema, now));
        }
        if now >= target {
            continue;
        }
        match &m.step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        tracing::info!(
            file = schema.file,
            version = target,
            migration = m.name,
            "schema migrated"
        );
    }
    Ok(latest)
}

fn too_new(schema: &Schema, found: u32) -> StoreError {
    StoreError::SchemaTooNew {
        file: schema.file,
        found,
        known: schema.latest(),
    }
}

/// Whether `table` exists (for the adoption steps).
pub(crate) fn has_table(tx: &Transaction<'_>, table: &str) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )
}

/// Whether `table` has `column` (for the adoption steps).
pub(crate) fn has_column(
    tx: &Transaction<'_>,
    table: &str,
    column: &str,
) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    static TWO: Schema = Schema {
        file: "t.db",
        migrations: &[
            Migration {
                name: "t",
                step: Step::Sql("CREATE TABLE t(a INTEGER)"),
            },
            Migration {
                name: "t.b",
                step: Step::Sql("ALTER TABLE t ADD COLUMN b TEXT"),
            },
        ],
    };

    #[test]
    fn applies_each_migration_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut a = crate::open_durable(&path).unwrap();
        let mut b = crate::open_durable(&path).unwrap();
        assert_eq!(migrate(&mut a, &TWO).unwrap(), 2);
        // A second connection (or a restart) finds nothing to do.
        assert_eq!(migrate(&mut b, &TWO).unwrap(), 2);
        assert_eq!(version(&b).unwrap(), 2);
        b.execute("INSERT INTO t(a, b) VALUES (1, 'x')", [])
            .unwrap();
    }

    #[test]
    fn a_failed_migration_leaves_the_previous_version() {
        static BAD: Schema = Schema {
            file: "t.db",
            migrations: &[
                Migration {
                    name: "t",
                    step: Step::Sql("CREATE TABLE t(a INTEGER)"),
                },
                Migration {
                    name: "broken",
                    step: Step::Sql("CREATE TABLE u(a); THIS IS NOT SQL"),
                },
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::open_durable(&dir.path().join("t.db")).unwrap();
        assert!(migrate(&mut c, &BAD).is_err());
        assert_eq!(version(&c).unwrap(), 1);
        // The half-run step rolled back with its transaction.
        let tx = c.transaction().unwrap();
        assert!(!has_table(&tx, "u").unwrap());
        assert!(has_table(&tx, "t").unwrap());
    }

    #[test]
    fn a_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::open_durable(&dir.path().join("t.db")).unwrap();
        c.pragma_update(None, "user_version", 7).unwrap();
        let err = migrate(&mut c, &TWO).unwrap_err();
        assert!(matches!(
            err,
            StoreError::SchemaTooNew {
                found: 7,
                known: 2,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("t.db") && msg.contains('7') && msg.contains("newer"),
            "{msg}"
        );
        assert_eq!(version(&c).unwrap(), 7, "left untouched");
    }
}

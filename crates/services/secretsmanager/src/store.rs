//! `<data>/secretsmanager.db`: one row of metadata per secret (JSON, no values)
//! and one row per version holding the value sealed by the keyring.

use nimbus_store::migrate::{Migration, Schema, Step};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub static SCHEMA: Schema = Schema {
    file: "secretsmanager.db",
    migrations: &[Migration {
        name: "secrets and their sealed versions",
        step: Step::Sql(
            "CREATE TABLE secrets (
                arn  TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                meta TEXT NOT NULL
            );
            CREATE TABLE secret_versions (
                arn        TEXT NOT NULL,
                version_id TEXT NOT NULL,
                key_id     TEXT NOT NULL,
                sealed     BLOB NOT NULL,
                PRIMARY KEY (arn, version_id)
            );",
        ),
    }],
};

/// A secret's metadata (never its values).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Secret {
    pub arn: String,
    pub name: String,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub created_ms: i64,
    pub last_changed_ms: i64,
    pub last_accessed_ms: Option<i64>,
    pub deleted_ms: Option<i64>,
    pub delete_at_ms: Option<i64>,
    pub rotation_enabled: bool,
    pub rotation_lambda: Option<String>,
    pub rotation_rules: Option<Value>,
    pub last_rotated_ms: Option<i64>,
    pub next_rotation_ms: Option<i64>,
    pub policy: Option<String>,
    pub tags: Vec<(String, String)>,
    /// Oldest first.
    pub versions: Vec<Version>,
}

/// One version's metadata.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Version {
    pub id: String,
    pub created_ms: i64,
    pub stages: Vec<String>,
    pub binary: bool,
    pub last_accessed_ms: Option<i64>,
    /// False for the version `RotateSecret` labels AWSPENDING before the
    /// rotation function's `createSecret` step puts its value.
    #[serde(default = "yes")]
    pub has_value: bool,
}

fn yes() -> bool {
    true
}

impl Secret {
    pub fn version(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == id)
    }

    pub fn staged(&self, stage: &str) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage))
    }
}

/// What a version's value is sealed with as associated data: the secret and the
/// version, so a sealed value copied to another row does not open.
pub fn aad(arn: &str, version_id: &str, binary: bool) -> Vec<u8> {
    format!(
        "secretsmanager\0{arn}\0{version_id}\0{}",
        if binary { "b" } else { "s" }
    )
    .into_bytes()
}

pub fn load(conn: &Connection) -> rusqlite::Result<Vec<Secret>> {
    let mut st = conn.prepare("SELECT meta FROM secrets")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        let meta = r?;
        match serde_json::from_str::<Secret>(&meta) {
            Ok(s) => out.push(s),
            Err(e) => tracing::error!(error = %e, "unreadable secret metadata row skipped"),
        }
    }
    Ok(out)
}

pub fn save(conn: &Connection, s: &Secret) -> rusqlite::Result<()> {
    let meta = serde_json::to_string(s).unwrap_or_default();
    conn.execute(
        "INSERT INTO secrets (arn, name, meta) VALUES (?1, ?2, ?3)
         ON CONFLICT(arn) DO UPDATE SET meta = excluded.meta",
        params![s.arn, s.name, meta],
    )?;
    Ok(())
}

pub fn put_value(
    conn: &Connection,
    arn: &str,
    version_id: &str,
    key_id: &str,
    sealed: &[u8],
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO secret_versions (arn, version_id, key_id, sealed) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(arn, version_id) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed",
        params![arn, version_id, key_id, sealed],
    )?;
    Ok(())
}

pub fn get_value(
    conn: &Connection,
    arn: &str,
    version_id: &str,
) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT sealed FROM secret_versions WHERE arn = ?1 AND version_id = ?2",
        params![arn, version_id],
        |r| r.get(0),
    )
    .optional()
}

pub fn delete_version(conn: &Connection, arn: &str, version_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM secret_versions WHERE arn = ?1 AND version_id = ?2",
        params![arn, version_id],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, arn: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM secret_versions WHERE arn = ?1", params![arn])?;
    conn.execute("DELETE FROM secrets WHERE arn = ?1", params![arn])?;
    Ok(())
}

/// Rows sealed under a key other than `current`: (arn, version id, sealed).
pub fn stale(conn: &Connection, current: &str) -> rusqlite::Result<Vec<(String, String, Vec<u8>)>> {
    let mut st =
        conn.prepare("SELECT arn, version_id, sealed FROM secret_versions WHERE key_id != ?1")?;
    let rows = st.query_map(params![current], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

pub fn count_values(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM secret_versions", [], |r| r.get(0))
}

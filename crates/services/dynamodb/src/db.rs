//! The table store: one SQLite file `<data>/dynamodb.db` (WAL, `synchronous=FULL`:
//! an acknowledged write is on disk).
//!
//! * `tables` — one row per table, its description as JSON ([`TableMeta`]).
//! * `items` — `(tid, hk, rk)` primary key: `hk`/`rk` are the hash and range key
//!   values in an order-preserving byte encoding ([`AttrValue::key_bytes`]; numbers
//!   sort numerically), so a `Query` is a range scan of the primary key; `h32` (a
//!   hash of `hk`) orders `Scan` and splits it into parallel segments.
//! * `idx` — secondary-index entries `(tid, index, ihk, irk, hk, rk)` pointing at
//!   their item; maintained in the same transaction as the item.
//! * `stream_records` — the change records DynamoDB Streams reads, appended in the
//!   same transaction as the item change they describe (the outbox); the row id is
//!   the sequence number, so records are ordered per item and per stream.
//! * `streams`, `tags`, `tx_tokens` (TransactWriteItems idempotency).

use crate::value::{item_from_json, item_size, item_to_json, AttrValue, Item};
use nimbus_store::migrate::{Migration, Schema, Step};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const SCHEMA: Schema = Schema {
    file: "dynamodb.db",
    migrations: &[Migration {
        name: "dynamodb tables, items, indexes, streams",
        step: Step::Sql(
            "CREATE TABLE tables(name TEXT PRIMARY KEY, tid INTEGER NOT NULL UNIQUE, meta TEXT NOT NULL);
             CREATE TABLE items(tid INTEGER NOT NULL, hk BLOB NOT NULL, rk BLOB NOT NULL,
                 h32 INTEGER NOT NULL, item TEXT NOT NULL, size INTEGER NOT NULL, expires INTEGER,
                 PRIMARY KEY(tid, hk, rk)) WITHOUT ROWID;
             CREATE INDEX items_scan ON items(tid, h32, hk, rk);
             CREATE INDEX items_ttl ON items(tid, expires) WHERE expires IS NOT NULL;
             CREATE TABLE idx(tid INTEGER NOT NULL, iname TEXT NOT NULL, ihk BLOB NOT NULL,
                 irk BLOB NOT NULL, hk BLOB NOT NULL, rk BLOB NOT NULL,
                 PRIMARY KEY(tid, iname, ihk, irk, hk, rk)) WITHOUT ROWID;
             CREATE INDEX idx_item ON idx(tid, hk, rk);
             CREATE TABLE streams(arn TEXT PRIMARY KEY, table_name TEXT NOT NULL, tid INTEGER NOT NULL,
                 view_type TEXT NOT NULL, label TEXT NOT NULL, key_schema TEXT NOT NULL,
                 created_ms INTEGER NOT NULL, disabled_ms INTEGER);
             CREATE TABLE stream_records(seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_arn TEXT NOT NULL,
                 created_ms INTEGER NOT NULL, record TEXT NOT NULL);
             CREATE INDEX stream_records_arn ON stream_records(stream_arn, seq);
             CREATE TABLE tags(arn TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                 PRIMARY KEY(arn, key));
             CREATE TABLE tx_tokens(token TEXT PRIMARY KEY, digest TEXT NOT NULL, created_ms INTEGER NOT NULL);",
        ),
    }],
};

/// A key attribute: name and scalar type (`S`, `N`, `B`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyAttr {
    pub name: String,
    pub ty: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexMeta {
    pub name: String,
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: String,
    pub non_key: Vec<String>,
    pub rcu: i64,
    pub wcu: i64,
    pub global: bool,
}

/// A table's stream, while enabled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamMeta {
    pub arn: String,
    pub label: String,
    pub view_type: String,
}

/// What `DescribeTable` reports, and what the data path needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableMeta {
    pub name: String,
    pub tid: i64,
    pub arn: String,
    pub table_id: String,
    pub created_ms: i64,
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
    pub attr_defs: Vec<KeyAttr>,
    pub billing: String,
    pub rcu: i64,
    pub wcu: i64,
    pub gsis: Vec<IndexMeta>,
    pub lsis: Vec<IndexMeta>,
    pub stream: Option<StreamMeta>,
    /// The most recent stream (kept after it is disabled).
    pub latest_stream: Option<StreamMeta>,
    pub ttl_attr: Option<String>,
    pub deletion_protection: bool,
    pub table_class: String,
}

impl TableMeta {
    pub fn index(&self, name: &str) -> Option<&IndexMeta> {
        self.gsis.iter().chain(&self.lsis).find(|i| i.name == name)
    }

    /// The key attributes of the table.
    pub fn key_names(&self) -> Vec<&str> {
        let mut v = vec![self.hash.name.as_str()];
        if let Some(r) = &self.range {
            v.push(r.name.as_str());
        }
        v
    }

    /// The table's key of an item.
    pub fn key_of(&self, item: &Item) -> Item {
        let mut k = Item::new();
        for n in self.key_names() {
            if let Some(v) = item.get(n) {
                k.insert(n.to_string(), v.clone());
            }
        }
        k
    }
}

/// The encoded primary key of an item (hash bytes, range bytes).
pub fn row_key(t: &TableMeta, key: &Item) -> (Vec<u8>, Vec<u8>) {
    let hk = key
        .get(&t.hash.name)
        .map(|v| v.key_bytes())
        .unwrap_or_default();
    let rk = t
        .range
        .as_ref()
        .and_then(|r| key.get(&r.name))
        .map(|v| v.key_bytes())
        .unwrap_or_default();
    (hk, rk)
}

/// The 32-bit hash of an encoded hash key that orders a `Scan` and places an item
/// in a parallel-scan segment.
pub fn h32(hk: &[u8]) -> u32 {
    let d = sha2::Sha256::digest(hk);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The store shared by the DynamoDB and DynamoDB Streams front-ends.
pub struct Store {
    /// The one writer.
    conn: Mutex<Connection>,
    /// Idle reader connections: WAL lets reads run beside the writer, each in
    /// its own snapshot.
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    tables: Mutex<HashMap<String, Arc<TableMeta>>>,
    /// Bumped after every commit that appended stream records.
    pub changes: tokio::sync::watch::Sender<u64>,
    pub region: String,
    pub account_id: String,
}

/// A storage failure (a bug or a broken disk): answered as 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Open(String),
}

impl Store {
    pub fn open(path: &Path, region: &str, account_id: &str) -> Result<Store, StoreError> {
        let conn = nimbus_store::open_migrated(path, &SCHEMA)
            .map_err(|e| StoreError::Open(e.to_string()))?;
        let store = Store {
            conn: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
            tables: Mutex::new(HashMap::new()),
            changes: tokio::sync::watch::channel(0).0,
            region: region.to_string(),
            account_id: account_id.to_string(),
        };
        store.reload()?;
        Ok(store)
    }

    fn reload(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare("SELECT meta FROM tables")?;
        let metas: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.clear();
        for m in metas {
            if let Ok(m) = serde_json::from_str::<TableMeta>(&m) {
                t.insert(m.name.clone(), Arc::new(m));
            }
        }
        Ok(())
    }

    pub fn table(&self, name: &str) -> Option<Arc<TableMeta>> {
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    pub fn tables(&self) -> Vec<Arc<TableMeta>> {
        let mut v: Vec<Arc<TableMeta>> = self
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Run `f` in one IMMEDIATE transaction; committed when it returns `Ok`.
    /// Table metadata written with [`save_meta`] becomes visible after commit;
    /// stream watchers are woken when records were appended.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let (out, metas, dropped, records) = {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let mut w = Tx {
                tx,
                metas: Vec::new(),
                dropped: Vec::new(),
                records: 0,
                region: &self.region,
            };
            let out = f(&mut w)?;
            let Tx {
                tx,
                metas,
                dropped,
                records,
                ..
            } = w;
            tx.commit().map_err(StoreError::from)?;
            (out, metas, dropped, records)
        };
        if !metas.is_empty() || !dropped.is_empty() {
            let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            for d in dropped {
                t.remove(&d);
            }
            for m in metas {
                t.insert(m.name.clone(), Arc::new(m));
            }
        }
        if records > 0 {
            self.changes.send_modify(|v| *v += 1);
        }
        Ok(out)
    }

    /// Run `f` in a read transaction (a consistent snapshot of what is committed)
    /// on a reader connection, beside the writer.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => nimbus_store::open_durable(&self.path).map_err(StoreError::from)?,
        };
        let out = {
            let tx = conn.transaction().map_err(StoreError::from)?;
            f(&tx)
        };
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        out
    }
}

/// Idle reader connections kept open.
const READER_POOL: usize = 8;

/// A write transaction.
pub struct Tx<'a> {
    pub tx: Transaction<'a>,
    metas: Vec<TableMeta>,
    dropped: Vec<String>,
    records: usize,
    region: &'a str,
}

impl Tx<'_> {
    pub fn save_meta(&mut self, m: &TableMeta) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO tables(name, tid, meta) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET meta = excluded.meta",
            params![m.name, m.tid, serde_json::to_string(m).unwrap_or_default()],
        )?;
        self.metas.push(m.clone());
        Ok(())
    }

    pub fn drop_table(&mut self, m: &TableMeta) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM tables WHERE name = ?1", [&m.name])?;
        self.tx
            .execute("DELETE FROM items WHERE tid = ?1", [m.tid])?;
        self.tx.execute("DELETE FROM idx WHERE tid = ?1", [m.tid])?;
        self.tx
            .execute("DELETE FROM tags WHERE arn = ?1", [&m.arn])?;
        self.dropped.push(m.name.clone());
        Ok(())
    }

    pub fn next_tid(&self) -> Result<i64, StoreError> {
        let t: Option<i64> = self
            .tx
            .query_row("SELECT MAX(tid) FROM tables", [], |r| r.get(0))?;
        let s: Option<i64> = self
            .tx
            .query_row("SELECT MAX(tid) FROM streams", [], |r| r.get(0))?;
        Ok(t.unwrap_or(0).max(s.unwrap_or(0)) + 1)
    }

    /// The item with this key, if any.
    pub fn get(&self, t: &TableMeta, key: &Item) -> Result<Option<Item>, StoreError> {
        get_item(&self.tx, t, key)
    }

    /// Replace (`Some`) or delete (`None`) the item at `key`, keeping its index
    /// entries and appending the stream record of an effective change.
    pub fn put(
        &mut self,
        t: &TableMeta,
        key: &Item,
        old: Option<&Item>,
        new: Option<&Item>,
        user_identity: Option<Value>,
    ) -> Result<(), StoreError> {
        let (hk, rk) = row_key(t, key);
        match new {
            Some(item) => {
                let expires = t.ttl_attr.as_ref().and_then(|a| ttl_of(item, a));
                self.tx.execute(
                    "INSERT INTO items(tid, hk, rk, h32, item, size, expires) VALUES (?1,?2,?3,?4,?5,?6,?7)
                     ON CONFLICT(tid, hk, rk) DO UPDATE SET item = excluded.item, size = excluded.size,
                     expires = excluded.expires",
                    params![
                        t.tid,
                        hk,
                        rk,
                        h32(&hk),
                        item_to_json(item).to_string(),
                        item_size(item) as i64,
                        expires
                    ],
                )?;
            }
            None => {
                self.tx.execute(
                    "DELETE FROM items WHERE tid = ?1 AND hk = ?2 AND rk = ?3",
                    params![t.tid, hk, rk],
                )?;
            }
        }
        if !t.gsis.is_empty() || !t.lsis.is_empty() {
            self.tx.execute(
                "DELETE FROM idx WHERE tid = ?1 AND hk = ?2 AND rk = ?3",
                params![t.tid, hk, rk],
            )?;
            if let Some(item) = new {
                for ix in t.gsis.iter().chain(&t.lsis) {
                    index_entry(&self.tx, t, ix, item, &hk, &rk)?;
                }
            }
        }
        if let Some(s) = &t.stream {
            let effective = match (old, new) {
                (None, None) => false,
                (Some(a), Some(b)) => a != b,
                _ => true,
            };
            if effective {
                let rec = stream_record(self.region, t, s, key, old, new, user_identity);
                self.tx.execute(
                    "INSERT INTO stream_records(stream_arn, created_ms, record) VALUES (?1, ?2, ?3)",
                    params![s.arn, nimbus_core::now_ms(), rec.to_string()],
                )?;
                self.records += 1;
            }
        }
        Ok(())
    }

    /// Add `ix`'s entries for every item of the table (an index added by UpdateTable).
    pub fn backfill_index(&mut self, t: &TableMeta, ix: &IndexMeta) -> Result<(), StoreError> {
        let rows: Vec<(Vec<u8>, Vec<u8>, String)> = {
            let mut stmt = self
                .tx
                .prepare("SELECT hk, rk, item FROM items WHERE tid = ?1")?;
            let rows = stmt
                .query_map([t.tid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows
        };
        for (hk, rk, item) in rows {
            if let Some(item) = parse_stored(&item) {
                index_entry(&self.tx, t, ix, &item, &hk, &rk)?;
            }
        }
        Ok(())
    }

    /// Set the `expires` column of every item from the TTL attribute (or clear it).
    pub fn backfill_ttl(&mut self, t: &TableMeta) -> Result<(), StoreError> {
        let rows: Vec<(Vec<u8>, Vec<u8>, String)> = {
            let mut stmt = self
                .tx
                .prepare("SELECT hk, rk, item FROM items WHERE tid = ?1")?;
            let rows = stmt
                .query_map([t.tid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows
        };
        for (hk, rk, item) in rows {
            let exp = match (&t.ttl_attr, parse_stored(&item)) {
                (Some(a), Some(item)) => ttl_of(&item, a),
                _ => None,
            };
            self.tx.execute(
                "UPDATE items SET expires = ?4 WHERE tid = ?1 AND hk = ?2 AND rk = ?3",
                params![t.tid, hk, rk, exp],
            )?;
        }
        Ok(())
    }
}

fn index_entry(
    tx: &Connection,
    _t: &TableMeta,
    ix: &IndexMeta,
    item: &Item,
    hk: &[u8],
    rk: &[u8],
) -> Result<(), StoreError> {
    let Some(ih) = item.get(&ix.hash.name) else {
        return Ok(());
    };
    if ih.type_name() != ix.hash.ty {
        return Ok(());
    }
    let irk = match &ix.range {
        Some(r) => match item.get(&r.name) {
            Some(v) if v.type_name() == r.ty => v.key_bytes(),
            _ => return Ok(()),
        },
        None => Vec::new(),
    };
    tx.execute(
        "INSERT OR REPLACE INTO idx(tid, iname, ihk, irk, hk, rk) VALUES (?1,?2,?3,?4,?5,?6)",
        params![_t.tid, ix.name, ih.key_bytes(), irk, hk, rk],
    )?;
    Ok(())
}

/// The TTL epoch seconds of an item (a number attribute), if any.
pub fn ttl_of(item: &Item, attr: &str) -> Option<i64> {
    match item.get(attr) {
        Some(AttrValue::N(n)) => {
            let int = n.split('.').next().unwrap_or(n);
            int.parse::<i64>().ok()
        }
        _ => None,
    }
}

pub fn parse_stored(s: &str) -> Option<Item> {
    serde_json::from_str::<Value>(s)
        .ok()
        .and_then(|v| item_from_json(&v).ok())
}

pub fn get_item(conn: &Connection, t: &TableMeta, key: &Item) -> Result<Option<Item>, StoreError> {
    let (hk, rk) = row_key(t, key);
    let s: Option<String> = conn
        .query_row(
            "SELECT item FROM items WHERE tid = ?1 AND hk = ?2 AND rk = ?3",
            params![t.tid, hk, rk],
            |r| r.get(0),
        )
        .optional()?;
    Ok(s.as_deref().and_then(parse_stored))
}

/// The record as the Streams API and Lambda see it, less its `SequenceNumber`
/// (the row id, filled in when read).
fn stream_record(
    region: &str,
    t: &TableMeta,
    s: &StreamMeta,
    key: &Item,
    old: Option<&Item>,
    new: Option<&Item>,
    user_identity: Option<Value>,
) -> Value {
    let name = match (old, new) {
        (None, Some(_)) => "INSERT",
        (Some(_), Some(_)) => "MODIFY",
        _ => "REMOVE",
    };
    let mut d = serde_json::Map::new();
    d.insert(
        "ApproximateCreationDateTime".into(),
        json!(nimbus_core::now_ms() / 1000),
    );
    d.insert("Keys".into(), item_to_json(&t.key_of(key)));
    let mut size = item_size(&t.key_of(key));
    if matches!(s.view_type.as_str(), "NEW_IMAGE" | "NEW_AND_OLD_IMAGES") {
        if let Some(n) = new {
            d.insert("NewImage".into(), item_to_json(n));
            size += item_size(n);
        }
    }
    if matches!(s.view_type.as_str(), "OLD_IMAGE" | "NEW_AND_OLD_IMAGES") {
        if let Some(o) = old {
            d.insert("OldImage".into(), item_to_json(o));
            size += item_size(o);
        }
    }
    d.insert("SizeBytes".into(), json!(size));
    d.insert("StreamViewType".into(), json!(s.view_type));
    let mut r = json!({
        "eventID": uuid::Uuid::new_v4().simple().to_string(),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": Value::Object(d),
    });
    if let Some(u) = user_identity {
        r["userIdentity"] = u;
    }
    r
}

/// A sequence number as DynamoDB Streams writes them: 21 decimal digits.
pub fn seq_string(seq: i64) -> String {
    format!("{}", 100_000_000_000_000_000_000u128 + seq as u128)
}

/// The row id of a sequence number string.
pub fn seq_parse(s: &str) -> Option<i64> {
    let n: u128 = s.parse().ok()?;
    n.checked_sub(100_000_000_000_000_000_000u128)
        .and_then(|v| i64::try_from(v).ok())
}

/// One stored stream record with its sequence number filled in.
pub fn finish_record(seq: i64, record: &str) -> Value {
    let mut v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
    if let Some(d) = v.get_mut("dynamodb").and_then(|d| d.as_object_mut()) {
        d.insert("SequenceNumber".into(), json!(seq_string(seq)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip() {
        assert_eq!(seq_string(1), "100000000000000000001");
        assert_eq!(seq_parse(&seq_string(42)), Some(42));
        assert_eq!(seq_parse("5"), None);
    }
}

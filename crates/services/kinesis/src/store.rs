//! The durable state of every stream in `<data>/kinesis.db`: streams, their
//! shards (hash-key ranges, sequence-number ranges, parent/child lineage),
//! records and consumers. Every write is one SQLite transaction on a
//! `synchronous=FULL` connection: a record acknowledged to a client is on disk.
//!
//! Sequence numbers are one counter per stream (`streams.next_seq`), written on
//! the wire as 56 decimal digits (`49` and the counter zero-padded), so they
//! compare as integers and as strings alike, and grow within every shard.

use crate::error::KinesisError;
use nimbus_store::migrate::{Migration, Schema, Step};
use nimbus_store::SharedConn;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) static KINESIS_DB: Schema = Schema {
    file: "kinesis.db",
    migrations: &[Migration {
        name: "streams, shards, records, consumers",
        step: Step::Sql(
            "CREATE TABLE streams(
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                mode TEXT NOT NULL,
                retention_hours INTEGER NOT NULL,
                created_ms INTEGER NOT NULL,
                next_shard INTEGER NOT NULL,
                next_seq INTEGER NOT NULL,
                tags TEXT NOT NULL DEFAULT '{}',
                encryption TEXT NOT NULL DEFAULT 'NONE',
                key_id TEXT,
                metrics TEXT NOT NULL DEFAULT '[]'
            );
            CREATE TABLE shards(
                stream_id INTEGER NOT NULL,
                shard_id TEXT NOT NULL,
                parent TEXT,
                adjacent_parent TEXT,
                start_hash TEXT NOT NULL,
                end_hash TEXT NOT NULL,
                start_seq INTEGER NOT NULL,
                end_seq INTEGER,
                PRIMARY KEY(stream_id, shard_id)
            );
            CREATE TABLE records(
                stream_id INTEGER NOT NULL,
                shard_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                partition_key TEXT NOT NULL,
                data BLOB NOT NULL,
                arrival_ms INTEGER NOT NULL,
                PRIMARY KEY(stream_id, seq)
            );
            CREATE INDEX records_by_shard ON records(stream_id, shard_id, seq);
            CREATE INDEX records_by_time ON records(stream_id, arrival_ms);
            CREATE TABLE consumers(
                stream_id INTEGER NOT NULL,
                name TEXT NOT NULL,
                arn TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                PRIMARY KEY(stream_id, name)
            );",
        ),
    }],
};

/// The whole hash-key space is `0 ..= 2^128 - 1`.
pub const HASH_MAX: u128 = u128::MAX;

/// Write a stream-local sequence counter as a Kinesis sequence number.
pub fn seq_string(n: i64) -> String {
    format!("49{n:054}")
}

/// Read a sequence number Nimbus wrote back into its counter.
pub fn parse_seq(s: &str) -> Option<i64> {
    if s.len() != 56 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.strip_prefix("49")?.parse().ok()
}

/// The 128-bit hash key of a partition key: its MD5 as a big-endian integer.
pub fn hash_key(partition_key: &str) -> u128 {
    use md5::Digest;
    let d = md5::Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(d.into())
}

/// `n` shards splitting the hash-key space evenly, as Kinesis does: shard `i`
/// starts at `i * floor(2^128 / n)`, the last ends at `2^128 - 1`.
pub fn even_ranges(n: u32) -> Vec<(u128, u128)> {
    let n = u128::from(n.max(1));
    if n == 1 {
        return vec![(0, HASH_MAX)];
    }
    let step = (HASH_MAX - n + 1) / n + 1;
    (0..n)
        .map(|i| {
            let start = i * step;
            let end = if i + 1 == n {
                HASH_MAX
            } else {
                (i + 1) * step - 1
            };
            (start, end)
        })
        .collect()
}

fn shard_name(i: i64) -> String {
    format!("shardId-{i:012}")
}

/// One stream's row.
#[derive(Debug, Clone)]
pub struct StreamRow {
    pub id: i64,
    pub name: String,
    pub mode: String,
    pub retention_hours: i64,
    pub created_ms: i64,
    pub next_seq: i64,
    pub tags: BTreeMap<String, String>,
    pub encryption: String,
    pub key_id: Option<String>,
    pub metrics: Vec<String>,
}

/// One shard's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRow {
    pub shard_id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    pub start_hash: u128,
    pub end_hash: u128,
    pub start_seq: i64,
    pub end_seq: Option<i64>,
}

impl ShardRow {
    pub fn is_open(&self) -> bool {
        self.end_seq.is_none()
    }
}

/// One stored record.
#[derive(Debug, Clone)]
pub struct RecordRow {
    pub shard_id: String,
    pub seq: i64,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrival_ms: i64,
}

/// A record to append.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<u128>,
    pub data: Vec<u8>,
}

/// A consumer's row.
#[derive(Debug, Clone)]
pub struct ConsumerRow {
    pub name: String,
    pub arn: String,
    pub created_ms: i64,
}

/// The database.
#[derive(Clone)]
pub struct Store {
    conn: SharedConn,
}

type Result<T> = std::result::Result<T, KinesisError>;

fn stream_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamRow> {
    let tags: String = r.get(7)?;
    let metrics: String = r.get(10)?;
    Ok(StreamRow {
        id: r.get(0)?,
        name: r.get(1)?,
        mode: r.get(2)?,
        retention_hours: r.get(3)?,
        created_ms: r.get(4)?,
        next_seq: r.get(6)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        encryption: r.get(8)?,
        key_id: r.get(9)?,
        metrics: serde_json::from_str(&metrics).unwrap_or_default(),
    })
}

const STREAM_COLS: &str = "id, name, mode, retention_hours, created_ms, next_shard, next_seq, tags, encryption, key_id, metrics";

fn shard_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShardRow> {
    let sh: String = r.get(3)?;
    let eh: String = r.get(4)?;
    Ok(ShardRow {
        shard_id: r.get(0)?,
        parent: r.get(1)?,
        adjacent_parent: r.get(2)?,
        start_hash: sh.parse().unwrap_or(0),
        end_hash: eh.parse().unwrap_or(HASH_MAX),
        start_seq: r.get(5)?,
        end_seq: r.get(6)?,
    })
}

fn not_found(name: &str) -> KinesisError {
    KinesisError::NotFound(format!(
        "Stream {name} under account {} not found.",
        nimbus_core::ACCOUNT_ID
    ))
}

impl Store {
    pub fn open(path: &Path) -> std::result::Result<Self, nimbus_store::StoreError> {
        Ok(Self {
            conn: SharedConn::open_schema(path, &KINESIS_DB)?,
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

    fn stream_in(c: &Connection, name: &str) -> Result<StreamRow> {
        c.query_row(
            &format!("SELECT {STREAM_COLS} FROM streams WHERE name = ?1"),
            [name],
            stream_from_row,
        )
        .optional()?
        .ok_or_else(|| not_found(name))
    }

    fn shards_in(c: &Connection, stream_id: i64) -> Result<Vec<ShardRow>> {
        let mut st = c.prepare_cached(
            "SELECT shard_id, parent, adjacent_parent, start_hash, end_hash, start_seq, end_seq
             FROM shards WHERE stream_id = ?1 ORDER BY shard_id",
        )?;
        let rows = st
            .query_map([stream_id], shard_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Add a shard, taking the stream's next shard index.
    fn add_shard(
        tx: &Transaction<'_>,
        stream_id: i64,
        range: (u128, u128),
        parent: Option<&str>,
        adjacent: Option<&str>,
        start_seq: i64,
    ) -> Result<String> {
        let idx: i64 = tx.query_row(
            "UPDATE streams SET next_shard = next_shard + 1 WHERE id = ?1 RETURNING next_shard - 1",
            [stream_id],
            |r| r.get(0),
        )?;
        let id = shard_name(idx);
        tx.execute(
            "INSERT INTO shards(stream_id, shard_id, parent, adjacent_parent, start_hash, end_hash, start_seq, end_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
            params![stream_id, id, parent, adjacent, range.0.to_string(), range.1.to_string(), start_seq],
        )?;
        Ok(id)
    }

    /// Take `k` sequence numbers of the stream; returns the first.
    fn take_seq(tx: &Transaction<'_>, stream_id: i64, k: i64) -> Result<i64> {
        Ok(tx.query_row(
            "UPDATE streams SET next_seq = next_seq + ?2 WHERE id = ?1 RETURNING next_seq - ?2",
            params![stream_id, k],
            |r| r.get(0),
        )?)
    }

    pub fn create_stream(
        &self,
        name: &str,
        shards: u32,
        mode: &str,
        tags: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<()> {
        self.tx(|tx| {
            let exists: bool = tx
                .query_row("SELECT 1 FROM streams WHERE name = ?1", [name], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Err(KinesisError::InUse(format!(
                    "Stream {name} under account {} already exists.",
                    nimbus_core::ACCOUNT_ID
                )));
            }
            tx.execute(
                "INSERT INTO streams(name, mode, retention_hours, created_ms, next_shard, next_seq, tags)
                 VALUES (?1, ?2, 24, ?3, 0, 1, ?4)",
                params![name, mode, now_ms, serde_json::to_string(tags).unwrap_or_default()],
            )?;
            let id = tx.last_insert_rowid();
            for range in even_ranges(shards) {
                Self::add_shard(tx, id, range, None, None, 1)?;
            }
            Ok(())
        })
    }

    pub fn delete_stream(&self, name: &str, enforce_consumer_deletion: bool) -> Result<()> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            let consumers: i64 = tx.query_row(
                "SELECT count(*) FROM consumers WHERE stream_id = ?1",
                [s.id],
                |r| r.get(0),
            )?;
            if consumers > 0 && !enforce_consumer_deletion {
                return Err(KinesisError::InUse(format!(
                    "Stream {name} under account {} has registered consumers; \
                     set EnforceConsumerDeletion to delete it.",
                    nimbus_core::ACCOUNT_ID
                )));
            }
            for t in ["records", "shards", "consumers"] {
                tx.execute(&format!("DELETE FROM {t} WHERE stream_id = ?1"), [s.id])?;
            }
            tx.execute("DELETE FROM streams WHERE id = ?1", [s.id])?;
            Ok(())
        })
    }

    pub fn stream(&self, name: &str) -> Result<StreamRow> {
        self.with(|c| Self::stream_in(c, name))
    }

    pub fn stream_and_shards(&self, name: &str) -> Result<(StreamRow, Vec<ShardRow>)> {
        self.with(|c| {
            let s = Self::stream_in(c, name)?;
            let shards = Self::shards_in(c, s.id)?;
            Ok((s, shards))
        })
    }

    pub fn streams(&self) -> Result<Vec<StreamRow>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {STREAM_COLS} FROM streams ORDER BY name"))?;
            let rows = st
                .query_map([], stream_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn consumer_count(&self, stream_id: i64) -> Result<i64> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM consumers WHERE stream_id = ?1",
                [stream_id],
                |r| r.get(0),
            )?)
        })
    }

    /// Append records to a stream in one transaction; returns each one's shard
    /// and sequence counter.
    pub fn put(
        &self,
        name: &str,
        records: &[NewRecord],
        now_ms: i64,
    ) -> Result<Vec<(String, i64)>> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            let open: Vec<ShardRow> = Self::shards_in(tx, s.id)?
                .into_iter()
                .filter(ShardRow::is_open)
                .collect();
            let first = Self::take_seq(tx, s.id, records.len() as i64)?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO records(stream_id, shard_id, seq, partition_key, data, arrival_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut out = Vec::with_capacity(records.len());
            for (i, r) in records.iter().enumerate() {
                let h = r
                    .explicit_hash_key
                    .unwrap_or_else(|| hash_key(&r.partition_key));
                let shard = open
                    .iter()
                    .find(|sh| sh.start_hash <= h && h <= sh.end_hash)
                    .ok_or_else(|| {
                        KinesisError::Internal(format!(
                            "no open shard of stream {name} covers hash key {h}"
                        ))
                    })?;
                let seq = first + i as i64;
                ins.execute(params![
                    s.id,
                    shard.shard_id,
                    seq,
                    r.partition_key,
                    r.data,
                    now_ms
                ])?;
                out.push((shard.shard_id.clone(), seq));
            }
            Ok(out)
        })
    }

    /// Records of one shard with a counter above `after`, oldest first, at most
    /// `limit` of them and about `max_bytes` of data (at least one); and whether
    /// more remain after them.
    pub fn read(
        &self,
        stream_id: i64,
        shard_id: &str,
        after: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<RecordRow>, bool)> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT shard_id, seq, partition_key, data, arrival_ms FROM records
                 WHERE stream_id = ?1 AND shard_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            let mut rows = st.query(params![stream_id, shard_id, after, (limit + 1) as i64])?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let mut more = false;
            while let Some(r) = rows.next()? {
                let rec = RecordRow {
                    shard_id: r.get(0)?,
                    seq: r.get(1)?,
                    partition_key: r.get(2)?,
                    data: r.get(3)?,
                    arrival_ms: r.get(4)?,
                };
                let size = rec.data.len() + rec.partition_key.len();
                if out.len() >= limit || (!out.is_empty() && bytes + size > max_bytes) {
                    more = true;
                    break;
                }
                bytes += size;
                out.push(rec);
            }
            Ok((out, more))
        })
    }

    /// The counter of the first record of a shard that arrived at or after
    /// `ts_ms`, if any.
    pub fn first_at(&self, stream_id: i64, shard_id: &str, ts_ms: i64) -> Result<Option<i64>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT min(seq) FROM records WHERE stream_id = ?1 AND shard_id = ?2 AND arrival_ms >= ?3",
                params![stream_id, shard_id, ts_ms],
                |r| r.get::<_, Option<i64>>(0),
            )?)
        })
    }

    /// Split one open shard at `at` (the first hash key of the upper child).
    pub fn split(&self, name: &str, shard_id: &str, at: u128) -> Result<()> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            let shards = Self::shards_in(tx, s.id)?;
            let sh = open_shard(&shards, shard_id, name)?;
            if at <= sh.start_hash || at > sh.end_hash {
                return Err(KinesisError::InvalidArgument(format!(
                    "NewStartingHashKey {at} used in SplitShard() on shard {shard_id} in stream {name} \
                     under account {} is not both greater than one plus the shard's StartingHashKey {} \
                     and less than the shard's EndingHashKey {}.",
                    nimbus_core::ACCOUNT_ID, sh.start_hash, sh.end_hash
                )));
            }
            let close = Self::take_seq(tx, s.id, 1)?;
            tx.execute(
                "UPDATE shards SET end_seq = ?3 WHERE stream_id = ?1 AND shard_id = ?2",
                params![s.id, shard_id, close],
            )?;
            Self::add_shard(tx, s.id, (sh.start_hash, at - 1), Some(shard_id), None, close + 1)?;
            Self::add_shard(tx, s.id, (at, sh.end_hash), Some(shard_id), None, close + 1)?;
            Ok(())
        })
    }

    /// Merge two adjacent open shards.
    pub fn merge(&self, name: &str, shard: &str, adjacent: &str) -> Result<()> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            let shards = Self::shards_in(tx, s.id)?;
            let a = open_shard(&shards, shard, name)?;
            let b = open_shard(&shards, adjacent, name)?;
            let range = if a.end_hash.checked_add(1) == Some(b.start_hash) {
                (a.start_hash, b.end_hash)
            } else if b.end_hash.checked_add(1) == Some(a.start_hash) {
                (b.start_hash, a.end_hash)
            } else {
                return Err(KinesisError::InvalidArgument(format!(
                    "Shards {shard} and {adjacent} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                    nimbus_core::ACCOUNT_ID
                )));
            };
            let close = Self::take_seq(tx, s.id, 1)?;
            for id in [shard, adjacent] {
                tx.execute(
                    "UPDATE shards SET end_seq = ?3 WHERE stream_id = ?1 AND shard_id = ?2",
                    params![s.id, id, close],
                )?;
            }
            Self::add_shard(tx, s.id, range, Some(shard), Some(adjacent), close + 1)?;
            Ok(())
        })
    }

    /// Close every open shard and open `target` new ones splitting the space
    /// evenly; each new shard's parent is the old shard holding its starting hash
    /// key and, when its range spans two old shards, the other is its adjacent
    /// parent.
    pub fn reshard(&self, name: &str, target: u32) -> Result<u32> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            let open: Vec<ShardRow> = Self::shards_in(tx, s.id)?
                .into_iter()
                .filter(ShardRow::is_open)
                .collect();
            let current = open.len() as u32;
            let close = Self::take_seq(tx, s.id, 1)?;
            for sh in &open {
                tx.execute(
                    "UPDATE shards SET end_seq = ?3 WHERE stream_id = ?1 AND shard_id = ?2",
                    params![s.id, sh.shard_id, close],
                )?;
            }
            for range in even_ranges(target) {
                let overlapping: Vec<&ShardRow> = open
                    .iter()
                    .filter(|o| o.start_hash <= range.1 && range.0 <= o.end_hash)
                    .collect();
                let parent = overlapping.first().map(|o| o.shard_id.as_str());
                let adjacent = overlapping.get(1).map(|o| o.shard_id.as_str());
                Self::add_shard(tx, s.id, range, parent, adjacent, close + 1)?;
            }
            Ok(current)
        })
    }

    pub fn set_retention(&self, name: &str, hours: i64, increase: bool) -> Result<()> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            if increase && hours < s.retention_hours {
                return Err(KinesisError::InvalidArgument(format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be shorter \
                     than existing retention period ({} hours). Use DecreaseRetentionPeriod API.",
                    s.retention_hours
                )));
            }
            if !increase && hours > s.retention_hours {
                return Err(KinesisError::InvalidArgument(format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be longer \
                     than existing retention period ({} hours). Use IncreaseRetentionPeriod API.",
                    s.retention_hours
                )));
            }
            tx.execute(
                "UPDATE streams SET retention_hours = ?2 WHERE id = ?1",
                params![s.id, hours],
            )?;
            Ok(())
        })
    }

    /// Delete records older than each stream's retention; returns how many.
    pub fn trim(&self, now_ms: i64) -> Result<usize> {
        self.tx(|tx| {
            Ok(tx.execute(
                "DELETE FROM records WHERE rowid IN (
                    SELECT r.rowid FROM records r JOIN streams s ON s.id = r.stream_id
                    WHERE r.arrival_ms < ?1 - s.retention_hours * 3600000)",
                [now_ms],
            )?)
        })
    }

    pub fn update_stream<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut StreamRow) -> Result<T>,
    ) -> Result<T> {
        self.tx(|tx| {
            let mut s = Self::stream_in(tx, name)?;
            let out = f(&mut s)?;
            tx.execute(
                "UPDATE streams SET mode = ?2, tags = ?3, encryption = ?4, key_id = ?5, metrics = ?6 WHERE id = ?1",
                params![
                    s.id,
                    s.mode,
                    serde_json::to_string(&s.tags).unwrap_or_default(),
                    s.encryption,
                    s.key_id,
                    serde_json::to_string(&s.metrics).unwrap_or_default()
                ],
            )?;
            Ok(out)
        })
    }

    pub fn register_consumer(
        &self,
        name: &str,
        consumer: &str,
        arn_of: impl FnOnce(i64) -> String,
        now_ms: i64,
    ) -> Result<ConsumerRow> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM consumers WHERE stream_id = ?1 AND name = ?2",
                    params![s.id, consumer],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if exists {
                return Err(KinesisError::InUse(format!(
                    "Consumer {consumer} under stream {name} already exists for account {}.",
                    nimbus_core::ACCOUNT_ID
                )));
            }
            let row = ConsumerRow {
                name: consumer.to_string(),
                arn: arn_of(now_ms / 1000),
                created_ms: now_ms,
            };
            tx.execute(
                "INSERT INTO consumers(stream_id, name, arn, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![s.id, row.name, row.arn, row.created_ms],
            )?;
            Ok(row)
        })
    }

    pub fn consumers(&self, name: &str) -> Result<Vec<ConsumerRow>> {
        self.with(|c| {
            let s = Self::stream_in(c, name)?;
            let mut st = c.prepare(
                "SELECT name, arn, created_ms FROM consumers WHERE stream_id = ?1 ORDER BY name",
            )?;
            let rows = st
                .query_map([s.id], |r| {
                    Ok(ConsumerRow {
                        name: r.get(0)?,
                        arn: r.get(1)?,
                        created_ms: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    pub fn deregister_consumer(&self, name: &str, consumer: &str) -> Result<bool> {
        self.tx(|tx| {
            let s = Self::stream_in(tx, name)?;
            Ok(tx.execute(
                "DELETE FROM consumers WHERE stream_id = ?1 AND name = ?2",
                params![s.id, consumer],
            )? > 0)
        })
    }

    /// How many records each stream holds (for metrics).
    pub fn record_counts(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT s.name, (SELECT count(*) FROM records r WHERE r.stream_id = s.id) FROM streams s ORDER BY s.name",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

fn open_shard<'a>(shards: &'a [ShardRow], id: &str, stream: &str) -> Result<&'a ShardRow> {
    let sh = shards.iter().find(|s| s.shard_id == id).ok_or_else(|| {
        KinesisError::NotFound(format!(
            "Could not find shard {id} in stream {stream} under account {}.",
            nimbus_core::ACCOUNT_ID
        ))
    })?;
    if !sh.is_open() {
        return Err(KinesisError::InvalidArgument(format!(
            "Shard {id} in stream {stream} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
            nimbus_core::ACCOUNT_ID
        )));
    }
    Ok(sh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("kinesis.db")).unwrap();
        (d, s)
    }

    fn rec(pk: &str) -> NewRecord {
        NewRecord {
            partition_key: pk.into(),
            explicit_hash_key: None,
            data: pk.as_bytes().to_vec(),
        }
    }

    #[test]
    fn ranges_cover_the_space_as_kinesis_splits_it() {
        assert_eq!(even_ranges(1), vec![(0, HASH_MAX)]);
        let two = even_ranges(2);
        assert_eq!(two[0], (0, (1u128 << 127) - 1));
        assert_eq!(two[1], (1u128 << 127, HASH_MAX));
        let three = even_ranges(3);
        assert_eq!(
            three[1].0.to_string(),
            "113427455640312821154458202477256070485"
        );
        for w in three.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }

    #[test]
    fn sequence_numbers_round_trip_and_order() {
        let a = seq_string(9);
        let b = seq_string(10);
        assert_eq!(a.len(), 56);
        assert!(a < b);
        assert_eq!(parse_seq(&b), Some(10));
        assert_eq!(parse_seq("12"), None);
        assert_eq!(
            nimbus_triggers::esm::cmp_sequence(&a, &b),
            std::cmp::Ordering::Less
        );
    }

    #[test]
    fn partition_keys_hash_by_md5() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn split_routes_new_records_to_children_and_keeps_lineage() {
        let (_d, s) = store();
        s.create_stream("s", 1, "PROVISIONED", &BTreeMap::new(), 1000)
            .unwrap();
        let put = s.put("s", &[rec("a")], 1000).unwrap();
        assert_eq!(put[0].0, "shardId-000000000000");
        s.split("s", "shardId-000000000000", 1u128 << 127).unwrap();
        let (_, shards) = s.stream_and_shards("s").unwrap();
        assert_eq!(shards.len(), 3);
        assert!(!shards[0].is_open());
        assert_eq!(shards[1].parent.as_deref(), Some("shardId-000000000000"));
        assert_eq!(shards[2].start_hash, 1u128 << 127);
        // "a" hashes into the lower half.
        let put2 = s.put("s", &[rec("a")], 1000).unwrap();
        assert_eq!(put2[0].0, "shardId-000000000001");
        assert!(put2[0].1 > shards[0].end_seq.unwrap());
        // The closed parent can no longer be split.
        assert!(matches!(
            s.split("s", "shardId-000000000000", 5),
            Err(KinesisError::InvalidArgument(_))
        ));
        s.merge("s", "shardId-000000000001", "shardId-000000000002")
            .unwrap();
        let (_, shards) = s.stream_and_shards("s").unwrap();
        let merged = shards.last().unwrap();
        assert_eq!((merged.start_hash, merged.end_hash), (0, HASH_MAX));
        assert_eq!(
            merged.adjacent_parent.as_deref(),
            Some("shardId-000000000002")
        );
    }

    #[test]
    fn trimming_drops_only_records_past_retention() {
        let (_d, s) = store();
        s.create_stream("s", 1, "PROVISIONED", &BTreeMap::new(), 0)
            .unwrap();
        s.put("s", &[rec("old")], 0).unwrap();
        let hour = 3_600_000;
        s.put("s", &[rec("new")], 20 * hour).unwrap();
        assert_eq!(s.trim(24 * hour + 1).unwrap(), 1);
        let st = s.stream("s").unwrap();
        let (left, more) = s
            .read(st.id, "shardId-000000000000", 0, 10, 1 << 20)
            .unwrap();
        assert!(!more);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].partition_key, "new");
    }
}

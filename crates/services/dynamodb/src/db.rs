//! The table store: one SQLite file `<data>/dynamodb.db` (WAL, `synchronous=FULL`:
//! an acknowledged write is on disk).
//!
//! Writes are group-committed: one writer thread owns the write connection and
//! runs the waiting write requests one after the other, each in its own SAVEPOINT
//! of one shared transaction, then commits once (one fsync) and answers them all
//! ([`Store::write`]). Reads use pooled reader connections beside it (WAL).
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
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use std::cell::Cell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

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
///
/// Writes go through one writer thread that owns the write connection (group
/// commit, see [`Store::write`]); reads run on pooled reader connections beside it
/// (WAL), each in its own snapshot of what is committed.
pub struct Store {
    /// Jobs for the writer thread.
    writer: mpsc::Sender<Job>,
    /// Idle reader connections: WAL lets reads run beside the writer, each in
    /// its own snapshot.
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    shared: Arc<Shared>,
    /// Bumped after every commit that appended stream records.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    pub region: String,
    pub account_id: String,
}

/// What the writer thread updates after a commit and the front-ends read.
struct Shared {
    tables: Mutex<HashMap<String, Arc<TableMeta>>>,
    /// Write requests handed to the writer and not yet taken by it.
    queued: AtomicI64,
    /// Commits (fsyncs) of the writer, and the write requests they carried.
    commits: AtomicU64,
    writes: AtomicU64,
}

/// Counters of the group commit, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Transactions committed (each one fsync).
    pub commits: u64,
    /// Write requests run (each in its own savepoint), committed or rolled back.
    pub writes: u64,
    /// Write requests handed to the writer and not yet started.
    pub queued: usize,
}

/// A storage failure (a bug or a broken disk): answered as 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Open(String),
    /// The batch this write was part of could not be committed (nothing of it is
    /// on disk), or the writer thread is gone.
    #[error("commit: {0}")]
    Commit(String),
}

/// Most write requests one transaction (one fsync) carries.
const MAX_BATCH_WRITES: usize = 128;
/// Most item bytes one transaction carries before it is committed.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

impl Store {
    pub fn open(path: &Path, region: &str, account_id: &str) -> Result<Store, StoreError> {
        let conn = nimbus_store::open_migrated(path, &SCHEMA)
            .map_err(|e| StoreError::Open(e.to_string()))?;
        let shared = Arc::new(Shared {
            tables: Mutex::new(load_tables(&conn)?),
            queued: AtomicI64::new(0),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let changes = Arc::new(tokio::sync::watch::channel(0).0);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            shared: shared.clone(),
            changes: changes.clone(),
            region: region.to_string(),
        };
        std::thread::Builder::new()
            .name("dynamodb-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Open(format!("writer thread: {e}")))?;
        Ok(Store {
            writer: tx,
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
            shared,
            changes,
            region: region.to_string(),
            account_id: account_id.to_string(),
        })
    }

    fn tables_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TableMeta>>> {
        self.shared.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn table(&self, name: &str) -> Option<Arc<TableMeta>> {
        self.tables_map().get(name).cloned()
    }

    pub fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tables_map().keys().cloned().collect();
        v.sort();
        v
    }

    pub fn tables(&self) -> Vec<Arc<TableMeta>> {
        let mut v: Vec<Arc<TableMeta>> = self.tables_map().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The group-commit counters.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
            queued: self.shared.queued.load(Ordering::Relaxed).max(0) as usize,
        }
    }

    /// Run `f` as one all-or-nothing write, and return once it is on disk.
    ///
    /// `f` runs on the writer thread inside its own SAVEPOINT of a transaction
    /// that the writer shares between the write requests waiting for it (group
    /// commit): requests run one after the other in arrival order, each seeing
    /// what the ones before it wrote; a request whose `f` returns `Err` (or
    /// panics) is rolled back to its savepoint without touching the others. The
    /// writer commits (one fsync) when no request is waiting or the batch is
    /// full, and only then does any of them return. A lone request is committed
    /// at once. When the commit fails, every request of the batch gets the error
    /// and nothing of the batch is on disk.
    ///
    /// Table metadata written with [`Tx::save_meta`] becomes visible after
    /// commit; stream watchers are woken when records were appended.
    ///
    /// Blocks the calling thread: call it from a blocking thread, never from an
    /// async task.
    pub fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send,
        T: Send,
        E: From<StoreError> + Send,
    {
        if ON_WRITER.with(Cell::get) {
            // A write from inside a write would wait for itself.
            return Err(StoreError::Commit("a write cannot start another write".into()).into());
        }
        let mut slot = Slot {
            f: Some(f),
            out: None,
        };
        let (done_tx, done_rx) = mpsc::sync_channel::<()>(1);
        let ptr: *mut (dyn Work + '_) = &mut slot;
        // SAFETY: the writer thread uses this pointer only between receiving the
        // job and sending (or dropping) `done`; this function does not return, and
        // `slot` stays where it is, until `done_rx.recv()` below has returned, which
        // happens only after the `done` sender is used or dropped — every path of
        // the writer (answer, thread exit, panic unwinding, the job never received)
        // ends the job by consuming or dropping it, and `Job` has no other use of
        // the pointer. Erasing the lifetime is what lets `f` borrow from this
        // stack frame, as in a scoped thread. `Slot` is `Send` (`F`, `T`, `E` are).
        let ptr: *mut (dyn Work + 'static) = unsafe { std::mem::transmute(ptr) };
        let job = Job {
            work: WorkPtr(ptr),
            done: done_tx,
        };
        if self.writer.send(job).is_err() {
            return Err(StoreError::Commit("the writer thread has stopped".into()).into());
        }
        // Counted once in the channel (the writer may take it first: the count
        // is signed and only settles between batches).
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        if done_rx.recv().is_err() {
            // The writer died with this job: its transaction was not committed.
            return Err(StoreError::Commit("the writer thread has stopped".into()).into());
        }
        match slot.out.take() {
            Some(Ok(r)) => r,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Err(StoreError::Commit("write was not run".into()).into()),
        }
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

fn load_tables(conn: &Connection) -> Result<HashMap<String, Arc<TableMeta>>, StoreError> {
    let mut stmt = conn.prepare("SELECT meta FROM tables")?;
    let metas: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut t = HashMap::new();
    for m in metas {
        if let Ok(m) = serde_json::from_str::<TableMeta>(&m) {
            t.insert(m.name.clone(), Arc::new(m));
        }
    }
    Ok(t)
}

thread_local! {
    /// Set on the writer thread.
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// One write request as the writer thread sees it: its closure and result slot
/// (type-erased, on the requester's stack) and the signal that it is finished.
struct Job {
    work: WorkPtr,
    done: mpsc::SyncSender<()>,
}

struct WorkPtr(*mut (dyn Work + 'static));

// SAFETY: the pointee is a `Slot` whose closure and results are `Send`; the
// pointer is dereferenced only by the writer thread while the requester waits.
unsafe impl Send for WorkPtr {}

impl Job {
    fn work(&mut self) -> &mut (dyn Work + 'static) {
        // SAFETY: see `Store::write`: the requester keeps the slot alive and does
        // not touch it until `done` is sent or dropped, which consumes this job.
        unsafe { &mut *self.work.0 }
    }

    /// Wake the requester; the slot is not touched again.
    fn finish(self) {
        let _ = self.done.send(());
    }
}

/// A write request's closure and its outcome.
trait Work: Send {
    /// Run the closure; `true` when it returned `Ok`.
    fn run(&mut self, tx: &mut Tx<'_>) -> bool;
    /// The batch was not committed: a request that succeeded answers this error.
    fn fail(&mut self, e: StoreError);
}

struct Slot<F, T, E> {
    f: Option<F>,
    out: Option<std::thread::Result<Result<T, E>>>,
}

impl<F, T, E> Work for Slot<F, T, E>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(tx)));
        let ok = matches!(r, Ok(Ok(_)));
        self.out = Some(r);
        ok
    }

    fn fail(&mut self, e: StoreError) {
        // A request that failed (or panicked) on its own wrote nothing and keeps its
        // own answer; one that succeeded, or never ran, gets the batch's error.
        if matches!(self.out, None | Some(Ok(Ok(_)))) {
            self.out = Some(Ok(Err(E::from(e))));
        }
    }
}

/// The writer thread: owns the write connection.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    region: String,
}

/// What the committed requests of a batch changed besides rows.
#[derive(Default)]
struct BatchEffects {
    /// Table metadata saved or dropped, in commit order.
    tables: Vec<MetaChange>,
    records: usize,
    bytes: usize,
}

impl Writer {
    /// Take the waiting requests, run each in its own savepoint of one
    /// transaction, commit once and answer them all; until every `Store` is gone.
    fn run(self, rx: mpsc::Receiver<Job>) {
        ON_WRITER.with(|w| w.set(true));
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH_WRITES);
        while let Ok(first) = rx.recv() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            let mut effects = BatchEffects::default();
            let mut broken: Option<String> = None;
            if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
                broken = Some(format!("begin: {e}"));
                batch.push(first);
            } else {
                let mut next = Some(first);
                while let Some(mut job) = next.take() {
                    if let Err(e) = self.run_one(&mut job, &mut effects) {
                        broken = Some(e);
                    }
                    batch.push(job);
                    if broken.is_some()
                        || batch.len() >= MAX_BATCH_WRITES
                        || effects.bytes >= MAX_BATCH_BYTES
                    {
                        break;
                    }
                    if let Ok(j) = rx.try_recv() {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                        next = Some(j);
                    }
                }
                if broken.is_none() {
                    if let Err(e) = self.conn.execute_batch("COMMIT") {
                        broken = Some(e.to_string());
                    }
                }
            }
            self.shared
                .writes
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            match broken {
                None => {
                    self.shared.commits.fetch_add(1, Ordering::Relaxed);
                    self.publish(effects);
                }
                Some(e) => {
                    if !self.conn.is_autocommit() {
                        let _ = self.conn.execute_batch("ROLLBACK");
                    }
                    tracing::error!(error = %e, writes = batch.len(), "dynamodb batch not committed");
                    for job in batch.iter_mut() {
                        job.work().fail(StoreError::Commit(e.clone()));
                    }
                }
            }
            tracing::trace!(writes = batch.len(), "dynamodb group commit");
            for job in batch.drain(..) {
                job.finish();
            }
        }
    }

    /// Run one request in its own savepoint. `Err` when the transaction itself
    /// is broken (the batch must be rolled back), not when the request failed.
    fn run_one(&self, job: &mut Job, effects: &mut BatchEffects) -> Result<(), String> {
        self.conn
            .execute_batch("SAVEPOINT w")
            .map_err(|e| format!("savepoint: {e}"))?;
        let mut tx = Tx {
            tx: &self.conn,
            tables: Vec::new(),
            records: 0,
            bytes: 0,
            region: &self.region,
        };
        let ok = job.work().run(&mut tx);
        let Tx {
            tables,
            records,
            bytes,
            ..
        } = tx;
        if self.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an I/O error).
            return Err("the transaction was rolled back by the database".into());
        }
        if ok {
            self.conn
                .execute_batch("RELEASE w")
                .map_err(|e| format!("release: {e}"))?;
            effects.tables.extend(tables);
            effects.records += records;
            effects.bytes += bytes;
        } else {
            self.conn
                .execute_batch("ROLLBACK TO w; RELEASE w")
                .map_err(|e| format!("rollback to savepoint: {e}"))?;
        }
        Ok(())
    }

    /// After a commit: table metadata becomes visible, stream watchers wake.
    fn publish(&self, effects: BatchEffects) {
        if !effects.tables.is_empty() {
            let mut t = self.shared.tables.lock().unwrap_or_else(|p| p.into_inner());
            // In commit order: a table created and deleted in one batch is gone.
            for c in effects.tables {
                match c {
                    MetaChange::Saved(m) => {
                        t.insert(m.name.clone(), Arc::new(*m));
                    }
                    MetaChange::Dropped(name) => {
                        t.remove(&name);
                    }
                }
            }
        }
        if effects.records > 0 {
            self.changes.send_modify(|v| *v += 1);
        }
    }
}

/// A table's metadata saved or dropped by a write.
enum MetaChange {
    Saved(Box<TableMeta>),
    Dropped(String),
}

/// Idle reader connections kept open.
const READER_POOL: usize = 8;

/// A write request's view of the batch transaction (inside its own savepoint).
pub struct Tx<'a> {
    pub tx: &'a Connection,
    tables: Vec<MetaChange>,
    records: usize,
    bytes: usize,
    region: &'a str,
}

impl Tx<'_> {
    pub fn save_meta(&mut self, m: &TableMeta) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO tables(name, tid, meta) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET meta = excluded.meta",
            params![m.name, m.tid, serde_json::to_string(m).unwrap_or_default()],
        )?;
        self.tables.push(MetaChange::Saved(Box::new(m.clone())));
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
        self.tables.push(MetaChange::Dropped(m.name.clone()));
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
        get_item(self.tx, t, key)
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
                let size = item_size(item);
                self.bytes += size;
                self.tx
                    .prepare_cached(
                        "INSERT INTO items(tid, hk, rk, h32, item, size, expires) VALUES (?1,?2,?3,?4,?5,?6,?7)
                         ON CONFLICT(tid, hk, rk) DO UPDATE SET item = excluded.item, size = excluded.size,
                         expires = excluded.expires",
                    )?
                    .execute(params![
                        t.tid,
                        hk,
                        rk,
                        h32(&hk),
                        item_to_json(item).to_string(),
                        size as i64,
                        expires
                    ])?;
            }
            None => {
                self.tx
                    .prepare_cached("DELETE FROM items WHERE tid = ?1 AND hk = ?2 AND rk = ?3")?
                    .execute(params![t.tid, hk, rk])?;
            }
        }
        if !t.gsis.is_empty() || !t.lsis.is_empty() {
            self.tx
                .prepare_cached("DELETE FROM idx WHERE tid = ?1 AND hk = ?2 AND rk = ?3")?
                .execute(params![t.tid, hk, rk])?;
            if let Some(item) = new {
                for ix in t.gsis.iter().chain(&t.lsis) {
                    index_entry(self.tx, t, ix, item, &hk, &rk)?;
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
                self.tx
                    .prepare_cached(
                        "INSERT INTO stream_records(stream_arn, created_ms, record) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![s.arn, nimbus_core::now_ms(), rec.to_string()])?;
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
                index_entry(self.tx, t, ix, &item, &hk, &rk)?;
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
    tx.prepare_cached(
        "INSERT OR REPLACE INTO idx(tid, iname, ihk, irk, hk, rk) VALUES (?1,?2,?3,?4,?5,?6)",
    )?
    .execute(params![_t.tid, ix.name, ih.key_bytes(), irk, hk, rk])?;
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
        .prepare_cached("SELECT item FROM items WHERE tid = ?1 AND hk = ?2 AND rk = ?3")?
        .query_row(params![t.tid, hk, rk], |r| r.get(0))
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

//! Where S3 keeps things: metadata in `<data>/s3.db` (SQLite, WAL,
//! `synchronous=FULL`), object bytes in content-addressed files under
//! `<data>/s3/blobs/<2 hex>/<sha256 hex>` — except small bodies (up to
//! [`SMALL_BLOB`]), which are kept in `s3.db` itself (table `small_blobs`, keyed
//! by the same SHA-256) and committed with the row that references them: one
//! fsync per small PUT instead of three (file, directory, database).
//!
//! A body is streamed into `<data>/s3/tmp/<uuid>` while its SHA-256 (the blob's
//! name), MD5 (the ETag) and any flexible checksum are computed, fsynced, and only
//! then linked into place and referenced by a row, under the connection's lock so
//! that a blob is never reclaimed between being linked and being referenced. A
//! blob no row references any more is removed in the same critical section that
//! dropped its last reference. Keys never become file paths: only hex digests do.

use crate::error::{internal, S3Error};
use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest as _, Md5};
use nimbus_protocol::{ChecksumAlgorithm, Hasher};
use nimbus_store::migrate::{Migration, Schema, Step};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const SCHEMA: Schema = Schema {
    file: "s3.db",
    migrations: &[
        Migration {
            name: "s3: buckets, objects, multipart uploads and the notification outbox",
            step: Step::Sql(
                "CREATE TABLE buckets(
                name TEXT PRIMARY KEY,
                region TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                notification TEXT,
                config TEXT NOT NULL DEFAULT '{}'
             );
             CREATE TABLE objects(
                bucket TEXT NOT NULL,
                key TEXT NOT NULL,
                blob TEXT NOT NULL,
                size INTEGER NOT NULL,
                etag TEXT NOT NULL,
                modified_ms INTEGER NOT NULL,
                meta TEXT NOT NULL,
                PRIMARY KEY(bucket, key)
             ) WITHOUT ROWID;
             CREATE INDEX objects_blob ON objects(blob);
             CREATE TABLE uploads(
                id TEXT PRIMARY KEY,
                bucket TEXT NOT NULL,
                key TEXT NOT NULL,
                initiated_ms INTEGER NOT NULL,
                meta TEXT NOT NULL
             );
             CREATE INDEX uploads_bucket ON uploads(bucket, key, initiated_ms);
             CREATE TABLE parts(
                upload_id TEXT NOT NULL,
                part_number INTEGER NOT NULL,
                blob TEXT NOT NULL,
                size INTEGER NOT NULL,
                etag TEXT NOT NULL,
                checksum TEXT,
                modified_ms INTEGER NOT NULL,
                PRIMARY KEY(upload_id, part_number)
             ) WITHOUT ROWID;
             CREATE INDEX parts_blob ON parts(blob);
             CREATE TABLE outbox(
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                target TEXT NOT NULL,
                body TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
            ),
        },
        Migration {
            name: "s3: versioning (noncurrent versions and delete markers)",
            step: Step::Sql(
                "ALTER TABLE buckets ADD COLUMN versioning TEXT;
             ALTER TABLE objects ADD COLUMN version_id TEXT;
             CREATE TABLE versions(
                bucket TEXT NOT NULL,
                key TEXT NOT NULL,
                version_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                blob TEXT,
                size INTEGER NOT NULL DEFAULT 0,
                etag TEXT NOT NULL DEFAULT '',
                modified_ms INTEGER NOT NULL,
                meta TEXT NOT NULL DEFAULT '{}',
                delete_marker INTEGER NOT NULL,
                archived_ms INTEGER NOT NULL,
                PRIMARY KEY(bucket, key, version_id)
             ) WITHOUT ROWID;
             CREATE INDEX versions_blob ON versions(blob);
             CREATE INDEX versions_seq ON versions(bucket, key, seq);",
            ),
        },
        Migration {
            name: "s3: small bodies kept in the database",
            step: Step::Sql(
                "CREATE TABLE small_blobs(
                sha TEXT PRIMARY KEY,
                data BLOB NOT NULL
             );",
            ),
        },
    ],
};

/// Bodies up to this size are kept in `s3.db` instead of a file of their own.
pub const SMALL_BLOB: usize = 128 << 10;

/// An open blob: its file, or a small body read from `s3.db`.
pub enum Blob {
    File(std::fs::File),
    Small(std::io::Cursor<Bytes>),
}

impl std::io::Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Blob::File(f) => f.read(buf),
            Blob::Small(c) => c.read(buf),
        }
    }
}

impl std::io::Seek for Blob {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        match self {
            Blob::File(f) => f.seek(pos),
            Blob::Small(c) => c.seek(pos),
        }
    }
}

/// What is kept of an object besides its bytes: content headers, user metadata,
/// checksum.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `x-amz-meta-*`, names lower-cased without the prefix.
    #[serde(default)]
    pub user: BTreeMap<String, String>,
    /// The flexible checksum: algorithm name (`CRC32`…) and base64 value
    /// (`<value>-N` for a composite multipart checksum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<(String, String)>,
    /// Number of parts of a multipart object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// Tags (`x-amz-tagging` / PutObjectTagging).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// One object row.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub blob: String,
    pub size: u64,
    /// The ETag without quotes.
    pub etag: String,
    pub modified_ms: i64,
    pub meta: ObjectMeta,
    /// `None` in a bucket that never had versioning; `null` for the null version.
    pub version_id: Option<String>,
}

/// A blob written to `tmp/` and fsynced, or a small body held in memory; not
/// linked yet.
#[derive(Debug)]
pub struct Staged {
    pub tmp: PathBuf,
    /// A small body (≤ [`SMALL_BLOB`]): no file was written, [`Store::link`]
    /// stores it in `s3.db`.
    pub small: Option<Bytes>,
    pub sha256: String,
    pub md5: [u8; 16],
    pub size: u64,
    /// The flexible checksum computed on the way, if one was asked for.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
}

/// The store: one connection, the blob directory, and the writer that
/// group-commits [`Store::tx`] requests.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    root: PathBuf,
    writer: std::sync::mpsc::Sender<Job>,
    /// Blob files released by the transaction in progress: removed once it has
    /// committed, and only if still unreferenced then ([`Store::settle`]).
    released: Arc<Mutex<Vec<String>>>,
}

/// One [`Store::tx`] request as the writer runs it: the caller's closure, run
/// inside its own savepoint; `true` when it succeeded, and what answers the
/// caller once the batch's commit is known (`Some(error)` when it failed).
type Job = Box<dyn FnOnce(&Transaction<'_>, &Store) -> (bool, Answer) + Send>;
type Answer = Box<dyn FnOnce(Option<String>) + Send>;

/// Most requests one transaction (one fsync) carries.
const MAX_BATCH: usize = 64;

impl Store {
    pub fn open(data_dir: &Path) -> Result<Self, String> {
        let root = data_dir.join("s3");
        for d in ["blobs", "tmp"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| format!("{}: {e}", d))?;
        }
        let conn = nimbus_store::open_migrated(&data_dir.join("s3.db"), &SCHEMA)
            .map_err(|e| e.to_string())?;
        let (writer, jobs) = std::sync::mpsc::channel::<Job>();
        let store = Self {
            conn: Arc::new(Mutex::new(conn)),
            root,
            writer,
            released: Arc::default(),
        };
        store.recover();
        // The writer holds a Store without a live sender of its own: it stops
        // when the last Store (and so the last sender) is dropped.
        let (dead, _) = std::sync::mpsc::channel::<Job>();
        let writer_store = Self {
            writer: dead,
            ..store.clone()
        };
        std::thread::Builder::new()
            .name("s3-writer".into())
            .spawn(move || writer_store.write_batches(jobs))
            .map_err(|e| format!("s3 writer thread: {e}"))?;
        Ok(store)
    }

    /// The writer: takes the waiting [`Store::tx`] requests, runs each in its own
    /// savepoint of one transaction, commits once (one fsync) and then answers
    /// them all. A lone request commits at once.
    fn write_batches(self, jobs: std::sync::mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut answers: Vec<Answer> = Vec::new();
            let outcome: Result<(), String> = self.with(|c| {
                let batch = |c: &mut Connection| -> Result<(), String> {
                    let tx = c.transaction().map_err(|e| e.to_string())?;
                    let mut next = Some(first);
                    while let Some(job) = next.take() {
                        tx.execute_batch("SAVEPOINT s3w")
                            .map_err(|e| format!("savepoint: {e}"))?;
                        let (ok, answer) = job(&tx, &self);
                        answers.push(answer);
                        if tx.is_autocommit() {
                            return Err("the transaction was rolled back by the database".into());
                        }
                        let end = if ok {
                            "RELEASE s3w"
                        } else {
                            "ROLLBACK TO s3w; RELEASE s3w"
                        };
                        tx.execute_batch(end).map_err(|e| format!("{end}: {e}"))?;
                        if answers.len() < MAX_BATCH {
                            next = jobs.try_recv().ok();
                        }
                    }
                    tx.commit().map_err(|e| e.to_string())
                };
                let outcome = batch(c);
                self.settle(c, outcome.is_ok());
                outcome
            });
            if let Err(e) = &outcome {
                tracing::error!(error = %e, requests = answers.len(), "s3 batch not committed");
            }
            let failed = outcome.err();
            for answer in answers {
                answer(failed.clone());
            }
        }
    }

    /// After a crash: staged files nobody will link, and blobs linked whose row
    /// never committed, are removed.
    fn recover(&self) {
        if let Ok(rd) = std::fs::read_dir(self.root.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = self.with(|c| {
            let Ok(dirs) = std::fs::read_dir(self.root.join("blobs")) else {
                return Ok(());
            };
            for d in dirs.flatten() {
                let Ok(files) = std::fs::read_dir(d.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if !blob_referenced(c, &name)? {
                        tracing::info!(blob = %name, "s3: removing unreferenced blob");
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
            // Small bodies are committed with their rows and dropped with their
            // last reference; this only guards against an older bug's leftovers.
            c.execute(
                "DELETE FROM small_blobs WHERE NOT EXISTS(SELECT 1 FROM objects WHERE blob = sha)
                   AND NOT EXISTS(SELECT 1 FROM parts WHERE blob = sha)
                   AND NOT EXISTS(SELECT 1 FROM versions WHERE blob = sha)",
                [],
            )?;
            Ok::<_, rusqlite::Error>(())
        });
    }

    /// Run `f` with the connection locked.
    pub fn with<T, E>(&self, f: impl FnOnce(&mut Connection) -> Result<T, E>) -> Result<T, E> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }

    /// Run `f` as one all-or-nothing change and answer once it is on disk.
    ///
    /// Group commit: `f` runs on the writer thread inside its own savepoint of a
    /// transaction shared with the other requests waiting then, in arrival
    /// order, each seeing what the ones before it wrote; an `Err` rolls back its
    /// own savepoint only. The writer commits once (one fsync) for the batch and
    /// only then answers; when that commit fails every request of the batch gets
    /// the error and nothing of it is on disk (files `f` removed with
    /// [`Store::release`] stay removed, as with a single failed commit).
    pub async fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &Store) -> Result<T, S3Error> + Send + 'static,
    ) -> Result<T, S3Error> {
        let (send, recv) = tokio::sync::oneshot::channel::<Result<T, S3Error>>();
        let job: Job = Box::new(move |tx, store| {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tx, store)))
                .unwrap_or_else(|_| Err(internal("an S3 write panicked")));
            let ok = out.is_ok();
            let answer: Answer = Box::new(move |failed: Option<String>| {
                let _ = send.send(match failed {
                    Some(e) if ok => Err(internal(format!("commit: {e}"))),
                    _ => out,
                });
            });
            (ok, answer)
        });
        self.writer
            .send(job)
            .map_err(|_| internal("the S3 writer has stopped"))?;
        recv.await
            .map_err(|_| internal("the S3 writer stopped before answering"))?
    }

    /// Read-only work on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, S3Error> + Send + 'static,
    ) -> Result<T, S3Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.with(|c| f(c)))
            .await
            .map_err(internal)?
    }

    pub fn blob_path(&self, sha: &str) -> PathBuf {
        self.root
            .join("blobs")
            .join(sha.get(..2).unwrap_or("00"))
            .join(sha)
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Stream `body` into a staged file, hashing on the way; at most `max` bytes
    /// (`EntityTooLarge` past it). The file is fsynced before this returns.
    pub async fn stage(
        &self,
        body: impl futures_util::Stream<Item = Result<Bytes, S3Error>> + Send,
        checksum: Option<ChecksumAlgorithm>,
        max: u64,
    ) -> Result<Staged, S3Error> {
        let tmp = self.tmp_path();
        let out = stage_into(&tmp, body, checksum, max).await;
        if out.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        out.map(|(sha256, md5, size, checksum, small)| Staged {
            tmp,
            small,
            sha256,
            md5,
            size,
            checksum,
        })
    }

    /// Link a staged blob into place (from inside [`Store::tx`], whose
    /// transaction `tx` is): a small body becomes a row committed with the
    /// object's; a file is renamed into place under the connection lock. If the
    /// same content is already stored the staged copy is dropped.
    pub fn link(&self, tx: &Connection, staged: &Staged) -> Result<(), S3Error> {
        if let Some(data) = &staged.small {
            tx.execute(
                "INSERT OR IGNORE INTO small_blobs(sha, data) VALUES (?1, ?2)",
                params![staged.sha256, data.as_ref()],
            )
            .map_err(internal)?;
            return Ok(());
        }
        let dest = self.blob_path(&staged.sha256);
        if dest.exists() {
            let _ = std::fs::remove_file(&staged.tmp);
            return Ok(());
        }
        let dir = dest.parent().expect("blob path has a parent");
        std::fs::create_dir_all(dir).map_err(internal)?;
        std::fs::rename(&staged.tmp, &dest).map_err(internal)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(internal)?;
        Ok(())
    }

    /// Drop `blob` if no row references it any more (inside a transaction of
    /// this store): a small one's row goes with the transaction; a file is only
    /// noted, and removed by [`Store::settle`] once the transaction has committed
    /// — a rolled-back or failed commit keeps it.
    pub fn release(&self, tx: &Connection, blob: &str) -> Result<(), S3Error> {
        if !blob_referenced(tx, blob).map_err(internal)? {
            tx.execute("DELETE FROM small_blobs WHERE sha = ?1", [blob])
                .map_err(internal)?;
            // A file too when the blob is one (or was written before small
            // bodies moved into the database).
            self.released
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(blob.to_string());
        }
        Ok(())
    }

    /// After a transaction of this store (still holding the connection, `c`):
    /// when it committed, remove the files it released that no row references
    /// now (a later request of the same batch may have linked the same content
    /// again); otherwise forget them.
    pub fn settle(&self, c: &Connection, committed: bool) {
        let released =
            std::mem::take(&mut *self.released.lock().unwrap_or_else(|p| p.into_inner()));
        if !committed {
            return;
        }
        for blob in released {
            if !blob_referenced(c, &blob).unwrap_or(true) {
                let _ = std::fs::remove_file(self.blob_path(&blob));
            }
        }
    }

    /// Drop a staged file that will not be linked.
    pub fn discard(&self, staged: &Staged) {
        if staged.small.is_none() {
            let _ = std::fs::remove_file(&staged.tmp);
        }
    }

    /// Open the bytes of `blob` (on a connection of this store, under its lock:
    /// the blob cannot be reclaimed in between, and an open file outlives its
    /// unlinking).
    pub fn open_blob(&self, c: &Connection, blob: &str) -> Result<Blob, S3Error> {
        let small: Option<Vec<u8>> = c
            .query_row("SELECT data FROM small_blobs WHERE sha = ?1", [blob], |r| {
                r.get(0)
            })
            .optional()
            .map_err(internal)?;
        match small {
            Some(data) => Ok(Blob::Small(std::io::Cursor::new(Bytes::from(data)))),
            None => std::fs::File::open(self.blob_path(blob))
                .map(Blob::File)
                .map_err(internal),
        }
    }
}

fn blob_referenced(c: &Connection, blob: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT EXISTS(SELECT 1 FROM objects WHERE blob = ?1)
             OR EXISTS(SELECT 1 FROM parts WHERE blob = ?1)
             OR EXISTS(SELECT 1 FROM versions WHERE blob = ?1)",
        [blob],
        |r| r.get(0),
    )
}

type StageOut = (
    String,
    [u8; 16],
    u64,
    Option<(ChecksumAlgorithm, Vec<u8>)>,
    Option<Bytes>,
);

/// Bodies up to this size are hashed on the request task and written by one
/// blocking call; larger ones go through the pipeline of [`Pipeline`].
const INLINE_MAX: usize = 1 << 20;
/// The batch handed to the pipeline's workers at once.
const BATCH: usize = 256 << 10;
/// Batches in flight per worker (bounds memory to ~2 MiB per upload per worker).
const IN_FLIGHT: usize = 8;

async fn stage_into(
    tmp: &Path,
    body: impl futures_util::Stream<Item = Result<Bytes, S3Error>> + Send,
    checksum: Option<ChecksumAlgorithm>,
    max: u64,
) -> Result<StageOut, S3Error> {
    let mut size: u64 = 0;
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_len = 0usize;
    let mut pipeline: Option<Pipeline> = None;
    futures_util::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > max {
            return Err(S3Error::entity_too_large(max));
        }
        pending_len += chunk.len();
        pending.push(chunk);
        let threshold = if pipeline.is_some() {
            BATCH
        } else {
            INLINE_MAX
        };
        if pending_len >= threshold {
            let p = match pipeline.take() {
                Some(p) => p,
                None => Pipeline::start(std::fs::File::create(tmp).map_err(internal)?, checksum),
            };
            pending_len = 0;
            pipeline = Some(p.push(std::mem::take(&mut pending)).await?);
        }
    }
    match pipeline {
        Some(mut p) => {
            if !pending.is_empty() {
                p = p.push(pending).await?;
            }
            let (sha, md5, flex) = p.finish().await?;
            Ok((sha, md5, size, flex, None))
        }
        None => {
            // Up to INLINE_MAX: hash here; a small body stays in memory (it goes
            // into s3.db with its row), a larger one is one blocking write + fsync.
            let mut sha = Sha256::new();
            let mut md5 = Md5::new();
            let mut flex: Option<Hasher> = checksum.map(|a| a.hasher());
            for b in &pending {
                sha.update(b);
                md5.update(b);
                if let Some(h) = flex.as_mut() {
                    h.update(b);
                }
            }
            let small = if size as usize <= SMALL_BLOB {
                Some(match pending.len() {
                    1 => pending.pop().expect("one chunk"),
                    _ => Bytes::from(pending.concat()),
                })
            } else {
                let tmp = tmp.to_path_buf();
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let mut f = std::fs::File::create(tmp)?;
                    for b in pending {
                        f.write_all(&b)?;
                    }
                    f.sync_all()
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
                None
            };
            let sha = hex::encode(sha.finalize());
            let md5: [u8; 16] = md5.finalize().into();
            let flex = flex.map(|h| (h.algorithm(), h.finalize()));
            Ok((sha, md5, size, flex, small))
        }
    }
}

type Batch = Arc<Vec<Bytes>>;
type WriterOut = (String, Option<(ChecksumAlgorithm, Vec<u8>)>);

/// A large body's pipeline: the request task receives the bytes while one
/// blocking worker writes them and computes SHA-256 (the blob's name) and the
/// requested checksum, and another computes the MD5 (the ETag) — the three run
/// concurrently instead of one after another. Channels are bounded, so a slow
/// disk slows the upload down instead of buffering it in memory.
struct Pipeline {
    to_writer: tokio::sync::mpsc::Sender<Batch>,
    to_md5: tokio::sync::mpsc::Sender<Batch>,
    writer: tokio::task::JoinHandle<std::io::Result<WriterOut>>,
    md5: tokio::task::JoinHandle<[u8; 16]>,
}

impl Pipeline {
    fn start(file: std::fs::File, checksum: Option<ChecksumAlgorithm>) -> Self {
        let (to_writer, mut wrx) = tokio::sync::mpsc::channel::<Batch>(IN_FLIGHT);
        let (to_md5, mut mrx) = tokio::sync::mpsc::channel::<Batch>(IN_FLIGHT);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<WriterOut> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut sha = Sha256::new();
            let mut flex: Option<Hasher> = checksum.map(|a| a.hasher());
            while let Some(batch) = wrx.blocking_recv() {
                for b in batch.iter() {
                    sha.update(b);
                    if let Some(h) = flex.as_mut() {
                        h.update(b);
                    }
                    w.write_all(b)?;
                }
            }
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            Ok((
                hex::encode(sha.finalize()),
                flex.map(|h| (h.algorithm(), h.finalize())),
            ))
        });
        let md5 = tokio::task::spawn_blocking(move || {
            let mut md5 = Md5::new();
            while let Some(batch) = mrx.blocking_recv() {
                for b in batch.iter() {
                    md5.update(b);
                }
            }
            md5.finalize().into()
        });
        Self {
            to_writer,
            to_md5,
            writer,
            md5,
        }
    }

    /// Hand `batch` to both workers; `Err` when a worker stopped early (only
    /// the writer can, on a write error, which [`Pipeline::finish`] reports).
    async fn feed(&mut self, batch: Vec<Bytes>) -> Result<(), ()> {
        let batch = Arc::new(batch);
        let a = self.to_writer.send(batch.clone()).await;
        let b = self.to_md5.send(batch).await;
        if a.is_err() || b.is_err() {
            return Err(());
        }
        Ok(())
    }

    /// [`Pipeline::feed`], turning a stopped worker into its error.
    async fn push(mut self, batch: Vec<Bytes>) -> Result<Self, S3Error> {
        match self.feed(batch).await {
            Ok(()) => Ok(self),
            Err(()) => Err(match self.finish().await {
                Err(e) => e,
                Ok(_) => internal("the upload's writer stopped"),
            }),
        }
    }

    /// Close the channels and wait for both workers (the file is fsynced).
    async fn finish(
        self,
    ) -> Result<(String, [u8; 16], Option<(ChecksumAlgorithm, Vec<u8>)>), S3Error> {
        drop(self.to_writer);
        drop(self.to_md5);
        let (sha, flex) = self.writer.await.map_err(internal)?.map_err(internal)?;
        let md5 = self.md5.await.map_err(internal)?;
        Ok((sha, md5, flex))
    }
}

/// The next value of a named counter (sequencers).
pub fn next_counter(tx: &Connection, name: &str) -> Result<i64, S3Error> {
    tx.execute(
        "INSERT INTO counters(name, value) VALUES (?1, 1)
         ON CONFLICT(name) DO UPDATE SET value = value + 1",
        [name],
    )
    .map_err(internal)?;
    tx.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(internal)
}

pub fn get_object(c: &Connection, bucket: &str, key: &str) -> Result<Option<Object>, S3Error> {
    c.query_row(
        "SELECT key, blob, size, etag, modified_ms, meta, version_id FROM objects WHERE bucket = ?1 AND key = ?2",
        params![bucket, key],
        object_row,
    )
    .optional()
    .map_err(internal)
}

pub fn object_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Object> {
    let meta: String = r.get(5)?;
    Ok(Object {
        key: r.get(0)?,
        blob: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        etag: r.get(3)?,
        modified_ms: r.get(4)?,
        meta: serde_json::from_str(&meta).unwrap_or_default(),
        version_id: r.get(6)?,
    })
}

/// A bucket row.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    pub created_ms: i64,
    pub notification: Option<String>,
}

pub fn get_bucket(c: &Connection, name: &str) -> Result<Option<Bucket>, S3Error> {
    c.query_row(
        "SELECT name, region, created_ms, notification FROM buckets WHERE name = ?1",
        [name],
        |r| {
            Ok(Bucket {
                name: r.get(0)?,
                region: r.get(1)?,
                created_ms: r.get(2)?,
                notification: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(internal)
}

pub fn require_bucket(c: &Connection, name: &str) -> Result<Bucket, S3Error> {
    get_bucket(c, name)?.ok_or_else(|| S3Error::no_such_bucket(name))
}

/// The bucket's versioning status: `None` (never configured), `Enabled`,
/// `Suspended`.
pub fn versioning(c: &Connection, bucket: &str) -> Result<Option<String>, S3Error> {
    c.query_row(
        "SELECT versioning FROM buckets WHERE name = ?1",
        [bucket],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
    .map_err(internal)
}

pub fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn insert_current(tx: &Connection, bucket: &str, obj: &Object) -> Result<(), S3Error> {
    tx.execute(
        "INSERT OR REPLACE INTO objects(bucket, key, blob, size, etag, modified_ms, meta, version_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            bucket,
            obj.key,
            obj.blob,
            obj.size as i64,
            obj.etag,
            obj.modified_ms,
            serde_json::to_string(&obj.meta).map_err(internal)?,
            obj.version_id
        ],
    )
    .map_err(internal)?;
    Ok(())
}

/// Move the current version of `key` (if any) to the noncurrent versions.
fn archive_current(tx: &Connection, bucket: &str, key: &str) -> Result<(), S3Error> {
    let Some(cur) = get_object(tx, bucket, key)? else {
        return Ok(());
    };
    let seq = next_counter(tx, "version")?;
    tx.execute(
        "INSERT OR REPLACE INTO versions(bucket, key, version_id, seq, blob, size, etag, modified_ms, meta,
                                         delete_marker, archived_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10)",
        params![
            bucket,
            key,
            cur.version_id.as_deref().unwrap_or("null"),
            seq,
            cur.blob,
            cur.size as i64,
            cur.etag,
            cur.modified_ms,
            serde_json::to_string(&cur.meta).map_err(internal)?,
            now_ms()
        ],
    )
    .map_err(internal)?;
    tx.execute(
        "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
        params![bucket, key],
    )
    .map_err(internal)?;
    Ok(())
}

/// Drop the noncurrent `null` version (or null delete marker) of `key`;
/// returns its blob.
fn drop_null_version(tx: &Connection, bucket: &str, key: &str) -> Result<Vec<String>, S3Error> {
    let blob: Option<Option<String>> = tx
        .query_row(
            "SELECT blob FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = 'null'",
            params![bucket, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    tx.execute(
        "DELETE FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = 'null'",
        params![bucket, key],
    )
    .map_err(internal)?;
    Ok(blob.flatten().into_iter().collect())
}

/// Put an object as the current version of its key, as the bucket's versioning
/// says (a new version id when enabled, the `null` version when suspended);
/// sets `obj.version_id` and returns the blobs that may have lost their last
/// reference (release them after).
pub fn put_object_row(
    tx: &Connection,
    bucket: &str,
    obj: &mut Object,
) -> Result<Vec<String>, S3Error> {
    let mut release = Vec::new();
    let current = get_object(tx, bucket, &obj.key)?;
    match versioning(tx, bucket)?.as_deref() {
        Some("Enabled") => {
            archive_current(tx, bucket, &obj.key)?;
            obj.version_id = Some(new_version_id());
        }
        Some(_) => {
            match &current {
                Some(c) if c.version_id.as_deref().is_some_and(|v| v != "null") => {
                    archive_current(tx, bucket, &obj.key)?
                }
                Some(c) => release.push(c.blob.clone()),
                None => {}
            }
            release.extend(drop_null_version(tx, bucket, &obj.key)?);
            obj.version_id = Some("null".into());
        }
        None => {
            if let Some(c) = current {
                release.push(c.blob);
            }
            obj.version_id = None;
        }
    }
    insert_current(tx, bucket, obj)?;
    release.retain(|b| *b != obj.blob);
    Ok(release)
}

/// What a delete did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Blobs that may have lost their last reference.
    pub release: Vec<String>,
    /// The version id the answer names (the marker's, or the deleted version's).
    pub version_id: Option<String>,
    /// A delete marker was created (or a delete marker was deleted).
    pub delete_marker: bool,
    /// Something changed.
    pub changed: bool,
}

fn insert_marker(tx: &Connection, bucket: &str, key: &str, vid: &str) -> Result<(), S3Error> {
    let seq = next_counter(tx, "version")?;
    let now = now_ms();
    tx.execute(
        "INSERT OR REPLACE INTO versions(bucket, key, version_id, seq, blob, modified_ms, delete_marker, archived_ms)
         VALUES (?1, ?2, ?3, ?4, NULL, ?5, 1, ?5)",
        params![bucket, key, vid, seq, now],
    )
    .map_err(internal)?;
    Ok(())
}

/// Delete the current version of `key` (no version id given): a plain delete,
/// or a delete marker in a versioned bucket.
pub fn delete_current(tx: &Connection, bucket: &str, key: &str) -> Result<Deleted, S3Error> {
    let current = get_object(tx, bucket, key)?;
    let mut out = Deleted::default();
    match versioning(tx, bucket)?.as_deref() {
        None => {
            if let Some(c) = current {
                tx.execute(
                    "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
                    params![bucket, key],
                )
                .map_err(internal)?;
                out.release.push(c.blob);
                out.changed = true;
            }
        }
        Some(status) => {
            let vid = if status == "Enabled" {
                archive_current(tx, bucket, key)?;
                new_version_id()
            } else {
                match current {
                    Some(c) if c.version_id.as_deref().is_some_and(|v| v != "null") => {
                        archive_current(tx, bucket, key)?
                    }
                    Some(c) => {
                        tx.execute(
                            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
                            params![bucket, key],
                        )
                        .map_err(internal)?;
                        out.release.push(c.blob);
                    }
                    None => {}
                }
                out.release.extend(drop_null_version(tx, bucket, key)?);
                "null".to_string()
            };
            insert_marker(tx, bucket, key, &vid)?;
            out.version_id = Some(vid);
            out.delete_marker = true;
            out.changed = true;
        }
    }
    Ok(out)
}

/// One version of a key: the current object, or a noncurrent version or
/// delete marker (`Ok(None)`: no such version).
pub fn get_version(
    c: &Connection,
    bucket: &str,
    key: &str,
    vid: &str,
) -> Result<Option<(Object, bool)>, S3Error> {
    if let Some(o) = get_object(c, bucket, key)? {
        if o.version_id.as_deref().unwrap_or("null") == vid {
            return Ok(Some((o, false)));
        }
    }
    c.query_row(
        "SELECT key, COALESCE(blob, ''), size, etag, modified_ms, meta, version_id, delete_marker
         FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3",
        params![bucket, key, vid],
        |r| Ok((object_row(r)?, r.get::<_, bool>(7)?)),
    )
    .optional()
    .map_err(internal)
}

/// Permanently delete one version; if it was the latest, the next newest
/// version becomes current (unless that is a delete marker).
pub fn delete_version(
    tx: &Connection,
    bucket: &str,
    key: &str,
    vid: &str,
) -> Result<Deleted, S3Error> {
    let mut out = Deleted {
        version_id: Some(vid.to_string()),
        ..Default::default()
    };
    match get_version(tx, bucket, key, vid)? {
        None => return Ok(out),
        Some((o, marker)) => {
            let was_current = get_object(tx, bucket, key)?
                .is_some_and(|c| c.version_id.as_deref().unwrap_or("null") == vid);
            if was_current {
                tx.execute(
                    "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
                    params![bucket, key],
                )
                .map_err(internal)?;
            } else {
                tx.execute(
                    "DELETE FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3",
                    params![bucket, key, vid],
                )
                .map_err(internal)?;
            }
            if !marker {
                out.release.push(o.blob);
            }
            out.delete_marker = marker;
            out.changed = true;
        }
    }
    // Promote the newest remaining version if nothing is current.
    if get_object(tx, bucket, key)?.is_none() {
        let latest = tx
            .query_row(
                "SELECT key, COALESCE(blob, ''), size, etag, modified_ms, meta, version_id, delete_marker
                 FROM versions WHERE bucket = ?1 AND key = ?2 ORDER BY seq DESC LIMIT 1",
                params![bucket, key],
                |r| Ok((object_row(r)?, r.get::<_, bool>(7)?)),
            )
            .optional()
            .map_err(internal)?;
        if let Some((o, false)) = latest {
            tx.execute(
                "DELETE FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3",
                params![bucket, key, o.version_id],
            )
            .map_err(internal)?;
            insert_current(tx, bucket, &o)?;
        }
    }
    Ok(out)
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    fn body(data: Vec<u8>) -> impl futures_util::Stream<Item = Result<Bytes, S3Error>> + Send {
        // Several chunks, as a request body arrives.
        let chunks: Vec<Result<Bytes, S3Error>> = data
            .chunks(7919)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(chunks)
    }

    fn files_under(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            files_under(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    fn reference(c: &Connection, key: &str, blob: &str) {
        c.execute(
            "INSERT OR REPLACE INTO objects(bucket, key, blob, size, etag, modified_ms, meta)
             VALUES ('b', ?1, ?2, 0, '', 0, '{}')",
            params![key, blob],
        )
        .unwrap();
    }

    #[tokio::test]
    async fn small_bodies_live_in_the_database_and_large_ones_in_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blobs = dir.path().join("s3").join("blobs");
        let small: Vec<u8> = (0..SMALL_BLOB).map(|i| (i * 31 % 251) as u8).collect();
        let large: Vec<u8> = (0..SMALL_BLOB + 1).map(|i| (i * 17 % 253) as u8).collect();

        let s = store
            .stage(body(small.clone()), None, u64::MAX)
            .await
            .unwrap();
        assert!(
            s.small.is_some(),
            "a body of exactly SMALL_BLOB bytes is small"
        );
        assert!(!s.tmp.exists(), "no file is written for a small body");
        assert_eq!(s.md5, <[u8; 16]>::from(Md5::digest(&small)));
        let l = store
            .stage(body(large.clone()), None, u64::MAX)
            .await
            .unwrap();
        assert!(l.small.is_none() && l.tmp.exists());

        let (ss, ls) = (s.sha256.clone(), l.sha256.clone());
        store
            .tx(move |tx, st| {
                st.link(tx, &s)?;
                st.link(tx, &l)?;
                reference(tx, "small", &s.sha256);
                reference(tx, "large", &l.sha256);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(files_under(&blobs), 1, "only the large body has a file");

        let (a, b) = (ss.clone(), ls.clone());
        let st = store.clone();
        let (mut sb, mut lb) = store
            .read(move |c| Ok((st.open_blob(c, &a)?, st.open_blob(c, &b)?)))
            .await
            .unwrap();
        assert!(matches!(sb, Blob::Small(_)) && matches!(lb, Blob::File(_)));
        let mut got = Vec::new();
        sb.read_to_end(&mut got).unwrap();
        assert_eq!(got, small);
        lb.seek(SeekFrom::Start(5)).unwrap();
        let mut got = Vec::new();
        lb.read_to_end(&mut got).unwrap();
        assert_eq!(got, large[5..]);

        // A release in a transaction that then fails keeps the file.
        let (ls2, ss2) = (ls.clone(), ss.clone());
        let refused = store
            .tx(move |tx, st| {
                tx.execute("DELETE FROM objects", []).map_err(internal)?;
                st.release(tx, &ss2)?;
                st.release(tx, &ls2)?;
                Err::<(), _>(internal("refused after releasing"))
            })
            .await;
        assert!(refused.is_err());
        assert_eq!(
            files_under(&blobs),
            1,
            "a rolled-back release removes nothing"
        );

        // Dropping the last reference reclaims both kinds.
        store
            .tx(move |tx, st| {
                tx.execute("DELETE FROM objects", []).map_err(internal)?;
                st.release(tx, &ss)?;
                st.release(tx, &ls)?;
                Ok(())
            })
            .await
            .unwrap();
        let left: i64 = store
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM small_blobs", [], |r| r.get(0))
                    .map_err(internal)
            })
            .await
            .unwrap();
        assert_eq!((left, files_under(&blobs)), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let st = store.clone();
            tasks.push(tokio::spawn(async move {
                st.tx(move |tx, _| {
                    tx.execute(
                        "INSERT INTO counters(name, value) VALUES (?1, ?2)",
                        params![format!("c{i}"), i],
                    )
                    .map_err(internal)?;
                    match i % 50 {
                        // Fails after writing: its savepoint is rolled back.
                        7 => Err(internal("refused")),
                        // Panics after writing: likewise, and the writer goes on.
                        13 => panic!("a write that panics"),
                        _ => Ok(i),
                    }
                })
                .await
            }));
        }
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match (i % 50, t.await.unwrap()) {
                (7 | 13, r) => assert!(r.is_err(), "write {i} should fail"),
                (_, r) => {
                    assert_eq!(r.unwrap(), i);
                    ok += 1;
                }
            }
        }
        let names: Vec<String> = store
            .read(|c| {
                let mut s = c
                    .prepare("SELECT name FROM counters ORDER BY value")
                    .unwrap();
                let rows = s.query_map([], |r| r.get(0)).unwrap();
                Ok(rows.map(|r| r.unwrap()).collect())
            })
            .await
            .unwrap();
        assert_eq!(names.len(), ok);
        assert!(!names.iter().any(|n| n == "c7" || n == "c13" || n == "c57"));
        // A write started from inside a write is refused, not deadlocked.
        let nested = store
            .tx(|_, st| {
                let inner = st.writer.send(Box::new(|_, _| (true, Box::new(|_| ()))));
                Ok(inner.is_err())
            })
            .await
            .unwrap();
        assert!(nested);
    }

    #[tokio::test]
    async fn a_rolled_back_small_put_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = store
            .stage(body(b"hello".to_vec()), None, u64::MAX)
            .await
            .unwrap();
        let err = store
            .tx(move |tx, st| {
                st.link(tx, &s)?;
                Err::<(), _>(internal("refused after linking"))
            })
            .await;
        assert!(err.is_err());
        let left: i64 = store
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM small_blobs", [], |r| r.get(0))
                    .map_err(internal)
            })
            .await
            .unwrap();
        assert_eq!(left, 0);
    }
}

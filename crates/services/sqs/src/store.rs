//! Durable queue state behind a backend trait ([`Backend`]), and its SQLite
//! implementation ([`SqliteBackend`], `<data>/sqs.db`).
//!
//! The queue core keeps every queue and message in memory and records each state
//! change here as a [`Change`]. A backend applies a batch of changes atomically;
//! [`Backend::commit`] answers once they are durable. The SQLite backend has one
//! writer thread that takes every batch waiting and commits them in one
//! transaction (group commit): under load many sends share one fsync, and a send is
//! acknowledged only after the transaction holding it is on disk (WAL,
//! `synchronous=FULL`). Changes nobody waits for ([`Backend::record`]: what a
//! `ReceiveMessage` did to a message's receive count and visibility) are written
//! without an fsync of their own: a transaction holding only such changes commits
//! with `synchronous=NORMAL`, and the next durable commit's fsync of the same WAL
//! file carries them to disk (a crash before it forgets them: the message is
//! visible again early, at least once as SQS promises). The trait names no SQLite
//! type, so another backend (NATS JetStream) is an addition.

use crate::error::StoreError;
use crate::model::{MsgAttr, QueueAttrs};
use rusqlite::{params, Connection};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// A queue as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRecord {
    pub id: i64,
    pub name: String,
    pub attrs: QueueAttrs,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub queue_id: i64,
    /// Global send order (FIFO order within a queue); also the row key.
    pub seq: u64,
    pub message_id: String,
    pub body: String,
    pub attrs: BTreeMap<String, MsgAttr>,
    pub trace_header: Option<String>,
    pub sender_id: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    /// The queue a dead-lettered message came from.
    pub dlq_source_arn: Option<String>,
    pub sent_ms: i64,
    pub receive_count: u32,
    pub first_receive_ms: Option<i64>,
    /// When the message is (again) receivable.
    pub visible_at_ms: i64,
}

/// A FIFO deduplication entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupRecord {
    pub queue_id: i64,
    pub key: String,
    pub expires_ms: i64,
    pub message_id: String,
    pub sequence_number: Option<String>,
}

/// A message move task (`StartMessageMoveTask`) as stored: written when it
/// starts, with every message it moves (in that move's transaction), and when
/// its status changes, so a restart resumes it where it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MoveTaskRecord {
    pub handle: String,
    pub source_arn: String,
    pub destination_arn: Option<String>,
    pub max_per_second: Option<u32>,
    /// `RUNNING`, `CANCELLING`, `CANCELLED`, `COMPLETED` or `FAILED`.
    pub status: String,
    pub moved: u64,
    pub to_move: u64,
    pub failure_reason: Option<String>,
    pub started_ms: i64,
}

/// One state change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace a move task (by handle).
    PutMoveTask(MoveTaskRecord),
    PutQueue(QueueRecord),
    DeleteQueue(i64),
    Insert(MessageRecord),
    Dedup(DedupRecord),
    Delete {
        seq: u64,
    },
    Received {
        seq: u64,
        receive_count: u32,
        first_receive_ms: Option<i64>,
        visible_at_ms: i64,
    },
    /// Delete a queue's messages sent up to `max_seq`.
    Purge {
        queue_id: i64,
        max_seq: u64,
    },
}

/// Everything stored, read once at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub queues: Vec<QueueRecord>,
    pub messages: Vec<MessageRecord>,
    pub dedup: Vec<DedupRecord>,
    /// Oldest first.
    pub move_tasks: Vec<MoveTaskRecord>,
}

/// Work to run after a batch is durable, before its caller is answered.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// Durable queue state.
pub trait Backend: Send + Sync + 'static {
    /// Everything stored (expired dedup entries may be left out).
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Apply `changes` atomically, in order after every batch committed before;
    /// then run `after` (in commit order); then answer.
    fn commit(
        &self,
        changes: Vec<Change>,
        after: Option<AfterCommit>,
    ) -> oneshot::Receiver<Result<(), StoreError>>;

    /// Apply `changes` in order after every batch committed before, without the
    /// caller waiting and without forcing them to disk on their own: they become
    /// durable with the next [`Backend::commit`] (or may be lost by a crash before
    /// it). For state whose loss only makes a message visible again early.
    fn record(&self, changes: Vec<Change>) {
        drop(self.commit(changes, None));
    }
}

const SCHEMA: nimbus_store::migrate::Schema = nimbus_store::migrate::Schema {
    file: "sqs.db",
    migrations: &[
        nimbus_store::migrate::Migration {
            name: "queues, messages and FIFO deduplication",
            step: nimbus_store::migrate::Step::Sql(
                "CREATE TABLE queues (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                attrs TEXT NOT NULL,
                tags TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                modified_ms INTEGER NOT NULL
             );
             CREATE TABLE messages (
                seq INTEGER PRIMARY KEY,
                queue_id INTEGER NOT NULL,
                message_id TEXT NOT NULL,
                body TEXT NOT NULL,
                attrs TEXT NOT NULL,
                meta TEXT NOT NULL,
                sent_ms INTEGER NOT NULL,
                receive_count INTEGER NOT NULL,
                first_receive_ms INTEGER,
                visible_at_ms INTEGER NOT NULL
             );
             CREATE INDEX messages_queue ON messages(queue_id, seq);
             CREATE TABLE dedup (
                queue_id INTEGER NOT NULL,
                key TEXT NOT NULL,
                expires_ms INTEGER NOT NULL,
                message_id TEXT NOT NULL,
                sequence_number TEXT,
                PRIMARY KEY (queue_id, key)
             );",
            ),
        },
        nimbus_store::migrate::Migration {
            name: "message move tasks",
            step: nimbus_store::migrate::Step::Sql(
                "CREATE TABLE move_tasks (
                    handle TEXT PRIMARY KEY,
                    started_ms INTEGER NOT NULL,
                    task TEXT NOT NULL
                 );",
            ),
        },
    ],
};

/// The per-message fields kept as one JSON column.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace_header: Option<String>,
    #[serde(default)]
    sender_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dedup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dlq_source_arn: Option<String>,
}

struct Job {
    changes: Vec<Change>,
    after: Option<AfterCommit>,
    /// `None`: a [`Backend::record`], nobody waits and it needs no fsync of its own.
    reply: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// The SQLite backend: `<data>/sqs.db`, one writer thread with group commit.
pub struct SqliteBackend {
    tx: mpsc::Sender<Job>,
    path: std::path::PathBuf,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteBackend {
    /// Open `path` (migrating it) and start its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = nimbus_store::open_migrated(path, &SCHEMA).map_err(db_err)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("nimbus-sqs-writer".into())
            .spawn(move || writer(conn, rx))
            .map_err(db_err)?;
        Ok(Self {
            tx,
            path: path.to_path_buf(),
        })
    }
}

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 512;

/// The next batch: everything waiting, up to [`MAX_BATCH`] jobs.
fn next_batch(rx: &mpsc::Receiver<Job>) -> Option<Vec<Job>> {
    let first = rx.recv().ok()?;
    let mut jobs = vec![first];
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// Answer every job of a batch that failed.
fn fail(jobs: Vec<Job>, e: &dyn std::fmt::Display) {
    for job in jobs {
        if let Some(reply) = job.reply {
            let _ = reply.send(Err(StoreError::Backend(e.to_string())));
        }
    }
}

/// Run the batch's after-commit work and answer it (it is durable).
fn succeed(jobs: Vec<Job>) {
    for job in jobs {
        if let Some(after) = job.after {
            after();
        }
        if let Some(reply) = job.reply {
            let _ = reply.send(Ok(()));
        }
    }
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    // The connection opens with `synchronous=FULL`; a batch of only recorded
    // (unawaited) changes switches it to NORMAL for its commit: written to the WAL,
    // no fsync. The next awaited batch switches back, and its fsync of the WAL file
    // makes the earlier frames durable too.
    let mut full = true;
    while let Some(jobs) = next_batch(&rx) {
        let awaited = jobs.iter().any(|j| j.reply.is_some());
        if awaited != full {
            let mode = if awaited { "FULL" } else { "NORMAL" };
            match conn.pragma_update(None, "synchronous", mode) {
                Ok(()) => full = awaited,
                Err(e) => tracing::error!(error = %e, mode, "sqs: setting synchronous failed"),
            }
        }
        let result = if awaited && !full {
            // Never answer a durable commit without FULL.
            Err(rusqlite::Error::InvalidQuery)
        } else {
            apply(&mut conn, &jobs)
        };
        match result {
            Ok(()) => succeed(jobs),
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "sqs: commit failed");
                fail(jobs, &e);
            }
        }
    }
}

fn apply(conn: &mut Connection, jobs: &[Job]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for job in jobs {
        for c in &job.changes {
            apply_one(&tx, c)?;
        }
    }
    tx.commit()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn apply_one(tx: &rusqlite::Transaction<'_>, c: &Change) -> rusqlite::Result<()> {
    match c {
        Change::PutMoveTask(t) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO move_tasks (handle, started_ms, task) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![t.handle, t.started_ms, to_json(t)])?;
        }
        Change::PutQueue(q) => {
            tx.prepare_cached(
                "INSERT INTO queues (id, name, attrs, tags, created_ms, modified_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET attrs = excluded.attrs, tags = excluded.tags,
                   modified_ms = excluded.modified_ms",
            )?
            .execute(params![
                q.id,
                q.name,
                to_json(&q.attrs),
                to_json(&q.tags),
                q.created_ms,
                q.modified_ms
            ])?;
        }
        Change::DeleteQueue(id) => {
            tx.execute("DELETE FROM queues WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM messages WHERE queue_id = ?1", [id])?;
            tx.execute("DELETE FROM dedup WHERE queue_id = ?1", [id])?;
        }
        Change::Insert(m) => {
            let meta = Meta {
                trace_header: m.trace_header.clone(),
                sender_id: m.sender_id.clone(),
                group_id: m.group_id.clone(),
                dedup_id: m.dedup_id.clone(),
                dlq_source_arn: m.dlq_source_arn.clone(),
            };
            tx.prepare_cached(
                "INSERT OR REPLACE INTO messages (seq, queue_id, message_id, body, attrs, meta,
                   sent_ms, receive_count, first_receive_ms, visible_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                m.seq as i64,
                m.queue_id,
                m.message_id,
                m.body,
                to_json(&m.attrs),
                to_json(&meta),
                m.sent_ms,
                m.receive_count,
                m.first_receive_ms,
                m.visible_at_ms
            ])?;
        }
        Change::Dedup(d) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO dedup (queue_id, key, expires_ms, message_id, sequence_number)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                d.queue_id,
                d.key,
                d.expires_ms,
                d.message_id,
                d.sequence_number
            ])?;
        }
        Change::Delete { seq } => {
            tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                .execute([*seq as i64])?;
        }
        Change::Received {
            seq,
            receive_count,
            first_receive_ms,
            visible_at_ms,
        } => {
            tx.prepare_cached(
                "UPDATE messages SET receive_count = ?2, first_receive_ms = ?3, visible_at_ms = ?4
                 WHERE seq = ?1",
            )?
            .execute(params![
                *seq as i64,
                receive_count,
                first_receive_ms,
                visible_at_ms
            ])?;
        }
        Change::Purge { queue_id, max_seq } => {
            tx.execute(
                "DELETE FROM messages WHERE queue_id = ?1 AND seq <= ?2",
                params![queue_id, *max_seq as i64],
            )?;
        }
    }
    Ok(())
}

impl Backend for SqliteBackend {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let conn = nimbus_store::open_durable(&self.path).map_err(db_err)?;
        let mut snap = Snapshot::default();
        let mut stmt = conn
            .prepare(
                "SELECT id, name, attrs, tags, created_ms, modified_ms FROM queues ORDER BY id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let attrs: String = r.get(2)?;
                let tags: String = r.get(3)?;
                Ok(QueueRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    attrs: serde_json::from_str(&attrs).unwrap_or_default(),
                    tags: serde_json::from_str(&tags).unwrap_or_default(),
                    created_ms: r.get(4)?,
                    modified_ms: r.get(5)?,
                })
            })
            .map_err(db_err)?;
        for q in rows {
            snap.queues.push(q.map_err(db_err)?);
        }
        let mut stmt = conn
            .prepare(
                "SELECT seq, queue_id, message_id, body, attrs, meta, sent_ms, receive_count,
                   first_receive_ms, visible_at_ms FROM messages ORDER BY seq",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let attrs: String = r.get(4)?;
                let meta: String = r.get(5)?;
                let meta: Meta = serde_json::from_str(&meta).unwrap_or_default();
                Ok(MessageRecord {
                    seq: r.get::<_, i64>(0)? as u64,
                    queue_id: r.get(1)?,
                    message_id: r.get(2)?,
                    body: r.get(3)?,
                    attrs: serde_json::from_str(&attrs).unwrap_or_default(),
                    trace_header: meta.trace_header,
                    sender_id: meta.sender_id,
                    group_id: meta.group_id,
                    dedup_id: meta.dedup_id,
                    dlq_source_arn: meta.dlq_source_arn,
                    sent_ms: r.get(6)?,
                    receive_count: r.get(7)?,
                    first_receive_ms: r.get(8)?,
                    visible_at_ms: r.get(9)?,
                })
            })
            .map_err(db_err)?;
        for m in rows {
            snap.messages.push(m.map_err(db_err)?);
        }
        let now = nimbus_core::now_ms();
        let mut stmt = conn
            .prepare(
                "SELECT queue_id, key, expires_ms, message_id, sequence_number FROM dedup
                 WHERE expires_ms > ?1",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([now], |r| {
                Ok(DedupRecord {
                    queue_id: r.get(0)?,
                    key: r.get(1)?,
                    expires_ms: r.get(2)?,
                    message_id: r.get(3)?,
                    sequence_number: r.get(4)?,
                })
            })
            .map_err(db_err)?;
        for d in rows {
            snap.dedup.push(d.map_err(db_err)?);
        }
        conn.execute("DELETE FROM dedup WHERE expires_ms <= ?1", [now])
            .map_err(db_err)?;
        let mut stmt = conn
            .prepare("SELECT task FROM move_tasks ORDER BY started_ms, rowid")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        for t in rows {
            let text = t.map_err(db_err)?;
            match serde_json::from_str(&text) {
                Ok(t) => snap.move_tasks.push(t),
                Err(e) => tracing::error!(error = %e, "sqs: unreadable move task skipped"),
            }
        }
        Ok(snap)
    }

    fn commit(
        &self,
        changes: Vec<Change>,
        after: Option<AfterCommit>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::SendError(job)) = self.tx.send(Job {
            changes,
            after,
            reply: Some(reply),
        }) {
            if let Some(reply) = job.reply {
                let _ = reply.send(Err(StoreError::Stopped));
            }
        }
        rx
    }

    fn record(&self, changes: Vec<Change>) {
        // A stopped writer loses them, as a crash would.
        let _ = self.tx.send(Job {
            changes,
            after: None,
            reply: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> MessageRecord {
        MessageRecord {
            queue_id: 1,
            seq,
            message_id: format!("m{seq}"),
            body: "b".into(),
            attrs: BTreeMap::new(),
            trace_header: None,
            sender_id: "s".into(),
            group_id: Some("g".into()),
            dedup_id: None,
            dlq_source_arn: None,
            sent_ms: 1,
            receive_count: 0,
            first_receive_ms: None,
            visible_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn changes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqs.db");
        let b = SqliteBackend::open(&path).unwrap();
        let q = QueueRecord {
            id: 1,
            name: "q".into(),
            attrs: QueueAttrs::default(),
            tags: BTreeMap::from([("k".into(), "v".into())]),
            created_ms: 1,
            modified_ms: 1,
        };
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r2 = ran.clone();
        b.commit(
            vec![
                Change::PutQueue(q.clone()),
                Change::Insert(msg(1)),
                Change::Insert(msg(2)),
            ],
            Some(Box::new(move || {
                r2.store(true, std::sync::atomic::Ordering::SeqCst)
            })),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
        b.commit(
            vec![
                Change::Delete { seq: 1 },
                Change::Received {
                    seq: 2,
                    receive_count: 1,
                    first_receive_ms: Some(5),
                    visible_at_ms: 99,
                },
            ],
            None,
        )
        .await
        .unwrap()
        .unwrap();
        drop(b);
        let b = SqliteBackend::open(&path).unwrap();
        let snap = b.load().unwrap();
        assert_eq!(snap.queues, vec![q]);
        assert_eq!(snap.messages.len(), 1);
        assert_eq!(snap.messages[0].seq, 2);
        assert_eq!(snap.messages[0].receive_count, 1);
        assert_eq!(snap.messages[0].visible_at_ms, 99);
        assert_eq!(snap.messages[0].group_id.as_deref(), Some("g"));
    }

    /// Awaited commits from many tasks at once are answered only after their
    /// after-work ran, in commit order, and every one is on disk after reopening.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_answer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqs.db");
        let b = SqliteBackend::open(&path).unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waits = Vec::new();
        for seq in 1..=200u64 {
            let o = order.clone();
            // Every third one interleaves a recorded change, as receives do.
            if seq % 3 == 0 {
                b.record(vec![Change::Received {
                    seq: seq - 1,
                    receive_count: 1,
                    first_receive_ms: Some(1),
                    visible_at_ms: 5,
                }]);
            }
            let rx = b.commit(
                vec![Change::Insert(msg(seq))],
                Some(Box::new(move || o.lock().unwrap().push(seq))),
            );
            waits.push((seq, rx));
        }
        for (seq, rx) in waits {
            rx.await.unwrap().unwrap();
            assert!(
                order.lock().unwrap().contains(&seq),
                "answered before its after-work"
            );
        }
        assert_eq!(*order.lock().unwrap(), (1..=200).collect::<Vec<_>>());
        drop(b);
        let snap = SqliteBackend::open(&path).unwrap().load().unwrap();
        assert_eq!(snap.messages.len(), 200);
        let received = snap
            .messages
            .iter()
            .filter(|m| m.receive_count == 1)
            .count();
        assert_eq!(received, 66);
    }

    /// Recorded (unawaited) changes apply in order with the awaited ones around them
    /// and are on disk once a later awaited commit answers.
    #[tokio::test]
    async fn recorded_changes_ride_the_next_durable_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqs.db");
        let b = SqliteBackend::open(&path).unwrap();
        b.commit(vec![Change::Insert(msg(1)), Change::Insert(msg(2))], None)
            .await
            .unwrap()
            .unwrap();
        b.record(vec![Change::Received {
            seq: 1,
            receive_count: 1,
            first_receive_ms: Some(7),
            visible_at_ms: 1_000,
        }]);
        b.record(vec![Change::Received {
            seq: 2,
            receive_count: 3,
            first_receive_ms: Some(8),
            visible_at_ms: 2_000,
        }]);
        // Awaited after the records: deletes message 2, so a record applied after it
        // (out of order) would not matter, but one lost would leave message 1 unreceived.
        b.commit(vec![Change::Delete { seq: 2 }], None)
            .await
            .unwrap()
            .unwrap();
        drop(b);
        let snap = SqliteBackend::open(&path).unwrap().load().unwrap();
        assert_eq!(snap.messages.len(), 1);
        assert_eq!(snap.messages[0].seq, 1);
        assert_eq!(snap.messages[0].receive_count, 1);
        assert_eq!(snap.messages[0].first_receive_ms, Some(7));
        assert_eq!(snap.messages[0].visible_at_ms, 1_000);
    }
}

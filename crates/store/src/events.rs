//! The durable async event queue (`InvocationType=Event`, destinations, and every
//! async trigger later).
//!
//! Events live in their own SQLite file (`events.db`, WAL, `synchronous=FULL`) so
//! queue commits never wait behind telemetry batches. One writer thread applies
//! operations in batches, one transaction per batch (group commit): an insert is
//! acknowledged only after the transaction holding it is fsynced, and a burst of
//! concurrent inserts shares one fsync.
//!
//! The queue is read a window at a time, never whole: [`EventStore::due_window`]
//! returns the metadata (no payload) of one function's next events in due order
//! from the `events_due` index, and [`EventStore::load`] reads one event with its
//! payload when it is about to run. A window is read by the writer thread after the
//! batch before it commits, so it reflects every write sent before it was asked for.

use crate::{Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub id: i64,
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    pub enqueued_ms: i64,
    /// Attempts already made (function errors only; throttles do not count).
    pub attempts: u32,
    pub due_ms: i64,
    pub trace_id: Option<String>,
    /// What produced it: `event` (Invoke), `destination`, later `schedule`, `sqs`, …
    pub source: String,
}

/// A delivery owed by a finished event (a Lambda destination record, a dead
/// letter): written in the transaction that deletes the event, deleted once its
/// target has it. `item` is the invoker's own JSON description of the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub function: String,
    pub target: String,
    pub item: String,
    pub created_ms: i64,
}

/// What the dispatcher keeps in memory about a queued event: enough to order it and
/// to decide whether it is due, not its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    pub id: i64,
    pub due_ms: i64,
    pub enqueued_ms: i64,
    pub attempts: u32,
}

enum Op {
    Insert(Vec<QueuedEvent>, oneshot::Sender<Result<Vec<i64>>>),
    Delete(i64),
    /// Delete an event and write what its end owes, in one transaction.
    Finish(i64, Vec<OutboxEntry>, oneshot::Sender<Result<Vec<i64>>>),
    OutboxDone(i64),
    Reschedule {
        id: i64,
        attempts: u32,
        due_ms: i64,
    },
    Barrier(oneshot::Sender<()>),
    Window {
        function: String,
        after: Option<(i64, i64)>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<EventMeta>>>,
    },
}

/// Handle to the event queue's storage. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    tx: mpsc::Sender<Op>,
    /// For payload and age reads, which need not wait behind the writer.
    reader: Arc<Mutex<Connection>>,
}

const STOPPED: &str = "event writer stopped";

impl EventStore {
    /// Open (creating or migrating, [`crate::schema::EVENTS_DB`]) the queue at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = crate::open_migrated(path, &crate::schema::EVENTS_DB)?;
        let reader = crate::open_durable(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("nimbus-events".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Self {
            tx,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Durably store events; returns their ids once fsynced.
    pub async fn insert(&self, events: Vec<QueuedEvent>) -> Result<Vec<i64>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Insert(events, tx))
            .map_err(|_| StoreError::Corrupt(STOPPED.into()))?;
        rx.await.map_err(|_| StoreError::Corrupt(STOPPED.into()))?
    }

    pub fn delete(&self, id: i64) {
        let _ = self.tx.send(Op::Delete(id));
    }

    /// Delete event `id` and store `outbox` in the same transaction; the entries'
    /// ids once that is fsynced.
    pub async fn finish(&self, id: i64, outbox: Vec<OutboxEntry>) -> Result<Vec<i64>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Finish(id, outbox, tx))
            .map_err(|_| StoreError::Corrupt(STOPPED.into()))?;
        rx.await.map_err(|_| StoreError::Corrupt(STOPPED.into()))?
    }

    /// An outbox entry was delivered (or given up): forget it.
    pub fn outbox_done(&self, id: i64) {
        let _ = self.tx.send(Op::OutboxDone(id));
    }

    /// Every outbox entry not yet delivered, oldest first (at start-up: what a
    /// crash left behind).
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT id, function, target, item, created_ms FROM outbox ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(OutboxEntry {
                    id: r.get(0)?,
                    function: r.get(1)?,
                    target: r.get(2)?,
                    item: r.get(3)?,
                    created_ms: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn reschedule(&self, id: i64, attempts: u32, due_ms: i64) {
        let _ = self.tx.send(Op::Reschedule {
            id,
            attempts,
            due_ms,
        });
    }

    /// Wait until every operation sent so far is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Every function with queued events, and how many (at start-up: what a crash
    /// left behind). One pass over the `events_due` index.
    pub fn backlog(&self) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT function, COUNT(*) FROM events GROUP BY function ORDER BY function",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
    }

    /// Up to `limit` of `function`'s events in (due time, id) order, starting after
    /// `after` (exclusive; `None`: from the first), without payloads. Reflects every
    /// insert, delete and reschedule sent before the call.
    pub async fn due_window(
        &self,
        function: &str,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<EventMeta>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Op::Window {
                function: function.to_string(),
                after,
                limit,
                reply,
            })
            .map_err(|_| StoreError::Corrupt(STOPPED.into()))?;
        rx.await.map_err(|_| StoreError::Corrupt(STOPPED.into()))?
    }

    /// One event with its payload (`None` once it is gone). A blocking read: call it
    /// off the async runtime's worker threads.
    pub fn load(&self, id: i64) -> Result<Option<QueuedEvent>> {
        self.read(|c| {
            c.query_row(
                "SELECT id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, trace_id, source
                 FROM events WHERE id = ?1",
                [id],
                |r| {
                    Ok(QueuedEvent {
                        id: r.get(0)?,
                        request_id: r.get(1)?,
                        function: r.get(2)?,
                        qualifier: r.get(3)?,
                        payload: r.get(4)?,
                        enqueued_ms: r.get(5)?,
                        attempts: r.get(6)?,
                        due_ms: r.get(7)?,
                        trace_id: r.get(8)?,
                        source: r.get(9)?,
                    })
                },
            )
            .optional()
        })
    }

    /// When `function`'s oldest queued event was enqueued (from the `events_age`
    /// index).
    pub fn oldest_enqueued(&self, function: &str) -> Result<Option<i64>> {
        self.read(|c| {
            c.query_row(
                "SELECT MIN(enqueued_ms) FROM events WHERE function = ?1",
                [function],
                |r| r.get(0),
            )
        })
    }
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = apply(&mut conn, &batch);
        if let Err(e) = &result {
            tracing::error!(error = %e, ops = batch.len(), "event queue write failed");
        }
        let mut ids = result.unwrap_or_default().into_iter();
        for op in batch {
            match op {
                Op::Insert(rows, reply) => {
                    let mine: Vec<i64> = ids.by_ref().take(rows.len()).collect();
                    let _ = reply.send(if mine.len() == rows.len() {
                        Ok(mine)
                    } else {
                        Err(StoreError::Corrupt("event insert failed".into()))
                    });
                }
                Op::Finish(_, rows, reply) => {
                    let mine: Vec<i64> = ids.by_ref().take(rows.len()).collect();
                    let _ = reply.send(if mine.len() == rows.len() {
                        Ok(mine)
                    } else {
                        Err(StoreError::Corrupt("outbox write failed".into()))
                    });
                }
                Op::Barrier(reply) => {
                    let _ = reply.send(());
                }
                // After the commit, so a window never shows an uncommitted event.
                Op::Window {
                    function,
                    after,
                    limit,
                    reply,
                } => {
                    let _ = reply.send(window(&conn, &function, after, limit));
                }
                Op::Delete(_) | Op::OutboxDone(_) | Op::Reschedule { .. } => {}
            }
        }
    }
}

fn window(
    conn: &Connection,
    function: &str,
    after: Option<(i64, i64)>,
    limit: usize,
) -> Result<Vec<EventMeta>> {
    let (due, id) = after.unwrap_or((i64::MIN, i64::MIN));
    let mut stmt = conn.prepare_cached(
        "SELECT id, due_ms, enqueued_ms, attempts FROM events
         WHERE function = ?1 AND (due_ms, id) > (?2, ?3)
         ORDER BY due_ms, id LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![function, due, id, limit as i64], |r| {
        Ok(EventMeta {
            id: r.get(0)?,
            due_ms: r.get(1)?,
            enqueued_ms: r.get(2)?,
            attempts: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn apply(conn: &mut Connection, batch: &[Op]) -> Result<Vec<i64>> {
    if !batch
        .iter()
        .any(|op| !matches!(op, Op::Barrier(_) | Op::Window { .. }))
    {
        return Ok(Vec::new());
    }
    let tx = conn.transaction()?;
    let mut ids = Vec::new();
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO events(request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, trace_id, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut del = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
        let mut upd =
            tx.prepare_cached("UPDATE events SET attempts = ?2, due_ms = ?3 WHERE id = ?1")?;
        let mut out = tx.prepare_cached(
            "INSERT INTO outbox(function, target, item, created_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut out_del = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
        for op in batch {
            match op {
                Op::Insert(events, _) => {
                    for e in events {
                        ins.execute(params![
                            e.request_id,
                            e.function,
                            e.qualifier,
                            e.payload,
                            e.enqueued_ms,
                            e.attempts,
                            e.due_ms,
                            e.trace_id,
                            e.source
                        ])?;
                        ids.push(tx.last_insert_rowid());
                    }
                }
                Op::Delete(id) => {
                    del.execute([id])?;
                }
                Op::Finish(id, rows, _) => {
                    del.execute([id])?;
                    for o in rows {
                        out.execute(params![o.function, o.target, o.item, o.created_ms])?;
                        ids.push(tx.last_insert_rowid());
                    }
                }
                Op::OutboxDone(id) => {
                    out_del.execute([id])?;
                }
                Op::Reschedule {
                    id,
                    attempts,
                    due_ms,
                } => {
                    upd.execute(params![id, attempts, due_ms])?;
                }
                Op::Barrier(_) | Op::Window { .. } => {}
            }
        }
    }
    tx.commit()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(fun: &str) -> QueuedEvent {
        QueuedEvent {
            id: 0,
            request_id: "r".into(),
            function: fun.into(),
            qualifier: None,
            payload: b"{}".to_vec(),
            enqueued_ms: 1,
            attempts: 0,
            due_ms: 1,
            trace_id: None,
            source: "event".into(),
        }
    }

    #[tokio::test]
    async fn insert_reschedule_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let ids = {
            let s = EventStore::open(&path).unwrap();
            let ids = s.insert(vec![ev("a"), ev("b"), ev("a")]).await.unwrap();
            assert_eq!(ids.len(), 3);
            s.reschedule(ids[0], 1, 99);
            s.delete(ids[1]);
            s.flush().await;
            ids
        };
        let s = EventStore::open(&path).unwrap();
        assert_eq!(s.backlog().unwrap(), [("a".to_string(), 2)]);
        let w = s.due_window("a", None, 10).await.unwrap();
        // Due order: the rescheduled one (due 99) comes after the other (due 1).
        assert_eq!(w.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[2], ids[0]]);
        assert_eq!((w[1].attempts, w[1].due_ms), (1, 99));
        let full = s.load(ids[0]).unwrap().unwrap();
        assert_eq!(
            (full.function.as_str(), &full.payload[..]),
            ("a", &b"{}"[..])
        );
        assert!(s.load(ids[1]).unwrap().is_none());
        assert_eq!(s.oldest_enqueued("a").unwrap(), Some(1));
        assert_eq!(s.oldest_enqueued("b").unwrap(), None);
    }

    #[tokio::test]
    async fn finishing_an_event_writes_its_outbox_in_the_same_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let entry = |target: &str| OutboxEntry {
            id: 0,
            function: "a".into(),
            target: target.into(),
            item: "{}".into(),
            created_ms: 7,
        };
        let (ev_ids, out_ids) = {
            let s = EventStore::open(&path).unwrap();
            let ev_ids = s.insert(vec![ev("a"), ev("a")]).await.unwrap();
            let out_ids = s
                .finish(ev_ids[0], vec![entry("arn:q1"), entry("arn:q2")])
                .await
                .unwrap();
            assert_eq!(out_ids.len(), 2);
            // Acknowledged = committed: visible to a reader right away.
            assert_eq!(s.backlog().unwrap(), [("a".to_string(), 1)]);
            assert_eq!(s.outbox().unwrap().len(), 2);
            s.outbox_done(out_ids[0]);
            s.flush().await;
            (ev_ids, out_ids)
        };
        let s = EventStore::open(&path).unwrap();
        assert!(s.load(ev_ids[0]).unwrap().is_none());
        assert!(s.load(ev_ids[1]).unwrap().is_some());
        let left = s.outbox().unwrap();
        assert_eq!(
            left,
            [OutboxEntry {
                id: out_ids[1],
                ..entry("arn:q2")
            }]
        );
        // Finishing with nothing owed is a plain delete.
        assert!(s.finish(ev_ids[1], vec![]).await.unwrap().is_empty());
        assert!(s.backlog().unwrap().is_empty());
    }

    #[tokio::test]
    async fn windows_page_in_due_order_and_see_earlier_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = EventStore::open(&dir.path().join("e.db")).unwrap();
        let mut evs = Vec::new();
        for due in [5, 3, 9, 1, 7] {
            evs.push(QueuedEvent {
                due_ms: due,
                ..ev("f")
            });
        }
        let ids = s.insert(evs).await.unwrap();
        s.insert(vec![ev("g")]).await.unwrap();
        let first = s.due_window("f", None, 2).await.unwrap();
        assert_eq!(first.iter().map(|m| m.due_ms).collect::<Vec<_>>(), [1, 3]);
        let last = first.last().unwrap();
        // Sent without waiting: the next window must already reflect them.
        s.delete(ids[2]);
        s.reschedule(ids[0], 1, 2);
        let rest = s
            .due_window("f", Some((last.due_ms, last.id)), 10)
            .await
            .unwrap();
        assert_eq!(rest.iter().map(|m| m.due_ms).collect::<Vec<_>>(), [7]);
    }

    #[tokio::test]
    async fn concurrent_inserts_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let s = EventStore::open(&dir.path().join("e.db")).unwrap();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let s = s.clone();
            set.spawn(async move { s.insert(vec![ev("f")]).await.unwrap()[0] });
        }
        let mut ids = Vec::new();
        while let Some(id) = set.join_next().await {
            ids.push(id.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        assert_eq!(s.backlog().unwrap(), [("f".to_string(), 200)]);
    }

    /// A queue file made before schema versions (today's DDL, `user_version` 0, with
    /// the scheduler's tables) is adopted: its events survive and it gains the
    /// queue's indexes.
    #[tokio::test]
    async fn an_unversioned_queue_file_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL,
                    function TEXT NOT NULL, qualifier TEXT, payload BLOB NOT NULL,
                    enqueued_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                    due_ms INTEGER NOT NULL, trace_id TEXT, source TEXT NOT NULL DEFAULT 'event');
                 CREATE INDEX events_by_function ON events(function);
                 CREATE TABLE schedules (name TEXT PRIMARY KEY, expression TEXT NOT NULL,
                    timezone TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT, input TEXT,
                    enabled INTEGER NOT NULL, app TEXT NOT NULL DEFAULT '', anchor_ms INTEGER NOT NULL,
                    last_fired_ms INTEGER, pending_slot_ms INTEGER, pending_trace TEXT,
                    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
                 CREATE TABLE schedule_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 CREATE TRIGGER schedules_fired AFTER INSERT ON events
                 WHEN NEW.source = 'schedule' AND NEW.trace_id IS NOT NULL
                 BEGIN
                    UPDATE schedules SET last_fired_ms = pending_slot_ms, pending_slot_ms = NULL,
                           pending_trace = NULL WHERE pending_trace = NEW.trace_id;
                 END;
                 INSERT INTO events(request_id, function, payload, enqueued_ms, due_ms)
                 VALUES ('r1', 'f', x'7b7d', 10, 10), ('r2', 'f', x'7b7d', 11, 11);",
            )
            .unwrap();
        }
        let s = EventStore::open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        assert_eq!(
            crate::migrate::version(&c).unwrap(),
            crate::schema::EVENTS_DB.latest()
        );
        let indexes: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(indexes, ["events_age", "events_due"]);
        let w = s.due_window("f", None, 10).await.unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(s.load(w[0].id).unwrap().unwrap().request_id, "r1");
        // And a newer file than this build knows is refused, not used.
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let err = EventStore::open(&path).err().expect("refused");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
    }

    /// The backing of the dispatcher's promise: a million queued events are read a
    /// bounded window at a time (`cargo test -p nimbus-store -- --ignored million`).
    #[tokio::test]
    #[ignore = "writes a million rows (a few seconds)"]
    async fn a_million_events_are_paged_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let s = EventStore::open(&dir.path().join("e.db")).unwrap();
        for chunk in 0..100 {
            let evs = (0..10_000)
                .map(|i| QueuedEvent {
                    due_ms: chunk * 10_000 + i,
                    ..ev("f")
                })
                .collect();
            s.insert(evs).await.unwrap();
        }
        assert_eq!(s.backlog().unwrap(), [("f".to_string(), 1_000_000)]);
        let w = s
            .due_window("f", Some((499_999, i64::MAX)), 64)
            .await
            .unwrap();
        assert_eq!(w.len(), 64);
        assert_eq!(w[0].due_ms, 500_000);
    }
}

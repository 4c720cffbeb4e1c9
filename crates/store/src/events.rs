//! The durable async event queue (`InvocationType=Event`, destinations, and every
//! async trigger later).
//!
//! Events live in their own SQLite file (`events.db`, WAL, `synchronous=FULL`) so
//! queue commits never wait behind telemetry batches. One writer thread applies
//! operations in batches, one transaction per batch (group commit): an insert is
//! acknowledged only after the transaction holding it is fsynced, and a burst of
//! concurrent inserts shares one fsync.

use crate::{Result, StoreError};
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT NOT NULL,
    function     TEXT NOT NULL,
    qualifier    TEXT,
    payload      BLOB NOT NULL,
    enqueued_ms  INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due_ms       INTEGER NOT NULL,
    trace_id     TEXT,
    source       TEXT NOT NULL DEFAULT 'event'
);
CREATE INDEX IF NOT EXISTS events_by_function ON events(function);
"#;

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

enum Op {
    Insert(Vec<QueuedEvent>, oneshot::Sender<Result<Vec<i64>>>),
    Delete(i64),
    Reschedule { id: i64, attempts: u32, due_ms: i64 },
    Barrier(oneshot::Sender<()>),
}

/// Handle to the event queue's storage. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    tx: mpsc::Sender<Op>,
    path: std::path::PathBuf,
}

impl EventStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_conn(path)?;
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
            path: path.to_path_buf(),
        })
    }

    /// Every event still queued (at start-up: what a crash left behind).
    pub fn load_all(&self) -> Result<Vec<QueuedEvent>> {
        let conn = open_conn(&self.path)?;
        let mut stmt = conn.prepare(
            "SELECT id, request_id, function, qualifier, payload, enqueued_ms, attempts, due_ms, trace_id, source
             FROM events ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
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
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Durably store events; returns their ids once fsynced.
    pub async fn insert(&self, events: Vec<QueuedEvent>) -> Result<Vec<i64>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Insert(events, tx))
            .map_err(|_| StoreError::Corrupt("event writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Corrupt("event writer stopped".into()))?
    }

    pub fn delete(&self, id: i64) {
        let _ = self.tx.send(Op::Delete(id));
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
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = crate::open_durable(path)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
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
                Op::Insert(events, reply) => {
                    let mine: Vec<i64> = ids.by_ref().take(events.len()).collect();
                    let _ = reply.send(if mine.len() == events.len() {
                        Ok(mine)
                    } else {
                        Err(StoreError::Corrupt("event insert failed".into()))
                    });
                }
                Op::Barrier(reply) => {
                    let _ = reply.send(());
                }
                _ => {}
            }
        }
    }
}

fn apply(conn: &mut Connection, batch: &[Op]) -> Result<Vec<i64>> {
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
                Op::Reschedule {
                    id,
                    attempts,
                    due_ms,
                } => {
                    upd.execute(params![id, attempts, due_ms])?;
                }
                Op::Barrier(_) => {}
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
            let ids = s.insert(vec![ev("a"), ev("b"), ev("c")]).await.unwrap();
            assert_eq!(ids.len(), 3);
            s.reschedule(ids[0], 1, 99);
            s.delete(ids[1]);
            s.flush().await;
            ids
        };
        let s = EventStore::open(&path).unwrap();
        let all = s.load_all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, ids[0]);
        assert_eq!((all[0].attempts, all[0].due_ms), (1, 99));
        assert_eq!(all[1].function, "c");
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
        assert_eq!(s.load_all().unwrap().len(), 200);
    }
}

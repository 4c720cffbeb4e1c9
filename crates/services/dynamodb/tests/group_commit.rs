//! The group-commit writer under concurrency: many write requests from tokio
//! tasks (on blocking threads, as the server runs them) share transactions, and
//! each still behaves as if it ran alone, in order: counts add up, exactly one
//! conditional create wins, a failed request in the middle of a batch leaves its
//! neighbours committed, and stream records are one per effective change, in
//! commit order.

use nimbus_svc_dynamodb::api::{self, ApiError};
use nimbus_svc_dynamodb::db::{Store, StoreError};
use nimbus_svc_dynamodb::value::{AttrValue, Item};
use nimbus_svc_dynamodb::Op;
use serde_json::{json, Value};
use std::sync::Arc;

fn open() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("dynamodb.db"), "us-east-1", "123456789012").unwrap();
    (dir, Arc::new(store))
}

fn call(store: &Store, op: Op, req: Value) -> Result<Value, ApiError> {
    api::handle(store, op, &req, "http://127.0.0.1")
}

/// A table `tbl` keyed by `pk` (S) with a NEW_AND_OLD_IMAGES stream.
fn create_table(store: &Store) {
    call(
        store,
        Op::CreateTable,
        json!({
            "TableName": "tbl",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        }),
    )
    .unwrap();
}

fn count_items(store: &Store) -> i64 {
    let out = call(
        store,
        Op::Scan,
        json!({"TableName": "tbl", "Select": "COUNT"}),
    )
    .unwrap();
    assert!(out.get("LastEvaluatedKey").is_none());
    out["Count"].as_i64().unwrap()
}

fn get(store: &Store, pk: &str) -> Option<Value> {
    let out = call(
        store,
        Op::GetItem,
        json!({"TableName": "tbl", "Key": {"pk": {"S": pk}}, "ConsistentRead": true}),
    )
    .unwrap();
    out.get("Item").cloned()
}

/// Every stream record of the table, in sequence order: (seq, record).
fn stream_records(store: &Store) -> Vec<(i64, Value)> {
    store
        .read(|c| -> Result<_, StoreError> {
            let mut st = c.prepare("SELECT seq, record FROM stream_records ORDER BY seq")?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .map(|(seq, r)| (seq, serde_json::from_str(&r).unwrap()))
                .collect())
        })
        .unwrap()
}

fn put_req(pk: &str, v: i64) -> Value {
    json!({"TableName": "tbl", "Item": {"pk": {"S": pk}, "v": {"N": v.to_string()}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_of_new_items_all_land_with_one_record_each() {
    let (_dir, store) = open();
    create_table(&store);
    let before = store.writer_stats();
    let (tasks, per_task) = (48, 25);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            for i in 0..per_task {
                call(&store, Op::PutItem, put_req(&format!("k-{task}-{i}"), i)).unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let n: i64 = tasks * per_task;
    assert_eq!(count_items(&store), n);
    let after = store.writer_stats();
    assert_eq!(after.writes - before.writes, n as u64);
    assert!(after.commits - before.commits <= n as u64);
    let recs = stream_records(&store);
    assert_eq!(recs.len() as i64, n);
    assert!(recs.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(recs.iter().all(|(_, r)| r["eventName"] == "INSERT"));
    // Each writer's own records appear in the order it wrote them.
    for task in 0..tasks {
        let prefix = format!("k-{task}-");
        let mine: Vec<i64> = recs
            .iter()
            .filter_map(|(_, r)| {
                let pk = r["dynamodb"]["Keys"]["pk"]["S"].as_str()?;
                pk.strip_prefix(&prefix)?.parse().ok()
            })
            .collect();
        assert_eq!(mine, (0..per_task).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_of_one_item_add_up_in_commit_order() {
    let (_dir, store) = open();
    create_table(&store);
    call(&store, Op::PutItem, put_req("hot", 0)).unwrap();
    let (tasks, per_task) = (32, 20);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            for _ in 0..per_task {
                call(
                    &store,
                    Op::UpdateItem,
                    json!({
                        "TableName": "tbl",
                        "Key": {"pk": {"S": "hot"}},
                        "UpdateExpression": "SET v = v + :one",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }),
                )
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let n = tasks * per_task;
    assert_eq!(
        get(&store, "hot").unwrap()["v"],
        json!({"N": n.to_string()})
    );
    // One INSERT, then one MODIFY per update whose old and new images step by
    // one, in sequence order: each update saw the one committed before it.
    let recs = stream_records(&store);
    assert_eq!(recs.len(), n + 1);
    assert_eq!(recs[0].1["eventName"], "INSERT");
    for (i, (_, r)) in recs.iter().enumerate().skip(1) {
        assert_eq!(r["eventName"], "MODIFY");
        let old: i64 = r["dynamodb"]["OldImage"]["v"]["N"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let new: i64 = r["dynamodb"]["NewImage"]["v"]["N"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!((old, new), (i as i64 - 1, i as i64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_of_concurrent_conditional_creates_wins() {
    let (_dir, store) = open();
    create_table(&store);
    let contenders = 24;
    for round in 0..8 {
        let key = format!("once-{round}");
        let mut handles = Vec::new();
        for c in 0..contenders {
            let store = store.clone();
            let key = key.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                let mut req = put_req(&key, c);
                req["ConditionExpression"] = json!("attribute_not_exists(pk)");
                (c, call(&store, Op::PutItem, req))
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            let (c, r) = h.await.unwrap();
            match r {
                Ok(_) => winners.push(c),
                Err(e) => assert_eq!(e.code, "ConditionalCheckFailedException"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(
            get(&store, &key).unwrap()["v"],
            json!({"N": winners[0].to_string()})
        );
    }
    // One INSERT per round, nothing for the losers.
    assert_eq!(stream_records(&store).len(), 8);
}

/// Wait (on the writer thread, inside a write) until `n` other write requests
/// are queued behind this one, so that they all share the next transaction.
fn hold_until_queued(store: &Store, n: usize) {
    for _ in 0..6_000 {
        if store.writer_stats().queued >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the other writers never queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_request_in_a_batch_leaves_its_neighbours_committed() {
    let (_dir, store) = open();
    create_table(&store);
    let t = store.table("tbl").unwrap();
    let before = store.writer_stats();

    // The first write holds the writer until the five others are queued: the
    // writer then runs them in the same transaction, and commits once.
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let first = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            store.write(|_tx| -> Result<(), StoreError> {
                held_tx.send(()).unwrap();
                hold_until_queued(&store, 5);
                Ok(())
            })
        })
    };
    held_rx.recv().unwrap();
    let mut handles = Vec::new();
    let s = store.clone();
    handles.push(tokio::task::spawn_blocking(move || {
        call(&s, Op::PutItem, put_req("a", 1)).map(|_| ())
    }));
    let s = store.clone();
    handles.push(tokio::task::spawn_blocking(move || {
        // All or nothing: the put of "b" is undone by the failed check.
        call(
            &s,
            Op::TransactWriteItems,
            json!({"TransactItems": [
                {"Put": {"TableName": "tbl", "Item": {"pk": {"S": "b"}, "v": {"N": "1"}}}},
                {"ConditionCheck": {"TableName": "tbl", "Key": {"pk": {"S": "missing"}},
                                    "ConditionExpression": "attribute_exists(pk)"}},
            ]}),
        )
        .map(|_| ())
    }));
    let s = store.clone();
    handles.push(tokio::task::spawn_blocking(move || {
        call(&s, Op::PutItem, put_req("c", 1)).map(|_| ())
    }));
    let (s, t2) = (store.clone(), t.clone());
    handles.push(tokio::task::spawn_blocking(move || {
        // Writes an item, then fails: its savepoint is rolled back.
        s.write(|tx| -> Result<(), ApiError> {
            let key: Item = [("pk".to_string(), AttrValue::S("d".into()))].into();
            tx.put(&t2, &key, None, Some(&key), None)?;
            Err(api::validation("refused after writing"))
        })
    }));
    let s = store.clone();
    handles.push(tokio::task::spawn_blocking(move || {
        call(&s, Op::PutItem, put_req("e", 1)).map(|_| ())
    }));
    first.await.unwrap().unwrap();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().code,
        "TransactionCanceledException"
    );
    assert!(results[2].is_ok());
    assert_eq!(
        results[3].as_ref().unwrap_err().message,
        "refused after writing"
    );
    assert!(results[4].is_ok());

    let after = store.writer_stats();
    assert_eq!(after.writes - before.writes, 6);
    assert_eq!(
        after.commits - before.commits,
        1,
        "the held write and the five queued behind it share one commit"
    );
    for pk in ["a", "c", "e"] {
        assert!(get(&store, pk).is_some(), "{pk} committed");
    }
    for pk in ["b", "d"] {
        assert!(get(&store, pk).is_none(), "{pk} rolled back");
    }
    assert_eq!(count_items(&store), 3);
    let mut keys: Vec<String> = stream_records(&store)
        .iter()
        .map(|(_, r)| {
            r["dynamodb"]["Keys"]["pk"]["S"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "c", "e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
    let (_dir, store) = open();
    create_table(&store);
    let t = store.table("tbl").unwrap();
    let s = store.clone();
    let r = tokio::task::spawn_blocking(move || {
        s.write(|tx| -> Result<(), StoreError> {
            let key: Item = [("pk".to_string(), AttrValue::S("p".into()))].into();
            tx.put(&t, &key, None, Some(&key), None)?;
            panic!("boom");
        })
    })
    .await;
    assert!(r.unwrap_err().is_panic());
    assert!(get(&store, "p").is_none());
    call(&store, Op::PutItem, put_req("after", 1)).unwrap();
    assert_eq!(count_items(&store), 1);
    assert_eq!(stream_records(&store).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_inside_a_write_is_refused_not_deadlocked() {
    let (_dir, store) = open();
    let s = store.clone();
    let inner = tokio::task::spawn_blocking(move || {
        s.write(|_tx| -> Result<bool, StoreError> {
            let nested = s.write(|_tx| -> Result<(), StoreError> { Ok(()) });
            Ok(matches!(nested, Err(StoreError::Commit(_))))
        })
    })
    .await
    .unwrap();
    assert!(inner.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_database_rolled_back_fails_every_request_in_it() {
    let (_dir, store) = open();
    create_table(&store);
    let t = store.table("tbl").unwrap();
    // The held write puts "h", then waits for the next request to queue behind it
    // in the same batch; that one ends the transaction the way SQLite does on a
    // full disk or an I/O error (a ROLLBACK of everything).
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let held = {
        let (store, t) = (store.clone(), t.clone());
        tokio::task::spawn_blocking(move || {
            store.write(|tx| -> Result<(), StoreError> {
                let key: Item = [("pk".to_string(), AttrValue::S("h".into()))].into();
                tx.put(&t, &key, None, Some(&key), None)?;
                held_tx.send(()).unwrap();
                hold_until_queued(&store, 1);
                Ok(())
            })
        })
    };
    held_rx.recv().unwrap();
    let s = store.clone();
    let lost = tokio::task::spawn_blocking(move || {
        s.write(|tx| -> Result<(), StoreError> {
            tx.tx.execute_batch("ROLLBACK")?;
            Ok(())
        })
    });
    assert!(matches!(held.await.unwrap(), Err(StoreError::Commit(_))));
    assert!(matches!(lost.await.unwrap(), Err(StoreError::Commit(_))));
    assert!(get(&store, "h").is_none());
    assert!(stream_records(&store).is_empty());
    // The writer goes on with the next batch.
    call(&store, Op::PutItem, put_req("after", 1)).unwrap();
    assert_eq!(count_items(&store), 1);
}

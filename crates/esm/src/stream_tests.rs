use super::*;
use crate::store::StoredWindow;
use crate::test_support::*;
use nimbus_triggers::esm::MappingStatus;
use nimbus_triggers::sinks::Sinks;
use std::sync::Mutex;

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    stream: Arc<MemStream>,
    dispatch: Arc<FnDispatch>,
    failures: Arc<KeptQueue>,
    sinks: Arc<Sinks>,
}

impl Rig {
    fn new(shards: &[&str], dispatch: Arc<FnDispatch>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("esm.db")).unwrap();
        let failures = Arc::new(KeptQueue::default());
        let sinks = Arc::new(Sinks::new(dispatch.clone()));
        sinks.register_queues(failures.clone());
        Rig {
            _dir: dir,
            store,
            stream: MemStream::new(shards),
            dispatch,
            failures,
            sinks,
        }
    }

    fn source(&self) -> StreamSource {
        StreamSource::new(self.stream.clone(), self.store.clone())
    }

    fn spec(&self, f: impl FnOnce(&mut MappingSpec)) -> Arc<MappingSpec> {
        let mut s = MappingSpec {
            uuid: "m1".into(),
            function_name: "f".into(),
            event_source_arn: STREAM.into(),
            starting_position: Some("TRIM_HORIZON".into()),
            enabled: true,
            ..Default::default()
        };
        self.source().fill_defaults(&mut s);
        f(&mut s);
        Arc::new(s)
    }

    fn run(&self, spec: Arc<MappingSpec>) -> tokio::task::JoinHandle<()> {
        self.source().run(
            spec,
            MappingContext {
                dispatch: self.dispatch.clone(),
                sinks: self.sinks.clone(),
                status: Arc::new(MappingStatus::default()),
                region: "us-east-1".into(),
            },
        )
    }

    /// Wait until the shard's checkpoint is `seq` (written after the invoke).
    async fn wait_checkpoint(&self, shard: &str, seq: &str) {
        for _ in 0..3000 {
            if self.checkpoint(shard).as_deref() == Some(seq) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("checkpoint of {shard} never reached {seq}");
    }

    fn checkpoint(&self, shard: &str) -> Option<String> {
        self.store
            .checkpoints("m1")
            .unwrap()
            .get(shard)
            .and_then(|c| c.sequence_number.clone())
    }
}

fn total(evs: &[Value]) -> usize {
    evs.iter().map(|e| datas_of(e).len()).sum()
}

#[tokio::test]
async fn batches_in_order_and_resumes_after_its_checkpoint() {
    let rig = Rig::new(&["shard-0"], FnDispatch::ok());
    for i in 0..5 {
        rig.stream.put("shard-0", "k", &format!("r{i}"));
    }
    let task = rig.run(rig.spec(|s| s.batch_size = Some(2)));
    rig.dispatch.wait_for(|e| total(e) == 5).await;
    assert_eq!(rig.dispatch.datas(), ["r0", "r1", "r2", "r3", "r4"]);
    // BatchSize 2: no event holds more.
    assert!(rig.dispatch.events().iter().all(|e| datas_of(e).len() <= 2));
    // The checkpoint follows the last successful batch; give it its write.
    let last = rig.stream.put("shard-0", "k", "r5");
    rig.dispatch.wait_for(|e| total(e) == 6).await;
    rig.wait_checkpoint("shard-0", &last).await;
    task.abort();
    let _ = task.await;
    // A new run of the mapping (as after a restart) resumes after it: nothing
    // is sent twice, nothing skipped.
    rig.stream.put("shard-0", "k", "r6");
    let task = rig.run(rig.spec(|s| s.batch_size = Some(2)));
    rig.dispatch.wait_for(|e| total(e) == 7).await;
    assert_eq!(
        rig.dispatch.datas(),
        ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]
    );
    task.abort();
}

#[tokio::test]
async fn latest_skips_what_was_there_before() {
    let rig = Rig::new(&["shard-0"], FnDispatch::ok());
    rig.stream
        .put_at("shard-0", "k", "old", nimbus_core::now_ms() - 60_000);
    let task = rig.run(rig.spec(|s| s.starting_position = Some("LATEST".into())));
    // Arrives after the mapping started, whenever the poller pinned it.
    rig.stream
        .put_at("shard-0", "k", "new", nimbus_core::now_ms() + 5_000);
    rig.dispatch.wait_for(|e| total(e) == 1).await;
    assert_eq!(rig.dispatch.datas(), ["new"]);
    task.abort();
}

#[tokio::test]
async fn exhausted_retries_go_to_the_on_failure_destination() {
    let d = FnDispatch::new(|ev| {
        if datas_of(ev).iter().any(|d| d == "bad") {
            Err("boom".into())
        } else {
            Ok(Value::Null)
        }
    });
    let rig = Rig::new(&["shard-0"], d);
    let bad = rig.stream.put("shard-0", "k", "bad");
    let task = rig.run(rig.spec(|s| {
        s.maximum_retry_attempts = Some(1);
        s.on_failure_destination = Some(DLQ.into());
    }));
    let recs = rig.failures.wait_for(1).await;
    let r = &recs[0];
    assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(
        r["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:f"
    );
    assert_eq!(r["responseContext"]["functionError"], "Unhandled");
    assert_eq!(r["version"], "1.0");
    let info = &r["KinesisBatchInfo"];
    assert_eq!(info["shardId"], "shard-0");
    assert_eq!(info["startSequenceNumber"], bad);
    assert_eq!(info["endSequenceNumber"], bad);
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["streamArn"], STREAM);
    // One try and one retry, then the stream moves on.
    rig.stream.put("shard-0", "k", "good");
    rig.dispatch
        .wait_for(|e| e.iter().any(|e| datas_of(e) == ["good"]))
        .await;
    assert_eq!(rig.dispatch.datas(), ["bad", "bad", "good"]);
    task.abort();
}

#[tokio::test]
async fn bisection_isolates_the_bad_record() {
    let d = FnDispatch::new(|ev| {
        if datas_of(ev).iter().any(|d| d == "bad") {
            Err("boom".into())
        } else {
            Ok(Value::Null)
        }
    });
    let rig = Rig::new(&["shard-0"], d);
    for x in ["a", "b", "bad", "c"] {
        rig.stream.put("shard-0", "k", x);
    }
    let task = rig.run(rig.spec(|s| {
        s.maximum_retry_attempts = Some(0);
        s.bisect_batch_on_function_error = Some(true);
        s.on_failure_destination = Some(DLQ.into());
    }));
    let recs = rig.failures.wait_for(1).await;
    assert_eq!(recs[0]["KinesisBatchInfo"]["batchSize"], 1);
    rig.dispatch
        .wait_for(|e| e.iter().any(|e| datas_of(e) == ["c"]))
        .await;
    let ok: Vec<Vec<String>> = rig
        .dispatch
        .events()
        .iter()
        .map(datas_of)
        .filter(|d| !d.contains(&"bad".to_string()))
        .collect();
    assert_eq!(ok, [vec!["a", "b"], vec!["c"]]);
    assert_eq!(rig.failures.bodies.lock().unwrap().len(), 1);
    task.abort();
}

#[tokio::test]
async fn partial_batch_failure_retries_from_the_failed_record() {
    let failed_once = Arc::new(Mutex::new(false));
    let f2 = failed_once.clone();
    let d = FnDispatch::new(move |ev| {
        let recs = ev["Records"].as_array().unwrap();
        let mut done = f2.lock().unwrap();
        if !*done && recs.len() == 4 {
            *done = true;
            let seq = recs[2]["kinesis"]["sequenceNumber"].clone();
            return Ok(json!({ "batchItemFailures": [{ "itemIdentifier": seq }] }));
        }
        Ok(json!({ "batchItemFailures": [] }))
    });
    let rig = Rig::new(&["shard-0"], d);
    for x in ["a", "b", "c", "d"] {
        rig.stream.put("shard-0", "k", x);
    }
    let task = rig.run(rig.spec(|s| {
        s.function_response_types = vec!["ReportBatchItemFailures".into()];
    }));
    rig.dispatch.wait_for(|e| e.len() == 2).await;
    let evs: Vec<Vec<String>> = rig.dispatch.events().iter().map(datas_of).collect();
    assert_eq!(evs, [vec!["a", "b", "c", "d"], vec!["c", "d"]]);
    task.abort();
}

#[tokio::test]
async fn filters_see_kinesis_data_as_json() {
    let rig = Rig::new(&["shard-0"], FnDispatch::ok());
    rig.stream.put("shard-0", "k", r#"{"temp": 10}"#);
    rig.stream.put("shard-0", "k", "not json");
    rig.stream.put("shard-0", "k", r#"{"temp": 40}"#);
    let task = rig.run(rig.spec(|s| {
        s.filter_patterns = vec![r#"{"data": {"temp": [40]}}"#.into()];
    }));
    rig.dispatch.wait_for(|e| total(e) == 1).await;
    rig.stream.put("shard-0", "k", r#"{"temp": 40, "n": 2}"#);
    rig.dispatch.wait_for(|e| total(e) == 2).await;
    assert_eq!(
        rig.dispatch.datas(),
        [r#"{"temp": 40}"#, r#"{"temp": 40, "n": 2}"#]
    );
    task.abort();
}

#[tokio::test]
async fn a_child_shard_waits_for_its_parent() {
    let rig = Rig::new(&["parent"], FnDispatch::ok());
    rig.stream.put("parent", "k", "p1");
    rig.stream.put("parent", "k", "p2");
    rig.stream.close("parent");
    rig.stream.add_shard("child", Some("parent"));
    rig.stream.put("child", "k", "c1");
    let task = rig.run(rig.spec(|s| s.batch_size = Some(1)));
    rig.dispatch.wait_for(|e| total(e) == 3).await;
    assert_eq!(rig.dispatch.datas(), ["p1", "p2", "c1"]);
    let cps = rig.store.checkpoints("m1").unwrap();
    assert!(
        cps["parent"].done,
        "the parent is finished before the child starts"
    );
    task.abort();
}

#[tokio::test]
async fn parallel_lanes_keep_each_keys_order() {
    let rig = Rig::new(&["shard-0"], FnDispatch::ok());
    for i in 0..40 {
        rig.stream.put(
            "shard-0",
            &format!("key{}", i % 4),
            &format!("key{}-{i}", i % 4),
        );
    }
    let task = rig.run(rig.spec(|s| {
        s.parallelization_factor = Some(4);
        s.batch_size = Some(10);
    }));
    rig.dispatch.wait_for(|e| total(e) == 40).await;
    let datas = rig.dispatch.datas();
    for k in 0..4 {
        let of_key: Vec<usize> = datas
            .iter()
            .filter(|d| d.starts_with(&format!("key{k}-")))
            .map(|d| d.split('-').nth(1).unwrap().parse().unwrap())
            .collect();
        let mut sorted = of_key.clone();
        sorted.sort();
        assert_eq!(of_key, sorted, "key{k} out of order");
        assert_eq!(of_key.len(), 10);
    }
    task.abort();
}

#[tokio::test]
async fn tumbling_windows_carry_state_and_close() {
    let d = FnDispatch::new(|ev| {
        let n = ev["state"]["count"].as_u64().unwrap_or(0) + datas_of(ev).len() as u64;
        Ok(json!({ "state": { "count": n } }))
    });
    let rig = Rig::new(&["shard-0"], d);
    // Two records in one (long past) window, one in the next.
    let w = 60_000;
    let base = (nimbus_core::now_ms() / w - 10) * w;
    rig.stream.put_at("shard-0", "k", "a", base + 1);
    rig.stream.put_at("shard-0", "k", "b", base + 2);
    rig.stream.put_at("shard-0", "k", "c", base + w + 1);
    rig.stream.close("shard-0");
    let task = rig.run(rig.spec(|s| {
        s.tumbling_window_in_seconds = Some(60);
        s.batch_size = Some(1);
    }));
    rig.dispatch
        .wait_for(|e| {
            e.iter()
                .filter(|e| e["isFinalInvokeForWindow"] == true)
                .count()
                == 2
        })
        .await;
    let evs = rig.dispatch.events();
    let shape: Vec<(Vec<String>, u64, bool)> = evs
        .iter()
        .map(|e| {
            (
                datas_of(e),
                e["state"]["count"].as_u64().unwrap_or(0),
                e["isFinalInvokeForWindow"] == true,
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        shape,
        [
            (s(&["a"]), 0, false),
            (s(&["b"]), 1, false),
            (s(&[]), 2, true),
            (s(&["c"]), 0, false),
            (s(&[]), 1, true),
        ]
    );
    assert_eq!(evs[0]["shardId"], "shard-0");
    assert_eq!(evs[0]["eventSourceARN"], STREAM);
    assert_eq!(evs[0]["window"]["start"], nimbus_core::format_ms(base, "Z"));
    task.abort();
}

#[tokio::test]
async fn a_tumbling_windows_state_survives_a_restart() {
    let d = FnDispatch::new(|ev| {
        let n = ev["state"]["count"].as_u64().unwrap_or(0) + datas_of(ev).len() as u64;
        Ok(json!({ "state": { "count": n } }))
    });
    let rig = Rig::new(&["shard-0"], d);
    // A window that is still open for the whole test.
    let w = 900_000;
    let base = (nimbus_core::now_ms() / w + 2) * w;
    rig.stream.put_at("shard-0", "k", "a", base + 1);
    let b = rig.stream.put_at("shard-0", "k", "b", base + 2);
    let spec = rig.spec(|s| {
        s.tumbling_window_in_seconds = Some(900);
        s.batch_size = Some(1);
    });
    let task = rig.run(spec.clone());
    rig.dispatch.wait_for(|e| total(e) == 2).await;
    rig.wait_checkpoint("shard-0", &b).await;
    task.abort();
    let _ = task.await;
    assert_eq!(
        rig.store.window("m1", "shard-0").unwrap(),
        Some(StoredWindow {
            start_ms: base,
            state: r#"{"count":2}"#.into()
        })
    );
    // The next run carries the window's state on, then closes it.
    rig.stream.put_at("shard-0", "k", "c", base + 3);
    rig.stream.close("shard-0");
    let task = rig.run(spec);
    rig.dispatch
        .wait_for(|e| e.iter().any(|e| e["isFinalInvokeForWindow"] == true))
        .await;
    let evs = rig.dispatch.events();
    let counts: Vec<(Vec<String>, u64)> = evs
        .iter()
        .map(|e| (datas_of(e), e["state"]["count"].as_u64().unwrap_or(0)))
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        counts,
        [(s(&["a"]), 0), (s(&["b"]), 1), (s(&["c"]), 2), (s(&[]), 3)]
    );
    for _ in 0..3000 {
        if rig.store.window("m1", "shard-0").unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rig.store.window("m1", "shard-0").unwrap(), None);
    task.abort();
}

#[test]
fn item_failure_answers() {
    let rec = |s: &str| ShardRecord {
        sequence_number: s.into(),
        partition_key: "k".into(),
        approximate_arrival_ms: 0,
        size_bytes: 0,
        event_record: Value::Null,
    };
    let batch = [rec("1"), rec("2"), rec("3")];
    assert_eq!(first_failed(&json!(null), &batch), Ok(None));
    assert_eq!(
        first_failed(&json!({"batchItemFailures": []}), &batch),
        Ok(None)
    );
    assert_eq!(
        first_failed(
            &json!({"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]}),
            &batch
        ),
        Ok(Some(1))
    );
    assert_eq!(
        first_failed(
            &json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            &batch
        ),
        Err(())
    );
    assert_eq!(
        first_failed(
            &json!({"batchItemFailures": [{"itemIdentifier": "9"}]}),
            &batch
        ),
        Err(())
    );
}

//! The SQS poller against the real queue core, with a small in-test `Dispatch`
//! standing in for the invoker (it records each event and answers as told).

use super::*;
use crate::core::tests::{attrs, msg, open};
use nimbus_dispatch::{BoxFuture, Dispatch, FunctionLookup, InvokeResult};
use nimbus_triggers::esm::MappingStatus;
use nimbus_triggers::sinks::Sinks;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

type Answer = Box<dyn Fn(&Value, usize) -> Result<InvokeResult, InvokeError> + Send + Sync>;

struct TestDispatch {
    events: mpsc::UnboundedSender<Value>,
    answer: Answer,
    calls: AtomicUsize,
    triggers: Mutex<Vec<nimbus_core::Trigger>>,
    /// Invokes running now, and the most ever at once.
    running: AtomicUsize,
    peak: AtomicUsize,
    /// Invokes wait for a permit here (the test hands them out).
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

fn ok(payload: &str) -> Result<InvokeResult, InvokeError> {
    Ok(InvokeResult {
        request_id: "r".into(),
        executed_version: "$LATEST".into(),
        payload: bytes::Bytes::from(payload.to_string()),
        function_error: false,
        outcome: nimbus_core::Outcome::Success,
        log_tail: String::new(),
        cold: false,
        trace_id: String::new(),
    })
}

fn function_error() -> Result<InvokeResult, InvokeError> {
    let mut r = ok(r#"{"errorMessage":"boom"}"#)?;
    r.function_error = true;
    r.outcome = nimbus_core::Outcome::FunctionError;
    Ok(r)
}

impl FunctionLookup for TestDispatch {
    fn function(&self, _name: &str) -> Option<Arc<nimbus_core::FunctionConfig>> {
        None
    }
    fn qualifier_exists(&self, name: &str, _q: Option<&str>) -> bool {
        name == "fn"
    }
    fn region(&self) -> &str {
        "us-east-1"
    }
}

impl Dispatch for TestDispatch {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'_, nimbus_dispatch::Result<InvokeResult>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            self.triggers.lock().unwrap().push(inv.trigger);
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            if let Some(g) = &self.gate {
                drop(g.acquire().await.unwrap());
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            let event: Value = serde_json::from_slice(&inv.payload).unwrap();
            let r = (self.answer)(&event, n);
            let _ = self.events.send(event);
            r
        })
    }
    fn enqueue(
        &self,
        _inv: Invocation,
        _source: &'static str,
    ) -> BoxFuture<'_, nimbus_dispatch::Result<String>> {
        Box::pin(async { Err(InvokeError::Service("not in this test".into())) })
    }
}

struct Harness {
    sqs: Arc<Sqs>,
    source: SqsMappingSource,
    dispatch: Arc<TestDispatch>,
    events: mpsc::UnboundedReceiver<Value>,
    _dir: tempfile::TempDir,
}

fn harness(answer: Answer) -> Harness {
    harness_with(answer, None)
}

fn harness_with(answer: Answer, gate: Option<Arc<tokio::sync::Semaphore>>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let sqs = open(dir.path());
    let (tx, rx) = mpsc::unbounded_channel();
    let dispatch = Arc::new(TestDispatch {
        events: tx,
        answer,
        calls: AtomicUsize::new(0),
        triggers: Mutex::new(Vec::new()),
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        gate,
    });
    Harness {
        source: SqsMappingSource::new(sqs.clone()),
        sqs,
        dispatch,
        events: rx,
        _dir: dir,
    }
}

impl Harness {
    fn spec(&self, queue: &str, f: impl FnOnce(&mut MappingSpec)) -> Arc<MappingSpec> {
        let mut spec = MappingSpec {
            uuid: "m-1".into(),
            function_name: "fn".into(),
            event_source_arn: self.sqs.arn(queue),
            enabled: true,
            ..Default::default()
        };
        f(&mut spec);
        self.source.fill_defaults(&mut spec);
        self.source.validate(&spec).unwrap();
        Arc::new(spec)
    }

    fn run(&self, spec: Arc<MappingSpec>) -> tokio::task::JoinHandle<()> {
        let dispatch: Arc<dyn Dispatch> = self.dispatch.clone();
        self.source.run(
            spec,
            MappingContext {
                dispatch: dispatch.clone(),
                sinks: Arc::new(Sinks::new(dispatch)),
                status: Arc::new(MappingStatus::default()),
                region: "us-east-1".into(),
            },
        )
    }
}

/// Wait (bounded) until `cond` holds: the poller deletes after its invoke returns.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_batch_is_lambdas_sqs_event_and_is_deleted_on_success() {
    let mut h = harness(Box::new(|_, _| ok("null")));
    h.sqs
        .create_queue("q", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let task = h.run(h.spec("q", |_| {}));
    let mut m = msg("hello");
    m.attrs.insert(
        "color".into(),
        crate::model::MsgAttr {
            data_type: "String".into(),
            string_value: Some("blue".into()),
            binary_value: None,
        },
    );
    let sent = h
        .sqs
        .send("q", vec![m])
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    let event = h.events.recv().await.unwrap();
    let r = &event["Records"][0];
    assert_eq!(r["messageId"], sent.message_id.as_str());
    assert_eq!(r["body"], "hello");
    assert_eq!(r["md5OfBody"], "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(r["eventSource"], "aws:sqs");
    assert_eq!(r["eventSourceARN"], h.sqs.arn("q"));
    assert_eq!(r["awsRegion"], "us-east-1");
    assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
    assert!(r["attributes"]["SentTimestamp"].is_string());
    assert_eq!(r["messageAttributes"]["color"]["stringValue"], "blue");
    assert_eq!(r["messageAttributes"]["color"]["dataType"], "String");
    assert!(r["receiptHandle"].is_string());
    until("the delete", || h.sqs.peek("q", 10).unwrap().is_empty()).await;
    assert_eq!(
        h.dispatch.triggers.lock().unwrap()[0],
        nimbus_core::Trigger::Sqs
    );
    task.abort();
}

#[tokio::test]
async fn reported_item_failures_alone_return_to_the_queue() {
    let mut h = harness(Box::new(|event, _| {
        let fail: Vec<Value> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["body"] == "bad")
            .map(|r| json!({"itemIdentifier": r["messageId"]}))
            .collect();
        ok(&json!({ "batchItemFailures": fail }).to_string())
    }));
    h.sqs
        .create_queue("q", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    h.sqs
        .send("q", vec![msg("good1"), msg("bad"), msg("good2")])
        .await
        .unwrap();
    let task = h.run(h.spec("q", |s| {
        s.function_response_types = vec!["ReportBatchItemFailures".into()];
    }));
    let event = h.events.recv().await.unwrap();
    assert_eq!(event["Records"].as_array().unwrap().len(), 3);
    until("the two deletes", || {
        h.sqs.peek("q", 10).unwrap().len() == 1
    })
    .await;
    let left = h.sqs.peek("q", 10).unwrap();
    assert_eq!(left[0].body, "bad");
    assert_eq!(left[0].state, "in_flight");
    task.abort();
}

#[tokio::test]
async fn a_failing_batch_is_dead_lettered_after_max_receive_count() {
    let mut h = harness(Box::new(|_, _| function_error()));
    h.sqs
        .create_queue("dlq", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":2}}"#,
        h.sqs.arn("dlq")
    );
    h.sqs
        .create_queue(
            "q",
            &attrs(&[("RedrivePolicy", &policy), ("VisibilityTimeout", "1")]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    h.sqs.send("q", vec![msg("poison")]).await.unwrap();
    let task = h.run(h.spec("q", |_| {}));
    for n in 1..=2 {
        let e = h.events.recv().await.unwrap();
        assert_eq!(
            e["Records"][0]["attributes"]["ApproximateReceiveCount"],
            n.to_string()
        );
    }
    until("the dead letter", || {
        h.sqs.peek("dlq", 10).unwrap().len() == 1
    })
    .await;
    assert!(h.sqs.peek("q", 10).unwrap().is_empty());
    assert_eq!(h.dispatch.calls.load(Ordering::SeqCst), 2);
    task.abort();
}

#[tokio::test]
async fn filtered_out_messages_are_deleted_without_an_invoke() {
    let mut h = harness(Box::new(|_, _| ok("null")));
    h.sqs
        .create_queue("q", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let task = h.run(h.spec("q", |s| {
        s.filter_patterns = vec![r#"{"body": {"kind": ["order"]}}"#.into()];
    }));
    h.sqs
        .send("q", vec![msg(r#"{"kind":"noise"}"#)])
        .await
        .unwrap();
    h.sqs
        .send("q", vec![msg(r#"{"kind":"order"}"#)])
        .await
        .unwrap();
    let e = h.events.recv().await.unwrap();
    assert_eq!(e["Records"].as_array().unwrap().len(), 1);
    assert_eq!(e["Records"][0]["body"], r#"{"kind":"order"}"#);
    until("both gone", || h.sqs.peek("q", 10).unwrap().is_empty()).await;
    assert_eq!(h.dispatch.calls.load(Ordering::SeqCst), 1);
    task.abort();
}

/// A deep backlog with invokes that do not end: the pollers grow past Lambda's
/// initial 5 (one more each time a batch leaves a backlog behind, at the growth
/// rate) up to `MaximumConcurrency`, never past it; every message is handled.
async fn pollers_scale_with_the_backlog(max: Option<u32>, reach: usize) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut h = harness_with(Box::new(|_, _| ok("null")), Some(gate.clone()));
    h.sqs
        .create_queue("deep", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    for chunk in 0..10 {
        let batch = (0..10)
            .map(|i| msg(&format!("m{}", chunk * 10 + i)))
            .collect();
        h.sqs.send("deep", batch).await.unwrap();
    }
    let task = h.run(h.spec("deep", |s| {
        s.batch_size = Some(1);
        s.maximum_concurrency = max;
    }));
    let d = h.dispatch.clone();
    until("the pollers to grow", || {
        d.running.load(Ordering::SeqCst) >= reach
    })
    .await;
    gate.add_permits(1_000_000);
    let mut seen = BTreeSet::new();
    while seen.len() < 100 {
        let e = h.events.recv().await.unwrap();
        seen.insert(e["Records"][0]["body"].as_str().unwrap().to_string());
    }
    until("the deletes", || h.sqs.peek("deep", 10).unwrap().is_empty()).await;
    let peak = h.dispatch.peak.load(Ordering::SeqCst);
    assert!(peak >= reach, "{peak}");
    if let Some(m) = max {
        assert!(
            peak <= m as usize,
            "{peak} concurrent batches past MaximumConcurrency {m}"
        );
    }
    task.abort();
}

#[tokio::test]
async fn pollers_grow_past_five_with_a_deep_backlog() {
    pollers_scale_with_the_backlog(None, 12).await;
}

#[tokio::test]
async fn pollers_stop_at_maximum_concurrency() {
    pollers_scale_with_the_backlog(Some(8), 8).await;
}

#[tokio::test]
async fn throttles_are_retried_and_drop_nothing() {
    let mut h = harness(Box::new(|_, n| {
        if n < 2 {
            Err(InvokeError::Throttled(
                nimbus_dispatch::ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded,
            ))
        } else {
            ok("null")
        }
    }));
    h.sqs
        .create_queue("q", &BTreeMap::new(), &BTreeMap::new())
        .await
        .unwrap();
    let task = h.run(h.spec("q", |_| {}));
    h.sqs.send("q", vec![msg("m")]).await.unwrap();
    for _ in 0..3 {
        let e = h.events.recv().await.unwrap();
        assert_eq!(e["Records"][0]["body"], "m");
    }
    until("the delete", || h.sqs.peek("q", 10).unwrap().is_empty()).await;
    assert_eq!(h.dispatch.calls.load(Ordering::SeqCst), 3);
    task.abort();
}

#[tokio::test]
async fn fifo_batches_keep_group_order() {
    let mut h = harness(Box::new(|_, _| ok("null")));
    h.sqs
        .create_queue(
            "f.fifo",
            &attrs(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let batch: Vec<_> = (0..6)
        .map(|i| crate::core::SendInput {
            group_id: Some("g".into()),
            ..msg(&format!("m{i}"))
        })
        .collect();
    h.sqs.send("f.fifo", batch).await.unwrap();
    let task = h.run(h.spec("f.fifo", |s| s.batch_size = Some(4)));
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let e = h.events.recv().await.unwrap();
        for r in e["Records"].as_array().unwrap() {
            seen.push(r["body"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    task.abort();
}

#[test]
fn settings_are_validated_as_lambda_does() {
    let h = harness(Box::new(|_, _| ok("null")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        h.sqs
            .create_queue("q", &BTreeMap::new(), &BTreeMap::new())
            .await
            .unwrap();
        h.sqs
            .create_queue("f.fifo", &attrs(&[("FifoQueue", "true")]), &BTreeMap::new())
            .await
            .unwrap();
    });
    let spec = |arn: String, batch: u32, window: u32| {
        let mut s = MappingSpec {
            event_source_arn: arn,
            batch_size: Some(batch),
            maximum_batching_window_in_seconds: Some(window),
            ..Default::default()
        };
        h.source.fill_defaults(&mut s);
        s
    };
    assert!(h.source.accepts(&h.sqs.arn("q")));
    assert!(!h.source.accepts("arn:aws:kinesis:us-east-1:1:stream/s"));
    assert!(h.source.validate(&spec(h.sqs.arn("q"), 10, 0)).is_ok());
    assert!(h.source.validate(&spec(h.sqs.arn("q"), 100, 1)).is_ok());
    let e = h
        .source
        .validate(&spec(h.sqs.arn("q"), 100, 0))
        .unwrap_err();
    assert!(e.contains("Maximum batch window"), "{e}");
    assert!(h.source.validate(&spec(h.sqs.arn("q"), 10_001, 5)).is_err());
    assert!(h
        .source
        .validate(&spec(h.sqs.arn("f.fifo"), 11, 5))
        .is_err());
    let e = h
        .source
        .validate(&spec(h.sqs.arn("missing"), 10, 0))
        .unwrap_err();
    assert!(e.contains("NonExistentQueue"), "{e}");
    let mut s = MappingSpec::default();
    h.source.fill_defaults(&mut s);
    assert_eq!(s.batch_size, Some(10));
}

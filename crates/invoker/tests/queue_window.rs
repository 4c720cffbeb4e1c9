//! The async queue keeps its events in the store, not in memory: with a deep backlog
//! for a throttled function the dispatcher holds at most a window of event metadata,
//! however many events are queued, and the backlog's depth is still reported whole.
//!
//! `queued_events_stay_in_the_store` runs 20,000 events; the same check over a
//! million is `cargo test -p nimbus-invoker --test queue_window -- --ignored`.

use bytes::Bytes;
use nimbus_invoker::queue::{QueueSettings, WINDOW};
use nimbus_invoker::{AsyncQueue, Invocation, Invoker, InvokerSettings};
use nimbus_runtime::{Pool, PoolSettings};
use nimbus_store::{BlobStore, Db, EventStore, QueuedEvent};
use std::io::Write;
use std::time::Duration;

fn zip_of(name: &str, text: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    z.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(text.as_bytes()).unwrap();
    z.finish().unwrap();
    buf.into_inner()
}

async fn invoker(data: &std::path::Path) -> Invoker {
    let db = Db::open(&data.join("nimbus.db")).unwrap();
    let blobs = BlobStore::open(data).unwrap();
    let telemetry = nimbus_telemetry::Telemetry::start(db.clone());
    let pool = Pool::new(
        PoolSettings {
            keep_alive: Duration::from_secs(60),
            data_dir: data.to_path_buf(),
            runtime_dir: data.join("runtimes"),
            region: "us-east-1".into(),
            server_id: "queuetest".into(),
            scale_up: Default::default(),
            spares: 0,
            isolation: nimbus_runtime::isolation::IsolationMode::Off,
            services: Default::default(),
        },
        telemetry.clone(),
    )
    .unwrap();
    let invoker = Invoker::open(
        db,
        blobs.clone(),
        pool,
        telemetry,
        InvokerSettings {
            region: "us-east-1".into(),
            account_concurrency: 4,
        },
    )
    .await
    .unwrap();
    let bundle = blobs
        .put_zip(
            &zip_of("app.py", "def handler(e, c):\n    return e\n"),
            1 << 20,
        )
        .unwrap();
    // Reserved concurrency 0: every event is throttled and stays queued.
    let mut spec =
        nimbus_core::FunctionSpec::new("parked", "python3.12".parse().unwrap(), "app.handler");
    spec.reserved_concurrency = Some(0);
    invoker.deploy(spec, bundle.sha256).await.unwrap();
    invoker
}

async fn backlog_is_paged(events: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let invoker = invoker(data).await;
    let store = EventStore::open(&data.join("events.db")).unwrap();
    let mut left = events;
    while left > 0 {
        let n = left.min(10_000);
        left -= n;
        let batch = (0..n)
            .map(|i| QueuedEvent {
                id: 0,
                request_id: format!("r{left}-{i}"),
                function: "parked".into(),
                qualifier: None,
                payload: br#"{"small":true}"#.to_vec(),
                enqueued_ms: nimbus_core::now_ms(),
                attempts: 0,
                due_ms: nimbus_core::now_ms(),
                trace_id: None,
                source: "event".into(),
            })
            .collect();
        store.insert(batch).await.unwrap();
    }
    let queue = AsyncQueue::start(
        store,
        invoker.clone(),
        QueueSettings {
            retry_base: Duration::from_millis(100),
        },
    )
    .unwrap();
    // The dispatcher pages a window in, finds the function throttled and parks it.
    for _ in 0..600 {
        if queue.resident() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queue.resident() > 0, "the dispatcher read a window");
    // More events through the front door while the backlog is deep.
    for i in 0..500 {
        queue
            .enqueue(
                Invocation {
                    function: "parked".into(),
                    qualifier: None,
                    payload: Bytes::from(format!("{{\"n\":{i}}}")),
                    trigger: nimbus_core::Trigger::Event,
                    client_context: None,
                    trace_id: None,
                },
                "event",
            )
            .await
            .unwrap();
    }
    let stats = queue.stats("parked");
    assert_eq!(stats.depth, events as u64 + 500);
    assert!(stats.oldest_age_ms >= 0);
    assert_eq!(queue.all_stats()["parked"].depth, events as u64 + 500);
    // Whatever the depth, memory holds one window of metadata.
    let resident = queue.resident();
    assert!(
        resident <= WINDOW,
        "{resident} events resident for a backlog of {}",
        events + 500
    );
    // Nothing ran: the throttle held them all.
    assert_eq!(invoker.admission().in_flight("parked"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_events_stay_in_the_store() {
    backlog_is_paged(20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "queues a million events (about 10 s and 100 MB of disk)"]
async fn a_million_queued_events_stay_in_the_store() {
    backlog_is_paged(1_000_000).await;
}

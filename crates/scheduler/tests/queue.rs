//! A scheduled run through the real async queue and a real Python function, on a
//! fake clock: the event reaches the function, a function error is retried by the
//! queue (same request id, same scheduled event), and the slot is recorded as fired
//! by the queue's own insert. Skipped when the host has no `python3`.

use nimbus_invoker::queue::QueueSettings;
use nimbus_invoker::{AsyncQueue, Invoker, InvokerSettings, LocalDispatch};
use nimbus_runtime::{Pool, PoolSettings};
use nimbus_scheduler::{FakeClock, ScheduleSpec, ScheduleStore, Scheduler, SchedulerSettings};
use nimbus_store::{BlobStore, Db, EventStore};
use nimbus_triggers::DispatchTarget;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

const BOOTSTRAP: &str = include_str!("../../../runtimes/python/bootstrap.py");

/// Fails the first attempt of each event (by its `id`), succeeds on the retry.
const FAIL_FIRST: &str = r#"
import json, os
def handler(event, context):
    path = os.environ["OUT"]
    seen = []
    if os.path.exists(path):
        seen = [json.loads(l)["event"]["id"] for l in open(path) if l.strip()]
    with open(path, "a") as f:
        f.write(json.dumps({"rid": context.aws_request_id, "event": event}) + "\n")
    if event["id"] not in seen:
        raise RuntimeError("first attempt fails")
    return {"ok": True}
"#;

/// 2024-01-01T00:00:00Z
const T0: i64 = 1_704_067_200_000;

fn zip_of(name: &str, text: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    z.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(text.as_bytes()).unwrap();
    z.finish().unwrap();
    buf.into_inner()
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scheduled_run_is_retried_by_the_async_queue() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no python3 on this host");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let runtime_dir = data.join("runtimes");
    std::fs::create_dir_all(runtime_dir.join("python")).unwrap();
    std::fs::write(runtime_dir.join("python/bootstrap.py"), BOOTSTRAP).unwrap();

    let db = Db::open(&data.join("nimbus.db")).unwrap();
    let blobs = BlobStore::open(&data).unwrap();
    let telemetry = nimbus_telemetry::Telemetry::start(db.clone());
    let pool = Pool::new(
        PoolSettings {
            keep_alive: Duration::from_secs(60),
            data_dir: data.clone(),
            runtime_dir,
            region: "us-east-1".into(),
            server_id: "schedtest".into(),
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
        pool.clone(),
        telemetry,
        InvokerSettings {
            region: "us-east-1".into(),
            account_concurrency: 4,
        },
    )
    .await
    .unwrap();
    let bundle = blobs
        .put_zip(&zip_of("app.py", FAIL_FIRST), 1 << 20)
        .unwrap();
    let out = data.join("out.jsonl");
    let mut spec =
        nimbus_core::FunctionSpec::new("flaky", "python3.12".parse().unwrap(), "app.handler");
    spec.environment
        .insert("OUT".into(), out.to_string_lossy().into_owned());
    invoker.deploy(spec, bundle.sha256).await.unwrap();

    let events_db = data.join("events.db");
    let queue = AsyncQueue::start(
        EventStore::open(&events_db).unwrap(),
        invoker.clone(),
        QueueSettings {
            retry_base: Duration::from_millis(100),
        },
    )
    .unwrap();
    let clock = FakeClock::new(T0);
    let scheduler = Scheduler::new(
        ScheduleStore::open(&events_db).unwrap(),
        Arc::new(DispatchTarget::new(LocalDispatch::shared(
            invoker.clone(),
            queue,
        ))),
        Arc::new(clock.clone()),
        SchedulerSettings {
            region: "us-east-1".into(),
        },
    );
    scheduler
        .put(
            "flaky-5",
            ScheduleSpec {
                expression: "rate(5 minutes)".into(),
                function: "flaky".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    clock.set(T0 + 5 * 60_000);
    scheduler.tick().await.unwrap();
    // Recorded as fired by the enqueue itself.
    assert_eq!(
        scheduler.get("flaky-5").await.unwrap().last_fired_ms,
        Some(T0 + 5 * 60_000)
    );

    tokio::time::timeout(Duration::from_secs(60), async {
        while lines(&out).len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run and its retry");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = lines(&out);
    assert_eq!(runs.len(), 2, "one failure, one successful retry: {runs:?}");
    assert_eq!(
        runs[0]["event"], runs[1]["event"],
        "the retry carries the same event"
    );
    assert_eq!(runs[0]["rid"], runs[1]["rid"], "and the same request id");
    let ev = &runs[0]["event"];
    assert_eq!(ev["detail-type"], "Scheduled Event");
    assert_eq!(ev["time"], "2024-01-01T00:05:00Z");
    assert_eq!(
        ev["resources"],
        serde_json::json!(["arn:aws:events:us-east-1:123456789012:rule/flaky-5"])
    );
    // No second firing on the same clock.
    scheduler.tick().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&out).len(), 2);
    pool.shutdown().await;
}

//! The scheduler driven by a fake clock: firings, the scheduled event, catch-up once
//! after downtime, the crash windows of a firing, retries of a failed enqueue.

use nimbus_scheduler::{
    Error, FakeClock, Firing, ScheduleSpec, ScheduleStore, Scheduler, SchedulerSettings,
    SubmitError, Target,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// 2024-01-01T00:00:30Z
const T0: i64 = 1_704_067_230_000;
const MIN: i64 = 60_000;

#[derive(Default)]
struct Recorder {
    fired: Mutex<Vec<Firing>>,
    /// Fail this many submits with a transient error first.
    transient_failures: Mutex<u32>,
    missing: Mutex<Vec<String>>,
}

impl Recorder {
    fn fired(&self) -> Vec<Firing> {
        self.fired.lock().unwrap().clone()
    }
    fn slots(&self) -> Vec<i64> {
        self.fired().iter().map(|f| f.slot_ms).collect()
    }
}

impl Target<Firing> for Recorder {
    fn exists(&self, function: &str, _qualifier: Option<&str>) -> bool {
        !self.missing.lock().unwrap().iter().any(|m| m == function)
    }
    fn submit(&self, f: Firing) -> nimbus_scheduler::BoxFuture<'_, Result<String, SubmitError>> {
        Box::pin(async move {
            {
                let mut n = self.transient_failures.lock().unwrap();
                if *n > 0 {
                    *n -= 1;
                    return Err(SubmitError::Transient("disk on fire".into()));
                }
            }
            if !self.exists(&f.function, None) {
                return Err(SubmitError::Permanent(format!(
                    "Function not found: {}",
                    f.function
                )));
            }
            self.fired.lock().unwrap().push(f);
            Ok(uuid_like())
        })
    }
}

fn uuid_like() -> String {
    "00000000-0000-0000-0000-000000000000".into()
}

struct Env {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: FakeClock,
    target: Arc<Recorder>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        // The queue's store creates `events`; the schedule store hooks onto it.
        drop(nimbus_store::EventStore::open(&path).unwrap());
        Env {
            _dir: dir,
            path,
            clock: FakeClock::new(T0),
            target: Arc::new(Recorder::default()),
        }
    }

    /// A scheduler over the data: call again to model a restart.
    fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            ScheduleStore::open(&self.path).unwrap(),
            self.target.clone(),
            Arc::new(self.clock.clone()),
            SchedulerSettings {
                region: "eu-west-1".into(),
            },
        )
    }
}

fn spec(expr: &str) -> ScheduleSpec {
    ScheduleSpec {
        expression: expr.into(),
        function: "fn".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn rate_fires_every_period_with_the_scheduled_event() {
    let env = Env::new();
    let s = env.scheduler();
    let (view, created) = s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    assert!(created);
    assert_eq!(view.next_fire_ms, Some(T0 + 5 * MIN));
    assert_eq!(view.timezone, "UTC");
    assert_eq!(s.tick().await.unwrap(), Some(T0 + 5 * MIN));
    assert!(env.target.fired().is_empty());

    env.clock.set(T0 + 5 * MIN);
    assert_eq!(s.tick().await.unwrap(), Some(T0 + 10 * MIN));
    env.clock.set(T0 + 10 * MIN + 1);
    s.tick().await.unwrap();
    s.tick().await.unwrap();
    assert_eq!(env.target.slots(), [T0 + 5 * MIN, T0 + 10 * MIN]);

    let f = &env.target.fired()[0];
    assert_eq!(f.function, "fn");
    assert!(f.trace_id.starts_with("Root=1-"), "{}", f.trace_id);
    let ev: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
    assert_eq!(ev["version"], "0");
    assert_eq!(ev["detail-type"], "Scheduled Event");
    assert_eq!(ev["source"], "aws.events");
    assert_eq!(ev["account"], "123456789012");
    assert_eq!(ev["time"], "2024-01-01T00:05:30Z");
    assert_eq!(ev["region"], "eu-west-1");
    assert_eq!(
        ev["resources"],
        serde_json::json!(["arn:aws:events:eu-west-1:123456789012:rule/every5"])
    );
    assert_eq!(ev["detail"], serde_json::json!({}));
    assert_eq!(ev["id"].as_str().unwrap().len(), 36);
    let view = s.get("every5").await.unwrap();
    assert_eq!(view.last_fired_ms, Some(T0 + 10 * MIN));
    assert_eq!(view.next_fire_ms, Some(T0 + 15 * MIN));
}

#[tokio::test]
async fn cron_with_input_and_zone() {
    let env = Env::new();
    let s = env.scheduler();
    let mut sp = spec("cron(0 12 * * ? *)");
    sp.timezone = Some("Europe/Paris".into());
    sp.input = Some(serde_json::json!({"source": "warmup"}));
    let (view, _) = s.put("noon-paris", sp).await.unwrap();
    // Noon in Paris in January is 11:00Z.
    let noon = T0 - 30_000 + 11 * 60 * MIN;
    assert_eq!(view.next_fire_ms, Some(noon));
    env.clock.set(noon);
    s.tick().await.unwrap();
    let fired = env.target.fired();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].payload, br#"{"source":"warmup"}"#);
    assert_eq!(view.input, Some(serde_json::json!({"source": "warmup"})));
}

#[tokio::test]
async fn the_run_loop_fires_on_the_fake_clock() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every-minute", spec("cron(* * * * ? *)"))
        .await
        .unwrap();
    let task = s.start();
    for i in 1..=3 {
        env.clock.set(T0 - 30_000 + i * MIN);
        tokio::time::timeout(Duration::from_secs(10), async {
            while env.target.fired().len() < i as usize {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the loop fired");
    }
    task.abort();
    assert_eq!(
        env.target.slots(),
        [
            T0 - 30_000 + MIN,
            T0 - 30_000 + 2 * MIN,
            T0 - 30_000 + 3 * MIN
        ]
    );
}

#[tokio::test]
async fn runs_missed_while_down_are_caught_up_once() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    env.clock.set(T0 + 5 * MIN);
    s.tick().await.unwrap();
    drop(s);
    // Down for an hour: eleven slots pass (10, 15, ..., 60 minutes).
    env.clock.set(T0 + 62 * MIN);
    let s = env.scheduler();
    assert_eq!(s.tick().await.unwrap(), Some(T0 + 65 * MIN));
    assert_eq!(
        env.target.slots(),
        [T0 + 5 * MIN, T0 + 60 * MIN],
        "one catch-up firing, for the latest slot"
    );
    let ev: serde_json::Value = serde_json::from_slice(&env.target.fired()[1].payload).unwrap();
    assert_eq!(ev["time"], "2024-01-01T01:00:30Z");
    // And nothing more until the next slot.
    s.tick().await.unwrap();
    assert_eq!(env.target.fired().len(), 2);
    env.clock.set(T0 + 65 * MIN);
    s.tick().await.unwrap();
    assert_eq!(env.target.slots()[2], T0 + 65 * MIN);
}

#[tokio::test]
async fn a_restart_right_after_a_firing_does_not_fire_it_again() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    env.clock.set(T0 + 5 * MIN);
    s.tick().await.unwrap();
    drop(s);
    let s = env.scheduler();
    s.tick().await.unwrap();
    assert_eq!(env.target.slots(), [T0 + 5 * MIN]);
}

/// kill -9 after the slot was marked pending but before its event committed: the
/// slot is still owed and fires after the restart.
#[tokio::test]
async fn crash_before_the_enqueue_commits_fires_after_restart() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    drop(s);
    env.clock.set(T0 + 5 * MIN);
    let store = ScheduleStore::open(&env.path).unwrap();
    assert!(store
        .begin_firing("every5", T0 + 5 * MIN, "Root=1-crashed")
        .unwrap());
    drop(store);
    let s = env.scheduler();
    s.tick().await.unwrap();
    assert_eq!(env.target.slots(), [T0 + 5 * MIN]);
    assert_eq!(
        s.get("every5").await.unwrap().last_fired_ms,
        Some(T0 + 5 * MIN)
    );
}

/// kill -9 after the queue committed the event but before the scheduler heard back:
/// the queue's insert itself recorded the slot as fired (same transaction), so the
/// restart does not fire it again.
#[tokio::test]
async fn crash_after_the_enqueue_commits_does_not_fire_twice() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    drop(s);
    env.clock.set(T0 + 5 * MIN);
    let slot = T0 + 5 * MIN;
    let trace = "Root=1-65920000-000000000000000000000001;Parent=0000000000000001;Sampled=0";
    let store = ScheduleStore::open(&env.path).unwrap();
    assert!(store.begin_firing("every5", slot, trace).unwrap());
    assert_eq!(
        store.get("every5").unwrap().unwrap().pending_slot_ms,
        Some(slot)
    );
    // What AsyncQueue::enqueue writes, through the queue's own store.
    let events = nimbus_store::EventStore::open(&env.path).unwrap();
    events
        .insert(vec![nimbus_store::QueuedEvent {
            id: 0,
            request_id: "r1".into(),
            function: "fn".into(),
            qualifier: None,
            payload: b"{}".to_vec(),
            enqueued_ms: slot,
            attempts: 0,
            due_ms: slot,
            trace_id: Some(trace.into()),
            source: "schedule".into(),
        }])
        .await
        .unwrap();
    // ... and the process dies here, before `confirm`.
    drop(events);
    drop(store);
    let stored = ScheduleStore::open(&env.path)
        .unwrap()
        .get("every5")
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.last_fired_ms, stored.pending_slot_ms),
        (Some(slot), None)
    );
    let s = env.scheduler();
    assert_eq!(s.tick().await.unwrap(), Some(T0 + 10 * MIN));
    assert!(
        env.target.fired().is_empty(),
        "the slot was not enqueued a second time"
    );
}

#[tokio::test]
async fn other_events_do_not_touch_schedules() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    let store = ScheduleStore::open(&env.path).unwrap();
    store
        .begin_firing("every5", T0 + 5 * MIN, "trace-a")
        .unwrap();
    let events = nimbus_store::EventStore::open(&env.path).unwrap();
    let ev = |source: &str, trace: &str| nimbus_store::QueuedEvent {
        id: 0,
        request_id: "r".into(),
        function: "fn".into(),
        qualifier: None,
        payload: b"{}".to_vec(),
        enqueued_ms: 0,
        attempts: 0,
        due_ms: 0,
        trace_id: Some(trace.into()),
        source: source.into(),
    };
    events
        .insert(vec![ev("event", "trace-a"), ev("schedule", "trace-b")])
        .await
        .unwrap();
    let stored = store.get("every5").unwrap().unwrap();
    assert_eq!(
        (stored.last_fired_ms, stored.pending_slot_ms),
        (None, Some(T0 + 5 * MIN))
    );
}

#[tokio::test]
async fn a_failed_enqueue_is_retried_and_a_gone_function_is_skipped() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    *env.target.transient_failures.lock().unwrap() = 2;
    env.clock.set(T0 + 5 * MIN);
    assert_eq!(
        s.tick().await.unwrap(),
        Some(T0 + 5 * MIN + 1000),
        "retry in a second"
    );
    assert!(env.target.fired().is_empty());
    env.clock.set(T0 + 5 * MIN + 1000);
    s.tick().await.unwrap();
    env.clock.set(T0 + 5 * MIN + 2000);
    s.tick().await.unwrap();
    assert_eq!(
        env.target.slots(),
        [T0 + 5 * MIN],
        "fired once, after the failures"
    );

    // The function is deleted: the slot is dropped (logged), the schedule moves on.
    env.target.missing.lock().unwrap().push("fn".into());
    env.clock.set(T0 + 10 * MIN);
    assert_eq!(s.tick().await.unwrap(), Some(T0 + 15 * MIN));
    assert_eq!(
        s.get("every5").await.unwrap().last_fired_ms,
        Some(T0 + 10 * MIN)
    );
    assert_eq!(env.target.fired().len(), 1);
}

#[tokio::test]
async fn disabled_schedules_do_not_fire_or_catch_up() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    let mut off = spec("rate(5 minutes)");
    off.enabled = Some(false);
    let (view, created) = s.put("every5", off).await.unwrap();
    assert!(!created);
    assert_eq!(view.next_fire_ms, None);
    env.clock.set(T0 + 30 * MIN);
    assert_eq!(s.tick().await.unwrap(), None);
    assert!(env.target.fired().is_empty());
    // Enabled again: counts from now, the disabled half hour is not owed.
    let mut on = spec("rate(5 minutes)");
    on.enabled = Some(true);
    let (view, _) = s.put("every5", on).await.unwrap();
    assert_eq!(view.next_fire_ms, Some(T0 + 35 * MIN));
    s.tick().await.unwrap();
    assert!(env.target.fired().is_empty());
}

#[tokio::test]
async fn redeploying_the_same_schedule_keeps_its_timing() {
    let env = Env::new();
    let s = env.scheduler();
    s.put("every5", spec("rate(5 minutes)")).await.unwrap();
    env.clock.set(T0 + 7 * MIN);
    s.tick().await.unwrap();
    let mut again = spec("rate(5 minutes)");
    again.app = Some("orders-dev".into());
    let (view, created) = s.put("every5", again).await.unwrap();
    assert!(!created);
    assert_eq!(view.app, "orders-dev");
    assert_eq!(view.last_fired_ms, Some(T0 + 5 * MIN));
    assert_eq!(view.next_fire_ms, Some(T0 + 10 * MIN));
    // A new expression counts from now.
    let (view, _) = s.put("every5", spec("rate(1 hour)")).await.unwrap();
    assert_eq!(view.next_fire_ms, Some(T0 + 67 * MIN));
    assert_eq!(view.app, "orders-dev", "app kept when not given");
}

#[tokio::test]
async fn definitions_are_validated_and_listed() {
    let env = Env::new();
    let s = env.scheduler();
    let err = s.put("bad", spec("cron(0 25 * * ? *)")).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    assert!(err.to_string().contains("field 2 (hours) '25'"), "{err}");
    let mut sp = spec("rate(5 minutes)");
    sp.timezone = Some("Nowhere/Special".into());
    assert!(matches!(
        s.put("bad", sp).await.unwrap_err(),
        Error::Invalid(_)
    ));
    env.target.missing.lock().unwrap().push("ghost".into());
    let mut sp = spec("rate(5 minutes)");
    sp.function = "ghost".into();
    let err = s.put("bad", sp).await.unwrap_err();
    assert!(matches!(err, Error::FunctionNotFound(_)), "{err}");
    assert!(matches!(
        s.put("bad name", spec("rate(5 minutes)"))
            .await
            .unwrap_err(),
        Error::InvalidParameter(_)
    ));
    assert!(s.list().await.unwrap().is_empty());

    s.put("b", spec("rate(5 minutes)")).await.unwrap();
    s.put("a", spec("cron(0 2 * * ? *)")).await.unwrap();
    let names: Vec<_> = s
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    s.delete("a").await.unwrap();
    assert!(matches!(
        s.delete("a").await.unwrap_err(),
        Error::NotFound(_)
    ));
    assert!(matches!(s.get("a").await.unwrap_err(), Error::NotFound(_)));
    // Survives reopening.
    drop(s);
    let s = env.scheduler();
    assert_eq!(s.list().await.unwrap().len(), 1);
}

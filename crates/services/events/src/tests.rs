//! The service without the server: a test `Dispatch` records the async invokes
//! (Lambda targets) the outbox makes.

use super::*;
use nimbus_dispatch::{BoxFuture, Dispatch, FunctionLookup, InvokeError, InvokeResult};
use nimbus_triggers::sinks::Sinks;
use serde_json::{json, Value};
use tokio::sync::mpsc;

struct TestDispatch {
    events: mpsc::UnboundedSender<(String, Value)>,
}

impl FunctionLookup for TestDispatch {
    fn function(&self, _name: &str) -> Option<Arc<nimbus_core::FunctionConfig>> {
        None
    }
    fn qualifier_exists(&self, _name: &str, _q: Option<&str>) -> bool {
        true
    }
    fn region(&self) -> &str {
        "us-east-1"
    }
}

impl Dispatch for TestDispatch {
    fn invoke(
        &self,
        _inv: nimbus_dispatch::Invocation,
    ) -> BoxFuture<'_, nimbus_dispatch::Result<InvokeResult>> {
        Box::pin(async { Err(InvokeError::Service("not in this test".into())) })
    }
    fn enqueue(
        &self,
        inv: nimbus_dispatch::Invocation,
        _source: &'static str,
    ) -> BoxFuture<'_, nimbus_dispatch::Result<String>> {
        let event: Value = serde_json::from_slice(&inv.payload).unwrap_or_default();
        let _ = self.events.send((inv.function, event));
        Box::pin(async { Ok("request-id".to_string()) })
    }
}

fn context(dir: &std::path::Path) -> (ServiceContext, mpsc::UnboundedReceiver<(String, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let dispatch: Arc<dyn Dispatch> = Arc::new(TestDispatch { events: tx });
    let ctx = ServiceContext {
        data_dir: dir.to_path_buf(),
        region: "us-east-1".into(),
        account_id: "123456789012".into(),
        endpoint: "http://127.0.0.1:4566".into(),
        sinks: Arc::new(Sinks::new(dispatch.clone())),
        dispatch,
        mapping_sources: Default::default(),
        options: Default::default(),
    };
    (ctx, rx)
}

fn schedule_rule(inner: &Inner, name: &str, anchor_ms: i64) {
    let mut st = inner.lock();
    let rule = state::Rule {
        name: name.into(),
        bus: "default".into(),
        arn: inner.arn(&format!("rule/{name}")),
        event_pattern: None,
        schedule: Some("rate(1 minute)".into()),
        state: "ENABLED".into(),
        description: None,
        role_arn: None,
        managed_by: None,
        tags: Default::default(),
        targets: vec![
            json!({"Id": "fn", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:tick"}),
        ],
        anchor_ms,
        last_fired_ms: None,
    };
    let doc = serde_json::to_string(&rule).unwrap();
    inner
        .store
        .put_doc(state::K_RULE, &state::rule_key("default", name), &doc)
        .unwrap();
    st.rules.insert(("default".into(), name.into()), rule);
}

#[tokio::test]
async fn a_due_schedule_fires_once_and_a_restart_does_not_repeat_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, mut rx) = context(dir.path());
    let inner = open(&ctx).unwrap();
    // Created 90 s ago: one fire (at +60 s) is due.
    let anchor = now_ms() - 90_000;
    schedule_rule(&inner, "tick", anchor);
    deliver::spawn(inner.clone());
    let (function, event) = rx.recv().await.unwrap();
    assert_eq!(function, "tick");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["detail"], json!({}));
    assert_eq!(
        event["resources"],
        json!(["arn:aws:events:us-east-1:123456789012:rule/tick"])
    );
    assert_eq!(event["time"], api::iso(anchor + 60_000));
    // The fire time is stored with the rule.
    let fired = State::load(&inner.store).unwrap().rules
        [&("default".to_string(), "tick".to_string())]
        .last_fired_ms;
    assert_eq!(fired, Some(anchor + 60_000));

    // After a restart (the state loaded from the file) nothing is due until the
    // next period.
    let reloaded = State::load(&inner.store).unwrap();
    let (due, next) = deliver::due_schedules(&reloaded, now_ms());
    assert!(due.is_empty(), "a restart would re-fire: {:?}", due.len());
    assert_eq!(next, Some(anchor + 120_000));
    // A schedule idle across several periods owes one fire, the latest.
    let mut st = State::load(&inner.store).unwrap();
    let key = ("default".to_string(), "tick".to_string());
    st.rules.get_mut(&key).unwrap().last_fired_ms = None;
    st.rules.get_mut(&key).unwrap().anchor_ms = anchor - 600_000;
    let (due, _) = deliver::due_schedules(&st, anchor + 90_000);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1, anchor + 60_000);
}

#[tokio::test]
async fn the_bus_sink_puts_events_on_a_bus_and_refuses_bad_ones() {
    use nimbus_triggers::sinks::{BusEvent, BusSink, SinkError};
    let dir = tempfile::tempdir().unwrap();
    let (ctx, mut rx) = context(dir.path());
    let inner = open(&ctx).unwrap();
    deliver::spawn(inner.clone());
    {
        let mut st = inner.lock();
        let mut r = state::Rule {
            name: "all".into(),
            bus: "default".into(),
            arn: inner.arn("rule/all"),
            event_pattern: Some(r#"{"source": ["lambda"]}"#.into()),
            schedule: None,
            state: "ENABLED".into(),
            description: None,
            role_arn: None,
            managed_by: None,
            tags: Default::default(),
            targets: vec![],
            anchor_ms: 0,
            last_fired_ms: None,
        };
        r.targets
            .push(json!({"Id": "f", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:sink"}));
        st.rules.insert(("default".into(), "all".into()), r);
        st.invalidate("default");
    }
    let sink = deliver::Sink(inner.clone());
    let bus = "arn:aws:events:us-east-1:123456789012:event-bus/default";
    assert!(sink.bus_exists(bus));
    assert!(!sink.bus_exists("arn:aws:events:us-east-1:123456789012:event-bus/nope"));
    let id = sink
        .put_event(
            bus,
            BusEvent {
                source: "lambda".into(),
                detail_type: "Lambda Function Invocation Result - Success".into(),
                detail: r#"{"ok": true}"#.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (function, event) = rx.recv().await.unwrap();
    assert_eq!(function, "sink");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["detail"], json!({"ok": true}));
    let bad = sink
        .put_event(
            bus,
            BusEvent {
                source: "lambda".into(),
                detail_type: "x".into(),
                detail: "[1]".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(bad, Err(SinkError::Rejected { .. })), "{bad:?}");
}

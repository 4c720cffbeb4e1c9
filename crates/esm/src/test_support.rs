//! Test fixtures (not shipped): an in-memory [`ShardSource`] with real shard
//! semantics (positions, lineage, watch), a [`Dispatch`] whose "function" is a
//! closure, and a queue sink that keeps what it is sent.

use base64::Engine;
use nimbus_dispatch::{BoxFuture, Dispatch, FunctionLookup, Invocation, InvokeError, InvokeResult};
use nimbus_triggers::esm::{cmp_sequence, ShardInfo, ShardPosition, ShardRecord, ShardSource};
use nimbus_triggers::sinks::{QueueMessage, QueueSink, SentMessage, SinkResult};
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const STREAM: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
pub const DLQ: &str = "arn:aws:sqs:us-east-1:123456789012:failures";

#[derive(Default)]
struct MemState {
    shards: Vec<(ShardInfo, Vec<ShardRecord>)>,
    next_seq: u64,
}

/// An in-memory Kinesis-like stream.
pub struct MemStream {
    state: Mutex<MemState>,
    tx: tokio::sync::watch::Sender<u64>,
}

impl MemStream {
    pub fn new(shards: &[&str]) -> Arc<Self> {
        let (tx, _) = tokio::sync::watch::channel(0);
        let s = Arc::new(Self {
            state: Mutex::new(MemState {
                shards: Vec::new(),
                next_seq: 100,
            }),
            tx,
        });
        for id in shards {
            s.add_shard(id, None);
        }
        s
    }

    pub fn add_shard(&self, id: &str, parent: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        let start = st.next_seq.to_string();
        st.shards.push((
            ShardInfo {
                shard_id: id.to_string(),
                parent_shard_id: parent.map(str::to_string),
                adjacent_parent_shard_id: None,
                starting_sequence_number: start,
                ending_sequence_number: None,
            },
            Vec::new(),
        ));
        drop(st);
        self.tx.send_modify(|v| *v += 1);
    }

    pub fn close(&self, id: &str) {
        let mut st = self.state.lock().unwrap();
        let end = st.next_seq.to_string();
        if let Some((info, _)) = st.shards.iter_mut().find(|(i, _)| i.shard_id == id) {
            info.ending_sequence_number = Some(end);
        }
        drop(st);
        self.tx.send_modify(|v| *v += 1);
    }

    /// Append a record whose data is `data` (JSON text); returns its sequence number.
    pub fn put_at(&self, shard: &str, key: &str, data: &str, arrival_ms: i64) -> String {
        let mut st = self.state.lock().unwrap();
        st.next_seq += 1;
        let seq = st.next_seq.to_string();
        let (info, recs) = st
            .shards
            .iter_mut()
            .find(|(i, _)| i.shard_id == shard)
            .expect("shard");
        assert!(info.ending_sequence_number.is_none(), "closed shard");
        recs.push(ShardRecord {
            sequence_number: seq.clone(),
            partition_key: key.to_string(),
            approximate_arrival_ms: arrival_ms,
            size_bytes: data.len(),
            event_record: json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": arrival_ms as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventID": format!("{shard}:{seq}"),
                "eventName": "aws:kinesis:record",
                "eventSourceARN": STREAM,
                "awsRegion": "us-east-1",
            }),
        });
        drop(st);
        self.tx.send_modify(|v| *v += 1);
        seq
    }

    pub fn put(&self, shard: &str, key: &str, data: &str) -> String {
        self.put_at(shard, key, data, nimbus_core::now_ms())
    }
}

impl ShardSource for MemStream {
    fn name(&self) -> &'static str {
        "kinesis"
    }
    fn accepts(&self, arn: &str) -> bool {
        arn.starts_with("arn:aws:kinesis:")
    }
    fn stream_exists(&self, arn: &str) -> bool {
        arn == STREAM
    }
    fn shards(&self, _arn: &str) -> BoxFuture<'_, Result<Vec<ShardInfo>, String>> {
        let list = self
            .state
            .lock()
            .unwrap()
            .shards
            .iter()
            .map(|(i, _)| i.clone())
            .collect();
        Box::pin(async move { Ok(list) })
    }
    fn read(
        &self,
        _arn: &str,
        shard_id: &str,
        position: ShardPosition,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardRecord>, String>> {
        let st = self.state.lock().unwrap();
        let out = match st.shards.iter().find(|(i, _)| i.shard_id == shard_id) {
            None => Err(format!("no shard {shard_id}")),
            Some((_, recs)) => Ok(recs
                .iter()
                .filter(|r| match &position {
                    ShardPosition::TrimHorizon => true,
                    ShardPosition::Latest => false,
                    ShardPosition::AtTimestamp(ms) => r.approximate_arrival_ms >= *ms,
                    ShardPosition::AtSequence(s) => {
                        cmp_sequence(&r.sequence_number, s) != Ordering::Less
                    }
                    ShardPosition::AfterSequence(s) => {
                        cmp_sequence(&r.sequence_number, s) == Ordering::Greater
                    }
                })
                .take(limit)
                .cloned()
                .collect()),
        };
        Box::pin(async move { out })
    }
    fn watch(&self, _arn: &str) -> tokio::sync::watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// What the test function answers: `Err(message)` is a function error.
pub type Behaviour = Box<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

/// A dispatcher whose only function, `f`, is a closure; it keeps every event.
pub struct FnDispatch {
    pub events: Mutex<Vec<Value>>,
    behaviour: Mutex<Behaviour>,
    changed: tokio::sync::Notify,
}

impl FnDispatch {
    pub fn new(b: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Box::new(b)),
            changed: tokio::sync::Notify::new(),
        })
    }

    pub fn ok() -> Arc<Self> {
        Self::new(|_| Ok(Value::Null))
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The data (decoded) of every record of every event, in invoke order.
    pub fn datas(&self) -> Vec<String> {
        self.events().iter().flat_map(datas_of).collect()
    }

    /// Wait until `pred` holds of the events (a hang fails the test after 30 s).
    pub async fn wait_for(&self, pred: impl Fn(&[Value]) -> bool) {
        let fut = async {
            loop {
                let notified = self.changed.notified();
                if pred(&self.events()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .unwrap_or_else(|_| panic!("condition not reached; events: {:?}", self.events()));
    }
}

/// The decoded data of an event's records.
pub fn datas_of(ev: &Value) -> Vec<String> {
    ev["Records"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(r["kinesis"]["data"].as_str().unwrap_or_default())
                        .unwrap_or_default();
                    String::from_utf8(b).unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

impl FunctionLookup for FnDispatch {
    fn function(&self, _name: &str) -> Option<Arc<nimbus_core::FunctionConfig>> {
        None
    }
    fn qualifier_exists(&self, name: &str, qualifier: Option<&str>) -> bool {
        name == "f" && matches!(qualifier, None | Some("$LATEST") | Some("live"))
    }
    fn region(&self) -> &str {
        "us-east-1"
    }
}

impl Dispatch for FnDispatch {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'_, Result<InvokeResult, InvokeError>> {
        Box::pin(async move {
            let ev: Value = serde_json::from_slice(&inv.payload).unwrap();
            let out = (self.behaviour.lock().unwrap())(&ev);
            self.events.lock().unwrap().push(ev);
            self.changed.notify_waiters();
            let (payload, function_error) = match out {
                Ok(v) => (v.to_string(), false),
                Err(m) => (
                    json!({"errorMessage": m, "errorType": "Error"}).to_string(),
                    true,
                ),
            };
            Ok(InvokeResult {
                request_id: nimbus_core::new_request_id(),
                executed_version: "$LATEST".into(),
                payload: payload.into(),
                function_error,
                outcome: if function_error {
                    nimbus_core::Outcome::FunctionError
                } else {
                    nimbus_core::Outcome::Success
                },
                log_tail: String::new(),
                cold: false,
                trace_id: String::new(),
            })
        })
    }
    fn enqueue(
        &self,
        _inv: Invocation,
        _source: &'static str,
    ) -> BoxFuture<'_, Result<String, InvokeError>> {
        Box::pin(async { Err(InvokeError::Service("no async queue in tests".into())) })
    }
}

/// A queue sink that keeps the bodies it is sent (the on-failure destination).
#[derive(Default)]
pub struct KeptQueue {
    pub bodies: Mutex<Vec<Value>>,
    changed: tokio::sync::Notify,
}

impl KeptQueue {
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let fut = async {
            loop {
                let notified = self.changed.notified();
                let b = self.bodies.lock().unwrap().clone();
                if b.len() >= n {
                    return b;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .expect("on-failure records")
    }
}

impl QueueSink for KeptQueue {
    fn queue_exists(&self, arn: &str) -> bool {
        arn == DLQ
    }
    fn queue_is_fifo(&self, arn: &str) -> Option<bool> {
        (arn == DLQ).then_some(false)
    }
    fn send(&self, _arn: &str, msg: QueueMessage) -> BoxFuture<'_, SinkResult<SentMessage>> {
        self.bodies
            .lock()
            .unwrap()
            .push(serde_json::from_str(&msg.body).unwrap());
        self.changed.notify_waiters();
        Box::pin(async {
            Ok(SentMessage {
                message_id: nimbus_core::new_request_id(),
                sequence_number: None,
            })
        })
    }
}

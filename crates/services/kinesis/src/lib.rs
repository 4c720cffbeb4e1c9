//! Nimbus's Amazon Kinesis Data Streams (awsJson 1.1).
//!
//! * [`ops`]: the API's exhaustive operation table, generated from the AWS API
//!   model by `scripts/gen-ops.py`;
//! * [`store`]: streams, shards (hash-key ranges, lineage), records and consumers
//!   in `<data>/kinesis.db`, every write one fsynced SQLite transaction;
//! * [`api`]: the operations, from the request's JSON to the answer's;
//! * the [`nimbus_triggers::esm::ShardSource`] Lambda's stream poller reads
//!   (event records in Lambda's Kinesis shape, a watch woken by every put) and the
//!   [`nimbus_triggers::sinks::StreamSink`] other services deliver into;
//! * an admin surface at `/_nimbus/services/kinesis/streams` and its metrics.

pub mod api;
mod error;
pub mod ops;
pub mod store;

pub use error::KinesisError;
pub use ops::{Op, META};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_protocol::{encode_json, Frontend, JsonOptions, ResponseFuture, ServiceMeta};
use nimbus_svc_common::{Call, Service, ServiceAdmin, ServiceContext, StartError};
use nimbus_triggers::esm::{ShardInfo, ShardPosition, ShardRecord, ShardSource};
use nimbus_triggers::sinks::{SinkError, SinkResult, StreamPut, StreamSink};
use nimbus_triggers::BoxFuture;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use store::{seq_string, NewRecord, Store};

/// The largest request body: `PutRecords` carries up to 5 MiB of data, base64
/// in JSON.
const BODY_MAX: usize = 8 * 1024 * 1024;

/// The running service, shared by the front-end, the shard source and the sink.
pub struct Kinesis {
    store: Store,
    env: api::Env,
    watches: Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>,
    records_put: AtomicU64,
    requests: AtomicU64,
}

impl Kinesis {
    /// Open `<data>/kinesis.db`.
    pub fn open(ctx: &ServiceContext) -> Result<Arc<Self>, StartError> {
        let store = Store::open(&ctx.data_dir.join("kinesis.db"))
            .map_err(|e| StartError::new("kinesis", e))?;
        Ok(Arc::new(Self {
            store,
            env: api::Env {
                region: ctx.region.clone(),
                account: ctx.account_id.clone(),
            },
            watches: Mutex::new(HashMap::new()),
            records_put: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }))
    }

    fn notify(&self, stream: &str) {
        let w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = w.get(stream) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn name_of(arn: &str) -> Option<&str> {
        if !arn.starts_with("arn:") {
            return None;
        }
        let (head, name) = arn.split_once(":stream/")?;
        head.contains(":kinesis:")
            .then_some(name)
            .filter(|n| !n.is_empty())
    }

    async fn serve(self: Arc<Self>, req: Request) -> Response {
        let mut call = match Call::<Op>::decode(req).await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        if !call.op.implemented() {
            return call.not_implemented();
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let body = std::mem::replace(&mut call.body, axum::body::Body::empty());
        let bytes = match axum::body::to_bytes(body, BODY_MAX).await {
            Ok(b) => b,
            Err(e) => return call.error(&nimbus_protocol::body_error(e)),
        };
        let op = call.op;
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut fx = api::Effects::default();
            let out = api::handle(
                &me.store,
                &me.env,
                op,
                &bytes,
                nimbus_core::now_ms(),
                &mut fx,
            );
            (out, fx)
        })
        .await;
        match result {
            Ok((Ok(v), fx)) => {
                self.records_put
                    .fetch_add(fx.records_put, Ordering::Relaxed);
                for s in &fx.appended {
                    self.notify(s);
                }
                tracing::debug!(operation = op.name(), request_id = %call.request_id, "kinesis call");
                encode_json(call.protocol, &call.request_id, &v, JsonOptions::default())
            }
            Ok((Err(e), _)) => call.error(&e),
            Err(e) => {
                tracing::error!(error = %e, "kinesis worker failed");
                call.error(&KinesisError::Internal(e.to_string()).to_aws())
            }
        }
    }

    fn event_record(&self, arn: &str, r: &store::RecordRow) -> serde_json::Value {
        let seq = seq_string(r.seq);
        json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r.partition_key,
                "sequenceNumber": seq,
                "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                "approximateArrivalTimestamp": r.arrival_ms as f64 / 1000.0,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("{}:{seq}", r.shard_id),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": format!("arn:aws:iam::{}:role/lambda-role", self.env.account),
            "awsRegion": self.env.region,
            "eventSourceARN": arn,
        })
    }
}

struct KinesisFrontend(Arc<Kinesis>);

impl Frontend for KinesisFrontend {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        Box::pin(self.0.clone().serve(req))
    }

    fn body_limit(&self, _parts: &http::request::Parts) -> usize {
        BODY_MAX
    }
}

impl ShardSource for Kinesis {
    fn name(&self) -> &'static str {
        "kinesis"
    }

    fn accepts(&self, stream_arn: &str) -> bool {
        Self::name_of(stream_arn).is_some()
    }

    fn stream_exists(&self, stream_arn: &str) -> bool {
        Self::name_of(stream_arn).is_some_and(|n| self.store.stream(n).is_ok())
    }

    fn shards(&self, stream_arn: &str) -> BoxFuture<'_, Result<Vec<ShardInfo>, String>> {
        let arn = stream_arn.to_string();
        Box::pin(async move {
            let name = Self::name_of(&arn).ok_or_else(|| format!("not a stream ARN: {arn}"))?;
            let store = self.store.clone();
            let name = name.to_string();
            let (_, shards) = tokio::task::spawn_blocking(move || store.stream_and_shards(&name))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(shards
                .into_iter()
                .map(|s| ShardInfo {
                    shard_id: s.shard_id,
                    parent_shard_id: s.parent,
                    adjacent_parent_shard_id: s.adjacent_parent,
                    starting_sequence_number: seq_string(s.start_seq),
                    ending_sequence_number: s.end_seq.map(seq_string),
                })
                .collect())
        })
    }

    fn read(
        &self,
        stream_arn: &str,
        shard_id: &str,
        position: ShardPosition,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardRecord>, String>> {
        let arn = stream_arn.to_string();
        let shard_id = shard_id.to_string();
        Box::pin(async move {
            let name = Self::name_of(&arn)
                .ok_or_else(|| format!("not a stream ARN: {arn}"))?
                .to_string();
            let store = self.store.clone();
            let rows = tokio::task::spawn_blocking(move || -> Result<_, KinesisError> {
                let (s, shards) = store.stream_and_shards(&name)?;
                let sh = shards
                    .iter()
                    .find(|x| x.shard_id == shard_id)
                    .ok_or_else(|| KinesisError::NotFound(format!("no shard {shard_id}")))?;
                let bad =
                    |q: &str| KinesisError::InvalidArgument(format!("bad sequence number {q}"));
                let after = match &position {
                    ShardPosition::TrimHorizon => sh.start_seq - 1,
                    ShardPosition::Latest => sh.end_seq.unwrap_or(s.next_seq - 1),
                    ShardPosition::AtSequence(q) => store::parse_seq(q).ok_or_else(|| bad(q))? - 1,
                    ShardPosition::AfterSequence(q) => store::parse_seq(q).ok_or_else(|| bad(q))?,
                    ShardPosition::AtTimestamp(ms) => match store.first_at(s.id, &shard_id, *ms)? {
                        Some(n) => n - 1,
                        None => sh.end_seq.unwrap_or(s.next_seq - 1),
                    },
                };
                Ok(store.read(s.id, &shard_id, after, limit, usize::MAX)?.0)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Ok(rows
                .iter()
                .map(|r| ShardRecord {
                    sequence_number: seq_string(r.seq),
                    partition_key: r.partition_key.clone(),
                    approximate_arrival_ms: r.arrival_ms,
                    size_bytes: r.data.len() + r.partition_key.len(),
                    event_record: self.event_record(&arn, r),
                })
                .collect())
        })
    }

    fn watch(&self, stream_arn: &str) -> tokio::sync::watch::Receiver<u64> {
        let name = Self::name_of(stream_arn).unwrap_or(stream_arn).to_string();
        let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(name)
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe()
    }
}

impl StreamSink for Kinesis {
    fn stream_exists(&self, stream_arn: &str) -> bool {
        ShardSource::stream_exists(self, stream_arn)
    }

    fn put_record(&self, stream_arn: &str, rec: StreamPut) -> BoxFuture<'_, SinkResult<String>> {
        let arn = stream_arn.to_string();
        Box::pin(async move {
            let name = Self::name_of(&arn)
                .ok_or_else(|| SinkError::NotFound(format!("not a stream ARN: {arn}")))?
                .to_string();
            let explicit = match rec.explicit_hash_key.as_deref() {
                Some(h) => Some(h.parse::<u128>().map_err(|_| SinkError::Rejected {
                    code: "InvalidArgumentException".into(),
                    message: format!("Invalid ExplicitHashKey {h}"),
                })?),
                None => None,
            };
            if rec.data.len() > api::MAX_RECORD {
                return Err(SinkError::Rejected {
                    code: "ValidationException".into(),
                    message: format!("record data larger than {} bytes", api::MAX_RECORD),
                });
            }
            let store = self.store.clone();
            let n = name.clone();
            let out = tokio::task::spawn_blocking(move || {
                store.put(
                    &n,
                    &[NewRecord {
                        partition_key: rec.partition_key,
                        explicit_hash_key: explicit,
                        data: rec.data.to_vec(),
                    }],
                    nimbus_core::now_ms(),
                )
            })
            .await
            .map_err(|e| SinkError::Transient(e.to_string()))?
            .map_err(|e| match e {
                KinesisError::NotFound(m) => SinkError::NotFound(m),
                KinesisError::Db(e) => SinkError::Transient(e.to_string()),
                other => SinkError::Rejected {
                    code: other.to_aws().code.to_string(),
                    message: other.to_string(),
                },
            })?;
            self.records_put.fetch_add(1, Ordering::Relaxed);
            self.notify(&name);
            Ok(seq_string(out[0].1))
        })
    }
}

struct Admin(Arc<Kinesis>);

impl ServiceAdmin for Admin {
    fn name(&self) -> &'static str {
        "kinesis"
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let k = self.0.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let rest = path
                .strip_prefix("/_nimbus/services/kinesis")
                .unwrap_or("")
                .trim_matches('/')
                .to_string();
            if rest != "streams" || req.method() != http::Method::GET {
                return (
                    http::StatusCode::NOT_FOUND,
                    axum::Json(
                        json!({"Type": "NotFound", "Message": format!("no such resource: {path}")}),
                    ),
                )
                    .into_response();
            }
            let store = k.store.clone();
            let env = k.env.clone();
            let out = tokio::task::spawn_blocking(move || -> Result<_, KinesisError> {
                let counts: HashMap<String, i64> = store.record_counts()?.into_iter().collect();
                let mut list = vec![];
                for s in store.streams()? {
                    let (_, shards) = store.stream_and_shards(&s.name)?;
                    list.push(json!({
                        "StreamName": s.name,
                        "StreamARN": env.stream_arn(&s.name),
                        "Mode": s.mode,
                        "RetentionPeriodHours": s.retention_hours,
                        "OpenShards": shards.iter().filter(|s| s.is_open()).count(),
                        "Shards": shards.len(),
                        "Records": counts.get(&s.name).copied().unwrap_or(0),
                    }));
                }
                Ok(list)
            })
            .await;
            match out {
                Ok(Ok(list)) => axum::Json(json!({"Streams": list})).into_response(),
                Ok(Err(e)) => (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"Type": "InternalFailure", "Message": e.to_string()})),
                )
                    .into_response(),
                Err(e) => (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"Type": "InternalFailure", "Message": e.to_string()})),
                )
                    .into_response(),
            }
        })
    }

    fn metrics(&self) -> String {
        format!(
            "# HELP nimbus_kinesis_requests_total Kinesis API requests served.\n\
             # TYPE nimbus_kinesis_requests_total counter\n\
             nimbus_kinesis_requests_total {}\n\
             # HELP nimbus_kinesis_records_put_total Records appended to Kinesis streams.\n\
             # TYPE nimbus_kinesis_records_put_total counter\n\
             nimbus_kinesis_records_put_total {}\n",
            self.0.requests.load(Ordering::Relaxed),
            self.0.records_put.load(Ordering::Relaxed)
        )
    }
}

/// The front-end the edge registers for this API, over a service opened on
/// `ctx` (tests; the server calls [`start`]).
pub fn frontend_for(k: Arc<Kinesis>) -> Arc<dyn Frontend> {
    Arc::new(KinesisFrontend(k))
}

/// Start the service: open the store, register the shard source and the stream
/// sink, and start the retention sweep.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let k = Kinesis::open(ctx)?;
    ctx.mapping_sources.register_shards(k.clone());
    ctx.sinks.register_streams(k.clone());
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let store = k.store.clone();
        handle.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.trim(nimbus_core::now_ms())).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(records = n, "kinesis retention trimmed"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "kinesis retention sweep failed"),
                    _ => {}
                }
            }
        });
    }
    Ok(Service {
        frontend: frontend_for(k.clone()),
        admin: Some(Arc::new(Admin(k))),
    })
}

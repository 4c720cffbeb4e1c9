//! Nimbus's Amazon DynamoDB (awsJson 1.0): tables, items, the whole expression
//! language ([`expr`]), secondary indexes, TTL, transactions, and the change
//! records DynamoDB Streams serves — all on one SQLite file,
//! `<data>/dynamodb.db` ([`db`]).
//!
//! * [`value`]: attribute values, exact 38-digit numbers, sizes, key encoding.
//! * [`expr`]: the parser and evaluator of condition/filter, key-condition,
//!   update and projection expressions.
//! * [`api`]: the operations.
//!
//! The store is shared with the `dynamodbstreams` crate through
//! [`shared_store`]: a process-wide map from data dir to the open [`db::Store`],
//! so whichever of the two services starts first opens the file and the other
//! reuses it (one connection, one writer, one change notifier).

pub mod api;
pub mod db;
pub mod expr;
pub mod ops;
pub mod partiql;
pub mod reserved;
pub mod value;

pub use ops::{Op, META};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use nimbus_protocol::{encode_json, Frontend, JsonOptions, ResponseFuture};
use nimbus_svc_common::{Call, ServiceAdmin, ServiceContext, StartError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// How often expired TTL items and stream records past retention are swept.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Stream records are kept 24 hours.
pub const STREAM_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<db::Store>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Weak<db::Store>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The store of `data_dir`, opened once per process and shared by DynamoDB and
/// DynamoDB Streams.
pub fn shared_store(
    data_dir: &Path,
    region: &str,
    account_id: &str,
) -> Result<Arc<db::Store>, db::StoreError> {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    let key = data_dir.to_path_buf();
    if let Some(s) = r.get(&key).and_then(Weak::upgrade) {
        return Ok(s);
    }
    let s = Arc::new(db::Store::open(
        &data_dir.join("dynamodb.db"),
        region,
        account_id,
    )?);
    r.insert(key, Arc::downgrade(&s));
    Ok(s)
}

/// Request counters per operation, for `/metrics`.
#[derive(Default)]
struct Metrics {
    requests: Mutex<HashMap<&'static str, (u64, u64)>>,
    ttl_deleted: AtomicU64,
}

impl Metrics {
    fn count(&self, op: &'static str, error: bool) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(op).or_default();
        e.0 += 1;
        if error {
            e.1 += 1;
        }
    }
}

/// The DynamoDB front-end.
pub struct DynamoDb {
    store: Arc<db::Store>,
    endpoint: String,
    metrics: Arc<Metrics>,
}

/// Write an error as DynamoDB does (awsJson 1.0 with `x-amz-crc32`), with its
/// extra fields (`CancellationReasons`, `Item`).
pub fn error_response(e: &api::ApiError, request_id: &str, service: &str) -> Response {
    let mut body = serde_json::Map::new();
    body.insert(
        "__type".into(),
        json!(format!("com.amazonaws.{service}#{}", e.code)),
    );
    body.insert("message".into(), json!(e.message));
    for (k, v) in &e.extra {
        body.insert(k.clone(), v.clone());
    }
    let body = Value::Object(body).to_string().into_bytes();
    let crc = crc32(&body);
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Ok(v) = HeaderValue::from_str(e.code) {
        h.insert("x-amzn-errortype", v);
    }
    h.insert("x-amz-crc32", HeaderValue::from(crc));
    resp
}

/// zlib's CRC32 (what `x-amz-crc32` carries).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

impl Frontend for DynamoDb {
    fn meta(&self) -> &'static nimbus_protocol::ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let store = self.store.clone();
        let endpoint = self.endpoint.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let call = match Call::<Op>::decode(req).await {
                Ok(c) => c,
                Err(resp) => return resp,
            };
            if !call.op.implemented() {
                return call.not_implemented();
            }
            let rid = call.request_id.clone();
            let op = call.op;
            let body = match axum::body::to_bytes(call.body, 16 * 1024 * 1024).await {
                Ok(b) => b,
                Err(_) => {
                    return error_response(
                        &api::ApiError::new(413, "RequestEntityTooLarge", "Request too large"),
                        &rid,
                        "dynamodb",
                    )
                }
            };
            let req: Value = match nimbus_protocol::decode_json(&body) {
                Ok(v) => v,
                Err(e) => {
                    return error_response(
                        &api::ApiError::new(400, "SerializationException", e.message),
                        &rid,
                        "dynamodb",
                    )
                }
            };
            let result =
                tokio::task::spawn_blocking(move || api::handle(&store, op, &req, &endpoint))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "dynamodb handler panicked");
                        Err(api::ApiError::new(
                            500,
                            "InternalServerError",
                            "Internal server error",
                        ))
                    });
            metrics.count(op.name(), result.is_err());
            match result {
                Ok(v) => encode_json(
                    nimbus_protocol::Protocol::AwsJson10,
                    &rid,
                    &v,
                    JsonOptions::dynamodb(),
                ),
                Err(e) => {
                    tracing::debug!(operation = op.name(), code = e.code, message = %e.message, "dynamodb error");
                    error_response(&e, &rid, "dynamodb")
                }
            }
        })
    }
}

/// `/_nimbus/services/dynamodb/…`: `tables` lists tables with item counts and
/// stream positions.
struct Admin {
    store: Arc<db::Store>,
    metrics: Arc<Metrics>,
}

impl Admin {
    fn tables_json(&self) -> Result<Value, api::ApiError> {
        let mut out = Vec::new();
        for t in self.store.tables() {
            let (count, size): (i64, i64) = self.store.read(|c| -> Result<_, api::ApiError> {
                Ok(c.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items WHERE tid = ?1",
                    [t.tid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })?;
            let stream = match &t.stream {
                Some(s) => {
                    let (n, last): (i64, Option<i64>) =
                        self.store.read(|c| -> Result<_, api::ApiError> {
                            Ok(c.query_row(
                                "SELECT COUNT(*), MAX(seq) FROM stream_records WHERE stream_arn = ?1",
                                [&s.arn],
                                |r| Ok((r.get(0)?, r.get(1)?)),
                            )?)
                        })?;
                    json!({"arn": s.arn, "viewType": s.view_type, "records": n,
                           "latestSequenceNumber": last.map(db::seq_string)})
                }
                None => Value::Null,
            };
            out.push(json!({
                "name": t.name, "arn": t.arn, "items": count, "sizeBytes": size,
                "billingMode": t.billing, "ttlAttribute": t.ttl_attr,
                "globalSecondaryIndexes": t.gsis.iter().map(|g| g.name.clone()).collect::<Vec<_>>(),
                "localSecondaryIndexes": t.lsis.iter().map(|g| g.name.clone()).collect::<Vec<_>>(),
                "stream": stream,
            }));
        }
        Ok(json!({"tables": out}))
    }
}

impl ServiceAdmin for Admin {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let path = req.uri().path().to_string();
        let rest = path
            .strip_prefix("/_nimbus/services/dynamodb")
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        let answer = match rest.as_str() {
            "" | "tables" => self.tables_json().map_err(|e| e.message),
            _ => Err(String::new()),
        };
        Box::pin(async move {
            match answer {
                Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
                Err(m) if m.is_empty() => (
                    StatusCode::NOT_FOUND,
                    axum::Json(
                        json!({"Type": "NotFound", "Message": format!("no admin resource {rest}")}),
                    ),
                )
                    .into_response(),
                Err(m) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"Type": "Internal", "Message": m})),
                )
                    .into_response(),
            }
        })
    }

    fn metrics(&self) -> String {
        let mut out = String::from(
            "# HELP nimbus_dynamodb_requests DynamoDB API requests by operation.\n# TYPE nimbus_dynamodb_requests counter\n",
        );
        let m = self
            .metrics
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut ops: Vec<_> = m.into_iter().collect();
        ops.sort();
        for (op, (n, _)) in &ops {
            out.push_str(&format!(
                "nimbus_dynamodb_requests_total{{operation=\"{op}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP nimbus_dynamodb_errors DynamoDB API requests answered with an error.\n# TYPE nimbus_dynamodb_errors counter\n");
        for (op, (_, e)) in &ops {
            out.push_str(&format!(
                "nimbus_dynamodb_errors_total{{operation=\"{op}\"}} {e}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP nimbus_dynamodb_tables Tables.\n# TYPE nimbus_dynamodb_tables gauge\nnimbus_dynamodb_tables {}\n",
            self.store.table_names().len()
        ));
        out.push_str(&format!(
            "# HELP nimbus_dynamodb_ttl_deleted Items deleted by TTL expiry.\n# TYPE nimbus_dynamodb_ttl_deleted counter\nnimbus_dynamodb_ttl_deleted_total {}\n",
            self.metrics.ttl_deleted.load(Ordering::Relaxed)
        ));
        let w = self.store.writer_stats();
        out.push_str(&format!(
            "# HELP nimbus_dynamodb_commits Write transactions committed by the group-commit writer (one fsync each).\n# TYPE nimbus_dynamodb_commits counter\nnimbus_dynamodb_commits_total {}\n",
            w.commits
        ));
        out.push_str(&format!(
            "# HELP nimbus_dynamodb_writes Write requests run by the writer, each in its own savepoint.\n# TYPE nimbus_dynamodb_writes counter\nnimbus_dynamodb_writes_total {}\n",
            w.writes
        ));
        out
    }
}

/// The front-end over `store` (tests and the server).
pub fn frontend_with(store: Arc<db::Store>, endpoint: &str) -> Arc<dyn Frontend> {
    Arc::new(DynamoDb {
        store,
        endpoint: endpoint.to_string(),
        metrics: Arc::default(),
    })
}

/// Start the service: open (or share) the store, start the TTL and retention
/// sweep, and hand back the front-end and admin surface.
pub fn start(ctx: &ServiceContext) -> Result<nimbus_svc_common::Service, StartError> {
    let store = shared_store(&ctx.data_dir, &ctx.region, &ctx.account_id)
        .map_err(|e| StartError::new("dynamodb", e))?;
    let metrics = Arc::new(Metrics::default());
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let weak = Arc::downgrade(&store);
        let m = metrics.clone();
        handle.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let m = m.clone();
                let _ = tokio::task::spawn_blocking(move || sweep(&store, &m)).await;
            }
        });
    }
    let frontend = Arc::new(DynamoDb {
        store: store.clone(),
        endpoint: ctx.endpoint.clone(),
        metrics: metrics.clone(),
    });
    Ok(nimbus_svc_common::Service {
        frontend,
        admin: Some(Arc::new(Admin { store, metrics })),
    })
}

fn sweep(store: &db::Store, m: &Metrics) {
    let now_ms = nimbus_core::now_ms();
    match api::sweep_ttl(store, now_ms / 1000, 500) {
        Ok(n) if n > 0 => {
            m.ttl_deleted.fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(deleted = n, "dynamodb TTL sweep");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e.message, "dynamodb TTL sweep failed"),
    }
    let cutoff = now_ms - STREAM_RETENTION_MS;
    let r = store.write(|tx| -> Result<usize, db::StoreError> {
        Ok(tx.tx.execute(
            "DELETE FROM stream_records WHERE seq IN (SELECT seq FROM stream_records WHERE created_ms < ?1 LIMIT 1000)",
            [cutoff],
        )?)
    });
    if let Err(e) = r {
        tracing::warn!(error = %e, "dynamodb stream retention sweep failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}

//! Nimbus's Amazon DynamoDB Streams (awsJson 1.0): `ListStreams`,
//! `DescribeStream`, `GetShardIterator` and `GetRecords` over the change records
//! the DynamoDB service appends to `<data>/dynamodb.db` in the same transaction as
//! each item change, and the [`ShardSource`] that feeds Lambda event-source
//! mappings from them.
//!
//! The store is the DynamoDB crate's, shared per data dir through
//! [`nimbus_svc_dynamodb::shared_store`]. Each stream has one shard (a table's
//! write rate on one node never needs more); the shard is closed (it gets an
//! `EndingSequenceNumber`) when the stream is disabled or its table deleted.
//! Sequence numbers are the records' row ids written as 21 decimal digits.
//!
//! A shard iterator is an opaque token: base64 of `<arn>\n<shard>\n<after>\n<ms>`,
//! the row id it continues after and when it was issued (valid 15 minutes).

pub mod ops;

pub use ops::{Op, META};

use axum::extract::Request;
use base64::Engine as _;
use nimbus_protocol::{encode_json, Frontend, JsonOptions, ResponseFuture};
use nimbus_svc_common::{Call, ServiceContext, StartError};
use nimbus_svc_dynamodb::api::{validation, ApiError};
use nimbus_svc_dynamodb::db::{finish_record, seq_parse, seq_string, Store};
use nimbus_triggers::esm::{ShardInfo, ShardPosition, ShardRecord, ShardSource};
use nimbus_triggers::BoxFuture;
use rusqlite::OptionalExtension;
use serde_json::{json, Value};
use sha2::Digest;
use std::sync::Arc;

const ITERATOR_TTL_MS: i64 = 15 * 60 * 1000;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A stream's row.
#[derive(Debug, Clone)]
pub struct StreamRow {
    pub arn: String,
    pub table_name: String,
    pub view_type: String,
    pub label: String,
    pub key_schema: Value,
    pub created_ms: i64,
    pub disabled_ms: Option<i64>,
}

impl StreamRow {
    pub fn shard_id(&self) -> String {
        let d = sha2::Sha256::digest(self.arn.as_bytes());
        format!(
            "shardId-{:020}-{:02x}{:02x}{:02x}{:02x}",
            self.created_ms, d[0], d[1], d[2], d[3]
        )
    }
}

fn stream_row(store: &Store, arn: &str) -> Result<Option<StreamRow>, ApiError> {
    store.read(|c| -> Result<_, ApiError> {
        Ok(c.query_row(
            "SELECT arn, table_name, view_type, label, key_schema, created_ms, disabled_ms FROM streams WHERE arn = ?1",
            [arn],
            |r| {
                Ok(StreamRow {
                    arn: r.get(0)?,
                    table_name: r.get(1)?,
                    view_type: r.get(2)?,
                    label: r.get(3)?,
                    key_schema: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
                    created_ms: r.get(5)?,
                    disabled_ms: r.get(6)?,
                })
            },
        )
        .optional()?)
    })
}

fn stream_not_found(arn: &str) -> ApiError {
    ApiError::new(
        400,
        "ResourceNotFoundException",
        format!("Requested resource not found: Stream: {arn} not found"),
    )
}

/// (first retained seq, last seq) of a stream's records.
fn seq_bounds(store: &Store, arn: &str) -> Result<(Option<i64>, Option<i64>), ApiError> {
    store.read(|c| -> Result<_, ApiError> {
        Ok(c.query_row(
            "SELECT MIN(seq), MAX(seq) FROM stream_records WHERE stream_arn = ?1",
            [arn],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    })
}

/// The highest row id of any stream record (where `LATEST` starts).
fn max_seq(store: &Store) -> Result<i64, ApiError> {
    store.read(|c| -> Result<_, ApiError> {
        Ok(c.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM stream_records",
            [],
            |r| r.get(0),
        )?)
    })
}

fn shard_info(store: &Store, s: &StreamRow) -> Result<ShardInfo, ApiError> {
    let (first, last) = seq_bounds(store, &s.arn)?;
    let start = first.unwrap_or_else(|| {
        // No record yet: the shard starts after everything written so far.
        max_seq(store).unwrap_or(0) + 1
    });
    Ok(ShardInfo {
        shard_id: s.shard_id(),
        parent_shard_id: None,
        adjacent_parent_shard_id: None,
        starting_sequence_number: seq_string(start),
        ending_sequence_number: s.disabled_ms.map(|_| seq_string(last.unwrap_or(start))),
    })
}

/// Records of a stream after row id `after`, oldest first, with their creation ms.
fn records_after(
    store: &Store,
    arn: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, i64, Value)>, ApiError> {
    store.read(|c| -> Result<_, ApiError> {
        let mut st = c.prepare(
            "SELECT seq, created_ms, record FROM stream_records WHERE stream_arn = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st
            .query_map(rusqlite::params![arn, after, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows
            .into_iter()
            .map(|(seq, ms, rec)| (seq, ms, finish_record(seq, &rec)))
            .collect())
    })
}

fn iterator(arn: &str, shard: &str, after: i64) -> String {
    B64.encode(format!(
        "{arn}\n{shard}\n{after}\n{}",
        nimbus_core::now_ms()
    ))
}

fn parse_iterator(it: &str) -> Result<(String, String, i64, i64), ApiError> {
    let bad = || validation("Invalid ShardIterator");
    let raw = B64.decode(it).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.split('\n').collect();
    if parts.len() != 4 {
        return Err(bad());
    }
    Ok((
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].parse().map_err(|_| bad())?,
        parts[3].parse().map_err(|_| bad())?,
    ))
}

/// The Streams API's `userIdentity` is `{PrincipalId, Type}`; Lambda's event
/// writes `{principalId, type}`.
fn api_record(mut r: Value) -> Value {
    if let Some(u) = r.get("userIdentity").cloned() {
        r["userIdentity"] = json!({"PrincipalId": u["principalId"], "Type": u["type"]});
    }
    r
}

type R = Result<Value, ApiError>;

fn s<'a>(req: &'a Value, k: &str) -> Option<&'a str> {
    req.get(k).and_then(Value::as_str)
}

/// Dispatch one operation.
pub fn handle(store: &Store, op: Op, req: &Value) -> R {
    match op {
        Op::ListStreams => {
            let limit = req.get("Limit").and_then(Value::as_i64).unwrap_or(100);
            if !(1..=100).contains(&limit) {
                return Err(validation(format!("1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 100")));
            }
            let table = s(req, "TableName");
            let start = s(req, "ExclusiveStartStreamArn");
            let rows: Vec<(String, String, String)> = store.read(|c| -> Result<_, ApiError> {
                let mut st = c.prepare(
                    "SELECT arn, table_name, label FROM streams WHERE (?1 IS NULL OR table_name = ?1)
                     AND (?2 IS NULL OR arn > ?2) ORDER BY arn LIMIT ?3",
                )?;
                let r = st
                    .query_map(rusqlite::params![table, start, limit + 1], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(r)
            })?;
            let more = rows.len() > limit as usize;
            let page: Vec<Value> = rows
                .iter()
                .take(limit as usize)
                .map(|(a, t, l)| json!({"StreamArn": a, "TableName": t, "StreamLabel": l}))
                .collect();
            let mut out = json!({"Streams": page});
            if more {
                out["LastEvaluatedStreamArn"] = json!(rows[limit as usize - 1].0);
            }
            Ok(out)
        }
        Op::DescribeStream => {
            let arn = s(req, "StreamArn").unwrap_or_default();
            let row = stream_row(store, arn)?.ok_or_else(|| stream_not_found(arn))?;
            let sh = shard_info(store, &row)?;
            let mut range = json!({"StartingSequenceNumber": sh.starting_sequence_number});
            if let Some(e) = &sh.ending_sequence_number {
                range["EndingSequenceNumber"] = json!(e);
            }
            let mut shard = json!({"ShardId": sh.shard_id, "SequenceNumberRange": range});
            if let Some(p) = &sh.parent_shard_id {
                shard["ParentShardId"] = json!(p);
            }
            let exclusive = s(req, "ExclusiveStartShardId");
            let shards = if exclusive.is_some_and(|e| e >= sh.shard_id.as_str()) {
                vec![]
            } else {
                vec![shard]
            };
            Ok(json!({"StreamDescription": {
                "StreamArn": row.arn,
                "StreamLabel": row.label,
                "StreamStatus": if row.disabled_ms.is_some() { "DISABLED" } else { "ENABLED" },
                "StreamViewType": row.view_type,
                "CreationRequestDateTime": row.created_ms as f64 / 1000.0,
                "TableName": row.table_name,
                "KeySchema": row.key_schema,
                "Shards": shards,
            }}))
        }
        Op::GetShardIterator => {
            let arn = s(req, "StreamArn").unwrap_or_default();
            let row = stream_row(store, arn)?.ok_or_else(|| stream_not_found(arn))?;
            let shard = s(req, "ShardId").unwrap_or_default();
            if shard != row.shard_id() {
                return Err(ApiError::new(
                    400,
                    "ResourceNotFoundException",
                    format!("Requested resource not found: Shard does not exist: {shard}"),
                ));
            }
            let seq = || -> Result<i64, ApiError> {
                let n = s(req, "SequenceNumber").ok_or_else(|| {
                    validation("Must specify a SequenceNumber for AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER shard iterator types")
                })?;
                seq_parse(n).ok_or_else(|| {
                    validation(format!("Invalid SequenceNumber for this shard: {n}"))
                })
            };
            let after = match s(req, "ShardIteratorType").unwrap_or_default() {
                "TRIM_HORIZON" => 0,
                "LATEST" => max_seq(store)?,
                "AT_SEQUENCE_NUMBER" => seq()? - 1,
                "AFTER_SEQUENCE_NUMBER" => seq()?,
                other => {
                    return Err(validation(format!("1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_SEQUENCE_NUMBER, TRIM_HORIZON]")))
                }
            };
            Ok(json!({"ShardIterator": iterator(arn, shard, after)}))
        }
        Op::GetRecords => {
            let it = s(req, "ShardIterator").unwrap_or_default();
            let (arn, shard, after, issued) = parse_iterator(it)?;
            let now = nimbus_core::now_ms();
            if now - issued > ITERATOR_TTL_MS {
                return Err(ApiError::new(
                    400,
                    "ExpiredIteratorException",
                    "Iterator expired. The iterator was created at time ".to_string()
                        + &nimbus_core::format_ms(issued, "Z")
                        + " while right now it is "
                        + &nimbus_core::format_ms(now, "Z")
                        + " which is further in the future than the tolerated delay of 900000 milliseconds.",
                ));
            }
            let limit = req.get("Limit").and_then(Value::as_i64).unwrap_or(1000);
            if !(1..=1000).contains(&limit) {
                return Err(validation(format!("1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 1000")));
            }
            let row = stream_row(store, &arn)?.ok_or_else(|| stream_not_found(&arn))?;
            let recs = records_after(store, &arn, after, limit as usize)?;
            let last = recs.last().map(|r| r.0).unwrap_or(after);
            let mut out = json!({
                "Records": recs.into_iter().map(|(_, _, r)| api_record(r)).collect::<Vec<_>>(),
            });
            // A closed shard read to its end has no next iterator.
            let closed_and_done =
                row.disabled_ms.is_some() && seq_bounds(store, &arn)?.1.is_none_or(|m| last >= m);
            if !closed_and_done {
                out["NextShardIterator"] = json!(iterator(&arn, &shard, last));
            }
            Ok(out)
        }
    }
}

/// The Streams front-end.
pub struct Streams {
    store: Arc<Store>,
}

impl Frontend for Streams {
    fn meta(&self) -> &'static nimbus_protocol::ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let store = self.store.clone();
        Box::pin(async move {
            let call = match Call::<Op>::decode(req).await {
                Ok(c) => c,
                Err(resp) => return resp,
            };
            let rid = call.request_id.clone();
            let op = call.op;
            let body = axum::body::to_bytes(call.body, 1024 * 1024)
                .await
                .unwrap_or_default();
            let req: Value = match nimbus_protocol::decode_json(&body) {
                Ok(v) => v,
                Err(e) => {
                    return nimbus_svc_dynamodb::error_response(
                        &ApiError::new(400, "SerializationException", e.message),
                        &rid,
                        "dynamodbstreams",
                    )
                }
            };
            let result = tokio::task::spawn_blocking(move || handle(&store, op, &req))
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        500,
                        "InternalServerError",
                        "Internal server error",
                    ))
                });
            match result {
                Ok(v) => encode_json(
                    nimbus_protocol::Protocol::AwsJson10,
                    &rid,
                    &v,
                    JsonOptions::dynamodb(),
                ),
                Err(e) => nimbus_svc_dynamodb::error_response(&e, &rid, "dynamodbstreams"),
            }
        })
    }
}

/// DynamoDB streams as a [`ShardSource`] for the stream poller.
pub struct DynamoShards {
    store: Arc<Store>,
}

impl DynamoShards {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    fn read_sync(
        &self,
        arn: &str,
        position: ShardPosition,
        limit: usize,
    ) -> Result<Vec<ShardRecord>, ApiError> {
        let after = match position {
            ShardPosition::TrimHorizon => 0,
            ShardPosition::Latest => max_seq(&self.store)?,
            ShardPosition::AtSequence(s) => seq_parse(&s).map_or(0, |n| n - 1),
            ShardPosition::AfterSequence(s) => seq_parse(&s).unwrap_or(0),
            ShardPosition::AtTimestamp(ms) => {
                let first: Option<i64> = self.store.read(|c| -> Result<_, ApiError> {
                    Ok(c.query_row(
                        "SELECT MIN(seq) FROM stream_records WHERE stream_arn = ?1 AND created_ms >= ?2",
                        rusqlite::params![arn, ms],
                        |r| r.get(0),
                    )?)
                })?;
                match first {
                    Some(f) => f - 1,
                    None => max_seq(&self.store)?,
                }
            }
        };
        let recs = records_after(&self.store, arn, after, limit)?;
        Ok(recs
            .into_iter()
            .map(|(seq, ms, mut r)| {
                r["eventSourceARN"] = json!(arn);
                let keys = r["dynamodb"]["Keys"].to_string();
                let size = r["dynamodb"]["SizeBytes"].as_u64().unwrap_or(0) as usize;
                ShardRecord {
                    sequence_number: seq_string(seq),
                    partition_key: keys,
                    approximate_arrival_ms: ms,
                    size_bytes: size,
                    event_record: r,
                }
            })
            .collect())
    }
}

impl ShardSource for DynamoShards {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    fn accepts(&self, stream_arn: &str) -> bool {
        stream_arn.starts_with("arn:")
            && stream_arn.contains(":dynamodb:")
            && stream_arn.contains("/stream/")
    }

    fn stream_exists(&self, stream_arn: &str) -> bool {
        matches!(stream_row(&self.store, stream_arn), Ok(Some(_)))
    }

    fn shards(&self, stream_arn: &str) -> BoxFuture<'_, Result<Vec<ShardInfo>, String>> {
        let arn = stream_arn.to_string();
        Box::pin(async move {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                let row = stream_row(&store, &arn)
                    .map_err(|e| e.message)?
                    .ok_or_else(|| format!("stream {arn} does not exist"))?;
                shard_info(&store, &row)
                    .map(|s| vec![s])
                    .map_err(|e| e.message)
            })
            .await
            .map_err(|e| e.to_string())?
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
        let shard = shard_id.to_string();
        Box::pin(async move {
            let this = DynamoShards {
                store: self.store.clone(),
            };
            tokio::task::spawn_blocking(move || {
                let row = stream_row(&this.store, &arn)
                    .map_err(|e| e.message)?
                    .ok_or_else(|| format!("stream {arn} does not exist"))?;
                if row.shard_id() != shard {
                    return Err(format!("shard {shard} does not exist in {arn}"));
                }
                this.read_sync(&arn, position, limit).map_err(|e| e.message)
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }

    fn watch(&self, _stream_arn: &str) -> tokio::sync::watch::Receiver<u64> {
        self.store.changes.subscribe()
    }
}

/// Start the service: share DynamoDB's store, register the stream source for
/// event-source mappings, and hand back the front-end.
pub fn start(ctx: &ServiceContext) -> Result<nimbus_svc_common::Service, StartError> {
    let store = nimbus_svc_dynamodb::shared_store(&ctx.data_dir, &ctx.region, &ctx.account_id)
        .map_err(|e| StartError::new("dynamodbstreams", e))?;
    ctx.mapping_sources
        .register_shards(Arc::new(DynamoShards::new(store.clone())));
    Ok(nimbus_svc_common::Service::frontend_only(Arc::new(
        Streams { store },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_svc_dynamodb::api;
    use nimbus_svc_dynamodb::Op as DOp;

    fn setup() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            nimbus_svc_dynamodb::shared_store(dir.path(), "us-east-1", "123456789012").unwrap();
        api::handle(
            &store,
            DOp::CreateTable,
            &json!({"TableName": "tab1", "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"}}),
            "http://x",
        )
        .unwrap();
        (dir, store)
    }

    fn put(store: &Store, id: &str, v: &str) {
        api::handle(
            store,
            DOp::PutItem,
            &json!({"TableName": "tab1", "Item": {"id": {"S": id}, "v": {"S": v}}}),
            "http://x",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn one_record_per_effective_change_in_order() {
        let (_d, store) = setup();
        put(&store, "a", "1");
        put(&store, "a", "1"); // no-op: no record
        put(&store, "a", "2");
        api::handle(
            &store,
            DOp::DeleteItem,
            &json!({"TableName": "tab1", "Key": {"id": {"S": "a"}}}),
            "http://x",
        )
        .unwrap();
        let t = store.table("tab1").unwrap();
        let arn = t.stream.as_ref().unwrap().arn.clone();
        let src = DynamoShards::new(store.clone());
        let mut rx = src.watch(&arn);
        rx.borrow_and_update();
        let shards = src.shards(&arn).await.unwrap();
        assert_eq!(shards.len(), 1);
        let recs = src
            .read(&arn, &shards[0].shard_id, ShardPosition::TrimHorizon, 100)
            .await
            .unwrap();
        let names: Vec<&str> = recs
            .iter()
            .map(|r| r.event_record["eventName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
        assert_eq!(recs[1].event_record["dynamodb"]["OldImage"]["v"]["S"], "1");
        assert_eq!(recs[1].event_record["dynamodb"]["NewImage"]["v"]["S"], "2");
        assert_eq!(recs[0].event_record["eventSourceARN"], arn);
        let after = src
            .read(
                &arn,
                &shards[0].shard_id,
                ShardPosition::AfterSequence(recs[1].sequence_number.clone()),
                100,
            )
            .await
            .unwrap();
        assert_eq!(after.len(), 1);
        put(&store, "b", "1");
        assert!(
            rx.has_changed().unwrap(),
            "a committed write wakes watchers"
        );
    }

    #[test]
    fn iterators_page_through_records() {
        let (_d, store) = setup();
        for i in 0..5 {
            put(&store, &format!("k{i}"), "x");
        }
        let arn = store.table("tab1").unwrap().stream.clone().unwrap().arn;
        let d = handle(&store, Op::DescribeStream, &json!({"StreamArn": arn})).unwrap();
        let shard = d["StreamDescription"]["Shards"][0]["ShardId"]
            .as_str()
            .unwrap()
            .to_string();
        let it = handle(
            &store,
            Op::GetShardIterator,
            &json!({"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .unwrap();
        let r = handle(
            &store,
            Op::GetRecords,
            &json!({"ShardIterator": it["ShardIterator"], "Limit": 3}),
        )
        .unwrap();
        assert_eq!(r["Records"].as_array().unwrap().len(), 3);
        let r = handle(
            &store,
            Op::GetRecords,
            &json!({"ShardIterator": r["NextShardIterator"]}),
        )
        .unwrap();
        assert_eq!(r["Records"].as_array().unwrap().len(), 2);
        assert!(r["NextShardIterator"].is_string());
    }
}

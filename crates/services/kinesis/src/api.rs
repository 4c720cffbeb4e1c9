//! The operations: each decodes its awsJson input (model member names), works on
//! the [`Store`] and answers the model's output shape.

// `AwsError` is the wire error, built once per failed request: its size does not matter.
#![allow(clippy::result_large_err)]

use crate::error::KinesisError;
use crate::store::{parse_seq, seq_string, NewRecord, ShardRow, Store, StreamRow, HASH_MAX};
use crate::Op;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, KinesisError>;

/// The largest record data Kinesis takes (1 MiB).
pub const MAX_RECORD: usize = 1024 * 1024;
/// The largest `PutRecords` request (data and partition keys, 5 MiB).
pub const MAX_PUT_RECORDS: usize = 5 * 1024 * 1024;
/// How long a shard iterator stays valid.
pub const ITERATOR_TTL_MS: i64 = 300_000;
/// The most `GetRecords` returns in one call.
const MAX_GET_BYTES: usize = 10 * 1024 * 1024;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Where the service runs (for ARNs).
#[derive(Clone)]
pub struct Env {
    pub region: String,
    pub account: String,
}

impl Env {
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{name}",
            self.region, self.account
        )
    }
}

fn validation(msg: impl Into<String>) -> KinesisError {
    KinesisError::Validation(msg.into())
}

fn invalid(msg: impl Into<String>) -> KinesisError {
    KinesisError::InvalidArgument(msg.into())
}

fn check_stream_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: \
             Member must have length between 1 and 128"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(())
}

/// The stream a request names by `StreamName` or `StreamARN`.
fn stream_of(name: &Option<String>, arn: &Option<String>) -> Result<String> {
    match (name, arn) {
        (Some(n), _) => {
            check_stream_name(n)?;
            Ok(n.clone())
        }
        (None, Some(a)) => {
            let n = a
                .split_once(":stream/")
                .map(|(_, n)| n.split('/').next().unwrap_or(n))
                .filter(|n| !n.is_empty() && a.starts_with("arn:"))
                .ok_or_else(|| {
                    validation(format!(
                        "1 validation error detected: Value '{a}' at 'streamARN' failed to satisfy constraint: \
                         Member must satisfy regular expression pattern: \
                         arn:aws.*:kinesis:.*:\\d{{12}}:stream/\\S+"
                    ))
                })?;
            check_stream_name(n)?;
            Ok(n.to_string())
        }
        (None, None) => Err(invalid(
            "Either StreamName or StreamARN should be provided.",
        )),
    }
}

fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn parse_hash(s: &str, what: &str) -> Result<u128> {
    let n: u128 = s.parse().map_err(|_| {
        invalid(format!(
            "Invalid {what}: {s}. {what} must be a decimal integer between 0 and {HASH_MAX}."
        ))
    })?;
    Ok(n)
}

fn shard_json(sh: &ShardRow) -> Value {
    let mut v = json!({
        "ShardId": sh.shard_id,
        "HashKeyRange": {
            "StartingHashKey": sh.start_hash.to_string(),
            "EndingHashKey": sh.end_hash.to_string(),
        },
        "SequenceNumberRange": {"StartingSequenceNumber": seq_string(sh.start_seq)},
    });
    if let Some(p) = &sh.parent {
        v["ParentShardId"] = json!(p);
    }
    if let Some(p) = &sh.adjacent_parent {
        v["AdjacentParentShardId"] = json!(p);
    }
    if let Some(e) = sh.end_seq {
        v["SequenceNumberRange"]["EndingSequenceNumber"] = json!(seq_string(e));
    }
    v
}

fn mode_details(s: &StreamRow) -> Value {
    json!({"StreamMode": s.mode})
}

fn monitoring(s: &StreamRow) -> Value {
    json!([{"ShardLevelMetrics": s.metrics}])
}

/// A shard iterator: where the next `GetRecords` starts, and when it was issued.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Iterator {
    /// The stream's row id (a re-created stream of the same name is another).
    #[serde(rename = "i")]
    pub stream_id: i64,
    #[serde(rename = "n")]
    pub stream: String,
    #[serde(rename = "s")]
    pub shard: String,
    /// Records with a counter above this are next.
    #[serde(rename = "a")]
    pub after: i64,
    #[serde(rename = "t")]
    pub issued_ms: i64,
}

impl Iterator {
    pub fn encode(&self) -> String {
        B64.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(s: &str) -> Result<Self> {
        B64.decode(s)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid(format!("Invalid ShardIterator: {s}")))
    }
}

fn fmt_time(ms: i64) -> String {
    nimbus_protocol::timestamp::from_epoch_seconds(ms as f64 / 1000.0)
        .map(nimbus_protocol::timestamp::format_iso8601)
        .unwrap_or_else(|| ms.to_string())
}

// ---- inputs ---------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateStream {
    stream_name: String,
    shard_count: Option<i64>,
    stream_mode_details: Option<ModeDetails>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModeDetails {
    stream_mode: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteStream {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    enforce_consumer_deletion: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeStream {
    #[serde(flatten)]
    stream: StreamRef,
    limit: Option<i64>,
    exclusive_start_shard_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListStreams {
    limit: Option<i64>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListShards {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<i64>,
    shard_filter: Option<ShardFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ShardFilter {
    #[serde(rename = "Type")]
    kind: String,
    shard_id: Option<String>,
    timestamp: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecord {
    #[serde(flatten)]
    stream: StreamRef,
    data: String,
    partition_key: String,
    explicit_hash_key: Option<String>,
    #[allow(dead_code)]
    sequence_number_for_ordering: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecords {
    #[serde(flatten)]
    stream: StreamRef,
    records: Vec<PutRecordsEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsEntry {
    data: String,
    partition_key: String,
    explicit_hash_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetShardIterator {
    #[serde(flatten)]
    stream: StreamRef,
    shard_id: String,
    shard_iterator_type: String,
    starting_sequence_number: Option<String>,
    timestamp: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecords {
    shard_iterator: String,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SplitShard {
    #[serde(flatten)]
    stream: StreamRef,
    shard_to_split: String,
    new_starting_hash_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MergeShards {
    #[serde(flatten)]
    stream: StreamRef,
    shard_to_merge: String,
    adjacent_shard_to_merge: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateShardCount {
    #[serde(flatten)]
    stream: StreamRef,
    target_shard_count: i64,
    scaling_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Retention {
    #[serde(flatten)]
    stream: StreamRef,
    retention_period_hours: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddTags {
    #[serde(flatten)]
    stream: StreamRef,
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveTags {
    #[serde(flatten)]
    stream: StreamRef,
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTags {
    #[serde(flatten)]
    stream: StreamRef,
    exclusive_start_tag_key: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStreamMode {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_mode_details: ModeDetails,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Encryption {
    #[serde(flatten)]
    stream: StreamRef,
    encryption_type: String,
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Monitoring {
    #[serde(flatten)]
    stream: StreamRef,
    shard_level_metrics: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegisterConsumer {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    consumer_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConsumerRef {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListConsumers {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> std::result::Result<T, nimbus_protocol::AwsError> {
    nimbus_protocol::decode_json(body)
}

/// What an operation did besides answering: records appended to these streams.
#[derive(Default)]
pub struct Effects {
    pub appended: Vec<String>,
    pub records_put: u64,
}

/// Run one operation; the answer's JSON or the error to send.
pub fn handle(
    store: &Store,
    env: &Env,
    op: Op,
    body: &[u8],
    now_ms: i64,
    fx: &mut Effects,
) -> std::result::Result<Value, nimbus_protocol::AwsError> {
    let r = |x: Result<Value>| x.map_err(|e| e.to_aws());
    match op {
        Op::CreateStream => r(create_stream(store, decode(body)?, now_ms)),
        Op::DeleteStream => {
            let i: DeleteStream = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                store.delete_stream(&name, i.enforce_consumer_deletion)?;
                fx.appended.push(name);
                Ok(json!({}))
            })())
        }
        Op::DescribeStream => r(describe_stream(store, env, decode(body)?)),
        Op::DescribeStreamSummary => {
            let i: StreamRef = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream_name, &i.stream_arn)?;
                let (s, shards) = store.stream_and_shards(&name)?;
                let consumers = store.consumer_count(s.id)?;
                let mut d = json!({
                    "StreamName": s.name,
                    "StreamARN": env.stream_arn(&s.name),
                    "StreamStatus": "ACTIVE",
                    "StreamModeDetails": mode_details(&s),
                    "RetentionPeriodHours": s.retention_hours,
                    "StreamCreationTimestamp": secs(s.created_ms),
                    "EnhancedMonitoring": monitoring(&s),
                    "EncryptionType": s.encryption,
                    "OpenShardCount": shards.iter().filter(|s| s.is_open()).count(),
                    "ConsumerCount": consumers,
                });
                if let Some(k) = &s.key_id {
                    d["KeyId"] = json!(k);
                }
                Ok(json!({"StreamDescriptionSummary": d}))
            })())
        }
        Op::ListStreams => r(list_streams(store, env, decode(body)?)),
        Op::ListShards => r(list_shards(store, decode(body)?)),
        Op::PutRecord => {
            let i: PutRecord = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                let rec = new_record(
                    &i.data,
                    &i.partition_key,
                    i.explicit_hash_key.as_deref(),
                    None,
                )?;
                let s = store.stream(&name)?;
                let out = store.put(&name, &[rec], now_ms)?;
                fx.appended.push(name);
                fx.records_put += 1;
                let (shard, seq) = &out[0];
                Ok(json!({
                    "ShardId": shard,
                    "SequenceNumber": seq_string(*seq),
                    "EncryptionType": s.encryption,
                }))
            })())
        }
        Op::PutRecords => {
            let i: PutRecords = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                if i.records.is_empty() || i.records.len() > 500 {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{}' at 'records' failed to satisfy constraint: \
                         Member must have length {}",
                        i.records.len(),
                        if i.records.is_empty() { "greater than or equal to 1" } else { "less than or equal to 500" }
                    )));
                }
                let mut recs = Vec::with_capacity(i.records.len());
                let mut total = 0usize;
                for (n, e) in i.records.iter().enumerate() {
                    let rec = new_record(
                        &e.data,
                        &e.partition_key,
                        e.explicit_hash_key.as_deref(),
                        Some(n + 1),
                    )?;
                    total += rec.data.len() + rec.partition_key.len();
                    recs.push(rec);
                }
                if total > MAX_PUT_RECORDS {
                    return Err(invalid(format!(
                        "Records size exceeds 5 MB limit: {total} bytes of data and partition keys."
                    )));
                }
                let s = store.stream(&name)?;
                let out = store.put(&name, &recs, now_ms)?;
                fx.appended.push(name);
                fx.records_put += out.len() as u64;
                let records: Vec<Value> = out
                    .iter()
                    .map(|(shard, seq)| json!({"ShardId": shard, "SequenceNumber": seq_string(*seq)}))
                    .collect();
                Ok(
                    json!({"FailedRecordCount": 0, "Records": records, "EncryptionType": s.encryption}),
                )
            })())
        }
        Op::GetShardIterator => r(get_shard_iterator(store, decode(body)?, now_ms)),
        Op::GetRecords => r(get_records(store, decode(body)?, now_ms)),
        Op::SplitShard => {
            let i: SplitShard = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                let at = parse_hash(&i.new_starting_hash_key, "NewStartingHashKey")?;
                store.split(&name, &i.shard_to_split, at)?;
                fx.appended.push(name);
                Ok(json!({}))
            })())
        }
        Op::MergeShards => {
            let i: MergeShards = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                store.merge(&name, &i.shard_to_merge, &i.adjacent_shard_to_merge)?;
                fx.appended.push(name);
                Ok(json!({}))
            })())
        }
        Op::UpdateShardCount => {
            let i: UpdateShardCount = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                if i.scaling_type != "UNIFORM_SCALING" {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{}' at 'scalingType' failed to satisfy constraint: \
                         Member must satisfy enum value set: [UNIFORM_SCALING]",
                        i.scaling_type
                    )));
                }
                if !(1..=10000).contains(&i.target_shard_count) {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{}' at 'targetShardCount' failed to satisfy constraint: \
                         Member must have value between 1 and 10000",
                        i.target_shard_count
                    )));
                }
                let s = store.stream(&name)?;
                if s.mode == "ON_DEMAND" {
                    return Err(validation(format!(
                        "UpdateShardCount is not supported for stream {name} in ON_DEMAND mode."
                    )));
                }
                let current = store.reshard(&name, i.target_shard_count as u32)?;
                fx.appended.push(name.clone());
                Ok(json!({
                    "StreamName": name,
                    "StreamARN": env.stream_arn(&name),
                    "CurrentShardCount": current,
                    "TargetShardCount": i.target_shard_count,
                }))
            })())
        }
        Op::IncreaseStreamRetentionPeriod | Op::DecreaseStreamRetentionPeriod => {
            let i: Retention = decode(body)?;
            let increase = op == Op::IncreaseStreamRetentionPeriod;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                if !(24..=8760).contains(&i.retention_period_hours) {
                    return Err(invalid(format!(
                        "Minimum allowed retention period is 24 hours and maximum is 8760 hours. \
                         Requested retention period ({} hours) is {} the limit.",
                        i.retention_period_hours,
                        if i.retention_period_hours < 24 {
                            "below"
                        } else {
                            "above"
                        }
                    )));
                }
                store.set_retention(&name, i.retention_period_hours, increase)?;
                if !increase {
                    store.trim(now_ms)?;
                }
                Ok(json!({}))
            })())
        }
        Op::AddTagsToStream => {
            let i: AddTags = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                check_tags(&i.tags)?;
                store.update_stream(&name, |s| {
                    s.tags.extend(i.tags.clone());
                    if s.tags.len() > 50 {
                        return Err(invalid(format!(
                            "Failed to add tags to stream {name} under account {} because a given stream \
                             cannot have more than 50 tags.",
                            env.account
                        )));
                    }
                    Ok(())
                })?;
                Ok(json!({}))
            })())
        }
        Op::RemoveTagsFromStream => {
            let i: RemoveTags = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                store.update_stream(&name, |s| {
                    for k in &i.tag_keys {
                        s.tags.remove(k);
                    }
                    Ok(())
                })?;
                Ok(json!({}))
            })())
        }
        Op::ListTagsForStream => {
            let i: ListTags = decode(body)?;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                let s = store.stream(&name)?;
                let limit = i.limit.unwrap_or(50).clamp(1, 50) as usize;
                let after: Vec<(&String, &String)> = s
                    .tags
                    .iter()
                    .filter(|(k, _)| i.exclusive_start_tag_key.as_ref().is_none_or(|x| *k > x))
                    .collect();
                let tags: Vec<Value> = after
                    .iter()
                    .take(limit)
                    .map(|(k, v)| json!({"Key": k, "Value": v}))
                    .collect();
                Ok(json!({"Tags": tags, "HasMoreTags": after.len() > limit}))
            })())
        }
        Op::UpdateStreamMode => {
            let i: UpdateStreamMode = decode(body)?;
            r((|| {
                let name = stream_of(&None, &Some(i.stream_arn.clone()))?;
                let mode = check_mode(&i.stream_mode_details.stream_mode)?;
                store.update_stream(&name, |s| {
                    s.mode = mode.to_string();
                    Ok(())
                })?;
                Ok(json!({}))
            })())
        }
        Op::StartStreamEncryption | Op::StopStreamEncryption => {
            let i: Encryption = decode(body)?;
            let start = op == Op::StartStreamEncryption;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                if i.encryption_type != "KMS" {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{}' at 'encryptionType' failed to satisfy \
                         constraint: Member must satisfy enum value set: [KMS]",
                        i.encryption_type
                    )));
                }
                store.update_stream(&name, |s| {
                    if start {
                        s.encryption = "KMS".into();
                        s.key_id = Some(i.key_id.clone());
                    } else {
                        s.encryption = "NONE".into();
                        s.key_id = None;
                    }
                    Ok(())
                })?;
                Ok(json!({}))
            })())
        }
        Op::EnableEnhancedMonitoring | Op::DisableEnhancedMonitoring => {
            let i: Monitoring = decode(body)?;
            let enable = op == Op::EnableEnhancedMonitoring;
            r((|| {
                let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
                let (before, after) = store.update_stream(&name, |s| {
                    let before = s.metrics.clone();
                    let all = [
                        "IncomingBytes",
                        "IncomingRecords",
                        "OutgoingBytes",
                        "OutgoingRecords",
                        "WriteProvisionedThroughputExceeded",
                        "ReadProvisionedThroughputExceeded",
                        "IteratorAgeMilliseconds",
                    ];
                    let asked: Vec<String> = if i.shard_level_metrics.iter().any(|m| m == "ALL") {
                        all.iter().map(|s| s.to_string()).collect()
                    } else {
                        i.shard_level_metrics.clone()
                    };
                    for m in &asked {
                        if !all.contains(&m.as_str()) {
                            return Err(validation(format!(
                                "1 validation error detected: Value '[{m}]' at 'shardLevelMetrics' failed to \
                                 satisfy constraint: Member must satisfy enum value set"
                            )));
                        }
                    }
                    if enable {
                        for m in asked {
                            if !s.metrics.contains(&m) {
                                s.metrics.push(m);
                            }
                        }
                    } else {
                        s.metrics.retain(|m| !asked.contains(m));
                    }
                    Ok((before, s.metrics.clone()))
                })?;
                Ok(json!({
                    "StreamName": name,
                    "StreamARN": env.stream_arn(&name),
                    "CurrentShardLevelMetrics": before,
                    "DesiredShardLevelMetrics": after,
                }))
            })())
        }
        Op::DescribeLimits => r((|| {
            let streams = store.streams()?;
            let mut open = 0usize;
            let mut on_demand = 0usize;
            for s in &streams {
                let (_, shards) = store.stream_and_shards(&s.name)?;
                open += shards.iter().filter(|s| s.is_open()).count();
                if s.mode == "ON_DEMAND" {
                    on_demand += 1;
                }
            }
            Ok(json!({
                "ShardLimit": 20000,
                "OpenShardCount": open,
                "OnDemandStreamCount": on_demand,
                "OnDemandStreamCountLimit": 50,
            }))
        })()),
        Op::RegisterStreamConsumer => {
            let i: RegisterConsumer = decode(body)?;
            r((|| {
                let name = stream_of(&None, &Some(i.stream_arn.clone()))?;
                if i.consumer_name.is_empty() || i.consumer_name.len() > 128 {
                    return Err(validation(
                        "1 validation error detected: Value at 'consumerName' failed to satisfy constraint: \
                         Member must have length between 1 and 128",
                    ));
                }
                let stream_arn = env.stream_arn(&name);
                let c = store.register_consumer(
                    &name,
                    &i.consumer_name,
                    |t| format!("{stream_arn}/consumer/{}:{t}", i.consumer_name),
                    now_ms,
                )?;
                Ok(json!({"Consumer": consumer_json(&c.name, &c.arn, c.created_ms, None)}))
            })())
        }
        Op::ListStreamConsumers => {
            let i: ListConsumers = decode(body)?;
            r((|| {
                let name = stream_of(&None, &Some(i.stream_arn.clone()))?;
                let all = store.consumers(&name)?;
                let start: usize = i
                    .next_token
                    .as_deref()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let max = i.max_results.unwrap_or(100).clamp(1, 10000) as usize;
                let page: Vec<Value> = all
                    .iter()
                    .skip(start)
                    .take(max)
                    .map(|c| consumer_json(&c.name, &c.arn, c.created_ms, None))
                    .collect();
                let mut out = json!({"Consumers": page});
                if start + max < all.len() {
                    out["NextToken"] = json!((start + max).to_string());
                }
                Ok(out)
            })())
        }
        Op::DescribeStreamConsumer | Op::DeregisterStreamConsumer => {
            let i: ConsumerRef = decode(body)?;
            r((|| {
                let (stream_arn, consumer) = match (
                    &i.consumer_arn,
                    &i.stream_arn,
                    &i.consumer_name,
                ) {
                    (Some(carn), _, _) => {
                        let (s, rest) = carn
                            .split_once("/consumer/")
                            .ok_or_else(|| invalid(format!("Invalid ConsumerARN: {carn}")))?;
                        let name = rest.rsplit_once(':').map(|(n, _)| n).unwrap_or(rest);
                        (s.to_string(), name.to_string())
                    }
                    (None, Some(s), Some(c)) => (s.clone(), c.clone()),
                    _ => return Err(invalid(
                        "Either ConsumerARN or both ConsumerName and StreamARN must be provided.",
                    )),
                };
                let name = stream_of(&None, &Some(stream_arn.clone()))?;
                let missing = || {
                    KinesisError::NotFound(format!(
                        "Consumer {consumer} under stream {name} not found for account {}.",
                        env.account
                    ))
                };
                if op == Op::DeregisterStreamConsumer {
                    if !store.deregister_consumer(&name, &consumer)? {
                        return Err(missing());
                    }
                    return Ok(json!({}));
                }
                let c = store
                    .consumers(&name)?
                    .into_iter()
                    .find(|c| c.name == consumer)
                    .ok_or_else(missing)?;
                Ok(
                    json!({"ConsumerDescription": consumer_json(&c.name, &c.arn, c.created_ms, Some(&env.stream_arn(&name)))}),
                )
            })())
        }
        _ => Err(nimbus_protocol::AwsError::not_implemented(
            "kinesis",
            op.name(),
        )),
    }
}

fn consumer_json(name: &str, arn: &str, created_ms: i64, stream_arn: Option<&str>) -> Value {
    let mut v = json!({
        "ConsumerName": name,
        "ConsumerARN": arn,
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": secs(created_ms),
    });
    if let Some(s) = stream_arn {
        v["StreamARN"] = json!(s);
    }
    v
}

fn check_mode(mode: &str) -> Result<&'static str> {
    match mode {
        "PROVISIONED" => Ok("PROVISIONED"),
        "ON_DEMAND" => Ok("ON_DEMAND"),
        other => Err(validation(format!(
            "1 validation error detected: Value '{other}' at 'streamModeDetails.streamMode' failed to \
             satisfy constraint: Member must satisfy enum value set: [ON_DEMAND, PROVISIONED]"
        ))),
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(invalid(format!(
                "Invalid tag: key '{k}' must be 1 to 128 characters and its value at most 256."
            )));
        }
    }
    Ok(())
}

/// Validate one record of a put; `index` is its 1-based place in `PutRecords`.
fn new_record(
    data: &str,
    partition_key: &str,
    explicit_hash_key: Option<&str>,
    index: Option<usize>,
) -> Result<NewRecord> {
    let at = |m: &str| match index {
        Some(i) => format!("records.{i}.member.{m}"),
        None => m.to_string(),
    };
    let data = B64.decode(data).map_err(|_| {
        KinesisError::Validation(format!(
            "1 validation error detected: Value at '{}' is not valid base64.",
            at("data")
        ))
    })?;
    if data.len() > MAX_RECORD {
        return Err(validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_RECORD}",
            at("data")
        )));
    }
    let pk_len = partition_key.chars().count();
    if !(1..=256).contains(&pk_len) {
        return Err(validation(format!(
            "1 validation error detected: Value '{partition_key}' at '{}' failed to satisfy constraint: \
             Member must have length between 1 and 256",
            at("partitionKey")
        )));
    }
    let explicit_hash_key = match explicit_hash_key {
        None => None,
        Some(h) => {
            if h.is_empty() || h.len() > 39 || !h.bytes().all(|b| b.is_ascii_digit()) {
                return Err(validation(format!(
                    "1 validation error detected: Value '{h}' at '{}' failed to satisfy constraint: \
                     Member must satisfy regular expression pattern: 0|([1-9]\\d{{0,38}})",
                    at("explicitHashKey")
                )));
            }
            Some(h.parse::<u128>().map_err(|_| {
                invalid(format!(
                    "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"
                ))
            })?)
        }
    };
    Ok(NewRecord {
        partition_key: partition_key.to_string(),
        explicit_hash_key,
        data,
    })
}

fn create_stream(store: &Store, i: CreateStream, now_ms: i64) -> Result<Value> {
    check_stream_name(&i.stream_name)?;
    check_tags(&i.tags)?;
    let mode = match &i.stream_mode_details {
        Some(m) => check_mode(&m.stream_mode)?,
        None => "PROVISIONED",
    };
    let shards = match (mode, i.shard_count) {
        ("ON_DEMAND", Some(_)) => {
            return Err(validation(
                "ShardCount must not be provided for a stream in ON_DEMAND mode.",
            ))
        }
        ("ON_DEMAND", None) => 4,
        (_, None) => {
            return Err(validation(
                "ShardCount is required for a stream in PROVISIONED mode.",
            ))
        }
        (_, Some(n)) if !(1..=10000).contains(&n) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'shardCount' failed to satisfy constraint: \
                 Member must have value greater than or equal to 1"
            )))
        }
        (_, Some(n)) => n as u32,
    };
    store.create_stream(&i.stream_name, shards, mode, &i.tags, now_ms)?;
    Ok(json!({}))
}

fn describe_stream(store: &Store, env: &Env, i: DescribeStream) -> Result<Value> {
    let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
    let (s, shards) = store.stream_and_shards(&name)?;
    let limit = i.limit.unwrap_or(100).clamp(1, 10000) as usize;
    let after: Vec<&ShardRow> = shards
        .iter()
        .filter(|sh| {
            i.exclusive_start_shard_id
                .as_ref()
                .is_none_or(|x| sh.shard_id > *x)
        })
        .collect();
    let page: Vec<Value> = after.iter().take(limit).map(|sh| shard_json(sh)).collect();
    let mut d = json!({
        "StreamName": s.name,
        "StreamARN": env.stream_arn(&s.name),
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": mode_details(&s),
        "Shards": page,
        "HasMoreShards": after.len() > limit,
        "RetentionPeriodHours": s.retention_hours,
        "StreamCreationTimestamp": secs(s.created_ms),
        "EnhancedMonitoring": monitoring(&s),
        "EncryptionType": s.encryption,
    });
    if let Some(k) = &s.key_id {
        d["KeyId"] = json!(k);
    }
    Ok(json!({"StreamDescription": d}))
}

fn list_streams(store: &Store, env: &Env, i: ListStreams) -> Result<Value> {
    let streams = store.streams()?;
    let limit = i.limit.unwrap_or(100).clamp(1, 10000) as usize;
    let start = i
        .next_token
        .clone()
        .or(i.exclusive_start_stream_name.clone());
    let after: Vec<&StreamRow> = streams
        .iter()
        .filter(|s| start.as_ref().is_none_or(|x| s.name > *x))
        .collect();
    let page: Vec<&StreamRow> = after.iter().take(limit).copied().collect();
    let more = after.len() > limit;
    let mut out = json!({
        "StreamNames": page.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "HasMoreStreams": more,
        "StreamSummaries": page.iter().map(|s| json!({
            "StreamName": s.name,
            "StreamARN": env.stream_arn(&s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(s),
            "StreamCreationTimestamp": secs(s.created_ms),
        })).collect::<Vec<_>>(),
    });
    if more {
        if let Some(last) = page.last() {
            out["NextToken"] = json!(last.name);
        }
    }
    Ok(out)
}

fn list_shards(store: &Store, i: ListShards) -> Result<Value> {
    // A NextToken carries the stream and the last shard listed.
    let (name, start) = match &i.next_token {
        Some(t) => {
            if i.stream_name.is_some() || i.stream_arn.is_some() {
                return Err(invalid(
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            let raw = B64
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid(format!("Invalid NextToken: {t}")))?;
            let (n, s) = raw
                .split_once('\n')
                .ok_or_else(|| invalid(format!("Invalid NextToken: {t}")))?;
            (n.to_string(), Some(s.to_string()))
        }
        None => (
            stream_of(&i.stream_name, &i.stream_arn)?,
            i.exclusive_start_shard_id.clone(),
        ),
    };
    let (_, shards) = store.stream_and_shards(&name)?;
    let max = i.max_results.unwrap_or(1000).clamp(1, 10000) as usize;
    let mut sel: Vec<&ShardRow> = shards
        .iter()
        .filter(|sh| start.as_ref().is_none_or(|x| sh.shard_id > *x))
        .collect();
    if let Some(f) = &i.shard_filter {
        match f.kind.as_str() {
            "AT_LATEST" => sel.retain(|s| s.is_open()),
            "AFTER_SHARD_ID" => {
                let id = f.shard_id.clone().ok_or_else(|| {
                    invalid("ShardId must be provided with a ShardFilter of type AFTER_SHARD_ID.")
                })?;
                sel.retain(|s| s.shard_id > id);
            }
            "AT_TIMESTAMP" | "FROM_TIMESTAMP" => {
                if f.timestamp.is_none() {
                    return Err(invalid(format!(
                        "Timestamp must be provided with a ShardFilter of type {}.",
                        f.kind
                    )));
                }
            }
            "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" => {}
            other => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{other}' at 'shardFilter.type' failed to satisfy \
                     constraint: Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, \
                     FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]"
                )))
            }
        }
    }
    let page: Vec<&ShardRow> = sel.iter().take(max).copied().collect();
    let mut out = json!({"Shards": page.iter().map(|s| shard_json(s)).collect::<Vec<_>>()});
    if sel.len() > max {
        if let Some(last) = page.last() {
            out["NextToken"] = json!(B64.encode(format!("{name}\n{}", last.shard_id)));
        }
    }
    Ok(out)
}

fn get_shard_iterator(store: &Store, i: GetShardIterator, now_ms: i64) -> Result<Value> {
    let name = stream_of(&i.stream.stream_name, &i.stream.stream_arn)?;
    let (s, shards) = store.stream_and_shards(&name)?;
    let sh = shards
        .iter()
        .find(|x| x.shard_id == i.shard_id)
        .ok_or_else(|| {
            KinesisError::NotFound(format!(
                "Shard {} in stream {name} under account {} does not exist",
                i.shard_id,
                nimbus_core::ACCOUNT_ID
            ))
        })?;
    let seq_arg = || -> Result<i64> {
        let raw = i.starting_sequence_number.as_deref().ok_or_else(|| {
            invalid(format!(
                "StartingSequenceNumber must be provided for ShardIteratorType {}.",
                i.shard_iterator_type
            ))
        })?;
        parse_seq(raw).ok_or_else(|| {
            invalid(format!(
                "StartingSequenceNumber {raw} used in GetShardIterator on shard {} in stream {name} \
                 under account {} is invalid.",
                i.shard_id,
                nimbus_core::ACCOUNT_ID
            ))
        })
    };
    let after = match i.shard_iterator_type.as_str() {
        "TRIM_HORIZON" => sh.start_seq - 1,
        "LATEST" => sh.end_seq.unwrap_or(s.next_seq - 1),
        "AT_SEQUENCE_NUMBER" => seq_arg()? - 1,
        "AFTER_SEQUENCE_NUMBER" => seq_arg()?,
        "AT_TIMESTAMP" => {
            let ts = i.timestamp.ok_or_else(|| {
                invalid("Timestamp must be provided for ShardIteratorType AT_TIMESTAMP.")
            })?;
            let ts_ms = (ts * 1000.0).round() as i64;
            match store.first_at(s.id, &sh.shard_id, ts_ms)? {
                Some(n) => n - 1,
                None => sh.end_seq.unwrap_or(s.next_seq - 1),
            }
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy \
                 constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, \
                 AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]"
            )))
        }
    };
    let it = Iterator {
        stream_id: s.id,
        stream: s.name,
        shard: sh.shard_id.clone(),
        after,
        issued_ms: now_ms,
    };
    Ok(json!({"ShardIterator": it.encode()}))
}

fn get_records(store: &Store, i: GetRecords, now_ms: i64) -> Result<Value> {
    let limit = match i.limit {
        None => 10000,
        Some(n) if (1..=10000).contains(&n) => n as usize,
        Some(n) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: \
                 Member must have value {}",
                if n < 1 { "greater than or equal to 1" } else { "less than or equal to 10000" }
            )))
        }
    };
    let it = Iterator::decode(&i.shard_iterator)?;
    if now_ms - it.issued_ms > ITERATOR_TTL_MS {
        return Err(KinesisError::ExpiredIterator(format!(
            "Iterator expired. The iterator was created at time {} while right now it is {} which is \
             further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
            fmt_time(it.issued_ms),
            fmt_time(now_ms)
        )));
    }
    let (s, shards) = store.stream_and_shards(&it.stream)?;
    if s.id != it.stream_id {
        return Err(KinesisError::NotFound(format!(
            "Stream {} under account {} not found.",
            it.stream,
            nimbus_core::ACCOUNT_ID
        )));
    }
    let sh = shards
        .iter()
        .find(|x| x.shard_id == it.shard)
        .ok_or_else(|| invalid(format!("Invalid ShardIterator: shard {} is gone", it.shard)))?;
    let (recs, more) = store.read(s.id, &sh.shard_id, it.after, limit, MAX_GET_BYTES)?;
    let last = recs.last().map(|r| r.seq).unwrap_or(it.after);
    let behind = if more {
        recs.last()
            .map(|r| now_ms - r.arrival_ms)
            .unwrap_or(0)
            .max(0)
    } else {
        0
    };
    let records: Vec<Value> = recs
        .iter()
        .map(|r| {
            json!({
                "SequenceNumber": seq_string(r.seq),
                "ApproximateArrivalTimestamp": secs(r.arrival_ms),
                "Data": B64.encode(&r.data),
                "PartitionKey": r.partition_key,
            })
        })
        .collect();
    let mut out = json!({"Records": records, "MillisBehindLatest": behind});
    let drained = !more && !sh.is_open();
    if drained {
        // The shard is closed and read to its end: no next iterator, and its
        // children to go on with.
        let children: Vec<Value> = shards
            .iter()
            .filter(|c| {
                c.parent.as_deref() == Some(&sh.shard_id)
                    || c.adjacent_parent.as_deref() == Some(&sh.shard_id)
            })
            .map(|c| {
                let mut parents = vec![];
                parents.extend(c.parent.clone());
                parents.extend(c.adjacent_parent.clone());
                json!({
                    "ShardId": c.shard_id,
                    "ParentShards": parents,
                    "HashKeyRange": {
                        "StartingHashKey": c.start_hash.to_string(),
                        "EndingHashKey": c.end_hash.to_string(),
                    },
                })
            })
            .collect();
        out["ChildShards"] = json!(children);
    } else {
        let next = Iterator {
            after: last,
            issued_ms: now_ms,
            ..it
        };
        out["NextShardIterator"] = json!(next.encode());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Store, Env) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("kinesis.db")).unwrap();
        let env = Env {
            region: "us-east-1".into(),
            account: "123456789012".into(),
        };
        (d, s, env)
    }

    fn call(
        s: &Store,
        env: &Env,
        op: Op,
        body: Value,
        now: i64,
    ) -> std::result::Result<Value, nimbus_protocol::AwsError> {
        handle(
            s,
            env,
            op,
            body.to_string().as_bytes(),
            now,
            &mut Effects::default(),
        )
    }

    #[test]
    fn iterators_expire_after_five_minutes_with_kinesis_error() {
        let (_d, s, env) = setup();
        call(
            &s,
            &env,
            Op::CreateStream,
            json!({"StreamName": "s", "ShardCount": 1}),
            0,
        )
        .unwrap();
        let it = call(
            &s,
            &env,
            Op::GetShardIterator,
            json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
            1000,
        )
        .unwrap()["ShardIterator"]
            .clone();
        let ok = call(
            &s,
            &env,
            Op::GetRecords,
            json!({"ShardIterator": it}),
            1000 + ITERATOR_TTL_MS,
        )
        .unwrap();
        assert!(ok["NextShardIterator"].is_string());
        let err = call(
            &s,
            &env,
            Op::GetRecords,
            json!({"ShardIterator": it}),
            1001 + ITERATOR_TTL_MS,
        )
        .unwrap_err();
        assert_eq!(err.code, "ExpiredIteratorException");
        // The next iterator is fresh.
        let next = ok["NextShardIterator"].clone();
        call(
            &s,
            &env,
            Op::GetRecords,
            json!({"ShardIterator": next}),
            1001 + ITERATOR_TTL_MS,
        )
        .unwrap();
    }

    #[test]
    fn a_split_parent_read_to_its_end_names_its_children() {
        let (_d, s, env) = setup();
        call(
            &s,
            &env,
            Op::CreateStream,
            json!({"StreamName": "s", "ShardCount": 1}),
            0,
        )
        .unwrap();
        call(
            &s,
            &env,
            Op::PutRecord,
            json!({"StreamName": "s", "PartitionKey": "k", "Data": "aGk="}),
            5,
        )
        .unwrap();
        call(
            &s,
            &env,
            Op::SplitShard,
            json!({"StreamName": "s", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "100"}),
            6,
        )
        .unwrap();
        let it = call(
            &s,
            &env,
            Op::GetShardIterator,
            json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
            7,
        )
        .unwrap()["ShardIterator"]
            .clone();
        let out = call(
            &s,
            &env,
            Op::GetRecords,
            json!({"ShardIterator": it, "Limit": 10}),
            8,
        )
        .unwrap();
        assert_eq!(out["Records"].as_array().unwrap().len(), 1);
        assert!(out.get("NextShardIterator").is_none());
        let kids = out["ChildShards"].as_array().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1]["HashKeyRange"]["StartingHashKey"], "100");
    }

    #[test]
    fn bad_input_gets_kinesis_errors() {
        let (_d, s, env) = setup();
        let e = call(
            &s,
            &env,
            Op::CreateStream,
            json!({"StreamName": "bad name", "ShardCount": 1}),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        let e = call(
            &s,
            &env,
            Op::DescribeStream,
            json!({"StreamName": "nope"}),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "ResourceNotFoundException");
        call(
            &s,
            &env,
            Op::CreateStream,
            json!({"StreamName": "s", "ShardCount": 1}),
            0,
        )
        .unwrap();
        let e = call(
            &s,
            &env,
            Op::CreateStream,
            json!({"StreamName": "s", "ShardCount": 1}),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "ResourceInUseException");
        let big = B64.encode(vec![0u8; MAX_RECORD + 1]);
        let e = call(
            &s,
            &env,
            Op::PutRecord,
            json!({"StreamName": "s", "PartitionKey": "k", "Data": big}),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        let e = call(
            &s,
            &env,
            Op::GetRecords,
            json!({"ShardIterator": "garbage"}),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidArgumentException");
        let e = call(&s, &env, Op::PutRecord, json!({"StreamName": "s"}), 0).unwrap_err();
        assert_eq!(e.code, "SerializationException");
    }
}

//! Event-source mappings (Lambda's `CreateEventSourceMapping`): the seam between
//! the mapping registry (the Lambda API's ESM operations, durable mapping records,
//! enable/disable/state — `nimbus-esm`) and the sources that feed a mapping's
//! function:
//!
//! * SQS queues — a [`MappingSource`] the queue service provides;
//! * DynamoDB streams and Kinesis streams — one generic stream poller over a
//!   [`ShardSource`] each of those services implements (checkpoints, batching,
//!   bisect, retries, parallelization per shard live in the poller, once).
//!
//! The registry owns a mapping's configuration ([`MappingSpec`], Lambda's field
//! names), picks the source whose [`MappingSource::accepts`] claims the
//! `EventSourceArn`, lets it fill defaults and validate, and runs it while the
//! mapping is enabled; a disabled or deleted mapping's task is aborted (sources
//! must make that safe: a batch in flight returns to its queue, a stream resumes
//! from its last durable checkpoint).

use crate::sinks::Sinks;
use crate::BoxFuture;
use nimbus_dispatch::Dispatch;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// A mapping's configuration, with the Lambda API's field names. Defaults are the
/// source's ([`MappingSource::fill_defaults`]); `None` means "not set".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MappingSpec {
    #[serde(rename = "UUID")]
    pub uuid: String,
    /// The function's name (resolved from a name, partial or full ARN).
    pub function_name: String,
    /// The version or alias the mapping invokes (`None`: `$LATEST`).
    pub qualifier: Option<String>,
    #[serde(rename = "EventSourceArn")]
    pub event_source_arn: String,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_in_seconds: Option<u32>,
    /// `TRIM_HORIZON`, `LATEST` or `AT_TIMESTAMP` (streams only).
    pub starting_position: Option<String>,
    /// Seconds since the epoch (`AT_TIMESTAMP`).
    pub starting_position_timestamp: Option<f64>,
    pub parallelization_factor: Option<u32>,
    pub bisect_batch_on_function_error: Option<bool>,
    /// -1: retry until the record expires.
    pub maximum_retry_attempts: Option<i64>,
    /// -1: no limit.
    pub maximum_record_age_in_seconds: Option<i64>,
    /// `DestinationConfig.OnFailure.Destination` (an SQS queue or SNS topic ARN).
    pub on_failure_destination: Option<String>,
    /// `ReportBatchItemFailures` or empty.
    pub function_response_types: Vec<String>,
    /// `FilterCriteria.Filters[].Pattern`, each an event pattern (JSON text).
    pub filter_patterns: Vec<String>,
    pub tumbling_window_in_seconds: Option<u32>,
    /// `ScalingConfig.MaximumConcurrency` (SQS).
    pub maximum_concurrency: Option<u32>,
    pub enabled: bool,
}

impl MappingSpec {
    /// Whether the function reports partial batch failures.
    pub fn reports_item_failures(&self) -> bool {
        self.function_response_types
            .iter()
            .any(|t| t == "ReportBatchItemFailures")
    }
}

/// What a running mapping reports about itself (`LastProcessingResult`, and the
/// state the registry shows). Shared between the registry and the source's task.
#[derive(Debug, Default)]
pub struct MappingStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default, Clone)]
struct StatusInner {
    last_result: Option<String>,
    last_modified_ms: i64,
}

impl MappingStatus {
    /// `OK`, `PROBLEM: Function call failed`, `No records processed`, …
    pub fn set_last_result(&self, result: impl Into<String>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.last_result = Some(result.into());
        g.last_modified_ms = nimbus_core::now_ms();
    }

    pub fn last_result(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_result
            .clone()
    }
}

/// What a running mapping may use.
#[derive(Clone)]
pub struct MappingContext {
    /// Invoke the function (synchronously, as Lambda's pollers do).
    pub dispatch: Arc<dyn Dispatch>,
    /// On-failure destinations.
    pub sinks: Arc<Sinks>,
    pub status: Arc<MappingStatus>,
    pub region: String,
}

/// A kind of event source a mapping can read.
pub trait MappingSource: Send + Sync + 'static {
    /// `sqs`, `kinesis`, `dynamodb` (for logs and the API's error messages).
    fn name(&self) -> &'static str;
    /// Whether this source serves `event_source_arn`.
    fn accepts(&self, event_source_arn: &str) -> bool;
    /// Fill the settings the request left unset with this source's defaults
    /// (SQS: BatchSize 10; streams: 100, retries -1, …).
    fn fill_defaults(&self, spec: &mut MappingSpec);
    /// Check the settings against this source's rules and that the source exists:
    /// `Err` is the `InvalidParameterValueException` message Lambda gives.
    fn validate(&self, spec: &MappingSpec) -> Result<(), String>;
    /// Run the mapping until the task is aborted.
    fn run(&self, spec: Arc<MappingSpec>, ctx: MappingContext) -> tokio::task::JoinHandle<()>;
    /// Forget durable per-mapping state (checkpoints) of a deleted mapping.
    fn forget(&self, _uuid: &str) {}
}

/// Where a stream reader starts in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardPosition {
    TrimHorizon,
    Latest,
    /// Milliseconds since the epoch.
    AtTimestamp(i64),
    AtSequence(String),
    AfterSequence(String),
}

/// One shard of a stream, with its lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub adjacent_parent_shard_id: Option<String>,
    pub starting_sequence_number: String,
    /// Set once the shard is closed (split, merged, stream disabled).
    pub ending_sequence_number: Option<String>,
}

/// One record read from a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRecord {
    /// Decimal digits; ordered within the shard (compare as big integers: longer
    /// is later, then lexicographically).
    pub sequence_number: String,
    /// What keeps order under `ParallelizationFactor` (Kinesis: the partition
    /// key; DynamoDB: the item's key, serialised).
    pub partition_key: String,
    pub approximate_arrival_ms: i64,
    pub size_bytes: usize,
    /// The record exactly as it appears in the Lambda event's `Records[]`
    /// (`eventSource`, `eventSourceARN`, `awsRegion`, and `kinesis`/`dynamodb`).
    pub event_record: serde_json::Value,
}

/// A stream of shards a mapping can read: implemented by DynamoDB Streams and
/// Kinesis, consumed by the one stream poller.
pub trait ShardSource: Send + Sync + 'static {
    /// `dynamodb` or `kinesis`.
    fn name(&self) -> &'static str;
    /// Whether this source serves `stream_arn`.
    fn accepts(&self, stream_arn: &str) -> bool;
    fn stream_exists(&self, stream_arn: &str) -> bool;
    /// The stream's shards, open and closed (still within retention).
    fn shards(&self, stream_arn: &str) -> BoxFuture<'_, Result<Vec<ShardInfo>, String>>;
    /// Up to `limit` records of one shard from `position`, oldest first.
    fn read(
        &self,
        stream_arn: &str,
        shard_id: &str,
        position: ShardPosition,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardRecord>, String>>;
    /// Changes whenever records land in (or shards change on) the stream, so
    /// readers wake at once instead of polling on a timer.
    fn watch(&self, stream_arn: &str) -> tokio::sync::watch::Receiver<u64>;
}

/// Compare two sequence numbers (decimal strings of any length).
pub fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn sequence_numbers_compare_as_integers() {
        assert_eq!(cmp_sequence("9", "10"), Ordering::Less);
        assert_eq!(cmp_sequence("0010", "10"), Ordering::Equal);
        assert_eq!(
            cmp_sequence(
                "49590338271490256608559692538361571095921575989136588898",
                "2"
            ),
            Ordering::Greater
        );
    }

    #[test]
    fn specs_use_lambdas_field_names() {
        let s: MappingSpec = serde_json::from_str(
            r#"{"UUID":"u","FunctionName":"f","EventSourceArn":"arn:aws:sqs:us-east-1:123456789012:q","BatchSize":5,"Enabled":true}"#,
        )
        .unwrap();
        assert_eq!(s.uuid, "u");
        assert_eq!(s.batch_size, Some(5));
        assert!(s.enabled);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["EventSourceArn"], "arn:aws:sqs:us-east-1:123456789012:q");
    }
}

//! Event-source mappings (Lambda's `CreateEventSourceMapping` and friends).
//!
//! * [`Registry`]: the durable mapping records (`<data>/esm.db`), Lambda's
//!   request/response shapes and errors, the `State` machine
//!   (`Creating → Enabled`, `Enabling`, `Disabling → Disabled`, `Updating`,
//!   `Deleting`) and the tasks that run enabled mappings. It picks the
//!   [`MappingSource`] whose `accepts` claims a mapping's `EventSourceArn` (SQS's,
//!   and one [`stream::StreamSource`] per registered [`ShardSource`]), lets it fill
//!   defaults and validate, starts the mapping's task on enable and aborts it on
//!   disable, update or delete. Enabled mappings start again after a restart.
//! * [`stream`]: the one generic poller over DynamoDB Streams and Kinesis shards
//!   (checkpoints, batching, retries, bisection, partial failures, filters,
//!   tumbling windows, on-failure destinations).
//!
//! As on Lambda, deleting a function leaves its mappings: they stay listed, and a
//! running mapping reports `PROBLEM: Function not found` and keeps its position
//! until the function is back or the mapping is deleted.

pub mod store;
pub mod stream;
#[cfg(test)]
mod test_support;

use nimbus_dispatch::Dispatch;
use nimbus_triggers::esm::{
    MappingContext, MappingSource, MappingSpec, MappingStatus, ShardSource,
};
use nimbus_triggers::sinks::{Sinks, TargetKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use store::Store;

/// Errors of the mapping operations, by Lambda error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EsmError {
    /// `ResourceNotFoundException` (404).
    #[error("{0}")]
    NotFound(String),
    /// `InvalidParameterValueException` (400).
    #[error("{0}")]
    InvalidParameter(String),
    /// `ResourceConflictException` (409).
    #[error("{0}")]
    Conflict(String),
    /// `ResourceInUseException` (400).
    #[error("{0}")]
    InUse(String),
    /// `ServiceException` (500).
    #[error("{0}")]
    Service(String),
}

impl From<store::StoreError> for EsmError {
    fn from(e: store::StoreError) -> Self {
        EsmError::Service(e.to_string())
    }
}

pub type Result<T, E = EsmError> = std::result::Result<T, E>;

/// `DestinationConfig.OnSuccess`/`OnFailure`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationTarget {
    pub destination: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfig {
    pub on_success: Option<DestinationTarget>,
    pub on_failure: Option<DestinationTarget>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterCriteria {
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingConfig {
    pub maximum_concurrency: Option<i64>,
}

/// The body of `CreateEventSourceMapping` and `UpdateEventSourceMapping`
/// (botocore's `CreateEventSourceMappingRequest`), the members Nimbus reads;
/// the Kafka, MQ and DocumentDB members are refused when present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MappingRequest {
    pub event_source_arn: Option<String>,
    pub function_name: Option<String>,
    pub enabled: Option<bool>,
    pub batch_size: Option<i64>,
    pub filter_criteria: Option<FilterCriteria>,
    pub maximum_batching_window_in_seconds: Option<i64>,
    pub parallelization_factor: Option<i64>,
    pub starting_position: Option<String>,
    /// Epoch seconds (restJson1's timestamp format), or an ISO 8601 string.
    pub starting_position_timestamp: Option<Value>,
    pub destination_config: Option<DestinationConfig>,
    pub maximum_record_age_in_seconds: Option<i64>,
    pub bisect_batch_on_function_error: Option<bool>,
    pub maximum_retry_attempts: Option<i64>,
    pub tumbling_window_in_seconds: Option<i64>,
    pub function_response_types: Option<Vec<String>>,
    pub scaling_config: Option<ScalingConfig>,
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Members of the model Nimbus has no source for.
const UNSUPPORTED_MEMBERS: &[&str] = &[
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "ProvisionedPollerConfig",
];

/// A mapping's `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Creating,
    Enabling,
    Enabled,
    Disabling,
    Disabled,
    Updating,
    Deleting,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Creating => "Creating",
            State::Enabling => "Enabling",
            State::Enabled => "Enabled",
            State::Disabling => "Disabling",
            State::Disabled => "Disabled",
            State::Updating => "Updating",
            State::Deleting => "Deleting",
        }
    }

    fn transitional(&self) -> bool {
        !matches!(self, State::Enabled | State::Disabled)
    }
}

/// What `esm.db` keeps per mapping.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    spec: MappingSpec,
    state: State,
    reason: String,
    last_modified_ms: i64,
    created_ms: i64,
    /// The source's name (`sqs`, `kinesis`, `dynamodb`), for the response shape.
    source: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// A mapping in memory: its record, its status and its task.
struct Entry {
    record: Record,
    status: Arc<MappingStatus>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Bumped on every change; a transition applies only if it is still current.
    generation: u64,
}

struct Inner {
    store: Store,
    sources: Vec<Arc<dyn MappingSource>>,
    dispatch: Arc<dyn Dispatch>,
    sinks: Arc<Sinks>,
    region: String,
    entries: Mutex<HashMap<String, Entry>>,
}

/// The mapping registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

fn validation(errors: Vec<String>) -> EsmError {
    let n = errors.len();
    EsmError::InvalidParameter(format!(
        "{n} validation error{} detected: {}",
        if n == 1 { "" } else { "s" },
        errors.join("; ")
    ))
}

fn range(errors: &mut Vec<String>, field: &str, v: Option<i64>, min: i64, max: i64) {
    if let Some(v) = v {
        if v < min {
            errors.push(format!("Value '{v}' at '{field}' failed to satisfy constraint: Member must have value greater than or equal to {min}"));
        } else if v > max {
            errors.push(format!("Value '{v}' at '{field}' failed to satisfy constraint: Member must have value less than or equal to {max}"));
        }
    }
}

/// `name`, `name:qualifier`, a partial ARN (`123456789012:function:name`) or a
/// full ARN → name and qualifier.
pub fn split_function_name(raw: &str) -> (String, Option<String>) {
    let rest = if let Some(r) = raw.strip_prefix("arn:") {
        // arn:aws:lambda:<region>:<account>:function:<name>[:<q>]
        r.splitn(6, ':').nth(5).unwrap_or(r)
    } else if let Some((_, r)) = raw.split_once(":function:") {
        r
    } else {
        raw
    };
    match rest.split_once(':') {
        Some((n, q)) => (n.to_string(), Some(q.to_string())),
        None => (rest.to_string(), None),
    }
}

fn timestamp_secs(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok().or_else(|| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        }),
        _ => None,
    }
}

impl Registry {
    /// Open `<data_dir>/esm.db`, wrap each shard source in the stream poller, and
    /// start every enabled mapping (finishing transitions a restart interrupted).
    pub fn open(
        data_dir: &Path,
        sources: Vec<Arc<dyn MappingSource>>,
        shard_sources: Vec<Arc<dyn ShardSource>>,
        dispatch: Arc<dyn Dispatch>,
        sinks: Arc<Sinks>,
        region: String,
    ) -> Result<Self> {
        let store = Store::open(&data_dir.join("esm.db"))?;
        let mut all = sources;
        for s in shard_sources {
            all.push(Arc::new(stream::StreamSource::new(s, store.clone())));
        }
        let reg = Registry {
            inner: Arc::new(Inner {
                store,
                sources: all,
                dispatch,
                sinks,
                region,
                entries: Mutex::new(HashMap::new()),
            }),
        };
        let rows = reg.inner.store.load()?;
        let mut resumed = 0;
        for (uuid, _, text) in rows {
            let mut record: Record = serde_json::from_str(&text)
                .map_err(|e| EsmError::Service(format!("mapping {uuid}: {e}")))?;
            if record.state == State::Deleting {
                reg.finish_delete(&uuid);
                continue;
            }
            record.state = if record.spec.enabled {
                State::Enabled
            } else {
                State::Disabled
            };
            let status = Arc::new(MappingStatus::default());
            let task = if record.spec.enabled {
                resumed += 1;
                reg.spawn(&record, &status)
            } else {
                None
            };
            if let Ok(text) = serde_json::to_string(&record) {
                let _ = reg.inner.store.put(&uuid, record.created_ms, &text);
            }
            reg.entries().insert(
                uuid,
                Entry {
                    record,
                    status,
                    task,
                    generation: 0,
                },
            );
        }
        if resumed > 0 {
            tracing::info!(mappings = resumed, "event-source mappings resumed");
        }
        Ok(reg)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn source_named(&self, name: &str) -> Option<Arc<dyn MappingSource>> {
        self.inner
            .sources
            .iter()
            .find(|s| s.name() == name)
            .cloned()
    }

    fn source_for(&self, arn: &str) -> Option<Arc<dyn MappingSource>> {
        self.inner.sources.iter().find(|s| s.accepts(arn)).cloned()
    }

    /// Start a mapping's task (`None` when its source is gone).
    fn spawn(
        &self,
        record: &Record,
        status: &Arc<MappingStatus>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Some(source) = self.source_named(&record.source) else {
            tracing::warn!(uuid = %record.spec.uuid, source = %record.source, "event source not available; mapping not started");
            return None;
        };
        tracing::info!(uuid = %record.spec.uuid, function = %record.spec.function_name, source = %record.spec.event_source_arn, "event-source mapping started");
        Some(source.run(
            Arc::new(record.spec.clone()),
            MappingContext {
                dispatch: self.inner.dispatch.clone(),
                sinks: self.inner.sinks.clone(),
                status: status.clone(),
                region: self.inner.region.clone(),
            },
        ))
    }

    fn function_arn(&self, spec: &MappingSpec) -> String {
        nimbus_core::function_arn(
            &self.inner.region,
            &spec.function_name,
            spec.qualifier.as_deref(),
        )
    }

    /// `EventSourceMappingConfiguration` of a record.
    fn configuration(&self, r: &Record, status: &MappingStatus) -> Value {
        let s = &r.spec;
        let mut v = json!({
            "UUID": s.uuid,
            "EventSourceArn": s.event_source_arn,
            "FunctionArn": self.function_arn(s),
            "LastModified": r.last_modified_ms as f64 / 1000.0,
            "State": r.state.as_str(),
            "StateTransitionReason": r.reason,
            "FunctionResponseTypes": s.function_response_types,
            "EventSourceMappingArn": format!(
                "arn:aws:lambda:{}:{}:event-source-mapping:{}",
                self.inner.region, nimbus_core::ACCOUNT_ID, s.uuid
            ),
        });
        let o = v.as_object_mut().expect("object");
        let mut put = |k: &str, val: Option<Value>| {
            if let Some(val) = val {
                o.insert(k.to_string(), val);
            }
        };
        put("BatchSize", s.batch_size.map(Into::into));
        put(
            "MaximumBatchingWindowInSeconds",
            s.maximum_batching_window_in_seconds.map(Into::into),
        );
        put(
            "ParallelizationFactor",
            s.parallelization_factor.map(Into::into),
        );
        put(
            "StartingPosition",
            s.starting_position.clone().map(Into::into),
        );
        put(
            "StartingPositionTimestamp",
            s.starting_position_timestamp.map(Into::into),
        );
        put(
            "MaximumRecordAgeInSeconds",
            s.maximum_record_age_in_seconds.map(Into::into),
        );
        put(
            "BisectBatchOnFunctionError",
            s.bisect_batch_on_function_error.map(Into::into),
        );
        put(
            "MaximumRetryAttempts",
            s.maximum_retry_attempts.map(Into::into),
        );
        put(
            "TumblingWindowInSeconds",
            s.tumbling_window_in_seconds.map(Into::into),
        );
        put(
            "ScalingConfig",
            s.maximum_concurrency
                .map(|c| json!({ "MaximumConcurrency": c })),
        );
        if !s.filter_patterns.is_empty() {
            put(
                "FilterCriteria",
                Some(
                    json!({ "Filters": s.filter_patterns.iter().map(|p| json!({ "Pattern": p })).collect::<Vec<_>>() }),
                ),
            );
        }
        if r.source != "sqs" {
            let on_failure = match &s.on_failure_destination {
                Some(d) => json!({ "Destination": d }),
                None => json!({}),
            };
            put(
                "DestinationConfig",
                Some(json!({ "OnFailure": on_failure })),
            );
            put(
                "LastProcessingResult",
                Some(
                    status
                        .last_result()
                        .unwrap_or_else(|| "No records processed".to_string())
                        .into(),
                ),
            );
        }
        v
    }

    /// Apply the request's settings onto `spec`, checking the model's ranges and
    /// enums; returns whether `FilterCriteria` was given.
    fn apply(&self, spec: &mut MappingSpec, req: &MappingRequest, creating: bool) -> Result<()> {
        for k in req.other.keys() {
            if UNSUPPORTED_MEMBERS.contains(&k.as_str()) {
                return Err(EsmError::InvalidParameter(format!(
                    "{k} is not supported by Nimbus: only SQS queues, DynamoDB streams and Kinesis streams can be event sources"
                )));
            }
        }
        let mut errors = Vec::new();
        range(&mut errors, "batchSize", req.batch_size, 1, 10_000);
        range(
            &mut errors,
            "maximumBatchingWindowInSeconds",
            req.maximum_batching_window_in_seconds,
            0,
            300,
        );
        range(
            &mut errors,
            "parallelizationFactor",
            req.parallelization_factor,
            1,
            10,
        );
        range(
            &mut errors,
            "maximumRecordAgeInSeconds",
            req.maximum_record_age_in_seconds,
            -1,
            604_800,
        );
        range(
            &mut errors,
            "maximumRetryAttempts",
            req.maximum_retry_attempts,
            -1,
            10_000,
        );
        range(
            &mut errors,
            "tumblingWindowInSeconds",
            req.tumbling_window_in_seconds,
            0,
            900,
        );
        range(
            &mut errors,
            "scalingConfig.maximumConcurrency",
            req.scaling_config
                .as_ref()
                .and_then(|s| s.maximum_concurrency),
            2,
            1000,
        );
        if let Some(p) = &req.starting_position {
            if !["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"].contains(&p.as_str()) {
                errors.push(format!("Value '{p}' at 'startingPosition' failed to satisfy constraint: Member must satisfy enum value set: [TRIM_HORIZON, AT_TIMESTAMP, LATEST]"));
            }
        }
        if let Some(t) = &req.function_response_types {
            if t.iter().any(|t| t != "ReportBatchItemFailures") {
                errors.push(format!("Value '[{}]' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [ReportBatchItemFailures]]", t.join(", ")));
            }
        }
        if !errors.is_empty() {
            return Err(validation(errors));
        }
        let to_u32 = |v: Option<i64>| v.map(|v| v as u32);
        if let Some(v) = req.batch_size {
            spec.batch_size = Some(v as u32);
        }
        if req.maximum_batching_window_in_seconds.is_some() {
            spec.maximum_batching_window_in_seconds =
                to_u32(req.maximum_batching_window_in_seconds);
        }
        if req.parallelization_factor.is_some() {
            spec.parallelization_factor = to_u32(req.parallelization_factor);
        }
        if creating {
            spec.starting_position = req.starting_position.clone();
            if let Some(ts) = &req.starting_position_timestamp {
                spec.starting_position_timestamp = Some(timestamp_secs(ts).ok_or_else(|| {
                    EsmError::InvalidParameter(
                        "StartingPositionTimestamp is not a valid timestamp".into(),
                    )
                })?);
            }
        } else if req.starting_position.is_some() || req.starting_position_timestamp.is_some() {
            return Err(EsmError::InvalidParameter(
                "StartingPosition cannot be updated for an existing event source mapping".into(),
            ));
        }
        if let Some(v) = req.maximum_record_age_in_seconds {
            if v != -1 && v < 60 {
                return Err(validation(vec![format!("Value '{v}' at 'maximumRecordAgeInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 60")]));
            }
            spec.maximum_record_age_in_seconds = Some(v);
        }
        if let Some(v) = req.bisect_batch_on_function_error {
            spec.bisect_batch_on_function_error = Some(v);
        }
        if let Some(v) = req.maximum_retry_attempts {
            spec.maximum_retry_attempts = Some(v);
        }
        if req.tumbling_window_in_seconds.is_some() {
            spec.tumbling_window_in_seconds = to_u32(req.tumbling_window_in_seconds);
        }
        if let Some(t) = &req.function_response_types {
            spec.function_response_types = t.clone();
        }
        if let Some(s) = &req.scaling_config {
            spec.maximum_concurrency = s.maximum_concurrency.map(|c| c as u32);
        }
        if let Some(f) = &req.filter_criteria {
            let mut patterns = Vec::new();
            for (i, f) in f.filters.iter().enumerate() {
                let p = f.pattern.clone().unwrap_or_default();
                if let Err(e) = nimbus_patterns::Pattern::parse(&p) {
                    return Err(EsmError::InvalidParameter(format!(
                        "Invalid filter pattern definition. FilterCriteria.Filters[{i}]: {e}"
                    )));
                }
                patterns.push(p);
            }
            if patterns.len() > 5 {
                return Err(validation(vec![format!("Value at 'filterCriteria.filters' failed to satisfy constraint: Member must have length less than or equal to 5")]));
            }
            spec.filter_patterns = patterns;
        }
        if let Some(d) = &req.destination_config {
            if d.on_success
                .as_ref()
                .is_some_and(|s| s.destination.is_some())
            {
                return Err(EsmError::InvalidParameter(
                    "Unsupported DestinationConfig parameter for given event source mapping type: OnSuccess".into(),
                ));
            }
            if let Some(f) = &d.on_failure {
                spec.on_failure_destination = f.destination.clone().filter(|d| !d.is_empty());
            }
        }
        if let Some(e) = req.enabled {
            spec.enabled = e;
        }
        Ok(())
    }

    /// Source-independent checks after the source's defaults.
    fn check(&self, source: &dyn MappingSource, spec: &MappingSpec) -> Result<()> {
        if let Some(d) = &spec.on_failure_destination {
            if source.name() == "sqs" {
                return Err(EsmError::InvalidParameter(
                    "Unsupported DestinationConfig parameter for given event source mapping type."
                        .into(),
                ));
            }
            if !matches!(
                TargetKind::of(d),
                Some(TargetKind::Queue | TargetKind::Topic)
            ) {
                return Err(EsmError::InvalidParameter(format!(
                    "The destination ARN {d} is invalid: an on-failure destination must be an SQS queue or an SNS topic"
                )));
            }
            if !self.inner.sinks.target_exists(d) {
                return Err(EsmError::InvalidParameter(format!(
                    "The provided destination config DestinationConfig.OnFailure is invalid: {d} does not exist"
                )));
            }
        }
        source.validate(spec).map_err(EsmError::InvalidParameter)
    }

    /// `CreateEventSourceMapping`.
    pub async fn create(&self, req: MappingRequest) -> Result<Value> {
        let raw_fn = req
            .function_name
            .clone()
            .filter(|f| !f.is_empty())
            .ok_or_else(|| {
                validation(vec!["Value null at 'functionName' failed to satisfy constraint: Member must not be null".into()])
            })?;
        let arn = req
            .event_source_arn
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                EsmError::InvalidParameter(
                    "Unrecognized event source, must be kinesis, dynamodb stream or sqs.".into(),
                )
            })?;
        let (name, qualifier) = split_function_name(&raw_fn);
        if !self
            .inner
            .dispatch
            .qualifier_exists(&name, qualifier.as_deref())
        {
            return Err(EsmError::NotFound(format!(
                "Function not found: {}",
                nimbus_core::function_arn(&self.inner.region, &name, qualifier.as_deref())
            )));
        }
        let source = self.source_for(&arn).ok_or_else(|| {
            EsmError::InvalidParameter(
                "Unrecognized event source, must be kinesis, dynamodb stream or sqs.".into(),
            )
        })?;
        let mut spec = MappingSpec {
            uuid: uuid::Uuid::new_v4().to_string(),
            function_name: name,
            qualifier: qualifier.filter(|q| q != "$LATEST"),
            event_source_arn: arn,
            enabled: true,
            ..Default::default()
        };
        self.apply(&mut spec, &req, true)?;
        source.fill_defaults(&mut spec);
        self.check(source.as_ref(), &spec)?;
        let now = nimbus_core::now_ms();
        let record = Record {
            spec,
            state: State::Creating,
            reason: "USER_INITIATED".into(),
            last_modified_ms: now,
            created_ms: now,
            source: source.name().to_string(),
            tags: req.tags.clone().unwrap_or_default(),
        };
        let uuid = record.spec.uuid.clone();
        let status = Arc::new(MappingStatus::default());
        let out = {
            let mut entries = self.entries();
            if let Some(dup) = entries.values().find(|e| {
                e.record.spec.event_source_arn == record.spec.event_source_arn
                    && e.record.spec.function_name == record.spec.function_name
                    && e.record.spec.qualifier == record.spec.qualifier
            }) {
                return Err(EsmError::Conflict(format!(
                    "The event source arn (\" {} \") and function (\" {} \") provided mapping already exists. Please update or delete the existing mapping with UUID {}",
                    record.spec.event_source_arn, record.spec.function_name, dup.record.spec.uuid
                )));
            }
            self.persist(&record)?;
            let out = self.configuration(&record, &status);
            entries.insert(
                uuid.clone(),
                Entry {
                    record,
                    status,
                    task: None,
                    generation: 1,
                },
            );
            out
        };
        self.transition(uuid, 1);
        Ok(out)
    }

    fn persist(&self, r: &Record) -> Result<()> {
        let text = serde_json::to_string(r).map_err(|e| EsmError::Service(e.to_string()))?;
        self.inner.store.put(&r.spec.uuid, r.created_ms, &text)?;
        Ok(())
    }

    /// Finish a state change in the background: (re)start or stop the task and
    /// settle on `Enabled`/`Disabled` — unless another change came meanwhile.
    fn transition(&self, uuid: String, generation: u64) {
        let reg = self.clone();
        tokio::spawn(async move {
            let mut entries = reg.entries();
            let Some(e) = entries.get_mut(&uuid) else {
                return;
            };
            if e.generation != generation {
                return;
            }
            if let Some(t) = e.task.take() {
                t.abort();
            }
            if e.record.state == State::Deleting {
                entries.remove(&uuid);
                drop(entries);
                reg.finish_delete(&uuid);
                return;
            }
            e.record.state = if e.record.spec.enabled {
                State::Enabled
            } else {
                State::Disabled
            };
            if e.record.spec.enabled {
                e.task = reg.spawn(&e.record, &e.status);
            }
            if let Err(err) = reg.persist(&e.record) {
                tracing::error!(uuid = %uuid, error = %err, "cannot record the mapping's state");
            }
        });
    }

    fn finish_delete(&self, uuid: &str) {
        if let Err(e) = self.inner.store.delete(uuid) {
            tracing::error!(uuid, error = %e, "cannot delete the mapping");
        }
        for s in &self.inner.sources {
            s.forget(uuid);
        }
        tracing::info!(uuid, "event-source mapping deleted");
    }

    fn not_found(uuid: &str) -> EsmError {
        tracing::debug!(uuid, "no such event-source mapping");
        EsmError::NotFound("The resource you requested does not exist.".into())
    }

    /// `GetEventSourceMapping`.
    pub fn get(&self, uuid: &str) -> Result<Value> {
        let entries = self.entries();
        let e = entries.get(uuid).ok_or_else(|| Self::not_found(uuid))?;
        Ok(self.configuration(&e.record, &e.status))
    }

    /// `ListEventSourceMappings`: filtered by function and source, oldest first,
    /// `Marker` being the position of the next item.
    pub fn list(
        &self,
        function_name: Option<&str>,
        event_source_arn: Option<&str>,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<Value> {
        let max = max_items.unwrap_or(100);
        if !(1..=10_000).contains(&max) {
            return Err(validation(vec![format!("Value '{max}' at 'maxItems' failed to satisfy constraint: Member must have value {}", if max < 1 { "greater than or equal to 1" } else { "less than or equal to 10000" })]));
        }
        let start: usize = match marker {
            None | Some("") => 0,
            Some(m) => m
                .parse()
                .map_err(|_| EsmError::InvalidParameter(format!("Invalid Marker: {m}")))?,
        };
        let function = function_name.map(split_function_name);
        let entries = self.entries();
        let mut all: Vec<&Entry> = entries
            .values()
            .filter(|e| {
                let s = &e.record.spec;
                event_source_arn.is_none_or(|a| s.event_source_arn == a)
                    && function.as_ref().is_none_or(|(n, q)| {
                        s.function_name == *n
                            && (q.is_none()
                                || q.as_deref().filter(|q| *q != "$LATEST")
                                    == s.qualifier.as_deref())
                    })
            })
            .collect();
        all.sort_by(|a, b| {
            (a.record.created_ms, &a.record.spec.uuid)
                .cmp(&(b.record.created_ms, &b.record.spec.uuid))
        });
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(max as usize)
            .map(|e| self.configuration(&e.record, &e.status))
            .collect();
        let mut out = json!({ "EventSourceMappings": page });
        if start + (max as usize) < all.len() {
            out["NextMarker"] = (start + max as usize).to_string().into();
        }
        Ok(out)
    }

    /// `UpdateEventSourceMapping`.
    pub async fn update(&self, uuid: &str, req: MappingRequest) -> Result<Value> {
        let mut entries = self.entries();
        let e = entries.get_mut(uuid).ok_or_else(|| Self::not_found(uuid))?;
        if e.record.state.transitional() {
            return Err(EsmError::InUse(format!(
                "Cannot update the event source mapping {uuid} while it is in the {} state. Try again later.",
                e.record.state.as_str()
            )));
        }
        let source = self.source_named(&e.record.source).ok_or_else(|| {
            EsmError::Service(format!("the {} service is not running", e.record.source))
        })?;
        let mut spec = e.record.spec.clone();
        if let Some(f) = req.function_name.as_deref().filter(|f| !f.is_empty()) {
            let (name, qualifier) = split_function_name(f);
            if !self
                .inner
                .dispatch
                .qualifier_exists(&name, qualifier.as_deref())
            {
                return Err(EsmError::NotFound(format!(
                    "Function not found: {}",
                    nimbus_core::function_arn(&self.inner.region, &name, qualifier.as_deref())
                )));
            }
            spec.function_name = name;
            spec.qualifier = qualifier.filter(|q| q != "$LATEST");
        }
        if req.event_source_arn.is_some() {
            return Err(EsmError::InvalidParameter(
                "EventSourceArn cannot be updated for an existing event source mapping".into(),
            ));
        }
        let was_enabled = spec.enabled;
        self.apply(&mut spec, &req, false)?;
        self.check(source.as_ref(), &spec)?;
        let mut record = e.record.clone();
        record.spec = spec;
        record.state = match (was_enabled, record.spec.enabled) {
            (false, true) => State::Enabling,
            (true, false) => State::Disabling,
            _ => State::Updating,
        };
        record.reason = "USER_INITIATED".into();
        record.last_modified_ms = nimbus_core::now_ms();
        self.persist(&record)?;
        e.record = record;
        e.generation += 1;
        let g = e.generation;
        let out = self.configuration(&e.record, &e.status);
        drop(entries);
        self.transition(uuid.to_string(), g);
        Ok(out)
    }

    /// `DeleteEventSourceMapping`: answers with the record in `Deleting`.
    pub async fn delete(&self, uuid: &str) -> Result<Value> {
        let mut entries = self.entries();
        let e = entries.get_mut(uuid).ok_or_else(|| Self::not_found(uuid))?;
        if matches!(
            e.record.state,
            State::Creating | State::Updating | State::Deleting
        ) {
            return Err(EsmError::InUse(format!(
                "Cannot delete the event source mapping {uuid} while it is in the {} state. Try again later.",
                e.record.state.as_str()
            )));
        }
        e.record.state = State::Deleting;
        e.record.reason = "USER_INITIATED".into();
        e.record.last_modified_ms = nimbus_core::now_ms();
        self.persist(&e.record)?;
        e.generation += 1;
        let g = e.generation;
        let out = self.configuration(&e.record, &e.status);
        drop(entries);
        self.transition(uuid.to_string(), g);
        Ok(out)
    }

    /// Mappings of a function (for `nimbus mappings` and introspection).
    pub fn count(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests;

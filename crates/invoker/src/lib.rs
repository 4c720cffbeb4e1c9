//! The Nimbus invoker (DESIGN.md "Invoker").
//!
//! Owns the function registry (the durable list of deployed functions, with an
//! in-memory index so the hot path never touches SQLite), admission control
//! (reserved concurrency per function, an account-wide cap, 429 past either), and the
//! synchronous invoke path: resolve → admit → lease an instance from the pool → run →
//! release → record.

mod admin;
mod admission;
pub mod queue;
mod registry;
mod versions;

pub use admission::{Admission, Permit, ThrottleReason};
pub use queue::{AsyncQueue, QueueStats};
pub use registry::{DeployMode, DeployOutcome};
pub use versions::{AliasConfig, ProvisionedConfig, ProvisionedStatus, PublishRequest};

use bytes::Bytes;
use nimbus_core::{
    function_arn, invocation::billed_ms, limits, EventInvokeConfig, FunctionConfig, FunctionError,
    InvocationRecord, Outcome, Trigger,
};
use nimbus_runtime::instance::StartError;
use nimbus_runtime::{Deployment, InstanceInfo, Pool, Reply};
use nimbus_store::{BlobStore, Db};
use nimbus_telemetry::{lines, Telemetry};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Errors a caller of the invoker can get. The API front-ends map each to its wire shape.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("Function not found: {0}")]
    NotFound(String),
    /// Something other than a function is missing (an alias, a provisioned
    /// concurrency config): `code` is the AWS error code, `message` the whole text.
    #[error("{message}")]
    Missing { code: &'static str, message: String },
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("Rate Exceeded.")]
    Throttled(ThrottleReason),
    #[error("{size} byte payload is too large for the {kind} invocation type (limit {max} bytes)")]
    TooLarge {
        size: usize,
        max: usize,
        kind: &'static str,
    },
    #[error("{0}")]
    Service(String),
}

impl From<nimbus_store::StoreError> for InvokeError {
    fn from(e: nimbus_store::StoreError) -> Self {
        match e {
            nimbus_store::StoreError::BadZip(_) | nimbus_store::StoreError::TooLarge { .. } => {
                InvokeError::InvalidParameter(e.to_string())
            }
            other => InvokeError::Service(other.to_string()),
        }
    }
}

pub type Result<T, E = InvokeError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct InvokerSettings {
    pub region: String,
    /// Account-wide cap on concurrent executions.
    pub account_concurrency: u32,
}

/// One synchronous invocation request.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Bytes,
    pub trigger: Trigger,
    /// JSON text (already base64-decoded) for `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
    pub trace_id: Option<String>,
}

/// What the invocation produced.
#[derive(Debug, Clone)]
pub struct InvokeResult {
    pub request_id: String,
    pub executed_version: String,
    /// The function's response, or the error JSON when `function_error` is set.
    pub payload: Bytes,
    pub function_error: bool,
    pub outcome: Outcome,
    pub log_tail: String,
    pub cold: bool,
    pub trace_id: String,
}

struct Inner {
    db: Db,
    blobs: BlobStore,
    pool: Pool,
    telemetry: Telemetry,
    settings: InvokerSettings,
    admission: Admission,
    functions: RwLock<HashMap<String, Arc<Deployment>>>,
    /// Async settings by (function, qualifier).
    event_configs: RwLock<HashMap<(String, String), EventInvokeConfig>>,
    /// Published versions, aliases and provisioned configs, by function.
    versions: RwLock<HashMap<String, versions::FnVersions>>,
    deploy_lock: tokio::sync::Mutex<()>,
}

/// The invoker. Cheap to clone.
#[derive(Clone)]
pub struct Invoker {
    inner: Arc<Inner>,
}

impl Invoker {
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    pub fn region(&self) -> &str {
        &self.inner.settings.region
    }

    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    pub fn get(&self, name: &str) -> Option<Arc<FunctionConfig>> {
        self.inner
            .functions
            .read()
            .unwrap()
            .get(name)
            .map(|d| d.config.clone())
    }

    pub fn list(&self) -> Vec<Arc<FunctionConfig>> {
        let mut v: Vec<_> = self
            .inner
            .functions
            .read()
            .unwrap()
            .values()
            .map(|d| d.config.clone())
            .collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    pub fn instances(&self, name: &str) -> Vec<InstanceInfo> {
        self.inner.pool.instances(name)
    }

    /// Run one request synchronously: admit (or throttle), then run.
    pub async fn invoke(&self, inv: Invocation) -> Result<InvokeResult> {
        if inv.payload.len() > limits::SYNC_PAYLOAD_MAX {
            return Err(InvokeError::TooLarge {
                size: inv.payload.len(),
                max: limits::SYNC_PAYLOAD_MAX,
                kind: "RequestResponse",
            });
        }
        let (dep, permit) = match self.admit(&inv.function, inv.qualifier.as_deref()) {
            Ok(a) => a,
            Err(e @ InvokeError::Throttled(_)) => {
                // Sync throttles count; async ones wait in the queue (its depth shows them).
                if let Ok(dep) = self.resolve(&inv.function, inv.qualifier.as_deref()) {
                    self.inner
                        .telemetry
                        .metrics()
                        .function(dep.config.name(), &dep.version)
                        .throttled();
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.run(dep, inv, permit, nimbus_core::new_request_id())
            .await
    }

    /// Resolve a function and take a concurrency slot for it.
    pub fn admit(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(Arc<Deployment>, Permit)> {
        let dep = self.resolve(function, qualifier)?;
        // Reserved concurrency is the function's, whichever version runs.
        let reserved = self
            .get(function)
            .map_or(dep.config.spec.reserved_concurrency, |c| {
                c.spec.reserved_concurrency
            });
        let permit = self
            .inner
            .admission
            .try_acquire(dep.config.name(), reserved)
            .map_err(InvokeError::Throttled)?;
        Ok((dep, permit))
    }

    /// Run an admitted request on an instance and record it.
    pub async fn run(
        &self,
        dep: Arc<Deployment>,
        inv: Invocation,
        _permit: Permit,
        request_id: String,
    ) -> Result<InvokeResult> {
        let cfg = dep.config.clone();
        let fn_metrics = self
            .inner
            .telemetry
            .metrics()
            .function(cfg.name(), &dep.version);
        let _executing = fn_metrics.executing();
        // Every record and runtime sees a well-formed header, whoever the caller.
        let trace_id = trace_header(inv.trace_id.as_deref(), None);
        let start_ms = nimbus_core::now_ms();
        // The ARN as invoked: qualified when the caller named a version or alias.
        let arn = function_arn(
            &self.inner.settings.region,
            cfg.name(),
            inv.qualifier.as_deref().filter(|q| *q != "$LATEST"),
        );

        let lease = match self.inner.pool.acquire(&dep).await {
            Ok(l) => l,
            Err(StartError::Init(err)) => {
                return Ok(self.init_failure(
                    &dep,
                    request_id,
                    trace_id,
                    start_ms,
                    inv.trigger,
                    err,
                ));
            }
            Err(StartError::Runtime(e)) => return Err(InvokeError::Service(e.to_string())),
        };
        let cold = lease.cold;
        let init_ms = lease.init_ms;
        let out = lease
            .instance
            .invoke(nimbus_runtime::InvokeRequest {
                request_id: request_id.clone(),
                payload: inv.payload,
                function_arn: arn,
                trace_id: trace_id.clone(),
                client_context: inv.client_context,
                cognito_identity: None,
                init_ms,
            })
            .await;
        self.inner.pool.release(lease, out.reusable);
        let (payload, function_error, error_type) = match out.reply {
            Reply::Response(b) => (b, false, None),
            Reply::Error(e) => {
                let ty = e.error_type.clone();
                (Bytes::from(e.to_json()), true, Some(ty))
            }
        };
        let record = InvocationRecord {
            request_id: request_id.clone(),
            function: cfg.name().to_string(),
            version: dep.version.clone(),
            revision: cfg.revision,
            trigger: inv.trigger,
            start_ms,
            cold,
            init_ms,
            duration_ms: out.duration_ms,
            billed_ms: billed_ms(out.duration_ms),
            memory_mb: cfg.spec.memory_mb,
            max_memory_used_mb: out.max_memory_used_mb,
            outcome: out.outcome,
            error_type,
            trace_id: Some(trace_id.clone()),
        };
        fn_metrics.observe(&record);
        self.inner.telemetry.record(record);
        Ok(InvokeResult {
            request_id,
            executed_version: dep.version.clone(),
            payload,
            function_error,
            outcome: out.outcome,
            log_tail: out.log_tail,
            cold,
            trace_id,
        })
    }

    /// The request that paid for a cold start whose init failed gets the init error,
    /// framed in the log like any other invocation.
    fn init_failure(
        &self,
        dep: &Deployment,
        request_id: String,
        trace_id: String,
        start_ms: i64,
        trigger: Trigger,
        err: FunctionError,
    ) -> InvokeResult {
        let cfg = &dep.config;
        let duration_ms = (nimbus_core::now_ms() - start_ms).max(0) as f64;
        let t = &self.inner.telemetry;
        let mut tail = String::new();
        for line in [
            lines::start(&request_id, &dep.version),
            format!("[ERROR] {}: {}", err.error_type, err.error_message),
            lines::end(&request_id),
            lines::report(&lines::Report {
                request_id: &request_id,
                duration_ms,
                billed_ms: billed_ms(duration_ms),
                memory_mb: cfg.spec.memory_mb,
                max_memory_used_mb: 0,
                init_ms: Some(duration_ms),
            }),
        ] {
            tail.push_str(&line);
            tail.push('\n');
            t.log(cfg.name(), Some(&request_id), line);
        }
        let record = InvocationRecord {
            request_id: request_id.clone(),
            function: cfg.name().to_string(),
            version: dep.version.clone(),
            revision: cfg.revision,
            trigger,
            start_ms,
            cold: true,
            init_ms: Some(duration_ms),
            duration_ms,
            billed_ms: billed_ms(duration_ms),
            memory_mb: cfg.spec.memory_mb,
            max_memory_used_mb: 0,
            outcome: Outcome::InitError,
            error_type: Some(err.error_type.clone()),
            trace_id: Some(trace_id.clone()),
        };
        t.metrics()
            .function(cfg.name(), &dep.version)
            .observe(&record);
        t.record(record);
        InvokeResult {
            request_id,
            executed_version: dep.version.clone(),
            payload: Bytes::from(err.to_json()),
            function_error: true,
            outcome: Outcome::InitError,
            log_tail: tail,
            cold: true,
            trace_id,
        }
    }
}

/// An X-Ray trace header as Lambda passes it:
/// `Root=1-<epoch hex>-<96-bit hex>;Parent=<64-bit hex>;Sampled=0`.
pub fn new_trace_id() -> String {
    let secs = nimbus_core::now_ms() / 1000;
    let root = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &root[..24],
        &parent[..16]
    )
}

/// The trace header for a request that arrived with `x_amzn` (`X-Amzn-Trace-Id`)
/// and/or `traceparent` (W3C): the X-Ray header wins when it has a valid `Root`,
/// else the W3C trace id becomes the Root (`1-<first 8 hex>-<last 24 hex>`, as
/// AWS's X-Ray/OpenTelemetry propagators convert it), else a new trace starts.
/// The result is always `Root=…;Parent=…;Sampled=…`.
pub fn trace_header(x_amzn: Option<&str>, traceparent: Option<&str>) -> String {
    if let Some(h) = x_amzn {
        let (mut root, mut parent, mut sampled) = (None, None, None);
        for part in h.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", v)) if valid_root(v) => root = Some(v),
                Some(("Parent", v)) if is_hex(v, 16) => parent = Some(v.to_string()),
                Some(("Sampled", v)) if v == "0" || v == "1" => sampled = Some(v),
                _ => {}
            }
        }
        if let Some(root) = root {
            let parent = parent.unwrap_or_else(new_span_id);
            return format!(
                "Root={root};Parent={parent};Sampled={}",
                sampled.unwrap_or("0")
            );
        }
    }
    if let Some(tp) = traceparent {
        let f: Vec<&str> = tp.trim().split('-').collect();
        if f.len() >= 4
            && is_hex(f[0], 2)
            && f[0] != "ff"
            && is_hex(f[1], 32)
            && f[1] != "0".repeat(32)
            && is_hex(f[2], 16)
            && is_hex(f[3], 2)
        {
            let t = f[1].to_ascii_lowercase();
            let sampled = u8::from_str_radix(f[3], 16).unwrap_or(0) & 1;
            return format!(
                "Root=1-{}-{};Parent={};Sampled={sampled}",
                &t[..8],
                &t[8..],
                f[2].to_ascii_lowercase()
            );
        }
    }
    new_trace_id()
}

/// The `Root` of a trace header (`1-<8 hex>-<24 hex>`), if it has a valid one.
pub fn trace_root(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("Root="))
        .find(|r| valid_root(r))
}

/// A trace header as W3C `traceparent`: `00-<32 hex trace id>-<parent>-<flags>`.
pub fn traceparent(header: &str) -> Option<String> {
    let root = trace_root(header)?;
    let id: String = root[2..].chars().filter(|c| *c != '-').collect();
    let mut parent = None;
    let mut flags = "00";
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Parent", v)) if is_hex(v, 16) => parent = Some(v.to_ascii_lowercase()),
            Some(("Sampled", "1")) => flags = "01",
            _ => {}
        }
    }
    Some(format!(
        "00-{}-{}-{flags}",
        id.to_ascii_lowercase(),
        parent.unwrap_or_else(new_span_id)
    ))
}

fn valid_root(r: &str) -> bool {
    let p: Vec<&str> = r.split('-').collect();
    p.len() == 3 && p[0] == "1" && is_hex(p[1], 8) && is_hex(p[2], 24)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn new_span_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::{trace_header, trace_root, traceparent};

    #[test]
    fn trace_headers_are_kept_converted_or_started() {
        let x = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(trace_header(Some(x), None), x);
        // X-Ray wins over traceparent; a missing Parent is made up.
        let h = trace_header(
            Some("Root=1-5759e988-bd862e3fe1be46a994272793"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert!(
            h.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;Parent="),
            "{h}"
        );
        assert!(h.ends_with(";Sampled=0"), "{h}");
        // W3C -> X-Ray and back.
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let h = trace_header(Some("garbage"), Some(tp));
        assert_eq!(
            h,
            "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1"
        );
        assert_eq!(traceparent(&h).as_deref(), Some(tp));
        assert_eq!(trace_root(&h), Some("1-0af76519-16cd43dd8448eb211c80319c"));
        // Invalid input starts a trace.
        let h = trace_header(
            None,
            Some("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
        );
        assert!(
            trace_root(&h).is_some() && !h.contains("00000000000000000000"),
            "{h}"
        );
        assert_eq!(trace_root("Root=1-abc"), None);
    }

    #[test]
    fn trace_header_has_lambdas_shape() {
        let t = super::new_trace_id();
        let parts: Vec<&str> = t.split(';').collect();
        assert_eq!(parts.len(), 3, "{t}");
        let root = parts[0].strip_prefix("Root=1-").unwrap();
        let (epoch, id) = root.split_once('-').unwrap();
        assert_eq!((epoch.len(), id.len()), (8, 24));
        assert_eq!(parts[1].strip_prefix("Parent=").unwrap().len(), 16);
        assert_eq!(parts[2], "Sampled=0");
    }
}

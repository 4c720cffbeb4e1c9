//! The Nimbus invoker (DESIGN.md "Invoker").
//!
//! Owns the function registry (the durable list of deployed functions, with an
//! in-memory index so the hot path never touches SQLite), admission control
//! (reserved concurrency per function, an account-wide cap, 429 past either), and the
//! synchronous invoke path: resolve → admit → lease an instance from the pool → run →
//! release → record.

mod admin;
mod admission;
mod dispatch;
pub mod queue;
mod registry;
mod versions;

pub use admission::{Admission, Permit};
// The request/response types and trace helpers live in the dispatch seam;
// re-exported so existing callers keep compiling.
pub use dispatch::LocalDispatch;
pub use nimbus_dispatch::{
    new_trace_id, trace_header, trace_root, traceparent, BoxFuture, Dispatch, FunctionLookup,
    Invocation, InvokeError, InvokeResult, Result, ThrottleReason,
};
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
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct InvokerSettings {
    pub region: String,
    /// Account-wide cap on concurrent executions.
    pub account_concurrency: u32,
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
    /// Where destinations and dead-letter queues in other services are reached;
    /// set once the services have started ([`Invoker::set_sinks`]).
    sinks: std::sync::OnceLock<Arc<nimbus_triggers::sinks::Sinks>>,
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

    /// Give the invoker the services' sinks (built after it, from its dispatcher):
    /// from then on destinations and dead-letter queues may be SQS queues, SNS
    /// topics and EventBridge buses. Only the first call counts.
    pub fn set_sinks(&self, sinks: Arc<nimbus_triggers::sinks::Sinks>) {
        let _ = self.inner.sinks.set(sinks);
    }

    /// The services' sinks, once set.
    pub fn sinks(&self) -> Option<&Arc<nimbus_triggers::sinks::Sinks>> {
        self.inner.sinks.get()
    }

    /// Check a destination or dead-letter target in another service: its kind
    /// is one of `allowed` and, once the services run, it exists.
    pub(crate) fn check_target(
        &self,
        arn: &str,
        allowed: &[nimbus_triggers::sinks::TargetKind],
        what: &str,
    ) -> Result<()> {
        let kind = nimbus_triggers::sinks::TargetKind::of(arn);
        if !kind.is_some_and(|k| allowed.contains(&k)) {
            return Err(InvokeError::InvalidParameter(format!(
                "The {what} target {arn} is invalid: it must be the ARN of {}",
                allowed
                    .iter()
                    .map(|k| match k {
                        nimbus_triggers::sinks::TargetKind::Queue => "an SQS queue",
                        nimbus_triggers::sinks::TargetKind::Topic => "an SNS topic",
                        nimbus_triggers::sinks::TargetKind::Bus => "an EventBridge event bus",
                        nimbus_triggers::sinks::TargetKind::Stream => "a Kinesis stream",
                        nimbus_triggers::sinks::TargetKind::Function => "a Lambda function",
                    })
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        if let Some(sinks) = self.sinks() {
            if !sinks.target_exists(arn) {
                return Err(InvokeError::InvalidParameter(format!(
                    "The {what} target {arn} does not exist"
                )));
            }
        }
        Ok(())
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
    ///
    /// Cancel-safe: the invocation runs on a task of its own that owns the lease and
    /// the permit, so a caller that goes away (a client that disconnects mid-invoke
    /// drops its handler future) does not cut it short. As on Lambda, the function
    /// finishes whatever the client does, its instance goes back to the pool and its
    /// record is written; only the result is thrown away.
    pub async fn run(
        &self,
        dep: Arc<Deployment>,
        inv: Invocation,
        permit: Permit,
        request_id: String,
    ) -> Result<InvokeResult> {
        let this = self.clone();
        let task = tokio::spawn(
            async move { this.run_to_completion(dep, inv, permit, request_id).await }
                .instrument(tracing::Span::current()),
        );
        match task.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "invocation task failed");
                Err(InvokeError::Service(format!("invocation failed: {e}")))
            }
        }
    }

    /// The body of [`Invoker::run`]: never called except on its own task.
    async fn run_to_completion(
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

//! The dispatch seam (DESIGN.md "Invoker", "Backend services and event sources"):
//! how the gateway, the scheduler, the Lambda front-end and every future trigger
//! (queue and stream pollers, notifications) hand a request to whatever runs
//! functions, without naming it.
//!
//! * [`Dispatch`]: run one request synchronously ([`Dispatch::invoke`]) or accept it
//!   for asynchronous delivery ([`Dispatch::enqueue`]); the local implementation is
//!   the invoker and its async queue (`nimbus_invoker::LocalDispatch`), a cluster
//!   backend would be another.
//! * [`FunctionLookup`]: the narrow read-only view of what is deployed that route
//!   and trigger validation need (does this function or qualifier exist), instead of
//!   the whole invoker.
//! * The request and response types ([`Invocation`], [`InvokeResult`],
//!   [`InvokeError`], [`ThrottleReason`]) and the X-Ray trace-header helpers every
//!   caller shares.
//!
//! This crate depends on `nimbus-core` only (and, behind the `store` feature, on the
//! store's error type): a backend can implement [`Dispatch`] without pulling in the
//! process pool.

use bytes::Bytes;
use nimbus_core::{FunctionConfig, Outcome, Trigger};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future: what the object-safe traits here return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs functions: the seam every caller of an invocation goes through.
///
/// Implementations must be cancel-safe: a sync invoke whose caller goes away (the
/// returned future is dropped) still runs to completion and is recorded, as on
/// Lambda.
pub trait Dispatch: FunctionLookup {
    /// Run one request and wait for its result (`RequestResponse`). Admission
    /// (throttling) applies: past the caps, [`InvokeError::Throttled`].
    fn invoke(&self, inv: Invocation) -> BoxFuture<'_, Result<InvokeResult>>;

    /// Accept one request for asynchronous delivery (`Event`): returns its request
    /// id once the event is durable. Retries, maximum event age and destinations
    /// are the backend's. `source` names the event source in logs (`lambda`,
    /// `schedule`, …).
    fn enqueue(&self, inv: Invocation, source: &'static str) -> BoxFuture<'_, Result<String>>;
}

/// What is deployed, as callers validating a route, a schedule or a mapping need
/// to see it.
pub trait FunctionLookup: Send + Sync + 'static {
    /// A function's `$LATEST` configuration, if it exists.
    fn function(&self, name: &str) -> Option<Arc<FunctionConfig>>;
    /// Whether the function exists and, when given, has this version or alias.
    fn qualifier_exists(&self, name: &str, qualifier: Option<&str>) -> bool;
    /// The region functions run in (for ARNs).
    fn region(&self) -> &str;
}

/// Which cap a throttled request hit (Lambda's `Reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The function's reserved concurrency is exhausted.
    ReservedFunctionConcurrentInvocationLimitExceeded,
    /// The account-wide (unreserved) pool is exhausted.
    ConcurrentInvocationLimitExceeded,
}

impl ThrottleReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            Self::ConcurrentInvocationLimitExceeded => "ConcurrentInvocationLimitExceeded",
        }
    }
}

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

#[cfg(feature = "store")]
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

//! The Nimbus API listener (default `127.0.0.1:4566`).
//!
//! It serves, on one port:
//! * `GET /_nimbus/health` — 200 once the server is ready;
//! * the Nimbus control API under `/_nimbus/` that the `nimbus` CLI uses
//!   (code upload, deploy, list, get, delete, logs with follow, invocation records,
//!   gateway routes);
//! * the AWS Lambda REST API: invoke, functions, versions, aliases, concurrency,
//!   event-invoke configs, tags, with Lambda's headers and error shapes
//!   ([`error::ApiError`]); every other Lambda operation answers 501 by name;
//! * AWS STS on the query protocol at `/` ([`sts`]);
//! * `GET /metrics` (Prometheus) and `GET /_nimbus/cost` (metering priced as Lambda);
//! * `GET /_nimbus/traces/{trace}`: the invocation records and logs of one trace.
//!
//! Every request passes the SigV4 middleware ([`auth`]) first: with credentials
//! configured it must be signed by one of them; without, everything is accepted.
//!
//! Every error leaves through [`error::ApiError`], the one place that maps an internal
//! error to status code, `x-amzn-ErrorType` and JSON body (and, for the query
//! protocol, [`sts::QueryError`] to XML).

pub mod auth;
mod cors_api;
pub mod error;
mod gateway_auth_api;
mod lambda;
mod lambda_functions;
mod lambda_urls;
mod lambda_versions;
mod metrics_api;
mod nimbus;
mod routes_api;
mod schedules_api;
pub mod sts;
mod traces_api;

pub use auth::{AccessKey, AuthConfig};

use axum::Router;
use nimbus_invoker::{AsyncQueue, Invoker};
use std::sync::Arc;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub invoker: Invoker,
    pub queue: AsyncQueue,
}

tokio::task_local! {
    /// The region of the request being handled (its SigV4 credential scope's).
    static REQUEST_REGION: String;
}

impl AppState {
    /// The region for ARNs in a response: the request's credential scope names it,
    /// else the server's `--region`.
    pub(crate) fn region(&self) -> String {
        REQUEST_REGION
            .try_with(|r| r.clone())
            .unwrap_or_else(|_| self.invoker.region().to_string())
    }
}

/// One structured log line per API request (target `nimbus::api::access`).
async fn access_log(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    // Every AWS answer carries a request id, errors included.
    if !resp.headers().contains_key("x-amzn-requestid") {
        if let Ok(v) = axum::http::HeaderValue::from_str(&nimbus_core::new_request_id()) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
    }
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    tracing::info!(
        target: "nimbus::api::access",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = %header("x-amzn-requestid"),
        error_type = %header("x-amzn-errortype"),
        "api request"
    );
    resp
}

/// Run the handler with the request's region in scope (after authentication put the
/// credential scope on the request).
async fn region_scope(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let region = req
        .extensions()
        .get::<auth::RequestScope>()
        .map(|s| s.region.clone())
        .filter(|r| !r.is_empty());
    match region {
        Some(r) => REQUEST_REGION.scope(r, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// The router for the API listener; `auth` says which SigV4 credentials every
/// request must be signed with (none: accept everything).
pub fn router(invoker: Invoker, queue: AsyncQueue, auth: AuthConfig) -> Router {
    let state = AppState { invoker, queue };
    Router::new()
        .merge(nimbus::routes())
        .merge(lambda::routes())
        .merge(lambda_functions::routes())
        .merge(lambda_versions::routes())
        .merge(routes_api::routes())
        .merge(schedules_api::routes())
        .merge(gateway_auth_api::routes())
        .merge(cors_api::routes())
        .merge(lambda_urls::routes())
        .merge(metrics_api::routes())
        .merge(traces_api::routes())
        .merge(sts::routes())
        .fallback(error::unknown_operation)
        .with_state(state)
        .layer(axum::middleware::from_fn(region_scope))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::Auth::from(auth)),
            auth::authenticate,
        ))
        // Outermost, so refused requests are logged too.
        .layer(axum::middleware::from_fn(access_log))
}

//! The Nimbus API listener (default `127.0.0.1:4566`).
//!
//! It serves, on one port:
//! * `GET /_nimbus/health` — 200 once the server is ready;
//! * the Nimbus control API under `/_nimbus/` that the `nimbus` CLI uses
//!   (code upload, deploy, list, get, delete, logs with follow, invocation records);
//! * the AWS Lambda `Invoke` operation (`POST /2015-03-31/functions/{name}/invocations`)
//!   with Lambda's headers and error shapes ([`error::ApiError`]).
//!
//! Every error leaves through [`error::ApiError`], the one place that maps an internal
//! error to status code, `x-amzn-ErrorType` and JSON body.

pub mod error;
mod lambda;
mod lambda_functions;
mod lambda_versions;
mod nimbus;

use axum::Router;
use nimbus_invoker::{AsyncQueue, Invoker};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub invoker: Invoker,
    pub queue: AsyncQueue,
}

/// The router for the API listener.
pub fn router(invoker: Invoker, queue: AsyncQueue) -> Router {
    let state = AppState { invoker, queue };
    Router::new()
        .merge(nimbus::routes())
        .merge(lambda::routes())
        .merge(lambda_functions::routes())
        .merge(lambda_versions::routes())
        .fallback(error::unknown_operation)
        .with_state(state)
}

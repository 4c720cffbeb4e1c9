//! The Nimbus API listener (default `127.0.0.1:4566`).
//!
//! It serves, on one port:
//! * `GET /_nimbus/health` — 200 once the server is ready;
//! * the Nimbus control API under `/_nimbus/` that the `nimbus` CLI uses
//!   (code upload, deploy, list, get, delete, logs with follow, invocation records);
//! * the AWS Lambda `Invoke` operation (`POST /2015-03-31/functions/{name}/invocations`)
//!   with Lambda's headers and error shapes ([`error::ApiError`]);
//! * AWS STS on the query protocol at `/` ([`sts`]).
//!
//! Every request passes the SigV4 middleware ([`auth`]) first: with credentials
//! configured it must be signed by one of them; without, everything is accepted.
//!
//! Every error leaves through [`error::ApiError`], the one place that maps an internal
//! error to status code, `x-amzn-ErrorType` and JSON body (and, for the query
//! protocol, [`sts::QueryError`] to XML).

pub mod auth;
pub mod error;
mod lambda;
mod lambda_functions;
mod lambda_versions;
mod nimbus;
pub mod sts;

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

/// The router for the API listener; `auth` says which SigV4 credentials every
/// request must be signed with (none: accept everything).
pub fn router(invoker: Invoker, queue: AsyncQueue, auth: AuthConfig) -> Router {
    let state = AppState { invoker, queue };
    Router::new()
        .merge(nimbus::routes())
        .merge(lambda::routes())
        .merge(lambda_functions::routes())
        .merge(lambda_versions::routes())
        .merge(sts::routes())
        .fallback(error::unknown_operation)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::Auth::from(auth)),
            auth::authenticate,
        ))
}

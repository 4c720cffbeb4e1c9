//! The Nimbus control API, served on the edge listener next to the AWS front-ends
//! but owned by none of them:
//! * `GET /_nimbus/health` — 200 once the server is ready (open even when requests
//!   must be signed);
//! * the control API under `/_nimbus/` that the `nimbus` CLI uses (code upload,
//!   deploy, list, get, delete, logs with follow, invocation records, gateway routes,
//!   authorizers, API keys and usage plans, CORS, schedules, traces, cost);
//! * `GET /metrics` (Prometheus), with each service's own series appended;
//! * `/_nimbus/services/<name>/…`, each AWS service's introspection (queues, mail,
//!   deliveries…: [`nimbus_svc_common::ServiceAdmin`]).
//!
//! It is a [`Frontend`] like the AWS APIs (signing name `nimbus`, restJson1), so the
//! edge authenticates, limits and logs it the same way. Its errors are Lambda's
//! REST-JSON shape (`error::ApiError`, over [`nimbus_svc_lambda::ApiError`]), which the CLI reads. The
//! handlers read the engine through the invoker's narrow admin methods, never its
//! database or pool.

mod cors_api;
mod error;
mod gateway_auth_api;
mod metrics_api;
mod nimbus;
mod routes_api;
mod schedules_api;
mod services_api;
mod traces_api;

pub use nimbus::CODE_UPLOAD_MAX;

use axum::extract::Request;
use axum::Router;
use nimbus_invoker::{AsyncQueue, Invoker};
use nimbus_protocol::{AwsError, Frontend, Protocol, ResponseFuture, ServiceMeta};
use nimbus_svc_common::ServiceAdmin;
use std::sync::Arc;
use tower::ServiceExt;

/// The control API on the wire: what the CLI signs with (`nimbus`) and speaks.
pub const META: ServiceMeta = ServiceMeta {
    name: "nimbus",
    signing_name: "nimbus",
    endpoint_prefix: "nimbus",
    api_version: "",
    protocol: Protocol::RestJson1,
    protocols: &[Protocol::RestJson1],
    target_prefix: None,
    xml_namespace: None,
    query_compatible: false,
};

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) invoker: Invoker,
    pub(crate) queue: AsyncQueue,
    pub(crate) services: Arc<Vec<Arc<dyn ServiceAdmin>>>,
}

struct Control {
    router: Router,
}

/// The control API over the engine (`invoker`, `queue`), the gateway's route table,
/// the scheduler and the AWS services' admin surfaces; `extra` is merged as it is
/// (the app engine's `/_nimbus/apps`, which carries its own state).
pub fn frontend(
    invoker: Invoker,
    queue: AsyncQueue,
    routes: nimbus_gateway::RouteTable,
    scheduler: nimbus_scheduler::Scheduler,
    services: Vec<Arc<dyn ServiceAdmin>>,
    extra: Router,
) -> Arc<dyn Frontend> {
    let router = Router::new()
        .merge(nimbus::routes())
        .merge(routes_api::routes())
        .merge(schedules_api::routes())
        .merge(gateway_auth_api::routes())
        .merge(cors_api::routes())
        .merge(metrics_api::routes())
        .merge(traces_api::routes())
        .merge(services_api::routes())
        .fallback(unknown)
        .with_state(AppState {
            invoker,
            queue,
            services: Arc::new(services),
        })
        .layer(axum::Extension(routes))
        .layer(axum::Extension(scheduler));
    let router = extra.merge(router);
    Arc::new(Control { router })
}

/// A path under `/_nimbus/` that is not a control operation.
async fn unknown(method: http::Method, uri: http::Uri) -> error::ApiError {
    error::ApiError::new(
        http::StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!("Nimbus does not implement {method} {}", uri.path()),
    )
}

impl Frontend for Control {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let call = self.router.clone().oneshot(req);
        Box::pin(async move {
            match call.await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        })
    }

    /// Code uploads are the largest control request.
    fn body_limit(&self, _parts: &http::request::Parts) -> usize {
        CODE_UPLOAD_MAX
    }

    fn body_too_large(&self, _parts: &http::request::Parts, max: usize) -> AwsError {
        AwsError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!("Request must be smaller than {max} bytes"),
        )
    }
}

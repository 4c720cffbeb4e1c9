//! The AWS Lambda REST API front-end (restJson1): invoke, functions, versions,
//! aliases, concurrency, event-invoke configs, function URLs and tags, with Lambda's
//! headers and error shapes.
//!
//! [`frontend`] builds the [`Frontend`] the edge routes Lambda's requests to (signed
//! `lambda`, or on one of Lambda's dated REST prefixes such as `/2015-03-31/`). One
//! exhaustive operation table ([`ops::LambdaOp`], from the API model) says which
//! operations exist; the router serves the implemented ones and every other one
//! answers `501 NotImplementedException` naming itself. Every error leaves through
//! [`ApiError`], written by [`nimbus_protocol::error_response`] in restJson1's shape
//! with Lambda's `Type` (and, for throttles, `Reason`) fields.

mod error;
mod lambda;
mod lambda_functions;
mod lambda_layers;
mod lambda_mappings;
mod lambda_policy;
mod lambda_urls;
mod lambda_versions;

pub use error::ApiError;
pub use lambda::ops;
pub use lambda::read_limited;
pub use lambda_layers::{check_layers_size, resolve_layers};

use axum::extract::Request;
use axum::Router;
use nimbus_invoker::{AsyncQueue, Invoker};
use nimbus_protocol::{AwsError, EdgeContext, Frontend, Protocol, ResponseFuture, ServiceMeta};
use std::sync::Arc;
use tower::ServiceExt;

/// Lambda on the wire (botocore's `lambda/2015-03-31/service-2.json` metadata).
pub const META: ServiceMeta = ServiceMeta {
    name: "lambda",
    signing_name: "lambda",
    endpoint_prefix: "lambda",
    api_version: "2015-03-31",
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
    pub(crate) mappings: nimbus_esm::Registry,
    /// The other services (code packages from S3).
    pub(crate) sinks: Arc<nimbus_triggers::sinks::Sinks>,
}

tokio::task_local! {
    /// What the edge learned about the request being handled.
    static REQUEST: EdgeContext;
}

impl AppState {
    /// The region for ARNs in a response: the request's credential scope names it,
    /// else the server's `--region`.
    pub(crate) fn region(&self) -> String {
        REQUEST
            .try_with(|c| c.region.clone())
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.invoker.region().to_string())
    }
}

/// The request id of the request being handled (the edge's), else a new one.
pub(crate) fn request_id() -> String {
    REQUEST
        .try_with(|c| c.request_id.clone())
        .unwrap_or_else(|_| nimbus_core::new_request_id())
}

/// The Lambda front-end.
struct Lambda {
    router: Router,
}

/// The Lambda front-end over `invoker` (sync invokes) and `queue` (`Event`
/// invokes); function URLs are configured in `routes`, the gateway's table;
/// event-source mappings live in `mappings`.
pub fn frontend(
    invoker: Invoker,
    queue: AsyncQueue,
    routes: nimbus_gateway::RouteTable,
    mappings: nimbus_esm::Registry,
    sinks: Arc<nimbus_triggers::sinks::Sinks>,
) -> Arc<dyn Frontend> {
    let router = Router::new()
        .merge(lambda::routes())
        .merge(lambda_functions::routes())
        .merge(lambda_versions::routes())
        .merge(lambda_urls::routes())
        .merge(lambda_layers::routes())
        .merge(lambda_policy::routes())
        .merge(lambda_mappings::routes())
        .fallback(error::unknown_operation)
        .with_state(AppState {
            invoker,
            queue,
            mappings,
            sinks,
        })
        .layer(axum::Extension(routes));
    Arc::new(Lambda { router })
}

impl Frontend for Lambda {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let ctx = req.extensions().get::<EdgeContext>().cloned();
        let call = self.router.clone().oneshot(req);
        Box::pin(async move {
            let resp = match ctx {
                Some(ctx) => REQUEST.scope(ctx, call).await,
                None => call.await,
            };
            match resp {
                Ok(r) => r,
                Err(never) => match never {},
            }
        })
    }

    /// `Invoke` takes Lambda's 6 MB synchronous payload; code uploads
    /// (`CreateFunction`, `UpdateFunctionCode`) up to their own cap; every other
    /// operation's JSON is small.
    fn body_limit(&self, parts: &http::request::Parts) -> usize {
        let path = parts.uri.path();
        if path.starts_with("/2015-03-31/functions/") && path.ends_with("/invocations") {
            nimbus_core::limits::SYNC_PAYLOAD_MAX
        } else {
            lambda_functions::CODE_BODY_MAX
        }
    }

    fn body_too_large(&self, parts: &http::request::Parts, max: usize) -> AwsError {
        let path = parts.uri.path();
        if path.ends_with("/invocations") {
            AwsError::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                format!(
                    "Request must be smaller than {max} bytes for the InvokeFunction operation"
                ),
            )
        } else {
            AwsError::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                format!("Request must be smaller than {max} bytes"),
            )
        }
    }
}

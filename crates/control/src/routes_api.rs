//! The control API of gateway routes (`/_nimbus/routes`), used by `nimbus route`.
//!
//! * `GET /_nimbus/routes` → `{"gateway_url", "routes": [route + "url"]}`
//! * `PUT /_nimbus/routes` with a route (`route_key`, or `method` and `path`;
//!   `function`, optional `qualifier`, `payload_format`, `timeout_ms`, and request
//!   validation: `body_schema`, `required_query`, `required_headers`) → 201 when
//!   new, 200 when it replaced one; the function must exist.
//! * `DELETE /_nimbus/routes?route_key=GET%20/users/{id}` → 204, 404 when absent.
//!
//! Route keys hold `/` and `{}`, so they travel in the body and the query string,
//! never in the URL path. The route table reaches the handlers as an
//! `Extension<RouteTable>` layered on the API router by the server.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Extension, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_gateway::{
    BodySchema, PayloadFormat, Route, RouteKey, RouteTable, TableError, Validation,
};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/_nimbus/routes",
        get(list_routes).put(put_route).delete(delete_route),
    )
}

impl From<TableError> for ApiError {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Invalid(_) => ApiError::invalid_parameter(e.to_string()),
            TableError::FunctionNotFound { .. }
            | TableError::QualifierNotFound { .. }
            | TableError::RouteNotFound(_) => ApiError::not_found(e.to_string()),
            TableError::Store(_) => ApiError::service(e.to_string()),
        }
    }
}

fn view(table: &RouteTable, r: &Route) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("a route serialises");
    v["url"] = table.url_of(r).into();
    v
}

async fn list_routes(Extension(table): Extension<RouteTable>) -> Json<serde_json::Value> {
    let routes: Vec<_> = table.list().await.iter().map(|r| view(&table, r)).collect();
    Json(json!({ "gateway_url": table.public_url(), "routes": routes }))
}

/// The body of `PUT /_nimbus/routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRoute {
    route_key: Option<String>,
    method: Option<String>,
    path: Option<String>,
    function: String,
    qualifier: Option<String>,
    payload_format: Option<String>,
    /// `HTTP` (an HTTP API route, the default) or `REST` (a REST API route).
    api_type: Option<String>,
    /// A REST API's binary media types (`image/png`, `image/*`, `*/*`).
    #[serde(default)]
    binary_media_types: Vec<String>,
    timeout_ms: Option<u64>,
    /// A JSON Schema the request body must match.
    body_schema: Option<serde_json::Value>,
    /// Query-string parameters every request must carry.
    #[serde(default)]
    required_query: Vec<String>,
    /// Headers every request must carry.
    #[serde(default)]
    required_headers: Vec<String>,
    /// An authorizer's name, optionally typed: `jwt:NAME`, `lambda:NAME`.
    authorizer: Option<String>,
    /// JWT authorizers: scopes of which the token needs one.
    #[serde(default)]
    authorization_scopes: Vec<String>,
    /// Requests need an API key (`x-api-key`).
    #[serde(default)]
    api_key_required: bool,
    /// `{"rate": requests per second, "burst": n}`.
    throttle: Option<nimbus_gateway::throttle::ThrottleSettings>,
}

async fn put_route(
    Extension(table): Extension<RouteTable>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: PutRoute = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_content(format!("Could not parse request body into json: {e}"))
    })?;
    let key_text = match (&b.route_key, &b.method, &b.path) {
        (Some(k), None, None) => k.clone(),
        (None, Some(m), Some(p)) => format!("{m} {p}"),
        _ => {
            return Err(ApiError::invalid_parameter(
                "Give either route_key, or method and path",
            ))
        }
    };
    let route_key =
        RouteKey::parse(&key_text).map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
    let payload_format = match &b.payload_format {
        Some(p) => p
            .parse::<PayloadFormat>()
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))?,
        None => PayloadFormat::default(),
    };
    let api_type = match &b.api_type {
        Some(t) => t
            .parse::<nimbus_gateway::ApiType>()
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))?,
        None => nimbus_gateway::ApiType::default(),
    };
    let validation = Validation {
        body_schema: match b.body_schema {
            Some(s) => Some(BodySchema::compile(s).map_err(ApiError::invalid_parameter)?),
            None => None,
        },
        required_query: b.required_query,
        required_headers: b.required_headers,
    }
    .normalize()
    .map_err(ApiError::invalid_parameter)?;
    let route = Route {
        route_key,
        function: b.function,
        qualifier: b.qualifier.filter(|q| !q.is_empty()),
        payload_format,
        api_type,
        binary_media_types: b.binary_media_types,
        timeout_ms: b
            .timeout_ms
            .unwrap_or(nimbus_gateway::route::DEFAULT_TIMEOUT_MS),
        validation,
        authorizer: None,
        authorization_scopes: b.authorization_scopes,
        api_key_required: b.api_key_required,
        throttle: b.throttle,
        created_ms: 0,
        updated_ms: 0,
    };
    let route = crate::gateway_auth_api::route_access(&table, route, b.authorizer.as_deref())?;
    let (stored, created) = table.put(route).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&table, &stored))).into_response())
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    route_key: String,
}

async fn delete_route(
    Extension(table): Extension<RouteTable>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    table.delete(&q.route_key).await?;
    Ok(StatusCode::NO_CONTENT)
}

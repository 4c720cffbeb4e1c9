//! The control API of the gateway's CORS configuration (`/_nimbus/cors`), used by
//! `nimbus cors`.
//!
//! * `GET /_nimbus/cors` → `{"cors": {allow_origins, allow_methods, allow_headers,
//!   expose_headers, allow_credentials, max_age?} | null}`
//! * `PUT /_nimbus/cors` with that object → 200 and the stored (normalised)
//!   configuration; 400 for an invalid origin, method, header name or max age, or
//!   credentials with the `*` origin.
//! * `DELETE /_nimbus/cors` → 204 (CORS off; idempotent).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use nimbus_gateway::cors::SetCorsError;
use nimbus_gateway::{CorsConfig, RouteTable};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/_nimbus/cors",
        get(get_cors).put(put_cors).delete(delete_cors),
    )
}

async fn get_cors(Extension(table): Extension<RouteTable>) -> Json<Value> {
    Json(json!({ "cors": table.cors().get().as_deref() }))
}

/// The body of `PUT /_nimbus/cors`: [`CorsConfig`], strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutCors {
    #[serde(default)]
    allow_origins: Vec<String>,
    #[serde(default)]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    max_age: Option<u32>,
}

async fn put_cors(
    Extension(table): Extension<RouteTable>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: PutCors = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_content(format!("Could not parse request body into json: {e}"))
    })?;
    let c = CorsConfig {
        allow_origins: b.allow_origins,
        allow_methods: b.allow_methods,
        allow_headers: b.allow_headers,
        expose_headers: b.expose_headers,
        allow_credentials: b.allow_credentials,
        max_age: b.max_age,
    };
    let stored = table.cors().set(c).await.map_err(|e| match e {
        SetCorsError::Invalid(e) => ApiError::invalid_parameter(e.to_string()),
        SetCorsError::Store(e) => ApiError::service(e.to_string()),
    })?;
    Ok(Json(json!({ "cors": *stored })))
}

async fn delete_cors(Extension(table): Extension<RouteTable>) -> Result<StatusCode, ApiError> {
    table
        .cors()
        .clear()
        .await
        .map_err(|e| ApiError::service(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

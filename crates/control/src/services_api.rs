//! `/_nimbus/services` — which AWS services have an admin surface — and
//! `/_nimbus/services/<name>/…`, forwarded to that service's
//! [`nimbus_svc_common::ServiceAdmin`] with the request untouched.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use http::StatusCode;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_nimbus/services", get(list))
        .route("/_nimbus/services/{name}", any(forward))
        .route("/_nimbus/services/{name}/{*rest}", any(forward))
}

async fn list(State(st): State<AppState>) -> Json<serde_json::Value> {
    let names: Vec<&str> = st.services.iter().map(|s| s.name()).collect();
    Json(serde_json::json!({ "Services": names }))
}

async fn forward(
    State(st): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    let name = params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    match st.services.iter().find(|s| s.name() == name) {
        Some(admin) => admin.call(req).await,
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("No service named {name} has an admin API"),
        )
        .into_response(),
    }
}

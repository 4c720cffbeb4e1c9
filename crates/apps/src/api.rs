//! The control API of the engine, mounted by the control front-end:
//! * `GET /_nimbus/apps` — every app with its status;
//! * `GET /_nimbus/apps/{name}` — resources (logical and physical ids, types),
//!   outputs, exports, the last changes and their steps;
//! * `PUT /_nimbus/apps/{name}` — body [`DeployRequest`] (`template`,
//!   `dry_run`, `allow_replace`): plan and apply; answers the plan and outputs;
//! * `DELETE /_nimbus/apps/{name}` — remove the app's resources.
//!
//! Errors are the control API's REST-JSON shape (`x-amzn-ErrorType`,
//! `{"Type", "message"}`): `ValidationException` (400) for a bad template,
//! `ResourceConflictException` (409) for a refused plan, `ResourceNotFoundException`
//! (404), `DeployFailedException` (500, the change was rolled back).

use crate::engine::{DeployRequest, Engine, EngineError};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

pub fn routes(engine: Engine) -> Router {
    Router::new()
        .route("/_nimbus/apps", get(list))
        .route("/_nimbus/apps/", get(list))
        .route("/_nimbus/apps/{name}", get(show).put(deploy).delete(remove))
        .with_state(engine)
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let mut r = (
        status,
        Json(json!({"Type": if status.is_server_error() { "Service" } else { "User" }, "message": message})),
    )
        .into_response();
    if let Ok(v) = http::HeaderValue::from_str(code) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            EngineError::Invalid(_) => (StatusCode::BAD_REQUEST, "ValidationException"),
            EngineError::Refused(_) => (StatusCode::CONFLICT, "ResourceConflictException"),
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            EngineError::Failed { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "DeployFailedException")
            }
            EngineError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceException"),
        };
        let msg = match &self {
            EngineError::Failed {
                message,
                rolled_back,
            } => format!(
                "{message}; {}",
                if *rolled_back {
                    "the change was rolled back"
                } else {
                    "the rollback could not undo every step (see nimbus app show)"
                }
            ),
            other => other.to_string(),
        };
        error(status, code, msg)
    }
}

async fn list(State(e): State<Engine>) -> Result<Json<serde_json::Value>, EngineError> {
    e.ready().await;
    Ok(Json(e.list()?))
}

async fn show(
    State(e): State<Engine>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, EngineError> {
    Ok(Json(e.describe(&name)?))
}

async fn deploy(
    State(e): State<Engine>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, EngineError> {
    let req: DeployRequest = serde_json::from_slice(&body).map_err(|err| {
        EngineError::Invalid(format!("the request is not a deploy request: {err}"))
    })?;
    let out = e.deploy(&name, req).await?;
    Ok(Json(serde_json::to_value(out).expect("json")))
}

async fn remove(
    State(e): State<Engine>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, EngineError> {
    let out = e.remove(&name).await?;
    Ok(Json(serde_json::to_value(out).expect("json")))
}

//! The control API of schedules (`/_nimbus/schedules`), used by `nimbus schedule`
//! and by manifest deploys.
//!
//! * `GET /_nimbus/schedules` → `{"schedules": [{name, expression, timezone,
//!   function, qualifier, input, enabled, app, last_fired_ms, next_fire_ms}]}`
//! * `GET /_nimbus/schedules/{name}` → one schedule, 404 when absent.
//! * `PUT /_nimbus/schedules/{name}` with `{expression, function, qualifier?, input?,
//!   timezone?, enabled?, app?}` → 201 with the schedule when new, 200 when it
//!   replaced one; 400 `{"message"}` naming the bad field of an expression, 404 when
//!   the function (or qualifier) does not exist.
//! * `DELETE /_nimbus/schedules/{name}` → 204, 404 when absent.
//!
//! The scheduler reaches the handlers as an `Extension<Scheduler>` layered on the
//! API router by the server.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_scheduler::{Error, ScheduleSpec, Scheduler};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_nimbus/schedules", get(list_schedules))
        .route(
            "/_nimbus/schedules/{name}",
            get(get_schedule).put(put_schedule).delete(delete_schedule),
        )
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(_) | Error::InvalidParameter(_) => {
                ApiError::invalid_parameter(e.to_string())
            }
            Error::FunctionNotFound(_) | Error::NotFound(_) => ApiError::not_found(e.to_string()),
            Error::Store(_) => ApiError::service(e.to_string()),
        }
    }
}

async fn list_schedules(
    Extension(s): Extension<Scheduler>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!({ "schedules": s.list().await? })))
}

async fn get_schedule(
    Extension(s): Extension<Scheduler>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!(s.get(&name).await?)))
}

/// The body of `PUT /_nimbus/schedules/{name}`.
#[derive(Debug, Deserialize)]
struct PutSchedule {
    expression: String,
    function: String,
    qualifier: Option<String>,
    input: Option<serde_json::Value>,
    timezone: Option<String>,
    enabled: Option<bool>,
    app: Option<String>,
}

async fn put_schedule(
    Extension(s): Extension<Scheduler>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: PutSchedule = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_content(format!("Could not parse request body into json: {e}"))
    })?;
    let (view, created) = s
        .put(
            &name,
            ScheduleSpec {
                expression: b.expression,
                function: b.function,
                qualifier: b.qualifier,
                input: b.input,
                timezone: b.timezone,
                enabled: b.enabled,
                app: b.app,
            },
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(view))).into_response())
}

async fn delete_schedule(
    Extension(s): Extension<Scheduler>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

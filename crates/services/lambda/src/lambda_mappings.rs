//! Event-source mappings (2015-03-31): CreateEventSourceMapping,
//! GetEventSourceMapping, ListEventSourceMappings, UpdateEventSourceMapping,
//! DeleteEventSourceMapping, over the mapping registry ([`nimbus_esm::Registry`]).

use crate::error::ApiError;
use crate::lambda_functions::parse;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_esm::{EsmError, MappingRequest};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2015-03-31/event-source-mappings/",
            get(list_mappings).post(create_mapping),
        )
        .route(
            "/2015-03-31/event-source-mappings",
            get(list_mappings).post(create_mapping),
        )
        .route(
            "/2015-03-31/event-source-mappings/{uuid}",
            get(get_mapping).put(update_mapping).delete(delete_mapping),
        )
}

impl From<EsmError> for ApiError {
    fn from(e: EsmError) -> Self {
        match e {
            EsmError::NotFound(m) => ApiError::not_found(m),
            EsmError::InvalidParameter(m) => ApiError::invalid_parameter(m),
            EsmError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "ResourceConflictException", m)
            }
            EsmError::InUse(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "ResourceInUseException", m)
            }
            EsmError::Service(m) => ApiError::service(m),
        }
    }
}

fn accepted(v: serde_json::Value) -> Response {
    (StatusCode::ACCEPTED, Json(v)).into_response()
}

async fn create_mapping(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: MappingRequest = parse(&body)?;
    Ok(accepted(st.mappings.create(req).await?))
}

async fn get_mapping(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(st.mappings.get(&uuid)?))
}

async fn update_mapping(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: MappingRequest = parse(&body)?;
    Ok(accepted(st.mappings.update(&uuid, req).await?))
}

async fn delete_mapping(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(st.mappings.delete(&uuid).await?))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "FunctionName")]
    function_name: Option<String>,
    #[serde(rename = "EventSourceArn")]
    event_source_arn: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

async fn list_mappings(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let max = match q.max_items.as_deref() {
        Some(m) => Some(m.parse::<i64>().map_err(|_| {
            ApiError::invalid_parameter(format!(
                "1 validation error detected: Value '{m}' at 'maxItems' failed to satisfy constraint: Member must be an integer"
            ))
        })?),
        None => None,
    };
    Ok(Json(st.mappings.list(
        q.function_name.as_deref(),
        q.event_source_arn.as_deref(),
        q.marker.as_deref(),
        max,
    )?))
}

//! The Nimbus control API (`/_nimbus/...`), used by the `nimbus` CLI.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream;
use nimbus_core::{FunctionSpec, Runtime};
use nimbus_store::{LogLine, RecordQuery};
use nimbus_svc_lambda::read_limited;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Largest zip accepted by `POST /_nimbus/code`.
pub const CODE_UPLOAD_MAX: usize = 256 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_nimbus/health", get(health))
        .route("/_nimbus/code", post(upload_code))
        .route("/_nimbus/code/{sha}", get(download_code))
        .route("/_nimbus/functions", get(list_functions))
        .route(
            "/_nimbus/functions/{name}",
            get(get_function)
                .put(deploy_function)
                .delete(delete_function),
        )
        .route("/_nimbus/functions/{name}/logs", get(logs))
        .route("/_nimbus/invocations", get(invocations))
}

async fn health(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "functions": st.invoker.list().len(),
        "limits": st.invoker.limits_mechanism(),
        // What isolates instances, and what is missing (docs/SECURITY.md).
        "isolation": nimbus_runtime::isolation::report(),
    }))
}

async fn upload_code(
    State(st): State<AppState>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(bytes) = read_limited(body, CODE_UPLOAD_MAX).await? else {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!("Zipped code must be smaller than {CODE_UPLOAD_MAX} bytes"),
        ));
    };
    let blobs = st.invoker.blobs().clone();
    let bundle = tokio::task::spawn_blocking(move || {
        blobs.put_zip(&bytes, nimbus_core::limits::CODE_UNZIPPED_MAX)
    })
    .await
    .map_err(|e| ApiError::service(e.to_string()))?
    .map_err(|e| ApiError::from(nimbus_invoker::InvokeError::from(e)))?;
    Ok(Json(
        json!({ "sha256": bundle.sha256, "size": bundle.size }),
    ))
}

/// The zip of a stored bundle (GetFunction's `Code.Location`).
async fn download_code(
    State(st): State<AppState>,
    Path(sha): Path<String>,
) -> Result<Response, ApiError> {
    let blobs = st.invoker.blobs().clone();
    if !blobs.has(&sha) {
        return Err(ApiError::not_found(format!("No code bundle {sha}")));
    }
    let bytes = tokio::task::spawn_blocking(move || blobs.read_zip(&sha))
        .await
        .map_err(|e| ApiError::service(e.to_string()))?
        .map_err(|e| ApiError::service(e.to_string()))?;
    Ok(([("content-type", "application/zip")], bytes).into_response())
}

/// The body of `PUT /_nimbus/functions/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    runtime: String,
    #[serde(default)]
    handler: String,
    code_sha256: String,
    memory_mb: Option<u32>,
    timeout_s: Option<u32>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    reserved_concurrency: Option<u32>,
    #[serde(default)]
    provisioned_concurrency: u32,
    #[serde(default)]
    description: String,
    /// Layer version ARNs in order; absent keeps the function's current layers
    /// (set through the Lambda API), `[]` removes them.
    #[serde(default)]
    layers: Option<Vec<String>>,
}

async fn deploy_function(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: DeployBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_content(format!("Could not parse request body into json: {e}"))
    })?;
    let runtime: Runtime =
        body.runtime
            .parse()
            .map_err(|e: nimbus_core::runtime::UnknownRuntime| {
                ApiError::invalid_parameter(e.to_string())
            })?;
    let mut spec = FunctionSpec::new(name, runtime, body.handler);
    spec.memory_mb = body
        .memory_mb
        .unwrap_or(nimbus_core::limits::DEFAULT_MEMORY_MB);
    spec.timeout_s = body
        .timeout_s
        .unwrap_or(nimbus_core::limits::DEFAULT_TIMEOUT_S);
    spec.environment = body.environment;
    spec.reserved_concurrency = body.reserved_concurrency;
    spec.provisioned_concurrency = body.provisioned_concurrency;
    spec.description = body.description;
    // Settings only the Lambda API sets (tags, role, …) survive a CLI redeploy.
    if let Some(prev) = st.invoker.get(&spec.name) {
        spec.role = prev.spec.role.clone();
        spec.tags = prev.spec.tags.clone();
        spec.architectures = prev.spec.architectures.clone();
        spec.ephemeral_storage_mb = prev.spec.ephemeral_storage_mb;
        spec.dead_letter_target = prev.spec.dead_letter_target.clone();
        spec.tracing_mode = prev.spec.tracing_mode.clone();
        spec.layers = prev.spec.layers.clone();
    }
    if let Some(arns) = &body.layers {
        spec.layers =
            nimbus_svc_lambda::resolve_layers(&st.invoker, arns).map_err(ApiError::from)?;
    }
    nimbus_svc_lambda::check_layers_size(&st.invoker, &body.code_sha256, &spec.layers)
        .await
        .map_err(ApiError::from)?;
    let out = st.invoker.deploy(spec, body.code_sha256).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "function": &*out.config, "notice": out.notice })),
    )
        .into_response())
}

async fn list_functions(State(st): State<AppState>) -> Json<serde_json::Value> {
    let fns: Vec<_> = st
        .invoker
        .list()
        .iter()
        .map(|c| {
            json!({
                "function": &**c,
                "instances": st.invoker.instances(c.name()).len(),
                "queue": st.queue.stats(c.name()),
            })
        })
        .collect();
    Json(json!({ "functions": fns }))
}

async fn get_function(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cfg = st
        .invoker
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("Function not found: {name}")))?;
    Ok(Json(json!({
        "function": &*cfg,
        "instances": st.invoker.instances(&name),
        "in_flight": st.invoker.admission().in_flight(&name),
        "queue": st.queue.stats(&name),
        "versions": st.invoker.versions(&name).map(|v| v.into_iter().map(|(v, _)| v).collect::<Vec<_>>()).unwrap_or_default(),
        "aliases": st.invoker.list_aliases(&name, None).unwrap_or_default().into_iter().map(|a| json!({
            "name": a.name,
            "function_version": a.function_version,
            "routing": a.routing,
        })).collect::<Vec<_>>(),
    })))
}

async fn delete_function(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.invoker.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    /// Only lines with a larger id.
    #[serde(default)]
    after: i64,
    /// Only lines at or after this time (ms since the epoch).
    #[serde(default)]
    since: i64,
    /// Last N lines (when neither `after` nor `since` is given).
    tail: Option<u32>,
    #[serde(default)]
    follow: bool,
}

/// Newline-delimited JSON log lines; with `follow=true`, the response stays open and
/// new lines arrive as they are written.
async fn logs(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    if st.invoker.get(&name).is_none() && !q.follow {
        // Logs of a deleted function stay readable until retention removes them.
        let any = st.invoker.tail_logs(&name, 1).await?;
        if any.is_empty() {
            return Err(ApiError::not_found(format!("Function not found: {name}")));
        }
    }
    // Subscribe before reading the store so no line falls between the two.
    let live = st.invoker.telemetry().subscribe();
    st.invoker.telemetry().flush().await;
    let stored = match (q.tail, q.after, q.since) {
        (Some(t), 0, 0) => st.invoker.tail_logs(&name, t).await?,
        _ => st.invoker.logs(&name, q.after, q.since, 100_000).await?,
    };
    let last_id = stored.last().map_or(q.after, |l| l.id);
    let head = stream::iter(
        stored
            .into_iter()
            .map(|l| Ok::<_, std::convert::Infallible>(ndjson(&l))),
    );
    if !q.follow {
        return Ok(Response::builder()
            .header("content-type", "application/x-ndjson")
            .body(Body::from_stream(head))
            .expect("valid response"));
    }
    let tail = stream::unfold(
        (live, last_id, name),
        |(mut live, mut last, name)| async move {
            loop {
                match live.recv().await {
                    Ok(l) if l.function == name && l.id > last => {
                        last = l.id;
                        return Some((Ok(ndjson(&l)), (live, last, name)));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let note = LogLine {
                        id: last,
                        function: name.clone(),
                        request_id: None,
                        ts_ms: nimbus_core::now_ms(),
                        line: format!("[nimbus] follower fell behind; {n} lines skipped (read them with `nimbus logs`)"),
                    };
                        return Some((Ok(ndjson(&note)), (live, last, name)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    use futures_util::StreamExt;
    Ok(Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(head.chain(tail)))
        .expect("valid response"))
}

fn ndjson(l: &LogLine) -> bytes::Bytes {
    let mut v = serde_json::to_vec(l).expect("log line serialises");
    v.push(b'\n');
    v.into()
}

#[derive(Debug, Deserialize)]
struct InvocationsQuery {
    function: Option<String>,
    since: Option<i64>,
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    cold: bool,
    limit: Option<u32>,
}

async fn invocations(
    State(st): State<AppState>,
    Query(q): Query<InvocationsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    st.invoker.telemetry().flush().await;
    let query = RecordQuery {
        function: q.function,
        since_ms: q.since,
        errors_only: q.errors,
        cold_only: q.cold,
        limit: q.limit,
    };
    let recs = st.invoker.records(query).await?;
    Ok(Json(json!({ "invocations": recs })))
}

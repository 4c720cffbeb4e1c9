//! The AWS Lambda REST API (2015-03-31): the `Invoke` operation.

pub mod ops;

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use nimbus_core::EventInvokeConfig;
use nimbus_core::{limits, Trigger};
use nimbus_invoker::Invocation;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            get(get_event_invoke_config)
                .put(put_event_invoke_config)
                .post(update_event_invoke_config)
                .delete(delete_event_invoke_config),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(list_event_invoke_configs),
        )
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationTarget {
    destination: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfig {
    #[serde(default)]
    on_success: Option<DestinationTarget>,
    #[serde(default)]
    on_failure: Option<DestinationTarget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventInvokeConfigBody {
    maximum_retry_attempts: Option<u32>,
    maximum_event_age_in_seconds: Option<u32>,
    destination_config: Option<DestinationConfig>,
}

fn event_config_json(
    st: &AppState,
    function: &str,
    qualifier: &str,
    c: &EventInvokeConfig,
) -> serde_json::Value {
    let target = |d: &Option<String>| match d {
        Some(arn) => json!({ "Destination": arn }),
        None => json!({}),
    };
    let mut v = json!({
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "FunctionArn": nimbus_core::function_arn(&st.region(), function, Some(qualifier)),
        "DestinationConfig": { "OnSuccess": target(&c.on_success), "OnFailure": target(&c.on_failure) },
    });
    if let Some(r) = c.maximum_retry_attempts {
        v["MaximumRetryAttempts"] = r.into();
    }
    if let Some(a) = c.maximum_event_age_s {
        v["MaximumEventAgeInSeconds"] = a.into();
    }
    v
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("Could not parse request body into json: {e}")))
}

async fn store_event_config(
    st: &AppState,
    name: String,
    qualifier: Option<String>,
    body: &[u8],
    merge: bool,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let (function, qualifier) = split_function_name(&name, qualifier);
    let qualifier = qualifier.unwrap_or_else(|| "$LATEST".into());
    let b: EventInvokeConfigBody = parse_body(body)?;
    let mut cfg = if merge {
        st.invoker
            .event_invoke_config(&function, &qualifier)
            .unwrap_or_default()
    } else {
        EventInvokeConfig::default()
    };
    if b.maximum_retry_attempts.is_some() || !merge {
        cfg.maximum_retry_attempts = b.maximum_retry_attempts;
    }
    if b.maximum_event_age_in_seconds.is_some() || !merge {
        cfg.maximum_event_age_s = b.maximum_event_age_in_seconds;
    }
    if let Some(d) = b.destination_config {
        if let Some(s) = d.on_success {
            cfg.on_success = s.destination;
        }
        if let Some(f) = d.on_failure {
            cfg.on_failure = f.destination;
        }
    } else if !merge {
        cfg.on_success = None;
        cfg.on_failure = None;
    }
    let saved = st
        .invoker
        .put_event_invoke_config(&function, &qualifier, cfg)
        .await?;
    Ok(axum::Json(event_config_json(
        st, &function, &qualifier, &saved,
    )))
}

async fn put_event_invoke_config(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    store_event_config(&st, name, q.qualifier, &body, false).await
}

async fn update_event_invoke_config(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    store_event_config(&st, name, q.qualifier, &body, true).await
}

async fn get_event_invoke_config(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let (function, qualifier) = split_function_name(&name, q.qualifier);
    let qualifier = qualifier.unwrap_or_else(|| "$LATEST".into());
    if st.invoker.get(&function).is_none() {
        return Err(ApiError::not_found(format!(
            "Function not found: {}",
            nimbus_core::function_arn(&st.region(), &function, Some(&qualifier))
        )));
    }
    let cfg = st
        .invoker
        .event_invoke_config(&function, &qualifier)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The function {} doesn't have an EventInvokeConfig",
                nimbus_core::function_arn(&st.region(), &function, Some(&qualifier))
            ))
        })?;
    Ok(axum::Json(event_config_json(
        &st, &function, &qualifier, &cfg,
    )))
}

async fn delete_event_invoke_config(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
) -> Result<StatusCode, ApiError> {
    let (function, qualifier) = split_function_name(&name, q.qualifier);
    let qualifier = qualifier.unwrap_or_else(|| "$LATEST".into());
    st.invoker
        .delete_event_invoke_config(&function, &qualifier)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_event_invoke_configs(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let (function, _) = split_function_name(&name, None);
    if st.invoker.get(&function).is_none() {
        return Err(ApiError::not_found(format!(
            "Function not found: {}",
            nimbus_core::function_arn(&st.region(), &function, None)
        )));
    }
    let cfgs: Vec<_> = ["$LATEST"]
        .iter()
        .filter_map(|q| {
            st.invoker
                .event_invoke_config(&function, q)
                .map(|c| event_config_json(&st, &function, q, &c))
        })
        .collect();
    Ok(axum::Json(json!({ "FunctionEventInvokeConfigs": cfgs })))
}

#[derive(Debug, Deserialize)]
struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// Read a body of at most `max` bytes; `None` when it is larger (the rest is
/// drained, so the client reads the refusal instead of a reset connection).
pub async fn read_limited(body: Body, max: usize) -> Result<Option<Bytes>, ApiError> {
    nimbus_protocol::read_at_most(body, &http::HeaderMap::new(), max)
        .await
        .map_err(|e| ApiError::invalid_content(format!("could not read request body: {e}")))
}

/// `name`, `name:qualifier`, a function ARN or a partial ARN
/// (`<account>:function:<name>[:<qualifier>]`), as Lambda accepts in
/// `FunctionName`.
pub(crate) fn split_function_name(
    raw: &str,
    query_qualifier: Option<String>,
) -> (String, Option<String>) {
    // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    let raw = raw
        .strip_prefix("arn:aws:lambda:")
        .map_or(raw, |rest| rest.splitn(4, ':').nth(3).unwrap_or(rest));
    // <account>:function:<name>[:<qualifier>]
    let raw = match raw.split_once(":function:") {
        Some((account, rest))
            if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest
        }
        _ => raw,
    };
    match raw.split_once(':') {
        Some((n, q)) => (n.to_string(), Some(q.to_string())),
        None => (raw.to_string(), query_qualifier),
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn invoke(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (function, qualifier) = split_function_name(&name, q.qualifier);
    let invocation_type =
        header_str(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    let max = match invocation_type {
        "RequestResponse" | "DryRun" => limits::SYNC_PAYLOAD_MAX,
        "Event" => limits::ASYNC_PAYLOAD_MAX,
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            )))
        }
    };
    let Some(payload) = read_limited(body, max).await? else {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!("Request must be smaller than {max} bytes for the InvokeFunction operation"),
        ));
    };
    if !payload.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(ApiError::invalid_content(
            "Could not parse request body into json: Could not parse payload into json",
        ));
    }
    let payload = if payload.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        payload
    };
    let client_context = match header_str(&headers, "x-amz-client-context") {
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::invalid_content(
                        "Client context must be a valid Base64-encoded JSON object.",
                    )
                })?,
        ),
        None => None,
    };
    let st_invoker = &st.invoker;
    if invocation_type == "DryRun" {
        // Validates the function and qualifier exist, runs nothing.
        if !st_invoker.qualifier_exists(&function, qualifier.as_deref()) {
            return Err(ApiError::not_found(format!(
                "Function not found: {}",
                nimbus_core::function_arn(&st.region(), &function, qualifier.as_deref())
            )));
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // X-Ray header, else W3C traceparent converted, else a new trace.
    let trace_id = nimbus_invoker::trace_header(
        header_str(&headers, "x-amzn-trace-id"),
        header_str(&headers, "traceparent"),
    );
    if invocation_type == "Event" {
        let request_id = st
            .queue
            .enqueue(
                Invocation {
                    function,
                    qualifier,
                    payload,
                    trigger: Trigger::Event,
                    client_context,
                    trace_id: Some(trace_id.clone()),
                },
                "event",
            )
            .await?;
        let mut resp = StatusCode::ACCEPTED.into_response();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
        if let Ok(v) = HeaderValue::from_str(&trace_id) {
            resp.headers_mut().insert("x-amzn-trace-id", v);
        }
        return Ok(resp);
    }
    let res = st_invoker
        .invoke(Invocation {
            function,
            qualifier,
            payload,
            trigger: Trigger::Api,
            client_context,
            trace_id: Some(trace_id),
        })
        .await?;
    let mut resp = Response::new(Body::from(res.payload));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&res.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Ok(v) = HeaderValue::from_str(&res.executed_version) {
        h.insert("x-amz-executed-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&res.trace_id) {
        h.insert("x-amzn-trace-id", v);
    }
    if res.function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if header_str(&headers, "x-amz-log-type") == Some("Tail") {
        let tail = base64::engine::general_purpose::STANDARD.encode(res.log_tail.as_bytes());
        if let Ok(v) = HeaderValue::from_str(&tail) {
            h.insert("x-amz-log-result", v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_name_forms() {
        assert_eq!(split_function_name("f", None), ("f".into(), None));
        assert_eq!(
            split_function_name("f", Some("3".into())),
            ("f".into(), Some("3".into()))
        );
        assert_eq!(
            split_function_name("f:prod", None),
            ("f".into(), Some("prod".into()))
        );
        assert_eq!(
            split_function_name("arn:aws:lambda:us-east-1:123456789012:function:f:7", None),
            ("f".into(), Some("7".into()))
        );
        assert_eq!(
            split_function_name("arn:aws:lambda:us-east-1:123456789012:function:f", None),
            ("f".into(), None)
        );
    }
}

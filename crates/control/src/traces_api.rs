//! `GET /_nimbus/traces/{trace}`: every invocation record of one trace, oldest first,
//! with their log lines (for `nimbus trace`).
//!
//! `{trace}` is an X-Ray Root (`1-<8 hex>-<24 hex>`), a whole `X-Amzn-Trace-Id`
//! header (`Root=…;Parent=…`) or a W3C trace id (32 hex, as in `traceparent`).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// Most records (and log lines) one trace answer carries.
const TRACE_LIMIT: u32 = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/_nimbus/traces/{trace}", get(trace))
}

#[derive(Debug, Deserialize)]
struct TraceQuery {
    /// `false` leaves the log lines out.
    logs: Option<bool>,
}

async fn trace(
    State(st): State<AppState>,
    Path(trace): Path<String>,
    Query(q): Query<TraceQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let root = trace_root_of(&trace).ok_or_else(|| {
        ApiError::invalid_parameter(format!(
            "{trace:?} is not a trace id: give an X-Ray Root (1-<8 hex>-<24 hex>), \
             an X-Amzn-Trace-Id header or a 32-hex W3C trace id"
        ))
    })?;
    st.invoker.telemetry().flush().await;
    let with_logs = q.logs.unwrap_or(true);
    let (recs, logs) = st.invoker.trace(&root, with_logs, TRACE_LIMIT).await?;
    Ok(Json(json!({
        "root": root,
        "traceparent_id": root[2..].replace('-', ""),
        "invocations": recs,
        "logs": logs,
    })))
}

/// The X-Ray Root a user-given trace id names.
fn trace_root_of(s: &str) -> Option<String> {
    let s = s.trim();
    let header = if s.contains("Root=") {
        s.to_string()
    } else if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return nimbus_invoker::trace_root(&nimbus_invoker::trace_header(
            None,
            Some(&format!("00-{s}-0000000000000001-00")),
        ))
        .map(str::to_string);
    } else {
        format!("Root={s}")
    };
    nimbus_invoker::trace_root(&header).map(|r| r.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::trace_root_of;

    #[test]
    fn trace_ids_in_every_form() {
        let root = "1-0af76519-16cd43dd8448eb211c80319c";
        for s in [
            root,
            "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1",
            "0af7651916cd43dd8448eb211c80319c",
        ] {
            assert_eq!(trace_root_of(s).as_deref(), Some(root), "{s}");
        }
        assert_eq!(trace_root_of("nope"), None);
    }
}

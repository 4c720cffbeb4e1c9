//! `/_nimbus/services/s3/…`: buckets with their object counts and sizes, the
//! notification outbox's backlog; and the service's metrics.

use crate::error::internal;
use crate::State;
use axum::extract::Request;
use axum::response::IntoResponse;
use http::StatusCode;
use nimbus_protocol::ResponseFuture;
use nimbus_svc_common::ServiceAdmin;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct Admin {
    pub state: Arc<State>,
}

/// Buckets: name, region, objects, bytes, whether notifications are on.
fn buckets(state: &State) -> Result<serde_json::Value, crate::error::S3Error> {
    state.store.with(|c| {
        let mut s = c
            .prepare(
                "SELECT b.name, b.region, b.notification IS NOT NULL,
                        (SELECT COUNT(*) FROM objects o WHERE o.bucket = b.name),
                        (SELECT COALESCE(SUM(size), 0) FROM objects o WHERE o.bucket = b.name),
                        (SELECT COUNT(*) FROM uploads u WHERE u.bucket = b.name)
                 FROM buckets b ORDER BY b.name",
            )
            .map_err(internal)?;
        let rows = s
            .query_map([], |r| {
                Ok(json!({
                    "Name": r.get::<_, String>(0)?,
                    "Region": r.get::<_, String>(1)?,
                    "Notifications": r.get::<_, bool>(2)?,
                    "Objects": r.get::<_, i64>(3)?,
                    "Bytes": r.get::<_, i64>(4)?,
                    "MultipartUploads": r.get::<_, i64>(5)?,
                }))
            })
            .map_err(internal)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        Ok(json!({ "Buckets": rows }))
    })
}

fn outbox(state: &State) -> Result<serde_json::Value, crate::error::S3Error> {
    let backlog = state
        .store
        .with(|c| crate::notify::backlog(c))
        .map_err(internal)?;
    Ok(json!({
        "Backlog": backlog,
        "Delivered": state.notify.delivered.load(Ordering::Relaxed),
        "Retried": state.notify.retried.load(Ordering::Relaxed),
        "Dropped": state.notify.dropped.load(Ordering::Relaxed),
    }))
}

impl ServiceAdmin for Admin {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let state = self.state.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let now = req
                .uri()
                .query()
                .and_then(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "now")
                        .and_then(|(_, v)| v.parse::<i64>().ok())
                })
                .unwrap_or_else(crate::store::now_ms);
            let rest = path
                .strip_prefix("/_nimbus/services/s3")
                .unwrap_or("")
                .trim_matches('/')
                .to_string();
            let out = tokio::task::spawn_blocking(move || match rest.as_str() {
                "" | "buckets" => Some(buckets(&state)),
                "outbox" => Some(outbox(&state)),
                // Run the lifecycle sweep now, as of `?now=<epoch ms>` (tests, operators).
                "lifecycle/sweep" => Some(crate::config::sweep(&state.store, now).map(
                    |(report, queued)| {
                        if queued {
                            state.notify.wake();
                        }
                        json!({ "Expired": report.expired, "Aborted": report.aborted })
                    },
                )),
                _ => None,
            })
            .await
            .ok()
            .flatten();
            match out {
                Some(Ok(v)) => axum::Json(v).into_response(),
                Some(Err(e)) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"Type": "InternalError", "Message": e.0.message})),
                )
                    .into_response(),
                None => (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({
                        "Type": "NotFound",
                        "Message": format!("no s3 admin resource at {path}; try buckets or outbox"),
                    })),
                )
                    .into_response(),
            }
        })
    }

    fn metrics(&self) -> String {
        let st = &self.state;
        let (buckets, objects, bytes, backlog) = st
            .store
            .with(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM buckets), (SELECT COUNT(*) FROM objects),
                            (SELECT COALESCE(SUM(size), 0) FROM objects), (SELECT COUNT(*) FROM outbox)",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)),
                )
            })
            .unwrap_or_default();
        let n = &st.notify;
        format!(
            "# HELP nimbus_s3_buckets S3 buckets.\n# TYPE nimbus_s3_buckets gauge\nnimbus_s3_buckets {buckets}\n\
             # HELP nimbus_s3_objects S3 objects.\n# TYPE nimbus_s3_objects gauge\nnimbus_s3_objects {objects}\n\
             # HELP nimbus_s3_object_bytes Bytes of S3 objects (logical, before deduplication).\n# TYPE nimbus_s3_object_bytes gauge\nnimbus_s3_object_bytes {bytes}\n\
             # HELP nimbus_s3_notification_backlog Notifications committed and not yet delivered.\n# TYPE nimbus_s3_notification_backlog gauge\nnimbus_s3_notification_backlog {backlog}\n\
             # HELP nimbus_s3_notifications_total Notification deliveries by outcome.\n# TYPE nimbus_s3_notifications_total counter\n\
             nimbus_s3_notifications_total{{outcome=\"delivered\"}} {}\n\
             nimbus_s3_notifications_total{{outcome=\"retried\"}} {}\n\
             nimbus_s3_notifications_total{{outcome=\"dropped\"}} {}\n",
            n.delivered.load(Ordering::Relaxed),
            n.retried.load(Ordering::Relaxed),
            n.dropped.load(Ordering::Relaxed),
        )
    }
}

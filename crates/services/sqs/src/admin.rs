//! `/_nimbus/services/sqs/…`: what operators and tests read about queues, and the
//! per-queue metrics `/metrics` appends.
//!
//! * `GET  /_nimbus/services/sqs/queues` — every queue with its depth (visible, in
//!   flight, delayed), age of the oldest message and counters;
//! * `GET  /_nimbus/services/sqs/queues/<name>` — one queue;
//! * `GET  /_nimbus/services/sqs/queues/<name>/messages?max=N` — peek (nothing is
//!   received or changed);
//! * `POST /_nimbus/services/sqs/queues/<name>/redrive` — move a dead-letter queue's
//!   messages back to their source queues (a message move task).

use crate::core::Sqs;
use crate::error::SqsError;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use nimbus_protocol::ResponseFuture;
use nimbus_svc_common::ServiceAdmin;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::Arc;

pub struct SqsAdmin {
    sqs: Arc<Sqs>,
}

impl SqsAdmin {
    pub fn new(sqs: Arc<Sqs>) -> Self {
        Self { sqs }
    }
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"Type": kind, "Message": message.into()})),
    )
        .into_response()
}

fn from_sqs(e: SqsError) -> Response {
    match e {
        SqsError::QueueDoesNotExist | SqsError::ResourceNotFound(_) => error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            e.to_string(),
        ),
        SqsError::Internal(m) => error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", m),
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            other.to_string(),
        ),
    }
}

/// Escape a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl ServiceAdmin for SqsAdmin {
    fn name(&self) -> &'static str {
        "sqs"
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let sqs = self.sqs.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let rest = path
                .strip_prefix("/_nimbus/services/sqs")
                .unwrap_or("")
                .trim_matches('/');
            let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            let method = req.method().clone();
            match (method, parts.as_slice()) {
                (Method::GET, [] | ["queues"]) => {
                    axum::Json(json!({"Queues": sqs.summaries()})).into_response()
                }
                (Method::GET, ["queues", name]) => {
                    match sqs.summaries().into_iter().find(|q| q.name == *name) {
                        Some(q) => axum::Json(json!(q)).into_response(),
                        None => from_sqs(SqsError::QueueDoesNotExist),
                    }
                }
                (Method::GET, ["queues", name, "messages"]) => {
                    let max = form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == "max")
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(10)
                        .min(1000);
                    match sqs.peek(name, max) {
                        Ok(m) => axum::Json(json!({"Messages": m})).into_response(),
                        Err(e) => from_sqs(e),
                    }
                }
                (Method::POST, ["queues", name, "redrive"]) => {
                    let arn = sqs.arn(name);
                    match sqs.start_move(&arn, None, None).await {
                        Ok(h) => axum::Json(json!({"TaskHandle": h})).into_response(),
                        Err(e) => from_sqs(e),
                    }
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    format!("No SQS admin resource at {path}"),
                ),
            }
        })
    }

    fn metrics(&self) -> String {
        let qs = self.sqs.summaries();
        let mut out = String::new();
        out.push_str("# HELP nimbus_sqs_messages Messages in a queue, by state.\n");
        out.push_str("# TYPE nimbus_sqs_messages gauge\n");
        for q in &qs {
            let n = label(&q.name);
            for (state, v) in [
                ("visible", q.visible),
                ("in_flight", q.in_flight),
                ("delayed", q.delayed),
            ] {
                let _ = writeln!(
                    out,
                    "nimbus_sqs_messages{{queue=\"{n}\",state=\"{state}\"}} {v}"
                );
            }
        }
        out.push_str(
            "# HELP nimbus_sqs_oldest_message_age_seconds Age of the oldest message in a queue.\n",
        );
        out.push_str("# TYPE nimbus_sqs_oldest_message_age_seconds gauge\n");
        for q in &qs {
            let _ = writeln!(
                out,
                "nimbus_sqs_oldest_message_age_seconds{{queue=\"{}\"}} {:.3}",
                label(&q.name),
                q.oldest_age_ms as f64 / 1000.0
            );
        }
        // Counter families are named without `_total`; their samples carry it
        // (what OpenMetrics parsers require).
        for (metric, help, get) in [
            (
                "nimbus_sqs_sent_messages",
                "Messages sent to a queue since start.",
                (|q: &crate::core::QueueSummary| q.sends) as fn(&crate::core::QueueSummary) -> u64,
            ),
            (
                "nimbus_sqs_received_messages",
                "Messages received from a queue since start.",
                |q| q.receives,
            ),
            (
                "nimbus_sqs_deleted_messages",
                "Messages deleted from a queue since start.",
                |q| q.deletes,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} counter");
            for q in &qs {
                let _ = writeln!(
                    out,
                    "{metric}_total{{queue=\"{}\"}} {}",
                    label(&q.name),
                    get(q)
                );
            }
        }
        out
    }
}

//! `/_nimbus/services/events/…`: the buses, their rules and targets, the last
//! deliveries and the outbox backlog; and the service's `/metrics` lines.
//!
//! * `GET /_nimbus/services/events/buses` — buses with their rules.
//! * `GET /_nimbus/services/events/deliveries` — the last 100 delivery outcomes.
//! * `GET /_nimbus/services/events/outbox` — the backlog (rows not yet delivered).

use crate::Inner;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use nimbus_protocol::ResponseFuture;
use nimbus_svc_common::ServiceAdmin;
use serde_json::{json, Value};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) struct Admin(pub Arc<Inner>);

fn answer(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

impl Admin {
    fn buses(&self) -> Value {
        let st = self.0.lock();
        let buses: Vec<Value> = st
            .buses
            .values()
            .map(|b| {
                let rules: Vec<Value> = st
                    .rules
                    .values()
                    .filter(|r| r.bus == b.name)
                    .map(|r| {
                        json!({
                            "name": r.name,
                            "arn": r.arn,
                            "state": r.state,
                            "eventPattern": r.event_pattern,
                            "scheduleExpression": r.schedule,
                            "targets": r.targets,
                        })
                    })
                    .collect();
                json!({"name": b.name, "arn": b.arn, "rules": rules})
            })
            .collect();
        json!({"buses": buses})
    }
}

impl ServiceAdmin for Admin {
    fn name(&self) -> &'static str {
        "events"
    }

    fn call(&self, req: axum::extract::Request) -> ResponseFuture {
        let inner = self.0.clone();
        let path = req.uri().path().to_string();
        let rest = path
            .trim_start_matches("/_nimbus/services/events")
            .trim_matches('/')
            .to_string();
        let buses = self.buses();
        Box::pin(async move {
            if req.method() != http::Method::GET {
                return answer(
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({"Type": "MethodNotAllowed", "Message": "Only GET is served here."}),
                );
            }
            match rest.as_str() {
                "" | "buses" => answer(StatusCode::OK, buses),
                "deliveries" => {
                    let recent: Vec<Value> = inner
                        .recent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .cloned()
                        .collect();
                    answer(StatusCode::OK, json!({"deliveries": recent}))
                }
                "outbox" => {
                    let store = inner.store.clone();
                    match tokio::task::spawn_blocking(move || store.backlog()).await {
                        Ok(Ok(n)) => answer(StatusCode::OK, json!({"backlog": n})),
                        _ => answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({"Type": "InternalError", "Message": "The outbox could not be read."}),
                        ),
                    }
                }
                other => answer(
                    StatusCode::NOT_FOUND,
                    json!({"Type": "NotFound", "Message": format!("No events admin resource '{other}'.")}),
                ),
            }
        })
    }

    fn metrics(&self) -> String {
        let m = &self.0.metrics;
        let mut out = String::new();
        for (name, help, v) in [
            (
                "nimbus_events_put_total",
                "Events accepted by PutEvents and the bus sink.",
                &m.events_put,
            ),
            (
                "nimbus_events_put_failed_total",
                "PutEvents entries refused.",
                &m.events_failed,
            ),
            (
                "nimbus_events_rule_matches_total",
                "Rule matches (events x rules, schedule fires).",
                &m.matched,
            ),
            (
                "nimbus_events_deliveries_total",
                "Deliveries to targets that succeeded.",
                &m.delivered,
            ),
            (
                "nimbus_events_delivery_retries_total",
                "Delivery attempts that failed and will be retried.",
                &m.retried,
            ),
            (
                "nimbus_events_dead_lettered_total",
                "Deliveries given up and sent to the target's dead-letter queue.",
                &m.dead_lettered,
            ),
            (
                "nimbus_events_dropped_total",
                "Deliveries given up with no dead-letter queue.",
                &m.dropped,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        if let Ok(n) = self.0.store.backlog() {
            let _ = writeln!(out, "# HELP nimbus_events_outbox_backlog Deliveries not yet made.\n# TYPE nimbus_events_outbox_backlog gauge\nnimbus_events_outbox_backlog {n}");
        }
        out
    }
}

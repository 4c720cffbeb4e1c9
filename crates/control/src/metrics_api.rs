//! `GET /metrics` (Prometheus text exposition, or OpenMetrics when the scraper's
//! `Accept` asks for it) and `GET /_nimbus/cost` (the usage priced as AWS Lambda,
//! for `nimbus cost`).
//!
//! Both sit behind the SigV4 middleware like every route but `/_nimbus/health`: with
//! credentials configured, a scraper must sign its requests (see docs/OPERATIONS.md).
//! The counters are kept by [`nimbus_telemetry::Metrics`]; the state gauges
//! (instances by state, async backlog) are read here, at scrape time.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_telemetry::metering;
use nimbus_telemetry::metrics::GaugeFamily;
use nimbus_telemetry::Metrics;
use serde::Deserialize;
use std::collections::HashMap;

/// The window `nimbus cost` prices when the request names none.
const DEFAULT_COST_WINDOW_MS: i64 = 30 * 24 * 3_600_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/_nimbus/cost", get(cost))
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut body = st
        .invoker
        .telemetry()
        .metrics()
        .encode(sampled(&st), openmetrics);
    // The services' own series go before OpenMetrics' closing `# EOF`.
    let services: String = st
        .services
        .iter()
        .map(|s| counter_families(&s.metrics()))
        .collect();
    if !services.is_empty() {
        let eof = body.rfind("# EOF\n").filter(|_| openmetrics);
        let at = eof.unwrap_or(body.len());
        body.insert_str(at, &services);
    }
    (
        [(header::CONTENT_TYPE, Metrics::content_type(openmetrics))],
        body,
    )
        .into_response()
}

/// A service's exposition with each counter family named without its `_total`
/// suffix (`# TYPE x counter`, samples `x_total`), the one spelling both the
/// Prometheus text format and OpenMetrics accept: services may write either.
fn counter_families(text: &str) -> String {
    let mut counters: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name.trim().to_string());
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let fixed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let base = name.strip_suffix("_total")?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{prefix}{base} {tail}"))
        });
        match fixed {
            Some(l) => out.push_str(l.trim_end()),
            None => {
                // A sample of a counter family named without `_total`.
                let name_end = line.find(['{', ' ']).unwrap_or(line.len());
                let name = &line[..name_end];
                if !line.starts_with('#')
                    && counters.iter().any(|c| c == name && !c.ends_with("_total"))
                {
                    out.push_str(name);
                    out.push_str("_total");
                    out.push_str(&line[name_end..]);
                } else {
                    out.push_str(line);
                }
            }
        }
        out.push('\n');
    }
    out
}

/// The gauges read from the pool, the queue and admission control at scrape time.
fn sampled(st: &AppState) -> Vec<GaugeFamily> {
    let mut instances = GaugeFamily::new(
        "nimbus_function_instances",
        "Instances of a function version by state (initialising, idle, busy)",
    );
    for c in st.invoker.instance_census() {
        for (state, n) in [
            ("initialising", c.initialising),
            ("idle", c.idle),
            ("busy", c.busy),
        ] {
            instances.push(
                vec![
                    ("function", c.function.clone()),
                    ("version", c.version.clone()),
                    ("state", state.to_string()),
                ],
                n as f64,
            );
        }
    }
    let mut depth = GaugeFamily::new(
        "nimbus_async_queue_depth",
        "Async events of a function waiting or running",
    );
    let mut age = GaugeFamily::new(
        "nimbus_async_queue_oldest_event_age_seconds",
        "Age of a function's oldest queued async event (0: none queued)",
    );
    // Functions with an empty queue report 0, so the series do not vanish.
    let mut stats = st.queue.all_stats();
    for f in st.invoker.list() {
        stats.entry(f.name().to_string()).or_default();
    }
    for (function, s) in stats {
        depth.push(vec![("function", function.clone())], s.depth as f64);
        age.push(
            vec![("function", function)],
            s.oldest_age_ms as f64 / 1000.0,
        );
    }
    let mut outbox = GaugeFamily::new(
        "nimbus_async_outbox_pending",
        "Destination records and dead letters of a function's finished async events not yet delivered",
    );
    for (function, n) in st.queue.outbox_pending() {
        outbox.push(vec![("function", function)], n as f64);
    }
    let mut limit = GaugeFamily::new(
        "nimbus_account_concurrency_limit",
        "Account-wide cap on concurrent executions",
    );
    limit.push(Vec::new(), st.invoker.admission().account_limit() as f64);
    vec![instances, depth, age, outbox, limit]
}

#[derive(Deserialize)]
struct CostQuery {
    /// Start of the window, ms since the epoch (default: 30 days ago).
    since: Option<i64>,
}

async fn cost(
    State(st): State<AppState>,
    Query(q): Query<CostQuery>,
) -> Result<Json<metering::CostReport>, ApiError> {
    // What was invoked just now is in the rollup before it is priced.
    st.invoker.telemetry().flush().await;
    let since = q
        .since
        .unwrap_or_else(|| nimbus_core::now_ms() - DEFAULT_COST_WINDOW_MS);
    let rows = st.invoker.metering(since).await?;
    let memory: HashMap<String, u32> = st
        .invoker
        .list()
        .iter()
        .map(|f| (f.name().to_string(), f.spec.memory_mb))
        .collect();
    let mut report = metering::report(&rows, &memory, since);
    report.since_ms = since.div_euclid(3_600_000) * 3_600_000;
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_families_lose_total_and_samples_gain_it() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n\
                    # HELP b B.\n# TYPE b counter\nb{x=\"1\"} 2\n\
                    # TYPE g gauge\ng 3\n";
        assert_eq!(
            super::counter_families(text),
            "# HELP a A.\n# TYPE a counter\na_total 1\n\
             # HELP b B.\n# TYPE b counter\nb_total{x=\"1\"} 2\n\
             # TYPE g gauge\ng 3\n"
        );
    }
}

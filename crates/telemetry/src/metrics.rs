//! Prometheus metrics (DESIGN.md decision 8), exported at `GET /metrics` on the API
//! listener. The names and labels are a contract, listed in `docs/OPERATIONS.md`.
//!
//! The hot path stays cheap: the counters and histograms of one function version are
//! resolved once into a [`FnMetrics`] (atomic counters, pre-created for every outcome)
//! and found again through a read-locked map keyed by borrowed strings, so recording an
//! invocation allocates nothing and holds no lock across an await. Gauges that describe
//! state (instances by state, async backlog, process figures) are not kept up to date
//! on the hot path at all: they are sampled when `/metrics` is scraped
//! ([`GaugeFamily`]).

use nimbus_core::{InvocationRecord, Outcome};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Upper bounds (seconds) of the invocation duration histogram: 1 ms to Lambda's
/// 15-minute maximum timeout.
const DURATION_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 900.0,
];
/// Upper bounds (seconds) of the init duration histogram (Lambda's init phase is
/// capped at 10 s).
const INIT_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds (seconds) of the gateway latency histogram (API Gateway's
/// integration timeout is 30 s).
const GATEWAY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every outcome, in the order [`outcome_index`] numbers them.
pub const OUTCOMES: [Outcome; 7] = [
    Outcome::Success,
    Outcome::FunctionError,
    Outcome::Timeout,
    Outcome::OutOfMemory,
    Outcome::RuntimeError,
    Outcome::InitError,
    Outcome::Throttled,
];

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Success => 0,
        Outcome::FunctionError => 1,
        Outcome::Timeout => 2,
        Outcome::OutOfMemory => 3,
        Outcome::RuntimeError => 4,
        Outcome::InitError => 5,
        Outcome::Throttled => 6,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FnLabels {
    function: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    function: String,
    version: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AsyncLabels {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    function: String,
    destination: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedLabels {
    function: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TelemetryKindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    route: Cow<'static, str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatusLabels {
    route: Cow<'static, str>,
    status: u16,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn init_histogram() -> Histogram {
    Histogram::new(INIT_BUCKETS)
}
fn gateway_histogram() -> Histogram {
    Histogram::new(GATEWAY_BUCKETS)
}

/// The families, registered once; handles into them are cloned out.
struct Families {
    invocations: Family<OutcomeLabels, Counter>,
    cold_starts: Family<FnLabels, Counter>,
    duration: HistogramFamily<FnLabels>,
    init_duration: HistogramFamily<FnLabels>,
    concurrent: Family<FnLabels, Gauge>,
    gb_seconds: Family<FnLabels, Counter<f64, AtomicU64>>,
    async_enqueued: Family<AsyncLabels, Counter>,
    async_retries: Family<AsyncLabels, Counter>,
    async_destinations: Family<DestinationLabels, Counter>,
    async_dropped: Family<DroppedLabels, Counter>,
    gateway_requests: Family<RouteStatusLabels, Counter>,
    gateway_latency: HistogramFamily<RouteLabels>,
    gateway_rejections: Family<RejectionLabels, Counter>,
    telemetry_dropped: Family<TelemetryKindLabels, Counter>,
}

/// The counters of one function version, resolved once.
pub struct FnMetrics {
    outcomes: [Counter; OUTCOMES.len()],
    cold_starts: Counter,
    duration: Histogram,
    init_duration: Histogram,
    concurrent: Gauge,
    gb_seconds: Counter<f64, AtomicU64>,
}

impl FnMetrics {
    /// Count a finished invocation from its record.
    pub fn observe(&self, rec: &InvocationRecord) {
        self.outcomes[outcome_index(rec.outcome)].inc();
        self.duration.observe(rec.duration_ms / 1000.0);
        if rec.cold {
            self.cold_starts.inc();
        }
        if let Some(init) = rec.init_ms {
            self.init_duration.observe(init / 1000.0);
        }
        self.gb_seconds
            .inc_by(crate::metering::gb_seconds(rec.billed_ms, rec.memory_mb));
    }

    /// Count a request refused by admission control (it never ran).
    pub fn throttled(&self) {
        self.outcomes[outcome_index(Outcome::Throttled)].inc();
    }

    /// Count one execution in flight until the guard drops.
    pub fn executing(&self) -> Executing {
        self.concurrent.inc();
        Executing(self.concurrent.clone())
    }
}

/// Holds one slot of `nimbus_function_concurrent_executions`.
pub struct Executing(Gauge);

impl Drop for Executing {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The async-queue counters of one function, resolved once.
pub struct AsyncFnMetrics {
    enqueued: Counter,
    retries: Counter,
    /// on_success delivered/failed, on_failure delivered/failed.
    destinations: [Counter; 4],
    /// RetriesExhausted, EventAgeExceeded.
    dropped: [Counter; 2],
}

/// Which destination an async result went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    OnSuccess,
    OnFailure,
}

/// Why an async event was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    RetriesExhausted,
    EventAgeExceeded,
}

impl AsyncFnMetrics {
    pub fn enqueued(&self) {
        self.enqueued.inc();
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    /// A destination record was queued (`delivered`) or could not be (`!delivered`).
    pub fn destination(&self, kind: DestinationKind, delivered: bool) {
        let i = match kind {
            DestinationKind::OnSuccess => 0,
            DestinationKind::OnFailure => 2,
        } + usize::from(!delivered);
        self.destinations[i].inc();
    }

    /// A failed event had no on-failure destination and was discarded.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].inc();
    }
}

/// A gauge sampled at scrape time: one name, its help, and `(labels, value)` pairs.
/// (Or a counter kept elsewhere, e.g. by the kernel: its name then lacks `_total`,
/// which the encoder appends.)
#[derive(Debug, Clone)]
pub struct GaugeFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub counter: bool,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl GaugeFamily {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            counter: false,
            samples: Vec::new(),
        }
    }

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }
}

/// Encodes the scrape-time gauges of one scrape.
#[derive(Debug)]
struct Sampled(Vec<GaugeFamily>);

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for fam in &self.0 {
            let ty = if fam.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut metric = encoder.encode_descriptor(fam.name, fam.help, None, ty)?;
            for (labels, value) in &fam.samples {
                let enc = metric.encode_family(labels)?;
                if fam.counter {
                    ConstCounter::new(*value).encode(enc)?;
                } else {
                    ConstGauge::new(*value).encode(enc)?;
                }
            }
        }
        Ok(())
    }
}

type FnCache = HashMap<String, HashMap<String, Arc<FnMetrics>>>;

struct Inner {
    registry: Registry,
    families: Families,
    functions: RwLock<FnCache>,
    async_fns: RwLock<HashMap<String, Arc<AsyncFnMetrics>>>,
    started: SystemTime,
}

/// The metrics of one server. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let families = Families {
            invocations: Family::default(),
            cold_starts: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            init_duration: Family::new_with_constructor(init_histogram),
            concurrent: Family::default(),
            gb_seconds: Family::default(),
            async_enqueued: Family::default(),
            async_retries: Family::default(),
            async_destinations: Family::default(),
            async_dropped: Family::default(),
            gateway_requests: Family::default(),
            gateway_latency: Family::new_with_constructor(gateway_histogram),
            gateway_rejections: Family::default(),
            telemetry_dropped: Family::default(),
        };
        let f = &families;
        let mut r = Registry::default();
        // Counters are registered without `_total`: the encoder appends it.
        r.register(
            "nimbus_function_invocations",
            "Invocations by outcome (throttled requests never ran)",
            f.invocations.clone(),
        );
        r.register(
            "nimbus_function_cold_starts",
            "Invocations that started a new instance",
            f.cold_starts.clone(),
        );
        r.register(
            "nimbus_function_duration_seconds",
            "Invocation duration (the REPORT line's Duration)",
            f.duration.clone(),
        );
        r.register(
            "nimbus_function_init_duration_seconds",
            "Init duration of cold starts",
            f.init_duration.clone(),
        );
        r.register(
            "nimbus_function_concurrent_executions",
            "Invocations running now",
            f.concurrent.clone(),
        );
        r.register(
            "nimbus_function_billed_gb_seconds",
            "Billed duration times memory size, in GB-seconds (Lambda's compute unit)",
            f.gb_seconds.clone(),
        );
        r.register(
            "nimbus_async_events_enqueued",
            "Async events accepted into the queue",
            f.async_enqueued.clone(),
        );
        r.register(
            "nimbus_async_retries",
            "Async invocations that failed and were queued to be tried again",
            f.async_retries.clone(),
        );
        r.register(
            "nimbus_async_destination_deliveries",
            "Destination records of finished async events (on_failure: the dead letters)",
            f.async_destinations.clone(),
        );
        r.register(
            "nimbus_async_events_dropped",
            "Failed async events discarded because no on-failure destination is set",
            f.async_dropped.clone(),
        );
        r.register(
            "nimbus_gateway_requests",
            "Gateway requests by route key and status code (route \"none\": no route matched)",
            f.gateway_requests.clone(),
        );
        r.register(
            "nimbus_gateway_rejections",
            "Gateway requests refused before (or instead of) an invocation, by reason: \
             unauthorized, forbidden, throttled, quota_exceeded, authorizer_failed, \
             invalid_request, function_throttled",
            f.gateway_rejections.clone(),
        );
        r.register(
            "nimbus_telemetry_dropped",
            "Log lines and invocation records dropped because the telemetry writer was \
             behind (its queue full), by kind (log, record): an invocation never waits \
             for the writer",
            f.telemetry_dropped.clone(),
        );
        r.register(
            "nimbus_gateway_request_duration_seconds",
            "Gateway request latency, from the request head to the response head",
            f.gateway_latency.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: r,
                families,
                functions: RwLock::default(),
                async_fns: RwLock::default(),
                started: SystemTime::now(),
            }),
        }
    }

    /// Count a log line (`kind` "log") or record ("record") the telemetry writer
    /// had no room for.
    pub fn telemetry_dropped(&self, kind: &'static str) {
        self.inner
            .families
            .telemetry_dropped
            .get_or_create(&TelemetryKindLabels { kind })
            .inc();
    }

    /// How many of `kind` were dropped so far.
    pub fn telemetry_dropped_count(&self, kind: &'static str) -> u64 {
        self.inner
            .families
            .telemetry_dropped
            .get_or_create(&TelemetryKindLabels { kind })
            .get()
    }

    /// The counters of `function` at `version`, created on first use.
    pub fn function(&self, function: &str, version: &str) -> Arc<FnMetrics> {
        if let Some(m) = self
            .inner
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(function)
            .and_then(|v| v.get(version))
        {
            return m.clone();
        }
        let f = &self.inner.families;
        let labels = FnLabels {
            function: function.to_string(),
            version: version.to_string(),
        };
        let outcomes = OUTCOMES.map(|o| {
            f.invocations.get_or_create_owned(&OutcomeLabels {
                function: function.to_string(),
                version: version.to_string(),
                outcome: o.as_str(),
            })
        });
        let m = Arc::new(FnMetrics {
            outcomes,
            cold_starts: f.cold_starts.get_or_create_owned(&labels),
            duration: f.duration.get_or_create_owned(&labels),
            init_duration: f.init_duration.get_or_create_owned(&labels),
            concurrent: f.concurrent.get_or_create_owned(&labels),
            gb_seconds: f.gb_seconds.get_or_create_owned(&labels),
        });
        let mut cache = self
            .inner
            .functions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        cache
            .entry(function.to_string())
            .or_default()
            .entry(version.to_string())
            .or_insert(m)
            .clone()
    }

    /// The async-queue counters of `function`, created on first use.
    pub fn async_function(&self, function: &str) -> Arc<AsyncFnMetrics> {
        if let Some(m) = self
            .inner
            .async_fns
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(function)
        {
            return m.clone();
        }
        let f = &self.inner.families;
        let labels = AsyncLabels {
            function: function.to_string(),
        };
        let dest = |destination, result| {
            f.async_destinations
                .get_or_create_owned(&DestinationLabels {
                    function: function.to_string(),
                    destination,
                    result,
                })
        };
        let dropped = |reason| {
            f.async_dropped.get_or_create_owned(&DroppedLabels {
                function: function.to_string(),
                reason,
            })
        };
        let m = Arc::new(AsyncFnMetrics {
            enqueued: f.async_enqueued.get_or_create_owned(&labels),
            retries: f.async_retries.get_or_create_owned(&labels),
            destinations: [
                dest("on_success", "delivered"),
                dest("on_success", "failed"),
                dest("on_failure", "delivered"),
                dest("on_failure", "failed"),
            ],
            dropped: [dropped("RetriesExhausted"), dropped("EventAgeExceeded")],
        });
        self.inner
            .async_fns
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(function.to_string())
            .or_insert(m)
            .clone()
    }

    /// Count one gateway request. `route` is the matched route key (empty: none
    /// matched); it is moved in, so the caller's string is reused as the label.
    pub fn gateway_request(&self, route: String, status: u16, latency: Duration) {
        let route: Cow<'static, str> = if route.is_empty() {
            Cow::Borrowed("none")
        } else {
            Cow::Owned(route)
        };
        let f = &self.inner.families;
        let labels = RouteStatusLabels { route, status };
        match f.gateway_requests.get(&labels) {
            Some(c) => {
                c.inc();
            }
            None => {
                f.gateway_requests.get_or_create(&labels).inc();
            }
        }
        let labels = RouteLabels {
            route: labels.route,
        };
        let secs = latency.as_secs_f64();
        match f.gateway_latency.get(&labels) {
            Some(h) => h.observe(secs),
            None => f.gateway_latency.get_or_create(&labels).observe(secs),
        }
    }

    /// Count a gateway request refused for `reason` (an authorizer's denial, a
    /// throttle, a failed validation) on `route`.
    pub fn gateway_rejection(&self, route: &str, reason: &'static str) {
        let route: Cow<'static, str> = if route.is_empty() {
            Cow::Borrowed("none")
        } else {
            Cow::Owned(route.to_string())
        };
        self.inner
            .families
            .gateway_rejections
            .get_or_create(&RejectionLabels { route, reason })
            .inc();
    }

    /// The exposition: everything registered, then `sampled` (state read at scrape
    /// time by the caller) and this process's figures. `openmetrics` picks the
    /// OpenMetrics text format over Prometheus text 0.0.4.
    pub fn encode(&self, mut sampled: Vec<GaugeFamily>, openmetrics: bool) -> String {
        sampled.extend(self.process_gauges());
        let mut extra = Registry::default();
        extra.register_collector(Box::new(Sampled(sampled)));
        let mut out = String::with_capacity(16 * 1024);
        if openmetrics {
            let _ =
                prometheus_client::encoding::text::encode_registry(&mut out, &self.inner.registry);
            let _ = prometheus_client::encoding::text::encode_registry(&mut out, &extra);
            let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        } else {
            let _ = prometheus_client::encoding::prometheus_text::encode(
                &mut out,
                &self.inner.registry,
            );
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &extra);
        }
        out
    }

    /// `Content-Type` of [`Metrics::encode`]'s output.
    pub fn content_type(openmetrics: bool) -> &'static str {
        if openmetrics {
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        } else {
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        }
    }

    /// RSS, open descriptors, CPU time, start time and uptime (the conventional
    /// `process_*` names, read from `/proc` where it exists).
    fn process_gauges(&self) -> Vec<GaugeFamily> {
        let mut out = Vec::new();
        let start = self
            .inner
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let uptime = self
            .inner
            .started
            .elapsed()
            .unwrap_or_default()
            .as_secs_f64();
        let mut g = GaugeFamily::new(
            "process_start_time_seconds",
            "Start time of the server since the Unix epoch, in seconds",
        );
        g.push(Vec::new(), start);
        out.push(g);
        let mut g = GaugeFamily::new("nimbus_uptime_seconds", "Seconds since the server started");
        g.push(Vec::new(), uptime);
        out.push(g);
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
        if let Some(rss_pages) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        {
            let mut g = GaugeFamily::new(
                "process_resident_memory_bytes",
                "Resident memory of the server process (not of function instances), in bytes",
            );
            g.push(Vec::new(), rss_pages * page);
            out.push(g);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let mut g = GaugeFamily::new(
                "process_open_fds",
                "Open file descriptors of the server process",
            );
            g.push(Vec::new(), dir.count() as f64);
            out.push(g);
        }
        if let Some(cpu) = process_cpu_seconds() {
            let mut g = GaugeFamily::new(
                "process_cpu_seconds",
                "User and system CPU time of the server process, in seconds",
            );
            g.counter = true;
            g.push(Vec::new(), cpu);
            out.push(g);
        }
        out
    }
}

/// utime + stime of `/proc/self/stat`, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::Trigger;

    fn rec(outcome: Outcome, cold: bool) -> InvocationRecord {
        InvocationRecord {
            request_id: "r".into(),
            function: "f".into(),
            version: "$LATEST".into(),
            revision: 1,
            trigger: Trigger::Api,
            start_ms: 0,
            cold,
            init_ms: cold.then_some(120.0),
            duration_ms: 12.5,
            billed_ms: 13,
            memory_mb: 1024,
            max_memory_used_mb: 30,
            outcome,
            error_type: None,
            trace_id: None,
        }
    }

    #[test]
    fn counts_land_under_their_labels() {
        let m = Metrics::new();
        let f = m.function("f", "$LATEST");
        f.observe(&rec(Outcome::Success, true));
        f.observe(&rec(Outcome::Success, false));
        m.function("f", "$LATEST")
            .observe(&rec(Outcome::Timeout, false));
        f.throttled();
        {
            let _a = f.executing();
            let _b = f.executing();
        }
        let a = m.async_function("f");
        a.retried();
        a.destination(DestinationKind::OnFailure, true);
        a.dropped(DropReason::EventAgeExceeded);
        m.gateway_request("GET /x".into(), 200, Duration::from_millis(3));
        m.gateway_rejection("GET /x", "throttled");
        m.gateway_request(String::new(), 404, Duration::from_millis(1));
        let mut g = GaugeFamily::new("nimbus_function_instances", "x");
        g.push(
            vec![("function", "f".into()), ("state", "idle".into())],
            2.0,
        );
        let text = m.encode(vec![g], false);
        for want in [
            r#"nimbus_function_invocations_total{function="f",version="$LATEST",outcome="success"} 2"#,
            r#"nimbus_function_invocations_total{function="f",version="$LATEST",outcome="timeout"} 1"#,
            r#"nimbus_function_invocations_total{function="f",version="$LATEST",outcome="throttled"} 1"#,
            r#"nimbus_function_invocations_total{function="f",version="$LATEST",outcome="out_of_memory"} 0"#,
            r#"nimbus_function_cold_starts_total{function="f",version="$LATEST"} 1"#,
            r#"nimbus_function_duration_seconds_count{function="f",version="$LATEST"} 3"#,
            r#"nimbus_function_init_duration_seconds_count{function="f",version="$LATEST"} 1"#,
            r#"nimbus_function_concurrent_executions{function="f",version="$LATEST"} 0"#,
            r#"nimbus_async_retries_total{function="f"} 1"#,
            r#"nimbus_async_destination_deliveries_total{function="f",destination="on_failure",result="delivered"} 1"#,
            r#"nimbus_async_events_dropped_total{function="f",reason="EventAgeExceeded"} 1"#,
            r#"nimbus_gateway_requests_total{route="GET /x",status="200"} 1"#,
            r#"nimbus_gateway_rejections_total{route="GET /x",reason="throttled"} 1"#,
            r#"nimbus_gateway_requests_total{route="none",status="404"} 1"#,
            r#"nimbus_gateway_request_duration_seconds_count{route="GET /x"} 1"#,
            r#"nimbus_function_instances{function="f",state="idle"} 2"#,
            "# TYPE process_open_fds gauge",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        // 3 × 13 ms × 1 GB
        assert!(
            text.contains(
                r#"nimbus_function_billed_gb_seconds_total{function="f",version="$LATEST"} 0.039"#
            ),
            "{text}"
        );
        let om = m.encode(Vec::new(), true);
        assert!(om.ends_with("# EOF\n"), "{om}");
    }
}

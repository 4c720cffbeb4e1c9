//! `nimbus metrics [--raw]`: the server's `/metrics`, summarised as tables (or
//! printed as scraped with `--raw`).

use crate::client::Client;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};

#[derive(clap::Args)]
pub struct Args {
    /// Print the Prometheus exposition as served.
    #[arg(long)]
    raw: bool,
}

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }
}

/// Parse the Prometheus text format (comments skipped; label values unescaped).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..name_end].to_string();
        let mut labels = HashMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut key = String::new();
            let mut end = body.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = i + 1;
                        break;
                    }
                    ',' | ' ' => {}
                    '=' => {
                        // A quoted value follows.
                        let mut val = String::new();
                        chars.next();
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => match chars.next().map(|(_, c)| c) {
                                    Some('n') => val.push('\n'),
                                    Some(c) => val.push(c),
                                    None => {}
                                },
                                '"' => break,
                                c => val.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), val);
                    }
                    c => key.push(c),
                }
            }
            rest = &body[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| match v {
                "+Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                v => v.parse().ok(),
            })
            .unwrap_or(f64::NAN);
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

#[derive(Default)]
struct FnRow {
    outcomes: BTreeMap<String, f64>,
    cold: f64,
    duration_sum: f64,
    duration_count: f64,
    /// Cumulative `(le, count)` of the duration histogram.
    buckets: Vec<(f64, f64)>,
    concurrent: f64,
    initialising: f64,
    idle: f64,
    busy: f64,
}

#[derive(Default)]
struct AsyncRow {
    depth: f64,
    age: f64,
    retries: f64,
    dead_letters: f64,
    dropped: f64,
}

#[derive(Default)]
struct RouteRow {
    by_class: [f64; 6],
    latency_sum: f64,
    latency_count: f64,
}

/// The upper bound of the bucket holding quantile `q` (an estimate, as
/// Prometheus's `histogram_quantile` would give at best).
fn quantile_bound(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.iter().map(|b| b.1).fold(0.0, f64::max);
    if total == 0.0 {
        return None;
    }
    let mut b = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    b.iter().find(|(_, c)| *c >= q * total).map(|(le, _)| *le)
}

fn ms(secs: f64) -> String {
    if secs.is_infinite() {
        "inf".into()
    } else {
        format!("{:.1}", secs * 1000.0)
    }
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let text = client.get_text("/metrics").await?;
    if a.raw {
        print!("{text}");
        return Ok(0);
    }
    let samples = parse(&text);
    let mut fns: BTreeMap<(String, String), FnRow> = BTreeMap::new();
    let mut asyncs: BTreeMap<String, AsyncRow> = BTreeMap::new();
    let mut routes: BTreeMap<String, RouteRow> = BTreeMap::new();
    let mut process: HashMap<&str, f64> = HashMap::new();
    for s in &samples {
        let key = || {
            (
                s.label("function").to_string(),
                s.label("version").to_string(),
            )
        };
        match s.name.as_str() {
            "nimbus_function_invocations_total" => {
                *fns.entry(key())
                    .or_default()
                    .outcomes
                    .entry(s.label("outcome").to_string())
                    .or_default() += s.value;
            }
            "nimbus_function_cold_starts_total" => fns.entry(key()).or_default().cold = s.value,
            "nimbus_function_duration_seconds_sum" => {
                fns.entry(key()).or_default().duration_sum = s.value
            }
            "nimbus_function_duration_seconds_count" => {
                fns.entry(key()).or_default().duration_count = s.value
            }
            "nimbus_function_duration_seconds_bucket" => {
                let le = match s.label("le") {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or(f64::NAN),
                };
                fns.entry(key()).or_default().buckets.push((le, s.value));
            }
            "nimbus_function_concurrent_executions" => {
                fns.entry(key()).or_default().concurrent = s.value
            }
            "nimbus_function_instances" => {
                let row = fns.entry(key()).or_default();
                match s.label("state") {
                    "initialising" => row.initialising = s.value,
                    "idle" => row.idle = s.value,
                    "busy" => row.busy = s.value,
                    _ => {}
                }
            }
            "nimbus_async_queue_depth" => {
                asyncs.entry(s.label("function").into()).or_default().depth = s.value
            }
            "nimbus_async_queue_oldest_event_age_seconds" => {
                asyncs.entry(s.label("function").into()).or_default().age = s.value
            }
            "nimbus_async_retries_total" => {
                asyncs
                    .entry(s.label("function").into())
                    .or_default()
                    .retries = s.value
            }
            "nimbus_async_destination_deliveries_total"
                if s.label("destination") == "on_failure" && s.label("result") == "delivered" =>
            {
                asyncs
                    .entry(s.label("function").into())
                    .or_default()
                    .dead_letters += s.value
            }
            "nimbus_async_events_dropped_total" => {
                asyncs
                    .entry(s.label("function").into())
                    .or_default()
                    .dropped += s.value
            }
            "nimbus_gateway_requests_total" => {
                let class = s
                    .label("status")
                    .parse::<usize>()
                    .map_or(0, |c| (c / 100).min(5));
                routes.entry(s.label("route").into()).or_default().by_class[class] += s.value;
            }
            "nimbus_gateway_request_duration_seconds_sum" => {
                routes
                    .entry(s.label("route").into())
                    .or_default()
                    .latency_sum = s.value
            }
            "nimbus_gateway_request_duration_seconds_count" => {
                routes
                    .entry(s.label("route").into())
                    .or_default()
                    .latency_count = s.value
            }
            n
            @ ("process_resident_memory_bytes" | "process_open_fds" | "nimbus_uptime_seconds") => {
                process.insert(
                    match n {
                        "process_resident_memory_bytes" => "rss",
                        "process_open_fds" => "fds",
                        _ => "uptime",
                    },
                    s.value,
                );
            }
            _ => {}
        }
    }

    println!(
        "{:<24} {:<8} {:>7} {:>7} {:>6} {:>7} {:>6} {:>9} {:>5} {:>9} {:>9} {:>4} {:>14}",
        "FUNCTION",
        "VERSION",
        "INVOKED",
        "SUCCESS",
        "ERRORS",
        "TIMEOUT",
        "OOM",
        "THROTTLED",
        "COLD",
        "AVG MS",
        "P95 MS≤",
        "RUN",
        "INST I/B/INIT"
    );
    for ((function, version), r) in &fns {
        let o = |k: &str| r.outcomes.get(k).copied().unwrap_or(0.0);
        let ran: f64 = r
            .outcomes
            .iter()
            .filter(|(k, _)| k.as_str() != "throttled")
            .map(|(_, v)| v)
            .sum();
        let avg = if r.duration_count > 0.0 {
            ms(r.duration_sum / r.duration_count)
        } else {
            "-".into()
        };
        let p95 = quantile_bound(&r.buckets, 0.95).map_or("-".into(), ms);
        println!(
            "{:<24} {:<8} {:>7} {:>7} {:>6} {:>7} {:>6} {:>9} {:>5} {:>9} {:>9} {:>4} {:>14}",
            function,
            version,
            ran,
            o("success"),
            o("function_error") + o("runtime_error") + o("init_error"),
            o("timeout"),
            o("out_of_memory"),
            o("throttled"),
            r.cold,
            avg,
            p95,
            r.concurrent,
            format!("{}/{}/{}", r.idle, r.busy, r.initialising),
        );
    }
    if asyncs
        .values()
        .any(|a| a.depth + a.retries + a.dead_letters + a.dropped > 0.0)
    {
        println!();
        println!(
            "{:<24} {:>7} {:>10} {:>8} {:>12} {:>8}",
            "ASYNC FUNCTION", "QUEUED", "OLDEST S", "RETRIES", "DEAD LETTERS", "DROPPED"
        );
        for (function, a) in &asyncs {
            println!(
                "{:<24} {:>7} {:>10.1} {:>8} {:>12} {:>8}",
                function, a.depth, a.age, a.retries, a.dead_letters, a.dropped
            );
        }
    }
    if !routes.is_empty() {
        println!();
        println!(
            "{:<40} {:>8} {:>6} {:>6} {:>6} {:>9}",
            "GATEWAY ROUTE", "REQUESTS", "2XX", "4XX", "5XX", "AVG MS"
        );
        for (route, r) in &routes {
            let total: f64 = r.by_class.iter().sum();
            let avg = if r.latency_count > 0.0 {
                ms(r.latency_sum / r.latency_count)
            } else {
                "-".into()
            };
            println!(
                "{:<40} {:>8} {:>6} {:>6} {:>6} {:>9}",
                route, total, r.by_class[2], r.by_class[4], r.by_class[5], avg
            );
        }
    }
    println!();
    println!(
        "server: rss {} open fds {} uptime {:.0}s",
        super::human_bytes(process.get("rss").copied().unwrap_or(0.0) as u64),
        process.get("fds").copied().unwrap_or(0.0),
        process.get("uptime").copied().unwrap_or(0.0)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_and_special_values() {
        let s = parse(
            "# HELP x y\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"u\\\\o,te}\"} 3\nup 1\nh_bucket{le=\"+Inf\"} 2\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].label("a"), "1");
        assert_eq!(s[0].label("b"), "q\"u\\o,te}");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].name, "up");
        assert_eq!(s[2].label("le"), "+Inf");
        assert_eq!(
            quantile_bound(&[(0.1, 1.0), (0.5, 10.0), (f64::INFINITY, 10.0)], 0.95),
            Some(0.5)
        );
    }
}

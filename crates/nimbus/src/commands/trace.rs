//! `nimbus trace TRACE_ID [--json] [--no-logs]`: every invocation of one trace, in
//! time order, with their log lines.
//!
//! TRACE_ID is an X-Ray Root (`1-<8 hex>-<24 hex>`), a whole `X-Amzn-Trace-Id`
//! header or a W3C trace id (32 hex).

use crate::client::Client;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    trace_id: String,
    /// Leave the log lines out.
    #[arg(long)]
    no_logs: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let id: String = url_escape(&a.trace_id);
    let v = client
        .get_json(&format!("/_nimbus/traces/{id}?logs={}", !a.no_logs))
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let recs = v["invocations"].as_array().cloned().unwrap_or_default();
    let root = v["root"].as_str().unwrap_or("");
    println!(
        "trace {root} (traceparent id {}): {} invocation(s)",
        v["traceparent_id"].as_str().unwrap_or(""),
        recs.len()
    );
    if recs.is_empty() {
        return Ok(0);
    }
    println!(
        "{:<24} {:<20} {:<8} {:<8} {:<36} {:>10}  OUTCOME",
        "START", "FUNCTION", "VERSION", "TRIGGER", "REQUEST ID", "DURATION"
    );
    for r in &recs {
        println!(
            "{:<24} {:<20} {:<8} {:<8} {:<36} {:>10}  {}",
            r["start_ms"]
                .as_i64()
                .map(super::ls::rfc3339)
                .unwrap_or_default(),
            r["function"].as_str().unwrap_or(""),
            r["version"].as_str().unwrap_or(""),
            r["trigger"].as_str().unwrap_or(""),
            r["request_id"].as_str().unwrap_or(""),
            format!("{:.2} ms", r["duration_ms"].as_f64().unwrap_or(0.0)),
            r["outcome"].as_str().unwrap_or(""),
        );
    }
    let logs = v["logs"].as_array().cloned().unwrap_or_default();
    if !logs.is_empty() {
        println!();
        for l in logs {
            let line = l["line"].as_str().unwrap_or("");
            println!(
                "{} {}",
                l["function"].as_str().unwrap_or(""),
                line.trim_end_matches('\n')
            );
        }
    }
    Ok(0)
}

/// Percent-encode what a path segment cannot carry (`;`, `=` of a whole header).
fn url_escape(s: &str) -> String {
    s.trim()
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

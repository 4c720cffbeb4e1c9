//! One module per client subcommand.

pub mod apikey;
pub mod app;
pub mod app_deploy;
pub mod app_gateway;
pub mod authorizer;
pub mod cors;
pub mod cost;
pub mod deploy;
pub mod dev;
pub mod get;
pub mod iam;
pub mod invocations;
pub mod invoke;
pub mod keys;
pub mod layer_publish;
pub mod logs;
pub mod ls;
pub mod mail;
pub mod mappings;
pub mod metrics;
pub mod queues;
pub mod rm;
pub mod route;
pub mod schedule;
pub mod trace;
pub mod usage_plan;

/// `1.2 KB`, `3.4 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parse `10m`, `1h`, `30s` into milliseconds ago, as an absolute epoch-ms cutoff.
pub fn since_cutoff(s: &str) -> anyhow::Result<i64> {
    let d =
        humantime::parse_duration(s).map_err(|e| anyhow::anyhow!("invalid duration {s:?}: {e}"))?;
    Ok(nimbus_core::now_ms() - d.as_millis() as i64)
}

//! `nimbus invocations NAME [--since 1h] [--errors] [--cold]`

use crate::client::Client;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    name: Option<String>,
    #[arg(long)]
    since: Option<String>,
    /// Only failed invocations.
    #[arg(long)]
    errors: bool,
    /// Only cold starts.
    #[arg(long)]
    cold: bool,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let mut q = vec![
        format!("limit={}", a.limit),
        format!("errors={}", a.errors),
        format!("cold={}", a.cold),
    ];
    if let Some(n) = &a.name {
        q.push(format!("function={n}"));
    }
    if let Some(s) = &a.since {
        q.push(format!("since={}", super::since_cutoff(s)?));
    }
    let v = client
        .get_json(&format!("/_nimbus/invocations?{}", q.join("&")))
        .await?;
    let recs = v["invocations"].as_array().cloned().unwrap_or_default();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&recs)?);
        return Ok(0);
    }
    println!(
        "{:<36}  {:<24} {:<20} {:<8} {:<6} {:>9} {:>10} {:>8} {:>9}  OUTCOME",
        "REQUEST ID",
        "TIME",
        "FUNCTION",
        "TRIGGER",
        "START",
        "INIT MS",
        "DURATION",
        "BILLED",
        "MEM USED"
    );
    for r in recs {
        println!(
            "{:<36}  {:<24} {:<20} {:<8} {:<6} {:>9} {:>10} {:>8} {:>9}  {}",
            r["request_id"].as_str().unwrap_or(""),
            r["start_ms"]
                .as_i64()
                .map(super::ls::rfc3339)
                .unwrap_or_default(),
            r["function"].as_str().unwrap_or(""),
            r["trigger"].as_str().unwrap_or(""),
            if r["cold"].as_bool() == Some(true) {
                "cold"
            } else {
                "warm"
            },
            r["init_ms"]
                .as_f64()
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
            format!("{:.2}", r["duration_ms"].as_f64().unwrap_or(0.0)),
            r["billed_ms"],
            format!("{}/{}MB", r["max_memory_used_mb"], r["memory_mb"]),
            r["outcome"].as_str().unwrap_or(""),
        );
    }
    Ok(0)
}

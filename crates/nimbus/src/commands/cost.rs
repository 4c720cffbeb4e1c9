//! `nimbus cost [--since 30d] [--json]`: metered usage per function, priced as AWS
//! Lambda would charge it (x86_64 and arm64), with over-provisioned memory flagged.

use crate::client::Client;
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// How far back to look (whole hours are counted), e.g. 24h, 30d.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Print the server's JSON report.
    #[arg(long)]
    json: bool,
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn usd(v: &Value) -> String {
    format!("${:.6}", f(v))
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let since = super::since_cutoff(&a.since)?;
    let r = client
        .get_json(&format!("/_nimbus/cost?since={since}"))
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    let p = &r["prices"];
    println!(
        "Usage since {}, priced as AWS Lambda {} on-demand: ${} per 1M requests, \
         ${}/GB-s x86_64, ${}/GB-s arm64 (first tier, no free tier; prices as of {}, {})",
        r["since_ms"]
            .as_i64()
            .map(super::ls::rfc3339)
            .unwrap_or_default(),
        p["region"].as_str().unwrap_or(""),
        p["per_million_requests"],
        p["x86_per_gb_second"],
        p["arm64_per_gb_second"],
        p["as_of"].as_str().unwrap_or(""),
        p["source"].as_str().unwrap_or(""),
    );
    println!();
    let fns = r["functions"].as_array().cloned().unwrap_or_default();
    if fns.is_empty() {
        println!("no usage metered in this window");
        return Ok(0);
    }
    println!(
        "{:<28} {:>10} {:>14} {:>8} {:>9} {:>14} {:>14}",
        "FUNCTION", "REQUESTS", "GB-S", "MEMORY", "MAX USED", "LAMBDA X86", "LAMBDA ARM64"
    );
    for x in &fns {
        println!(
            "{:<28} {:>10} {:>14.6} {:>8} {:>9} {:>14} {:>14}",
            x["function"].as_str().unwrap_or(""),
            x["requests"].as_u64().unwrap_or(0),
            f(&x["gb_seconds"]),
            format!("{}MB", x["memory_mb"]),
            format!("{}MB", x["max_memory_used_mb"]),
            usd(&x["x86"]["total"]),
            usd(&x["arm64"]["total"]),
        );
    }
    let t = &r["totals"];
    println!(
        "{:<28} {:>10} {:>14.6} {:>8} {:>9} {:>14} {:>14}",
        "TOTAL",
        t["requests"].as_u64().unwrap_or(0),
        f(&t["gb_seconds"]),
        "",
        "",
        usd(&t["x86"]["total"]),
        usd(&t["arm64"]["total"]),
    );
    let flagged: Vec<&Value> = fns
        .iter()
        .filter(|x| !x["over_provisioned"].is_null())
        .collect();
    if !flagged.is_empty() {
        println!();
        println!("Over-provisioned memory (peak use under half the memory size):");
        for x in flagged {
            let s = &x["over_provisioned"];
            println!(
                "  {}: peak {} MB of {} MB; {} MB would fit and save {} x86_64 / {} arm64 \
                 on this usage",
                x["function"].as_str().unwrap_or(""),
                x["max_memory_used_mb"],
                x["memory_mb"],
                s["memory_mb"],
                usd(&s["saving_x86"]),
                usd(&s["saving_arm64"]),
            );
        }
    }
    Ok(0)
}

//! `nimbus ls`

use crate::client::Client;
use anyhow::Result;

pub async fn run(client: &Client) -> Result<i32> {
    let v = client.get_json("/_nimbus/functions").await?;
    let fns = v["functions"].as_array().cloned().unwrap_or_default();
    if fns.is_empty() {
        println!("no functions deployed");
        return Ok(0);
    }
    println!(
        "{:<28} {:<16} {:<28} {:>7} {:>8} {:>9} {:>14}  MODIFIED",
        "NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "INSTANCES", "QUEUED (AGE)"
    );
    for f in fns {
        let c = &f["function"];
        let modified = c["last_modified_ms"]
            .as_i64()
            .map(rfc3339)
            .unwrap_or_default();
        let depth = f["queue"]["depth"].as_u64().unwrap_or(0);
        let queued = if depth == 0 {
            "0".to_string()
        } else {
            let age_s = f["queue"]["oldest_age_ms"].as_i64().unwrap_or(0) as f64 / 1000.0;
            format!("{depth} ({age_s:.0}s)")
        };
        println!(
            "{:<28} {:<16} {:<28} {:>7} {:>8} {:>9} {:>14}  {}",
            c["name"].as_str().unwrap_or(""),
            c["runtime"].as_str().unwrap_or(""),
            c["handler"].as_str().unwrap_or(""),
            format!("{}MB", c["memory_mb"]),
            format!("{}s", c["timeout_s"]),
            f["instances"],
            queued,
            modified
        );
    }
    Ok(0)
}

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

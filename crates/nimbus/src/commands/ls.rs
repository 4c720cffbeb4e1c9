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
        "{:<28} {:<16} {:<28} {:>7} {:>8} {:>9}  MODIFIED",
        "NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "INSTANCES"
    );
    for f in fns {
        let c = &f["function"];
        let modified = c["last_modified_ms"]
            .as_i64()
            .map(rfc3339)
            .unwrap_or_default();
        println!(
            "{:<28} {:<16} {:<28} {:>7} {:>8} {:>9}  {}",
            c["name"].as_str().unwrap_or(""),
            c["runtime"].as_str().unwrap_or(""),
            c["handler"].as_str().unwrap_or(""),
            format!("{}MB", c["memory_mb"]),
            format!("{}s", c["timeout_s"]),
            f["instances"],
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

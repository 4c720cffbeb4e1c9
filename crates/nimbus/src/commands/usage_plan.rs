//! `nimbus usage-plan create|ls|rm`: the throttle and quota that API keys get.

use crate::client::Client;
use anyhow::{bail, Result};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create or replace a usage plan:
    /// `nimbus usage-plan create basic --rate 10 --burst 20 --quota 10000 --period DAY`.
    Create(CreateArgs),
    /// List usage plans with their keys.
    Ls,
    /// Delete a usage plan no key belongs to.
    Rm { name: String },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    name: String,
    /// Requests per second each key may make, sustained.
    #[arg(long, requires = "burst")]
    rate: Option<f64>,
    /// Requests each key may make at once.
    #[arg(long, requires = "rate")]
    burst: Option<u32>,
    /// Requests each key may make per period.
    #[arg(long, requires = "period")]
    quota: Option<u64>,
    /// The quota's period: DAY, WEEK or MONTH (UTC).
    #[arg(long, requires = "quota")]
    period: Option<String>,
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Create(a) => {
            let mut body = json!({});
            if let (Some(rate), Some(burst)) = (a.rate, a.burst) {
                body["throttle"] = json!({"rate": rate, "burst": burst});
            }
            if let (Some(limit), Some(period)) = (a.quota, &a.period) {
                body["quota"] = json!({"limit": limit, "period": period.to_ascii_uppercase()});
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                bail!("give --rate and --burst, or --quota and --period, or both");
            }
            let resp = client
                .send(
                    client
                        .http
                        .put(client.url(&format!("/_nimbus/usage-plans/{}", a.name)))
                        .json(&body),
                )
                .await?;
            let created = resp.status() == reqwest::StatusCode::CREATED;
            let v: Value = resp.json().await?;
            println!(
                "{} usage plan {}: {}",
                if created { "Created" } else { "Updated" },
                a.name,
                describe(&v)
            );
            Ok(0)
        }
        Cmd::Ls => {
            let v = client.get_json("/_nimbus/usage-plans").await?;
            let all = v["usage_plans"].as_array().cloned().unwrap_or_default();
            if all.is_empty() {
                println!("no usage plans");
                return Ok(0);
            }
            println!("{:<24} {:<40} KEYS", "NAME", "LIMITS");
            for p in all {
                let keys = p["api_keys"]
                    .as_array()
                    .map(|k| {
                        k.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<40} {}",
                    p["name"].as_str().unwrap_or(""),
                    describe(&p),
                    if keys.is_empty() {
                        "-".to_string()
                    } else {
                        keys
                    }
                );
            }
            Ok(0)
        }
        Cmd::Rm { name } => {
            client
                .send(
                    client
                        .http
                        .delete(client.url(&format!("/_nimbus/usage-plans/{name}"))),
                )
                .await?;
            println!("Removed usage plan {name}");
            Ok(0)
        }
    }
}

/// `rate 10/s burst 20, quota 10000/DAY`.
fn describe(p: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = p["throttle"].as_object() {
        parts.push(format!(
            "rate {}/s burst {}",
            t.get("rate").and_then(Value::as_f64).unwrap_or(0.0),
            t.get("burst").and_then(Value::as_u64).unwrap_or(0)
        ));
    }
    if let Some(q) = p["quota"].as_object() {
        parts.push(format!(
            "quota {}/{}",
            q.get("limit").and_then(Value::as_u64).unwrap_or(0),
            q.get("period").and_then(Value::as_str).unwrap_or("")
        ));
    }
    if parts.is_empty() {
        "unlimited".into()
    } else {
        parts.join(", ")
    }
}

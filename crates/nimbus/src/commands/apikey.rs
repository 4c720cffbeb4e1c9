//! `nimbus apikey create|ls|rm|usage`: API keys for routes added with
//! `--auth apikey`; a key works once it belongs to a usage plan.

use crate::client::Client;
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create a key and print its value: `nimbus apikey create mobile --plan basic`.
    Create(CreateArgs),
    /// List keys (values with --values).
    Ls {
        /// Show the keys' values.
        #[arg(long)]
        values: bool,
    },
    /// Move a key to another plan, or enable/disable it.
    Set(SetArgs),
    /// Delete a key (by id or name).
    Rm { key: String },
    /// A key's quota usage in the current period.
    Usage { key: String },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    name: String,
    /// The usage plan the key belongs to (its throttle and quota apply).
    #[arg(long)]
    plan: Option<String>,
    /// A chosen value (20 to 128 characters); generated when absent.
    #[arg(long)]
    value: Option<String>,
    /// Create the key disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// The key's id or name.
    key: String,
    /// The plan to move the key to ("" to take it out of its plan).
    #[arg(long)]
    plan: Option<String>,
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    #[arg(long)]
    disable: bool,
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Create(a) => {
            let mut body = json!({"name": a.name, "enabled": !a.disabled});
            if let Some(p) = a.plan {
                body["plan"] = json!(p);
            }
            if let Some(v) = a.value {
                body["value"] = json!(v);
            }
            let resp = client
                .send(
                    client
                        .http
                        .post(client.url("/_nimbus/api-keys"))
                        .json(&body),
                )
                .await?;
            let k: Value = resp.json().await?;
            println!(
                "Created API key {} ({}){}",
                k["id"].as_str().unwrap_or(""),
                k["name"].as_str().unwrap_or(""),
                k["plan"]
                    .as_str()
                    .map(|p| format!(" in plan {p}"))
                    .unwrap_or_default()
            );
            println!("x-api-key: {}", k["value"].as_str().unwrap_or(""));
            Ok(0)
        }
        Cmd::Ls { values } => {
            let path = if values {
                "/_nimbus/api-keys?include_values=true"
            } else {
                "/_nimbus/api-keys"
            };
            let v = client.get_json(path).await?;
            let all = v["api_keys"].as_array().cloned().unwrap_or_default();
            if all.is_empty() {
                println!("no API keys");
                return Ok(0);
            }
            println!(
                "{:<12} {:<24} {:<16} {:<8} {}",
                "ID",
                "NAME",
                "PLAN",
                "ENABLED",
                if values { "VALUE" } else { "" }
            );
            for k in all {
                println!(
                    "{:<12} {:<24} {:<16} {:<8} {}",
                    k["id"].as_str().unwrap_or(""),
                    k["name"].as_str().unwrap_or(""),
                    k["plan"].as_str().unwrap_or("-"),
                    k["enabled"].as_bool().unwrap_or(false),
                    k["value"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        Cmd::Set(a) => {
            let mut body = json!({});
            if let Some(p) = a.plan {
                body["plan"] = json!(p);
            }
            if a.enable || a.disable {
                body["enabled"] = json!(a.enable);
            }
            let resp = client
                .send(
                    client
                        .http
                        .patch(client.url(&format!("/_nimbus/api-keys/{}", a.key)))
                        .json(&body),
                )
                .await?;
            let k: Value = resp.json().await?;
            println!(
                "API key {} ({}): plan {}, {}",
                k["id"].as_str().unwrap_or(""),
                k["name"].as_str().unwrap_or(""),
                k["plan"].as_str().unwrap_or("-"),
                if k["enabled"].as_bool() == Some(true) {
                    "enabled"
                } else {
                    "disabled"
                }
            );
            Ok(0)
        }
        Cmd::Rm { key } => {
            client
                .send(
                    client
                        .http
                        .delete(client.url(&format!("/_nimbus/api-keys/{key}"))),
                )
                .await?;
            println!("Removed API key {key}");
            Ok(0)
        }
        Cmd::Usage { key } => {
            let u = client
                .get_json(&format!("/_nimbus/api-keys/{key}/usage"))
                .await?;
            match u["limit"].as_u64() {
                Some(limit) => println!(
                    "{}: {} of {} requests this {} ({} left)",
                    u["key_id"].as_str().unwrap_or(""),
                    u["used"].as_u64().unwrap_or(0),
                    limit,
                    u["period"].as_str().unwrap_or("").to_ascii_lowercase(),
                    u["remaining"].as_u64().unwrap_or(0)
                ),
                None => println!("{}: no quota", u["key_id"].as_str().unwrap_or("")),
            }
            Ok(0)
        }
    }
}

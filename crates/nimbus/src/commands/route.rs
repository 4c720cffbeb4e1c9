//! `nimbus route add|ls|rm`: gateway routes.

use crate::client::Client;
use anyhow::{bail, Result};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Route `METHOD /path` (or `$default`) to a function:
    /// `nimbus route add GET /users/{id} getUser`, `nimbus route add ANY /{proxy+} app:live`.
    Add(AddArgs),
    /// List routes with their URLs.
    Ls,
    /// Remove a route: `nimbus route rm GET /users/{id}`, `nimbus route rm '$default'`.
    Rm(RmArgs),
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// METHOD PATH FUNCTION[:QUALIFIER], or $default FUNCTION[:QUALIFIER]. METHOD is
    /// GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY; PATH may hold {param}
    /// segments and a final greedy {proxy+}.
    #[arg(required = true, num_args = 2..=3, value_name = "ROUTE FUNCTION")]
    args: Vec<String>,
    /// Event format the function receives: 1.0 (REST API proxy) or 2.0 (HTTP API).
    #[arg(long, default_value = "2.0")]
    payload: String,
    /// Integration timeout in seconds (0.05 to 30): past it the client gets 504.
    #[arg(long, default_value_t = 29.0)]
    timeout: f64,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// METHOD PATH, or $default.
    #[arg(required = true, num_args = 1..=2, value_name = "ROUTE")]
    route: Vec<String>,
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Add(a) => add(client, a).await,
        Cmd::Ls => ls(client).await,
        Cmd::Rm(a) => rm(client, a).await,
    }
}

async fn add(client: &Client, a: AddArgs) -> Result<i32> {
    let (target, key) = a.args.split_last().expect("clap requires two arguments");
    let route_key = key.join(" ");
    let (function, qualifier) = match target.split_once(':') {
        Some((f, q)) => (f, Some(q)),
        None => (target.as_str(), None),
    };
    if !a.timeout.is_finite() || a.timeout <= 0.0 {
        bail!("--timeout must be a positive number of seconds");
    }
    let body = json!({
        "route_key": route_key,
        "function": function,
        "qualifier": qualifier,
        "payload_format": a.payload,
        "timeout_ms": (a.timeout * 1000.0).round() as u64,
    });
    let resp = client
        .send(client.http.put(client.url("/_nimbus/routes")).json(&body))
        .await?;
    let created = resp.status() == reqwest::StatusCode::CREATED;
    let r: Value = resp.json().await?;
    println!(
        "{} {} -> {}{}  {}",
        if created { "Added" } else { "Updated" },
        r["route_key"].as_str().unwrap_or(&route_key),
        r["function"].as_str().unwrap_or(function),
        r["qualifier"]
            .as_str()
            .map(|q| format!(":{q}"))
            .unwrap_or_default(),
        r["url"].as_str().unwrap_or("(every unmatched request)")
    );
    Ok(0)
}

async fn ls(client: &Client) -> Result<i32> {
    let v = client.get_json("/_nimbus/routes").await?;
    let routes = v["routes"].as_array().cloned().unwrap_or_default();
    if routes.is_empty() {
        println!(
            "no routes (gateway at {})",
            v["gateway_url"].as_str().unwrap_or("?")
        );
        return Ok(0);
    }
    println!(
        "{:<32} {:<28} {:>7} {:>8}  URL",
        "ROUTE", "FUNCTION", "PAYLOAD", "TIMEOUT"
    );
    for r in routes {
        let function = match r["qualifier"].as_str() {
            Some(q) => format!("{}:{q}", r["function"].as_str().unwrap_or("")),
            None => r["function"].as_str().unwrap_or("").to_string(),
        };
        let timeout_s = r["timeout_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
        let url = match r["url"].as_str() {
            Some(u) => u.to_string(),
            None => format!("{}/* (unmatched)", v["gateway_url"].as_str().unwrap_or("")),
        };
        println!(
            "{:<32} {:<28} {:>7} {:>8}  {}",
            r["route_key"].as_str().unwrap_or(""),
            function,
            r["payload_format"].as_str().unwrap_or(""),
            format!("{timeout_s}s"),
            url
        );
    }
    Ok(0)
}

async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    let key = a.route.join(" ");
    client
        .send(
            client
                .http
                .delete(client.url("/_nimbus/routes"))
                .query(&[("route_key", &key)]),
        )
        .await?;
    println!("Removed {key}");
    Ok(0)
}

//! `nimbus route add|ls|rm`: gateway routes.

use crate::client::Client;
use anyhow::{bail, Result};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Route `METHOD /path` (or `$default`) to a function:
    /// `nimbus route add GET /users/{id} getUser`, `nimbus route add ANY /{proxy+} app:live`.
    Add(Box<AddArgs>),
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
    /// Defaults to 1.0 for a REST API route, 2.0 otherwise.
    #[arg(long)]
    payload: Option<String>,
    /// The API the route belongs to: http (an HTTP API: bodies that are not text
    /// arrive base64-encoded) or rest (a REST API: bodies arrive as text unless
    /// their content type is a --binary-media-type).
    #[arg(long, value_name = "http|rest", default_value = "http")]
    api: String,
    /// A REST API binary media type (repeatable): `image/png`, `image/*`, `*/*`.
    #[arg(long = "binary-media-type", value_name = "TYPE")]
    binary_media_types: Vec<String>,
    /// Integration timeout in seconds (0.05 to 30): past it the client gets 504.
    #[arg(long, default_value_t = 29.0)]
    timeout: f64,
    /// Protect the route: jwt:NAME or lambda:NAME (an authorizer, see `nimbus
    /// authorizer`), apikey (an x-api-key of a usage plan). Repeatable: one
    /// authorizer plus apikey.
    #[arg(long = "auth", value_name = "jwt:NAME|lambda:NAME|apikey")]
    auth: Vec<String>,
    /// With a JWT authorizer: a scope the token must hold (repeatable; any one suffices).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The route's token bucket, RATE:BURST (requests per second : at once); past it 429.
    #[arg(long, value_name = "RATE:BURST")]
    throttle: Option<String>,
    /// A JSON Schema file the request body must match (else 400, no invocation).
    #[arg(long, value_name = "FILE")]
    body_schema: Option<std::path::PathBuf>,
    /// A query-string parameter every request must carry (repeatable; else 400).
    #[arg(long = "require-query", value_name = "NAME")]
    require_query: Vec<String>,
    /// A header every request must carry (repeatable; else 400).
    #[arg(long = "require-header", value_name = "NAME")]
    require_header: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// METHOD PATH, or $default.
    #[arg(required = true, num_args = 1..=2, value_name = "ROUTE")]
    route: Vec<String>,
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Add(a) => add(client, *a).await,
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
    let rest = a.api.eq_ignore_ascii_case("rest");
    if !rest && !a.api.eq_ignore_ascii_case("http") {
        bail!("--api must be http or rest, not {:?}", a.api);
    }
    let payload = a
        .payload
        .clone()
        .unwrap_or_else(|| if rest { "1.0" } else { "2.0" }.to_string());
    let mut body = json!({
        "route_key": route_key,
        "function": function,
        "qualifier": qualifier,
        "payload_format": payload,
        "api_type": if rest { "REST" } else { "HTTP" },
        "timeout_ms": (a.timeout * 1000.0).round() as u64,
    });
    if !a.binary_media_types.is_empty() {
        body["binary_media_types"] = json!(a.binary_media_types);
    }
    access_settings(&mut body, &a.auth, &a.scopes, a.throttle.as_deref())?;
    if let Some(path) = &a.body_schema {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let schema: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))?;
        body["body_schema"] = schema;
    }
    if !a.require_query.is_empty() {
        body["required_query"] = json!(a.require_query);
    }
    if !a.require_header.is_empty() {
        body["required_headers"] = json!(a.require_header);
    }
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

/// `--auth`, `--scope` and `--throttle` into the route's body.
fn access_settings(
    body: &mut Value,
    auth: &[String],
    scopes: &[String],
    throttle: Option<&str>,
) -> Result<()> {
    let mut authorizer = None;
    for a in auth {
        if a.eq_ignore_ascii_case("apikey") {
            body["api_key_required"] = json!(true);
        } else if a.starts_with("jwt:") || a.starts_with("lambda:") {
            if authorizer.replace(a).is_some() {
                bail!("a route takes one authorizer (plus apikey)");
            }
            body["authorizer"] = json!(a);
        } else {
            bail!("invalid --auth {a:?}: jwt:NAME, lambda:NAME or apikey");
        }
    }
    if !scopes.is_empty() {
        body["authorization_scopes"] = json!(scopes);
    }
    if let Some(t) = throttle {
        let parsed = t.split_once(':').and_then(|(r, b)| {
            Some((r.trim().parse::<f64>().ok()?, b.trim().parse::<u32>().ok()?))
        });
        let Some((rate, burst)) = parsed else {
            bail!("invalid --throttle {t:?}: RATE:BURST, like 10:20");
        };
        body["throttle"] = json!({"rate": rate, "burst": burst});
    }
    Ok(())
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
            "{:<32} {:<28} {:>7} {:>8}  {}{}",
            r["route_key"].as_str().unwrap_or(""),
            function,
            r["payload_format"].as_str().unwrap_or(""),
            format!("{timeout_s}s"),
            url,
            access_summary(&r)
        );
    }
    Ok(0)
}

/// `  [auth NAME scopes a,b; apikey; throttle 10/s burst 20]`, or nothing.
fn access_summary(r: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(a) = r["authorizer"].as_str() {
        let scopes: Vec<&str> = r["authorization_scopes"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if scopes.is_empty() {
            parts.push(format!("auth {a}"));
        } else {
            parts.push(format!("auth {a} scopes {}", scopes.join(",")));
        }
    }
    if r["api_key_required"].as_bool() == Some(true) {
        parts.push("apikey".to_string());
    }
    if let Some(t) = r["throttle"].as_object() {
        parts.push(format!(
            "throttle {}/s burst {}",
            t.get("rate").and_then(Value::as_f64).unwrap_or(0.0),
            t.get("burst").and_then(Value::as_u64).unwrap_or(0)
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("  [{}]", parts.join("; "))
    }
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

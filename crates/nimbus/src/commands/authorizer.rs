//! `nimbus authorizer create|ls|rm`: JWT and Lambda authorizers that gateway routes
//! refer to (`nimbus route add … --auth jwt:NAME`).

use crate::client::Client;
use anyhow::{bail, Result};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create or replace an authorizer:
    /// `nimbus authorizer create users --jwt --issuer https://id.example.com --audience api --jwks https://id.example.com/.well-known/jwks.json`,
    /// `nimbus authorizer create gate --lambda authFn --type TOKEN`.
    Create(Box<CreateArgs>),
    /// List authorizers.
    Ls,
    /// Delete an authorizer no route uses.
    Rm { name: String },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("authorizer_kind").required(true).args(["jwt", "lambda"])))]
pub struct CreateArgs {
    name: String,
    /// A JWT authorizer (needs --issuer, --audience and --secret or --jwks).
    #[arg(long)]
    jwt: bool,
    /// A Lambda authorizer running FUNCTION[:QUALIFIER].
    #[arg(long, value_name = "FUNCTION")]
    lambda: Option<String>,
    /// JWT: the exact `iss` tokens carry.
    #[arg(long)]
    issuer: Option<String>,
    /// JWT: an accepted `aud`/`client_id` (repeatable).
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// JWT: a shared secret for HS256/384/512 tokens.
    #[arg(long)]
    secret: Option<String>,
    /// JWT: a JWKS URL (http/https) or a file path on the server, for RS/PS/ES/EdDSA tokens.
    #[arg(long)]
    jwks: Option<String>,
    /// Where the identity is: `$request.header.NAME` or `$request.querystring.NAME`
    /// (repeatable for REQUEST authorizers). Default `$request.header.Authorization`.
    #[arg(long = "identity-source")]
    identity_sources: Vec<String>,
    /// Lambda: TOKEN or REQUEST.
    #[arg(long = "type", default_value = "REQUEST")]
    kind: String,
    /// Lambda REQUEST: the event format, 1.0 or 2.0.
    #[arg(long, default_value = "2.0")]
    payload: String,
    /// Lambda REQUEST 2.0: the function answers {"isAuthorized": bool, "context": {...}}.
    #[arg(long)]
    simple: bool,
    /// Lambda: seconds to cache an answer per identity (0 turns caching off, at most 3600).
    #[arg(long, default_value_t = 300)]
    ttl: u64,
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Create(a) => create(client, *a).await,
        Cmd::Ls => ls(client).await,
        Cmd::Rm { name } => {
            client
                .send(
                    client
                        .http
                        .delete(client.url(&format!("/_nimbus/authorizers/{name}"))),
                )
                .await?;
            println!("Removed authorizer {name}");
            Ok(0)
        }
    }
}

async fn create(client: &Client, a: CreateArgs) -> Result<i32> {
    let body = if a.jwt {
        let Some(issuer) = a.issuer else {
            bail!("a JWT authorizer needs --issuer");
        };
        if a.identity_sources.len() > 1 {
            bail!("a JWT authorizer takes one --identity-source");
        }
        json!({
            "type": "jwt",
            "jwt": {
                "issuer": issuer,
                "audiences": a.audiences,
                "identity_source": a.identity_sources.first(),
                "secret": a.secret,
                "jwks": a.jwks,
            }
        })
    } else {
        let target = a.lambda.expect("clap requires --jwt or --lambda");
        let (function, qualifier) = match target.split_once(':') {
            Some((f, q)) => (f.to_string(), Some(q.to_string())),
            None => (target, None),
        };
        json!({
            "type": "lambda",
            "lambda": {
                "function": function,
                "qualifier": qualifier,
                "type": a.kind.to_ascii_uppercase(),
                "payload_format": a.payload,
                "simple_responses": a.simple,
                "identity_sources": a.identity_sources,
                "ttl_seconds": a.ttl,
            }
        })
    };
    let body = strip_nulls(body);
    let resp = client
        .send(
            client
                .http
                .put(client.url(&format!("/_nimbus/authorizers/{}", a.name)))
                .json(&body),
        )
        .await?;
    let created = resp.status() == reqwest::StatusCode::CREATED;
    let v: Value = resp.json().await?;
    println!(
        "{} {} authorizer {}",
        if created { "Created" } else { "Updated" },
        v["type"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or(&a.name)
    );
    Ok(0)
}

/// Drop `null` members so the server's defaults apply.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

async fn ls(client: &Client) -> Result<i32> {
    let v = client.get_json("/_nimbus/authorizers").await?;
    let all = v["authorizers"].as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        println!("no authorizers");
        return Ok(0);
    }
    println!("{:<24} {:<7} DETAILS", "NAME", "TYPE");
    for a in all {
        let details = match a["type"].as_str() {
            Some("jwt") => {
                let j = &a["jwt"];
                format!(
                    "issuer {} audiences {} keys {}",
                    j["issuer"].as_str().unwrap_or(""),
                    j["audiences"]
                        .as_array()
                        .map(|x| x
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default(),
                    j["jwks"].as_str().unwrap_or(if j["secret"].is_null() {
                        "-"
                    } else {
                        "secret (HS256)"
                    })
                )
            }
            _ => {
                let l = &a["lambda"];
                format!(
                    "{}{} {} payload {}{} ttl {}s",
                    l["function"].as_str().unwrap_or(""),
                    l["qualifier"]
                        .as_str()
                        .map(|q| format!(":{q}"))
                        .unwrap_or_default(),
                    l["type"].as_str().unwrap_or(""),
                    l["payload_format"].as_str().unwrap_or(""),
                    if l["simple_responses"].as_bool() == Some(true) {
                        " simple"
                    } else {
                        ""
                    },
                    l["ttl_seconds"].as_u64().unwrap_or(0)
                )
            }
        };
        println!(
            "{:<24} {:<7} {}",
            a["name"].as_str().unwrap_or(""),
            a["type"].as_str().unwrap_or(""),
            details
        );
    }
    Ok(0)
}

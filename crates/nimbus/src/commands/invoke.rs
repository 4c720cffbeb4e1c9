//! `nimbus invoke NAME [--payload JSON|@file] [--async] [--log]`

use crate::client::Client;
use anyhow::{Context, Result};
use base64::Engine;

#[derive(clap::Args)]
pub struct Args {
    /// Function name, optionally `name:qualifier`.
    name: String,
    /// The event: inline JSON, or @path to read it from a file.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Queue the event and return at once (InvocationType=Event).
    #[arg(long = "async")]
    r#async: bool,
    /// Also print the invocation's log tail to stderr.
    #[arg(long)]
    log: bool,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let payload = match a.payload.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read payload file {path}"))?
        }
        None => a.payload.into_bytes(),
    };
    serde_json::from_slice::<serde_json::Value>(&payload).context("--payload is not valid JSON")?;
    let mut req = client
        .http
        .post(client.url(&format!("/2015-03-31/functions/{}/invocations", a.name)))
        .header(
            "x-amz-invocation-type",
            if a.r#async {
                "Event"
            } else {
                "RequestResponse"
            },
        )
        .body(payload);
    if a.log {
        req = req.header("x-amz-log-type", "Tail");
    }
    let resp = client.send(req).await?;
    if a.r#async {
        let id = resp
            .headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        eprintln!("queued, request id {id}");
        return Ok(0);
    }
    let function_error = resp.headers().contains_key("x-amz-function-error");
    if a.log {
        if let Some(tail) = resp
            .headers()
            .get("x-amz-log-result")
            .and_then(|v| v.to_str().ok())
        {
            if let Ok(t) = base64::engine::general_purpose::STANDARD.decode(tail) {
                eprint!("{}", String::from_utf8_lossy(&t));
            }
        }
    }
    let body = resp.bytes().await?;
    println!("{}", String::from_utf8_lossy(&body));
    Ok(if function_error { 1 } else { 0 })
}

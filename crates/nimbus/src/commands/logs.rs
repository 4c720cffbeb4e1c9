//! `nimbus logs NAME [--follow] [--since 10m] [--tail N]`

use crate::client::Client;
use anyhow::Result;
use futures_util::StreamExt;
use std::io::Write;

#[derive(clap::Args)]
pub struct Args {
    name: String,
    /// Keep streaming new lines.
    #[arg(short, long)]
    follow: bool,
    /// Only lines newer than this (e.g. 10m, 1h).
    #[arg(long)]
    since: Option<String>,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<u32>,
    /// Prefix each line with its timestamp.
    #[arg(long)]
    timestamps: bool,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let mut query = vec![format!("follow={}", a.follow)];
    if let Some(s) = &a.since {
        query.push(format!("since={}", super::since_cutoff(s)?));
    }
    if let Some(t) = a.tail {
        query.push(format!("tail={t}"));
    }
    let url = client.url(&format!(
        "/_nimbus/functions/{}/logs?{}",
        a.name,
        query.join("&")
    ));
    let resp = client.send(client.http.get(url)).await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                let mut out = stdout.lock();
                if a.timestamps {
                    let ts = v["ts_ms"]
                        .as_i64()
                        .map(super::ls::rfc3339)
                        .unwrap_or_default();
                    let _ = write!(out, "{ts} ");
                }
                let _ = writeln!(out, "{}", v["line"].as_str().unwrap_or(""));
                let _ = out.flush();
            }
        }
    }
    Ok(0)
}

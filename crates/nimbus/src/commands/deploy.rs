//! `nimbus deploy NAME --runtime R --handler H --code DIR|ZIP …`; without NAME, the
//! app manifest in the current directory (see `app_deploy`).

use crate::client::Client;
use crate::package;
use anyhow::{bail, Context, Result};
use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Function name. Without it, deploy the app manifest (serverless.yml or
    /// template.yaml in the current directory, or -f FILE).
    name: Option<String>,
    /// python3.x, nodejsNN.x, provided, provided.al2, provided.al2023.
    #[arg(long)]
    runtime: Option<String>,
    /// module.function (python/node); ignored by provided runtimes.
    #[arg(long, default_value = "")]
    handler: String,
    /// A directory or a zip file.
    #[arg(long)]
    code: Option<PathBuf>,
    /// Memory size in MB (128–10240).
    #[arg(long)]
    memory: Option<u32>,
    /// Timeout in seconds (1–900).
    #[arg(long)]
    timeout: Option<u32>,
    /// Environment variable, repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    #[arg(long)]
    reserved_concurrency: Option<u32>,
    #[arg(long, default_value_t = 0)]
    provisioned_concurrency: u32,
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    app: super::app_deploy::AppArgs,
}

pub async fn run(client: &Client, mut a: Args) -> Result<i32> {
    let Some(name) = a.name.take() else {
        return super::app_deploy::run(client, a.app).await;
    };
    if a.app.any() {
        bail!("-f/--stage/--region/--parameter-overrides/--stack-name/--allow-unsupported deploy an app manifest: leave out NAME");
    }
    let (Some(runtime), Some(code)) = (a.runtime.take(), a.code.take()) else {
        bail!("nimbus deploy NAME needs --runtime and --code (without NAME it deploys the app manifest in the current directory)");
    };
    let mut environment = BTreeMap::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env expects K=V, got {kv:?}")
        };
        environment.insert(k.to_string(), v.to_string());
    }
    let zip = tokio::task::spawn_blocking(move || package::bundle(&code)).await??;
    let size = zip.len() as u64;
    let bar = if size > 8 * 1024 * 1024 {
        let b = ProgressBar::new(size);
        b.set_style(
            ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes}")
                .expect("template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = zip
        .chunks(256 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let bar2 = bar.clone();
    let stream = futures_util::stream::iter(chunks)
        .inspect_ok(move |c: &bytes::Bytes| bar2.inc(c.len() as u64));
    let uploaded: Value = client
        .send(
            client
                .http
                .post(client.url("/_nimbus/code"))
                .header("content-type", "application/zip")
                .header("content-length", size)
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await?
        .json()
        .await
        .context("invalid upload answer")?;
    bar.finish_and_clear();
    let sha = uploaded["sha256"]
        .as_str()
        .context("upload answer lacks sha256")?
        .to_string();
    let mut body = json!({
        "runtime": runtime,
        "handler": a.handler,
        "code_sha256": sha,
        "environment": environment,
        "provisioned_concurrency": a.provisioned_concurrency,
        "description": a.description,
    });
    if let Some(m) = a.memory {
        body["memory_mb"] = m.into();
    }
    if let Some(t) = a.timeout {
        body["timeout_s"] = t.into();
    }
    if let Some(r) = a.reserved_concurrency {
        body["reserved_concurrency"] = r.into();
    }
    let resp: Value = client
        .send(
            client
                .http
                .put(client.url(&format!("/_nimbus/functions/{}", name)))
                .json(&body),
        )
        .await?
        .json()
        .await?;
    let f = &resp["function"];
    if let Some(n) = resp["notice"].as_str() {
        eprintln!("note: {n}");
    }
    println!(
        "Deployed {} ({} {}) revision {} — code sha256 {} ({})",
        name,
        f["runtime"].as_str().unwrap_or(""),
        f["handler"].as_str().unwrap_or(""),
        f["revision"],
        &sha[..12],
        super::human_bytes(size),
    );
    Ok(0)
}

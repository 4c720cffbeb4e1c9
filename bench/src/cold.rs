//! Section 1: cold starts, next to the bare start of the same program.
//!
//! A cold sample is what a user sees on the first invoke after a deploy (or after
//! the keep-alive reaped the last instance): the function is redeployed with a new
//! revision (an environment variable changes), the benchmark waits until the old
//! instance's process is gone, then times one Invoke on an already-open keep-alive
//! connection, client-side. The server's `init_ms` for the same request comes from
//! its invocation record. The bare start is spawn-to-exit of the interpreter (or the
//! bootstrap binary) doing nothing, measured right before or after (alternating) in
//! the same round, so drift and background load hit both. Spawn-to-exit includes the
//! interpreter's teardown, which a cold start does not pay, so a second, stricter peer
//! is spawn-to-ready: the same program writing one byte to its stdout pipe after the
//! same imports, timed to that byte.

use crate::functions::{bare_ready_ms, bare_start_ms, zip};
use crate::http::Conn;
use crate::server::{now_ms, Server};
use crate::stats::{ratio, round3, summarize, Summary};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Target {
    pub label: String,
    pub function: String,
    pub runtime: String,
    pub handler: String,
    /// Bundle files: `(name, content, mode)`.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Upload a new bundle (new sha256) for every sample.
    pub fresh_code: bool,
    pub bare_program: PathBuf,
    pub bare_args: Vec<String>,
    pub bare_label: String,
    /// Arguments that make `bare_program` write one byte to stdout once ready.
    pub ready_args: Vec<String>,
}

pub struct ColdResult {
    pub label: String,
    pub bare_label: String,
    pub client: Summary,
    pub init: Summary,
    pub bare: Summary,
    pub ready: Summary,
    pub all_cold: bool,
    pub samples: usize,
}

impl ColdResult {
    /// `/root/.pyenv/versions/3.11.7/bin/python3.11 -c 'import json'` → `python3.11 -c 'import json'`.
    pub fn bare_label_short(&self) -> String {
        let full = self.bare_label.as_str();
        let (prog, rest) = full.split_once(' ').unwrap_or((full, ""));
        let base = prog.rsplit('/').next().unwrap_or(prog);
        format!("{base} {rest}").trim().to_string()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "function": self.label,
            "bare": self.bare_label,
            "samples": self.samples,
            "all_cold": self.all_cold,
            "client_ms": self.client.to_json(),
            "init_ms": self.init.to_json(),
            "bare_ms": self.bare.to_json(),
            "bare_ready_ms": self.ready.to_json(),
            "ratio_client_p50_over_ready_p50": round3(ratio(self.client.p50, self.ready.p50)),
            "ratio_client_p50_over_bare_p50": round3(ratio(self.client.p50, self.bare.p50)),
            "ratio_client_p99_over_bare_p99": round3(ratio(self.client.p99, self.bare.p99)),
            "ratio_init_p50_over_bare_p50": round3(ratio(self.init.p50, self.bare.p50)),
        })
    }
}

struct State {
    sha: String,
    client: Vec<f64>,
    bare: Vec<f64>,
    ready: Vec<f64>,
    ids: Vec<String>,
    since: i64,
}

fn bundle(t: &Target, sample: Option<usize>) -> Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>, u32)> = t.files.clone();
    if let Some(i) = sample {
        // A different bundle per sample: same code, different bytes (new sha256).
        let nonce = format!("\n# sample {i} {}\n", now_ms());
        files[0].1.extend_from_slice(nonce.as_bytes());
    }
    let refs: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(n, c, m)| (n.as_str(), c.as_slice(), *m))
        .collect();
    zip(&refs)
}

pub async fn run(server: &Server, targets: &[Target], n: usize) -> Result<Vec<ColdResult>> {
    let home = server.data_dir.join("bare-home");
    std::fs::create_dir_all(&home)?;
    let mut st = Vec::new();
    for t in targets {
        // Deploy once and invoke once: the code is unpacked, the interpreter probed,
        // the page cache warm — as for any function that has run before.
        let sha = server.upload(bundle(t, None)?).await?;
        server
            .deploy(&t.function, &t.runtime, &t.handler, &sha, &HashMap::new())
            .await?;
        server
            .invoke_once(&t.function)
            .await
            .with_context(|| format!("priming {}", t.label))?;
        let args: Vec<&str> = t.bare_args.iter().map(String::as_str).collect();
        bare_start_ms(&t.bare_program, &args, &home)?;
        st.push(State {
            sha,
            client: Vec::new(),
            bare: Vec::new(),
            ready: Vec::new(),
            ids: Vec::new(),
            since: now_ms(),
        });
    }
    for i in 0..n {
        // Rotate which function goes first, and alternate cold/bare order.
        for k in 0..targets.len() {
            let j = (i + k) % targets.len();
            let (t, s) = (&targets[j], &mut st[j]);
            if i % 2 == 0 {
                cold_sample(server, t, s, i).await?;
                bare_sample(t, s, &home)?;
            } else {
                bare_sample(t, s, &home)?;
                cold_sample(server, t, s, i).await?;
            }
        }
        eprint!("\r  cold starts: {}/{n}", i + 1);
    }
    eprintln!();
    let mut out = Vec::new();
    for (t, s) in targets.iter().zip(st) {
        let recs = server.records(&t.function, s.since).await?;
        let by_id: HashMap<&str, &Value> = recs
            .iter()
            .filter_map(|r| Some((r["request_id"].as_str()?, r)))
            .collect();
        let mut init = Vec::new();
        let mut all_cold = true;
        for id in &s.ids {
            match by_id.get(id.as_str()) {
                Some(r) => {
                    all_cold &= r["cold"].as_bool() == Some(true);
                    init.push(r["init_ms"].as_f64().unwrap_or(f64::NAN));
                }
                None => bail!("no invocation record for {} request {id}", t.label),
            }
        }
        out.push(ColdResult {
            label: t.label.clone(),
            bare_label: t.bare_label.clone(),
            client: summarize(&s.client),
            init: summarize(&init),
            bare: summarize(&s.bare),
            ready: summarize(&s.ready),
            all_cold,
            samples: s.ids.len(),
        });
        server.delete(&t.function).await?;
    }
    Ok(out)
}

fn bare_sample(t: &Target, s: &mut State, home: &std::path::Path) -> Result<()> {
    let args: Vec<&str> = t.bare_args.iter().map(String::as_str).collect();
    s.bare.push(bare_start_ms(&t.bare_program, &args, home)?);
    let ready: Vec<&str> = t.ready_args.iter().map(String::as_str).collect();
    s.ready.push(bare_ready_ms(&t.bare_program, &ready, home)?);
    Ok(())
}

async fn cold_sample(server: &Server, t: &Target, s: &mut State, i: usize) -> Result<()> {
    let old = server.instance_pids(&t.function).await?;
    if t.fresh_code {
        s.sha = server.upload(bundle(t, Some(i))?).await?;
    }
    let env = HashMap::from([("NIMBUS_BENCH_SAMPLE".to_string(), i.to_string())]);
    server
        .deploy(&t.function, &t.runtime, &t.handler, &s.sha, &env)
        .await?;
    server.wait_no_instances(&t.function, &old).await?;
    // Let the old instance's cleanup (cgroup removal, scratch dir) finish.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut conn = Conn::connect(server.api).await?;
    let path = Server::invoke_path(&t.function);
    let t0 = Instant::now();
    let r = conn
        .send(Method::POST, &path, Bytes::from_static(b"{}"))
        .await?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !r.status.is_success() || r.headers.contains_key("x-amz-function-error") {
        bail!(
            "cold invoke of {} failed ({}): {}",
            t.label,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let id = r
        .headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .context("x-amzn-requestid")?
        .to_string();
    s.client.push(ms);
    s.ids.push(id);
    // The server starts a replacement interpreter spare after a cold start's first
    // request (`nimbus up --spares`); let it finish so it neither competes with the
    // bare sample nor is missing at the next cold sample.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

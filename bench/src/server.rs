//! The `nimbus` server under test: started as a child process on random ports with a
//! throw-away data dir, driven over its control API, stopped (and its data dir
//! removed) when dropped.

use crate::http::{call, Resp};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub api: SocketAddr,
    /// The gateway listener (`--gateway-listen`), where routes are served.
    pub gateway: SocketAddr,
    pub data_dir: PathBuf,
    keep_data: bool,
}

impl Server {
    pub fn start(bin: &Path, keep_data: bool) -> Result<Server> {
        Self::start_with(bin, keep_data, &[])
    }

    /// [`Server::start`] with extra `nimbus up` arguments.
    pub fn start_with(bin: &Path, keep_data: bool, extra: &[&str]) -> Result<Server> {
        let data_dir = std::env::temp_dir().join(format!(
            "nimbus-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        ));
        std::fs::create_dir_all(&data_dir)?;
        let log_path = data_dir.join("server.log");
        let mut log = std::fs::File::create(&log_path)?;
        let stderr = log.try_clone()?;
        let mut child = Command::new(bin)
            .args(["up", "--data-dir"])
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        // Drain stdout for the server's whole life (a full pipe would stall it) and
        // pick the ready line out of it.
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let _ = writeln!(log, "{line}");
                if let Some(rest) = line.split("nimbus ready: api http://").nth(1) {
                    if let Some(t) = tx.take() {
                        let mut words = rest.split_whitespace();
                        let api = words.next().unwrap_or("").to_string();
                        // `... gateway http://ADDR ...`
                        let gw = words
                            .skip_while(|w| *w != "gateway")
                            .nth(1)
                            .and_then(|u| u.strip_prefix("http://"))
                            .unwrap_or("")
                            .to_string();
                        let _ = t.send((api, gw));
                    }
                }
            }
        });
        let mut server = Server {
            child,
            api: "127.0.0.1:1".parse().unwrap(),
            gateway: "127.0.0.1:1".parse().unwrap(),
            data_dir,
            keep_data,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((api, gw)) => {
                server.api = api.parse().context("ready line address")?;
                server.gateway = gw
                    .parse()
                    .with_context(|| format!("gateway address in the ready line: {gw:?}"))?;
            }
            Err(_) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("nimbus did not become ready within 60 s:\n{log}");
            }
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        call(self.api, Method::GET, path, Bytes::new())
            .await?
            .ok()?
            .json()
    }

    pub async fn upload(&self, zip: Vec<u8>) -> Result<String> {
        let r = call(self.api, Method::POST, "/_nimbus/code", zip.into())
            .await?
            .ok()?
            .json()?;
        Ok(r["sha256"]
            .as_str()
            .context("sha256 in upload reply")?
            .to_string())
    }

    /// Create or update a function; returns the deploy reply (`function`, `notice`).
    pub async fn deploy(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        sha: &str,
        env: &HashMap<String, String>,
    ) -> Result<Value> {
        let body = json!({
            "runtime": runtime, "handler": handler, "code_sha256": sha,
            "memory_mb": 128, "timeout_s": 30, "environment": env,
        });
        call(
            self.api,
            Method::PUT,
            &format!("/_nimbus/functions/{name}"),
            serde_json::to_vec(&body)?.into(),
        )
        .await?
        .ok()?
        .json()
    }

    /// Add (or replace) a gateway route: `PUT /_nimbus/routes`.
    pub async fn put_route(
        &self,
        method: &str,
        path: &str,
        function: &str,
        payload_format: &str,
    ) -> Result<Value> {
        let body = json!({
            "method": method, "path": path, "function": function,
            "payload_format": payload_format,
        });
        call(
            self.api,
            Method::PUT,
            "/_nimbus/routes",
            serde_json::to_vec(&body)?.into(),
        )
        .await?
        .ok()?
        .json()
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        call(
            self.api,
            Method::DELETE,
            &format!("/_nimbus/functions/{name}"),
            Bytes::new(),
        )
        .await?
        .ok()?;
        Ok(())
    }

    pub async fn instance_pids(&self, name: &str) -> Result<Vec<u32>> {
        let f = self.get(&format!("/_nimbus/functions/{name}")).await?;
        Ok(f["instances"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["pid"].as_u64())
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Wait until the function has no instances and the given processes are gone.
    pub async fn wait_no_instances(&self, name: &str, pids: &[u32]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live = self.instance_pids(name).await?;
            if live.is_empty() && pids.iter().all(|p| !pid_alive(*p)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("instances of {name} did not stop: {live:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Invocation records of a function, newest first, started at or after `since_ms`.
    pub async fn records(&self, name: &str, since_ms: i64) -> Result<Vec<Value>> {
        let v = self
            .get(&format!(
                "/_nimbus/invocations?function={name}&since={since_ms}&limit=10000000"
            ))
            .await?;
        Ok(v["invocations"].as_array().cloned().unwrap_or_default())
    }

    pub fn invoke_path(name: &str) -> String {
        format!("/2015-03-31/functions/{name}/invocations")
    }

    /// Invoke once on a fresh connection; for control-plane use (priming).
    pub async fn invoke_once(&self, name: &str) -> Result<Resp> {
        let r = call(
            self.api,
            Method::POST,
            &Self::invoke_path(name),
            Bytes::from_static(b"{}"),
        )
        .await?
        .ok()?;
        if r.headers.contains_key("x-amz-function-error") {
            bail!("{name} failed: {}", String::from_utf8_lossy(&r.body));
        }
        Ok(r)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM for a clean stop; instances die with the server (PDEATHSIG) anyway.
        unsafe_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if self.keep_data {
            eprintln!("data dir kept: {}", self.data_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    // No libc dependency: `kill -TERM` does the same.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is as good as gone.
        Ok(s) => s
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

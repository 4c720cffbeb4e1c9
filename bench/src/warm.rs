//! Section 2: warm invokes. Closed-loop load: `c` workers, each with its own
//! keep-alive HTTP/1.1 connection, send Invoke back-to-back for a fixed duration.
//! Client latency percentiles and throughput come from the same run; the function's
//! own time per request is the `duration_ms` of the server's invocation records
//! (what REPORT prints as `Duration`), matched by request id.

use crate::http::Conn;
use crate::machine::{cpu_ms, cpu_ms_sum};
use crate::server::{now_ms, Server};
use crate::stats::{round3, summarize, Summary};
use anyhow::{bail, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct LoadResult {
    pub ok: usize,
    pub errors: usize,
    pub elapsed_s: f64,
    pub latencies: Vec<f64>,
    pub ids: Vec<String>,
}

struct WorkerOut {
    lat: Vec<f64>,
    ids: Vec<String>,
    errors: usize,
    done: Instant,
}

/// Extra request headers, fixed for a whole load run.
pub type Headers = &'static [(&'static str, &'static str)];

async fn worker(
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: Headers,
    until: Until,
) -> Result<WorkerOut> {
    let mut conn = Conn::connect(addr).await?;
    let mut out = WorkerOut {
        lat: Vec::with_capacity(4096),
        ids: Vec::with_capacity(4096),
        errors: 0,
        done: Instant::now(),
    };
    let body = if method == Method::POST {
        Bytes::from_static(b"{}")
    } else {
        Bytes::new()
    };
    let mut n = 0usize;
    loop {
        match until {
            Until::Deadline(d) if Instant::now() >= d => break,
            Until::Count(c) if n >= c => break,
            _ => {}
        }
        n += 1;
        let t0 = Instant::now();
        match conn
            .send_with(method.clone(), &path, headers, body.clone())
            .await
        {
            Ok(r) => {
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                if r.status.is_success() && !r.headers.contains_key("x-amz-function-error") {
                    out.lat.push(ms);
                    if let Some(id) = r.headers.get("x-amzn-requestid") {
                        out.ids.push(id.to_str().unwrap_or_default().to_string());
                    }
                } else {
                    out.errors += 1;
                }
            }
            Err(_) => {
                out.errors += 1;
                conn = Conn::connect(addr).await?;
            }
        }
    }
    out.done = Instant::now();
    Ok(out)
}

#[derive(Clone, Copy)]
pub enum Until {
    Deadline(Instant),
    Count(usize),
}

/// `c` closed-loop workers, each on its own keep-alive connection.
pub async fn load(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: Headers,
    c: usize,
    until: Until,
) -> Result<LoadResult> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..c {
        set.spawn(worker(
            addr,
            method.clone(),
            path.to_string(),
            headers,
            until,
        ));
    }
    let mut res = LoadResult {
        ok: 0,
        errors: 0,
        elapsed_s: 0.0,
        latencies: Vec::new(),
        ids: Vec::new(),
    };
    let mut last = start;
    while let Some(w) = set.join_next().await {
        let w = w??;
        res.errors += w.errors;
        res.latencies.extend(w.lat);
        res.ids.extend(w.ids);
        last = last.max(w.done);
    }
    res.ok = res.latencies.len();
    res.elapsed_s = (last - start).as_secs_f64();
    Ok(res)
}

pub struct WarmResult {
    pub runtime: String,
    pub concurrency: usize,
    pub ok: usize,
    pub errors: usize,
    pub cold_in_run: usize,
    pub throughput: f64,
    pub client: Summary,
    pub handler: Summary,
    pub server_cpu_us_per_req: f64,
    pub instance_cpu_us_per_req: f64,
    pub loadavg: String,
}

impl WarmResult {
    pub fn overhead_p50(&self) -> f64 {
        self.client.p50 - self.handler.p50
    }

    pub fn to_json(&self) -> Value {
        json!({
            "runtime": self.runtime,
            "concurrency": self.concurrency,
            "requests_ok": self.ok,
            "errors": self.errors,
            "cold_starts_in_run": self.cold_in_run,
            "throughput_rps": round3(self.throughput),
            "client_ms": self.client.to_json(),
            "handler_ms": self.handler.to_json(),
            "overhead_p50_ms": round3(self.overhead_p50()),
            "server_cpu_us_per_req": round3(self.server_cpu_us_per_req),
            "instance_cpu_us_per_req": round3(self.instance_cpu_us_per_req),
            "loadavg_after": self.loadavg,
        })
    }
}

/// A peer of the warm invoke: the same client against an endpoint that does no work.
pub struct Floor {
    pub what: String,
    pub concurrency: usize,
    pub ok: usize,
    pub client: Summary,
    pub throughput: f64,
}

impl Floor {
    pub fn to_json(&self) -> Value {
        json!({
            "what": self.what,
            "concurrency": self.concurrency,
            "requests_ok": self.ok,
            "client_ms": self.client.to_json(),
            "throughput_rps": round3(self.throughput),
        })
    }
}

/// One function, every concurrency level: warm up at that level (each worker makes 3
/// calls, so `c` instances exist), then measure for `dur`.
#[allow(clippy::too_many_arguments)]
pub async fn run_function(
    server: &Server,
    server_pid: u32,
    runtime_label: &str,
    function: &str,
    levels: &[usize],
    dur: Duration,
) -> Result<Vec<WarmResult>> {
    let path = Server::invoke_path(function);
    let mut out = Vec::new();
    for &c in levels {
        let w = load(server.api, Method::POST, &path, &[], c, Until::Count(3)).await?;
        if w.errors > 0 {
            bail!(
                "{function}: {} errors while warming up at concurrency {c}",
                w.errors
            );
        }
        let pids = server.instance_pids(function).await?;
        let since = now_ms();
        let (srv0, inst0) = (cpu_ms(server_pid), cpu_ms_sum(&pids));
        let r = load(
            server.api,
            Method::POST,
            &path,
            &[],
            c,
            Until::Deadline(Instant::now() + dur),
        )
        .await?;
        let (srv1, inst1) = (cpu_ms(server_pid), cpu_ms_sum(&pids));
        let ids: HashSet<&str> = r.ids.iter().map(String::as_str).collect();
        let recs = server.records(function, since).await?;
        let mut handler = Vec::with_capacity(r.ok);
        let mut cold = 0;
        for rec in &recs {
            if rec["request_id"]
                .as_str()
                .is_some_and(|id| ids.contains(id))
            {
                handler.push(rec["duration_ms"].as_f64().unwrap_or(f64::NAN));
                cold += usize::from(rec["cold"].as_bool() == Some(true));
            }
        }
        let per_req = |ms: f64| {
            if r.ok > 0 {
                ms * 1000.0 / r.ok as f64
            } else {
                f64::NAN
            }
        };
        eprintln!(
            "  warm {runtime_label} c={c}: {} ok, {} errors, {:.0} req/s",
            r.ok,
            r.errors,
            r.ok as f64 / r.elapsed_s
        );
        out.push(WarmResult {
            runtime: runtime_label.to_string(),
            concurrency: c,
            ok: r.ok,
            errors: r.errors,
            cold_in_run: cold,
            throughput: r.ok as f64 / r.elapsed_s,
            client: summarize(&r.latencies),
            handler: summarize(&handler),
            server_cpu_us_per_req: per_req(srv1 - srv0),
            instance_cpu_us_per_req: per_req(inst1 - inst0),
            loadavg: crate::machine::loadavg(),
        });
    }
    Ok(out)
}

/// A round-trip floor: `method path` on `addr` with the same client, `c` workers.
pub async fn floor(
    what: &str,
    addr: SocketAddr,
    method: Method,
    path: &str,
    c: usize,
    dur: Duration,
) -> Result<Floor> {
    load(addr, method.clone(), path, &[], c, Until::Count(10)).await?;
    let r = load(
        addr,
        method,
        path,
        &[],
        c,
        Until::Deadline(Instant::now() + dur),
    )
    .await?;
    Ok(Floor {
        what: what.to_string(),
        concurrency: c,
        ok: r.ok,
        client: summarize(&r.latencies),
        throughput: r.ok as f64 / r.elapsed_s,
    })
}

//! Section 5: the HTTP gateway's overhead. One no-op `provided` function, reached
//! four ways from the same client (one keep-alive hyper HTTP/1.1 connection per
//! worker and per way):
//!
//! * `Invoke`: `POST /2015-03-31/functions/F/invocations` on the API listener, body `{}`;
//! * a route with payload format 2.0, `POST /bench/v2`, the same body `{}`;
//! * a route with payload format 1.0, `POST /bench/v1`, the same body;
//! * a 2.0 route as a browser calls it, `GET /bench/get` with no body.
//!
//! The function answers `{"statusCode":200,"body":"{}"}` (both payload formats accept
//! it; a bare `null` is a 502 under 1.0). Every way runs the same function, so the
//! same warm instances serve all of them.
//!
//! Latency at concurrency 1 is measured interleaved: each round sends one request per
//! way, the order rotating every round, so drift in the machine's load hits every way
//! alike. `paired Δ` is the median over rounds of (way − Invoke) in the same round.
//! Throughput at 1 / 16 / 64 is closed-loop, in two alternating halves per way
//! (A B C D, then D C B A) for the same reason; the server's CPU per request comes
//! from `/proc` over each way's halves.

use crate::http::Conn;
use crate::machine::cpu_ms;
use crate::server::Server;
use crate::stats::{median, round3, summarize, Summary};
use crate::warm::{load, Until};
use anyhow::{bail, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const FUNCTION: &str = "gw-provided";
pub const RESPONSE: &str = r#"{"statusCode":200,"body":"{}"}"#;

#[derive(Clone)]
pub struct Way {
    pub label: &'static str,
    pub short: &'static str,
    addr: SocketAddr,
    method: Method,
    path: String,
}

pub struct Latency {
    pub label: &'static str,
    pub short: &'static str,
    pub client: Summary,
    /// Median over rounds of (this way − Invoke), same round. 0 for Invoke itself.
    pub paired_delta_p50: f64,
    pub errors: usize,
}

pub struct Throughput {
    pub label: &'static str,
    pub short: &'static str,
    pub concurrency: usize,
    pub ok: usize,
    pub errors: usize,
    pub rps: f64,
    pub client: Summary,
    pub server_cpu_us_per_req: f64,
}

pub struct GatewayResult {
    pub latency: Vec<Latency>,
    pub rounds: usize,
    pub throughput: Vec<Throughput>,
}

impl GatewayResult {
    pub fn invoke(&self) -> &Latency {
        &self.latency[0]
    }

    pub fn tp(&self, short: &str, c: usize) -> Option<&Throughput> {
        self.throughput
            .iter()
            .find(|t| t.short == short && t.concurrency == c)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "function": FUNCTION,
            "function_response": RESPONSE,
            "latency_c1": {
                "rounds": self.rounds,
                "results": self.latency.iter().map(|l| json!({
                    "way": l.label,
                    "client_ms": l.client.to_json(),
                    "minus_invoke_p50_ms": round3(l.client.p50 - self.invoke().client.p50),
                    "over_invoke_p50": round3(l.client.p50 / self.invoke().client.p50),
                    "paired_delta_p50_ms": round3(l.paired_delta_p50),
                    "errors": l.errors,
                })).collect::<Vec<Value>>(),
            },
            "throughput": self.throughput.iter().map(|t| json!({
                "way": t.label,
                "concurrency": t.concurrency,
                "requests_ok": t.ok,
                "errors": t.errors,
                "throughput_rps": round3(t.rps),
                "client_ms": t.client.to_json(),
                "server_cpu_us_per_req": round3(t.server_cpu_us_per_req),
            })).collect::<Vec<Value>>(),
        })
    }
}

/// Deploy the function and its routes; the ways to reach it, Invoke first.
pub async fn setup(server: &Server, bootstrap: &[u8]) -> Result<Vec<Way>> {
    let sha = server
        .upload(crate::functions::zip(&[("bootstrap", bootstrap, 0o755)])?)
        .await?;
    let env = HashMap::from([("NOOP_BOOTSTRAP_RESPONSE".to_string(), RESPONSE.to_string())]);
    server
        .deploy(FUNCTION, "provided.al2023", "bootstrap", &sha, &env)
        .await?;
    server
        .put_route("POST", "/bench/v2", FUNCTION, "2.0")
        .await?;
    server
        .put_route("POST", "/bench/v1", FUNCTION, "1.0")
        .await?;
    server
        .put_route("GET", "/bench/get", FUNCTION, "2.0")
        .await?;
    let way = |label, short, addr, method, path: &str| Way {
        label,
        short,
        addr,
        method,
        path: path.to_string(),
    };
    Ok(vec![
        way(
            "Invoke (POST /2015-03-31/functions/F/invocations, body {})",
            "Invoke",
            server.api,
            Method::POST,
            &Server::invoke_path(FUNCTION),
        ),
        way(
            "route, payload 2.0 (POST /bench/v2, body {})",
            "route 2.0 POST",
            server.gateway,
            Method::POST,
            "/bench/v2",
        ),
        way(
            "route, payload 1.0 (POST /bench/v1, body {})",
            "route 1.0 POST",
            server.gateway,
            Method::POST,
            "/bench/v1",
        ),
        way(
            "route, payload 2.0 (GET /bench/get, no body)",
            "route 2.0 GET",
            server.gateway,
            Method::GET,
            "/bench/get",
        ),
    ])
}

fn body_for(m: &Method) -> Bytes {
    if *m == Method::POST {
        Bytes::from_static(b"{}")
    } else {
        Bytes::new()
    }
}

/// Interleaved latency at concurrency 1 for `dur`.
async fn latency(ways: &[Way], dur: Duration) -> Result<(Vec<Latency>, usize)> {
    let mut conns = Vec::new();
    for w in ways {
        let mut c = Conn::connect(w.addr).await?;
        // Check each way once, loudly: a misrouted request must not become a number.
        let r = c
            .send(w.method.clone(), &w.path, body_for(&w.method))
            .await?;
        if !r.status.is_success() || r.headers.contains_key("x-amz-function-error") {
            bail!(
                "gateway bench: {} answered {}: {}",
                w.label,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        conns.push(c);
    }
    let n = ways.len();
    let mut samples: Vec<Vec<Option<f64>>> = vec![Vec::new(); n];
    let mut errors = vec![0usize; n];
    let until = Instant::now() + dur;
    let mut round = 0usize;
    while Instant::now() < until {
        for k in 0..n {
            let i = (round + k) % n;
            let w = &ways[i];
            let t0 = Instant::now();
            let r = conns[i]
                .send(w.method.clone(), &w.path, body_for(&w.method))
                .await;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(r)
                    if r.status.is_success() && !r.headers.contains_key("x-amz-function-error") =>
                {
                    samples[i].push(Some(ms))
                }
                Ok(_) => {
                    errors[i] += 1;
                    samples[i].push(None);
                }
                Err(_) => {
                    errors[i] += 1;
                    samples[i].push(None);
                    conns[i] = Conn::connect(w.addr).await?;
                }
            }
        }
        round += 1;
    }
    let mut out = Vec::new();
    for (i, w) in ways.iter().enumerate() {
        let xs: Vec<f64> = samples[i].iter().flatten().copied().collect();
        let deltas: Vec<f64> = samples[i]
            .iter()
            .zip(&samples[0])
            .filter_map(|(a, b)| Some((*a)? - (*b)?))
            .collect();
        out.push(Latency {
            label: w.label,
            short: w.short,
            client: summarize(&xs),
            paired_delta_p50: median(&deltas),
            errors: errors[i],
        });
    }
    Ok((out, round))
}

/// The whole section: interleaved latency at c=1, then throughput at each level.
pub async fn run(
    server_pid: u32,
    ways: &[Way],
    levels: &[usize],
    dur: Duration,
) -> Result<GatewayResult> {
    let (lat, rounds) = latency(ways, dur).await?;
    eprintln!(
        "  gateway latency c=1: {rounds} rounds; p50 {}",
        lat.iter()
            .map(|l| format!("{} {:.3} ms", l.short, l.client.p50))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut throughput = Vec::new();
    let half = dur / 2;
    for &c in levels {
        for w in ways {
            let r = load(w.addr, w.method.clone(), &w.path, &[], c, Until::Count(3)).await?;
            if r.errors > 0 {
                bail!("{}: {} errors while warming up at c={c}", w.label, r.errors);
            }
        }
        let n = ways.len();
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); n];
        let (mut ok, mut errs, mut secs, mut cpu) =
            (vec![0; n], vec![0; n], vec![0.0; n], vec![0.0; n]);
        for half_no in 0..2 {
            let order: Vec<usize> = if half_no == 0 {
                (0..n).collect()
            } else {
                (0..n).rev().collect()
            };
            for i in order {
                let w = &ways[i];
                let cpu0 = cpu_ms(server_pid);
                let r = load(
                    w.addr,
                    w.method.clone(),
                    &w.path,
                    &[],
                    c,
                    Until::Deadline(Instant::now() + half),
                )
                .await?;
                cpu[i] += cpu_ms(server_pid) - cpu0;
                ok[i] += r.ok;
                errs[i] += r.errors;
                secs[i] += r.elapsed_s;
                lat[i].extend(r.latencies);
            }
        }
        for (i, w) in ways.iter().enumerate() {
            let t = Throughput {
                label: w.label,
                short: w.short,
                concurrency: c,
                ok: ok[i],
                errors: errs[i],
                rps: ok[i] as f64 / secs[i],
                client: summarize(&lat[i]),
                server_cpu_us_per_req: if ok[i] > 0 {
                    cpu[i] * 1000.0 / ok[i] as f64
                } else {
                    f64::NAN
                },
            };
            eprintln!(
                "  gateway {} c={c}: {} ok, {} errors, {:.0} req/s",
                w.short, t.ok, t.errors, t.rps
            );
            throughput.push(t);
        }
    }
    Ok(GatewayResult {
        latency: lat,
        rounds,
        throughput,
    })
}

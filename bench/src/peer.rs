//! `--peer serverless-offline` (issue 7, first slice): the same serverless.yml app
//! (`bench/peer/serverless-offline/app`: one nodejs20.x no-op behind `httpApi: GET
//! /noop`) deployed unmodified to Nimbus (`nimbus deploy` in the app dir) and to
//! serverless-offline (`sls offline --httpPort P --lambdaPort Q`, serverless@3.40.0 +
//! serverless-offline@13.9.0 installed from the committed package.json/lock into the
//! git-ignored `node_modules`), both driven by the same keep-alive load generator
//! (`warm::load`) with `GET /noop`, alternating A B A B at each concurrency.
//!
//! Measured: warm route latency p50/p90/p99 and req/s at each concurrency, errors,
//! RSS of each platform's process tree at rest (after one request) and after the
//! load, and cold starts (see [`cold`]). Not measured yet: a Python handler, direct
//! (Lambda API) invokes.

use crate::server::Server;
use crate::stats::{ratio, round3, summarize, Summary};
use crate::warm::{load, Until};
use crate::{f, rt};
use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROUTE: &str = "/noop";
const PEER: &str = "serverless-offline";

pub fn peer_dir(repo: &Path) -> PathBuf {
    repo.join("bench/peer/serverless-offline")
}

/// `npm ci` (or `npm install` without a lock) into the ignored node_modules, once.
fn ensure_installed(dir: &Path) -> Result<PathBuf> {
    let sls = dir.join("node_modules/.bin/sls");
    if sls.is_file() {
        return Ok(sls);
    }
    let verb = if dir.join("package-lock.json").is_file() {
        "ci"
    } else {
        "install"
    };
    eprintln!("peer: npm {verb} in {} (first run only)", dir.display());
    let st = Command::new("npm")
        .args([verb, "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .context("cannot run npm (needed once to install the serverless-offline peer)")?;
    anyhow::ensure!(st.success(), "npm {verb} failed in {}", dir.display());
    anyhow::ensure!(sls.is_file(), "{} missing after npm {verb}", sls.display());
    Ok(sls)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The serverless-offline process (its own process group, killed as a group).
struct Offline {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

impl Drop for Offline {
    fn drop(&mut self) {
        let pg = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &pg]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-KILL", "--", &pg]).status();
        let _ = self.child.wait();
    }
}

fn start_offline(sls: &Path, app: &Path, extra: &[&str]) -> Result<Offline> {
    use std::os::unix::process::CommandExt;
    let (hp, lp) = (free_port()?, free_port()?);
    let log = std::env::temp_dir().join(format!("nimbus-bench-sls-{}.log", std::process::id()));
    let out = std::fs::File::create(&log)?;
    let child = Command::new(sls)
        .args(["offline", "--httpPort", &hp.to_string()])
        .args(["--lambdaPort", &lp.to_string()])
        .args(extra)
        .current_dir(app)
        .env("SLS_TELEMETRY_DISABLED", "1")
        .env("SLS_NOTIFICATIONS_MODE", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", sls.display()))?;
    Ok(Offline {
        child,
        http: format!("127.0.0.1:{hp}").parse()?,
        log,
    })
}

/// Poll `GET /noop` until it answers 200 (the first one is also the cold start).
async fn wait_ready(addr: SocketAddr, what: &str, log: &Path) -> Result<f64> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = crate::http::call(addr, Method::GET, ROUTE, Default::default()).await {
            if r.status.is_success() {
                return Ok(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} did not answer GET {ROUTE} within 120 s; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// RSS (MiB) of `pid` and all its descendants, from /proc.
fn tree_rss_mib(pid: u32) -> f64 {
    let mut parent = std::collections::HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(rest) = s.rsplit_once(')').map(|x| x.1) {
                    if let Some(pp) = rest.split_whitespace().nth(1) {
                        parent.insert(p, pp.parse::<u32>().unwrap_or(0));
                    }
                }
            }
        }
    }
    let in_tree = |mut p: u32| {
        for _ in 0..64 {
            if p == pid {
                return true;
            }
            match parent.get(&p) {
                Some(&pp) if pp != 0 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let mut kb = 0.0;
    for &p in parent.keys() {
        if in_tree(p) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status")) {
                if let Some(v) = s
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    kb += v;
                }
            }
        }
    }
    kb / 1024.0
}

fn nimbus_deploy(bin: &Path, server: &Server, app: &Path) -> Result<()> {
    let st = Command::new(bin)
        .arg("deploy")
        .args(["--endpoint", &format!("http://{}", server.api)])
        .current_dir(app)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "nimbus deploy failed in {}", app.display());
    Ok(())
}

/// Cold starts, the first request after the idle instance is gone: both systems
/// restarted with a 1 s idle limit (`nimbus up --keep-alive 1s`, `sls offline
/// --terminateIdleLambdaTime 1`), then `samples` rounds of: wait `IDLE_WAIT`, one
/// `GET` to each (order alternating). A sample counts only when the handler's body
/// says `{"cold":true}` (a new instance); the others are reported as `not_cold`.
const IDLE_WAIT: Duration = Duration::from_millis(2600);

struct Cold {
    ms: [Vec<f64>; 2],
    not_cold: [usize; 2],
    errors: [usize; 2],
}

async fn cold(bin: &Path, sls: &Path, app: &Path, samples: usize, keep: bool) -> Result<Cold> {
    let server = Server::start_with(bin, keep, &["--keep-alive", "1s"])?;
    nimbus_deploy(bin, &server, app)?;
    let off = start_offline(sls, app, &["--terminateIdleLambdaTime", "1"])?;
    wait_ready(
        server.gateway,
        "nimbus",
        &server.data_dir.join("server.log"),
    )
    .await?;
    wait_ready(off.http, PEER, &off.log).await?;
    let addrs = [server.gateway, off.http];
    let mut res = Cold {
        ms: [Vec::new(), Vec::new()],
        not_cold: [0; 2],
        errors: [0; 2],
    };
    for s in 0..samples {
        tokio::time::sleep(IDLE_WAIT).await;
        for k in 0..2 {
            let i = (s + k) % 2;
            let t0 = Instant::now();
            let r = crate::http::call(addrs[i], Method::GET, ROUTE, Default::default()).await;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(r) if r.status.is_success() => {
                    if r.body.as_ref() == br#"{"cold":true}"# {
                        res.ms[i].push(ms);
                    } else {
                        res.not_cold[i] += 1;
                    }
                }
                _ => res.errors[i] += 1,
            }
        }
    }
    eprintln!(
        "peer cold: nimbus {} cold ({} not cold) · {PEER} {} cold ({} not cold)",
        res.ms[0].len(),
        res.not_cold[0],
        res.ms[1].len(),
        res.not_cold[1]
    );
    Ok(res)
}

struct Level {
    c: usize,
    ok: [usize; 2],
    errors: [usize; 2],
    rps: [f64; 2],
    lat: [Summary; 2],
}

pub struct PeerRun {
    pub md: String,
    pub json: Value,
}

pub async fn run(
    bin: &Path,
    repo: &Path,
    levels: &[usize],
    dur: Duration,
    samples: usize,
    keep_data: bool,
) -> Result<PeerRun> {
    let dir = peer_dir(repo);
    let app = dir.join("app");
    let sls = ensure_installed(&dir)?;
    // `nimbus deploy` runs in the app dir: a relative --nimbus path must not move.
    let bin = &std::fs::canonicalize(bin)?;

    // A: Nimbus, `nimbus deploy` in the app dir.
    let server = Server::start(bin, keep_data)?;
    nimbus_deploy(bin, &server, &app)?;
    let nimbus_first_ms = wait_ready(
        server.gateway,
        "nimbus",
        &server.data_dir.join("server.log"),
    )
    .await?;

    // B: serverless-offline on the same app.
    let t0 = Instant::now();
    let off = start_offline(&sls, &app, &[])?;
    let peer_first_ms = wait_ready(off.http, PEER, &off.log).await?;
    let offline_start_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "peer: nimbus gateway {} (first GET {nimbus_first_ms:.0} ms after deploy) · {PEER} {} (ready + first GET {offline_start_s:.1} s)",
        server.gateway, off.http
    );
    let addrs = [server.gateway, off.http];
    let pids = [server.pid(), off.child.id()];
    let rss_rest = [tree_rss_mib(pids[0]), tree_rss_mib(pids[1])];

    let mut out = Vec::new();
    let half = dur / 2;
    for &c in levels {
        for a in addrs {
            let r = load(a, Method::GET, ROUTE, &[], c, Until::Count(3)).await?;
            if r.errors > 0 {
                bail!("{a}: {} errors while warming up at c={c}", r.errors);
            }
        }
        let mut lat: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let (mut ok, mut errors, mut secs) = ([0; 2], [0; 2], [0.0; 2]);
        // A B A B.
        for _ in 0..2 {
            for i in 0..2 {
                let r = load(
                    addrs[i],
                    Method::GET,
                    ROUTE,
                    &[],
                    c,
                    Until::Deadline(Instant::now() + half),
                )
                .await?;
                ok[i] += r.ok;
                errors[i] += r.errors;
                secs[i] += r.elapsed_s;
                lat[i].extend(r.latencies);
            }
        }
        let l = Level {
            c,
            ok,
            errors,
            rps: [ok[0] as f64 / secs[0], ok[1] as f64 / secs[1]],
            lat: [summarize(&lat[0]), summarize(&lat[1])],
        };
        eprintln!(
            "peer c={c}: nimbus {:.0} req/s p50 {:.3} ms ({} err) · {PEER} {:.0} req/s p50 {:.3} ms ({} err)",
            l.rps[0], l.lat[0].p50, l.errors[0], l.rps[1], l.lat[1].p50, l.errors[1]
        );
        out.push(l);
    }
    let rss_load = [tree_rss_mib(pids[0]), tree_rss_mib(pids[1])];

    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## vs {PEER}: `GET {ROUTE}` (nodejs20.x no-op, same serverless.yml)\n"
    );
    let _ = writeln!(
        md,
        "| row | Nimbus | {PEER} | Nimbus/peer |\n|---|---:|---:|---:|"
    );
    fn row(md: &mut String, name: &str, a: f64, b: f64) {
        let _ = writeln!(md, "| {name} | {} | {} | {} |", f(a), f(b), rt(ratio(a, b)));
    }
    for l in &out {
        let c = l.c;
        row(&mut md, &format!("c={c} req/s"), l.rps[0], l.rps[1]);
        row(
            &mut md,
            &format!("c={c} p50 ms"),
            l.lat[0].p50,
            l.lat[1].p50,
        );
        row(
            &mut md,
            &format!("c={c} p90 ms"),
            l.lat[0].p90,
            l.lat[1].p90,
        );
        row(
            &mut md,
            &format!("c={c} p99 ms"),
            l.lat[0].p99,
            l.lat[1].p99,
        );
        let _ = writeln!(
            md,
            "| c={} errors / ok | {} / {} | {} / {} | |",
            l.c, l.errors[0], l.ok[0], l.errors[1], l.ok[1]
        );
    }
    let rest = "RSS at rest, MiB (process tree)";
    row(&mut md, rest, rss_rest[0], rss_rest[1]);
    let after = "RSS after load, MiB (process tree)";
    row(&mut md, after, rss_load[0], rss_load[1]);
    let _ = writeln!(
        md,
        "\nNimbus/peer: below 1× is better for ms and MiB, above 1× for req/s. Each level: \
         A B A B, two segments of {:.2} s per system, one keep-alive connection per worker.",
        half.as_secs_f64()
    );

    let json = json!({
        "peer": PEER,
        "app": app.display().to_string(),
        "route": format!("GET {ROUTE}"),
        "nimbus_first_request_after_deploy_ms": round3(nimbus_first_ms),
        "peer_start_to_first_response_s": round3(offline_start_s),
        "peer_first_request_poll_ms": round3(peer_first_ms),
        "rss_mib": {
            "at_rest": {"nimbus": round3(rss_rest[0]), "peer": round3(rss_rest[1])},
            "after_load": {"nimbus": round3(rss_load[0]), "peer": round3(rss_load[1])},
        },
        "levels": out.iter().map(|l| json!({
            "concurrency": l.c,
            "nimbus": {"ok": l.ok[0], "errors": l.errors[0], "rps": round3(l.rps[0]), "client_ms": l.lat[0].to_json()},
            "peer": {"ok": l.ok[1], "errors": l.errors[1], "rps": round3(l.rps[1]), "client_ms": l.lat[1].to_json()},
            "ratio_nimbus_over_peer": {
                "rps": round3(ratio(l.rps[0], l.rps[1])),
                "p50": round3(ratio(l.lat[0].p50, l.lat[1].p50)),
                "p90": round3(ratio(l.lat[0].p90, l.lat[1].p90)),
                "p99": round3(ratio(l.lat[0].p99, l.lat[1].p99)),
            },
        })).collect::<Vec<Value>>(),
    });
    drop(off);
    drop(server);

    let cold = cold(bin, &sls, &app, samples, keep_data).await?;
    let cs = [summarize(&cold.ms[0]), summarize(&cold.ms[1])];
    let _ = writeln!(
        md,
        "\n| cold start (first GET after the idle instance is gone) | Nimbus | {PEER} | Nimbus/peer |\n|---|---:|---:|---:|"
    );
    row(&mut md, "cold p50 ms", cs[0].p50, cs[1].p50);
    row(&mut md, "cold p99 ms", cs[0].p99, cs[1].p99);
    let _ = writeln!(
        md,
        "| cold samples / not cold / errors | {} / {} / {} | {} / {} / {} | |",
        cs[0].n, cold.not_cold[0], cold.errors[0], cs[1].n, cold.not_cold[1], cold.errors[1]
    );
    let _ = writeln!(
        md,
        "\nCold: both restarted with a 1 s idle limit (`--keep-alive 1s`, \
         `--terminateIdleLambdaTime 1`), {} s idle before each sample, order alternating; \
         a sample counts only if the handler's body says it was its first request.",
        IDLE_WAIT.as_secs_f64()
    );
    let mut json = json;
    json["cold"] = json!({
        "idle_wait_s": IDLE_WAIT.as_secs_f64(),
        "nimbus": {"client_ms": cs[0].to_json(), "not_cold": cold.not_cold[0], "errors": cold.errors[0]},
        "peer": {"client_ms": cs[1].to_json(), "not_cold": cold.not_cold[1], "errors": cold.errors[1]},
        "ratio_nimbus_over_peer": {"p50": round3(ratio(cs[0].p50, cs[1].p50)), "p99": round3(ratio(cs[0].p99, cs[1].p99))},
    });
    let errs: usize = out.iter().map(|l| l.errors[0] + l.errors[1]).sum::<usize>()
        + cold.errors[0]
        + cold.errors[1];
    if errs > 0 {
        eprintln!("peer: {errs} errors in total (must be 0)");
    }
    Ok(PeerRun { md, json })
}

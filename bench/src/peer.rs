//! `--peer serverless-offline` (issue 7): the same serverless.yml app
//! (`bench/peer/serverless-offline/app`: a nodejs20.x and a python3.11 no-op, each
//! behind an `httpApi` GET route) deployed unmodified to Nimbus (`nimbus deploy` in the
//! app dir) and to serverless-offline (`sls offline --httpPort P --lambdaPort Q`,
//! serverless@3.40.0 + serverless-offline@13.9.0 installed from the committed
//! package.json/lock into the git-ignored `node_modules`), both driven by the same
//! keep-alive load generator (`warm::load`), alternating A B A B at each concurrency.
//!
//! Four ways per system: node and python, each through its HTTP route (`GET /noop`,
//! `GET /noop-py`) and as a direct Lambda `Invoke` (`POST
//! /2015-03-31/functions/nimbus-bench-peer-dev-{fn}/invocations`: Nimbus on its API
//! listener, serverless-offline on `--lambdaPort`). Measured: latency p50/p90/p99 and
//! req/s at each concurrency, the best req/s, errors, RSS of each platform's process
//! tree at rest (no instance) and after the load, RSS per warm instance, and cold
//! starts of both runtimes (see [`cold`]). Every number is a [`Cell`], so `--repeat N`
//! can print the median of each across runs ([`median_cells`]).

use crate::server::Server;
use crate::stats::{median, ratio, round3, summarize, Summary};
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

pub const PEER: &str = "serverless-offline";
/// `<service>-<stage>-`: the deployed function names on both systems.
const FN_PREFIX: &str = "nimbus-bench-peer-dev-";
/// Both platforms' idle limit in the warm phase: Nimbus's default (`--keep-alive
/// 10m`); serverless-offline's default is 60 s, long enough that instances would be
/// reaped between the node and the python phase and blur the per-instance RSS.
const WARM_IDLE_S: &str = "600";

/// One function of the app.
struct Fun {
    /// Section label prefix.
    label: &'static str,
    /// serverless.yml function key.
    key: &'static str,
    route: &'static str,
}

const FUNS: [Fun; 2] = [
    Fun {
        label: "node",
        key: "noop",
        route: "/noop",
    },
    Fun {
        label: "python",
        key: "noop-py",
        route: "/noop-py",
    },
];

impl Fun {
    fn name(&self) -> String {
        format!("{FN_PREFIX}{}", self.key)
    }
    fn invoke_path(&self) -> String {
        Server::invoke_path(&self.name())
    }
}

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
    lambda: SocketAddr,
    log: PathBuf,
}

impl Drop for Offline {
    fn drop(&mut self) {
        let pg = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &pg]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &pg])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// `sls offline` in the app dir. `python_dir` goes first on its PATH: serverless-offline
/// spawns `python3` by name (through `sh -c`), and on a pyenv host the first `python3` is
/// a shell shim that would add its own start-up to every python cold start; this way it
/// runs the same interpreter as Nimbus's python3.11 instances.
fn start_offline(
    sls: &Path,
    app: &Path,
    python_dir: Option<&Path>,
    extra: &[&str],
) -> Result<Offline> {
    use std::os::unix::process::CommandExt;
    let (hp, lp) = (free_port()?, free_port()?);
    let log = std::env::temp_dir().join(format!("nimbus-bench-sls-{}.log", std::process::id()));
    let out = std::fs::File::create(&log)?;
    let mut cmd = Command::new(sls);
    cmd.args(["offline", "--httpPort", &hp.to_string()])
        .args(["--lambdaPort", &lp.to_string()])
        .args(extra)
        .current_dir(app)
        .env("SLS_TELEMETRY_DISABLED", "1")
        .env("SLS_NOTIFICATIONS_MODE", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .process_group(0);
    if let Some(d) = python_dir {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![d.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs)?);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", sls.display()))?;
    Ok(Offline {
        child,
        http: format!("127.0.0.1:{hp}").parse()?,
        lambda: format!("127.0.0.1:{lp}").parse()?,
        log,
    })
}

/// Poll `addr` until it answers any HTTP status (listening, no function run).
async fn wait_listening(addr: SocketAddr, what: &str, log: &Path) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if crate::http::call(
            addr,
            Method::GET,
            "/nimbus-bench-not-a-route",
            Default::default(),
        )
        .await
        .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} did not listen on {addr} within 120 s; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// Poll `GET route` until it answers 2xx; returns ms until then.
async fn wait_ready(addr: SocketAddr, route: &str, what: &str, log: &Path) -> Result<f64> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = crate::http::call(addr, Method::GET, route, Default::default()).await {
            if r.status.is_success() {
                return Ok(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} did not answer GET {route} within 120 s; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// pid → parent pid of every process, from /proc.
fn parents() -> std::collections::HashMap<u32, u32> {
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
    parent
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let parent = parents();
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
    parent.keys().copied().filter(|&p| in_tree(p)).collect()
}

/// RSS (MiB) of `pid` and all its descendants.
fn tree_rss_mib(pid: u32) -> f64 {
    let mut kb = 0.0;
    for p in tree(pid) {
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
    kb / 1024.0
}

/// Threads of one process.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Python processes in the tree of `pid` (serverless-offline's python instances: one
/// `python3 invoke.py` each, under an `sh -c`).
fn python_procs(pid: u32) -> Vec<u32> {
    tree(pid)
        .into_iter()
        .filter(|p| comm(*p).starts_with("python"))
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

fn parent_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Mean RSS (MiB) of process-based instances, each with its descendants; for a
/// python instance of the peer also its `sh -c` parent.
fn mean_instance_rss(pids: &[u32], with_sh_parent: bool) -> f64 {
    let per: Vec<f64> = pids
        .iter()
        .map(|&p| {
            let sh = parent_of(p).filter(|&pp| with_sh_parent && comm(pp) == "sh");
            tree_rss_mib(sh.unwrap_or(p))
        })
        .collect();
    if per.is_empty() {
        f64::NAN
    } else {
        per.iter().sum::<f64>() / per.len() as f64
    }
}

fn nimbus_deploy(bin: &Path, server: &Server, app: &Path) -> Result<()> {
    let out = Command::new(bin)
        .arg("deploy")
        .args(["--endpoint", &format!("http://{}", server.api)])
        .current_dir(app)
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "nimbus deploy failed in {}:\n{}{}",
        app.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ------------------------------------------------------------------- table cells

/// How a row compares.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    /// ms, MiB: below 1× is better for Nimbus.
    Lower,
    /// req/s: above 1× is better.
    Higher,
    /// A count shown for context (instances, samples); median across runs.
    Info,
    /// Errors: summed across runs, no ratio.
    Errors,
}

/// One row of the table: a number for each system.
#[derive(Clone, Debug)]
pub struct Cell {
    pub section: String,
    pub row: String,
    /// [Nimbus, peer].
    pub v: [f64; 2],
    pub kind: Kind,
    /// Nimbus/peer; for a median across runs, the median of the per-run ratios.
    pub ratio: f64,
}

impl Cell {
    fn new(section: &str, row: &str, a: f64, b: f64, kind: Kind) -> Cell {
        Cell {
            section: section.into(),
            row: row.into(),
            v: [a, b],
            kind,
            ratio: match kind {
                Kind::Lower | Kind::Higher => ratio(a, b),
                _ => f64::NAN,
            },
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "section": self.section, "row": self.row, "kind": format!("{:?}", self.kind).to_lowercase(),
            "nimbus": round3(self.v[0]), "peer": round3(self.v[1]), "ratio_nimbus_over_peer": round3(self.ratio),
        })
    }
}

/// The markdown table of `cells`.
pub fn table(cells: &[Cell]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| section | row | Nimbus | {PEER} | Nimbus/peer |\n|---|---|---:|---:|---:|"
    );
    let mut last = "";
    for c in cells {
        let sec = if c.section == last { "" } else { &c.section };
        last = &c.section;
        let show = |x: f64| match c.kind {
            Kind::Info | Kind::Errors if x.is_finite() => format!("{x:.0}"),
            _ => f(x),
        };
        let r = match c.kind {
            Kind::Lower | Kind::Higher => rt(c.ratio),
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "| {sec} | {} | {} | {} | {r} |",
            c.row,
            show(c.v[0]),
            show(c.v[1])
        );
    }
    md
}

/// Per cell (matched by section and row, in the first run's order): the median of
/// each system's number and of the per-run ratios; errors are summed.
pub fn median_cells(runs: &[Vec<Cell>]) -> Vec<Cell> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|c0| {
            let same: Vec<&Cell> = runs
                .iter()
                .filter_map(|r| {
                    r.iter()
                        .find(|c| c.section == c0.section && c.row == c0.row)
                })
                .collect();
            let agg = |xs: Vec<f64>| {
                if c0.kind == Kind::Errors {
                    xs.iter().sum()
                } else {
                    median(&xs)
                }
            };
            Cell {
                section: c0.section.clone(),
                row: c0.row.clone(),
                v: [
                    agg(same.iter().map(|c| c.v[0]).collect()),
                    agg(same.iter().map(|c| c.v[1]).collect()),
                ],
                kind: c0.kind,
                ratio: median(&same.iter().map(|c| c.ratio).collect::<Vec<f64>>()),
            }
        })
        .collect()
}

/// What the table's rows mean (printed under it).
pub fn note(levels: &[usize], dur: Duration, samples: usize, runs: usize) -> String {
    let lv: Vec<String> = levels.iter().map(|c| c.to_string()).collect();
    let mut s = format!(
        "Nimbus/peer: below 1× is better for ms and MiB, above 1× for req/s. \
         `route` = `GET /noop` (node) or `GET /noop-py` (python) through each system's HTTP \
         listener (Nimbus `--gateway-listen`, {PEER} `--httpPort`); `invoke` = the Lambda \
         Invoke API, `POST /2015-03-31/functions/{FN_PREFIX}<fn>/invocations` with body `{{}}` \
         (Nimbus's API listener, {PEER} `--lambdaPort`). Each concurrency c = {}: c closed-loop \
         workers on their own keep-alive HTTP/1.1 connections, 3 warm-up requests per worker, \
         then A B A B, two segments of {} s per system; `max req/s` is the best level. \
         An error is a non-2xx answer, an `X-Amz-Function-Error` or a transport error. \
         Both platforms keep idle instances {WARM_IDLE_S} s in this phase (Nimbus's default; \
         `--terminateIdleLambdaTime {WARM_IDLE_S}` for {PEER}, whose default is 60 s). \
         Memory: RSS summed over each platform's process tree (Nimbus: the server and its \
         instance processes; {PEER}: its node process, with node handlers in worker threads, \
         and one `sh` + `python3` process pair per python instance). `at rest` is before any \
         request (no instance). Per warm instance = (tree RSS after that runtime's load − \
         tree RSS before it) / that runtime's warm instances alive at that moment (which \
         can be fewer than c); node runs first, and for python the change in the number of \
         node instances since then, times node's MiB per instance, is taken out. \
         Warm instances counted: Nimbus, the function's instances in its control API \
         (`GET /_nimbus/functions/<name>`); {PEER}, node = threads of its process minus those \
         at rest (one worker thread per node instance), python = `python3` processes in its \
         tree. `RSS of one instance process` = the mean RSS of an instance's own process \
         (Nimbus: each instance pid and its children; {PEER} python: `sh` + `python3`; \
         its node instances are threads, so –): unlike Δ tree it leaves out what the \
         platform itself grows by, and it counts shared library pages in every process. \
         Nimbus keeps pre-started interpreters (`nimbus up --spares`, default 1) outside \
         these counts (in the tree RSS), and a cold start loads the handler into one. \
         Cold: both restarted with a 1 s idle limit (`nimbus up --keep-alive 1s`, \
         `--terminateIdleLambdaTime 1`); {samples} rounds of {:.1} s idle, then one route \
         request per system and runtime (order rotating); a sample counts only if the \
         handler says it was its instance's first request (`{{\"cold\":true}}`).",
        lv.join(" / "),
        f(dur.as_secs_f64() / 2.0),
        IDLE_WAIT.as_secs_f64()
    );
    if runs > 1 {
        let _ = write!(
            s,
            " Median of {runs} runs per cell (each run on fresh processes); Nimbus/peer is the \
             median of the per-run ratios; errors are summed over the runs."
        );
    }
    s
}

// ------------------------------------------------------------------- cold starts

/// Cold starts, the first request after the idle instance is gone: both systems
/// restarted with a 1 s idle limit (`nimbus up --keep-alive 1s`, `sls offline
/// --terminateIdleLambdaTime 1`), then `samples` rounds of: wait `IDLE_WAIT`, one
/// `GET` per system and runtime (order rotating). A sample counts only when the
/// handler's body says `{"cold":true}` (a new instance); the others are `not_cold`.
const IDLE_WAIT: Duration = Duration::from_millis(2600);

#[derive(Default)]
struct Cold {
    /// [function][system]
    ms: [[Vec<f64>; 2]; 2],
    not_cold: [[usize; 2]; 2],
    errors: [[usize; 2]; 2],
}

async fn cold(
    bin: &Path,
    sls: &Path,
    app: &Path,
    python_dir: Option<&Path>,
    samples: usize,
    keep: bool,
) -> Result<Cold> {
    let server = Server::start_with(bin, keep, &["--keep-alive", "1s"])?;
    nimbus_deploy(bin, &server, app)?;
    let off = start_offline(sls, app, python_dir, &["--terminateIdleLambdaTime", "1"])?;
    let nlog = server.data_dir.join("server.log");
    for fun in &FUNS {
        wait_ready(server.gateway, fun.route, "nimbus", &nlog).await?;
        wait_ready(off.http, fun.route, PEER, &off.log).await?;
    }
    let addrs = [server.gateway, off.http];
    let mut res = Cold::default();
    // (function, system) in a rotating order.
    let order = [(0, 0), (0, 1), (1, 0), (1, 1)];
    for s in 0..samples {
        tokio::time::sleep(IDLE_WAIT).await;
        for k in 0..order.len() {
            let (fi, i) = order[(s + k) % order.len()];
            let t0 = Instant::now();
            let r =
                crate::http::call(addrs[i], Method::GET, FUNS[fi].route, Default::default()).await;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(r) if r.status.is_success() => {
                    if r.body.as_ref() == br#"{"cold":true}"# {
                        res.ms[fi][i].push(ms);
                    } else {
                        res.not_cold[fi][i] += 1;
                    }
                }
                _ => res.errors[fi][i] += 1,
            }
        }
    }
    for (fi, fun) in FUNS.iter().enumerate() {
        eprintln!(
            "peer cold {}: nimbus {} cold ({} not cold, {} err) · {PEER} {} cold ({} not cold, {} err)",
            fun.label,
            res.ms[fi][0].len(),
            res.not_cold[fi][0],
            res.errors[fi][0],
            res.ms[fi][1].len(),
            res.not_cold[fi][1],
            res.errors[fi][1]
        );
    }
    Ok(res)
}

// ------------------------------------------------------------------- one run

struct Level {
    c: usize,
    ok: [usize; 2],
    errors: [usize; 2],
    rps: [f64; 2],
    lat: [Summary; 2],
}

/// Both systems' instances of `fun`: [Nimbus from its API, peer from /proc].
async fn instances(
    server: &Server,
    off: &Offline,
    fi: usize,
    threads0: usize,
) -> Result<[usize; 2]> {
    let n = server.instance_pids(&FUNS[fi].name()).await?.len();
    let pid = off.child.id();
    let p = if fi == 0 {
        threads(pid).saturating_sub(threads0)
    } else {
        python_procs(pid).len()
    };
    Ok([n, p])
}

/// Mean RSS of one instance process (with its children): [Nimbus, peer]; the peer's
/// node instances are threads of its one process, so NaN there.
async fn instance_process_rss(server: &Server, off: &Offline, fi: usize) -> Result<[f64; 2]> {
    let n = mean_instance_rss(&server.instance_pids(&FUNS[fi].name()).await?, false);
    let p = if fi == 0 {
        f64::NAN
    } else {
        mean_instance_rss(&python_procs(off.child.id()), true)
    };
    Ok([n, p])
}

pub struct PeerRun {
    pub cells: Vec<Cell>,
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
    let python = crate::functions::python_for(11);
    let python_dir = python
        .as_ref()
        .and_then(|h| h.path.parent().map(Path::to_path_buf));

    // A: Nimbus, `nimbus deploy` in the app dir.
    let server = Server::start(bin, keep_data)?;
    nimbus_deploy(bin, &server, &app)?;
    // B: serverless-offline on the same app.
    let t0 = Instant::now();
    let off = start_offline(
        &sls,
        &app,
        python_dir.as_deref(),
        &["--terminateIdleLambdaTime", WARM_IDLE_S],
    )?;
    wait_listening(off.http, PEER, &off.log).await?;
    wait_listening(off.lambda, PEER, &off.log).await?;
    let offline_start_s = t0.elapsed().as_secs_f64();
    let nlog = server.data_dir.join("server.log");
    // At rest: nothing has run yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids = [server.pid(), off.child.id()];
    let rss_rest = [tree_rss_mib(pids[0]), tree_rss_mib(pids[1])];
    let threads0 = threads(pids[1]);
    eprintln!(
        "peer: nimbus api {} gateway {} · {PEER} http {} lambda {} (listening after {offline_start_s:.1} s, {threads0} threads) · RSS at rest {:.0} / {:.0} MiB",
        server.api, server.gateway, off.http, off.lambda, rss_rest[0], rss_rest[1]
    );

    let mut cells = Vec::new();
    // The memory rows, after all the warm ones.
    let mut mem = vec![Cell::new(
        "memory",
        "RSS at rest, MiB (process tree, no instance)",
        rss_rest[0],
        rss_rest[1],
        Kind::Lower,
    )];
    let mut jlevels = Vec::new();
    let mut jmem = Vec::new();
    let mut first_ms = Vec::new();
    let mut rss_before = rss_rest;
    // The runtimes measured so far: (function, warm instances then, MiB per instance).
    let mut measured: Vec<(usize, [usize; 2], [f64; 2])> = Vec::new();
    let half = dur / 2;
    for (fi, fun) in FUNS.iter().enumerate() {
        // The first request of each (also a cold start, after deploy).
        let a = wait_ready(server.gateway, fun.route, "nimbus", &nlog).await?;
        let b = wait_ready(off.http, fun.route, PEER, &off.log).await?;
        first_ms
            .push(json!({"function": fun.name(), "nimbus_ms": round3(a), "peer_ms": round3(b)}));
        let inv = fun.invoke_path();
        let ways: [(&str, [SocketAddr; 2], Method, &str); 2] = [
            ("route", [server.gateway, off.http], Method::GET, fun.route),
            ("invoke", [server.api, off.lambda], Method::POST, &inv),
        ];
        for (way, addrs, method, path) in ways {
            let section = format!("{} {way}", fun.label);
            let mut out = Vec::new();
            for &c in levels {
                for a in addrs {
                    let r = load(a, method.clone(), path, &[], c, Until::Count(3)).await?;
                    if r.errors > 0 {
                        bail!(
                            "{a} {method} {path}: {} errors while warming up at c={c}",
                            r.errors
                        );
                    }
                }
                let mut lat: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
                let (mut ok, mut errors, mut secs) = ([0; 2], [0; 2], [0.0; 2]);
                // A B A B.
                for _ in 0..2 {
                    for i in 0..2 {
                        let r = load(
                            addrs[i],
                            method.clone(),
                            path,
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
                    "peer {section} c={c}: nimbus {:.0} req/s p50 {:.3} ms ({} err) · {PEER} {:.0} req/s p50 {:.3} ms ({} err) · load {}",
                    l.rps[0], l.lat[0].p50, l.errors[0], l.rps[1], l.lat[1].p50, l.errors[1],
                    crate::machine::loadavg()
                );
                out.push(l);
            }
            for l in &out {
                let c = l.c;
                let s = &section;
                cells.push(Cell::new(
                    s,
                    &format!("c={c} p50 ms"),
                    l.lat[0].p50,
                    l.lat[1].p50,
                    Kind::Lower,
                ));
                cells.push(Cell::new(
                    s,
                    &format!("c={c} p90 ms"),
                    l.lat[0].p90,
                    l.lat[1].p90,
                    Kind::Lower,
                ));
                cells.push(Cell::new(
                    s,
                    &format!("c={c} p99 ms"),
                    l.lat[0].p99,
                    l.lat[1].p99,
                    Kind::Lower,
                ));
                cells.push(Cell::new(
                    s,
                    &format!("c={c} req/s"),
                    l.rps[0],
                    l.rps[1],
                    Kind::Higher,
                ));
                jlevels.push(json!({
                    "section": section, "concurrency": c, "method": method.as_str(), "path": path,
                    "nimbus": {"ok": l.ok[0], "errors": l.errors[0], "rps": round3(l.rps[0]), "client_ms": l.lat[0].to_json()},
                    "peer": {"ok": l.ok[1], "errors": l.errors[1], "rps": round3(l.rps[1]), "client_ms": l.lat[1].to_json()},
                }));
            }
            let best = |i: usize| out.iter().map(|l| l.rps[i]).fold(f64::NAN, f64::max);
            cells.push(Cell::new(
                &section,
                "max req/s (best level)",
                best(0),
                best(1),
                Kind::Higher,
            ));
            let errs = |i: usize| out.iter().map(|l| l.errors[i]).sum::<usize>() as f64;
            let oks = |i: usize| out.iter().map(|l| l.ok[i]).sum::<usize>() as f64;
            cells.push(Cell::new(
                &section,
                "requests ok",
                oks(0),
                oks(1),
                Kind::Info,
            ));
            cells.push(Cell::new(
                &section,
                "errors",
                errs(0),
                errs(1),
                Kind::Errors,
            ));
        }
        // Memory of this runtime's warm instances.
        let rss_after = [tree_rss_mib(pids[0]), tree_rss_mib(pids[1])];
        let n = instances(&server, &off, fi, threads0).await?;
        let proc_rss = instance_process_rss(&server, &off, fi).await?;
        // The earlier runtimes' instances may have changed meanwhile (Nimbus retires
        // surplus ones): take their change out, at their own MiB per instance.
        let mut other = [0.0; 2];
        for (fj, then, per_j) in measured.iter_mut() {
            let now = instances(&server, &off, *fj, threads0).await?;
            for i in 0..2 {
                if per_j[i].is_finite() {
                    other[i] += (now[i] as f64 - then[i] as f64) * per_j[i];
                }
            }
            *then = now;
        }
        let per_inst: [f64; 2] = std::array::from_fn(|i| {
            if n[i] > 0 {
                (rss_after[i] - rss_before[i] - other[i]) / n[i] as f64
            } else {
                f64::NAN
            }
        });
        let per = |i: usize| per_inst[i];
        measured.push((fi, n, per_inst));
        eprintln!(
            "peer {}: RSS {:.0} → {:.0} MiB / {:.0} → {:.0} MiB, warm instances {} / {}",
            fun.label, rss_before[0], rss_after[0], rss_before[1], rss_after[1], n[0], n[1]
        );
        jmem.push(json!({
            "function": fun.name(),
            "rss_before_mib": {"nimbus": round3(rss_before[0]), "peer": round3(rss_before[1])},
            "rss_after_mib": {"nimbus": round3(rss_after[0]), "peer": round3(rss_after[1])},
            "warm_instances": {"nimbus": n[0], "peer": n[1]},
            "instance_process_rss_mean_mib": {"nimbus": round3(proc_rss[0]), "peer": round3(proc_rss[1])},
            "earlier_runtimes_rss_change_mib": {"nimbus": round3(other[0]), "peer": round3(other[1])},
            "rss_per_warm_instance_mib": {"nimbus": round3(per(0)), "peer": round3(per(1))},
        }));
        mem.push(Cell::new(
            "memory",
            &format!("{} warm instances after load", fun.label),
            n[0] as f64,
            n[1] as f64,
            Kind::Info,
        ));
        mem.push(Cell::new(
            "memory",
            &format!(
                "RSS per warm {} instance, MiB (Δ tree / instances)",
                fun.label
            ),
            per(0),
            per(1),
            Kind::Lower,
        ));
        mem.push(Cell::new(
            "memory",
            &format!("RSS of one {} instance process, MiB (mean)", fun.label),
            proc_rss[0],
            proc_rss[1],
            Kind::Lower,
        ));
        rss_before = rss_after;
    }
    // Were the node instances still there at the end (the python delta assumes so)?
    let node_end = instances(&server, &off, 0, threads0).await?;
    let py_threads = threads(pids[1]).saturating_sub(threads0);
    mem.push(Cell::new(
        "memory",
        "RSS after all load, MiB (process tree)",
        rss_before[0],
        rss_before[1],
        Kind::Lower,
    ));
    cells.extend(mem);
    drop(off);
    drop(server);

    let cold = cold(bin, &sls, &app, python_dir.as_deref(), samples, keep_data).await?;
    let mut jcold = Vec::new();
    for (fi, fun) in FUNS.iter().enumerate() {
        let cs = [summarize(&cold.ms[fi][0]), summarize(&cold.ms[fi][1])];
        let sec = format!("{} cold start", fun.label);
        cells.push(Cell::new(
            &sec,
            "cold p50 ms",
            cs[0].p50,
            cs[1].p50,
            Kind::Lower,
        ));
        cells.push(Cell::new(
            &sec,
            "cold p99 ms",
            cs[0].p99,
            cs[1].p99,
            Kind::Lower,
        ));
        cells.push(Cell::new(
            &sec,
            "cold samples",
            cs[0].n as f64,
            cs[1].n as f64,
            Kind::Info,
        ));
        let nc = cold.not_cold[fi];
        cells.push(Cell::new(
            &sec,
            "not cold (excluded)",
            nc[0] as f64,
            nc[1] as f64,
            Kind::Info,
        ));
        let e = cold.errors[fi];
        cells.push(Cell::new(
            &sec,
            "errors",
            e[0] as f64,
            e[1] as f64,
            Kind::Errors,
        ));
        jcold.push(json!({
            "function": fun.name(), "route": fun.route,
            "nimbus": {"client_ms": cs[0].to_json(), "not_cold": nc[0], "errors": e[0]},
            "peer": {"client_ms": cs[1].to_json(), "not_cold": nc[1], "errors": e[1]},
        }));
    }
    let total = |i: usize| {
        cells
            .iter()
            .filter(|c| c.kind == Kind::Errors)
            .map(|c| c.v[i])
            .sum::<f64>()
    };
    let errs = [total(0), total(1)];
    cells.push(Cell::new(
        "all",
        "errors, total (must be 0)",
        errs[0],
        errs[1],
        Kind::Errors,
    ));
    if errs[0] + errs[1] > 0.0 {
        eprintln!(
            "peer: errors in total: nimbus {} · {PEER} {} (must be 0)",
            errs[0], errs[1]
        );
    }

    let json = json!({
        "peer": PEER,
        "app": app.display().to_string(),
        "functions": FUNS.iter().map(|f| json!({"name": f.name(), "route": format!("GET {}", f.route), "invoke": f.invoke_path()})).collect::<Vec<Value>>(),
        "python": python.as_ref().map(|h| json!({"path": h.path, "version": h.version})),
        "peer_start_to_listening_s": round3(offline_start_s),
        "first_request_ms": first_ms,
        "rss_mib_at_rest": {"nimbus": round3(rss_rest[0]), "peer": round3(rss_rest[1])},
        "peer_threads_at_rest": threads0,
        "memory": jmem,
        "warm_instances_at_end_node": {"nimbus": node_end[0], "peer": node_end[1]},
        "peer_threads_at_end_over_rest": py_threads,
        "levels": jlevels,
        "cold": {"idle_wait_s": IDLE_WAIT.as_secs_f64(), "samples": samples, "results": jcold},
        "cells": cells.iter().map(Cell::to_json).collect::<Vec<Value>>(),
    });
    Ok(PeerRun { cells, json })
}

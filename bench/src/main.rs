//! `nimbus-bench`: starts the real `nimbus` binary on random ports with a throw-away
//! data dir, deploys no-op functions and prints markdown tables, each number next to
//! a peer measured in the same run:
//!
//! * cold start of python, node and `provided` functions vs. the bare start of the
//!   same interpreter (`python3 -c 'import json'`, `node -e 0`, the bootstrap binary);
//! * warm invoke latency and throughput (sequential and concurrent) vs. a raw loopback
//!   HTTP round trip with the same client and the handler's own REPORT `Duration`;
//! * sync Invoke through boto3 vs. a boto3 call that runs no function;
//! * durable async (`InvocationType=Event`) acceptance rate vs. one `fdatasync`;
//! * the HTTP gateway: a no-op function through a route (payload 2.0 and 1.0) vs. a
//!   direct Invoke of the same function, interleaved, and req/s at 1 / 16 / 64.
//!
//! `--repeat N` runs everything N times (a fresh server each time) and ends with the
//! median of each headline number across runs. Writes the numbers as JSON to
//! `bench/results/latest.json` (and the tables to `latest.md`). See bench/README.md
//! and docs/BENCHMARKS.md for what each number means.

mod cold;
mod events;
mod functions;
mod gateway;
mod http;
mod machine;
mod peer;
mod peers;
mod server;
mod stats;
mod warm;

use anyhow::{Context, Result};
use clap::Parser;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of the nimbus server: cold start, warm latency, throughput")]
struct Args {
    /// The nimbus binary to start (default: target/release/nimbus, else the one next
    /// to this binary).
    #[arg(long)]
    nimbus: Option<PathBuf>,
    /// Smoke-test mode (tests/e2e/test_bench_smoke.py): every section, 3 cold samples,
    /// 0.3 s per load level; a few seconds, numbers meaningless.
    #[arg(long)]
    quick: bool,
    /// Cold-start samples per function (default 30, --quick 3).
    #[arg(long)]
    samples: Option<usize>,
    /// Seconds per load level (default 10, --quick 0.3).
    #[arg(long)]
    duration: Option<f64>,
    /// Run everything this many times, each on a fresh server, and summarise the
    /// headline numbers as medians across runs.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A python with boto3 for the SDK section (default: .venv/bin/python of the
    /// repository when it exists; the section is skipped without one).
    #[arg(long)]
    sdk_python: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the cold-start section.
    #[arg(long)]
    no_cold: bool,
    /// Skip the warm section.
    #[arg(long)]
    no_warm: bool,
    /// Skip the boto3 section.
    #[arg(long)]
    no_sdk: bool,
    /// Skip the async acceptance section.
    #[arg(long)]
    no_async: bool,
    /// Skip the gateway section.
    #[arg(long)]
    no_gateway: bool,
    /// Keep the server's data dir (and its server.log) for inspection.
    #[arg(long)]
    keep_data: bool,
    /// Run only the side-by-side comparison with a peer platform on the same
    /// serverless.yml app (`bench/peer/PEER/app`: node and python no-ops, through their
    /// routes and the Invoke API); installs the peer with npm into its git-ignored
    /// node_modules on first use. Only `serverless-offline` so far. With `--repeat N`
    /// it ends with the median of every cell across the runs. `bench/run` builds the
    /// release binaries and runs this.
    #[arg(long, value_parser = ["serverless-offline"])]
    peer: Option<String>,
}

const LEVELS: [usize; 3] = [1, 16, 64];
/// `--quick`: c=64 would start 64 python and 64 node instances, most of a smoke run.
const QUICK_LEVELS: [usize; 2] = [1, 4];

/// The bare programs again, writing one byte to stdout when ready (spawn-to-ready peer).
const PY_READY: &str = "import json, os; os.write(1, b'.')";
const NODE_READY: &str = "require('fs').writeSync(1, '.')";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn nimbus_bin(arg: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = arg {
        anyhow::ensure!(p.is_file(), "--nimbus {}: no such file", p.display());
        return Ok(p);
    }
    let candidates = [
        PathBuf::from("target/release/nimbus"),
        std::env::current_exe()?.with_file_name("nimbus"),
        repo_root().join("target/release/nimbus"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .context("nimbus binary not found: build it with `cargo build --release -p nimbus` or pass --nimbus PATH")
}

fn f(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn rt(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}×")
    } else {
        "–".into()
    }
}

/// What every run shares: the programs under test, resolved once.
struct Setup {
    bin: PathBuf,
    /// `python3.<minor>` of the host's `python3`, so the function runs on exactly
    /// the interpreter the bare start measures (no closest-minor fallback).
    py_runtime: String,
    python: functions::Host,
    node: functions::Host,
    bootstrap: PathBuf,
    sdk_python: Option<PathBuf>,
    samples: usize,
    dur: Duration,
    /// Concurrency levels of the load sections.
    levels: Vec<usize>,
}

/// One headline number of one run, for the cross-run summary.
struct Headline {
    key: String,
    value: f64,
    /// Ratios print as `1.23×`, everything else as a number.
    ratio: bool,
}

struct Run {
    md: String,
    json: Value,
    headline: Vec<Headline>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let began = Instant::now();
    let samples = args.samples.unwrap_or(if args.quick { 3 } else { 30 });
    let dur = Duration::from_secs_f64(args.duration.unwrap_or(if args.quick { 0.3 } else { 10.0 }));
    let bin = nimbus_bin(args.nimbus.clone())?;
    let command: Vec<String> = std::env::args().collect();
    if args.peer.is_some() {
        return peer_main(&args, &bin, dur, &command, began).await;
    }

    // The host programs, resolved as the server resolves them.
    let default_py = functions::python3_minor().context("no python3 on PATH")?;
    let py_runtime = format!("python3.{default_py}");
    let python = functions::python_for(default_py).context("no python3 on PATH")?;
    let node = functions::node().context("no node on PATH")?;
    let bootstrap = functions::noop_bootstrap()?;
    let sdk_python = if args.no_sdk {
        None
    } else {
        args.sdk_python
            .clone()
            .or_else(|| Some(repo_root().join(".venv/bin/python")))
            .filter(|p| p.is_file())
    };
    let setup = Setup {
        bin,
        py_runtime,
        python,
        node,
        bootstrap,
        sdk_python,
        samples,
        dur,
        levels: if args.quick {
            QUICK_LEVELS.to_vec()
        } else {
            LEVELS.to_vec()
        },
    };

    let mut md = String::new();
    let _ = writeln!(md, "# nimbus-bench\n");
    let _ = writeln!(md, "- command: `{}`", command.join(" "));
    let mut runs = Vec::new();
    for i in 0..args.repeat.max(1) {
        if args.repeat > 1 {
            eprintln!("=== run {}/{}", i + 1, args.repeat);
        }
        let run = run_once(&args, &setup).await?;
        if args.repeat > 1 {
            let _ = writeln!(md, "\n# Run {} of {}\n", i + 1, args.repeat);
        }
        md.push_str(&run.md);
        runs.push(run);
    }
    if runs.len() > 1 {
        md.push_str(&summary(&runs));
    }
    print!("{md}");

    let results = json!({
        "mode": if args.quick { "quick" } else { "full" },
        "command": command.join(" "),
        "nimbus": setup.bin.display().to_string(),
        "runs": runs.iter().map(|r| r.json.clone()).collect::<Vec<Value>>(),
        "median_across_runs": runs.first().map(|r| {
            r.headline
                .iter()
                .map(|h| (h.key.clone(), stats::round3(median_of(&runs, &h.key))))
                .collect::<serde_json::Map<String, Value>>()
        }),
        "elapsed_s": (began.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo_root().join("bench/results/latest.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)? + "\n")?;
    std::fs::write(out.with_extension("md"), &md)?;
    eprintln!(
        "wrote {} ({:.1} s)",
        out.display(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--peer serverless-offline`: only the side-by-side table, to
/// bench/results/peer-serverless-offline.{json,md} (or --out).
async fn peer_main(
    args: &Args,
    bin: &Path,
    dur: Duration,
    command: &[String],
    began: Instant,
) -> Result<()> {
    let levels = if args.quick {
        &QUICK_LEVELS[..]
    } else {
        &LEVELS[..]
    };
    let machine = machine::info(&repo_root());
    let mut md = String::new();
    let _ = writeln!(md, "# nimbus-bench --peer\n");
    let _ = writeln!(md, "- command: `{}`", command.join(" "));
    let _ = writeln!(
        md,
        "- machine: {} × {}, {} GiB, kernel {}, load {} · {} · commit {}",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["mem_total_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["loadavg_start"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
        machine["git_commit"].as_str().unwrap_or("?"),
    );
    let samples = args.samples.unwrap_or(if args.quick { 3 } else { 30 });
    let repeat = args.repeat.max(1);
    let mut runs = Vec::new();
    for i in 0..repeat {
        if repeat > 1 {
            eprintln!("=== run {}/{}", i + 1, repeat);
        }
        let r = peer::run(bin, &repo_root(), levels, dur, samples, args.keep_data).await?;
        if repeat > 1 {
            let _ = writeln!(md, "\n## Run {} of {repeat}\n", i + 1);
            md.push_str(&peer::table(&r.cells));
        }
        runs.push(r);
    }
    let cells: Vec<Vec<peer::Cell>> = runs.iter().map(|r| r.cells.clone()).collect();
    let med = peer::median_cells(&cells);
    let _ = writeln!(
        md,
        "\n## vs {}: Nimbus and {} on the same serverless.yml app{}\n",
        peer::PEER,
        peer::PEER,
        if repeat > 1 {
            format!(", median of {repeat} runs")
        } else {
            String::new()
        }
    );
    md.push_str(&peer::table(&med));
    let _ = writeln!(md, "\n{}", peer::note(levels, dur, samples, repeat));
    print!("{md}");
    let results = json!({
        "mode": if args.quick { "quick" } else { "full" },
        "command": command.join(" "),
        "nimbus": bin.display().to_string(),
        "machine": machine,
        "repeat": repeat,
        "duration_s_per_level": dur.as_secs_f64(),
        "levels": levels,
        "cold_samples": samples,
        "median_across_runs": med.iter().map(peer::Cell::to_json).collect::<Vec<Value>>(),
        "runs": runs.iter().map(|r| r.json.clone()).collect::<Vec<Value>>(),
        "loadavg_end": machine::loadavg(),
        "elapsed_s": (began.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo_root().join("bench/results/peer-serverless-offline.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)? + "\n")?;
    std::fs::write(out.with_extension("md"), &md)?;
    eprintln!(
        "wrote {} ({:.1} s)",
        out.display(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

fn median_of(runs: &[Run], key: &str) -> f64 {
    let xs: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.headline.iter().find(|h| h.key == key).map(|h| h.value))
        .collect();
    stats::median(&xs)
}

fn summary(runs: &[Run]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n# Summary: median of {} runs (each run on a fresh server)\n",
        runs.len()
    );
    let mut head = "| number |".to_string();
    let mut rule = "|---|".to_string();
    for i in 0..runs.len() {
        let _ = write!(head, " run {} |", i + 1);
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{head} median |\n{rule}---:|");
    for h in &runs[0].headline {
        let show = |x: f64| if h.ratio { rt(x) } else { f(x) };
        let mut row = format!("| {} |", h.key);
        for r in runs {
            let v = r
                .headline
                .iter()
                .find(|x| x.key == h.key)
                .map_or(f64::NAN, |x| x.value);
            let _ = write!(row, " {} |", show(v));
        }
        let _ = writeln!(md, "{row} **{}** |", show(median_of(runs, &h.key)));
    }
    md
}

fn files_of(files: &[(String, Vec<u8>, u32)]) -> Vec<(&str, &[u8], u32)> {
    files
        .iter()
        .map(|(n, c, m)| (n.as_str(), c.as_slice(), *m))
        .collect()
}

async fn run_once(args: &Args, setup: &Setup) -> Result<Run> {
    let (samples, dur) = (setup.samples, setup.dur);
    let levels = setup.levels.as_slice();
    let (python, node) = (&setup.python, &setup.node);
    let py_rt = setup.py_runtime.as_str();
    let mut machine = machine::info(&repo_root());
    let mut headline = Vec::new();
    let mut head =
        |key: String, value: f64, ratio: bool| headline.push(Headline { key, value, ratio });

    let server = server::Server::start(&setup.bin, args.keep_data)?;
    let server_pid = server.pid();
    let health = server.get("/_nimbus/health").await?;
    machine["instance_limits"] = health["limits"].clone();
    eprintln!(
        "nimbus-bench: {} (pid {server_pid}) api {} · {py_rt} → {} ({}) · node {} ({}) · load {}",
        setup.bin.display(),
        server.api,
        python.path.display(),
        python.version,
        node.path.display(),
        node.version,
        machine::loadavg()
    );

    // Cross-check the interpreter with the server's own deploy notice.
    let probe_sha = server
        .upload(functions::zip(&[(
            "app.py",
            functions::PY_NOOP.as_bytes(),
            0o644,
        )])?)
        .await?;
    let reply = server
        .deploy(
            "bench-probe",
            py_rt,
            "app.handler",
            &probe_sha,
            &HashMap::new(),
        )
        .await?;
    let notice = reply["notice"].as_str().map(str::to_string);
    if let Some(n) = &notice {
        eprintln!("warning: the server says: {n}");
    }
    server.delete("bench-probe").await?;

    let py_files = vec![(
        "app.py".to_string(),
        functions::PY_NOOP.as_bytes().to_vec(),
        0o644,
    )];
    let node_files = vec![(
        "index.js".to_string(),
        functions::NODE_NOOP.as_bytes().to_vec(),
        0o644,
    )];
    let provided_files = vec![(
        "bootstrap".to_string(),
        std::fs::read(&setup.bootstrap)?,
        0o755,
    )];

    let py_bare = format!("{} -c 'import json'", python.path.display());
    let node_bare = format!("{} -e 0", node.path.display());
    let bs_bare = "noop-bootstrap --exit".to_string();

    // ---------------------------------------------------------------- cold
    let mut cold_results = Vec::new();
    if !args.no_cold {
        let target = |label: &str,
                      function: &str,
                      runtime: &str,
                      handler: &str,
                      files: &Vec<(String, Vec<u8>, u32)>,
                      fresh: bool,
                      prog: &Path,
                      bargs: &[&str],
                      rargs: &[&str],
                      blabel: &str| cold::Target {
            label: label.into(),
            function: function.into(),
            runtime: runtime.into(),
            handler: handler.into(),
            files: files.clone(),
            fresh_code: fresh,
            bare_program: prog.to_path_buf(),
            bare_args: bargs.iter().map(|s| s.to_string()).collect(),
            ready_args: rargs.iter().map(|s| s.to_string()).collect(),
            bare_label: blabel.into(),
        };
        let targets = vec![
            target(
                py_rt,
                "cold-python",
                py_rt,
                "app.handler",
                &py_files,
                false,
                &python.path,
                &["-c", "import json"],
                &["-c", PY_READY],
                &py_bare,
            ),
            target(
                "nodejs20.x",
                "cold-node",
                "nodejs20.x",
                "index.handler",
                &node_files,
                false,
                &node.path,
                &["-e", "0"],
                &["-e", NODE_READY],
                &node_bare,
            ),
            target(
                "provided.al2023",
                "cold-provided",
                "provided.al2023",
                "bootstrap",
                &provided_files,
                false,
                &setup.bootstrap,
                &["--exit"],
                &["--ready"],
                &bs_bare,
            ),
            target(
                &format!("{py_rt}, new code each sample"),
                "cold-python-newcode",
                py_rt,
                "app.handler",
                &py_files,
                true,
                &python.path,
                &["-c", "import json"],
                &["-c", PY_READY],
                &py_bare,
            ),
        ];
        eprintln!(
            "cold starts: {samples} samples × {} functions",
            targets.len()
        );
        cold_results = cold::run(&server, &targets, samples).await?;
        for c in &cold_results {
            head(
                format!("cold p50 / bare p50, {}", c.label),
                stats::ratio(c.client.p50, c.bare.p50),
                true,
            );
        }
        for c in &cold_results {
            head(
                format!("cold p50 / ready p50, {}", c.label),
                stats::ratio(c.client.p50, c.ready.p50),
                true,
            );
        }
        for c in &cold_results {
            head(format!("cold p50 ms, {}", c.label), c.client.p50, false);
            if !c.label.contains("new code") {
                head(
                    format!("bare p50 ms, {}", c.bare_label_short()),
                    c.bare.p50,
                    false,
                );
            }
        }
    }

    // ---------------------------------------------------------------- warm
    let mut warm_results: Vec<warm::WarmResult> = Vec::new();
    let raw = peers::RawHttp::start()?;
    let mut floors: Vec<warm::Floor> = Vec::new();
    if !args.no_warm {
        eprintln!(
            "warm: {:.1} s per level, concurrency {levels:?}",
            dur.as_secs_f64()
        );
        let peer_dur = dur.min(Duration::from_secs(3));
        for c in [1, 16] {
            floors.push(
                warm::floor(
                    "raw loopback HTTP server (blocking thread per connection)",
                    raw.addr,
                    Method::POST,
                    "/",
                    c,
                    peer_dur,
                )
                .await?,
            );
        }
        floors.push(
            warm::floor(
                "nimbus GET /_nimbus/health",
                server.api,
                Method::GET,
                "/_nimbus/health",
                1,
                peer_dur,
            )
            .await?,
        );
        let fns = [
            (py_rt, "warm-python", "app.handler", &py_files),
            ("nodejs20.x", "warm-node", "index.handler", &node_files),
            (
                "provided.al2023",
                "warm-provided",
                "bootstrap",
                &provided_files,
            ),
        ];
        for (runtime, name, handler, files) in fns {
            let sha = server.upload(functions::zip(&files_of(files))?).await?;
            server
                .deploy(name, runtime, handler, &sha, &HashMap::new())
                .await?;
            server.invoke_once(name).await?;
            warm_results
                .extend(warm::run_function(&server, server_pid, runtime, name, levels, dur).await?);
            let pids = server.instance_pids(name).await?;
            server.delete(name).await?;
            server.wait_no_instances(name, &pids).await.ok();
        }
        let raw1 = floors[0].client.p50;
        for w in warm_results.iter().filter(|w| w.concurrency == 1) {
            head(format!("warm p50 ms, {}", w.runtime), w.client.p50, false);
            head(
                format!("warm overhead p50 ms (− raw HTTP RTT), {}", w.runtime),
                w.client.p50 - raw1,
                false,
            );
            head(
                format!("warm overhead p50 ms (− handler Duration), {}", w.runtime),
                w.overhead_p50(),
                false,
            );
        }
        head("raw loopback HTTP RTT p50 ms".into(), raw1, false);
        for w in &warm_results {
            if w.concurrency == 1 || w.concurrency == 16 {
                head(
                    format!("throughput req/s c={}, {}", w.concurrency, w.runtime),
                    w.throughput,
                    false,
                );
            }
        }
        head(
            "raw loopback HTTP req/s c=16".into(),
            floors[1].throughput,
            false,
        );
    }

    // ---------------------------------------------------------------- boto3
    let mut sdk: Option<(stats::Summary, stats::Summary, usize)> = None;
    if let Some(py) = &setup.sdk_python {
        eprintln!("boto3: {:.1} s", dur.as_secs_f64());
        let name = "sdk-provided";
        let sha = server
            .upload(functions::zip(&files_of(&provided_files))?)
            .await?;
        server
            .deploy(name, "provided.al2023", "bootstrap", &sha, &HashMap::new())
            .await?;
        let out = tokio::process::Command::new(py)
            .arg(repo_root().join("bench/boto3_invoke.py"))
            .args(["--endpoint", &format!("http://{}", server.api)])
            .args(["--function", name])
            .args(["--seconds", &dur.as_secs_f64().to_string()])
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .await
            .context("run bench/boto3_invoke.py")?;
        anyhow::ensure!(
            out.status.success(),
            "bench/boto3_invoke.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let xs = |k: &str| -> Vec<f64> {
            v[k].as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        };
        let (inv, peer) = (
            stats::summarize(&xs("invoke_ms")),
            stats::summarize(&xs("account_settings_ms")),
        );
        head("boto3 Invoke p50 ms".into(), inv.p50, false);
        head(
            "boto3 Invoke p50 − GetAccountSettings p50 ms".into(),
            inv.p50 - peer.p50,
            false,
        );
        sdk = Some((inv, peer, v["errors"].as_u64().unwrap_or(0) as usize));
        server.delete(name).await?;
    }

    // ---------------------------------------------------------------- async
    let mut event_results = Vec::new();
    let mut fsync = None;
    if !args.no_async {
        eprintln!("async: {:.1} s per level", dur.as_secs_f64());
        let name = "async-provided";
        let sha = server
            .upload(functions::zip(&files_of(&provided_files))?)
            .await?;
        server
            .deploy(name, "provided.al2023", "bootstrap", &sha, &HashMap::new())
            .await?;
        server.invoke_once(name).await?;
        fsync = Some(peers::fsync_ms(
            &server.data_dir,
            if args.quick { 20 } else { 200 },
        )?);
        event_results = events::run(&server, name, levels, dur).await?;
        for e in &event_results {
            head(
                format!("async accepted/s c={}", e.concurrency),
                e.accept_rate,
                false,
            );
        }
        if let Some((over, app)) = &fsync {
            head("fdatasync p50 ms, overwrite".into(), over.p50, false);
            head("fdatasync p50 ms, append".into(), app.p50, false);
        }
        server.delete(name).await?;
    }
    // ---------------------------------------------------------------- gateway
    let mut gw: Option<gateway::GatewayResult> = None;
    if !args.no_gateway {
        eprintln!(
            "gateway: {:.1} s interleaved at c=1, then {:.1} s per way per level {levels:?}",
            dur.as_secs_f64(),
            dur.as_secs_f64()
        );
        let ways = gateway::setup(&server, &std::fs::read(&setup.bootstrap)?).await?;
        let g = gateway::run(server_pid, &ways, levels, dur).await?;
        let inv = g.invoke().client.clone();
        for l in &g.latency[1..] {
            head(format!("gateway p50 ms, {}", l.short), l.client.p50, false);
        }
        head("gateway p50 ms, Invoke".into(), inv.p50, false);
        for l in &g.latency[1..] {
            head(
                format!("{} − Invoke, p50 ms", l.short),
                l.client.p50 - inv.p50,
                false,
            );
            head(
                format!("{} − Invoke, paired Δ median ms", l.short),
                l.paired_delta_p50,
                false,
            );
            head(
                format!("{} / Invoke, p50", l.short),
                stats::ratio(l.client.p50, inv.p50),
                true,
            );
            head(
                format!("{} − Invoke, p99 ms", l.short),
                l.client.p99 - inv.p99,
                false,
            );
        }
        for &c in levels {
            for l in &g.latency {
                if let Some(t) = g.tp(l.short, c) {
                    head(format!("gateway req/s c={c}, {}", l.short), t.rps, false);
                }
            }
            if let (Some(r), Some(i)) = (g.tp("route 2.0 POST", c), g.tp("Invoke", c)) {
                head(
                    format!("route 2.0 POST / Invoke req/s c={c}"),
                    stats::ratio(r.rps, i.rps),
                    true,
                );
            }
        }
        let pids = server.instance_pids(gateway::FUNCTION).await?;
        server.delete(gateway::FUNCTION).await?;
        server
            .wait_no_instances(gateway::FUNCTION, &pids)
            .await
            .ok();
        gw = Some(g);
    }
    machine["loadavg_end"] = json!(machine::loadavg());
    drop(server);

    // ---------------------------------------------------------------- report
    let mut md = String::new();
    let _ = writeln!(md, "\n## Machine\n");
    let _ = writeln!(
        md,
        "- {} × {} · {} GiB RAM · Linux {} · instance limits: {}",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["mem_total_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["instance_limits"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(
        md,
        "- date {} · commit {} · load average (1/5/15 min) at start {} / at end {}",
        machine["date"].as_str().unwrap_or("?"),
        machine["git_commit"].as_str().unwrap_or("?"),
        machine["loadavg_start"].as_str().unwrap_or("?"),
        machine["loadavg_end"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(
        md,
        "- {py_rt} runs on {} (Python {}){} · node {} (v{})",
        python.path.display(),
        python.version,
        notice
            .as_deref()
            .map(|n| format!(" — server notice: \"{n}\""))
            .unwrap_or_default(),
        node.path.display(),
        node.version
    );
    if !cold_results.is_empty() {
        let _ = writeln!(md, "\n## Cold start ({samples} samples each, ms)\n");
        let _ = writeln!(md, "Client-observed latency of the first Invoke after a redeploy (new revision; the old instance is gone); `init` is the server's `init_ms` (spawn → first `/next`); `bare` is spawn-to-exit of the program named, `ready` is spawn-to-first-stdout-byte of the same program after the same imports (no teardown), both in the same round, alternating order.\n");
        let _ = writeln!(md, "| function | cold p50 | cold p99 | init p50 | bare start | bare p50 | bare p99 | ready p50 | cold p50 / bare p50 | cold p99 / bare p99 | cold p50 / ready p50 | init p50 / bare p50 |");
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for c in &cold_results {
            let _ = writeln!(
                md,
                "| {}{} | {} | {} | {} | `{}` | {} | {} | {} | {} | {} | {} | {} |",
                c.label,
                if c.all_cold { "" } else { " (NOT ALL COLD)" },
                f(c.client.p50),
                f(c.client.p99),
                f(c.init.p50),
                c.bare_label_short(),
                f(c.bare.p50),
                f(c.bare.p99),
                f(c.ready.p50),
                rt(stats::ratio(c.client.p50, c.bare.p50)),
                rt(stats::ratio(c.client.p99, c.bare.p99)),
                rt(stats::ratio(c.client.p50, c.ready.p50)),
                rt(stats::ratio(c.init.p50, c.bare.p50)),
            );
        }
    }
    if !warm_results.is_empty() {
        let raw1 = floors[0].client.p50;
        let _ = writeln!(
            md,
            "\n## Warm invoke latency (ms, {:.0} s per level, keep-alive connection per worker)\n",
            dur.as_secs_f64()
        );
        let _ = writeln!(md, "Sync `Invoke` with a raw HTTP/1.1 client (hyper connection, no SDK). `handler` is the function's `duration_ms` from its invocation records (REPORT `Duration`: Runtime API hand-off to response, so it already holds two of the platform's loopback hops). Overheads at p50: `− RTT` = client p50 − raw loopback HTTP round trip p50 at the same concurrency (c=64 uses the c=16 peer); `− handler` = client p50 − handler p50. CPU columns: server process and instance processes, per request.\n");
        let _ = writeln!(md, "| runtime | concurrency | requests | p50 | p90 | p99 | handler p50 | handler p99 | overhead − RTT | overhead − handler | server CPU µs/req | instance CPU µs/req |");
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for w in &warm_results {
            let peer = if w.concurrency == 1 {
                raw1
            } else {
                floors[1].client.p50
            };
            let _ = writeln!(
                md,
                "| {} | {} | {}{}{} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
                w.runtime,
                w.concurrency,
                w.ok,
                if w.errors > 0 {
                    format!(" ({} errors)", w.errors)
                } else {
                    String::new()
                },
                if w.cold_in_run > 0 {
                    format!(" ({} cold)", w.cold_in_run)
                } else {
                    String::new()
                },
                f(w.client.p50),
                f(w.client.p90),
                f(w.client.p99),
                f(w.handler.p50),
                f(w.handler.p99),
                f(w.client.p50 - peer),
                f(w.overhead_p50()),
                w.server_cpu_us_per_req,
                w.instance_cpu_us_per_req,
            );
        }
        let _ = writeln!(md, "\nPeers, same client, same run:\n");
        let _ = writeln!(md, "| peer | concurrency | p50 | p90 | p99 | req/s |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for fl in &floors {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.0} |",
                fl.what,
                fl.concurrency,
                f(fl.client.p50),
                f(fl.client.p90),
                f(fl.client.p99),
                fl.throughput
            );
        }
        let _ = writeln!(
            md,
            "\n## Throughput (req/s, closed loop, {:.0} s per level)\n",
            dur.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "| runtime | c=1 | c=16 | c=64 | c=16 / c=1 | c=16 / raw HTTP c=16 | errors |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        let mut rts: Vec<&str> = warm_results.iter().map(|w| w.runtime.as_str()).collect();
        rts.dedup();
        for r in rts {
            let at = |c: usize| {
                warm_results
                    .iter()
                    .find(|w| w.runtime == r && w.concurrency == c)
            };
            let tp = |c: usize| at(c).map_or(f64::NAN, |w| w.throughput);
            let errs: usize = warm_results
                .iter()
                .filter(|w| w.runtime == r)
                .map(|w| w.errors)
                .sum();
            let _ = writeln!(
                md,
                "| {r} | {:.0} | {:.0} | {:.0} | {} | {} | {errs} |",
                tp(1),
                tp(16),
                tp(64),
                rt(stats::ratio(tp(16), tp(1))),
                rt(stats::ratio(tp(16), floors[1].throughput)),
            );
        }
    }
    if let Some((inv, peer, errors)) = &sdk {
        let _ = writeln!(
            md,
            "\n## Sync Invoke through boto3 (ms, {:.0} s, one client, alternating calls)\n",
            dur.as_secs_f64()
        );
        let _ = writeln!(md, "`GetAccountSettings` runs no function: it is the SDK + SigV4 + HTTP + routing floor of the same client.\n");
        let _ = writeln!(md, "| call | n | p50 | p90 | p99 |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (what, s) in [
            ("Invoke (provided no-op)", inv),
            ("GetAccountSettings", peer),
        ] {
            let _ = writeln!(
                md,
                "| {what} | {} | {} | {} | {} |",
                s.n,
                f(s.p50),
                f(s.p90),
                f(s.p99)
            );
        }
        let _ = writeln!(
            md,
            "\nInvoke − GetAccountSettings at p50: {} ms; errors: {errors}.",
            f(inv.p50 - peer.p50)
        );
    }
    if !event_results.is_empty() {
        let _ = writeln!(
            md,
            "\n## Durable async acceptance (`InvocationType=Event`, {:.0} s per level)\n",
            dur.as_secs_f64()
        );
        if let Some((over, app)) = &fsync {
            let _ = writeln!(md, "Each event is in `events.db` (SQLite WAL, `synchronous=FULL`, group commit) before its 202. Peer, same data dir: a 200-byte write + `fdatasync` overwriting a preallocated block (a reused WAL) p50 {} ms / p99 {} ms, so {:.0} events/s is the ceiling for one client without group commit; as an append that grows the file p50 {} ms / p99 {} ms. The events run (no-op `provided` function) while later ones are accepted; `drain` is the time after the load until all had run.\n", f(over.p50), f(over.p99), 1000.0 / over.p50, f(app.p50), f(app.p99));
        }
        let _ = writeln!(md, "| concurrency | accepted | accepted/s | 202 p50 | 202 p99 | drain s | run/s | errors |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for e in &event_results {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {:.1}{} | {:.0} | {} |",
                e.concurrency,
                e.accepted,
                e.accept_rate,
                f(e.client.p50),
                f(e.client.p99),
                e.drain_s,
                if e.drained { "" } else { " (NOT DRAINED)" },
                e.run_rate,
                e.errors
            );
        }
    }

    if let Some(g) = &gw {
        let inv = &g.invoke().client;
        let _ = writeln!(
            md,
            "\n## Gateway overhead (ms, concurrency 1, {} interleaved rounds in {} s)\n",
            g.rounds,
            f(dur.as_secs_f64())
        );
        let _ = writeln!(md, "One no-op `provided` function (answers `{}`), reached four ways by the same client, one keep-alive HTTP/1.1 connection per way; each round sends one request per way, the order rotating. `Δ` = way − Invoke; `paired Δ` = median over rounds of (way − Invoke in the same round). Target: a route adds ≤ 0.2 ms p50.\n", gateway::RESPONSE);
        let _ = writeln!(
            md,
            "| way | n | p50 | p90 | p99 | Δ p50 | paired Δ | p50 / Invoke p50 | Δ p99 | errors |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &g.latency {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.label,
                l.client.n,
                f(l.client.p50),
                f(l.client.p90),
                f(l.client.p99),
                f(l.client.p50 - inv.p50),
                f(l.paired_delta_p50),
                rt(stats::ratio(l.client.p50, inv.p50)),
                f(l.client.p99 - inv.p99),
                l.errors
            );
        }
        let _ = writeln!(
            md,
            "\n## Gateway throughput (req/s, closed loop, {} s per way per level in two alternating halves)\n",
            f(dur.as_secs_f64())
        );
        let _ = writeln!(md, "| way | concurrency | requests | req/s | req/s / Invoke | p50 | p99 | server CPU µs/req | errors |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for t in &g.throughput {
            let base = g.tp("Invoke", t.concurrency).map_or(f64::NAN, |i| i.rps);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {:.0} | {} |",
                t.short,
                t.concurrency,
                t.ok,
                t.rps,
                rt(stats::ratio(t.rps, base)),
                f(t.client.p50),
                f(t.client.p99),
                t.server_cpu_us_per_req,
                t.errors
            );
        }
    }

    let json = json!({
        "machine": machine,
        "interpreters": {
            py_rt: { "path": python.path, "version": python.version, "server_notice": notice },
            "nodejs20.x": { "path": node.path, "version": node.version },
            "provided.al2023": { "path": setup.bootstrap, "bare": "noop-bootstrap --exit" },
        },
        "cold_start": { "samples": samples, "results": cold_results.iter().map(|c| c.to_json()).collect::<Vec<Value>>() },
        "warm": {
            "duration_s": dur.as_secs_f64(),
            "results": warm_results.iter().map(|w| w.to_json()).collect::<Vec<Value>>(),
            "peers": floors.iter().map(|f| f.to_json()).collect::<Vec<Value>>(),
        },
        "boto3": sdk.as_ref().map(|(i, p, e)| json!({
            "invoke_ms": i.to_json(), "get_account_settings_ms": p.to_json(), "errors": e,
        })),
        "async": {
            "fdatasync_overwrite_ms": fsync.as_ref().map(|s| s.0.to_json()),
            "fdatasync_append_ms": fsync.as_ref().map(|s| s.1.to_json()),
            "results": event_results.iter().map(|e| e.to_json()).collect::<Vec<Value>>(),
        },
        "gateway": gw.as_ref().map(|g| g.to_json()),
        "headline": headline.iter().map(|h| (h.key.clone(), stats::round3(h.value))).collect::<serde_json::Map<String, Value>>(),
    });
    Ok(Run { md, json, headline })
}

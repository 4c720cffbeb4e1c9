//! `nimbus-bench`: starts the real `nimbus` binary, deploys no-op functions and prints
//! markdown tables for cold starts (vs. the bare interpreter start), warm invoke
//! latency and throughput. Writes the same numbers as JSON to
//! `bench/results/latest.json`. See bench/README.md for what each number means.

mod cold;
mod functions;
mod http;
mod machine;
mod server;
mod stats;
mod warm;

use anyhow::{Context, Result};
use clap::Parser;
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
    /// Smoke-test mode for CI: 5 cold samples, 1 s per load level.
    #[arg(long)]
    quick: bool,
    /// Cold-start samples per function (default 30, --quick 5).
    #[arg(long)]
    samples: Option<usize>,
    /// Seconds per warm load level (default 10, --quick 1).
    #[arg(long)]
    duration: Option<f64>,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the cold-start section.
    #[arg(long)]
    no_cold: bool,
    /// Skip the warm section.
    #[arg(long)]
    no_warm: bool,
    /// Keep the server's data dir (and its server.log) for inspection.
    #[arg(long)]
    keep_data: bool,
}

const LEVELS: [usize; 3] = [1, 16, 64];

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
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let began = Instant::now();
    let samples = args.samples.unwrap_or(if args.quick { 5 } else { 30 });
    let dur = Duration::from_secs_f64(args.duration.unwrap_or(if args.quick { 1.0 } else { 10.0 }));
    let bin = nimbus_bin(args.nimbus.clone())?;
    let mut machine = machine::info(&repo_root());
    let command: Vec<String> = std::env::args().collect();

    // The host programs, resolved as the server resolves them.
    let python = functions::python_for(12).context("no python3 on PATH")?;
    let node = functions::node().context("no node on PATH")?;
    let bootstrap = functions::noop_bootstrap()?;
    let bootstrap_bytes = std::fs::read(&bootstrap)?;

    let server = server::Server::start(&bin, args.keep_data)?;
    let server_pid = server.pid();
    let health = server.get("/_nimbus/health").await?;
    machine["instance_limits"] = health["limits"].clone();
    eprintln!(
        "nimbus-bench: {} (pid {server_pid}) api {} · python3.12 → {} ({}) · node {} ({}) · load {}",
        bin.display(),
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
            "python3.12",
            "app.handler",
            &probe_sha,
            &HashMap::new(),
        )
        .await?;
    let notice = reply["notice"].as_str().map(str::to_string);
    if let Some(p) = notice.as_deref().and_then(functions::notice_path) {
        if p != python.path {
            eprintln!(
                "warning: the server runs python3.12 on {} but this benchmark resolved {}",
                p.display(),
                python.path.display()
            );
        }
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
    let provided_files = vec![("bootstrap".to_string(), bootstrap_bytes.clone(), 0o755)];

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
                      blabel: &str| cold::Target {
            label: label.into(),
            function: function.into(),
            runtime: runtime.into(),
            handler: handler.into(),
            files: files.clone(),
            fresh_code: fresh,
            bare_program: prog.to_path_buf(),
            bare_args: bargs.iter().map(|s| s.to_string()).collect(),
            bare_label: blabel.into(),
        };
        let targets = vec![
            target(
                "python3.12",
                "cold-python",
                "python3.12",
                "app.handler",
                &py_files,
                false,
                &python.path,
                &["-c", "import json"],
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
                &node_bare,
            ),
            target(
                "provided.al2023",
                "cold-provided",
                "provided.al2023",
                "bootstrap",
                &provided_files,
                false,
                &bootstrap,
                &["--exit"],
                &bs_bare,
            ),
            target(
                "python3.12, new code each sample",
                "cold-python-newcode",
                "python3.12",
                "app.handler",
                &py_files,
                true,
                &python.path,
                &["-c", "import json"],
                &py_bare,
            ),
        ];
        eprintln!(
            "cold starts: {samples} samples × {} functions",
            targets.len()
        );
        cold_results = cold::run(&server, &targets, samples).await?;
    }

    // ---------------------------------------------------------------- warm
    let mut warm_results: Vec<warm::WarmResult> = Vec::new();
    let mut floor = None;
    if !args.no_warm {
        eprintln!(
            "warm: {:.1} s per level, concurrency {LEVELS:?}",
            dur.as_secs_f64()
        );
        let fns = [
            ("python3.12", "warm-python", "app.handler", &py_files),
            ("nodejs20.x", "warm-node", "index.handler", &node_files),
            (
                "provided.al2023",
                "warm-provided",
                "bootstrap",
                &provided_files,
            ),
        ];
        for (runtime, name, handler, files) in fns {
            let refs: Vec<(&str, &[u8], u32)> = files
                .iter()
                .map(|(n, c, m)| (n.as_str(), c.as_slice(), *m))
                .collect();
            let sha = server.upload(functions::zip(&refs)?).await?;
            server
                .deploy(name, runtime, handler, &sha, &HashMap::new())
                .await?;
            server.invoke_once(name).await?;
            warm_results.extend(
                warm::run_function(&server, server_pid, runtime, name, &LEVELS, dur).await?,
            );
            let pids = server.instance_pids(name).await?;
            server.delete(name).await?;
            server.wait_no_instances(name, &pids).await.ok();
        }
        floor = Some(warm::floor(&server, dur.min(Duration::from_secs(3))).await?);
    }
    machine["loadavg_end"] = json!(machine::loadavg());
    drop(server);

    // ---------------------------------------------------------------- report
    let mut md = String::new();
    let _ = writeln!(md, "## Machine\n");
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
        "- python3.12 runs on {} (Python {}){} · node {} (v{})",
        python.path.display(),
        python.version,
        notice
            .as_deref()
            .map(|n| format!(" — server notice: \"{n}\""))
            .unwrap_or_default(),
        node.path.display(),
        node.version
    );
    let _ = writeln!(md, "- command: `{}`", command.join(" "));
    if !cold_results.is_empty() {
        let _ = writeln!(md, "\n## Cold start ({samples} samples each, ms)\n");
        let _ = writeln!(md, "Client-observed latency of the first Invoke after a redeploy; `init` is the server's `init_ms` (spawn → first `/next`); `bare` is spawn-to-exit of the program named, same round, alternating order.\n");
        let _ = writeln!(md, "| function | cold p50 | cold p99 | init p50 | init p99 | bare start | bare p50 | bare p99 | cold p50 / bare p50 | cold p99 / bare p99 | init p50 / bare p50 |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
        for c in &cold_results {
            let _ = writeln!(
                md,
                "| {}{} | {} | {} | {} | {} | `{}` | {} | {} | {} | {} | {} |",
                c.label,
                if c.all_cold { "" } else { " (NOT ALL COLD)" },
                f(c.client.p50),
                f(c.client.p99),
                f(c.init.p50),
                f(c.init.p99),
                short_cmd(&c.bare_label),
                f(c.bare.p50),
                f(c.bare.p99),
                rt(stats::ratio(c.client.p50, c.bare.p50)),
                rt(stats::ratio(c.client.p99, c.bare.p99)),
                rt(stats::ratio(c.init.p50, c.bare.p50)),
            );
        }
    }
    if !warm_results.is_empty() {
        let _ = writeln!(
            md,
            "\n## Warm invoke latency (ms, {:.0} s per level, keep-alive connection per worker)\n",
            dur.as_secs_f64()
        );
        let _ = writeln!(md, "`handler` is the function's `duration_ms` from its invocation records (REPORT `Duration`: Runtime API hand-off to response); overhead = client p50 − handler p50. CPU columns: server process and instance processes, per request.\n");
        let _ = writeln!(md, "| runtime | concurrency | requests | p50 | p90 | p99 | handler p50 | handler p99 | overhead p50 | server CPU µs/req | instance CPU µs/req |");
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for w in &warm_results {
            let _ = writeln!(
                md,
                "| {} | {} | {}{}{} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
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
                f(w.overhead_p50()),
                w.server_cpu_us_per_req,
                w.instance_cpu_us_per_req,
            );
        }
        if let Some(fl) = &floor {
            let _ = writeln!(md, "\nRound-trip floor, same client: `GET /_nimbus/health` at concurrency 1: p50 {} ms, p90 {} ms, p99 {} ms ({:.0} req/s).", f(fl.client.p50), f(fl.client.p90), f(fl.client.p99), fl.throughput);
        }
        let _ = writeln!(
            md,
            "\n## Throughput (req/s, closed loop, {:.0} s per level)\n",
            dur.as_secs_f64()
        );
        let _ = writeln!(md, "| runtime | c=1 | c=16 | c=64 | c=16 / c=1 | errors |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
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
                "| {r} | {:.0} | {:.0} | {:.0} | {} | {errs} |",
                tp(1),
                tp(16),
                tp(64),
                rt(stats::ratio(tp(16), tp(1)))
            );
        }
    }
    print!("{md}");

    let results = json!({
        "mode": if args.quick { "quick" } else { "full" },
        "command": command.join(" "),
        "nimbus": bin.display().to_string(),
        "machine": machine,
        "interpreters": {
            "python3.12": { "path": python.path, "version": python.version, "server_notice": notice },
            "nodejs20.x": { "path": node.path, "version": node.version },
            "provided.al2023": { "path": bootstrap, "bare": "noop-bootstrap --exit" },
        },
        "cold_start": { "samples": samples, "results": cold_results.iter().map(|c| c.to_json()).collect::<Vec<Value>>() },
        "warm": {
            "duration_s": dur.as_secs_f64(),
            "results": warm_results.iter().map(|w| w.to_json()).collect::<Vec<Value>>(),
            "floor": floor.as_ref().map(|f| f.to_json()),
        },
        "elapsed_s": (began.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let out = args
        .out
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

/// `/root/.pyenv/versions/3.11.7/bin/python3.11 -c 'import json'` → `python3.11 -c 'import json'`.
fn short_cmd(full: &str) -> String {
    let (prog, rest) = full.split_once(' ').unwrap_or((full, ""));
    let base = prog.rsplit('/').next().unwrap_or(prog);
    format!("{base} {rest}").trim().to_string()
}

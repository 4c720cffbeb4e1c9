//! `nimbus dev`: deploy the app of the manifest in the current directory (as
//! `nimbus deploy` does), then watch the app directory and keep the server in step.
//!
//! - A saved code change is checked, then only the functions whose packaged code
//!   changed get the new bundle (the bundle is deterministic, so its sha256 says
//!   whether anything the function ships changed); new invocations run it at once.
//! - A change of the manifest (or of any `.yml`/`.yaml` it may include) redeploys
//!   the whole app, with the all-or-nothing apply of `nimbus deploy`.
//! - A broken change is reported and the last good version keeps serving: changed
//!   Python files are compiled (`python3`), changed JavaScript files go through
//!   `node --check`, before anything is uploaded; a manifest with errors deploys
//!   nothing.
//!
//! Every error is printed and the watch goes on; Ctrl-C (or SIGTERM) stops it with
//! status 0. The server is not started here: run `nimbus up` beside it.

use super::app_deploy::{self, AppArgs};
use crate::client::Client;
use crate::package;
use anyhow::{anyhow, Context, Result};
use nimbus_manifest::App;
use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    app: AppArgs,
    /// Quiet time after the last file event before a reload.
    #[arg(long, value_name = "MS", default_value_t = 150)]
    debounce_ms: u64,
}

/// Directory names whose changes never reload (dependencies, caches, VCS, tool
/// output, a server data dir kept in the app).
const IGNORED_DIRS: &[&str] = &[
    "node_modules",
    ".git",
    "__pycache__",
    ".nimbus",
    ".serverless",
    ".aws-sam",
    ".venv",
    ".pytest_cache",
];

/// Editors' swap, backup and probe files.
fn is_temp_file(name: &str) -> bool {
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with(".tmp")
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
        || name == "4913"
        || name == ".DS_Store"
}

fn ignored(root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut comps = rel.components().peekable();
    while let Some(c) = comps.next() {
        let name = c.as_os_str().to_string_lossy();
        if comps.peek().is_some() {
            if IGNORED_DIRS.contains(&name.as_ref()) {
                return true;
            }
        } else {
            return IGNORED_DIRS.contains(&name.as_ref()) || is_temp_file(&name);
        }
    }
    false
}

/// What the watch knows about the app as it last deployed well.
struct Deployed {
    app: App,
    /// sha256 of the bundle of each code path (canonical) that the server runs.
    shas: BTreeMap<PathBuf, String>,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let manifest = match &a.app.file {
        Some(f) => f.clone(),
        None => {
            let cwd = std::env::current_dir()?;
            nimbus_manifest::find_manifest(&cwd).ok_or_else(|| {
                anyhow!(
                    "no serverless.yml or template.yaml in {} (or give -f FILE)",
                    cwd.display()
                )
            })?
        }
    };
    let manifest = std::fs::canonicalize(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let root = manifest
        .parent()
        .context("the manifest has no directory")?
        .to_path_buf();
    let debounce = Duration::from_millis(a.debounce_ms.max(10));

    let mut stop = Box::pin(shutdown_signal());

    // Watch first, so nothing saved during the first deploy is missed.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .context("cannot start the file watcher")?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", root.display()))?;

    let mut deployed: Option<Deployed> = None;
    tokio::select! {
        _ = &mut stop => return Ok(0),
        d = full_deploy(client, &a.app, &manifest) => match d {
            Ok(d) => deployed = Some(d),
            Err(e) => eprintln!("{} error: {e:#}; fix it and save to retry", stamp()),
        },
    }
    println!(
        "{} watching {} for changes (Ctrl-C to stop)",
        stamp(),
        root.display()
    );

    loop {
        // Wait for the first relevant event, then until things are quiet.
        let mut changed = BTreeSet::new();
        let first;
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(stopped()),
                ev = rx.recv() => {
                    let Some(ev) = ev else { return Ok(stopped()) };
                    collect(&root, ev, &mut changed);
                    if !changed.is_empty() {
                        first = Instant::now();
                        break;
                    }
                }
            }
        }
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(stopped()),
                ev = tokio::time::timeout(debounce, rx.recv()) => match ev {
                    Ok(Some(ev)) => collect(&root, ev, &mut changed),
                    Ok(None) => return Ok(stopped()),
                    Err(_) => break,
                },
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(stopped()),
            r = reload(client, &a.app, &manifest, &root, &changed, &mut deployed) => {
                let what = describe(&root, &changed);
                let ms = first.elapsed().as_millis();
                match r {
                    Ok(done) => println!("{} {done} ({what}) in {ms} ms", stamp()),
                    Err(e) => {
                        eprintln!("{} error: {e:#}", stamp());
                        println!(
                            "{} reload failed ({what}) after {ms} ms; the last good version keeps serving",
                            stamp()
                        );
                    }
                }
            }
        }
    }
}

fn stopped() -> i32 {
    eprintln!("{} stopped", stamp());
    0
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `HH:MM:SS` (UTC), the prefix of every line of the watch.
fn stamp() -> String {
    let s = nimbus_core::now_ms() / 1000;
    format!(
        "[{:02}:{:02}:{:02}]",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

fn collect(root: &Path, ev: notify::Result<notify::Event>, into: &mut BTreeSet<PathBuf>) {
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("{} watch error: {e}", stamp());
            return;
        }
    };
    if matches!(ev.kind, EventKind::Access(_)) {
        return;
    }
    for p in ev.paths {
        if !ignored(root, &p) {
            into.insert(p);
        }
    }
}

fn describe(root: &Path, changed: &BTreeSet<PathBuf>) -> String {
    let names: Vec<String> = changed
        .iter()
        .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
        .collect();
    if names.len() > 3 {
        format!("{}, … {} files", names[..3].join(", "), names.len())
    } else {
        names.join(", ")
    }
}

fn is_manifest_change(manifest: &Path, p: &Path) -> bool {
    p == manifest || matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
}

/// One reload; `Ok` names what happened.
async fn reload(
    client: &Client,
    args: &AppArgs,
    manifest: &Path,
    root: &Path,
    changed: &BTreeSet<PathBuf>,
    deployed: &mut Option<Deployed>,
) -> Result<String> {
    check_syntax(root, changed).await?;
    let manifest_changed = changed.iter().any(|p| is_manifest_change(manifest, p));
    let Some(d) = deployed.as_mut().filter(|_| !manifest_changed) else {
        *deployed = Some(full_deploy(client, args, manifest).await?);
        return Ok("redeployed the app".into());
    };
    // Code paths the change touches.
    let mut touched: Vec<PathBuf> = d
        .shas
        .keys()
        .filter(|code| changed.iter().any(|p| p.starts_with(code)))
        .cloned()
        .collect();
    touched.sort();
    if touched.is_empty() {
        return Ok("nothing to redeploy".into());
    }
    let mut updated = Vec::new();
    for code in touched {
        let c = code.clone();
        let zip = tokio::task::spawn_blocking(move || package::bundle(&c)).await??;
        let sha = hex::encode(Sha256::digest(&zip));
        if d.shas.get(&code) == Some(&sha) {
            continue;
        }
        let functions: Vec<_> = d
            .app
            .functions
            .iter()
            .filter(|f| canonical(&f.code).as_deref() == Some(code.as_path()))
            .cloned()
            .collect();
        if functions.iter().any(|f| f.alias.is_some()) {
            // Versions and aliases are the app deploy's business.
            *deployed = Some(full_deploy(client, args, manifest).await?);
            return Ok(format!(
                "redeployed the app ({} publishes versions)",
                code.strip_prefix(root).unwrap_or(&code).display()
            ));
        }
        let sha = app_deploy::upload_zip(client, zip).await?;
        for f in &functions {
            app_deploy::put_function(client, &f.name, &app_deploy::function_body(f, &sha))
                .await
                .with_context(|| {
                    if updated.is_empty() {
                        format!("updating function {}", f.name)
                    } else {
                        format!(
                            "updating function {} ({} already run the new code)",
                            f.name,
                            updated.join(", ")
                        )
                    }
                })?;
            updated.push(f.name.clone());
        }
        d.shas.insert(code, sha);
    }
    if updated.is_empty() {
        Ok("no function's code changed".into())
    } else {
        Ok(format!("reloaded {}", updated.join(", ")))
    }
}

fn canonical(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

/// `nimbus deploy` of the app, then what it deployed: the manifest as loaded and
/// the sha256 of each bundle.
async fn full_deploy(client: &Client, args: &AppArgs, manifest: &Path) -> Result<Deployed> {
    let mut a = args.clone();
    a.file = Some(manifest.to_path_buf());
    let code = app_deploy::run(client, a).await?;
    if code != 0 {
        anyhow::bail!("the app was not deployed; the last good version keeps serving");
    }
    let opts = nimbus_manifest::Options {
        stage: args.stage.clone(),
        region: args.region.clone(),
        stack_name: args.stack_name.clone(),
        parameter_overrides: nimbus_manifest::parse_parameter_overrides(&args.parameter_overrides)
            .map_err(|e| anyhow!("--parameter-overrides {e}"))?,
        env: std::env::vars().collect(),
    };
    let app = nimbus_manifest::load(manifest, &opts)
        .app
        .context("the manifest changed during the deploy")?;
    let mut shas = BTreeMap::new();
    for f in &app.functions {
        let Some(code) = canonical(&f.code) else {
            continue;
        };
        if shas.contains_key(&code) {
            continue;
        }
        let c = code.clone();
        let zip = tokio::task::spawn_blocking(move || package::bundle(&c)).await??;
        shas.insert(code, hex::encode(Sha256::digest(&zip)));
    }
    Ok(Deployed { app, shas })
}

/// Compile changed Python files and `node --check` changed JavaScript files; the
/// error names the file and line. A missing interpreter skips its check.
async fn check_syntax(root: &Path, changed: &BTreeSet<PathBuf>) -> Result<()> {
    let existing = |exts: &[&str]| -> Vec<PathBuf> {
        changed
            .iter()
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
                    && p.is_file()
            })
            .map(|p| p.strip_prefix(root).unwrap_or(p).to_path_buf())
            .collect()
    };
    let py = existing(&["py"]);
    if !py.is_empty() {
        const COMPILE: &str = "import sys\n\
            bad = 0\n\
            for p in sys.argv[1:]:\n    \
                try:\n        \
                    compile(open(p, 'rb').read(), p, 'exec')\n    \
                except SyntaxError as e:\n        \
                    bad = 1\n        \
                    print(f'{e.filename}:{e.lineno}:{e.offset}: {type(e).__name__}: {e.msg}')\n\
            sys.exit(bad)\n";
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg("-c").arg(COMPILE).args(&py).current_dir(root);
        checked(cmd, "python3").await?;
    }
    for js in existing(&["js", "mjs", "cjs"]) {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg("--check").arg(&js).current_dir(root);
        checked(cmd, "node").await?;
    }
    Ok(())
}

async fn checked(mut cmd: tokio::process::Command, tool: &str) -> Result<()> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(20), cmd.output()).await {
        Err(_) => anyhow::bail!("the {tool} syntax check did not finish in 20 s"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "{} note: {tool} is not on PATH; changed files are not syntax-checked",
                stamp()
            );
            return Ok(());
        }
        Ok(r) => r.with_context(|| format!("cannot run {tool}"))?,
    };
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::bail!("syntax error, nothing was deployed:\n{}", text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_dependencies_caches_and_editor_files() {
        let root = Path::new("/app");
        for p in [
            "/app/node_modules/x/index.js",
            "/app/src/__pycache__/orders.cpython-312.pyc",
            "/app/.git/index",
            "/app/src/.orders.py.swp",
            "/app/src/orders.py~",
            "/app/src/4913",
            "/app/.nimbus/data.db",
        ] {
            assert!(ignored(root, Path::new(p)), "{p}");
        }
        for p in [
            "/app/src/orders.py",
            "/app/serverless.yml",
            "/app/handler.mjs",
        ] {
            assert!(!ignored(root, Path::new(p)), "{p}");
        }
    }
}

//! The no-op functions under test, their bundles, and the host programs Nimbus will
//! run them on (resolved the way the server resolves them).

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PY_NOOP: &str = "def handler(event, context):\n    return None\n";
pub const NODE_NOOP: &str = "exports.handler = async () => null;\n";

/// A zip of `(name, content, mode)` entries.
pub fn zip(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content, mode) in files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        w.start_file(*name, opts)?;
        w.write_all(content)?;
    }
    Ok(w.finish()?.into_inner())
}

#[derive(Debug, Clone)]
pub struct Host {
    pub path: PathBuf,
    pub version: String,
}

fn probe(program: &str, flag: &str, script: &str) -> Option<(PathBuf, String)> {
    let out = Command::new(program)
        .args([flag, script])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let s = String::from_utf8(out.stdout).ok()?;
    let mut lines = s.lines();
    let path = PathBuf::from(lines.next()?.trim());
    let version = lines.next()?.trim().to_string();
    path.is_absolute().then_some((path, version))
}

/// The interpreter Nimbus picks for `python3.<minor>`: the exact minor when
/// `python3.<minor>` runs, else the closest installed minor (newer on a tie), probing
/// `python3.8` … `python3.20` and `python3` on this process's PATH — the same rule and
/// the same PATH as the server started by the benchmark (crates/runtime/src/interpreters.rs).
pub fn python_for(minor: u32) -> Option<Host> {
    let script = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])";
    let minor_of = |v: &str| v.split('.').nth(1).and_then(|m| m.parse::<u32>().ok());
    if let Some((p, v)) = probe(&format!("python3.{minor}"), "-c", script) {
        if minor_of(&v) == Some(minor) {
            return Some(Host {
                path: p,
                version: v,
            });
        }
    }
    let mut best: Option<(PathBuf, String, u32)> = None;
    for cand in (8..=20)
        .map(|m| format!("python3.{m}"))
        .chain(["python3".into()])
    {
        if let Some((p, v)) = probe(&cand, "-c", script) {
            let Some(m) = minor_of(&v) else { continue };
            let better = match &best {
                None => true,
                Some((_, _, b)) => {
                    let (dn, db) = (m.abs_diff(minor), b.abs_diff(minor));
                    dn < db || (dn == db && m > *b)
                }
            };
            if better {
                best = Some((p, v, m));
            }
        }
    }
    best.map(|(path, version, _)| Host { path, version })
}

/// The minor version of the host's `python3`.
pub fn python3_minor() -> Option<u32> {
    let (_, v) = probe(
        "python3",
        "-c",
        "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])",
    )?;
    v.split('.').nth(1)?.parse().ok()
}

pub fn node() -> Option<Host> {
    probe(
        "node",
        "-e",
        "console.log(process.execPath); console.log(process.versions.node)",
    )
    .map(|(path, version)| Host { path, version })
}

/// `noop-bootstrap`, built next to this binary.
pub fn noop_bootstrap() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("exe dir")?.join("noop-bootstrap");
    anyhow::ensure!(
        p.is_file(),
        "{} not found: build with `cargo build --release -p nimbus-bench`",
        p.display()
    );
    Ok(p)
}

fn bare_command(program: &Path, args: &[&str], home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "en_US.UTF-8")
        .env("TZ", ":UTC")
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Spawn-to-first-stdout-byte time of `program args` in ms (the program writes one
/// byte when it is ready); the process is then waited for, untimed.
pub fn bare_ready_ms(program: &Path, args: &[&str], home: &Path) -> Result<f64> {
    let t0 = std::time::Instant::now();
    let mut child = bare_command(program, args, home)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", program.display()))?;
    let mut byte = [0u8; 1];
    let n = std::io::Read::read(child.stdout.as_mut().expect("piped"), &mut byte)?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let status = child.wait()?;
    anyhow::ensure!(
        n == 1 && status.success(),
        "{} {:?} did not write its ready byte: {status}",
        program.display(),
        args
    );
    Ok(ms)
}

/// Process spawn-to-exit time of `program args` in ms, with the clean environment an
/// instance gets (PATH, LANG, TZ, HOME) and stdio on /dev/null.
pub fn bare_start_ms(program: &Path, args: &[&str], home: &Path) -> Result<f64> {
    let t0 = std::time::Instant::now();
    let status = bare_command(program, args, home)
        .status()
        .with_context(|| format!("run {}", program.display()))?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        status.success(),
        "{} {:?} failed: {status}",
        program.display(),
        args
    );
    Ok(ms)
}

//! What the numbers were measured on: host, load, date, commit; and CPU time of
//! processes (from /proc) to split a run's CPU between server and instances.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(f64::NAN)
}

fn cmd(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `HEAD`'s short hash, with `+dirty` when tracked files differ from it.
pub fn git_commit(repo: &Path) -> String {
    let Some(head) = cmd("git", &["rev-parse", "--short=12", "HEAD"], repo) else {
        return "unknown".into();
    };
    let dirty = cmd(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        repo,
    )
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}+dirty")
    } else {
        head
    }
}

/// UTC now as `YYYY-MM-DD HH:MM:SSZ` (civil-from-days, no date crate needed).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn info(repo: &Path) -> Value {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({
        "nproc": nproc,
        "cpu_model": cpu_model(),
        "mem_total_gib": (mem_total_gib() * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default(),
        "date": utc_now(),
        "git_commit": git_commit(repo),
        "loadavg_start": loadavg(),
    })
}

fn clk_tck() -> f64 {
    cmd("getconf", &["CLK_TCK"], Path::new("/"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0)
}

/// utime+stime of a process (all its threads), in ms; 0 when it is gone.
pub fn cpu_ms(pid: u32) -> f64 {
    thread_local!(static TCK: f64 = clk_tck());
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)": state is field 0, utime 11, stime 12.
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    TCK.with(|t| ticks * 1000.0 / t)
}

pub fn cpu_ms_sum(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_ms(*p)).sum()
}

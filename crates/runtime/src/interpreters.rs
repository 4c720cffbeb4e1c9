//! Finding the host interpreter for a runtime name.
//!
//! `python3.12` runs on the host's `python3.12` when it exists; otherwise on the
//! closest minor version available (a notice says so once, at deploy). `nodejs*` runs
//! on the host's `node`. Each candidate is executed once to learn its real executable
//! path (so version-manager shims such as pyenv's are bypassed at every cold start)
//! and the answer is cached for the life of the server.

use nimbus_core::Runtime;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The interpreter chosen for a runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub path: PathBuf,
    /// e.g. `3.11` or `20.20.2`.
    pub version: String,
    /// Set when the host lacks the exact version asked for.
    pub notice: Option<String>,
}

#[derive(Default)]
pub struct Interpreters {
    cache: Mutex<HashMap<Runtime, Option<Interpreter>>>,
    probes: Mutex<HashMap<String, Option<(PathBuf, String)>>>,
}

impl Interpreters {
    pub fn new() -> Self {
        Self::default()
    }

    /// The interpreter for `runtime`, or `None` for `provided` runtimes and when
    /// nothing suitable is installed. Blocking (runs probes on first use).
    pub fn resolve(&self, runtime: Runtime) -> Option<Interpreter> {
        if let Some(hit) = self.cache.lock().unwrap().get(&runtime) {
            return hit.clone();
        }
        let found = match runtime {
            Runtime::Python { minor } => self.python(minor),
            Runtime::Node { major } => self.node(major),
            Runtime::Provided(_) => None,
        };
        self.cache.lock().unwrap().insert(runtime, found.clone());
        found
    }

    fn probe(&self, program: &str, script_flag: &str, script: &str) -> Option<(PathBuf, String)> {
        if let Some(hit) = self.probes.lock().unwrap().get(program) {
            return hit.clone();
        }
        let out = Command::new(program)
            .args([script_flag, script])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let s = String::from_utf8(o.stdout).ok()?;
                let mut lines = s.lines();
                let path = PathBuf::from(lines.next()?.trim());
                let version = lines.next()?.trim().to_string();
                path.is_absolute().then_some((path, version))
            });
        self.probes
            .lock()
            .unwrap()
            .insert(program.to_string(), out.clone());
        out
    }

    fn python_minor(&self, program: &str) -> Option<(PathBuf, u32)> {
        let (path, v) = self.probe(
            program,
            "-c",
            "import sys; print(sys.executable); print(sys.version_info[1])",
        )?;
        Some((path, v.parse().ok()?))
    }

    fn python(&self, minor: u32) -> Option<Interpreter> {
        if let Some((path, m)) = self.python_minor(&format!("python3.{minor}")) {
            if m == minor {
                return Some(Interpreter {
                    path,
                    version: format!("3.{m}"),
                    notice: None,
                });
            }
        }
        // Closest available minor; on a tie prefer the newer one.
        let mut best: Option<(PathBuf, u32)> = None;
        for cand in (8..=20)
            .map(|m| format!("python3.{m}"))
            .chain(["python3".to_string()])
        {
            if let Some((path, m)) = self.python_minor(&cand) {
                let better = match &best {
                    None => true,
                    Some((_, b)) => {
                        let (d_new, d_old) = (m.abs_diff(minor), b.abs_diff(minor));
                        d_new < d_old || (d_new == d_old && m > *b)
                    }
                };
                if better {
                    best = Some((path, m));
                }
            }
        }
        best.map(|(path, m)| Interpreter {
            notice: (m != minor).then(|| {
                format!(
                    "python3.{minor} is not installed on this host; running python3.{m} ({})",
                    path.display()
                )
            }),
            path,
            version: format!("3.{m}"),
        })
    }

    fn node(&self, major: u32) -> Option<Interpreter> {
        let (path, version) = self.probe(
            "node",
            "-e",
            "console.log(process.execPath); console.log(process.versions.node)",
        )?;
        let have: u32 = version.split('.').next()?.parse().ok()?;
        Some(Interpreter {
            notice: (have != major).then(|| {
                format!(
                    "nodejs{major}.x is not installed on this host; running Node.js {version} ({})",
                    path.display()
                )
            }),
            path,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_some_python_and_explains_substitutes() {
        let i = Interpreters::new();
        // 3.8 is old enough that CI hosts do not have it; whatever runs instead says so.
        let py = i
            .resolve("python3.8".parse().unwrap())
            .expect("a python3 on the host");
        assert!(py.path.is_absolute());
        if py.version != "3.8" {
            assert!(py.notice.unwrap().contains("python3.8 is not installed"));
        }
        assert!(i.resolve("provided".parse().unwrap()).is_none());
    }
}

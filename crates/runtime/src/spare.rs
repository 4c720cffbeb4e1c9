//! Pre-started interpreter spares: the Node.js and Python bootstraps, already
//! started and loaded, waiting to become the next cold start's instance.
//!
//! A cold start pays for the interpreter's own start-up and for loading the
//! bootstrap before it can even look at the function's code. A spare has paid that
//! already. It is started through the same [`Driver::spawn`] path as an instance
//! (environment cleared, own session, `PR_SET_PDEATHSIG`, rlimits, stdout+stderr
//! pipe, its own cgroup from before `exec`), but with a *generic* environment (no
//! function's variables, nothing of the server's), an empty directory as cwd and
//! `$HOME`, and a control channel on fd 3 (one end of a `socketpair`). The
//! bootstrap loads, writes one byte (`R`) on fd 3 to say it is ready, and blocks
//! reading fd 3 until EOF.
//!
//! Claiming a spare ([`Spares::claim`]) turns it into one instance, once:
//! * its cgroup (created for it at spawn, so everything it ever allocated is
//!   charged there, on cgroup v1 and v2 alike: no charge has to move) gets the
//!   instance's memory cap, and its `RLIMIT_FSIZE` (and `RLIMIT_DATA` without
//!   cgroups) are set with `prlimit(2)`, soft and hard;
//! * the server sends `{"env": {...}, "cwd": "..."}` and closes its end. The
//!   bootstrap replaces its whole environment with `env` (what a normal spawn would
//!   have passed, `AWS_LAMBDA_RUNTIME_API` included), rewrites the kernel's copy of
//!   the start-up environment (`/proc/self/environ`) to match, closes fd 3, chdirs
//!   to the code and carries on exactly as a normally started bootstrap.
//!
//! A spare is only used when it is exactly equivalent to a fresh start: only
//! `nodejs*` and `python3.*`; not when the function's environment sets a variable
//! the interpreter, the C library or the dynamic loader read while starting
//! ([`read_at_start`]); for Node, only for the memory size the spare was started
//! with (Node sizes the V8 heap from the cgroup's memory limit at start-up, so Node
//! spares are keyed by memory size). Anything else, no ready spare, or a failed
//! claim: the caller spawns normally. Spares of a key are created after the first
//! cold start of that key and replaced after each claim, once the request that
//! paid for the cold start has its answer (never on the request's path). Spares are not
//! instances: they belong to no function, appear in no pool, census or metric.
//! They die with the server (`PR_SET_PDEATHSIG`, kill on drop) and a restarted
//! server sweeps their cgroups like any instance's.

use crate::sandbox::{Driver, ProcSpec, Process, CONTROL_FD};
use nimbus_core::Runtime;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How the spares of a server are made.
#[derive(Debug, Clone)]
pub struct SpareSettings {
    /// Ready spares kept per key; 0 disables spares.
    pub per_key: usize,
    /// Where the bootstraps were written (as for instances).
    pub runtime_dir: PathBuf,
    /// `PYTHONPYCACHEPREFIX` of python instances, so the spare's bootstrap bytecode
    /// comes from the same cache.
    pub pycache_dir: PathBuf,
    /// Parent of the spares' empty home directory.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Node,
    Python,
}

/// Which spares can serve an instance: same interpreter, same bootstrap, and for
/// Node the same memory size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpareKey {
    interpreter: PathBuf,
    kind: Kind,
    /// The cgroup memory limit the spare starts under (Node: the instance's).
    memory_mb: u32,
}

/// Why a ready spare could not become an instance (the caller spawns normally).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the instance's environment ({need} bytes) does not fit the spare's ({have} bytes)")]
    EnvTooLarge { need: usize, have: usize },
    #[error("could not apply the instance's limits: {0}")]
    Limits(#[source] std::io::Error),
    #[error("could not send the instance to the spare: {0}")]
    Send(#[source] std::io::Error),
}

/// Variables an interpreter, the C library or the dynamic loader read once while
/// starting (or the bootstrap reads before it waits): a spare started without them
/// would not behave like a process started with them, so their presence in a
/// function's environment means a normal spawn.
///
/// `TZ` is not here: both bootstraps re-read it after the claim (`time.tzset()`,
/// and Node resets its time-zone cache on assignment to `process.env.TZ`).
pub fn read_at_start(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "NODE_",
        "PYTHON",
        "LD_",
        "MALLOC_",
        "GLIBC_",
        "UV_",
        "OPENSSL_",
        "SSL_CERT_",
        "LC_",
        "_NIMBUS",
    ];
    const NAMES: &[&str] = &[
        "LANG",
        "LANGUAGE",
        "LOCPATH",
        "GCONV_PATH",
        "TZDIR",
        // Python's `site` adds ~/.local/... to sys.path at start if it exists.
        "HOME",
        "NO_COLOR",
        "FORCE_COLOR",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name)
}

/// Bytes the kernel keeps for an environment (`/proc/<pid>/environ`).
fn env_block_len<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    env.into_iter().map(|(k, v)| k.len() + v.len() + 2).sum()
}

/// Padding in a spare's environment, so the claimed instance's environment fits in
/// the kernel's copy (functions have at most 4 KB of their own variables).
const ENV_PAD: usize = 16 * 1024;

/// A ready or starting spare.
struct Spare {
    id: u64,
    process: Option<Process>,
    ctrl: UnixStream,
    ready: bool,
    env_capacity: usize,
    /// Started in a mount namespace (its /tmp is a sized tmpfs).
    tmpfs_capped: bool,
}

impl Spare {
    /// Whether the bootstrap said it is loaded; `None` when the spare is gone.
    fn poll_ready(&mut self) -> Option<bool> {
        if self.process.as_ref()?.exit.borrow().is_some() {
            return None;
        }
        if self.ready {
            return Some(true);
        }
        let mut b = [0u8; 1];
        match self.ctrl.read(&mut b) {
            Ok(1) if b[0] == b'R' => {
                self.ready = true;
                Some(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(false),
            _ => None,
        }
    }

    /// Make it the instance: limits, then the spec. Consumes the process on success.
    fn become_instance(
        &mut self,
        env: &BTreeMap<&String, &String>,
        cwd: &Path,
        memory_mb: u32,
        file_size_max: u64,
        opt_dir: Option<&Path>,
    ) -> Result<Process, ClaimError> {
        let need = env_block_len(env.iter().map(|(k, v)| (*k, *v)));
        if need > self.env_capacity {
            return Err(ClaimError::EnvTooLarge {
                need,
                have: self.env_capacity,
            });
        }
        let process = self.process.as_ref().expect("a spare is claimed once");
        process
            .set_instance_limits(memory_mb, file_size_max, self.tmpfs_capped)
            .map_err(ClaimError::Limits)?;
        // `opt`: the layer tree the instance sees at /opt (null: none).
        let msg = serde_json::json!({
            "env": env,
            "cwd": cwd.to_string_lossy(),
            "opt": opt_dir.map(|d| d.to_string_lossy()),
        });
        let send = (|| {
            self.ctrl.set_nonblocking(false)?;
            self.ctrl.set_write_timeout(Some(Duration::from_secs(1)))?;
            self.ctrl.write_all(msg.to_string().as_bytes())?;
            self.ctrl.shutdown(std::net::Shutdown::Write)
        })();
        send.map_err(ClaimError::Send)?;
        Ok(self.process.take().expect("checked above"))
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.kill();
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(move || p.cleanup());
                }
                Err(_) => p.cleanup(),
            }
        }
    }
}

#[derive(Default)]
struct Slot {
    spares: Vec<Spare>,
    starting: usize,
}

/// The spares of one server. Shared by the [`Driver`] clones.
pub struct Spares {
    driver: Driver,
    settings: SpareSettings,
    slots: Mutex<HashMap<SpareKey, Slot>>,
    next_id: AtomicU64,
    /// Set by [`Spares::shutdown`].
    closed: AtomicBool,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares")
            .field("per_key", &self.settings.per_key)
            .finish_non_exhaustive()
    }
}

impl Spares {
    /// `driver` must be one without spares (it only spawns).
    pub fn new(driver: Driver, settings: SpareSettings) -> Arc<Self> {
        let home = settings.dir.join("home");
        // Whatever an earlier run left there belongs to processes that are gone.
        let _ = std::fs::remove_dir_all(&settings.dir);
        if let Err(e) = std::fs::create_dir_all(&home) {
            tracing::warn!(dir = %home.display(), error = %e, "cannot create the spares' home dir");
        }
        Arc::new(Self {
            driver,
            settings,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        })
    }

    /// The key of the spares that could serve an instance with this runtime,
    /// interpreter, memory size and function environment; `None` when a spare would
    /// not be equivalent to a normal start.
    pub fn key(
        &self,
        runtime: Runtime,
        interpreter: Option<&Path>,
        memory_mb: u32,
        environment: &BTreeMap<String, String>,
    ) -> Option<SpareKey> {
        if self.settings.per_key == 0 {
            return None;
        }
        let (kind, memory_mb) = match runtime {
            Runtime::Node { .. } => (Kind::Node, memory_mb),
            // Python's start does not depend on the memory limit; the claim sets it.
            Runtime::Python { .. } => (Kind::Python, nimbus_core::limits::MEMORY_MIN_MB),
            Runtime::Provided(_) => return None,
        };
        if let Some(name) = environment.keys().find(|k| read_at_start(k)) {
            tracing::debug!(variable = %name, "the function's environment rules out a spare");
            return None;
        }
        Some(SpareKey {
            interpreter: interpreter?.to_path_buf(),
            kind,
            memory_mb,
        })
    }

    /// Turn a ready spare of `key` into an instance with this environment (the
    /// complete one a normal spawn would pass), cwd, limits and layer tree
    /// (`opt_dir`, as [`ProcSpec::opt_dir`]). `None` when no spare is ready or the
    /// claim failed (that spare is then killed).
    pub fn claim(
        &self,
        key: &SpareKey,
        spec: &ProcSpec,
        on_uid: &dyn Fn(Option<u32>),
    ) -> Option<Process> {
        let (env, cwd, memory_mb, file_size_max) =
            (&spec.env, &spec.cwd, spec.memory_mb, spec.file_size_max);
        let opt_dir = spec.opt_dir.as_deref();
        let mut spare = {
            let mut slots = self.slots.lock().unwrap();
            let slot = slots.get_mut(key)?;
            let mut found = None;
            let mut i = 0;
            while i < slot.spares.len() {
                match slot.spares[i].poll_ready() {
                    Some(true) => {
                        found = Some(slot.spares.swap_remove(i));
                        break;
                    }
                    Some(false) => i += 1,
                    None => {
                        // Died: dropping it cleans up; replenish() replaces it.
                        slot.spares.swap_remove(i);
                    }
                }
            }
            found?
        };
        // Later entries win, as with Command::envs; sorted, as Command passes them.
        let env: BTreeMap<&String, &String> = env.iter().map(|(k, v)| (k, v)).collect();
        let iso = self.driver.isolation();
        let mut opt_seen = opt_dir;
        if iso.mount_ns() {
            // Mount the code (and layers) into the spare's namespace first.
            let pid = spare.process.as_ref().map_or(0, |p| p.pid);
            let mounted = iso
                .claimer()
                .ok_or_else(|| std::io::Error::other("no claim helper"))
                .and_then(|c| {
                    let code = spec
                        .code_dir
                        .as_deref()
                        .ok_or_else(|| std::io::Error::other("no code dir"))?;
                    c.mount_into(pid, code, opt_dir, spec.tmp_mb)
                });
            if let Err(e) = mounted {
                tracing::warn!(spare = spare.id, error = %e, "could not mount the code into a spare; starting normally");
                return None;
            }
            opt_seen = opt_dir.map(|_| Path::new(crate::layers::OPT_MOUNT));
        }
        on_uid(spare.process.as_ref().and_then(|p| p.uid()));
        match spare.become_instance(&env, cwd, memory_mb, file_size_max, opt_seen) {
            Ok(p) => {
                tracing::debug!(spare = spare.id, pid = p.pid, "claimed a spare");
                Some(p)
            }
            Err(e) => {
                tracing::warn!(spare = spare.id, error = %e, "could not claim a spare; starting normally");
                None
            }
        }
    }

    /// Stop every spare and start no more. For the server's shutdown: without it
    /// spares die with the server process (`PR_SET_PDEATHSIG`) and their empty
    /// cgroups wait for the next start's sweep.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let all: Vec<Spare> = {
            let mut slots = self.slots.lock().unwrap();
            slots
                .values_mut()
                .flat_map(|s| s.spares.drain(..))
                .collect()
        };
        let _ = tokio::task::spawn_blocking(move || {
            for mut spare in all {
                if let Some(p) = spare.process.take() {
                    p.cleanup();
                }
            }
        })
        .await;
    }

    /// Start spares of `key` until it has its count (ready or starting). Called
    /// after a cold start's first request, so a replacement never competes with it.
    pub fn replenish(self: &Arc<Self>, key: SpareKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the server is going away
        };
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let missing = {
            let mut slots = self.slots.lock().unwrap();
            let slot = slots.entry(key.clone()).or_default();
            let have = slot.spares.len() + slot.starting;
            let missing = self.settings.per_key.saturating_sub(have);
            slot.starting += missing;
            missing
        };
        for _ in 0..missing {
            let me = Arc::clone(self);
            let key = key.clone();
            runtime.spawn(async move { me.start_one(key) });
        }
    }

    fn start_one(self: Arc<Self>, key: SpareKey) {
        let started = self.spawn(&key);
        let mut slots = self.slots.lock().unwrap();
        let slot = slots.entry(key.clone()).or_default();
        slot.starting = slot.starting.saturating_sub(1);
        if self.closed.load(Ordering::SeqCst) {
            return; // dropping the spare kills it
        }
        match started {
            Ok(spare) => {
                let (id, exit) = (spare.id, spare.process.as_ref().map(|p| p.exit.clone()));
                slot.spares.push(spare);
                if let Some(exit) = exit {
                    tokio::spawn(watch(Arc::downgrade(&self), key, id, exit));
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not start a spare"),
        }
    }

    fn spawn(&self, key: &SpareKey) -> std::io::Result<Spare> {
        let runtime = match key.kind {
            Kind::Node => Runtime::Node { major: 0 },
            Kind::Python => Runtime::Python { minor: 0 },
        };
        let mount_ns = self.driver.isolation().mount_ns();
        let runtime_dir = if mount_ns {
            PathBuf::from(crate::isolation::RUNTIME_ROOT)
        } else {
            self.settings.runtime_dir.clone()
        };
        let (program, args) =
            crate::instance::bootstrap_command(runtime, &key.interpreter, &runtime_dir)
                .ok_or_else(|| std::io::Error::other("no bootstrap for this runtime"))?;
        // In a mount namespace the spare's home is its private /tmp, as the
        // instance's will be.
        let home = if mount_ns {
            "/tmp".to_string()
        } else {
            self.settings
                .dir
                .join("home")
                .to_string_lossy()
                .into_owned()
        };
        let mut env: Vec<(String, String)> = vec![
            // As every instance has them, so nothing read at start differs.
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("LANG".into(), "en_US.UTF-8".into()),
            ("TZ".into(), ":UTC".into()),
            ("HOME".into(), home.clone()),
            ("TMPDIR".into(), home.clone()),
            ("_NIMBUS_SPARE".into(), CONTROL_FD.to_string()),
            ("_NIMBUS_SPARE_PAD".into(), ".".repeat(ENV_PAD)),
        ];
        if key.kind == Kind::Python && !mount_ns {
            env.push((
                "PYTHONPYCACHEPREFIX".into(),
                self.settings.pycache_dir.to_string_lossy().into_owned(),
            ));
        }
        let env_capacity = env_block_len(env.iter().map(|(k, v)| (k, v)));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let spec = ProcSpec {
            function: None,
            instance_id: format!("spare-{:08x}{id:08x}", std::process::id()),
            program,
            args,
            env,
            cwd: PathBuf::from(home),
            memory_mb: key.memory_mb,
            pids_max: nimbus_core::limits::PIDS_PER_INSTANCE,
            // Lambda's largest /tmp; the claim lowers it to the function's.
            file_size_max: crate::instance::SPARE_FILE_SIZE_MAX,
            claimable: true,
            opt_dir: None,
            code_dir: None,
            interpreter: Some(key.interpreter.clone()),
            tmp_mb: 10_240,
        };
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let process = self
            .driver
            .spawn_with_control(&spec, Some(OwnedFd::from(theirs)))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        tracing::debug!(spare = id, pid = process.pid, kind = ?key.kind, memory_mb = key.memory_mb, "started a spare");
        Ok(Spare {
            id,
            process: Some(process),
            ctrl: ours,
            ready: false,
            env_capacity,
            tmpfs_capped: mount_ns,
        })
    }

    /// Number of ready spares of `key`; for tests.
    #[cfg(test)]
    fn ready(&self, key: &SpareKey) -> usize {
        let mut slots = self.slots.lock().unwrap();
        slots.get_mut(key).map_or(0, |s| {
            s.spares
                .iter_mut()
                .map(|sp| sp.poll_ready())
                .filter(|r| *r == Some(true))
                .count()
        })
    }
}

/// Drop a spare that exits before it is claimed; replace it if it had lived a
/// while (a spare that dies at once is not restarted in a loop; the next cold start
/// of its key tries again).
async fn watch(
    spares: Weak<Spares>,
    key: SpareKey,
    id: u64,
    mut exit: tokio::sync::watch::Receiver<Option<crate::sandbox::Exit>>,
) {
    let born = Instant::now();
    let _ = exit.wait_for(|e| e.is_some()).await;
    let Some(spares) = spares.upgrade() else {
        return;
    };
    let removed = {
        let mut slots = spares.slots.lock().unwrap();
        let Some(slot) = slots.get_mut(&key) else {
            return;
        };
        let before = slot.spares.len();
        slot.spares.retain(|s| s.id != id);
        before != slot.spares.len()
    };
    if removed {
        tracing::warn!(spare = id, "a spare exited before it was claimed");
        if born.elapsed() > Duration::from_secs(1) {
            spares.replenish(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_variables_rule_out_a_spare() {
        for v in [
            "NODE_OPTIONS",
            "NODE_PATH",
            "PYTHONPATH",
            "PYTHONHASHSEED",
            "LD_PRELOAD",
            "LC_ALL",
            "LANG",
            "MALLOC_ARENA_MAX",
            "HOME",
            "_NIMBUS_SPARE",
        ] {
            assert!(read_at_start(v), "{v}");
        }
        for v in [
            "TZ",
            "TABLE_NAME",
            "PATH",
            "TMPDIR",
            "AWS_LAMBDA_LOG_FORMAT",
        ] {
            assert!(!read_at_start(v), "{v}");
        }
    }

    fn python_spares(dir: &Path) -> Option<(Arc<Spares>, SpareKey)> {
        let runtime = Runtime::Python { minor: 12 };
        let interp = crate::interpreters::Interpreters::new().resolve(runtime)?;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtimes");
        let driver = Driver::new("sparetest");
        let spares = Spares::new(
            driver,
            SpareSettings {
                per_key: 1,
                runtime_dir: root,
                pycache_dir: dir.join("pycache"),
                dir: dir.join("spares"),
            },
        );
        let key = spares.key(runtime, Some(&interp.path), 512, &BTreeMap::new())?;
        Some((spares, key))
    }

    fn test_spec(env: &[(String, String)], code: &Path) -> ProcSpec {
        ProcSpec {
            function: None,
            instance_id: "t".into(),
            program: PathBuf::new(),
            args: vec![],
            env: env.to_vec(),
            cwd: code.to_path_buf(),
            memory_mb: 256,
            pids_max: 64,
            file_size_max: 1 << 20,
            claimable: false,
            opt_dir: None,
            code_dir: Some(code.to_path_buf()),
            interpreter: None,
            tmp_mb: 16,
        }
    }

    async fn wait_ready(spares: &Spares, key: &SpareKey) {
        for _ in 0..200 {
            if spares.ready(key) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no spare became ready");
    }

    #[tokio::test]
    async fn a_claimed_spare_runs_the_instance_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let Some((spares, key)) = python_spares(dir.path()) else {
            eprintln!("no python3 on this host; skipped");
            return;
        };
        // Python spares are keyed without the memory size; Node ones with it.
        assert_eq!(key.memory_mb, nimbus_core::limits::MEMORY_MIN_MB);
        let with_opts = BTreeMap::from([("PYTHONPATH".to_string(), "/x".to_string())]);
        assert!(spares
            .key(
                Runtime::Python { minor: 12 },
                Some(&key.interpreter),
                128,
                &with_opts
            )
            .is_none());
        assert!(spares
            .key(
                Runtime::Provided(nimbus_core::runtime::ProvidedFlavor::Al2023),
                Some(&key.interpreter),
                128,
                &BTreeMap::new()
            )
            .is_none());

        assert!(
            spares
                .claim(&key, &test_spec(&[], dir.path()), &|_| {})
                .is_none(),
            "none started yet"
        );
        spares.replenish(key.clone());
        wait_ready(&spares, &key).await;

        let code = dir.path().join("code");
        std::fs::create_dir_all(&code).unwrap();
        std::fs::write(code.join("app.py"), "def handler(e, c):\n    return 1\n").unwrap();
        let mut api = crate::api::RuntimeApi::start().await.unwrap();
        let env: Vec<(String, String)> = vec![
            ("AWS_LAMBDA_RUNTIME_API".into(), api.addr.to_string()),
            ("_HANDLER".into(), "app.handler".into()),
            (
                "LAMBDA_TASK_ROOT".into(),
                code.to_string_lossy().into_owned(),
            ),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ];
        let process = spares
            .claim(&key, &test_spec(&env, &code), &|_| {})
            .expect("a ready spare is claimed");
        assert_eq!(spares.ready(&key), 0, "each spare serves one instance");
        let ev = tokio::time::timeout(Duration::from_secs(10), api.events.recv()).await;
        assert!(
            matches!(ev, Ok(Some(crate::api::ApiEvent::Ready))),
            "the claimed spare loaded the handler and asked for work"
        );
        let environ = std::fs::read(format!("/proc/{}/environ", process.pid)).unwrap();
        let text = String::from_utf8_lossy(&environ);
        assert!(text.starts_with("AWS_LAMBDA_RUNTIME_API="), "{text:.200}");
        assert!(!text.contains("_NIMBUS_SPARE"));
        process.kill();

        // The replacement.
        spares.replenish(key.clone());
        wait_ready(&spares, &key).await;
        // An environment that does not fit the spare's is refused, and that spare killed.
        let big = vec![("BIG".to_string(), "x".repeat(ENV_PAD + 1024))];
        assert!(spares
            .claim(&key, &test_spec(&big, &code), &|_| {})
            .is_none());
        assert_eq!(spares.ready(&key), 0);
        tokio::task::spawn_blocking(move || process.cleanup())
            .await
            .unwrap();

        // Shutdown stops the spares and starts no more.
        spares.replenish(key.clone());
        wait_ready(&spares, &key).await;
        let pid = {
            let slots = spares.slots.lock().unwrap();
            slots[&key].spares[0].process.as_ref().unwrap().pid
        };
        spares.shutdown().await;
        assert_eq!(spares.ready(&key), 0);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            },
            "the spare was killed"
        );
        spares.replenish(key.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(spares.slots.lock().unwrap()[&key].spares.len(), 0);
    }

    #[test]
    fn env_block_len_matches_the_kernel_layout() {
        let a = ("A".to_string(), "1".to_string());
        let b = ("BB".to_string(), String::new());
        // "A=1\0BB=\0"
        assert_eq!(env_block_len([(&a.0, &a.1), (&b.0, &b.1)]), 8);
    }
}

//! Isolating instances from the platform and from each other (issue 19).
//!
//! What an instance gets, each piece probed once at start-up, used when present and
//! reported loudly (one `warn` line each, and [`report`] in `/_nimbus/health`) when
//! missing:
//!
//! * **its own uid** ([`Feature::Uid`], needs root): every instance and every spare
//!   runs as a uid of its own from a range (`NIMBUS_ISOLATION_UIDS`, default
//!   [`DEFAULT_UID_RANGE`]), with no supplementary groups. Another instance's
//!   `/proc/<pid>/environ`, its files and its signals are the kernel's business
//!   then. `RLIMIT_NPROC` (per uid) caps the instance's processes and threads
//!   where the cgroup `pids` controller is missing. The uid is also how the
//!   Runtime API and the edge recognise an instance's connection ([`peer_uid`]).
//! * **its own mount namespace** ([`Feature::MountNamespace`], needs root): a
//!   private tmpfs `/tmp` sized at the function's ephemeral storage; an empty tmpfs
//!   over `/var` holding only the code at `/var/task` and the bootstraps at
//!   `/var/runtime` (read-only bind mounts), the SDKs under `/var/nimbus`; empty
//!   tmpfs over the data dir, `/root` and `/home` (the database, the key ring, the
//!   credentials and every other function's code are not there to be read), the
//!   interpreter re-exposed read-only when it lives under one of them; the layers at
//!   `/opt`.
//! * **a private `/proc`** ([`Feature::PrivateProc`]): procfs mounted again with
//!   `hidepid=2`, so that an instance lists only its own processes (no PID
//!   namespace: Rust's `Command` cannot fork twice, and hidepid with a uid per
//!   instance gives the same view).
//! * **`no_new_privs`** and **a seccomp filter** ([`Feature::Seccomp`]) that answers
//!   `EPERM` to `ptrace`, `mount` and the new mount API, `unshare`/`setns` and
//!   namespace-creating `clone` flags, `kexec_*`, `bpf`, `keyctl`/`add_key`/
//!   `request_key`, `perf_event_open`, module loading, `reboot`, `swapon`/`swapoff`,
//!   `process_vm_*`, `userfaultfd`, `chroot`, clock setting and the like; `clone3`
//!   gets `ENOSYS` so the C library falls back to `clone`, whose flags the filter
//!   can read. Built by hand from classic BPF (about twenty instructions per
//!   architecture) rather than with `seccompiler` or `libseccomp`: a deny list
//!   needs no compiler, and no new dependency is needed for it.
//!
//! Spares are started isolated too (their own uid and namespace, `/var/task`
//! empty); the claim mounts the code and the layers into the spare's namespace
//! from a helper thread that entered it with `setns` (see [`Claimer`]).

use serde::Serialize;
use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Default range of instance uids (`NIMBUS_ISOLATION_UIDS=START-END` changes it):
/// far above login and subordinate-uid ranges.
pub const DEFAULT_UID_RANGE: (u32, u32) = (1_900_000_000, 1_900_065_535);

/// Where an isolated instance sees its code (as on Lambda).
pub const TASK_ROOT: &str = "/var/task";
/// Where an isolated instance sees Nimbus's bootstraps (as on Lambda).
pub const RUNTIME_ROOT: &str = "/var/runtime";
/// Where an isolated instance sees the SDKs (`python/`, `node/`).
pub const SDK_ROOT: &str = "/var/nimbus/sdk";

/// `--isolation`: how hard to isolate instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationMode {
    /// None of it: instances run as the server's user, as before issue 19.
    Off,
    /// Everything the host offers; what is missing is reported, once, loudly.
    #[default]
    Auto,
    /// Everything, or the server does not start.
    Strict,
}

impl std::str::FromStr for IsolationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            "strict" => Ok(Self::Strict),
            other => Err(format!(
                "unknown isolation mode {other:?} (off|auto|strict)"
            )),
        }
    }
}

impl std::fmt::Display for IsolationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Auto => "auto",
            Self::Strict => "strict",
        })
    }
}

/// One isolation mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Uid,
    MountNamespace,
    PrivateProc,
    NoNewPrivs,
    Seccomp,
}

impl Feature {
    fn name(self) -> &'static str {
        match self {
            Feature::Uid => "uid",
            Feature::MountNamespace => "mount_namespace",
            Feature::PrivateProc => "private_proc",
            Feature::NoNewPrivs => "no_new_privs",
            Feature::Seccomp => "seccomp",
        }
    }
}

/// What isolation this server applies, for `/_nimbus/health` and the logs.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationReport {
    pub mode: String,
    /// Mechanisms in use.
    pub active: Vec<&'static str>,
    /// Mechanisms wanted but unavailable, each with the reason.
    pub missing: Vec<Missing>,
    /// Whether the Runtime API and the edge can tell an instance's connections
    /// apart (needs [`Feature::Uid`]).
    pub peer_check: bool,
    /// How an instance's process count is capped: `cgroup`, `rlimit` or `none`.
    pub pids_limit: &'static str,
    /// Whether the edge requires an instance's requests (the control API, the
    /// Lambda API, every service) to be signed with its own function's key even
    /// when authentication is off: `active`, or `inactive` without per-instance
    /// uids (an instance's connection cannot be told from the user's then).
    pub platform_ports_check: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub feature: &'static str,
    pub reason: String,
}

static REPORT: Mutex<Option<IsolationReport>> = Mutex::new(None);
static UID_RANGE: OnceLock<(u32, u32)> = OnceLock::new();
/// The function each live instance uid runs (set when the instance is bound to
/// its function, cleared when its uid is released).
static OWNERS: Mutex<Option<std::collections::HashMap<u32, String>>> = Mutex::new(None);

/// Record that `uid` now runs `function` (for [`instance_peer`]).
pub fn set_instance_function(uid: u32, function: &str) {
    OWNERS
        .lock()
        .unwrap()
        .get_or_insert_with(Default::default)
        .insert(uid, function.to_owned());
}

/// The function instance uid `uid` runs, if it is bound to one.
pub fn instance_function(uid: u32) -> Option<String> {
    OWNERS.lock().unwrap().as_ref()?.get(&uid).cloned()
}

/// Who is behind a TCP connection to the server (`local` the server's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Not an instance: a remote client, or a local process of another uid.
    Other,
    /// An instance: its uid and the function it runs (if bound yet).
    Instance(u32, Option<String>),
    /// A local socket its process already closed: it may have been an
    /// instance's, so it is not served.
    Unknown,
    /// The server itself (a service delivering to a URL someone chose).
    Server,
}

/// Whether socket `inode` is one of this process's open files.
fn own_socket(inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    dir.flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
}

/// Who is behind a connection to the server; always [`Peer::Other`] when
/// instances do not run as their own uids.
pub fn instance_peer(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> Peer {
    if UID_RANGE.get().is_none() {
        return Peer::Other;
    }
    match peer_socket(local, peer) {
        PeerSocket::Owned(uid, _) if is_instance_uid(uid) => {
            Peer::Instance(uid, instance_function(uid))
        }
        // A connection the server made to itself: a service delivering to a
        // URL a function chose (an EventBridge API destination, an SNS HTTP
        // subscription) must not reach the control API as the user would.
        // SAFETY: geteuid has no preconditions.
        PeerSocket::Owned(uid, inode) if uid == unsafe { libc::geteuid() } && own_socket(inode) => {
            Peer::Server
        }
        PeerSocket::Owned(..) | PeerSocket::Absent => Peer::Other,
        PeerSocket::Orphaned => Peer::Unknown,
    }
}

/// The isolation report of the (first) server in this process, once probed.
pub fn report() -> Option<IsolationReport> {
    REPORT.lock().unwrap().clone()
}

/// Whether `uid` is an instance's (only ever true when instances run as their own
/// uids).
pub fn is_instance_uid(uid: u32) -> bool {
    UID_RANGE
        .get()
        .is_some_and(|(lo, hi)| (*lo..=*hi).contains(&uid))
}

/// What the host offers, probed once.
#[derive(Debug)]
pub struct Isolation {
    pub mode: IsolationMode,
    uid_range: Option<(u32, u32)>,
    mount_ns: bool,
    private_proc: bool,
    no_new_privs: bool,
    seccomp: bool,
    next_uid: AtomicU32,
    live_uids: Mutex<HashSet<u32>>,
    /// Paths masked with an empty tmpfs in an instance's namespace.
    masks: Vec<PathBuf>,
    /// Host paths seen in the namespace: the bootstraps, the SDK dirs.
    runtime_dir: PathBuf,
    sdk_python: Option<PathBuf>,
    sdk_node: Option<PathBuf>,
    claimer: OnceLock<Option<Claimer>>,
}

/// What the mount namespace needs to know about the host.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub data_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub sdk_python: Option<PathBuf>,
    pub sdk_node: Option<PathBuf>,
}

/// Why a strict server could not start.
#[derive(Debug, thiserror::Error)]
#[error("--isolation strict: {0}")]
pub struct StrictError(pub String);

fn uid_range_from_env() -> Result<(u32, u32), String> {
    let Some(v) = std::env::var_os("NIMBUS_ISOLATION_UIDS") else {
        return Ok(DEFAULT_UID_RANGE);
    };
    let v = v.to_string_lossy();
    let parsed = v
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((a, b)) if a > 0 && b >= a + 16 => Ok((a, b)),
        _ => Err(format!(
            "NIMBUS_ISOLATION_UIDS={v:?}: expected START-END with at least 16 uids, START > 0"
        )),
    }
}

impl Isolation {
    /// Probe the host for `mode` and log (once) what is missing. Errors only in
    /// strict mode, naming every missing mechanism.
    pub fn probe(mode: IsolationMode, paths: &HostPaths) -> Result<Self, StrictError> {
        let mut missing: Vec<Missing> = Vec::new();
        let mut miss = |f: Feature, reason: String| {
            missing.push(Missing {
                feature: f.name(),
                reason,
            })
        };
        let mut iso = Isolation {
            mode,
            uid_range: None,
            mount_ns: false,
            private_proc: false,
            no_new_privs: false,
            seccomp: false,
            next_uid: AtomicU32::new(0),
            live_uids: Mutex::new(HashSet::new()),
            masks: Vec::new(),
            runtime_dir: paths.runtime_dir.clone(),
            sdk_python: paths.sdk_python.clone(),
            sdk_node: paths.sdk_node.clone(),
            claimer: OnceLock::new(),
        };
        if mode != IsolationMode::Off {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            if root {
                match uid_range_from_env() {
                    Ok(r) => iso.uid_range = Some(r),
                    Err(e) => miss(Feature::Uid, e),
                }
            } else {
                miss(
                    Feature::Uid,
                    "the server does not run as root: instances run as its own uid (they can read its files and /proc)".into(),
                );
            }
            let probe = probe_child(root);
            iso.no_new_privs = probe.no_new_privs;
            iso.seccomp = probe.seccomp;
            iso.mount_ns = probe.mount_ns;
            iso.private_proc = probe.private_proc && probe.mount_ns;
            if !probe.no_new_privs {
                miss(
                    Feature::NoNewPrivs,
                    "prctl(PR_SET_NO_NEW_PRIVS) failed".into(),
                );
            }
            if !probe.seccomp {
                miss(
                    Feature::Seccomp,
                    "the kernel refused a seccomp filter (CONFIG_SECCOMP_FILTER?)".into(),
                );
            }
            if !probe.mount_ns {
                miss(
                    Feature::MountNamespace,
                    if root {
                        "unshare(CLONE_NEWNS) or a tmpfs mount failed".into()
                    } else {
                        "needs root: instances share the host's /tmp and can read the data dir"
                            .into()
                    },
                );
            }
            if probe.mount_ns && !probe.private_proc {
                miss(
                    Feature::PrivateProc,
                    "mounting procfs with hidepid=2 failed: instances can list every process"
                        .into(),
                );
            } else if !probe.mount_ns {
                miss(
                    Feature::PrivateProc,
                    "needs a mount namespace: instances can list every process".into(),
                );
            }
            if iso.mount_ns {
                iso.masks = mask_list(&paths.data_dir);
            }
        }
        let mut active = Vec::new();
        if iso.uid_range.is_some() {
            active.push(Feature::Uid.name());
        }
        if iso.mount_ns {
            active.push(Feature::MountNamespace.name());
        }
        if iso.private_proc {
            active.push(Feature::PrivateProc.name());
        }
        if iso.no_new_privs {
            active.push(Feature::NoNewPrivs.name());
        }
        if iso.seccomp {
            active.push(Feature::Seccomp.name());
        }
        if let Some(r) = iso.uid_range {
            iso.next_uid.store(r.0, Ordering::Relaxed);
            let _ = UID_RANGE.set(r);
        }
        let report = IsolationReport {
            mode: mode.to_string(),
            active,
            missing: missing.clone(),
            peer_check: iso.uid_range.is_some(),
            // Filled in by the driver, which knows about cgroups.
            pids_limit: "none",
            platform_ports_check: if iso.uid_range.is_some() {
                "active"
            } else {
                "inactive"
            },
        };
        if mode == IsolationMode::Off {
            tracing::warn!(
                "--isolation off: instances run as the server's user, with its view of the files and processes"
            );
        } else if missing.is_empty() {
            tracing::info!(mode = %mode, active = ?report.active, "instances are isolated");
        } else {
            for m in &missing {
                tracing::warn!(feature = m.feature, reason = %m.reason, "instance isolation degraded");
            }
        }
        if mode == IsolationMode::Strict && !missing.is_empty() {
            let what: Vec<String> = missing
                .iter()
                .map(|m| format!("{} ({})", m.feature, m.reason))
                .collect();
            return Err(StrictError(format!(
                "missing isolation: {}",
                what.join("; ")
            )));
        }
        let mut slot = REPORT.lock().unwrap();
        if slot.is_none() {
            *slot = Some(report);
        }
        drop(slot);
        Ok(iso)
    }

    /// Isolation off (tests and `--isolation off`), without probing.
    pub fn off() -> Self {
        Isolation {
            mode: IsolationMode::Off,
            uid_range: None,
            mount_ns: false,
            private_proc: false,
            no_new_privs: false,
            seccomp: false,
            next_uid: AtomicU32::new(0),
            live_uids: Mutex::new(HashSet::new()),
            masks: Vec::new(),
            runtime_dir: PathBuf::new(),
            sdk_python: None,
            sdk_node: None,
            claimer: OnceLock::new(),
        }
    }

    /// Record how the pids cap is enforced (in the report).
    pub fn set_pids_limit(&self, cgroup_pids: bool) {
        let how = if cgroup_pids {
            "cgroup"
        } else if self.uid_range.is_some() {
            "rlimit"
        } else {
            "none"
        };
        if let Some(r) = REPORT.lock().unwrap().as_mut() {
            r.pids_limit = how;
        }
    }

    /// Whether instances get a mount namespace (and so Lambda's paths).
    pub fn mount_ns(&self) -> bool {
        self.mount_ns
    }

    /// Whether instances run as their own uids.
    pub fn uids(&self) -> bool {
        self.uid_range.is_some()
    }

    /// A free uid for a new process, released when the lease drops.
    pub fn lease_uid(self: &std::sync::Arc<Self>) -> Option<UidLease> {
        let (lo, hi) = self.uid_range?;
        let mut live = self.live_uids.lock().unwrap();
        let span = hi - lo + 1;
        for _ in 0..span {
            let u = self.next_uid.fetch_add(1, Ordering::Relaxed);
            let u = lo + (u.wrapping_sub(lo)) % span;
            if live.insert(u) {
                return Some(UidLease {
                    uid: u,
                    iso: std::sync::Arc::downgrade(self),
                });
            }
        }
        None
    }

    /// The path the instance sees for an SDK dir (`python`/`node`), given the
    /// host's.
    pub fn sdk_path(&self, host: &Path) -> Option<PathBuf> {
        if !self.mount_ns {
            return None;
        }
        if self.sdk_python.as_deref() == Some(host) {
            return Some(Path::new(SDK_ROOT).join("python"));
        }
        if self.sdk_node.as_deref() == Some(host) {
            return Some(Path::new(SDK_ROOT).join("node"));
        }
        None
    }

    /// Everything the child needs, prepared before the fork (no allocation after).
    pub(crate) fn prepare(&self, uid: Option<u32>, spec: &crate::sandbox::ProcSpec) -> Prepared {
        let (code_dir, opt_dir, interpreter) = (
            spec.code_dir.as_deref(),
            spec.opt_dir.as_deref(),
            spec.interpreter.as_deref(),
        );
        let (tmp_mb, cwd, nproc) = (spec.tmp_mb, spec.cwd.as_path(), spec.pids_max as u64);
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
        let mount = self.mount_ns.then(|| {
            let mut binds: Vec<Bind> = Vec::new();
            let mut bind = |src: &Path, dst: &Path| {
                if let (Some(s), Some(d)) = (c(src), c(dst)) {
                    let mkdirs = dst
                        .ancestors()
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .skip(1)
                        .filter_map(c)
                        .collect();
                    binds.push(Bind {
                        src: s,
                        dst: d,
                        mkdirs,
                    });
                }
            };
            bind(&self.runtime_dir, Path::new(RUNTIME_ROOT));
            if let Some(p) = &self.sdk_python {
                bind(p, &Path::new(SDK_ROOT).join("python"));
            }
            if let Some(p) = &self.sdk_node {
                bind(p, &Path::new(SDK_ROOT).join("node"));
            }
            if let Some(code) = code_dir {
                bind(code, Path::new(TASK_ROOT));
            }
            if let Some(opt) = opt_dir {
                bind(opt, Path::new(crate::layers::OPT_MOUNT));
            }
            // An interpreter under a masked dir (pyenv under /root) is put back,
            // read-only, at its own path: its whole prefix (bin/ and lib/).
            if let Some(interp) = interpreter {
                if let Some(prefix) = interp.parent().and_then(Path::parent) {
                    if self.masks.iter().any(|m| prefix.starts_with(m)) {
                        bind(prefix, prefix);
                    }
                }
            }
            MountPlan {
                masks: self.masks.iter().filter_map(|p| c(p)).collect(),
                binds,
                tmp_opts: CString::new(format!(
                    "size={}m,mode=1777,nr_inodes=65536",
                    tmp_mb.max(1)
                ))
                .expect("no NUL"),
                private_proc: self.private_proc,
            }
        });
        Prepared {
            uid,
            mount,
            cwd: c(cwd).unwrap_or_else(|| CString::new("/").expect("no NUL")),
            no_new_privs: self.no_new_privs,
            seccomp: if self.seccomp {
                seccomp_program()
            } else {
                Vec::new()
            },
            nproc,
        }
    }

    /// The helper that mounts a claimed spare's code (started on first use).
    pub(crate) fn claimer(&self) -> Option<&Claimer> {
        self.claimer
            .get_or_init(|| {
                if !self.mount_ns {
                    return None;
                }
                match Claimer::start() {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the spare-claim helper: spares are not used");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// What is hidden from an instance: the data dir, root's and users' homes.
fn mask_list(data_dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/root"), PathBuf::from("/home")];
    if let Some(h) = std::env::var_os("HOME").map(PathBuf::from) {
        if h != Path::new("/") && !v.iter().any(|m| h.starts_with(m)) {
            v.push(h);
        }
    }
    // Under /tmp or /var it is gone with those; elsewhere it is masked itself.
    if !data_dir.starts_with("/tmp") && !data_dir.starts_with("/var") {
        v.push(data_dir.to_path_buf());
    }
    v.retain(|p| p.is_dir());
    v
}

/// A uid held by one live process.
#[derive(Debug)]
pub struct UidLease {
    pub uid: u32,
    iso: std::sync::Weak<Isolation>,
}

impl Drop for UidLease {
    fn drop(&mut self) {
        if let Some(owners) = OWNERS.lock().unwrap().as_mut() {
            owners.remove(&self.uid);
        }
        if let Some(iso) = self.iso.upgrade() {
            iso.live_uids.lock().unwrap().remove(&self.uid);
        }
    }
}

/// One read-only bind mount of the namespace.
#[derive(Debug)]
pub(crate) struct Bind {
    src: CString,
    dst: CString,
    /// `dst` and its ancestors, outermost first, to create in the tmpfs.
    mkdirs: Vec<CString>,
}

#[derive(Debug)]
pub(crate) struct MountPlan {
    masks: Vec<CString>,
    binds: Vec<Bind>,
    tmp_opts: CString,
    private_proc: bool,
}

/// The child's isolation steps, prepared in the parent.
#[derive(Debug)]
pub(crate) struct Prepared {
    uid: Option<u32>,
    mount: Option<MountPlan>,
    cwd: CString,
    no_new_privs: bool,
    seccomp: Vec<libc::sock_filter>,
    nproc: u64,
}

fn cstr(s: &'static [u8]) -> *const libc::c_char {
    s.as_ptr().cast()
}

impl Prepared {
    /// Whether the child changes its own cwd (so `Command::current_dir` must not:
    /// the cwd may exist only inside the namespace).
    pub(crate) fn sets_cwd(&self) -> bool {
        self.mount.is_some()
    }

    /// Run in the child between fork and exec, as root. Only async-signal-safe
    /// system calls on memory prepared before the fork.
    ///
    /// # Safety
    /// Call only in a freshly forked child.
    pub(crate) unsafe fn apply(&self) -> std::io::Result<()> {
        let err = |step: i32| {
            let e = std::io::Error::last_os_error();
            std::io::Error::new(e.kind(), Step(step, e.raw_os_error().unwrap_or(0)))
        };
        if let Some(m) = &self.mount {
            if libc::unshare(libc::CLONE_NEWNS) < 0 {
                return Err(err(1));
            }
            if libc::mount(
                std::ptr::null(),
                cstr(b"/\0"),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) < 0
            {
                return Err(err(2));
            }
            // Open every bind source before anything is masked.
            let mut fds = [-1i32; 16];
            for (i, b) in m.binds.iter().enumerate().take(fds.len()) {
                fds[i] = libc::open(b.src.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            }
            let tmpfs = |target: *const libc::c_char, opts: *const libc::c_char| {
                libc::mount(
                    cstr(b"tmpfs\0"),
                    target,
                    cstr(b"tmpfs\0"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    opts.cast(),
                )
            };
            for p in &m.masks {
                // A mask that cannot be mounted is fatal: what it hides would show.
                if tmpfs(p.as_ptr(), cstr(b"mode=0755,size=1m\0")) < 0 {
                    return Err(err(3));
                }
            }
            if tmpfs(cstr(b"/var\0"), cstr(b"mode=0755,size=1m\0")) < 0 {
                return Err(err(4));
            }
            if tmpfs(cstr(b"/tmp\0"), m.tmp_opts.as_ptr()) < 0 {
                return Err(err(5));
            }
            let mut path = [0u8; 32];
            for (i, b) in m.binds.iter().enumerate().take(fds.len()) {
                if fds[i] < 0 {
                    continue; // a missing source (no SDK installed): nothing to show
                }
                for d in &b.mkdirs {
                    libc::mkdir(d.as_ptr(), 0o755);
                }
                fd_path(&mut path, fds[i]);
                if libc::mount(
                    path.as_ptr().cast(),
                    b.dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) < 0
                {
                    return Err(err(6));
                }
                if libc::mount(
                    std::ptr::null(),
                    b.dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT
                        | libc::MS_BIND
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV,
                    std::ptr::null(),
                ) < 0
                {
                    return Err(err(7));
                }
                libc::close(fds[i]);
            }
            // Mount points a spare's claim fills in.
            libc::mkdir(cstr(b"/var/task\0"), 0o755);
            libc::mkdir(cstr(b"/opt\0"), 0o755);
            if m.private_proc
                && libc::mount(
                    cstr(b"proc\0"),
                    cstr(b"/proc\0"),
                    cstr(b"proc\0"),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    cstr(b"hidepid=2\0").cast(),
                ) < 0
            {
                return Err(err(8));
            }
            if libc::chdir(self.cwd.as_ptr()) < 0 {
                return Err(err(9));
            }
        }
        if self.uid.is_some() {
            let lim = libc::rlimit {
                rlim_cur: self.nproc,
                rlim_max: self.nproc,
            };
            libc::setrlimit(libc::RLIMIT_NPROC, &lim);
        }
        if self.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return Err(err(10));
        }
        if let Some(uid) = self.uid {
            if libc::setgroups(0, std::ptr::null()) < 0
                || libc::setresgid(uid, uid, uid) < 0
                || libc::setresuid(uid, uid, uid) < 0
            {
                return Err(err(11));
            }
            // A change of credentials clears the parent-death signal: set it again.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
        }
        if !self.seccomp.is_empty() {
            let prog = libc::sock_fprog {
                len: self.seccomp.len() as u16,
                filter: self.seccomp.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog as libc::c_ulong,
                0,
                0,
            ) < 0
            {
                return Err(err(12));
            }
        }
        Ok(())
    }
}

/// An error of one isolation step in the child (step number, errno).
#[derive(Debug)]
struct Step(i32, i32);

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.0 {
            1 => "unshare(CLONE_NEWNS)",
            2 => "making / private",
            3 => "masking a host dir",
            4 => "mounting /var",
            5 => "mounting /tmp",
            6 => "bind-mounting code or runtime",
            7 => "making a bind mount read-only",
            8 => "mounting /proc with hidepid",
            9 => "chdir",
            10 => "no_new_privs",
            11 => "dropping to the instance uid",
            _ => "installing the seccomp filter",
        };
        write!(f, "isolation: {what} failed (errno {})", self.1)
    }
}

impl std::error::Error for Step {}

/// `/proc/self/fd/<fd>\0` into `buf`, without allocating.
fn fd_path(buf: &mut [u8; 32], fd: i32) {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = prefix.len();
    for i in (0..len).rev() {
        buf[at] = digits[i];
        at += 1;
    }
    buf[at] = 0;
}

#[derive(Debug, Default)]
struct Probe {
    mount_ns: bool,
    private_proc: bool,
    no_new_privs: bool,
    seccomp: bool,
}

/// Try each mechanism in a throw-away child (`/bin/true`), one exit code per
/// failure, so nothing is tried on the server itself.
fn probe_child(root: bool) -> Probe {
    let run = |step: u8| -> bool {
        let mut cmd = std::process::Command::new("/bin/true");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let filter = seccomp_program();
        use std::os::unix::process::CommandExt;
        // SAFETY: only system calls on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fail = || Err(std::io::Error::other("probe"));
                match step {
                    0 => {
                        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                            return fail();
                        }
                        let prog = libc::sock_fprog {
                            len: filter.len() as u16,
                            filter: filter.as_ptr() as *mut libc::sock_filter,
                        };
                        if filter.is_empty()
                            || libc::prctl(
                                libc::PR_SET_SECCOMP,
                                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                                &prog as *const libc::sock_fprog as libc::c_ulong,
                                0,
                                0,
                            ) < 0
                        {
                            return fail();
                        }
                        // The filter works: mount is refused.
                        if libc::unshare(libc::CLONE_NEWNS) == 0 {
                            return fail();
                        }
                    }
                    1 | 2 => {
                        if libc::unshare(libc::CLONE_NEWNS) < 0
                            || libc::mount(
                                std::ptr::null(),
                                cstr(b"/\0"),
                                std::ptr::null(),
                                libc::MS_REC | libc::MS_PRIVATE,
                                std::ptr::null(),
                            ) < 0
                            || libc::mount(
                                cstr(b"tmpfs\0"),
                                cstr(b"/tmp\0"),
                                cstr(b"tmpfs\0"),
                                libc::MS_NOSUID | libc::MS_NODEV,
                                cstr(b"size=1m\0").cast(),
                            ) < 0
                            || libc::mount(
                                cstr(b"tmpfs\0"),
                                cstr(b"/var\0"),
                                cstr(b"tmpfs\0"),
                                libc::MS_NOSUID | libc::MS_NODEV,
                                cstr(b"size=1m\0").cast(),
                            ) < 0
                        {
                            return fail();
                        }
                        if step == 2
                            && libc::mount(
                                cstr(b"proc\0"),
                                cstr(b"/proc\0"),
                                cstr(b"proc\0"),
                                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                                cstr(b"hidepid=2\0").cast(),
                            ) < 0
                        {
                            return fail();
                        }
                    }
                    _ => {}
                }
                Ok(())
            });
        }
        cmd.status().map(|s| s.success()).unwrap_or(false)
    };
    let seccomp = run(0);
    let mount_ns = root && run(1);
    Probe {
        mount_ns,
        private_proc: mount_ns && run(2),
        no_new_privs: seccomp || {
            // SAFETY: reading our own flag.
            unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) >= 0 }
        },
        seccomp,
    }
}

// ---- seccomp -------------------------------------------------------------------

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

/// System calls an instance never needs, answered with `EPERM`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn denied_syscalls() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_ptrace,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_perf_event_open,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_userfaultfd,
        libc::SYS_acct,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_quotactl,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_lookup_dcookie,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
    v
}

/// The filter: wrong architecture (or x32) → EPERM for everything; `clone3` →
/// ENOSYS; `clone` with a namespace flag → EPERM; the deny list → EPERM; the rest
/// allowed.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn seccomp_program() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let st = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    // struct seccomp_data: nr at 0, arch at 4, args at 16 (low word first on LE).
    let mut p = vec![
        st(LD_W_ABS, 0, 0, 4),
        st(JEQ_K, 1, 0, AUDIT_ARCH),
        st(RET_K, 0, 0, eperm),
        st(LD_W_ABS, 0, 0, 0),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        // x32 system calls (bit 30) would dodge the numbers below.
        p.push(st(JGE_K, 0, 1, 0x4000_0000));
        p.push(st(RET_K, 0, 0, eperm));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = JGE_K;
    p.push(st(JEQ_K, 0, 1, libc::SYS_clone3 as u32));
    p.push(st(RET_K, 0, 0, enosys));
    // clone(flags, ...): flags is the first argument on both architectures.
    let ns_flags = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u32;
    p.push(st(JEQ_K, 0, 4, libc::SYS_clone as u32));
    p.push(st(LD_W_ABS, 0, 0, 16));
    p.push(st(JSET_K, 0, 1, ns_flags));
    p.push(st(RET_K, 0, 0, eperm));
    p.push(st(RET_K, 0, 0, SECCOMP_RET_ALLOW));
    for nr in denied_syscalls() {
        p.push(st(JEQ_K, 0, 1, nr as u32));
        p.push(st(RET_K, 0, 0, eperm));
    }
    p.push(st(RET_K, 0, 0, SECCOMP_RET_ALLOW));
    p
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn seccomp_program() -> Vec<libc::sock_filter> {
    Vec::new()
}

// ---- peers ---------------------------------------------------------------------

/// The uid owning the TCP socket at `peer` that is connected to `local` (a
/// loopback connection seen from the server's side), from `/proc/net/tcp{,6}`.
/// `None` when no process owns it any more (see [`peer_socket`]) or it is not on
/// this host.
pub fn peer_uid(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> Option<u32> {
    match peer_socket(local, peer) {
        PeerSocket::Owned(uid, _) => Some(uid),
        PeerSocket::Orphaned | PeerSocket::Absent => None,
    }
}

/// The far end of a TCP connection to this server, as the host's socket tables
/// show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSocket {
    /// A socket of this host owned (held open) by a process of this uid.
    Owned(u32, u64),
    /// A socket of this host no process holds any more (closed right after
    /// sending; the kernel reports it without its owner): who sent the request
    /// cannot be known.
    Orphaned,
    /// Not a socket of this host (a remote client), or gone entirely.
    Absent,
}

/// Find the far end of the connection (`local` the server's end): asked of the
/// kernel's socket-diagnostics netlink interface ([`sock_diag`]: one hash lookup
/// of the exact connection), or — where that is unavailable — searched for in
/// `/proc/net/tcp{,6}`, whose reading costs time in proportion to every TCP
/// socket of the host (milliseconds on a busy one). An IPv4 client of a
/// dual-stack listener (v4-mapped addresses) is looked for as IPv4.
pub fn peer_socket(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> PeerSocket {
    use std::net::SocketAddr::{V4, V6};
    let unmapped = |a: std::net::SocketAddr| match a {
        V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|ip| V4(std::net::SocketAddrV4::new(ip, v6.port()))),
        V4(_) => None,
    };
    let mut tries = vec![(local, peer)];
    if let (Some(l), Some(p)) = (unmapped(local), unmapped(peer)) {
        tries.push((l, p));
    }
    match sock_diag::lookup_any(&tries) {
        Ok(found) => return found,
        Err(e) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(error = %e, "socket diagnostics (netlink) unavailable: \
                    finding connection peers by reading /proc/net/tcp, slower on a host with many sockets");
            });
        }
    }
    peer_socket_procfs(&tries)
}

/// [`peer_socket`] from `/proc/net/tcp{,6}`.
fn peer_socket_procfs(tries: &[(std::net::SocketAddr, std::net::SocketAddr)]) -> PeerSocket {
    use std::net::SocketAddr::{V4, V6};
    for &(local, peer) in tries {
        let (file, want_local, want_remote) = match (peer, local) {
            (V4(p), V4(l)) => ("/proc/net/tcp", hex_v4(p), hex_v4(l)),
            (V6(p), V6(l)) => ("/proc/net/tcp6", hex_v6(p), hex_v6(l)),
            _ => continue,
        };
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if let Some(found) = find_socket(&text, &want_local, &want_remote) {
            return found;
        }
    }
    PeerSocket::Absent
}

/// One exact-connection query of the kernel's socket diagnostics
/// (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`: the kernel's
/// `inet_diag_find_one_icsk`, a hash lookup), answering the owner uid and inode
/// of the socket whose own end is `peer` and whose far end is `local` — what a
/// row of `/proc/net/tcp` says, without reading every row.
mod sock_diag {
    use super::PeerSocket;
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    /// `struct nlmsghdr`.
    const NLMSG_HDR: usize = 16;
    /// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid (48).
    const REQ_LEN: usize = 8 + 48;
    /// `struct inet_diag_msg`: family, state, timer, retrans, sockid (48),
    /// expires, rqueue, wqueue, uid, inode.
    const MSG_LEN: usize = 4 + 48 + 20;

    /// The first of `tries` (server end, far end) the kernel knows; `Absent` when
    /// none. `Err` only when the interface itself is unusable.
    pub(super) fn lookup_any(tries: &[(SocketAddr, SocketAddr)]) -> io::Result<PeerSocket> {
        let fd = open()?;
        for &(local, peer) in tries {
            if let Some(found) = lookup(&fd, local, peer)? {
                return Ok(found);
            }
        }
        Ok(PeerSocket::Absent)
    }

    fn open() -> io::Result<OwnedFd> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Never hang a connection on a kernel that does not answer.
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }

    /// The request for the socket whose own address is `me` and whose far end is
    /// `far` (both of one family).
    pub(super) fn request(me: SocketAddr, far: SocketAddr, seq: u32) -> Option<Vec<u8>> {
        let (family, src, dst) = match (me, far) {
            (SocketAddr::V4(a), SocketAddr::V4(b)) => {
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s[..4].copy_from_slice(&a.ip().octets());
                d[..4].copy_from_slice(&b.ip().octets());
                (libc::AF_INET as u8, s, d)
            }
            (SocketAddr::V6(a), SocketAddr::V6(b)) => {
                (libc::AF_INET6 as u8, a.ip().octets(), b.ip().octets())
            }
            _ => return None,
        };
        let mut m = Vec::with_capacity(NLMSG_HDR + REQ_LEN);
        m.extend_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
        m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
        m.extend_from_slice(&me.port().to_be_bytes());
        m.extend_from_slice(&far.port().to_be_bytes());
        m.extend_from_slice(&src);
        m.extend_from_slice(&dst);
        m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
        m.extend_from_slice(&u32::MAX.to_ne_bytes()); // INET_DIAG_NOCOOKIE
        m.extend_from_slice(&u32::MAX.to_ne_bytes());
        Some(m)
    }

    /// What an answer says: `Ok(None)` for "no such socket".
    pub(super) fn parse(answer: &[u8], seq: u32) -> io::Result<Option<PeerSocket>> {
        let u32_at = |o: usize| -> io::Result<u32> {
            answer
                .get(o..o + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| io::Error::other("short sock_diag answer"))
        };
        let kind = answer
            .get(4..6)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or_else(|| io::Error::other("short sock_diag answer"))?;
        if u32_at(8)? != seq {
            return Err(io::Error::other("sock_diag answer to another request"));
        }
        match kind {
            NLMSG_ERROR => {
                let errno = -(u32_at(NLMSG_HDR)? as i32);
                if errno == libc::ENOENT {
                    Ok(None)
                } else {
                    Err(io::Error::from_raw_os_error(errno))
                }
            }
            SOCK_DIAG_BY_FAMILY if answer.len() >= NLMSG_HDR + MSG_LEN => {
                let uid = u32_at(NLMSG_HDR + 4 + 48 + 12)?;
                let inode = u32_at(NLMSG_HDR + 4 + 48 + 16)? as u64;
                // Inode 0: no file holds the socket (closed, or time-wait).
                Ok(Some(if inode == 0 {
                    PeerSocket::Orphaned
                } else {
                    PeerSocket::Owned(uid, inode)
                }))
            }
            other => Err(io::Error::other(format!("sock_diag answered type {other}"))),
        }
    }

    fn lookup(fd: &OwnedFd, local: SocketAddr, peer: SocketAddr) -> io::Result<Option<PeerSocket>> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(req) = request(peer, local, seq) else {
            return Ok(None);
        };
        // SAFETY: a zeroed sockaddr_nl is valid; pid 0 addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: buffer and address valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 1024];
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        parse(&buf[..n as usize], seq)
    }
}

/// The socket with this local and remote address in a `/proc/net/tcp` table.
fn find_socket(table: &str, want_local: &str, want_remote: &str) -> Option<PeerSocket> {
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local remote st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        if f.len() < 10 {
            continue;
        }
        if f[1].eq_ignore_ascii_case(want_local) && f[2].eq_ignore_ascii_case(want_remote) {
            let uid: u32 = f[7].parse().ok()?;
            let inode: u64 = f[9].parse().ok()?;
            // Inode 0: no file holds the socket (closed, or a time-wait entry,
            // which also shows uid 0).
            return Some(if inode == 0 {
                PeerSocket::Orphaned
            } else {
                PeerSocket::Owned(uid, inode)
            });
        }
    }
    None
}

fn hex_v4(a: std::net::SocketAddrV4) -> String {
    let o = a.ip().octets();
    format!("{:08X}:{:04X}", u32::from_le_bytes(o), a.port())
}

fn hex_v6(a: std::net::SocketAddrV6) -> String {
    let o = a.ip().octets();
    let mut s = String::new();
    for chunk in o.chunks(4) {
        s.push_str(&format!(
            "{:08X}",
            u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])
        ));
    }
    format!("{s}:{:04X}", a.port())
}

// ---- spare claims --------------------------------------------------------------

const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const AT_RECURSIVE: u32 = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached read-only copy of a host directory (`open_tree` + `mount_setattr`),
/// ready to be attached in another mount namespace.
fn detached_ro_tree(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: open_tree(2) with a valid path; the fd is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from open_tree.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: mount_setattr(2) on our detached tree.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | AT_RECURSIVE as i32,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

struct ClaimJob {
    pid: u32,
    trees: Vec<(std::os::fd::OwnedFd, &'static CStrRef)>,
    tmp_opts: CString,
    reply: std::sync::mpsc::SyncSender<std::io::Result<()>>,
}

type CStrRef = std::ffi::CStr;

/// A thread with its own filesystem context (`unshare(CLONE_FS)`), so that it may
/// `setns` into a spare's mount namespace and mount the claimed instance's code at
/// `/var/task`, the layers at `/opt` and resize `/tmp`, without moving any other
/// thread of the server.
#[derive(Debug)]
pub(crate) struct Claimer {
    jobs: Mutex<std::sync::mpsc::Sender<ClaimJob>>,
}

impl std::fmt::Debug for ClaimJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimJob").field("pid", &self.pid).finish()
    }
}

impl Claimer {
    fn start() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<ClaimJob>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("nimbus-claim".into())
            .spawn(move || {
                // SAFETY: unshare(CLONE_FS) affects this thread only.
                let ok = unsafe { libc::unshare(libc::CLONE_FS) } == 0;
                let _ = ready_tx.send(if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                });
                if !ok {
                    return;
                }
                while let Ok(job) = rx.recv() {
                    let r = Self::run(&job);
                    let _ = job.reply.send(r);
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("claim helper died"))??;
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    fn run(job: &ClaimJob) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", job.pid))?;
        // SAFETY: setns on this thread, which has its own fs context.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for (tree, target) in &job.trees {
            // SAFETY: move_mount(2) of our detached tree onto a path in the spare's
            // namespace.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    tree.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // SAFETY: remounting the spare's /tmp with the instance's size.
        let r = unsafe {
            libc::mount(
                std::ptr::null(),
                cstr(b"/tmp\0"),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                job.tmp_opts.as_ptr().cast(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Mount `code` at `/var/task` (and `opt` at `/opt`) in the namespace of the
    /// spare `pid`, and size its `/tmp`. Blocks until done.
    pub(crate) fn mount_into(
        &self,
        pid: u32,
        code: &Path,
        opt: Option<&Path>,
        tmp_mb: u32,
    ) -> std::io::Result<()> {
        let mut trees = vec![(detached_ro_tree(code)?, c"/var/task")];
        if let Some(o) = opt {
            trees.push((detached_ro_tree(o)?, c"/opt"));
        }
        let (reply, wait) = std::sync::mpsc::sync_channel(1);
        let job = ClaimJob {
            pid,
            trees,
            tmp_opts: CString::new(format!("size={}m,mode=1777,nr_inodes=65536", tmp_mb.max(1)))
                .expect("no NUL"),
            reply,
        };
        self.jobs
            .lock()
            .unwrap()
            .send(job)
            .map_err(|_| std::io::Error::other("claim helper gone"))?;
        wait.recv()
            .map_err(|_| std::io::Error::other("claim helper gone"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths() {
        let mut b = [0u8; 32];
        fd_path(&mut b, 7);
        assert_eq!(&b[..16], b"/proc/self/fd/7\0");
        fd_path(&mut b, 1234);
        assert_eq!(&b[..19], b"/proc/self/fd/1234\0");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            "strict".parse::<IsolationMode>().unwrap(),
            IsolationMode::Strict
        );
        assert_eq!("off".parse::<IsolationMode>().unwrap(), IsolationMode::Off);
        assert!("on".parse::<IsolationMode>().is_err());
    }

    #[test]
    fn loopback_addresses_in_proc_net_tcp_form() {
        let a: std::net::SocketAddrV4 = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(hex_v4(a), "0100007F:1F90");
    }

    #[test]
    fn the_peer_of_a_loopback_connection_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        // SAFETY: no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(peer_uid(s.local_addr().unwrap(), peer), Some(me));
        // Closed by its process: no owner to be had.
        drop(c);
        assert_eq!(
            peer_socket(s.local_addr().unwrap(), peer),
            PeerSocket::Orphaned
        );
        // A v4 client of a dual-stack listener, seen with v4-mapped addresses.
        let map =
            |a: std::net::SocketAddr| match a {
                std::net::SocketAddr::V4(v4) => std::net::SocketAddr::V6(
                    std::net::SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
                ),
                v6 => v6,
            };
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert_eq!(
            peer_socket(map(s.local_addr().unwrap()), map(peer)),
            PeerSocket::Owned(me, own_inode(&c))
        );
        drop(c);
    }

    fn own_inode(s: &std::net::TcpStream) -> u64 {
        use std::os::fd::AsRawFd;
        let l = std::fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).unwrap();
        let l = l.to_string_lossy();
        l.trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse()
            .unwrap()
    }

    #[test]
    fn socket_diagnostics_agree_with_proc_net_tcp() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        let tries = [(s.local_addr().unwrap(), peer)];
        let netlink = sock_diag::lookup_any(&tries).expect("NETLINK_SOCK_DIAG answers");
        assert_eq!(netlink, peer_socket_procfs(&tries));
        // SAFETY: no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(netlink, PeerSocket::Owned(me, own_inode(&c)));
        // A connection nobody has.
        let nobody: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            sock_diag::lookup_any(&[(s.local_addr().unwrap(), nobody)]).unwrap(),
            PeerSocket::Absent
        );
        // Closed by its process, then looked up from the server's side: the
        // kernel still has it, without an owner (as /proc/net/tcp shows it).
        drop(c);
        let after = sock_diag::lookup_any(&tries).unwrap();
        assert_eq!(after, peer_socket_procfs(&tries));
        assert_eq!(after, PeerSocket::Orphaned);
    }

    #[test]
    fn sock_diag_requests_and_answers_have_the_kernel_layout() {
        let me: std::net::SocketAddr = "127.0.0.2:4660".parse().unwrap();
        let far: std::net::SocketAddr = "10.0.0.1:80".parse().unwrap();
        let r = sock_diag::request(me, far, 7).unwrap();
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(r[16], libc::AF_INET as u8);
        assert_eq!(&r[24..26], &4660u16.to_be_bytes());
        assert_eq!(&r[26..28], &80u16.to_be_bytes());
        assert_eq!(&r[28..32], &[127, 0, 0, 2]);
        assert_eq!(&r[44..48], &[10, 0, 0, 1]);
        // Mixed families cannot be one socket.
        let v6: std::net::SocketAddr = "[::1]:80".parse().unwrap();
        assert!(sock_diag::request(me, v6, 1).is_none());
        // An ENOENT error answer is "no such socket"; another seq is refused.
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&2u16.to_ne_bytes());
        err[8..12].copy_from_slice(&7u32.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(sock_diag::parse(&err, 7).unwrap(), None);
        assert!(sock_diag::parse(&err, 8).is_err());
    }

    #[test]
    fn a_connection_of_the_server_to_itself_is_recognised() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        assert!(own_socket(own_inode(&c)));
        assert!(!own_socket(u64::MAX));
    }

    #[test]
    fn proc_net_tcp_rows_tell_owned_from_orphaned() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1900000001        0 4242 1 0000000000000000 20 4 30 10 -1\n\
   1: 0100007F:1F91 0100007F:C350 05 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(
            find_socket(table, "0100007F:1F90", "0100007F:C350"),
            Some(PeerSocket::Owned(1_900_000_001, 4242))
        );
        assert_eq!(
            find_socket(table, "0100007F:1F91", "0100007F:C350"),
            Some(PeerSocket::Orphaned)
        );
        assert_eq!(find_socket(table, "0100007F:1F92", "0100007F:C350"), None);
    }

    #[test]
    fn the_filter_denies_what_it_lists() {
        if seccomp_program().is_empty() {
            return;
        }
        // Run a child under the filter: unshare and mount must fail with EPERM,
        // getpid must work.
        use std::os::unix::process::CommandExt;
        let filter = seccomp_program();
        let mut cmd = std::process::Command::new("/bin/true");
        // SAFETY: system calls only.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let prog = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog as libc::c_ulong,
                    0,
                    0,
                ) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::unshare(libc::CLONE_NEWNS) == 0 || *libc::__errno_location() != libc::EPERM
                {
                    libc::_exit(3);
                }
                if libc::getpid() <= 0 {
                    libc::_exit(4);
                }
                Ok(())
            });
        }
        let st = cmd.status().unwrap();
        assert!(st.success(), "{st:?}");
    }
}

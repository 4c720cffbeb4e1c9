//! Starting and stopping instance processes.
//!
//! Each instance is started with:
//! * an environment built from scratch (nothing of the server's own leaks in);
//! * its own session and process group (so a kill reaches its children), and
//!   `PR_SET_PDEATHSIG=SIGKILL` so it dies with the server even on `kill -9`;
//! * one pipe for stdout and stderr together, as Lambda merges them;
//! * rlimits: no core dumps, bounded open files, bounded file size;
//! * a cgroup (v2, else v1 `memory` + `pids`) with `memory = MemorySize` and no swap,
//!   and a pids cap. Without a writable cgroup hierarchy, `RLIMIT_DATA` caps memory
//!   instead and the pids cap is not enforced (logged once at start-up).
//!
//! Cgroups are grouped per server (`nimbus/<server-id>/<instance-id>`), so a restarted
//! server finds and kills whatever an earlier crash left behind, without touching the
//! instances of another server on the same host.

use crate::{Result, RuntimeError};
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::sync::watch;

/// The descriptor a spare finds its control channel on.
pub const CONTROL_FD: i32 = 3;

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    pub instance_id: String,
    /// The function the process runs (`None` for a spare): recorded against its
    /// uid before it starts, so the edge knows whose key it must sign with.
    pub function: Option<String>,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub memory_mb: u32,
    pub pids_max: u32,
    /// Bytes any one file written by the instance may reach (Lambda's /tmp size).
    pub file_size_max: u64,
    /// A spare (see [`crate::spare`]): the file-size and data rlimits are set as soft
    /// limits only, their hard limits left as inherited, so that the claim can set
    /// both to the instance's values with `prlimit(2)` (an unprivileged process may
    /// lower a hard limit but never raise it).
    pub claimable: bool,
    /// The function's merged layer tree (real path on the host), to be seen at
    /// `/opt` by an instance in its own mount namespace; `None`: no layers.
    /// Without a mount namespace the environment names the real path instead
    /// (see [`crate::layers`]).
    pub opt_dir: Option<PathBuf>,
    /// The function's code on the host (bind-mounted at `/var/task` in a mount
    /// namespace); `None` for a spare.
    pub code_dir: Option<PathBuf>,
    /// The interpreter, re-exposed in a mount namespace when it lives under a
    /// masked dir.
    pub interpreter: Option<PathBuf>,
    /// `/tmp` size in MB in a mount namespace.
    pub tmp_mb: u32,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "signal: {}", signal_name(*s)),
        }
    }
}

fn signal_name(s: i32) -> String {
    match s {
        libc::SIGKILL => "killed".into(),
        libc::SIGSEGV => "segmentation fault".into(),
        libc::SIGABRT => "aborted".into(),
        libc::SIGTERM => "terminated".into(),
        libc::SIGBUS => "bus error".into(),
        libc::SIGFPE => "floating point exception".into(),
        other => format!("{other}"),
    }
}

/// A started process.
pub struct Process {
    pub pid: u32,
    /// Set once when the process has exited.
    pub exit: watch::Receiver<Option<Exit>>,
    /// Read end of the stdout+stderr pipe, taken once by the log pump.
    output: std::sync::Mutex<Option<tokio::net::unix::pipe::Receiver>>,
    cgroup: Option<InstanceCgroup>,
    /// The uid the process runs as, when instances get their own.
    uid: Option<crate::isolation::UidLease>,
    /// `/proc/<pid>/schedstat`, opened on first use and kept open.
    schedstat: std::sync::OnceLock<Option<fs::File>>,
}

/// The scheduler clocks of a process's main thread (`/proc/<pid>/schedstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuReading {
    /// Nanoseconds on a CPU.
    pub on_cpu_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU.
    pub runnable_ns: u64,
}

impl Process {
    /// The uid it runs as, when it has its own (see [`crate::isolation`]).
    pub fn uid(&self) -> Option<u32> {
        self.uid.as_ref().map(|l| l.uid)
    }

    /// The main thread's scheduler clocks now: one `pread` on a descriptor kept
    /// open for the process's life. `None` where the kernel does not say.
    pub fn cpu_reading(&self) -> Option<CpuReading> {
        use std::os::unix::fs::FileExt;
        let file = self
            .schedstat
            .get_or_init(|| fs::File::open(format!("/proc/{}/schedstat", self.pid)).ok())
            .as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        let mut it = std::str::from_utf8(&buf[..n])
            .ok()?
            .split_ascii_whitespace();
        Some(CpuReading {
            on_cpu_ns: it.next()?.parse().ok()?,
            runnable_ns: it.next()?.parse().ok()?,
        })
    }

    /// Kill the process and everything it started. Idempotent.
    pub fn kill(&self) {
        kill_group(self.pid as i32);
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    /// Peak memory of the instance in bytes (cgroup peak, else the main process's
    /// high-water RSS).
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        if let Some(cg) = &self.cgroup {
            if let Some(v) = cg.peak_bytes() {
                return Some(v);
            }
        }
        proc_hwm_bytes(self.pid)
    }

    /// Whether the kernel's OOM killer acted inside the instance's cgroup.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|cg| cg.oom_kills() > 0)
    }

    /// Give a running process (a claimed spare) an instance's limits: the cgroup's
    /// memory cap, and `RLIMIT_FSIZE` (plus `RLIMIT_DATA` without cgroups) as
    /// [`Driver::spawn`] would have set them, soft and hard, with `prlimit(2)`.
    ///
    /// `tmpfs_capped`: the instance's `/tmp` is a tmpfs of its size (a mount
    /// namespace), so a refused `RLIMIT_FSIZE` (a server without
    /// `CAP_SYS_RESOURCE` may not `prlimit` a process of another uid) is not fatal.
    pub fn set_instance_limits(
        &self,
        memory_mb: u32,
        file_size_max: u64,
        tmpfs_capped: bool,
    ) -> std::io::Result<()> {
        if let Some(cg) = &self.cgroup {
            cg.set_memory((memory_mb as u64) * 1024 * 1024)?;
        }
        match prlimit(self.pid, libc::RLIMIT_FSIZE, file_size_max) {
            Err(e) if tmpfs_capped && e.raw_os_error() == Some(libc::EPERM) => {
                tracing::debug!("RLIMIT_FSIZE not set on a claimed spare (no CAP_SYS_RESOURCE); its /tmp is capped by its tmpfs");
            }
            r => r?,
        }
        if self.cgroup.is_none() {
            prlimit(self.pid, libc::RLIMIT_DATA, rlimit_data_bytes(memory_mb))?;
        }
        Ok(())
    }

    pub fn take_output(&self) -> Option<tokio::net::unix::pipe::Receiver> {
        self.output.lock().unwrap().take()
    }

    /// Kill whatever is left in the cgroup and remove it. Blocking (it may wait
    /// for the kernel to empty the group); call after the process has exited.
    pub fn cleanup(&self) {
        self.kill();
        if let Some(cg) = &self.cgroup {
            cg.remove();
        }
    }
}

fn prlimit(pid: u32, resource: libc::__rlimit_resource_t, v: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: prlimit(2) with a valid new limit and no old-limit out pointer.
    if unsafe { libc::prlimit(pid as libc::pid_t, resource, &lim, std::ptr::null_mut()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `RLIMIT_DATA` when no cgroup caps memory: the user's budget plus headroom for
/// the interpreter's own mappings.
fn rlimit_data_bytes(memory_mb: u32) -> u64 {
    (memory_mb as u64 + 64) * 1024 * 1024
}

fn kill_group(pid: i32) {
    if pid > 0 {
        // SAFETY: kill(2) on a negative pid signals that process group; harmless if gone.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn proc_hwm_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Which cgroup hierarchy the host offers us.
#[derive(Debug, Clone)]
enum Hierarchy {
    /// Unified hierarchy: one directory per group.
    V2 { base: PathBuf },
    /// Legacy: separate `memory` and `pids` trees (pids optional).
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
    },
}

/// Spawns instance processes. One per server.
#[derive(Debug, Clone)]
pub struct Driver {
    hierarchy: Option<Hierarchy>,
    /// Pre-started interpreters for cold starts, if enabled.
    spares: Option<std::sync::Arc<crate::spare::Spares>>,
    /// What isolates instances (see [`crate::isolation`]).
    isolation: std::sync::Arc<crate::isolation::Isolation>,
}

impl Driver {
    /// Detect cgroups and create this server's group, killing leftovers of a previous
    /// run with the same `server_id` (derived from the data dir).
    pub fn new(server_id: &str) -> Self {
        let hierarchy = detect(server_id);
        match &hierarchy {
            Some(h) => {
                sweep(h);
                tracing::info!(cgroups = ?h, "instance limits enforced with cgroups");
            }
            None => tracing::warn!(
                "no writable cgroup hierarchy: memory is capped with RLIMIT_DATA and the pids limit is not enforced"
            ),
        }
        Self {
            hierarchy,
            spares: None,
            isolation: std::sync::Arc::new(crate::isolation::Isolation::off()),
        }
    }

    /// Isolate instances (and spares) as `isolation` says. Call before
    /// [`Driver::with_spares`].
    pub fn with_isolation(mut self, isolation: crate::isolation::Isolation) -> Self {
        let pids = matches!(
            &self.hierarchy,
            Some(Hierarchy::V2 { .. }) | Some(Hierarchy::V1 { pids: Some(_), .. })
        );
        isolation.set_pids_limit(pids);
        self.isolation = std::sync::Arc::new(isolation);
        self
    }

    pub fn isolation(&self) -> &crate::isolation::Isolation {
        &self.isolation
    }

    /// Keep pre-started interpreter spares (see [`crate::spare`]); `per_key == 0`
    /// leaves them off.
    pub fn with_spares(mut self, settings: crate::spare::SpareSettings) -> Self {
        if settings.per_key > 0 {
            let plain = Driver {
                hierarchy: self.hierarchy.clone(),
                spares: None,
                isolation: self.isolation.clone(),
            };
            tracing::info!(
                per_key = settings.per_key,
                "pre-started interpreter spares enabled"
            );
            self.spares = Some(crate::spare::Spares::new(plain, settings));
        }
        self
    }

    pub fn spares(&self) -> Option<&std::sync::Arc<crate::spare::Spares>> {
        self.spares.as_ref()
    }

    /// Stop the spares, if any (see [`crate::spare::Spares::shutdown`]).
    pub async fn shutdown_spares(&self) {
        if let Some(s) = &self.spares {
            s.shutdown().await;
        }
    }

    pub fn cgroups_enabled(&self) -> bool {
        self.hierarchy.is_some()
    }

    pub fn describe_limits(&self) -> &'static str {
        match &self.hierarchy {
            Some(Hierarchy::V2 { .. }) => "cgroup v2",
            Some(Hierarchy::V1 { .. }) => "cgroup v1",
            None => "rlimit",
        }
    }

    /// Start a process. Must be called from a long-lived thread (a tokio worker):
    /// `PR_SET_PDEATHSIG` fires when the spawning *thread* exits.
    pub fn spawn(&self, spec: &ProcSpec) -> Result<Process> {
        self.spawn_with_control(spec, None)
    }

    /// [`Driver::spawn`], and when `control` is given, pass it to the child as fd 3
    /// (the control channel of a spare).
    pub fn spawn_with_control(&self, spec: &ProcSpec, control: Option<OwnedFd>) -> Result<Process> {
        let cgroup = match &self.hierarchy {
            Some(h) => match InstanceCgroup::create(h, &spec.instance_id, spec) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    tracing::warn!(error = %e, "could not create instance cgroup; using rlimits");
                    None
                }
            },
            None => None,
        };
        let (read_fd, write_fd) = pipe()?;
        let write_err = write_fd.try_clone()?;

        let uid = self.isolation.lease_uid();
        if let (Some(lease), Some(f)) = (&uid, &spec.function) {
            crate::isolation::set_instance_function(lease.uid, f);
        }
        let prepared = self.isolation.prepare(uid.as_ref().map(|l| l.uid), spec);
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            // In a mount namespace the cwd exists only there: the child goes there.
            .current_dir(if prepared.sets_cwd() {
                Path::new("/")
            } else {
                spec.cwd.as_path()
            })
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_fd))
            .stderr(Stdio::from(write_err))
            .kill_on_drop(false);

        // Per group: the file to write our pid into, and a fallback.
        let cstr = |p: PathBuf| CString::new(p.as_os_str().as_bytes()).ok();
        let attach_files: Vec<(CString, Option<CString>)> = cgroup
            .as_ref()
            .map(|cg| cg.attach_files())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(file, fallback)| Some((cstr(file)?, fallback.and_then(cstr))))
            .collect();
        let rlimit_data = if cgroup.is_none() {
            Some(rlimit_data_bytes(spec.memory_mb))
        } else {
            None
        };
        let fsize = spec.file_size_max;
        // A spare in a mount namespace keeps Lambda's largest file size (its claim
        // does not lower it: the tmpfs holds the function's size), so it is set as
        // a fresh isolated instance's is, soft and hard.
        let claimable = spec.claimable && !prepared.sets_cwd();
        let control_fd = control.as_ref().map(|fd| fd.as_raw_fd());
        // SAFETY: only async-signal-safe calls (setsid, prctl, setrlimit, getrlimit,
        // open, write, close, dup2, fcntl) on memory prepared before fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                if libc::getppid() == 1 {
                    // The server died between fork and prctl.
                    libc::_exit(1);
                }
                // The child is single-threaded here, so moving this thread moves the
                // whole process (see `InstanceCgroup::attach_files`).
                let attach = |path: &CString| {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return false;
                    }
                    let ok = libc::write(fd, b"0\n".as_ptr().cast(), 2) == 2;
                    libc::close(fd);
                    ok
                };
                for (file, fallback) in &attach_files {
                    if !attach(file) {
                        if let Some(f) = fallback {
                            attach(f);
                        }
                    }
                }
                let set = |res, v: u64, soft_only: bool| {
                    let mut lim = libc::rlimit {
                        rlim_cur: v,
                        rlim_max: v,
                    };
                    if soft_only {
                        let mut old = libc::rlimit {
                            rlim_cur: 0,
                            rlim_max: 0,
                        };
                        if libc::getrlimit(res, &mut old) == 0 {
                            lim.rlim_max = old.rlim_max;
                            lim.rlim_cur = v.min(old.rlim_max);
                        }
                    }
                    libc::setrlimit(res, &lim);
                };
                set(libc::RLIMIT_CORE, 0, false);
                set(libc::RLIMIT_NOFILE, 1024, false);
                set(libc::RLIMIT_FSIZE, fsize, claimable);
                if let Some(d) = rlimit_data {
                    set(libc::RLIMIT_DATA, d, claimable);
                }
                if let Some(fd) = control_fd {
                    // dup2 clears close-on-exec on the copy; a descriptor that already
                    // is 3 keeps its flag, so clear it by hand.
                    if fd == CONTROL_FD {
                        libc::fcntl(fd, libc::F_SETFD, 0);
                    } else if libc::dup2(fd, CONTROL_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                prepared.apply()
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if let Some(cg) = cgroup {
                    cg.remove();
                }
                return Err(RuntimeError::Spawn(e));
            }
        };
        drop(cmd); // closes our copies of the write ends
        drop(control); // the child's end of the control channel
        let pid = child.id().unwrap_or(0);
        let (exit_tx, exit_rx) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await;
            let exit = match status {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (_, Some(sig)) => Exit::Signal(sig),
                    _ => Exit::Code(-1),
                },
                Err(_) => Exit::Code(-1),
            };
            let _ = exit_tx.send(Some(exit));
        });
        let output = tokio::net::unix::pipe::Receiver::from_owned_fd(read_fd)?;
        Ok(Process {
            pid,
            exit: exit_rx,
            output: std::sync::Mutex::new(Some(output)),
            cgroup,
            uid,
            schedstat: std::sync::OnceLock::new(),
        })
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds from pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Where a controller is mounted and under which path this process lives.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mounts.lines() {
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let opts = post.nth(1).unwrap_or("");
        if opts.split(',').any(|o| o == controller) {
            return pre.split_whitespace().nth(4).map(PathBuf::from);
        }
    }
    None
}

fn writable_dir(p: &Path) -> bool {
    fs::create_dir_all(p).is_ok() && {
        let probe = p.join("nimbus-probe");
        let ok = fs::create_dir(&probe).is_ok();
        let _ = fs::remove_dir(&probe);
        ok
    }
}

fn detect(server_id: &str) -> Option<Hierarchy> {
    if std::env::var_os("NIMBUS_NO_CGROUPS").is_some() {
        return None;
    }
    let unified = Path::new("/sys/fs/cgroup");
    if let Ok(ctrl) = fs::read_to_string(unified.join("cgroup.controllers")) {
        if ctrl.split_whitespace().any(|c| c == "memory") {
            let top = unified.join("nimbus");
            let base = top.join(server_id);
            let _ = fs::write(unified.join("cgroup.subtree_control"), "+memory +pids");
            if writable_dir(&base) {
                let _ = fs::write(top.join("cgroup.subtree_control"), "+memory +pids");
                let _ = fs::write(base.join("cgroup.subtree_control"), "+memory +pids");
                if base.join("cgroup.subtree_control").exists() {
                    return Some(Hierarchy::V2 { base });
                }
            }
        }
    }
    let memory = v1_mount("memory")?.join("nimbus").join(server_id);
    if !writable_dir(&memory) {
        return None;
    }
    let pids = v1_mount("pids")
        .map(|p| p.join("nimbus").join(server_id))
        .filter(|p| writable_dir(p));
    Some(Hierarchy::V1 { memory, pids })
}

/// Kill and remove instance groups left by an earlier run of this server.
fn sweep(h: &Hierarchy) {
    let bases: Vec<PathBuf> = match h {
        Hierarchy::V2 { base } => vec![base.clone()],
        Hierarchy::V1 { memory, pids } => std::iter::once(memory.clone())
            .chain(pids.clone())
            .collect(),
    };
    let mut killed = 0;
    for base in bases {
        let Ok(entries) = fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                killed += kill_procs_in(&p);
                for _ in 0..50 {
                    if fs::remove_dir(&p).is_ok() {
                        break;
                    }
                    kill_procs_in(&p);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }
    if killed > 0 {
        tracing::warn!(
            killed,
            "killed instance processes left over from a previous run"
        );
    }
}

fn kill_procs_in(group: &Path) -> usize {
    let Ok(procs) = fs::read_to_string(group.join("cgroup.procs")) else {
        return 0;
    };
    let mut n = 0;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: signalling a pid read from the group.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        n += 1;
    }
    n
}

/// One instance's group(s).
#[derive(Debug)]
struct InstanceCgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
    /// The peak-usage file, kept open: read once per invocation (for REPORT's Max
    /// Memory Used) with one `pread` instead of an open/read/close.
    peak: std::sync::OnceLock<Option<fs::File>>,
}

impl InstanceCgroup {
    fn create(h: &Hierarchy, id: &str, spec: &ProcSpec) -> std::io::Result<Self> {
        let mem = (spec.memory_mb as u64) * 1024 * 1024;
        match h {
            Hierarchy::V2 { base } => {
                let dir = base.join(id);
                fs::create_dir(&dir)?;
                fs::write(dir.join("memory.max"), mem.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                let _ = fs::write(dir.join("memory.oom.group"), "1");
                let _ = fs::write(dir.join("pids.max"), spec.pids_max.to_string());
                Ok(Self {
                    dirs: vec![dir],
                    v2: true,
                    peak: std::sync::OnceLock::new(),
                })
            }
            Hierarchy::V1 { memory, pids } => {
                let dir = memory.join(id);
                fs::create_dir(&dir)?;
                fs::write(dir.join("memory.limit_in_bytes"), mem.to_string())?;
                let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), mem.to_string());
                let _ = fs::write(dir.join("memory.swappiness"), "0");
                let mut dirs = vec![dir];
                if let Some(p) = pids {
                    let pd = p.join(id);
                    if fs::create_dir(&pd).is_ok() {
                        let _ = fs::write(pd.join("pids.max"), spec.pids_max.to_string());
                        dirs.push(pd);
                    }
                }
                Ok(Self {
                    dirs,
                    v2: false,
                    peak: std::sync::OnceLock::new(),
                })
            }
        }
    }

    /// Where the child writes `0` to join each group, with a fallback.
    ///
    /// On v1 that is `tasks`, not `cgroup.procs`: both move a single-threaded process
    /// the same way, but a write to `cgroup.procs` migrates a thread group and takes
    /// the global `cgroup_threadgroup_rwsem` for writing, which waits for an RCU
    /// grace period: 5 to 15 ms on every spawn (docs/BENCHMARKS.md). The kernel skips
    /// that lock when a task moves only its own thread, as a write of `0` to `tasks`
    /// does: under 0.1 ms, measured on Linux 6.18 (a kernel that takes the lock anyway
    /// costs what it did before). v2 has no such file for domain groups.
    fn attach_files(&self) -> Vec<(PathBuf, Option<PathBuf>)> {
        self.dirs
            .iter()
            .map(|d| {
                if self.v2 {
                    (d.join("cgroup.procs"), None)
                } else {
                    (d.join("tasks"), Some(d.join("cgroup.procs")))
                }
            })
            .collect()
    }

    /// Change the memory cap of a live group (a claimed spare's).
    fn set_memory(&self, bytes: u64) -> std::io::Result<()> {
        let dir = &self.dirs[0];
        if self.v2 {
            return fs::write(dir.join("memory.max"), bytes.to_string());
        }
        // v1 keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every
        // step: when raising, memsw must move first; when lowering, the limit.
        let limit = dir.join("memory.limit_in_bytes");
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if fs::write(&limit, bytes.to_string()).is_err() {
            let _ = fs::write(&memsw, bytes.to_string());
            fs::write(&limit, bytes.to_string())?;
        }
        let _ = fs::write(&memsw, bytes.to_string());
        Ok(())
    }

    fn peak_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = self
            .peak
            .get_or_init(|| {
                let name = if self.v2 {
                    "memory.peak"
                } else {
                    "memory.max_usage_in_bytes"
                };
                fs::File::open(self.dirs[0].join(name)).ok()
            })
            .as_ref()?;
        let mut buf = [0u8; 32];
        let n = file.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        let Ok(s) = fs::read_to_string(self.dirs[0].join(file)) else {
            return 0;
        };
        let from_counter = s
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        if from_counter > 0 || self.v2 {
            return from_counter;
        }
        // Old v1 kernels without the counter: a hit limit is the best evidence.
        fs::read_to_string(self.dirs[0].join("memory.failcnt"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn kill_all(&self) {
        if self.v2 && fs::write(self.dirs[0].join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for _ in 0..3 {
            let n: usize = self.dirs.iter().map(|d| kill_procs_in(d)).sum();
            if n == 0 {
                break;
            }
        }
    }

    fn remove(&self) {
        for d in &self.dirs {
            for _ in 0..50 {
                if fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                kill_procs_in(d);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_display_matches_lambda_wording() {
        assert_eq!(Exit::Code(3).to_string(), "exit status 3");
        assert_eq!(Exit::Signal(libc::SIGKILL).to_string(), "signal: killed");
        assert_eq!(
            Exit::Signal(libc::SIGSEGV).to_string(),
            "signal: segmentation fault"
        );
    }
}

//! One function instance: a process, its Runtime API endpoint and its log pump.

use crate::api::{ApiEvent, Invocation, RuntimeApi, RuntimeReply};
use crate::sandbox::{Driver, Exit, ProcSpec, Process};
use crate::RuntimeError;
use bytes::Bytes;
use nimbus_core::{limits, FunctionError, Outcome, Runtime};
use nimbus_telemetry::{lines, Telemetry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex};

/// Everything needed to start an instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub id: String,
    pub function: String,
    pub version: String,
    pub revision: u64,
    pub runtime: Runtime,
    pub handler: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub environment: BTreeMap<String, String>,
    pub code_dir: PathBuf,
    /// The merged tree of the function's layers (real path), seen at `/opt` in a
    /// mount namespace; `None`: no layers (see [`crate::layers`]).
    pub opt_dir: Option<PathBuf>,
    /// Where Nimbus's own bootstraps live (`python/bootstrap.py`, `node/bootstrap.js`).
    pub runtime_dir: PathBuf,
    /// Parent of the per-instance scratch dir.
    pub scratch_root: PathBuf,
    /// `PYTHONPYCACHEPREFIX` of python instances. One per server, not per code
    /// revision: with a prefix set Python ignores the stdlib's own `__pycache__`, so a
    /// per-revision prefix recompiled the stdlib (about 300 ms) on the first cold
    /// start of every new revision. Code dirs are content-addressed, so entries of
    /// different revisions never collide.
    pub pycache_dir: PathBuf,
    pub region: String,
    pub interpreter: Option<PathBuf>,
    pub provisioned: bool,
    /// Largest file the instance may write, in MB (Lambda's ephemeral storage).
    pub ephemeral_storage_mb: u32,
    /// `AWS_ENDPOINT_URL`, the function's credentials, the SDK path (`services`).
    pub services: crate::services::ServiceEnv,
}

/// One request for an instance.
#[derive(Debug)]
pub struct InvokeRequest {
    pub request_id: String,
    pub payload: Bytes,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    /// `Init Duration` to put in REPORT (cold starts only).
    pub init_ms: Option<f64>,
}

/// What the caller gets back.
#[derive(Debug, Clone)]
pub enum Reply {
    Response(Bytes),
    Error(FunctionError),
}

#[derive(Debug)]
pub struct InvokeOutcome {
    pub reply: Reply,
    pub outcome: Outcome,
    pub duration_ms: f64,
    pub max_memory_used_mb: u32,
    /// The last 4 KB of this invocation's log, START to REPORT.
    pub log_tail: String,
    /// False when the instance died or was killed and must not be reused.
    pub reusable: bool,
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}: {}", .0.error_type, .0.error_message)]
    Init(FunctionError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

enum PumpCmd {
    Begin {
        request_id: String,
        start_line: String,
    },
    End {
        ack: oneshot::Sender<String>,
    },
}

/// A running instance.
pub struct Instance {
    pub id: String,
    pub function: String,
    pub version: String,
    pub revision: u64,
    pub pid: u32,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub provisioned: bool,
    pub init_ms: f64,
    /// Whether a pre-started spare became this instance (its init skipped the
    /// interpreter's own start, which the spare's replacement pays instead).
    pub from_spare: bool,
    process: Arc<Process>,
    invocations: mpsc::Sender<Invocation>,
    pump: mpsc::UnboundedSender<PumpCmd>,
    telemetry: Telemetry,
    scratch: PathBuf,
    dead: AtomicBool,
    /// Serialises invocations: one request per instance.
    busy: Mutex<()>,
    _api: RuntimeApi,
    /// Run once the first invocation is over (see `Instance::start`).
    after_first_invoke: std::sync::Mutex<Option<Replenish>>,
}

type Replenish = Box<dyn FnOnce() + Send>;

const TAIL_BYTES: usize = 4096;

/// Lambda's largest ephemeral storage, a spare's file-size rlimit.
pub(crate) const SPARE_FILE_SIZE_MAX: u64 = 10_240 * 1024 * 1024;

impl Instance {
    /// Start the process and wait for init to finish (its first `/next`).
    pub async fn start(
        spec: InstanceSpec,
        driver: &Driver,
        telemetry: Telemetry,
    ) -> Result<Arc<Instance>, StartError> {
        let mut api = RuntimeApi::start_restricted()
            .await
            .map_err(RuntimeError::Io)?;
        let scratch = spec.scratch_root.join(&spec.id);
        std::fs::create_dir_all(scratch.join("tmp")).map_err(RuntimeError::Io)?;
        let view = View::of(driver.isolation(), &spec);
        let (program, args) = command_for(&spec, &view)?;
        let env = environment(&spec, &api, &scratch, &view, driver.isolation());
        let proc_spec = ProcSpec {
            function: Some(spec.function.clone()),
            instance_id: spec.id.clone(),
            program,
            args,
            env,
            cwd: view.code_dir.clone(),
            code_dir: Some(spec.code_dir.clone()),
            interpreter: spec.interpreter.clone(),
            tmp_mb: spec.ephemeral_storage_mb,
            memory_mb: spec.memory_mb,
            pids_max: limits::PIDS_PER_INSTANCE,
            // In a mount namespace the tmpfs at /tmp holds the function's size, and
            // every instance gets Lambda's largest as its file-size rlimit, which a
            // claimed spare already has (a server without CAP_SYS_RESOURCE cannot
            // lower another uid's limit).
            file_size_max: if view.mount_ns {
                SPARE_FILE_SIZE_MAX
            } else {
                spec.ephemeral_storage_mb as u64 * 1024 * 1024
            },
            claimable: false,
            opt_dir: spec.opt_dir.clone(),
        };
        let fresh = spec
            .opt_dir
            .as_deref()
            .is_some_and(crate::layers::needs_fresh_process);
        let spare_key = driver.spares().filter(|_| !fresh).and_then(|s| {
            s.key(
                spec.runtime,
                spec.interpreter.as_deref(),
                spec.memory_mb,
                &spec.environment,
            )
        });
        // Init Duration runs from here, whether a spare is claimed or a process spawned.
        let t0 = Instant::now();
        // The instance's uid may reach its Runtime API, and the edge knows which
        // function's key it must sign with.
        let bind_uid = |uid: Option<u32>| {
            if let Some(u) = uid {
                crate::isolation::set_instance_function(u, &spec.function);
            }
            api.allow(uid);
        };
        let claimed = match (driver.spares(), &spare_key) {
            (Some(spares), Some(key)) => spares.claim(key, &proc_spec, &bind_uid),
            _ => None,
        };
        let from_spare = claimed.is_some();
        let spawned = match claimed {
            Some(p) => Ok(p),
            None => driver.spawn(&proc_spec).inspect(|p| bind_uid(p.uid())),
        };
        let process = match spawned {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e.into());
            }
        };
        tracing::debug!(
            function = %spec.function,
            instance = %spec.id,
            pid = process.pid,
            from_spare,
            "instance process started"
        );
        let mut exit = process.exit.clone();
        let (pump_tx, pump_rx) = mpsc::unbounded_channel();
        // The pump owns the read end of the output pipe.
        let output = {
            // SAFETY-free move: Process exposes the receiver by value only at creation.
            take_output(&process)
        };
        tokio::spawn(pump(
            output,
            pump_rx,
            telemetry.clone(),
            spec.function.clone(),
        ));

        let init_timeout = Duration::from_secs(limits::INIT_TIMEOUT_S as u64);
        let result = tokio::select! {
            biased;
            ev = api.events.recv() => match ev {
                Some(ApiEvent::Ready) => Ok(()),
                Some(ApiEvent::InitError(e)) => Err(e),
                None => Err(FunctionError::exit_error("runtime api closed")),
            },
            _ = exited(&mut exit) => {
                // An init error posted just before exiting wins over the bare exit.
                tokio::time::sleep(Duration::from_millis(5)).await;
                match api.events.try_recv() {
                    Ok(ApiEvent::InitError(e)) => Err(e),
                    _ => {
                        let exit = (*process.exit.borrow()).unwrap_or(Exit::Code(-1));
                        Err(if process.oom_killed() {
                            FunctionError::out_of_memory()
                        } else {
                            FunctionError::exit_error(&exit.to_string())
                        })
                    }
                }
            }
            _ = tokio::time::sleep(init_timeout) => Err(FunctionError::new(
                "Sandbox.Timedout",
                format!("Init phase timed out after {}.00 seconds", limits::INIT_TIMEOUT_S),
            )),
        };
        let init_ms = t0.elapsed().as_secs_f64() * 1000.0;
        // A replacement spare (or this key's first) starts once the request that
        // paid for this cold start has its answer, so it never competes with that
        // request for the CPU; at once when no request waits (failed init, a
        // provisioned instance).
        let mut replenish: Option<Replenish> = None;
        if let (Some(spares), Some(key)) = (driver.spares().cloned(), spare_key) {
            if result.is_ok() && !spec.provisioned {
                replenish = Some(Box::new(move || spares.replenish(key)));
            } else {
                spares.replenish(key);
            }
        }
        if let Err(e) = result {
            telemetry.log(
                &spec.function,
                None,
                format!("INIT_REPORT Init Duration: {init_ms:.2} ms\tPhase: init\tStatus: error\tError Type: {}", e.error_type),
            );
            stop_process(process, scratch).await;
            drop(pump_tx);
            return Err(StartError::Init(e));
        }
        Ok(Arc::new(Instance {
            id: spec.id,
            function: spec.function,
            version: spec.version,
            revision: spec.revision,
            pid: process.pid,
            memory_mb: spec.memory_mb,
            timeout_s: spec.timeout_s,
            provisioned: spec.provisioned,
            init_ms,
            from_spare,
            invocations: api.invocations.clone(),
            process,
            pump: pump_tx,
            telemetry,
            scratch,
            dead: AtomicBool::new(false),
            busy: Mutex::new(()),
            _api: api,
            after_first_invoke: std::sync::Mutex::new(replenish),
        }))
    }

    /// The instance process's scheduler clocks now (for the pool's CPU share).
    pub fn cpu_reading(&self) -> Option<crate::sandbox::CpuReading> {
        self.process.cpu_reading()
    }

    /// Whether the process is gone (or was condemned).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst) || self.process.exit.borrow().is_some()
    }

    /// Run one request.
    pub async fn invoke(&self, req: InvokeRequest) -> InvokeOutcome {
        let _one_at_a_time = self.busy.lock().await;
        let _ = self.pump.send(PumpCmd::Begin {
            request_id: req.request_id.clone(),
            start_line: lines::start(&req.request_id, &self.version),
        });
        let timeout = Duration::from_secs(self.timeout_s as u64);
        let (reply_tx, reply_rx) = oneshot::channel();
        let start = Instant::now();
        let deadline_ms = nimbus_core::now_ms() + timeout.as_millis() as i64;
        let inv = Invocation {
            request_id: req.request_id.clone(),
            payload: req.payload,
            deadline_ms,
            function_arn: req.function_arn,
            trace_id: req.trace_id,
            client_context: req.client_context,
            cognito_identity: req.cognito_identity,
            reply: reply_tx,
        };
        let mut exit = self.process.exit.clone();
        let (reply, outcome, reusable) = if self.invocations.try_send(inv).is_err() {
            self.dead.store(true, Ordering::SeqCst);
            (
                Reply::Error(FunctionError::exit_error("instance not accepting work")),
                Outcome::RuntimeError,
                false,
            )
        } else {
            tokio::select! {
                biased;
                r = reply_rx => match r {
                    Ok(RuntimeReply::Response(b)) => (Reply::Response(b), Outcome::Success, true),
                    Ok(RuntimeReply::Error(e)) => {
                        let runtime_fault = e.error_type.starts_with("Runtime.InvalidStateTransition");
                        (Reply::Error(e), if runtime_fault { Outcome::RuntimeError } else { Outcome::FunctionError }, !runtime_fault)
                    }
                    Err(_) => (Reply::Error(FunctionError::exit_error("runtime api closed")), Outcome::RuntimeError, false),
                },
                _ = exited(&mut exit) => {
                    let exit = (*self.process.exit.borrow()).unwrap_or(Exit::Code(-1));
                    if self.process.oom_killed() {
                        (Reply::Error(FunctionError::out_of_memory()), Outcome::OutOfMemory, false)
                    } else {
                        (Reply::Error(FunctionError::exit_error(&exit.to_string())), Outcome::RuntimeError, false)
                    }
                }
                _ = tokio::time::sleep(timeout) => {
                    (Reply::Error(FunctionError::timeout(self.timeout_s)), Outcome::Timeout, false)
                }
            }
        };
        let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
        if !reusable {
            self.dead.store(true, Ordering::SeqCst);
            self.process.kill();
            // Let the pipe reach EOF so the pump has everything the process wrote.
            let _ = tokio::time::timeout(Duration::from_millis(500), exited(&mut exit)).await;
        }
        let (ack_tx, ack_rx) = oneshot::channel();
        let _ = self.pump.send(PumpCmd::End { ack: ack_tx });
        let mut tail = ack_rx.await.unwrap_or_default();
        let max_memory_used_mb = self
            .process
            .peak_memory_bytes()
            .map(|b| b.div_ceil(1024 * 1024) as u32)
            .unwrap_or(0);
        let id = &req.request_id;
        let mut extra = Vec::new();
        if outcome == Outcome::Timeout {
            extra.push(format!(
                "{} {id} Task timed out after {}.00 seconds",
                rfc3339_now(),
                self.timeout_s
            ));
        }
        extra.push(lines::end(id));
        extra.push(lines::report(&lines::Report {
            request_id: id,
            duration_ms,
            billed_ms: nimbus_core::invocation::billed_ms(duration_ms),
            memory_mb: self.memory_mb,
            max_memory_used_mb,
            init_ms: req.init_ms,
        }));
        for line in extra {
            tail.push_str(&line);
            tail.push('\n');
            self.telemetry.log(&self.function, Some(id), line);
        }
        let after = self.after_first_invoke.lock().unwrap().take();
        if let Some(f) = after {
            f();
        }
        InvokeOutcome {
            reply,
            outcome,
            duration_ms,
            max_memory_used_mb,
            log_tail: last_bytes(tail, TAIL_BYTES),
            reusable,
        }
    }

    /// Kill the process and clean up its scratch dir and cgroup.
    pub async fn stop(&self) {
        self.dead.store(true, Ordering::SeqCst);
        stop_process(self.process.clone(), self.scratch.clone()).await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Last line of defence: never leave a process behind.
        self.process.kill();
    }
}

async fn stop_process(process: Arc<Process>, scratch: PathBuf) {
    process.kill();
    let mut exit = process.exit.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), exited(&mut exit)).await;
    let _ = tokio::task::spawn_blocking(move || {
        process.cleanup();
        let _ = std::fs::remove_dir_all(&scratch);
    })
    .await;
}

/// Resolves once the process has exited.
async fn exited(rx: &mut tokio::sync::watch::Receiver<Option<Exit>>) {
    let _ = rx.wait_for(|e| e.is_some()).await;
}

fn take_output(process: &Arc<Process>) -> tokio::net::unix::pipe::Receiver {
    process.take_output().expect("output taken once, at start")
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn last_bytes(s: String, n: usize) -> String {
    if s.len() <= n {
        return s;
    }
    let mut cut = s.len() - n;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    s[cut..].to_string()
}

/// Runs `bootstrap.py` (argv[1]) as an imported module rather than as a script.
///
/// Python never caches the bytecode of the script it runs as `__main__`, so
/// `python bootstrap.py` compiled the whole bootstrap on every cold start (5 to 7 ms,
/// about a tenth of a bare interpreter start; docs/BENCHMARKS.md). Imported, its
/// bytecode is cached under `PYTHONPYCACHEPREFIX` like any module and validated
/// against the source's mtime and size. The module is then dropped from
/// `sys.modules` (a user module named `bootstrap` stays importable) and `sys.argv`
/// is what it was for the script, so user code sees the same process as before.
const PYTHON_LAUNCHER: &str = "import sys
f = sys.argv[1]
sys.argv[:] = [f]
sys.path[0] = f.rpartition('/')[0]
import bootstrap
del sys.modules['bootstrap']
bootstrap.main()
";

/// How Nimbus's own bootstrap for `runtime` is started (`None` for `provided.*`).
/// Spares are started with exactly this command.
pub(crate) fn bootstrap_command(
    runtime: Runtime,
    interpreter: &Path,
    runtime_dir: &Path,
) -> Option<(PathBuf, Vec<String>)> {
    match runtime {
        Runtime::Python { .. } => {
            let script = runtime_dir.join("python").join("bootstrap.py");
            Some((
                interpreter.to_path_buf(),
                vec![
                    "-u".into(),
                    "-c".into(),
                    PYTHON_LAUNCHER.into(),
                    script.to_string_lossy().into_owned(),
                ],
            ))
        }
        Runtime::Node { .. } => {
            let script = runtime_dir.join("node").join("bootstrap.js");
            Some((
                interpreter.to_path_buf(),
                vec![script.to_string_lossy().into_owned()],
            ))
        }
        Runtime::Provided(_) => None,
    }
}

/// The paths an instance sees: the host's, or Lambda's in a mount namespace.
struct View {
    code_dir: PathBuf,
    runtime_dir: PathBuf,
    tmp: PathBuf,
    opt_dir: Option<PathBuf>,
    mount_ns: bool,
}

impl View {
    fn of(iso: &crate::isolation::Isolation, spec: &InstanceSpec) -> View {
        if iso.mount_ns() {
            View {
                code_dir: PathBuf::from(crate::isolation::TASK_ROOT),
                runtime_dir: PathBuf::from(crate::isolation::RUNTIME_ROOT),
                tmp: PathBuf::from("/tmp"),
                opt_dir: spec
                    .opt_dir
                    .as_ref()
                    .map(|_| PathBuf::from(crate::layers::OPT_MOUNT)),
                mount_ns: true,
            }
        } else {
            View {
                code_dir: spec.code_dir.clone(),
                runtime_dir: spec.runtime_dir.clone(),
                tmp: spec.scratch_root.join(&spec.id).join("tmp"),
                opt_dir: spec.opt_dir.clone(),
                mount_ns: false,
            }
        }
    }
}

fn command_for(spec: &InstanceSpec, view: &View) -> Result<(PathBuf, Vec<String>), StartError> {
    match spec.runtime {
        Runtime::Python { .. } | Runtime::Node { .. } => {
            let interp = spec
                .interpreter
                .as_deref()
                .ok_or_else(|| RuntimeError::NoInterpreter(spec.runtime.to_string()))?;
            Ok(bootstrap_command(spec.runtime, interp, &view.runtime_dir)
                .expect("python and node have a bootstrap"))
        }
        Runtime::Provided(_) => {
            let bootstrap = spec.code_dir.join("bootstrap");
            let ok = std::fs::metadata(&bootstrap)
                .map(|m| {
                    m.is_file()
                        && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
                .unwrap_or(false);
            if !ok {
                return Err(StartError::Init(FunctionError::new(
                    "Runtime.InvalidEntrypoint",
                    "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
                )));
            }
            Ok((view.code_dir.join("bootstrap"), vec![]))
        }
    }
}

fn environment(
    spec: &InstanceSpec,
    api: &RuntimeApi,
    _scratch: &std::path::Path,
    view: &View,
    iso: &crate::isolation::Isolation,
) -> Vec<(String, String)> {
    let date = time::OffsetDateTime::now_utc();
    let stream = format!(
        "{:04}/{:02}/{:02}/[{}]{}",
        date.year(),
        date.month() as u8,
        date.day(),
        spec.version,
        spec.id.replace('-', "")
    );
    let tmp = view.tmp.to_string_lossy().into_owned();
    let mut env: Vec<(String, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), api.addr.to_string()),
        ("_HANDLER".into(), spec.handler.clone()),
        (
            "LAMBDA_TASK_ROOT".into(),
            view.code_dir.to_string_lossy().into_owned(),
        ),
        (
            "LAMBDA_RUNTIME_DIR".into(),
            view.runtime_dir.to_string_lossy().into_owned(),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), spec.function.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), spec.version.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            spec.memory_mb.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", spec.function),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), stream),
        ("AWS_REGION".into(), spec.region.clone()),
        ("AWS_DEFAULT_REGION".into(), spec.region.clone()),
        (
            "AWS_LAMBDA_INITIALIZATION_TYPE".into(),
            if spec.provisioned {
                "provisioned-concurrency"
            } else {
                "on-demand"
            }
            .into(),
        ),
        ("TZ".into(), ":UTC".into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("TMPDIR".into(), tmp.clone()),
        ("HOME".into(), tmp),
    ];
    if let Some(e) = spec.runtime.execution_env() {
        env.push(("AWS_EXECUTION_ENV".into(), e));
    }
    // In a mount namespace there is no shared bytecode cache: every function's code
    // is at /var/task, so one function's cached bytecode could pass for another's.
    if matches!(spec.runtime, Runtime::Python { .. }) && !view.mount_ns {
        env.push((
            "PYTHONPYCACHEPREFIX".into(),
            spec.pycache_dir.to_string_lossy().into_owned(),
        ));
    }
    env.extend(spec.services.vars().iter().map(|(k, v)| {
        // The SDK dirs are bind-mounted under /var/nimbus/sdk in a mount namespace.
        let v = iso
            .sdk_path(Path::new(v))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| v.clone());
        (k.clone(), v)
    }));
    if let Some(opt) = &view.opt_dir {
        crate::layers::merge_into(&mut env, crate::layers::layer_env(opt, spec.runtime));
    }
    env.extend(spec.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Reads the instance's stdout+stderr, splits lines, attributes them to the current
/// request and caps what one invocation may log.
async fn pump(
    output: tokio::net::unix::pipe::Receiver,
    mut cmds: mpsc::UnboundedReceiver<PumpCmd>,
    telemetry: Telemetry,
    function: String,
) {
    let mut st = PumpState {
        telemetry,
        function,
        current: None,
        partial: Vec::new(),
        logged: 0,
        truncated: false,
        tail: String::new(),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut eof = false;
    loop {
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(PumpCmd::Begin { request_id, start_line }) => {
                    st.flush_partial();
                    st.current = Some(request_id);
                    st.logged = 0;
                    st.truncated = false;
                    st.tail.clear();
                    st.emit(start_line);
                }
                Some(PumpCmd::End { ack }) => {
                    // Everything the runtime wrote before answering is in the pipe now.
                    while !eof {
                        match output.try_read(&mut buf) {
                            Ok(0) => eof = true,
                            Ok(n) => st.feed(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => eof = true,
                        }
                    }
                    st.flush_partial();
                    let _ = ack.send(std::mem::take(&mut st.tail));
                    st.current = None;
                    st.logged = 0;
                    st.truncated = false;
                }
            },
            r = output.readable(), if !eof => {
                if r.is_err() { eof = true; continue; }
                match output.try_read(&mut buf) {
                    Ok(0) => { eof = true; st.flush_partial(); }
                    Ok(n) => st.feed(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => eof = true,
                }
            }
        }
    }
}

struct PumpState {
    telemetry: Telemetry,
    function: String,
    current: Option<String>,
    partial: Vec<u8>,
    logged: usize,
    truncated: bool,
    tail: String,
}

const MAX_LINE: usize = 256 * 1024;

impl PumpState {
    fn feed(&mut self, mut data: &[u8]) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..pos]);
            self.flush_partial();
            data = &data[pos + 1..];
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() >= MAX_LINE {
            self.flush_partial();
        }
    }

    fn flush_partial(&mut self) {
        if self.partial.is_empty() {
            return;
        }
        // Past the cap the output is drained and dropped, without decoding it.
        if self.truncated {
            self.partial.clear();
            return;
        }
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let line = String::from_utf8_lossy(&bytes).into_owned();
        self.logged += line.len() + 1;
        if self.logged > limits::LOG_BYTES_PER_INVOCATION {
            if !self.truncated {
                self.truncated = true;
                self.emit(format!(
                    "[nimbus] log output truncated: this invocation wrote more than {} bytes",
                    limits::LOG_BYTES_PER_INVOCATION
                ));
            }
            return;
        }
        self.emit(line);
    }

    fn emit(&mut self, line: String) {
        if self.current.is_some() {
            self.tail.push_str(&line);
            self.tail.push('\n');
            if self.tail.len() > 4 * TAIL_BYTES {
                self.tail = last_bytes(std::mem::take(&mut self.tail), TAIL_BYTES);
            }
        }
        self.telemetry
            .log(&self.function, self.current.as_deref(), line);
    }
}

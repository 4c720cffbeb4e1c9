//! Per-function instance pools (DESIGN.md decision 4: one request per instance).
//!
//! A pool is keyed by the function (and, later, version) it serves. It hands out
//! warm idle instances last-in-first-out (the most recently used is the warmest),
//! cold-starts a new one when none is idle, stops idle instances after the keep-alive,
//! keeps `provisioned_concurrency` instances initialised at all times, and retires
//! instances of an older code revision: idle ones at once, busy ones when they finish.
//!
//! Admission (how many may run at once) is the invoker's job; the pool starts an
//! instance whenever asked.

use crate::driver::{DriverInstance, ProcessDriver, RuntimeDriver};
use crate::instance::{Instance, InstanceSpec, StartError};
use crate::interpreters::Interpreters;
use crate::sandbox::CpuReading;
use crate::RuntimeError;
use nimbus_core::FunctionConfig;
use nimbus_telemetry::Telemetry;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Idle instances are stopped after this long unused.
    pub keep_alive: Duration,
    pub data_dir: PathBuf,
    /// Where the bootstraps were written.
    pub runtime_dir: PathBuf,
    pub region: String,
    /// Names this server's cgroup, so two servers on one host stay apart.
    pub server_id: String,
    /// What a request does when every instance of its function is busy.
    pub scale_up: ScaleUp,
    /// Pre-started interpreter spares kept per interpreter (and, for Node, memory
    /// size) for cold starts; 0 disables them (see `spare`).
    pub spares: usize,
    /// The API endpoint, function credentials and SDKs instances get (see `services`).
    pub services: crate::services::ServiceAccess,
    /// How instances are isolated (`--isolation`, see `isolation`).
    pub isolation: crate::isolation::IsolationMode,
}

/// What a request does when no instance of its function is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleUp {
    /// Start a new instance at once, as Lambda does.
    Eager,
    /// Start one at once up to one busy instance per CPU; past that, wait for a
    /// busy instance when that is expected sooner than a start, when the busy
    /// instances already want every CPU, or when the host's CPUs are all busy (see
    /// [`patience`]). Short requests under load then share a few busy instances
    /// instead of spreading over one process per concurrent request, which on a
    /// small host costs more CPU per request than it saves (docs/BENCHMARKS.md,
    /// "Scale-up policy"). Slow and I/O-bound requests still get one each.
    #[default]
    Adaptive,
}

/// One function revision, as the pool needs it.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Pool key: the function name, or `name:version`.
    pub key: String,
    pub version: String,
    pub config: Arc<FunctionConfig>,
    pub code_dir: PathBuf,
    pub interpreter: Option<PathBuf>,
    /// The merged tree of the function's layers (`None`: it has none); see
    /// [`crate::layers`].
    pub opt_dir: Option<PathBuf>,
}

/// An instance handed out for one request. Give it back with [`Pool::release`].
pub struct Lease<I = Instance> {
    pub instance: Arc<I>,
    pub cold: bool,
    /// Init duration when this request paid for the cold start.
    pub init_ms: Option<f64>,
    key: String,
    since: Instant,
    /// The instance's CPU clocks when the lease began (adaptive policy only).
    cpu_start: Option<CpuReading>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Idle,
    Busy,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceInfo {
    pub id: String,
    pub pid: u32,
    pub state: InstanceState,
    pub revision: u64,
    pub provisioned: bool,
    pub init_ms: f64,
}

/// How many instances of one function version are in each state (for the metrics).
#[derive(Debug, Clone, Serialize)]
pub struct PoolCensus {
    pub function: String,
    pub version: String,
    /// Started and not yet through init (cold starts and provisioned top-ups).
    pub initialising: usize,
    pub idle: usize,
    pub busy: usize,
}

struct FnPool<I> {
    deployment: Arc<Deployment>,
    idle: Vec<(Arc<I>, Instant)>,
    busy: HashMap<String, Arc<I>>,
    starting: usize,
    /// Requests waiting for a busy instance ([`ScaleUp::Adaptive`]), oldest first.
    waiters: VecDeque<oneshot::Sender<Arc<I>>>,
    /// Moving averages of how long a request holds an instance and how long an
    /// instance takes to start, in ms (`None` until seen).
    service_ms: Option<f64>,
    start_ms: Option<f64>,
    /// When a request last gave an instance back.
    last_release: Instant,
    /// Moving average of the share of a request's service time its instance wanted
    /// a CPU (see [`cpu_share`]); `None` until seen or where the kernel does not say.
    cpu_share: Option<f64>,
}

impl<I: DriverInstance> FnPool<I> {
    fn new(deployment: Arc<Deployment>) -> Self {
        FnPool {
            deployment,
            idle: Vec::new(),
            busy: HashMap::new(),
            starting: 0,
            waiters: VecDeque::new(),
            service_ms: None,
            start_ms: None,
            last_release: Instant::now(),
            cpu_share: None,
        }
    }

    fn revision(&self) -> u64 {
        self.deployment.config.revision
    }

    /// How long a request that finds no idle instance should wait for a busy one
    /// before starting its own, or `None` to start one at once (the rules are
    /// [`patience`]'s). It waits about as long as a start takes, longer while the
    /// queue keeps moving (see [`Pool::acquire`]).
    fn patience(&self) -> Option<Duration> {
        patience(
            &Signals {
                service_ms: self.service_ms?,
                start_ms: self.start_ms?,
                cpu_share: self.cpu_share,
                busy: self.busy.len() + self.starting,
                starting: self.starting,
                waiting: self.waiters.len(),
            },
            *HOST_CPUS,
            HOST_BUSY.load(Ordering::Relaxed),
        )
    }

    /// Hand a freed instance to the oldest waiter still waiting, else keep it idle.
    fn hand_over(&mut self, mut inst: Arc<I>) {
        while let Some(w) = self.waiters.pop_front() {
            match w.send(inst) {
                Ok(()) => return,
                Err(back) => inst = back,
            }
        }
        self.busy.remove(inst.id());
        self.idle.push((inst, Instant::now()));
    }
}

/// What [`patience`] decides from, for one function: the moving averages of service
/// and start times (ms) and of the CPU share of the service time, instances busy or
/// starting, those starting, and requests already waiting.
#[derive(Clone, Copy)]
struct Signals {
    service_ms: f64,
    start_ms: f64,
    cpu_share: Option<f64>,
    busy: usize,
    starting: usize,
    waiting: usize,
}

/// [`FnPool::patience`] from its [`Signals`], the host's CPUs and whether they are
/// all busy. A request waits when the host's CPUs are all busy; and, past one
/// instance per CPU, when one start per CPU is already under way, when the expected
/// wait (its place in the queue × the service time ÷ the busy instances) is shorter
/// than a start, or when the busy instances already want every CPU.
fn patience(sig: &Signals, cpus: f64, host_busy: bool) -> Option<Duration> {
    let Signals {
        service_ms,
        start_ms,
        cpu_share,
        busy,
        starting,
        waiting,
    } = *sig;
    if busy == 0 {
        return None;
    }
    // Past one instance per CPU, at most one start per CPU at a time: a burst
    // grows the pool step by step, each step measured, not all at once on a
    // service time that the burst itself is inflating.
    let throttled = busy as f64 >= cpus && starting as f64 >= cpus;
    let start = start_ms.max(MIN_START_COST_MS);
    let busy = busy as f64;
    let expected = (waiting + 1) as f64 * service_ms / busy;
    // The busy instances already want every CPU: another one would only share them.
    let cpu_bound = cpu_share.is_some_and(|share| busy * share >= cpus);
    let wait = host_busy || throttled || (busy >= cpus && (expected < start || cpu_bound));
    wait.then(|| Duration::from_secs_f64(start / 1000.0))
}

/// The share of a request's service time its instance wanted a CPU: time on a CPU
/// over the service time less the time it was runnable but waiting for a CPU, so a
/// busy host does not make a CPU-bound function look idle.
fn cpu_share(start: CpuReading, end: CpuReading, service_ms: f64) -> f64 {
    let on = end.on_cpu_ns.saturating_sub(start.on_cpu_ns) as f64 / 1e6;
    let waited = end.runnable_ns.saturating_sub(start.runnable_ns) as f64 / 1e6;
    (on / (service_ms - waited).max(on).max(0.001)).min(1.0)
}

/// Weight of the newest sample in the moving averages.
const EWMA_WEIGHT: f64 = 0.2;

fn ewma(avg: &mut Option<f64>, sample: f64) {
    *avg = Some(match *avg {
        Some(a) => a + EWMA_WEIGHT * (sample - a),
        None => sample,
    });
}

/// The least a start is taken to cost when deciding whether to wait for a busy
/// instance. A start that looks cheaper (a small native `provided` bootstrap) still
/// adds a process, and a process per concurrent request costs CPU on every request
/// after (cache and scheduler churn: docs/BENCHMARKS.md, "Scale-up policy").
const MIN_START_COST_MS: f64 = 20.0;

/// Logical CPUs of the host: how many instances can run at the same time.
static HOST_CPUS: std::sync::LazyLock<f64> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);

/// Whether the host's CPUs were all but fully busy over the pool's last tick
/// (from `/proc/stat`), in which case another instance cannot run any sooner.
static HOST_BUSY: AtomicBool = AtomicBool::new(false);

/// Fewer idle CPUs than this, on average over a tick, and the host counts as busy:
/// a quarter of a CPU is what the platform and its clients leave idle in
/// scheduling gaps when the CPUs are in fact the bottleneck (vmstat under load on a
/// 2-CPU host: 1–8 % idle).
const HOST_IDLE_FLOOR: f64 = 0.25;

/// Samples `/proc/stat` and updates [`HOST_BUSY`]: busy when fewer than
/// [`HOST_IDLE_FLOOR`] CPUs were idle on average since the previous call.
fn sample_host_cpu(prev: &mut Option<(u64, u64)>) {
    let Some(now) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        let line = s.lines().next()?;
        let v: Vec<u64> = line
            .split_ascii_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal …
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((v.iter().take(8).sum::<u64>(), idle))
    }) else {
        return;
    };
    if let Some((total0, idle0)) = prev.replace(now) {
        let (dt, di) = (now.0.saturating_sub(total0), now.1.saturating_sub(idle0));
        if dt > 0 {
            let idle_cpus = di as f64 / dt as f64 * *HOST_CPUS;
            HOST_BUSY.store(idle_cpus < HOST_IDLE_FLOOR, Ordering::Relaxed);
        }
    }
}

/// A waiting request starts its own instance after this many patience spells even
/// when the queue is moving.
const MAX_PATIENCE_SPELLS: u32 = 4;

struct Inner<D: RuntimeDriver> {
    driver: D,
    telemetry: Telemetry,
    settings: PoolSettings,
    interpreters: Interpreters,
    fns: Mutex<HashMap<String, FnPool<D::Instance>>>,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
}

/// The instance pools of one server, over a [`RuntimeDriver`] (the process driver
/// unless told otherwise). Cheap to clone.
pub struct Pool<D: RuntimeDriver = ProcessDriver> {
    inner: Arc<Inner<D>>,
}

impl<D: RuntimeDriver> Clone for Pool<D> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl Pool<ProcessDriver> {
    /// The process-driver pool: sandboxed processes, with spares per `settings`,
    /// isolated as `settings.isolation` says (an error only when strict isolation
    /// is not available).
    pub fn new(
        settings: PoolSettings,
        telemetry: Telemetry,
    ) -> Result<Self, crate::isolation::StrictError> {
        let isolation = crate::isolation::Isolation::probe(
            settings.isolation,
            &crate::isolation::HostPaths {
                data_dir: settings.data_dir.clone(),
                runtime_dir: settings.runtime_dir.clone(),
                sdk_python: settings.services.sdk.python.clone(),
                sdk_node: settings.services.sdk.node.clone(),
            },
        )?;
        let driver = ProcessDriver::new(&settings.server_id)
            .with_isolation(isolation)
            .with_spares(crate::spare::SpareSettings {
                per_key: settings.spares,
                runtime_dir: settings.runtime_dir.clone(),
                pycache_dir: settings.data_dir.join("pycache"),
                dir: settings.data_dir.join("spares"),
            });
        Ok(Pool::with_driver(driver, settings, telemetry))
    }
}

impl<D: RuntimeDriver> Pool<D> {
    /// A pool over any driver.
    pub fn with_driver(driver: D, settings: PoolSettings, telemetry: Telemetry) -> Self {
        let _ = std::fs::create_dir_all(settings.data_dir.join("instances"));
        // Scratch dirs of a previous run belong to processes that no longer exist.
        if let Ok(entries) = std::fs::read_dir(settings.data_dir.join("instances")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let pool = Pool {
            inner: Arc::new(Inner {
                driver,
                telemetry,
                settings,
                interpreters: Interpreters::new(),
                fns: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
            }),
        };
        let weak = Arc::downgrade(&pool.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut host_cpu = None;
            loop {
                tick.tick().await;
                sample_host_cpu(&mut host_cpu);
                let Some(inner) = weak.upgrade() else { return };
                if inner.shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                Pool { inner }.reap();
            }
        });
        pool
    }

    pub fn interpreters(&self) -> &Interpreters {
        &self.inner.interpreters
    }

    pub fn limits_mechanism(&self) -> &'static str {
        self.inner.driver.describe_limits()
    }

    /// Install or replace what a key serves. Idle instances of an older revision stop
    /// now; busy ones stop when they finish. Provisioned instances are (re)started.
    pub fn set_deployment(&self, dep: Deployment) {
        let dep = Arc::new(dep);
        let mut stale = Vec::new();
        {
            let mut fns = self.inner.fns.lock().unwrap();
            match fns.get_mut(&dep.key) {
                Some(p) => {
                    if p.revision() != dep.config.revision {
                        stale.extend(p.idle.drain(..).map(|(i, _)| i));
                        // Waiters start instances of the new code instead.
                        p.waiters.clear();
                        p.service_ms = None;
                        p.start_ms = None;
                        p.cpu_share = None;
                    }
                    p.deployment = dep.clone();
                }
                None => {
                    fns.insert(dep.key.clone(), FnPool::new(dep.clone()));
                }
            }
        }
        self.stop_all(stale);
        self.ensure_provisioned(&dep.key);
    }

    /// Revoke a deleted function's credentials: requests signed with them are
    /// refused from now on (a function created again under the name gets new ones).
    pub fn revoke_credentials(&self, function: &str) {
        if let Some(ring) = &self.inner.settings.services.key_ring {
            ring.revoke_function(function);
        }
    }

    /// Forget a key: stop its idle instances now and busy ones when they finish.
    pub fn remove(&self, key: &str) {
        let stale = {
            let mut fns = self.inner.fns.lock().unwrap();
            fns.remove(key)
                .map(|p| p.idle.into_iter().map(|(i, _)| i).collect())
                .unwrap_or_default()
        };
        self.stop_all(stale);
    }

    /// A warm instance if one is idle; else, by the [`ScaleUp`] policy, a busy one
    /// once it frees up or a freshly started one.
    pub async fn acquire(&self, dep: &Arc<Deployment>) -> Result<Lease<D::Instance>, StartError> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(RuntimeError::ShuttingDown.into());
        }
        let mut dead = Vec::new();
        let adaptive = self.inner.settings.scale_up == ScaleUp::Adaptive;
        enum Next<I> {
            Warm(Arc<I>),
            Wait(oneshot::Receiver<Arc<I>>, Duration),
            Start,
        }
        let next = {
            let mut fns = self.inner.fns.lock().unwrap();
            let p = fns
                .entry(dep.key.clone())
                .or_insert_with(|| FnPool::new(dep.clone()));
            let mut found = None;
            while let Some((inst, _)) = p.idle.pop() {
                if inst.is_dead() || inst.revision() != dep.config.revision {
                    dead.push(inst);
                    continue;
                }
                p.busy.insert(inst.id().to_string(), inst.clone());
                found = Some(inst);
                break;
            }
            if found.is_none() {
                tracing::debug!(
                    function = %dep.key,
                    service_ms = ?p.service_ms,
                    start_ms = ?p.start_ms,
                    cpu_share = ?p.cpu_share,
                    busy = p.busy.len(),
                    starting = p.starting,
                    waiting = p.waiters.len(),
                    "no idle instance"
                );
            }
            match found {
                Some(inst) => Next::Warm(inst),
                None => match p.patience().filter(|_| adaptive) {
                    Some(patience) if p.revision() == dep.config.revision => {
                        let (tx, rx) = oneshot::channel();
                        p.waiters.push_back(tx);
                        Next::Wait(rx, patience)
                    }
                    _ => {
                        p.starting += 1;
                        Next::Start
                    }
                },
            }
        };
        self.stop_all(dead);
        let warm = match next {
            Next::Warm(inst) => Some(inst),
            Next::Wait(mut rx, patience) => {
                // Wait while the busy instances keep finishing requests (the queue
                // moves); start an instance when none has finished for as long as a
                // start takes (a slow request holds them all), or after
                // MAX_PATIENCE_SPELLS of waiting in all.
                let mut spells = 0;
                let got = loop {
                    match tokio::time::timeout(patience, &mut rx).await {
                        Ok(r) => break r.ok(),
                        Err(_) => {
                            spells += 1;
                            let moving = {
                                let fns = self.inner.fns.lock().unwrap();
                                fns.get(&dep.key)
                                    .is_some_and(|p| p.last_release.elapsed() < patience)
                            };
                            let saturating = HOST_BUSY.load(Ordering::Relaxed);
                            if moving && (saturating || spells < MAX_PATIENCE_SPELLS) {
                                continue;
                            }
                            tracing::debug!(
                                function = %dep.key,
                                spells,
                                moving,
                                saturating,
                                "no instance freed up in time: starting one"
                            );
                            // Handed over just as the wait ran out: take it.
                            rx.close();
                            break rx.try_recv().ok();
                        }
                    }
                };
                if got.is_none() {
                    let mut fns = self.inner.fns.lock().unwrap();
                    if let Some(p) = fns.get_mut(&dep.key) {
                        p.starting += 1;
                    }
                }
                got
            }
            Next::Start => None,
        };
        if let Some(instance) = warm {
            let cpu_start = self.cpu_now(&instance);
            return Ok(Lease {
                instance,
                cold: false,
                init_ms: None,
                key: dep.key.clone(),
                since: Instant::now(),
                cpu_start,
            });
        }
        let started = self.start_instance(dep, false).await;
        let mut fns = self.inner.fns.lock().unwrap();
        if let Some(p) = fns.get_mut(&dep.key) {
            p.starting = p.starting.saturating_sub(1);
            if let Ok(inst) = &started {
                p.busy.insert(inst.id().to_string(), inst.clone());
                // What a start costs is an interpreter's start, which a spare only
                // hides (its replacement pays it): count full starts only.
                if !inst.started_from_spare() {
                    ewma(&mut p.start_ms, inst.init_ms());
                }
            }
        }
        drop(fns);
        let instance = started?;
        let init_ms = Some(instance.init_ms());
        let cpu_start = self.cpu_now(&instance);
        Ok(Lease {
            instance,
            cold: true,
            init_ms,
            key: dep.key.clone(),
            since: Instant::now(),
            cpu_start,
        })
    }

    /// An instance's CPU clocks now, when the adaptive policy needs them.
    fn cpu_now(&self, inst: &D::Instance) -> Option<CpuReading> {
        (self.inner.settings.scale_up == ScaleUp::Adaptive)
            .then(|| inst.cpu_reading())
            .flatten()
    }

    /// Give an instance back after a request. `reusable` is false when the invoke
    /// killed it (timeout, crash). A reusable one goes to the oldest request waiting
    /// for it, else back to the idle stack.
    pub fn release(&self, lease: Lease<D::Instance>, reusable: bool) {
        let cpu = lease
            .cpu_start
            .and_then(|start| Some((start, lease.instance.cpu_reading()?)));
        let inst = lease.instance;
        let keep = {
            let mut fns = self.inner.fns.lock().unwrap();
            match fns.get_mut(&lease.key) {
                Some(p) => {
                    let keep = reusable
                        && !inst.is_dead()
                        && inst.revision() == p.revision()
                        && !self.inner.shutting_down.load(Ordering::SeqCst);
                    if keep {
                        p.last_release = Instant::now();
                        let service_ms = lease.since.elapsed().as_secs_f64() * 1000.0;
                        ewma(&mut p.service_ms, service_ms);
                        if let Some((start, end)) = cpu {
                            ewma(&mut p.cpu_share, cpu_share(start, end, service_ms));
                        }
                        p.hand_over(inst.clone());
                    } else {
                        p.busy.remove(inst.id());
                    }
                    keep
                }
                None => false,
            }
        };
        if !keep {
            self.stop_all(vec![inst]);
            self.ensure_provisioned(&lease.key);
        }
    }

    /// Live instances of a key, for `nimbus get` and the tests.
    pub fn instances(&self, key: &str) -> Vec<InstanceInfo> {
        let fns = self.inner.fns.lock().unwrap();
        let Some(p) = fns.get(key) else {
            return Vec::new();
        };
        let info = |i: &Arc<D::Instance>, state| InstanceInfo {
            id: i.id().to_string(),
            pid: i.pid(),
            state,
            revision: i.revision(),
            provisioned: i.provisioned(),
            init_ms: i.init_ms(),
        };
        p.idle
            .iter()
            .filter(|(i, _)| !i.is_dead())
            .map(|(i, _)| info(i, InstanceState::Idle))
            .chain(p.busy.values().map(|i| info(i, InstanceState::Busy)))
            .collect()
    }

    /// Instances by state for every function version the pool serves.
    pub fn census(&self) -> Vec<PoolCensus> {
        let fns = self.inner.fns.lock().unwrap();
        fns.values()
            .map(|p| PoolCensus {
                function: p.deployment.config.name().to_string(),
                version: p.deployment.version.clone(),
                initialising: p.starting,
                idle: p.idle.iter().filter(|(i, _)| !i.is_dead()).count(),
                busy: p.busy.len(),
            })
            .collect()
    }

    /// Stop every instance. In-flight requests should have drained first.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.driver.shutdown().await;
        let all: Vec<Arc<D::Instance>> = {
            let mut fns = self.inner.fns.lock().unwrap();
            fns.values_mut()
                .flat_map(|p| {
                    p.waiters.clear();
                    p.idle
                        .drain(..)
                        .map(|(i, _)| i)
                        .chain(p.busy.drain().map(|(_, i)| i))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let mut set = tokio::task::JoinSet::new();
        for i in all {
            set.spawn(async move { i.stop().await });
        }
        while set.join_next().await.is_some() {}
    }

    fn stop_all(&self, instances: Vec<Arc<D::Instance>>) {
        for i in instances {
            tokio::spawn(async move { i.stop().await });
        }
    }

    fn reap(&self) {
        let keep_alive = self.inner.settings.keep_alive;
        let mut expired = Vec::new();
        let mut top_up = Vec::new();
        {
            let mut fns = self.inner.fns.lock().unwrap();
            for (key, p) in fns.iter_mut() {
                let before = p.idle.len();
                p.idle.retain(|(i, _)| {
                    if i.is_dead() {
                        expired.push(i.clone());
                        false
                    } else {
                        true
                    }
                });
                if p.idle.len() != before {
                    top_up.push(key.clone());
                }
                let floor = p.deployment.config.spec.provisioned_concurrency as usize;
                // Oldest idle first (the front of the LIFO stack).
                while p.idle.len() + p.busy.len() > floor
                    && p.idle
                        .first()
                        .is_some_and(|(_, since)| since.elapsed() >= keep_alive)
                {
                    expired.push(p.idle.remove(0).0);
                }
            }
        }
        self.stop_all(expired);
        for key in top_up {
            self.ensure_provisioned(&key);
        }
    }

    /// Start instances until the key has its provisioned count.
    fn ensure_provisioned(&self, key: &str) {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let (dep, missing) = {
            let mut fns = self.inner.fns.lock().unwrap();
            let Some(p) = fns.get_mut(key) else { return };
            let want = p.deployment.config.spec.provisioned_concurrency as usize;
            let have = p.idle.len() + p.busy.len() + p.starting;
            let missing = want.saturating_sub(have);
            p.starting += missing;
            (p.deployment.clone(), missing)
        };
        for _ in 0..missing {
            let pool = self.clone();
            let dep = dep.clone();
            tokio::spawn(async move {
                let started = pool.start_instance(&dep, true).await;
                let mut stop = None;
                {
                    let mut fns = pool.inner.fns.lock().unwrap();
                    match fns.get_mut(&dep.key) {
                        Some(p) => {
                            p.starting = p.starting.saturating_sub(1);
                            match started {
                                Ok(inst) if inst.revision() == p.revision() => {
                                    p.idle.push((inst, Instant::now()))
                                }
                                Ok(inst) => stop = Some(inst),
                                Err(e) => {
                                    tracing::warn!(function = %dep.key, error = %e, "provisioned instance failed to start")
                                }
                            }
                        }
                        None => stop = started.ok(),
                    }
                }
                if let Some(i) = stop {
                    i.stop().await;
                }
            });
        }
    }

    async fn start_instance(
        &self,
        dep: &Deployment,
        provisioned: bool,
    ) -> Result<Arc<D::Instance>, StartError> {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}{:08x}", std::process::id(), n);
        let cfg = &dep.config;
        let s = &self.inner.settings;
        let spec = InstanceSpec {
            id,
            function: cfg.name().to_string(),
            version: dep.version.clone(),
            revision: cfg.revision,
            runtime: cfg.spec.runtime,
            handler: cfg.spec.handler.clone(),
            memory_mb: cfg.spec.memory_mb,
            timeout_s: cfg.spec.timeout_s,
            environment: cfg.spec.environment.clone(),
            code_dir: dep.code_dir.clone(),
            opt_dir: dep.opt_dir.clone(),
            runtime_dir: s.runtime_dir.clone(),
            scratch_root: s.data_dir.join("instances"),
            pycache_dir: s.data_dir.join("pycache"),
            region: s.region.clone(),
            interpreter: dep.interpreter.clone(),
            provisioned,
            ephemeral_storage_mb: cfg.spec.ephemeral_storage_mb,
            services: s
                .services
                .environment(cfg.name(), cfg.spec.role.as_deref(), cfg.spec.runtime)
                .map_err(|e| RuntimeError::Spawn(std::io::Error::other(e)))?,
        };
        self.inner
            .driver
            .start(spec, self.inner.telemetry.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(
        service_ms: f64,
        start_ms: f64,
        cpu_share: Option<f64>,
        busy: usize,
        starting: usize,
        waiting: usize,
    ) -> Signals {
        Signals {
            service_ms,
            start_ms,
            cpu_share,
            busy,
            starting,
            waiting,
        }
    }

    #[test]
    fn starts_freely_up_to_one_instance_per_cpu() {
        // 2 CPUs, 1 busy: a 1 ms function still gets a second instance.
        assert_eq!(patience(&sig(1.0, 50.0, None, 1, 0, 0), 2.0, false), None);
        // Nothing busy or starting: nothing to wait for.
        assert_eq!(patience(&sig(1.0, 50.0, None, 0, 0, 5), 2.0, true), None);
    }

    #[test]
    fn waits_past_one_per_cpu_when_a_busy_one_frees_sooner_than_a_start() {
        let p = patience(&sig(1.0, 50.0, None, 2, 0, 10), 2.0, false);
        assert_eq!(p, Some(Duration::from_millis(50)));
        // 100 ahead at 1 ms over 2 instances: 50.5 ms expected, a start is sooner.
        assert_eq!(patience(&sig(1.0, 50.0, None, 2, 0, 100), 2.0, false), None);
        // Slow requests (a 1 s sleep) never queue behind each other.
        assert_eq!(
            patience(&sig(1000.0, 50.0, Some(0.01), 4, 0, 0), 2.0, false),
            None
        );
    }

    #[test]
    fn cpu_bound_instances_stop_growing_at_the_host_cpus() {
        // A long queue of 1 ms CPU-bound requests: a start would be sooner, but
        // three instances at 0.9 of a CPU each already want more than 2 CPUs.
        assert!(patience(&sig(1.0, 50.0, Some(0.9), 3, 0, 200), 2.0, false).is_some());
        assert_eq!(
            patience(&sig(1.0, 50.0, Some(0.1), 3, 0, 200), 2.0, false),
            None
        );
    }

    #[test]
    fn cpu_share_leaves_out_time_spent_waiting_for_a_cpu() {
        let r = |on, wait| CpuReading {
            on_cpu_ns: on,
            runnable_ns: wait,
        };
        // 1 ms of service: 0.5 ms on a CPU, 0.5 ms runnable: it wanted a CPU throughout.
        assert_eq!(cpu_share(r(0, 0), r(500_000, 500_000), 1.0), 1.0);
        // 10 ms of service, 1 ms on a CPU, the rest blocked (I/O): a tenth.
        assert!((cpu_share(r(0, 0), r(1_000_000, 0), 10.0) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn starts_past_one_per_cpu_go_one_per_cpu_at_a_time() {
        // 100 queued 10 ms requests: a start is sooner, but 2 are starting already.
        assert!(patience(&sig(10.0, 50.0, None, 4, 2, 100), 2.0, false).is_some());
        assert_eq!(
            patience(&sig(10.0, 50.0, None, 4, 1, 100), 2.0, false),
            None
        );
    }

    #[test]
    fn waits_whenever_the_host_is_cpu_bound() {
        assert!(patience(&sig(1000.0, 50.0, None, 1, 0, 0), 2.0, true).is_some());
    }

    #[test]
    fn a_start_counts_as_at_least_the_floor() {
        // A start that looked nearly free (a pre-started spare) still costs CPU.
        let p = patience(&sig(1.0, 2.0, None, 2, 0, 3), 2.0, false);
        assert_eq!(p, Some(Duration::from_secs_f64(MIN_START_COST_MS / 1000.0)));
    }
}

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

use crate::instance::{Instance, InstanceSpec, StartError};
use crate::interpreters::Interpreters;
use crate::sandbox::Driver;
use crate::RuntimeError;
use nimbus_core::FunctionConfig;
use nimbus_telemetry::Telemetry;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Pre-started interpreter spares kept per interpreter (and, for Node, memory
    /// size) for cold starts; 0 disables them (see `spare`).
    pub spares: usize,
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
}

/// An instance handed out for one request. Give it back with [`Pool::release`].
pub struct Lease {
    pub instance: Arc<Instance>,
    pub cold: bool,
    /// Init duration when this request paid for the cold start.
    pub init_ms: Option<f64>,
    key: String,
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

struct FnPool {
    deployment: Arc<Deployment>,
    idle: Vec<(Arc<Instance>, Instant)>,
    busy: HashMap<String, Arc<Instance>>,
    starting: usize,
}

impl FnPool {
    fn revision(&self) -> u64 {
        self.deployment.config.revision
    }
}

struct Inner {
    driver: Driver,
    telemetry: Telemetry,
    settings: PoolSettings,
    interpreters: Interpreters,
    fns: Mutex<HashMap<String, FnPool>>,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
}

/// The instance pools of one server. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    pub fn new(settings: PoolSettings, telemetry: Telemetry) -> Self {
        let driver = Driver::new(&settings.server_id).with_spares(crate::spare::SpareSettings {
            per_key: settings.spares,
            runtime_dir: settings.runtime_dir.clone(),
            pycache_dir: settings.data_dir.join("pycache"),
            dir: settings.data_dir.join("spares"),
        });
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
            loop {
                tick.tick().await;
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
                    }
                    p.deployment = dep.clone();
                }
                None => {
                    fns.insert(
                        dep.key.clone(),
                        FnPool {
                            deployment: dep.clone(),
                            idle: Vec::new(),
                            busy: HashMap::new(),
                            starting: 0,
                        },
                    );
                }
            }
        }
        self.stop_all(stale);
        self.ensure_provisioned(&dep.key);
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

    /// A warm instance if one is idle, else a freshly started one.
    pub async fn acquire(&self, dep: &Arc<Deployment>) -> Result<Lease, StartError> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(RuntimeError::ShuttingDown.into());
        }
        let mut dead = Vec::new();
        let warm = {
            let mut fns = self.inner.fns.lock().unwrap();
            let p = fns.entry(dep.key.clone()).or_insert_with(|| FnPool {
                deployment: dep.clone(),
                idle: Vec::new(),
                busy: HashMap::new(),
                starting: 0,
            });
            let mut found = None;
            while let Some((inst, _)) = p.idle.pop() {
                if inst.is_dead() || inst.revision != dep.config.revision {
                    dead.push(inst);
                    continue;
                }
                p.busy.insert(inst.id.clone(), inst.clone());
                found = Some(inst);
                break;
            }
            if found.is_none() {
                p.starting += 1;
            }
            found
        };
        self.stop_all(dead);
        if let Some(instance) = warm {
            return Ok(Lease {
                instance,
                cold: false,
                init_ms: None,
                key: dep.key.clone(),
            });
        }
        let started = self.start_instance(dep, false).await;
        let mut fns = self.inner.fns.lock().unwrap();
        if let Some(p) = fns.get_mut(&dep.key) {
            p.starting = p.starting.saturating_sub(1);
            if let Ok(inst) = &started {
                p.busy.insert(inst.id.clone(), inst.clone());
            }
        }
        drop(fns);
        let instance = started?;
        let init_ms = Some(instance.init_ms);
        Ok(Lease {
            instance,
            cold: true,
            init_ms,
            key: dep.key.clone(),
        })
    }

    /// Give an instance back after a request. `reusable` is false when the invoke
    /// killed it (timeout, crash).
    pub fn release(&self, lease: Lease, reusable: bool) {
        let inst = lease.instance;
        let keep = {
            let mut fns = self.inner.fns.lock().unwrap();
            match fns.get_mut(&lease.key) {
                Some(p) => {
                    p.busy.remove(&inst.id);
                    let keep = reusable
                        && !inst.is_dead()
                        && inst.revision == p.revision()
                        && !self.inner.shutting_down.load(Ordering::SeqCst);
                    if keep {
                        p.idle.push((inst.clone(), Instant::now()));
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
        let info = |i: &Arc<Instance>, state| InstanceInfo {
            id: i.id.clone(),
            pid: i.pid,
            state,
            revision: i.revision,
            provisioned: i.provisioned,
            init_ms: i.init_ms,
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
        let all: Vec<Arc<Instance>> = {
            let mut fns = self.inner.fns.lock().unwrap();
            fns.values_mut()
                .flat_map(|p| {
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

    fn stop_all(&self, instances: Vec<Arc<Instance>>) {
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
                                Ok(inst) if inst.revision == p.revision() => {
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
    ) -> Result<Arc<Instance>, StartError> {
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
            runtime_dir: s.runtime_dir.clone(),
            scratch_root: s.data_dir.join("instances"),
            pycache_dir: s.data_dir.join("pycache"),
            region: s.region.clone(),
            interpreter: dep.interpreter.clone(),
            provisioned,
            ephemeral_storage_mb: cfg.spec.ephemeral_storage_mb,
        };
        Instance::start(spec, &self.inner.driver, self.inner.telemetry.clone()).await
    }
}

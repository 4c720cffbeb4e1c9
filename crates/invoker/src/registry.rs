//! The function registry: durable in SQLite, indexed in memory.

use crate::{Admission, Inner, InvokeError, Invoker, InvokerSettings, Result};
use nimbus_core::{EventInvokeConfig, FunctionConfig, FunctionSpec};
use nimbus_runtime::{Deployment, Pool};
use nimbus_store::{BlobStore, Db};
use nimbus_telemetry::Telemetry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct DeployOutcome {
    pub config: Arc<FunctionConfig>,
    pub created: bool,
    /// Said once at deploy, e.g. that another interpreter version stands in.
    pub notice: Option<String>,
}

const LATEST: &str = "$LATEST";

pub(crate) const REVISION_MISMATCH: &str = "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id";

/// How [`Invoker::deploy_with`] treats an existing function.
#[derive(Debug, Clone, Copy)]
pub enum DeployMode<'a> {
    /// Create or replace.
    Upsert,
    /// Fail with a conflict when it exists (Lambda `CreateFunction`).
    Create,
    /// Fail when it does not exist; honour a `RevisionId` precondition.
    Update { expect_revision_id: Option<&'a str> },
}

impl Invoker {
    /// Load every stored function and make it invokable (starting provisioned
    /// instances). Functions whose code or interpreter is missing are logged and
    /// still listed; invoking them reports why.
    pub async fn open(
        db: Db,
        blobs: BlobStore,
        pool: Pool,
        telemetry: Telemetry,
        settings: InvokerSettings,
    ) -> Result<Self> {
        let admission = Admission::new(settings.account_concurrency);
        let invoker = Invoker {
            inner: Arc::new(Inner {
                db: db.clone(),
                blobs,
                pool,
                telemetry,
                settings,
                admission,
                functions: RwLock::new(HashMap::new()),
                event_configs: RwLock::new(HashMap::new()),
                versions: RwLock::new(HashMap::new()),
                deploy_lock: tokio::sync::Mutex::new(()),
                notices_given: Default::default(),
                sinks: std::sync::OnceLock::new(),
            }),
        };
        let (stored, configs) = tokio::task::spawn_blocking(move || {
            Ok::<_, nimbus_store::StoreError>((
                db.list_functions()?,
                db.list_event_invoke_configs()?,
            ))
        })
        .await
        .map_err(|e| InvokeError::Service(e.to_string()))??;
        {
            let mut map = invoker.inner.event_configs.write().unwrap();
            for (f, q, c) in configs {
                map.insert((f, q), c);
            }
        }
        for cfg in stored {
            let name = cfg.name().to_string();
            match invoker.prepare(Arc::new(cfg)).await {
                Ok((dep, _)) => invoker.install(dep),
                Err(e) => {
                    tracing::error!(function = %name, error = %e, "stored function cannot run")
                }
            }
        }
        invoker.load_versions().await?;
        invoker.collect_layer_trees();
        Ok(invoker)
    }

    /// Unpack code and find the interpreter for a configuration.
    pub(crate) async fn prepare(
        &self,
        config: Arc<FunctionConfig>,
    ) -> Result<(Deployment, Option<String>)> {
        let blobs = self.inner.blobs.clone();
        let sha = config.code_sha256.clone();
        let pool = self.inner.pool.clone();
        let runtime = config.spec.runtime;
        let layer_shas: Vec<String> = config
            .spec
            .layers
            .iter()
            .map(|l| l.code_sha256.clone())
            .collect();
        let (code_dir, opt_dir, interp) = tokio::task::spawn_blocking(move || {
            let dir = blobs.unpacked(&sha)?;
            // The layers merged in order into one tree, shared by every function
            // with the same list (see `BlobStore::layer_tree`).
            let opt = if layer_shas.is_empty() {
                None
            } else {
                Some(blobs.layer_tree(&layer_shas)?)
            };
            Ok::<_, nimbus_store::StoreError>((dir, opt, pool.interpreters().resolve(runtime)))
        })
        .await
        .map_err(|e| InvokeError::Service(e.to_string()))??;
        if config.spec.runtime.needs_handler() && interp.is_none() {
            return Err(InvokeError::InvalidParameter(format!(
                "The runtime parameter of {} is not available on this host: no interpreter found",
                config.spec.runtime
            )));
        }
        let notice = interp.as_ref().and_then(|i| i.notice.clone());
        Ok((
            Deployment {
                key: config.name().to_string(),
                version: LATEST.to_string(),
                interpreter: interp.map(|i| i.path),
                code_dir,
                opt_dir,
                config,
            },
            notice,
        ))
    }

    /// Remove the merged layer trees no function or published version uses
    /// (at start, before any instance runs from one).
    fn collect_layer_trees(&self) {
        let tree = |c: &FunctionConfig| {
            let shas: Vec<String> = c
                .spec
                .layers
                .iter()
                .map(|l| l.code_sha256.clone())
                .collect();
            (!shas.is_empty()).then(|| BlobStore::layer_tree_id(&shas))
        };
        let mut keep: std::collections::HashSet<String> = self
            .inner
            .functions
            .read()
            .unwrap()
            .values()
            .filter_map(|d| tree(&d.config))
            .collect();
        for fv in self.inner.versions.read().unwrap().values() {
            keep.extend(fv.published.values().filter_map(|d| tree(&d.config)));
        }
        let removed = self.inner.blobs.gc_layer_trees(&keep);
        if removed > 0 {
            tracing::info!(removed, "unused layer trees removed");
        }
    }

    fn install(&self, dep: Deployment) {
        let cfg = dep.config.clone();
        self.inner
            .admission
            .set_reserved(cfg.name(), cfg.spec.reserved_concurrency);
        self.inner
            .functions
            .write()
            .unwrap()
            .insert(cfg.name().to_string(), Arc::new(dep.clone()));
        self.inner.pool.set_deployment(dep);
    }

    /// Create or update a function. The new revision serves every invocation that
    /// starts after this returns; it is on disk (fsynced) before it returns.
    pub async fn deploy(&self, spec: FunctionSpec, code_sha256: String) -> Result<DeployOutcome> {
        self.deploy_with(spec, code_sha256, DeployMode::Upsert)
            .await
    }

    pub async fn deploy_with(
        &self,
        spec: FunctionSpec,
        code_sha256: String,
        mode: DeployMode<'_>,
    ) -> Result<DeployOutcome> {
        spec.validate()
            .map_err(|e| InvokeError::InvalidParameter(e.to_string()))?;
        if !self.inner.blobs.has(&code_sha256) {
            return Err(InvokeError::InvalidParameter(format!(
                "Code with sha256 {code_sha256} has not been uploaded"
            )));
        }
        let _serial = self.inner.deploy_lock.lock().await;
        let previous = self.get(&spec.name);
        if let Some(t) = &spec.dead_letter_target {
            // A target already stored stays valid (its queue may come back).
            if previous
                .as_ref()
                .and_then(|p| p.spec.dead_letter_target.as_ref())
                != Some(t)
            {
                use nimbus_triggers::sinks::TargetKind;
                self.check_target(
                    t,
                    &[TargetKind::Queue, TargetKind::Topic],
                    "DeadLetterConfig",
                )?;
            }
        }
        match (&mode, &previous) {
            (DeployMode::Create, Some(_)) => {
                return Err(InvokeError::Conflict(format!(
                    "Function already exist: {}",
                    spec.name
                )))
            }
            (DeployMode::Update { .. }, None) => {
                return Err(InvokeError::NotFound(nimbus_core::function_arn(
                    self.region(),
                    &spec.name,
                    None,
                )))
            }
            (
                DeployMode::Update {
                    expect_revision_id: Some(want),
                },
                Some(p),
            ) if p.revision_id != *want => {
                return Err(InvokeError::PreconditionFailed(REVISION_MISMATCH.into()))
            }
            _ => {}
        }
        let now = nimbus_core::now_ms();
        let code_size = {
            let blobs = self.inner.blobs.clone();
            let sha = code_sha256.clone();
            tokio::task::spawn_blocking(move || blobs.read_zip(&sha).map(|b| b.len() as u64))
                .await
                .map_err(|e| InvokeError::Service(e.to_string()))??
        };
        let config = Arc::new(FunctionConfig {
            spec,
            code_sha256,
            code_size,
            revision: previous.as_ref().map_or(1, |p| p.revision + 1),
            revision_id: uuid::Uuid::new_v4().to_string(),
            created_ms: previous.as_ref().map_or(now, |p| p.created_ms),
            last_modified_ms: now,
        });
        let (dep, notice) = self.prepare(config.clone()).await?;
        let notice = notice.filter(|n| {
            self.inner
                .notices_given
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((config.name().to_string(), n.clone()))
        });
        self.persist(&config).await?;
        self.install(dep);
        tracing::info!(function = %config.name(), revision = config.revision, sha256 = %config.code_sha256, "deployed");
        Ok(DeployOutcome {
            config,
            created: previous.is_none(),
            notice,
        })
    }

    async fn persist(&self, config: &FunctionConfig) -> Result<()> {
        let db = self.inner.db.clone();
        let stored = config.clone();
        tokio::task::spawn_blocking(move || db.put_function(&stored))
            .await
            .map_err(|e| InvokeError::Service(e.to_string()))??;
        Ok(())
    }

    /// Change settings that do not touch running instances (tags, reserved
    /// concurrency): the revision stays, warm instances keep serving.
    pub async fn amend(
        &self,
        name: &str,
        f: impl FnOnce(&mut FunctionSpec) -> Result<()>,
    ) -> Result<Arc<FunctionConfig>> {
        let _serial = self.inner.deploy_lock.lock().await;
        let dep = self
            .inner
            .functions
            .read()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                InvokeError::NotFound(nimbus_core::function_arn(self.region(), name, None))
            })?;
        let mut cfg = (*dep.config).clone();
        f(&mut cfg.spec)?;
        cfg.spec
            .validate()
            .map_err(|e| InvokeError::InvalidParameter(e.to_string()))?;
        let cfg = Arc::new(cfg);
        self.persist(&cfg).await?;
        let mut new_dep = (*dep).clone();
        new_dep.config = cfg.clone();
        self.install(new_dep);
        Ok(cfg)
    }

    /// Delete a function; its instances stop (busy ones after their request).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let _serial = self.inner.deploy_lock.lock().await;
        if self.get(name).is_none() {
            return Err(InvokeError::NotFound(nimbus_core::function_arn(
                self.region(),
                name,
                None,
            )));
        }
        let db = self.inner.db.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || db.delete_function(&n))
            .await
            .map_err(|e| InvokeError::Service(e.to_string()))??;
        self.inner.functions.write().unwrap().remove(name);
        self.inner
            .event_configs
            .write()
            .unwrap()
            .retain(|(f, _), _| f != name);
        self.inner.admission.set_reserved(name, None);
        self.inner.pool.remove(name);
        self.inner.pool.revoke_credentials(name);
        self.forget_versions(name);
        tracing::info!(function = %name, "deleted");
        Ok(())
    }
}

impl Invoker {
    /// The async settings in force for a function (defaults when none are stored).
    pub fn event_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Option<EventInvokeConfig> {
        self.inner
            .event_configs
            .read()
            .unwrap()
            .get(&(function.to_string(), qualifier.to_string()))
            .cloned()
    }

    /// Store async settings (Put replaces, so callers merge for Update).
    pub async fn put_event_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
        mut cfg: EventInvokeConfig,
    ) -> Result<EventInvokeConfig> {
        if !self.qualifier_exists(function, Some(qualifier)) {
            return Err(InvokeError::NotFound(nimbus_core::function_arn(
                self.region(),
                function,
                Some(qualifier),
            )));
        }
        cfg.validate().map_err(InvokeError::InvalidParameter)?;
        for dest in [&cfg.on_success, &cfg.on_failure].into_iter().flatten() {
            if let crate::queue::Destination::Service(arn) =
                crate::queue::Destination::parse(dest).map_err(InvokeError::InvalidParameter)?
            {
                use nimbus_triggers::sinks::TargetKind;
                self.check_target(
                    &arn,
                    &[TargetKind::Queue, TargetKind::Topic, TargetKind::Bus],
                    "destination",
                )?;
            }
        }
        cfg.last_modified_ms = nimbus_core::now_ms();
        let db = self.inner.db.clone();
        let (f, q, c) = (function.to_string(), qualifier.to_string(), cfg.clone());
        tokio::task::spawn_blocking(move || db.put_event_invoke_config(&f, &q, &c))
            .await
            .map_err(|e| InvokeError::Service(e.to_string()))??;
        self.inner
            .event_configs
            .write()
            .unwrap()
            .insert((function.to_string(), qualifier.to_string()), cfg.clone());
        Ok(cfg)
    }

    pub async fn delete_event_invoke_config(&self, function: &str, qualifier: &str) -> Result<()> {
        let key = (function.to_string(), qualifier.to_string());
        if self.inner.event_configs.read().unwrap().get(&key).is_none() {
            return Err(InvokeError::NotFound(format!(
                "The function {} doesn't have an EventInvokeConfig",
                nimbus_core::function_arn(self.region(), function, Some(qualifier))
            )));
        }
        let db = self.inner.db.clone();
        let (f, q) = key.clone();
        tokio::task::spawn_blocking(move || db.delete_event_invoke_config(&f, &q))
            .await
            .map_err(|e| InvokeError::Service(e.to_string()))??;
        self.inner.event_configs.write().unwrap().remove(&key);
        Ok(())
    }
}

//! Published versions, aliases (with weighted routing) and provisioned-concurrency
//! configs, as Lambda has them.
//!
//! * A **version** is an immutable snapshot of `$LATEST` (code and configuration),
//!   numbered 1, 2, … per function; numbers are never reused while the function exists.
//!   Each version is its own pool key (`name:N`), so its warm instances are its own.
//! * An **alias** names a version (or `$LATEST`) and may send a weighted share of its
//!   traffic to one more version (`RoutingConfig.AdditionalVersionWeights`); the pick is
//!   made per invocation.
//! * A **provisioned-concurrency config** keeps N instances of a version (or of the
//!   version an alias names) initialised at all times.
//!
//! Everything is stored as `function_objects` rows (one transaction per change) and
//! indexed in memory; an invocation never touches SQLite.

use crate::{InvokeError, Invoker, Result};
use nimbus_core::{function_arn, FunctionConfig};
use nimbus_runtime::Deployment;
use nimbus_store::FunctionObject;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

const KIND_VERSION: &str = "version";
const KIND_ALIAS: &str = "alias";
const KIND_PROVISIONED: &str = "provisioned";
const KIND_COUNTER: &str = "counter";
pub(crate) const KIND_POLICY: &str = "policy";

const LATEST: &str = "$LATEST";

/// An alias as stored and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasConfig {
    pub name: String,
    /// A version number or `$LATEST`.
    pub function_version: String,
    #[serde(default)]
    pub description: String,
    /// Additional version → share of traffic (0.0–1.0).
    #[serde(default)]
    pub routing: BTreeMap<String, f64>,
    pub revision_id: String,
}

/// A provisioned-concurrency config as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedConfig {
    pub requested: u32,
    pub last_modified_ms: i64,
}

/// A provisioned-concurrency config with what the pool has made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedStatus {
    pub qualifier: String,
    pub requested: u32,
    /// Initialised instances of the target version right now.
    pub available: u32,
    pub last_modified_ms: i64,
}

impl ProvisionedStatus {
    /// Lambda's `Status`: `READY` once every requested instance is initialised.
    pub fn status(&self) -> &'static str {
        if self.available >= self.requested {
            "READY"
        } else {
            "IN_PROGRESS"
        }
    }
}

/// Options of PublishVersion.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    pub description: Option<String>,
    /// Hex sha256 the caller expects `$LATEST`'s code to have.
    pub code_sha256: Option<String>,
    pub revision_id: Option<String>,
}

/// Versions, aliases and provisioned configs of one function.
#[derive(Default)]
pub(crate) struct FnVersions {
    last: u32,
    pub(crate) published: BTreeMap<u32, Arc<Deployment>>,
    aliases: BTreeMap<String, AliasConfig>,
    provisioned: BTreeMap<String, ProvisionedConfig>,
    /// Resource-based policies by qualifier (`""`: the unqualified function).
    pub(crate) policies: BTreeMap<String, crate::policy::ResourcePolicy>,
}

/// What a qualifier names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Latest,
    Version(u32),
    Alias(String),
}

fn target(q: Option<&str>) -> Target {
    match q {
        None | Some(LATEST) => Target::Latest,
        Some(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => {
            Target::Version(q.parse().unwrap_or(u32::MAX))
        }
        Some(q) => Target::Alias(q.to_string()),
    }
}

/// `(?!^[0-9]+$)([a-zA-Z0-9-_]+)`, 1–128 characters.
fn valid_alias_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.bytes().all(|b| b.is_ascii_digit())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn version_key(function: &str, v: u32) -> String {
    format!("{function}:{v}")
}

fn object(function: &str, kind: &str, key: &str, value: Option<String>) -> FunctionObject {
    FunctionObject {
        function: function.to_string(),
        kind: kind.to_string(),
        key: key.to_string(),
        value,
    }
}

fn json<T: Serialize>(v: &T) -> Option<String> {
    Some(serde_json::to_string(v).expect("serialises"))
}

/// A uniform draw in [0, 1).
fn unit_random() -> f64 {
    let r = (uuid::Uuid::new_v4().as_u128() >> 75) as u64; // 53 random bits
    r as f64 / (1u64 << 53) as f64
}

impl FnVersions {
    fn version_of_alias(&self, alias: &str) -> Option<&str> {
        self.aliases.get(alias).map(|a| a.function_version.as_str())
    }

    /// Provisioned instances a published version should keep.
    fn provisioned_for(&self, v: u32) -> u32 {
        let vs = v.to_string();
        self.provisioned
            .iter()
            .map(|(q, c)| match target(Some(q)) {
                Target::Version(x) if x == v => c.requested,
                Target::Alias(a) if self.version_of_alias(&a) == Some(vs.as_str()) => c.requested,
                _ => 0,
            })
            .sum()
    }

    fn aliases_referencing(&self, v: &str) -> Vec<String> {
        self.aliases
            .values()
            .filter(|a| a.function_version == v || a.routing.contains_key(v))
            .map(|a| a.name.clone())
            .collect()
    }
}

impl Invoker {
    fn not_found_q(&self, function: &str, qualifier: Option<&str>) -> InvokeError {
        InvokeError::NotFound(function_arn(self.region(), function, qualifier))
    }

    fn alias_not_found(&self, function: &str, alias: &str) -> InvokeError {
        InvokeError::Missing {
            code: "ResourceNotFoundException",
            message: format!(
                "Alias not found: {}",
                function_arn(self.region(), function, Some(alias))
            ),
        }
    }

    /// Change a function's versioned state in memory (after it is stored).
    pub(crate) fn with_versions<T>(
        &self,
        function: &str,
        f: impl FnOnce(&mut FnVersions) -> T,
    ) -> T {
        f(self
            .inner
            .versions
            .write()
            .unwrap()
            .entry(function.to_string())
            .or_default())
    }

    pub(crate) async fn write(&self, changes: Vec<FunctionObject>) -> Result<()> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || db.write_objects(&changes))
            .await
            .map_err(|e| InvokeError::Service(e.to_string()))??;
        Ok(())
    }

    /// Load stored versions, aliases and provisioned configs (at start, after the
    /// functions themselves).
    pub(crate) async fn load_versions(&self) -> Result<()> {
        let db = self.inner.db.clone();
        let objects = tokio::task::spawn_blocking(move || db.list_objects())
            .await
            .map_err(|e| InvokeError::Service(e.to_string()))??;
        let mut by_fn: BTreeMap<String, FnVersions> = BTreeMap::new();
        for o in objects {
            let Some(value) = o.value else { continue };
            let fv = by_fn.entry(o.function.clone()).or_default();
            let bad = |e: serde_json::Error| {
                tracing::error!(function = %o.function, kind = %o.kind, key = %o.key, error = %e, "unreadable stored object skipped");
            };
            match o.kind.as_str() {
                KIND_COUNTER => fv.last = value.parse().unwrap_or(0),
                KIND_ALIAS => match serde_json::from_str::<AliasConfig>(&value) {
                    Ok(a) => {
                        fv.aliases.insert(o.key.clone(), a);
                    }
                    Err(e) => bad(e),
                },
                KIND_PROVISIONED => match serde_json::from_str::<ProvisionedConfig>(&value) {
                    Ok(p) => {
                        fv.provisioned.insert(o.key.clone(), p);
                    }
                    Err(e) => bad(e),
                },
                KIND_VERSION => match serde_json::from_str::<FunctionConfig>(&value) {
                    Ok(cfg) => {
                        let Ok(v) = o.key.parse::<u32>() else {
                            continue;
                        };
                        match self.prepare(Arc::new(cfg)).await {
                            Ok((mut dep, _)) => {
                                dep.key = version_key(&o.function, v);
                                dep.version = v.to_string();
                                fv.published.insert(v, Arc::new(dep));
                            }
                            Err(e) => {
                                tracing::error!(function = %o.function, version = v, error = %e, "stored version cannot run")
                            }
                        }
                    }
                    Err(e) => bad(e),
                },
                KIND_POLICY => {
                    match serde_json::from_str::<crate::policy::ResourcePolicy>(&value) {
                        Ok(p) => {
                            fv.policies.insert(o.key.clone(), p);
                        }
                        Err(e) => bad(e),
                    }
                }
                other => tracing::warn!(kind = other, "unknown stored object kind skipped"),
            }
        }
        let names: Vec<String> = by_fn.keys().cloned().collect();
        self.inner.versions.write().unwrap().extend(by_fn);
        for name in names {
            self.apply_provisioned(&name, &[]);
        }
        Ok(())
    }

    /// Install every published version of a function in the pool with the provisioned
    /// count its configs add up to. Versions in `restart` lose their instances first
    /// (their provisioned count went down).
    fn apply_provisioned(&self, function: &str, restart: &[u32]) {
        let installs: Vec<Deployment> = {
            let mut all = self.inner.versions.write().unwrap();
            let Some(fv) = all.get_mut(function) else {
                return;
            };
            let wanted: Vec<(u32, u32)> = fv
                .published
                .keys()
                .map(|v| (*v, fv.provisioned_for(*v)))
                .collect();
            wanted
                .into_iter()
                .map(|(v, n)| {
                    let dep = fv.published.get_mut(&v).expect("listed above");
                    if dep.config.spec.provisioned_concurrency != n {
                        let mut cfg = (*dep.config).clone();
                        cfg.spec.provisioned_concurrency = n;
                        let mut d = (**dep).clone();
                        d.config = Arc::new(cfg);
                        *dep = Arc::new(d);
                    }
                    (**dep).clone()
                })
                .collect()
        };
        for dep in installs {
            let v: u32 = dep.version.parse().unwrap_or(0);
            if restart.contains(&v) {
                self.inner.pool.remove(&dep.key);
            }
            self.inner.pool.set_deployment(dep);
        }
    }

    /// Forget everything versioned of a deleted function and stop its instances.
    pub(crate) fn forget_versions(&self, function: &str) {
        let removed = self.inner.versions.write().unwrap().remove(function);
        if let Some(fv) = removed {
            for dep in fv.published.values() {
                self.inner.pool.remove(&dep.key);
            }
        }
    }

    /// The deployment a qualifier runs: `$LATEST`, a version, or an alias (weighted
    /// routing picked here, per invocation).
    pub(crate) fn resolve(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<Deployment>> {
        let latest = || {
            self.inner
                .functions
                .read()
                .unwrap()
                .get(function)
                .cloned()
                .ok_or_else(|| self.not_found_q(function, qualifier))
        };
        let version = |fv: &FnVersions, v: &str| -> Option<Arc<Deployment>> {
            v.parse::<u32>()
                .ok()
                .and_then(|n| fv.published.get(&n).cloned())
        };
        match target(qualifier) {
            Target::Latest => latest(),
            Target::Version(v) => {
                latest()?;
                let all = self.inner.versions.read().unwrap();
                all.get(function)
                    .and_then(|fv| fv.published.get(&v).cloned())
                    .ok_or_else(|| self.not_found_q(function, qualifier))
            }
            Target::Alias(a) => {
                latest()?;
                let picked = {
                    let all = self.inner.versions.read().unwrap();
                    let fv = all
                        .get(function)
                        .ok_or_else(|| self.not_found_q(function, qualifier))?;
                    let alias = fv
                        .aliases
                        .get(&a)
                        .ok_or_else(|| self.not_found_q(function, qualifier))?;
                    let mut chosen = alias.function_version.clone();
                    let draw = unit_random();
                    let mut acc = 0.0;
                    for (v, w) in &alias.routing {
                        acc += w;
                        if draw < acc {
                            chosen = v.clone();
                            break;
                        }
                    }
                    if chosen == LATEST {
                        None
                    } else {
                        Some(
                            version(fv, &chosen)
                                .ok_or_else(|| self.not_found_q(function, Some(&chosen)))?,
                        )
                    }
                };
                match picked {
                    Some(d) => Ok(d),
                    None => latest(),
                }
            }
        }
    }

    /// Configuration a qualifier names, with its version string (an alias names its
    /// primary version).
    pub fn get_qualified(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, Arc<FunctionConfig>)> {
        let latest = self
            .get(function)
            .ok_or_else(|| self.not_found_q(function, qualifier))?;
        let all = self.inner.versions.read().unwrap();
        let fv = all.get(function);
        let v = match target(qualifier) {
            Target::Latest => return Ok((LATEST.to_string(), latest)),
            Target::Version(v) => v.to_string(),
            Target::Alias(a) => fv
                .and_then(|fv| fv.version_of_alias(&a))
                .ok_or_else(|| self.not_found_q(function, qualifier))?
                .to_string(),
        };
        if v == LATEST {
            return Ok((v, latest));
        }
        let n: u32 = v.parse().unwrap_or(u32::MAX);
        fv.and_then(|fv| fv.published.get(&n))
            .map(|d| (v, d.config.clone()))
            .ok_or_else(|| self.not_found_q(function, qualifier))
    }

    /// Does the qualifier name something that exists?
    pub fn qualifier_exists(&self, function: &str, qualifier: Option<&str>) -> bool {
        match target(qualifier) {
            Target::Alias(a) => {
                self.get(function).is_some()
                    && self
                        .inner
                        .versions
                        .read()
                        .unwrap()
                        .get(function)
                        .is_some_and(|fv| fv.aliases.contains_key(&a))
            }
            _ => self.get_qualified(function, qualifier).is_ok(),
        }
    }

    /// `$LATEST` followed by every published version, oldest first.
    pub fn versions(&self, function: &str) -> Result<Vec<(String, Arc<FunctionConfig>)>> {
        let latest = self
            .get(function)
            .ok_or_else(|| self.not_found_q(function, None))?;
        let mut out = vec![(LATEST.to_string(), latest)];
        if let Some(fv) = self.inner.versions.read().unwrap().get(function) {
            out.extend(
                fv.published
                    .iter()
                    .map(|(v, d)| (v.to_string(), d.config.clone())),
            );
        }
        Ok(out)
    }

    /// PublishVersion: snapshot `$LATEST`. Publishing an unchanged `$LATEST` returns
    /// the last version instead of making a new one, as Lambda does.
    pub async fn publish_version(
        &self,
        function: &str,
        req: PublishRequest,
    ) -> Result<(String, Arc<FunctionConfig>)> {
        let _serial = self.inner.deploy_lock.lock().await;
        let latest = self
            .get(function)
            .ok_or_else(|| self.not_found_q(function, None))?;
        if let Some(want) = &req.revision_id {
            if *want != latest.revision_id {
                return Err(InvokeError::PreconditionFailed(
                    crate::registry::REVISION_MISMATCH.into(),
                ));
            }
        }
        if let Some(sha) = &req.code_sha256 {
            if !sha.eq_ignore_ascii_case(&latest.code_sha256) {
                return Err(InvokeError::InvalidParameter(format!(
                    "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again",
                    latest.code_sha256
                )));
            }
        }
        let last = {
            let all = self.inner.versions.read().unwrap();
            all.get(function).and_then(|fv| {
                fv.published
                    .iter()
                    .next_back()
                    .map(|(v, d)| (fv.last, *v, d.config.clone()))
            })
        };
        if let Some((_, v, cfg)) = &last {
            if cfg.revision == latest.revision {
                return Ok((v.to_string(), cfg.clone()));
            }
        }
        let counter = self
            .inner
            .versions
            .read()
            .unwrap()
            .get(function)
            .map_or(0, |fv| fv.last);
        let v = counter + 1;
        let mut snapshot = (*latest).clone();
        if let Some(d) = req.description {
            snapshot.spec.description = d;
        }
        snapshot.spec.provisioned_concurrency = 0;
        snapshot.revision_id = uuid::Uuid::new_v4().to_string();
        snapshot.last_modified_ms = nimbus_core::now_ms();
        let (mut dep, _) = self.prepare(Arc::new(snapshot.clone())).await?;
        dep.key = version_key(function, v);
        dep.version = v.to_string();
        self.write(vec![
            object(function, KIND_VERSION, &v.to_string(), json(&snapshot)),
            object(function, KIND_COUNTER, "last", Some(v.to_string())),
        ])
        .await?;
        let config = dep.config.clone();
        self.with_versions(function, |fv| {
            fv.last = v;
            fv.published.insert(v, Arc::new(dep));
        });
        self.apply_provisioned(function, &[]);
        tracing::info!(function, version = v, "version published");
        Ok((v.to_string(), config))
    }

    /// DeleteFunction with a version qualifier.
    pub async fn delete_version(&self, function: &str, version: &str) -> Result<()> {
        let _serial = self.inner.deploy_lock.lock().await;
        let n: u32 = match target(Some(version)) {
            Target::Version(n) => n,
            Target::Latest => {
                return Err(InvokeError::InvalidParameter(
                    "$LATEST version cannot be deleted without deleting the function.".into(),
                ))
            }
            Target::Alias(_) => {
                return Err(InvokeError::InvalidParameter(
                    "Deletion of aliases is not supported with DeleteFunction; use DeleteAlias"
                        .into(),
                ))
            }
        };
        let key = {
            let all = self.inner.versions.read().unwrap();
            let fv = all
                .get(function)
                .filter(|fv| fv.published.contains_key(&n))
                .ok_or_else(|| self.not_found_q(function, Some(version)))?;
            let users = fv.aliases_referencing(version);
            if !users.is_empty() {
                return Err(InvokeError::Conflict(format!(
                    "Unable to delete version because the following aliases reference it: {users:?}"
                )));
            }
            version_key(function, n)
        };
        self.write(vec![
            object(function, KIND_VERSION, version, None),
            object(function, KIND_PROVISIONED, version, None),
        ])
        .await?;
        {
            let mut all = self.inner.versions.write().unwrap();
            if let Some(fv) = all.get_mut(function) {
                fv.published.remove(&n);
                fv.provisioned.remove(version);
            }
        }
        self.inner.pool.remove(&key);
        Ok(())
    }

    fn check_alias_target(
        &self,
        function: &str,
        fv: Option<&FnVersions>,
        a: &AliasConfig,
    ) -> Result<()> {
        let exists = |v: &str| {
            v == LATEST
                || v.parse::<u32>()
                    .ok()
                    .is_some_and(|n| fv.is_some_and(|fv| fv.published.contains_key(&n)))
        };
        if !exists(&a.function_version) {
            return Err(self.not_found_q(function, Some(&a.function_version)));
        }
        if a.routing.len() > 1 {
            return Err(InvokeError::InvalidParameter(
                "Number of items in AdditionalVersionWeights cannot be greater than 1".into(),
            ));
        }
        for (v, w) in &a.routing {
            if !(0.0..=1.0).contains(w) {
                return Err(InvokeError::InvalidParameter(format!(
                    "1 validation error detected: Value '{w}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]"
                )));
            }
            if *v == a.function_version {
                return Err(InvokeError::InvalidParameter(format!(
                    "Invalid function version {v}. Function version {v} is already included in routing configuration."
                )));
            }
            if v == LATEST || a.function_version == LATEST {
                return Err(InvokeError::InvalidParameter(
                    "$LATEST is not supported for an alias pointing to more than 1 version".into(),
                ));
            }
            if !exists(v) {
                return Err(self.not_found_q(function, Some(v)));
            }
        }
        Ok(())
    }

    /// CreateAlias.
    pub async fn create_alias(
        &self,
        function: &str,
        name: &str,
        function_version: &str,
        description: String,
        routing: BTreeMap<String, f64>,
    ) -> Result<AliasConfig> {
        let _serial = self.inner.deploy_lock.lock().await;
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        if !valid_alias_name(name) {
            return Err(InvokeError::InvalidParameter(format!(
                "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
            )));
        }
        let alias = AliasConfig {
            name: name.to_string(),
            function_version: function_version.to_string(),
            description,
            routing,
            revision_id: uuid::Uuid::new_v4().to_string(),
        };
        {
            let all = self.inner.versions.read().unwrap();
            let fv = all.get(function);
            if fv.is_some_and(|fv| fv.aliases.contains_key(name)) {
                return Err(InvokeError::Conflict(format!(
                    "Alias already exists: {}",
                    function_arn(self.region(), function, Some(name))
                )));
            }
            self.check_alias_target(function, fv, &alias)?;
        }
        self.write(vec![object(function, KIND_ALIAS, name, json(&alias))])
            .await?;
        self.with_versions(function, |fv| {
            fv.aliases.insert(name.to_string(), alias.clone())
        });
        Ok(alias)
    }

    /// UpdateAlias: `None` leaves a field as it is.
    pub async fn update_alias(
        &self,
        function: &str,
        name: &str,
        function_version: Option<String>,
        description: Option<String>,
        routing: Option<BTreeMap<String, f64>>,
        expect_revision_id: Option<&str>,
    ) -> Result<AliasConfig> {
        let _serial = self.inner.deploy_lock.lock().await;
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        let (alias, old_version) = {
            let all = self.inner.versions.read().unwrap();
            let fv = all.get(function);
            let current = fv
                .and_then(|fv| fv.aliases.get(name))
                .ok_or_else(|| self.alias_not_found(function, name))?;
            if expect_revision_id.is_some_and(|r| r != current.revision_id) {
                return Err(InvokeError::PreconditionFailed(
                    crate::registry::REVISION_MISMATCH.into(),
                ));
            }
            let mut a = current.clone();
            if let Some(v) = function_version {
                a.function_version = v;
            }
            if let Some(d) = description {
                a.description = d;
            }
            if let Some(r) = routing {
                a.routing = r;
            }
            a.revision_id = uuid::Uuid::new_v4().to_string();
            self.check_alias_target(function, fv, &a)?;
            if !a.routing.is_empty() && fv.is_some_and(|fv| fv.provisioned.contains_key(name)) {
                return Err(InvokeError::Conflict(
                    "Alias with weights can not be used with Provisioned Concurrency".into(),
                ));
            }
            (a, current.function_version.clone())
        };
        self.write(vec![object(function, KIND_ALIAS, name, json(&alias))])
            .await?;
        if let Some(fv) = self.inner.versions.write().unwrap().get_mut(function) {
            fv.aliases.insert(name.to_string(), alias.clone());
        }
        if old_version != alias.function_version {
            let restart: Vec<u32> = old_version.parse().into_iter().collect();
            self.apply_provisioned(function, &restart);
        }
        Ok(alias)
    }

    pub fn get_alias(&self, function: &str, name: &str) -> Result<AliasConfig> {
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        self.inner
            .versions
            .read()
            .unwrap()
            .get(function)
            .and_then(|fv| fv.aliases.get(name).cloned())
            .ok_or_else(|| self.alias_not_found(function, name))
    }

    /// Aliases by name; with `version`, only those that route to it.
    pub fn list_aliases(&self, function: &str, version: Option<&str>) -> Result<Vec<AliasConfig>> {
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        Ok(self
            .inner
            .versions
            .read()
            .unwrap()
            .get(function)
            .map(|fv| {
                fv.aliases
                    .values()
                    .filter(|a| {
                        version.is_none_or(|v| a.function_version == v || a.routing.contains_key(v))
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// DeleteAlias (and its provisioned config).
    pub async fn delete_alias(&self, function: &str, name: &str) -> Result<()> {
        let _serial = self.inner.deploy_lock.lock().await;
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        let (exists, version) = {
            let all = self.inner.versions.read().unwrap();
            let a = all.get(function).and_then(|fv| fv.aliases.get(name));
            (a.is_some(), a.map(|a| a.function_version.clone()))
        };
        if !exists {
            // Lambda answers DeleteAlias of a missing alias with 204 as well.
            return Ok(());
        }
        self.write(vec![
            object(function, KIND_ALIAS, name, None),
            object(function, KIND_PROVISIONED, name, None),
        ])
        .await?;
        let had_provisioned = {
            let mut all = self.inner.versions.write().unwrap();
            let fv = all.get_mut(function).expect("checked above");
            fv.aliases.remove(name);
            fv.provisioned.remove(name).is_some()
        };
        if had_provisioned {
            let restart: Vec<u32> = version.and_then(|v| v.parse().ok()).into_iter().collect();
            self.apply_provisioned(function, &restart);
        }
        Ok(())
    }

    fn provisioned_not_found(&self, function: &str) -> InvokeError {
        InvokeError::Missing {
            code: "ProvisionedConcurrencyConfigNotFoundException",
            message: format!(
                "No Provisioned Concurrency Config found for this function: {function}"
            ),
        }
    }

    /// PutProvisionedConcurrencyConfig on a version or an alias.
    pub async fn put_provisioned(
        &self,
        function: &str,
        qualifier: &str,
        requested: u32,
    ) -> Result<ProvisionedStatus> {
        let _serial = self.inner.deploy_lock.lock().await;
        let latest = self
            .get(function)
            .ok_or_else(|| self.not_found_q(function, None))?;
        if requested == 0 {
            return Err(InvokeError::InvalidParameter(
                "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1".into(),
            ));
        }
        let unpublished = || {
            InvokeError::InvalidParameter(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
                    .into(),
            )
        };
        let (version, restart) = {
            let all = self.inner.versions.read().unwrap();
            let fv = all.get(function);
            let version = match target(Some(qualifier)) {
                Target::Latest => return Err(unpublished()),
                Target::Version(n) => {
                    if !fv.is_some_and(|fv| fv.published.contains_key(&n)) {
                        return Err(self.not_found_q(function, Some(qualifier)));
                    }
                    n
                }
                Target::Alias(a) => {
                    let alias = fv
                        .and_then(|fv| fv.aliases.get(&a))
                        .ok_or_else(|| self.alias_not_found(function, &a))?;
                    if !alias.routing.is_empty() {
                        return Err(InvokeError::Conflict(
                            "Alias with weights can not be used with Provisioned Concurrency"
                                .into(),
                        ));
                    }
                    alias.function_version.parse().map_err(|_| unpublished())?
                }
            };
            let others: u32 = fv.map_or(0, |fv| {
                fv.provisioned
                    .iter()
                    .filter(|(q, _)| q.as_str() != qualifier)
                    .map(|(_, c)| c.requested)
                    .sum()
            });
            if let Some(r) = latest.spec.reserved_concurrency {
                if others + requested > r {
                    return Err(InvokeError::InvalidParameter(format!(
                        "Requested Provisioned Concurrency ({}) should not be greater than the reservedConcurrentExecution for function ({r})",
                        others + requested
                    )));
                }
            }
            let lowered = fv
                .and_then(|fv| fv.provisioned.get(qualifier))
                .is_some_and(|c| c.requested > requested);
            (version, if lowered { vec![version] } else { vec![] })
        };
        let cfg = ProvisionedConfig {
            requested,
            last_modified_ms: nimbus_core::now_ms(),
        };
        self.write(vec![object(
            function,
            KIND_PROVISIONED,
            qualifier,
            json(&cfg),
        )])
        .await?;
        self.with_versions(function, |fv| {
            fv.provisioned.insert(qualifier.to_string(), cfg)
        });
        self.apply_provisioned(function, &restart);
        tracing::info!(
            function,
            qualifier,
            version,
            requested,
            "provisioned concurrency set"
        );
        self.get_provisioned(function, qualifier)
    }

    pub fn get_provisioned(&self, function: &str, qualifier: &str) -> Result<ProvisionedStatus> {
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        self.list_provisioned(function)?
            .into_iter()
            .find(|p| p.qualifier == qualifier)
            .ok_or_else(|| self.provisioned_not_found(function))
    }

    pub fn list_provisioned(&self, function: &str) -> Result<Vec<ProvisionedStatus>> {
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        let all = self.inner.versions.read().unwrap();
        let Some(fv) = all.get(function) else {
            return Ok(Vec::new());
        };
        Ok(fv
            .provisioned
            .iter()
            .map(|(q, c)| {
                let version = match target(Some(q)) {
                    Target::Version(n) => Some(n),
                    Target::Alias(a) => fv.version_of_alias(&a).and_then(|v| v.parse().ok()),
                    Target::Latest => None,
                };
                let ready = version
                    .map(|v| {
                        self.inner
                            .pool
                            .instances(&version_key(function, v))
                            .iter()
                            .filter(|i| i.provisioned)
                            .count() as u32
                    })
                    .unwrap_or(0);
                ProvisionedStatus {
                    qualifier: q.clone(),
                    requested: c.requested,
                    // Several configs may share a version: each sees its share.
                    available: ready.min(c.requested),
                    last_modified_ms: c.last_modified_ms,
                }
            })
            .collect())
    }

    pub async fn delete_provisioned(&self, function: &str, qualifier: &str) -> Result<()> {
        let _serial = self.inner.deploy_lock.lock().await;
        if self.get(function).is_none() {
            return Err(self.not_found_q(function, None));
        }
        let version = {
            let all = self.inner.versions.read().unwrap();
            let fv = all
                .get(function)
                .filter(|fv| fv.provisioned.contains_key(qualifier))
                .ok_or_else(|| self.provisioned_not_found(function))?;
            match target(Some(qualifier)) {
                Target::Version(n) => Some(n),
                Target::Alias(a) => fv.version_of_alias(&a).and_then(|v| v.parse().ok()),
                Target::Latest => None,
            }
        };
        self.write(vec![object(function, KIND_PROVISIONED, qualifier, None)])
            .await?;
        if let Some(fv) = self.inner.versions.write().unwrap().get_mut(function) {
            fv.provisioned.remove(qualifier);
        }
        self.apply_provisioned(function, &version.into_iter().collect::<Vec<_>>());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifiers() {
        assert_eq!(target(None), Target::Latest);
        assert_eq!(target(Some("$LATEST")), Target::Latest);
        assert_eq!(target(Some("12")), Target::Version(12));
        assert_eq!(target(Some("prod")), Target::Alias("prod".into()));
        assert_eq!(target(Some("v1")), Target::Alias("v1".into()));
    }

    #[test]
    fn alias_names() {
        assert!(valid_alias_name("prod"));
        assert!(valid_alias_name("live-2_b"));
        assert!(valid_alias_name("1a"));
        assert!(!valid_alias_name("12"));
        assert!(!valid_alias_name(""));
        assert!(!valid_alias_name("$LATEST"));
        assert!(!valid_alias_name(&"a".repeat(129)));
    }

    #[test]
    fn random_draws_are_in_range_and_spread() {
        let draws: Vec<f64> = (0..2000).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|d| **d < 0.5).count();
        assert!((800..1200).contains(&low), "{low} of 2000 below 0.5");
    }

    #[test]
    fn provisioned_adds_up_per_version() {
        let mut fv = FnVersions::default();
        fv.aliases.insert(
            "live".into(),
            AliasConfig {
                name: "live".into(),
                function_version: "2".into(),
                description: String::new(),
                routing: BTreeMap::new(),
                revision_id: "r".into(),
            },
        );
        let p = |n| ProvisionedConfig {
            requested: n,
            last_modified_ms: 0,
        };
        fv.provisioned.insert("live".into(), p(2));
        fv.provisioned.insert("2".into(), p(1));
        fv.provisioned.insert("1".into(), p(3));
        assert_eq!(fv.provisioned_for(2), 3);
        assert_eq!(fv.provisioned_for(1), 3);
        assert_eq!(fv.provisioned_for(3), 0);
        assert_eq!(fv.aliases_referencing("2"), vec!["live".to_string()]);
    }
}

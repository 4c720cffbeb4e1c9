//! Plan, journal, apply, commit, clean up — and finish or undo after a crash.
//!
//! A deploy of an app's [`Template`]:
//! 1. **plan** (nothing journaled): conditions evaluated, resources ordered by
//!    their dependencies, each compared with what exists — create, update,
//!    replace, delete, keep. Data-bearing resources that hold data are never
//!    replaced or deleted unless the request allows it; exports other apps
//!    import are never removed. `dry_run` stops here.
//! 2. **journal**: the change is recorded (`applying`) with what it will delete;
//! 3. **apply**: creates, updates and replacement-creates in dependency order;
//!    each step is recorded `started` (with the row before and the planned one)
//!    before its service call, and `done` with the resulting row after it, in
//!    one transaction. A failure rolls the change back: every step undone in
//!    reverse (a create deleted, an update re-applied with the old properties).
//! 4. **commit** (one transaction): the app's template, outputs, exports and
//!    imports, and the change moving to `cleanup`;
//! 5. **cleanup**, as CloudFormation's: removed resources deleted in reverse
//!    dependency order (`DeletionPolicy: Retain` keeps them), replaced ones'
//!    old physical resources deleted (`UpdateReplacePolicy: Retain` keeps them).
//!
//! On start, [`Engine::open`] looks for a change a crash interrupted: one still
//! `applying` (or `rolling_back`) is rolled back, one in `cleanup` is finished.
//! Every provider call is idempotent under replay (deletes of what is gone
//! succeed, a create of an existing name is refused), so a crash in the middle of
//! a step — its call made or not — is safe to replay.

use crate::graph;
use crate::intrinsics::{self, Env, Live};
use crate::model::{Action, PlannedChange, ResourceRow, StepRecord};
use crate::naming;
use crate::providers::{self, Cx};
use crate::services::Services;
use crate::store::{Store, StoreError};
use nimbus_manifest::template::{Resource, Template};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Why a request to the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The template or request is wrong (nothing was changed).
    #[error("{0}")]
    Invalid(String),
    /// The plan refuses (data would be lost, an export is in use; nothing changed).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// Applying failed; the change was rolled back (`rolled_back` says whether
    /// every step could be undone).
    #[error("{message}")]
    Failed { message: String, rolled_back: bool },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the CLI sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployRequest {
    #[serde(default)]
    pub template: Template,
    /// Plan only.
    #[serde(default)]
    pub dry_run: bool,
    /// Allow replacing or deleting data-bearing resources that hold data.
    #[serde(default)]
    pub allow_replace: bool,
}

/// What a deploy did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub app: String,
    pub plan: Vec<PlannedChange>,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<i64>,
    /// Output name → value (applied deploys).
    pub outputs: BTreeMap<String, Value>,
    /// Cleanup problems (a delete that failed after the commit).
    pub warnings: Vec<String>,
}

/// The journal's record of a change's deletions (in `changes.request`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Journaled {
    #[serde(default)]
    template: Option<Template>,
    /// Rows to delete at cleanup, in deletion order.
    #[serde(default)]
    deletes: Vec<ResourceRow>,
}

struct Inner {
    store: Store,
    services: Services,
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Testing: stop (without returning) after this many applied steps.
    pause_after: Option<usize>,
}

/// The app engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// The environment variable that makes a deploy stop forever after N applied
/// steps (for the crash tests: the server is then killed).
pub const PAUSE_ENV: &str = "NIMBUS_APPS_PAUSE_AFTER_STEP";

fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Engine {
    /// Open `apps.db` in `data_dir` and finish or undo, in the background, a
    /// change a crash interrupted (requests wait for it).
    pub fn open(data_dir: &std::path::Path, services: Services) -> Result<Self, StoreError> {
        let store = Store::open(&data_dir.join("apps.db"))?;
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let guard = lock.clone().try_lock_owned().expect("a new lock is free");
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                services,
                lock,
                pause_after: std::env::var(PAUSE_ENV).ok().and_then(|v| v.parse().ok()),
            }),
        };
        let e = engine.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(err) = e.recover().await {
                tracing::error!(error = %err, "apps: cannot recover interrupted changes");
            }
        });
        Ok(engine)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    fn cx<'a>(&'a self, app: &'a str) -> Cx<'a> {
        Cx {
            services: &self.inner.services,
            app,
            store: &self.inner.store,
        }
    }

    /// Wait until recovery (and any change in progress) is over.
    pub async fn ready(&self) {
        let _g = self.inner.lock.lock().await;
    }

    async fn recover(&self) -> Result<(), StoreError> {
        for ch in self.inner.store.unfinished()? {
            tracing::warn!(app = %ch.app, change = ch.id, state = %ch.state, "apps: finishing a change interrupted by a restart");
            match ch.state.as_str() {
                "applying" | "rolling_back" => {
                    let ok = self.rollback(ch.id, &ch.app).await?;
                    tracing::info!(app = %ch.app, change = ch.id, complete = ok, "apps: interrupted change rolled back");
                }
                _ => {
                    let j: Journaled =
                        serde_json::from_value(ch.request.clone()).unwrap_or_default();
                    let warnings = self.cleanup(ch.id, &ch.app, &j.deletes).await?;
                    self.finish(ch.id, &ch.app, &ch.kind, &warnings)?;
                    tracing::info!(app = %ch.app, change = ch.id, "apps: interrupted cleanup finished");
                }
            }
        }
        Ok(())
    }

    fn finish(
        &self,
        change: i64,
        app: &str,
        kind: &str,
        warnings: &[String],
    ) -> Result<(), StoreError> {
        if kind == "remove" && warnings.is_empty() {
            self.inner.store.forget_app(change, app)
        } else if warnings.is_empty() {
            self.inner.store.set_change_state(change, "done", None)
        } else {
            self.inner
                .store
                .set_change_state(change, "done", Some(&warnings.join("; ")))
        }
    }

    fn conditions(&self, app: &str, t: &Template) -> Result<BTreeMap<String, bool>, EngineError> {
        // Conditions may reference each other: evaluate until all are known.
        let mut known: BTreeMap<String, bool> = BTreeMap::new();
        let empty = BTreeSet::new();
        let no_live = |_: &str| None;
        let no_import = |_: &str| None;
        for _ in 0..=t.conditions.len() {
            let mut progressed = false;
            for (name, expr) in &t.conditions {
                if known.contains_key(name) {
                    continue;
                }
                let env = Env {
                    app,
                    region: &self.inner.services.region,
                    account_id: &self.inner.services.account_id,
                    parameters: &t.parameters,
                    conditions: &known,
                    functions: &t.functions,
                    declared: &empty,
                    live: &no_live,
                    import: &no_import,
                    placeholders: false,
                };
                match env.condition(expr) {
                    Ok(b) => {
                        known.insert(name.clone(), b);
                        progressed = true;
                    }
                    Err(e) if e.0.starts_with("no condition") => {}
                    Err(e) => return Err(EngineError::Invalid(format!("condition {name}: {e}"))),
                }
            }
            if !progressed {
                break;
            }
        }
        if let Some(n) = t.conditions.keys().find(|n| !known.contains_key(*n)) {
            return Err(EngineError::Invalid(format!(
                "condition {n} refers to a condition that does not exist, or conditions refer to each other in a cycle"
            )));
        }
        Ok(known)
    }

    fn import(&self, name: &str) -> Option<Value> {
        self.inner.store.export(name).ok().flatten().map(|(_, v)| v)
    }

    /// Deploy `req.template` as app `app`.
    pub async fn deploy(
        &self,
        app: &str,
        req: DeployRequest,
    ) -> Result<DeployOutcome, EngineError> {
        if !valid_app_name(app) {
            return Err(EngineError::Invalid(format!(
                "invalid app name {app:?}: 1 to 128 letters, digits, '-', '_' or '.'"
            )));
        }
        let _g = self.inner.lock.lock().await;
        let t = &req.template;
        for (id, r) in &t.resources {
            if !providers::supported(&r.kind) {
                return Err(EngineError::Invalid(format!(
                    "resource {id}{}: type {} is not supported",
                    r.source
                        .as_ref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                    r.kind
                )));
            }
            if let Some(c) = &r.condition {
                if !t.conditions.contains_key(c) {
                    return Err(EngineError::Invalid(format!(
                        "resource {id}: no condition {c}"
                    )));
                }
            }
        }
        let conditions = self.conditions(app, t)?;
        let desired: BTreeMap<String, &Resource> = t
            .resources
            .iter()
            .filter(|(_, r)| r.condition.as_ref().is_none_or(|c| conditions[c]))
            .map(|(k, r)| (k.clone(), r))
            .collect();
        let declared: BTreeSet<String> = desired.keys().cloned().collect();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, r) in &desired {
            let mut d = BTreeSet::new();
            intrinsics::references(&r.properties, &declared, &mut d);
            // A `DependsOn` naming one of the app's functions is met already:
            // the CLI deploys the functions before the resources.
            d.extend(
                r.depends_on
                    .iter()
                    .filter(|x| !t.functions.contains_key(*x))
                    .cloned(),
            );
            deps.insert(id.clone(), d);
        }
        let order = graph::order(&deps).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let current = self.inner.store.resources(app)?;

        // 1. Plan.
        let mut plan: Vec<PlannedChange> = Vec::new();
        let mut stale: BTreeSet<String> = BTreeSet::new();
        let mut refusals: Vec<String> = Vec::new();
        for id in &order {
            let r = desired[id];
            let cur = current.get(id);
            let live = |n: &str| {
                if stale.contains(n) {
                    return None;
                }
                current.get(n).map(live_of)
            };
            let import = |n: &str| self.import(n);
            let env = self.env(app, t, &conditions, &declared, &live, &import, true);
            let props = env
                .eval(&r.properties)
                .map_err(|e| EngineError::Invalid(format!("resource {id}: {e}")))?
                .unwrap_or(Value::Object(Map::new()));
            let (props, _) = complete_name(app, id, &r.kind, props, cur, false);
            let (action, detail) = match cur {
                None => (Action::Create, None),
                Some(c) if c.kind != r.kind => (
                    Action::Replace,
                    Some(format!("type {} → {}", c.kind, r.kind)),
                ),
                Some(c) if c.properties == props && same_policies(c, r) => (Action::Keep, None),
                Some(c) => {
                    let changed = changed_keys(&c.properties, &props);
                    if providers::replaces(&r.kind, &c.properties, &props) {
                        (Action::Replace, Some(changed))
                    } else {
                        (Action::Update, Some(changed))
                    }
                }
            };
            if action == Action::Replace {
                let c = cur.expect("a replaced resource exists");
                if let Some(rule) = naming::rule(&c.kind) {
                    if c.generated_name.is_none()
                        && c.kind == r.kind
                        && c.properties.get(rule.property) == props.get(rule.property)
                    {
                        refusals.push(format!(
                            "{id} ({}) must be replaced ({}), but it has a custom name ({} {}): rename it or remove the name",
                            r.kind,
                            detail.clone().unwrap_or_default(),
                            rule.property,
                            props.get(rule.property).cloned().unwrap_or_default()
                        ));
                    }
                }
                if providers::data_bearing(&c.kind)
                    && !req.allow_replace
                    && c.update_replace_policy.as_deref() != Some("Retain")
                    && providers::has_data(&self.cx(app), c).await.unwrap_or(true)
                {
                    refusals.push(format!(
                        "{id} ({}) would be replaced ({}) and it holds data: pass --allow-replace to replace it",
                        c.kind,
                        detail.clone().unwrap_or_default()
                    ));
                }
            }
            if matches!(action, Action::Create | Action::Replace) {
                stale.insert(id.clone());
            }
            plan.push(PlannedChange {
                logical_id: id.clone(),
                kind: r.kind.clone(),
                action,
                physical_id: cur.map(|c| c.physical_id.clone()),
                detail,
            });
        }
        let deletes = deletion_order(
            current
                .values()
                .filter(|c| !desired.contains_key(&c.logical_id))
                .cloned()
                .collect(),
        );
        for c in &deletes {
            if !c.retained()
                && providers::data_bearing(&c.kind)
                && !req.allow_replace
                && providers::has_data(&self.cx(app), c).await.unwrap_or(true)
            {
                refusals.push(format!(
                    "{} ({}) would be deleted and it holds data: pass --allow-replace to delete it, or keep it with DeletionPolicy: Retain",
                    c.logical_id, c.kind
                ));
            }
            plan.push(PlannedChange {
                logical_id: c.logical_id.clone(),
                kind: c.kind.clone(),
                action: Action::Delete,
                physical_id: Some(c.physical_id.clone()),
                detail: c
                    .retained()
                    .then(|| "retained (DeletionPolicy: Retain)".to_string()),
            });
        }
        // Exports in use may not disappear.
        let new_exports: BTreeSet<String> = t
            .outputs
            .values()
            .filter_map(|o| o.export.as_ref())
            .filter_map(|e| {
                e.get("Name")
                    .or(Some(e))
                    .and_then(|n| n.as_str().map(str::to_string))
            })
            .collect();
        for (name, owner, _) in self.inner.store.exports()? {
            if owner == app && !new_exports.contains(&name) {
                let users = self.inner.store.importers(&name, app)?;
                if !users.is_empty() {
                    refusals.push(format!(
                        "export {name} is imported by app(s) {}: it cannot be removed",
                        users.join(", ")
                    ));
                }
            }
        }
        if !refusals.is_empty() {
            return Err(EngineError::Refused(format!(
                "nothing was changed: {}",
                refusals.join("; ")
            )));
        }
        if req.dry_run {
            return Ok(DeployOutcome {
                app: app.to_string(),
                plan,
                applied: false,
                change_id: None,
                outputs: BTreeMap::new(),
                warnings: vec![],
            });
        }

        // 2. Journal.
        let journaled = Journaled {
            template: Some(t.clone()),
            deletes: deletes.clone(),
        };
        let change = self.inner.store.begin_change(
            app,
            "deploy",
            "applying",
            &serde_json::to_value(&journaled).expect("json"),
        )?;
        tracing::info!(
            app,
            change,
            steps = plan.iter().filter(|p| p.action != Action::Keep).count(),
            "apps: applying a change"
        );

        // 3. Apply.
        match self
            .apply(
                app,
                change,
                t,
                &conditions,
                &declared,
                &deps,
                &order,
                &desired,
                current,
            )
            .await
        {
            Ok((outputs, exports, imports)) => {
                // 4. Commit.
                self.inner.store.commit_deploy(
                    change,
                    app,
                    &serde_json::to_value(t).expect("json"),
                    &serde_json::to_value(&outputs).expect("json"),
                    &exports,
                    &imports,
                )?;
                // 5. Cleanup.
                let warnings = self.cleanup(change, app, &deletes).await?;
                self.finish(change, app, "deploy", &warnings)?;
                Ok(DeployOutcome {
                    app: app.to_string(),
                    plan,
                    applied: true,
                    change_id: Some(change),
                    outputs,
                    warnings,
                })
            }
            Err(message) => {
                tracing::warn!(app, change, error = %message, "apps: change failed; rolling back");
                self.inner
                    .store
                    .set_change_state(change, "rolling_back", Some(&message))?;
                let rolled_back = self.rollback(change, app).await?;
                Err(EngineError::Failed {
                    message,
                    rolled_back,
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn env<'a>(
        &'a self,
        app: &'a str,
        t: &'a Template,
        conditions: &'a BTreeMap<String, bool>,
        declared: &'a BTreeSet<String>,
        live: &'a (dyn Fn(&str) -> Option<Live> + Sync),
        import: &'a (dyn Fn(&str) -> Option<Value> + Sync),
        placeholders: bool,
    ) -> Env<'a> {
        Env {
            app,
            region: &self.inner.services.region,
            account_id: &self.inner.services.account_id,
            parameters: &t.parameters,
            conditions,
            functions: &t.functions,
            declared,
            live,
            import,
            placeholders,
        }
    }

    /// Apply the creates and updates; the outputs, exports and imports to commit,
    /// or the error that fails the change.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    async fn apply(
        &self,
        app: &str,
        change: i64,
        t: &Template,
        conditions: &BTreeMap<String, bool>,
        declared: &BTreeSet<String>,
        deps: &BTreeMap<String, BTreeSet<String>>,
        order: &[String],
        desired: &BTreeMap<String, &Resource>,
        mut rows: BTreeMap<String, ResourceRow>,
    ) -> Result<
        (
            BTreeMap<String, Value>,
            BTreeMap<String, Value>,
            Vec<String>,
        ),
        String,
    > {
        let cx = self.cx(app);
        let mut seq: i64 = 0;
        let mut imports = BTreeSet::new();
        for id in order {
            let r = desired[id];
            intrinsics::imports(&r.properties, &mut imports);
            let props = {
                let live = |n: &str| {
                    if desired.contains_key(n) {
                        rows.get(n).map(live_of)
                    } else {
                        None
                    }
                };
                let import = |n: &str| self.import(n);
                let env = self.env(app, t, conditions, declared, &live, &import, false);
                env.eval(&r.properties)
                    .map_err(|e| format!("resource {id}: {e}"))?
                    .unwrap_or(Value::Object(Map::new()))
            };
            let cur = rows.get(id).cloned();
            let (kept, _) = complete_name(app, id, &r.kind, props.clone(), cur.as_ref(), false);
            let action = match &cur {
                None => Action::Create,
                Some(c) if c.kind != r.kind => Action::Replace,
                Some(c)
                    if c.properties == kept && same_policies(c, r) && same_deps(c, &deps[id]) =>
                {
                    continue
                }
                Some(c) if providers::replaces(&r.kind, &c.properties, &kept) => Action::Replace,
                Some(_) => Action::Update,
            };
            let (props, generated) = if action == Action::Update {
                (kept, cur.as_ref().and_then(|c| c.generated_name.clone()))
            } else {
                complete_name(app, id, &r.kind, props, None, true)
            };
            let planned = ResourceRow {
                logical_id: id.clone(),
                kind: r.kind.clone(),
                physical_id: match (&action, &cur) {
                    (Action::Update, Some(c)) => c.physical_id.clone(),
                    _ => String::new(),
                },
                ref_value: Value::Null,
                attributes: Map::new(),
                properties: props.clone(),
                generated_name: generated,
                deletion_policy: r.deletion_policy.clone(),
                update_replace_policy: r.update_replace_policy.clone(),
                depends_on: deps[id].iter().cloned().collect(),
            };
            let step = StepRecord {
                seq,
                logical_id: id.clone(),
                action: action.as_str().to_string(),
                state: "started".into(),
                before: cur.clone(),
                after: Some(planned.clone()),
                error: None,
            };
            self.inner
                .store
                .start_step(change, &step)
                .map_err(|e| e.to_string())?;
            tracing::info!(app, change, resource = %id, kind = %r.kind, action = action.as_str(), "apps: step");
            let result = match (&action, &cur) {
                (Action::Update, Some(c)) => providers::update(&cx, c, &props).await,
                _ => providers::create(&cx, &r.kind, id, &props).await,
            };
            match result {
                Ok(made) => {
                    let row = ResourceRow {
                        physical_id: made.physical_id,
                        ref_value: made.ref_value,
                        attributes: made.attributes,
                        ..planned
                    };
                    self.inner
                        .store
                        .finish_step(
                            change,
                            seq,
                            "done",
                            app,
                            id,
                            Some(&row),
                            Some(Some(&row)),
                            None,
                        )
                        .map_err(|e| e.to_string())?;
                    rows.insert(id.clone(), row);
                }
                Err(e) => {
                    let msg = format!("{id} ({}): {} failed: {e}", r.kind, action.as_str());
                    // A create refused because the name is taken made nothing:
                    // the rollback must not delete what has that name.
                    let state = if matches!(e, providers::ProviderError::Exists(_)) {
                        "refused"
                    } else {
                        "failed"
                    };
                    let _ = self.inner.store.finish_step(
                        change,
                        seq,
                        state,
                        app,
                        id,
                        None,
                        None,
                        Some(&msg),
                    );
                    return Err(msg);
                }
            }
            seq += 1;
            if self.inner.pause_after == Some(seq as usize) {
                tracing::warn!(
                    app,
                    change,
                    steps = seq,
                    "apps: {PAUSE_ENV} reached; pausing this change forever"
                );
                std::future::pending::<()>().await;
            }
        }
        // Function environment variables that name resources, now that they
        // exist: merged into each function's environment (one journaled step
        // per function, undone by restoring the variables it had).
        // The execution role an app declares for a function is set in the same step.
        let no_vars = BTreeMap::new();
        let logicals: BTreeSet<&String> = t
            .function_environment
            .keys()
            .chain(t.function_roles.keys())
            .collect();
        for logical in logicals {
            let vars = t.function_environment.get(logical).unwrap_or(&no_vars);
            let Some(function) = t.functions.get(logical) else {
                return Err(format!(
                    "environment of {logical}: the app has no function {logical}"
                ));
            };
            let resolved = {
                let live = |n: &str| rows.get(n).map(live_of);
                let import = |n: &str| self.import(n);
                let env = self.env(app, t, conditions, declared, &live, &import, false);
                let mut out = Map::new();
                for (k, v) in vars {
                    intrinsics::imports(v, &mut imports);
                    match env
                        .eval(v)
                        .map_err(|e| format!("environment variable {k} of {logical}: {e}"))?
                    {
                        None => {}
                        Some(Value::String(s)) => {
                            out.insert(k.clone(), s.into());
                        }
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                            out.insert(k.clone(), v.to_string().into());
                        }
                        Some(other) => {
                            return Err(format!(
                                "environment variable {k} of {logical}: {other} is not a string"
                            ))
                        }
                    }
                }
                out
            };
            let role = match t.function_roles.get(logical) {
                None => None,
                Some(v) => {
                    let live = |n: &str| rows.get(n).map(live_of);
                    let import = |n: &str| self.import(n);
                    let env = self.env(app, t, conditions, declared, &live, &import, false);
                    match env.eval(v).map_err(|e| format!("role of {logical}: {e}"))? {
                        Some(Value::String(s)) => Some(s),
                        None => None,
                        Some(other) => {
                            return Err(format!("role of {logical}: {other} is not a string"))
                        }
                    }
                }
            };
            let (current, current_role) = providers::function_configuration(&cx, function)
                .await
                .map_err(|e| format!("environment of {function}: {e}"))?;
            let mut merged = current.clone();
            merged.extend(resolved);
            let role = role.filter(|r| Some(r) != current_role.as_ref());
            if merged == current && role.is_none() {
                continue;
            }
            let row = |vars: &Map<String, Value>, role: Option<&String>| ResourceRow {
                logical_id: logical.clone(),
                kind: providers::FUNCTION_ENVIRONMENT.into(),
                physical_id: function.clone(),
                ref_value: Value::Null,
                attributes: Map::new(),
                properties: match role {
                    Some(r) => json!({ "Variables": vars, "Role": r }),
                    None => json!({ "Variables": vars }),
                },
                generated_name: None,
                deletion_policy: None,
                update_replace_policy: None,
                depends_on: Vec::new(),
            };
            let step = StepRecord {
                seq,
                logical_id: logical.clone(),
                action: "env".into(),
                state: "started".into(),
                before: Some(row(&current, role.as_ref().and(current_role.as_ref()))),
                after: Some(row(&merged, role.as_ref())),
                error: None,
            };
            self.inner
                .store
                .start_step(change, &step)
                .map_err(|e| e.to_string())?;
            tracing::info!(app, change, function = %function, "apps: step: function environment");
            let result =
                providers::set_function_configuration(&cx, function, &merged, role.as_deref())
                    .await;
            let (state, error) = match &result {
                Ok(()) => ("done", None),
                Err(e) => ("failed", Some(format!("environment of {function}: {e}"))),
            };
            self.inner
                .store
                .finish_step(
                    change,
                    seq,
                    state,
                    app,
                    logical,
                    None,
                    None,
                    error.as_deref(),
                )
                .map_err(|e| e.to_string())?;
            if let Some(e) = error {
                return Err(e);
            }
            seq += 1;
        }
        // Outputs and exports, against what now exists.
        let live = |n: &str| rows.get(n).map(live_of);
        let import = |n: &str| self.import(n);
        let env = self.env(app, t, conditions, declared, &live, &import, false);
        let mut outputs = BTreeMap::new();
        let mut exports = BTreeMap::new();
        for (name, o) in &t.outputs {
            intrinsics::imports(&o.value, &mut imports);
            if o.condition
                .as_ref()
                .is_some_and(|c| !conditions.get(c).copied().unwrap_or(false))
            {
                continue;
            }
            let v = match env.eval(&o.value) {
                Ok(v) => v.unwrap_or(Value::Null),
                // An output naming what the engine does not manage (the
                // gateway's implicit API, say) is left out, not fatal; an
                // export must resolve.
                Err(e) if o.export.is_none() => {
                    tracing::warn!(app, output = %name, error = %e, "apps: output left out");
                    continue;
                }
                Err(e) => return Err(format!("output {name}: {e}")),
            };
            if let Some(ex) = &o.export {
                let ex = ex.get("Name").unwrap_or(ex);
                let n = match env
                    .eval(ex)
                    .map_err(|e| format!("output {name} export: {e}"))?
                {
                    Some(Value::String(s)) => s,
                    other => {
                        return Err(format!(
                            "output {name}: export name {other:?} is not a string"
                        ))
                    }
                };
                if let Ok(Some((owner, old))) = self.inner.store.export(&n) {
                    if owner != app {
                        return Err(format!("export {n} is already exported by app {owner}"));
                    }
                    if old != v {
                        let users = self
                            .inner
                            .store
                            .importers(&n, app)
                            .map_err(|e| e.to_string())?;
                        if !users.is_empty() {
                            return Err(format!(
                                "export {n} is imported by app(s) {} and cannot change value",
                                users.join(", ")
                            ));
                        }
                    }
                }
                exports.insert(n, v.clone());
            }
            outputs.insert(name.clone(), v);
        }
        Ok((outputs, exports, imports.into_iter().collect()))
    }

    /// Undo every step of `change` in reverse; whether all could be undone.
    async fn rollback(&self, change: i64, app: &str) -> Result<bool, StoreError> {
        self.inner
            .store
            .set_change_state(change, "rolling_back", None)?;
        let cx = self.cx(app);
        let mut complete = true;
        let steps = self.inner.store.steps(change)?;
        for st in steps.iter().rev() {
            if !matches!(
                st.state.as_str(),
                "started" | "done" | "failed" | "undo_failed"
            ) {
                continue;
            }
            let Some(after) = &st.after else { continue };
            let r = match st.action.as_str() {
                "create" | "replace" => {
                    if st.state == "done" {
                        providers::delete(&cx, after).await
                    } else {
                        providers::delete_planned(&cx, after).await
                    }
                }
                "env" => match &st.before {
                    Some(before) => {
                        let vars = before.properties["Variables"]
                            .as_object()
                            .cloned()
                            .unwrap_or_default();
                        let role = before.properties["Role"].as_str();
                        match providers::set_function_configuration(
                            &cx,
                            &before.physical_id,
                            &vars,
                            role,
                        )
                        .await
                        {
                            // The function is gone (the CLI's undo removed it): nothing to restore.
                            Err(providers::ProviderError::Call(e)) if e.is_not_found() => Ok(()),
                            other => other,
                        }
                    }
                    None => Ok(()),
                },
                "update" => match &st.before {
                    Some(before) => {
                        let on = if st.state == "done" { after } else { before };
                        providers::update(&cx, on, &before.properties)
                            .await
                            .map(|_| ())
                    }
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            match r {
                Ok(()) => {
                    tracing::info!(app, change, resource = %st.logical_id, action = %st.action, "apps: step undone");
                    self.inner.store.finish_step(
                        change,
                        st.seq,
                        "undone",
                        app,
                        &st.logical_id,
                        None,
                        // An environment step's rows are not resources.
                        (st.action != "env").then_some(st.before.as_ref()),
                        None,
                    )?;
                }
                Err(e) => {
                    complete = false;
                    tracing::error!(app, change, resource = %st.logical_id, error = %e, "apps: cannot undo a step");
                    self.inner.store.finish_step(
                        change,
                        st.seq,
                        "undo_failed",
                        app,
                        &st.logical_id,
                        None,
                        None,
                        Some(&format!("undo: {e}")),
                    )?;
                }
            }
        }
        self.inner.store.set_change_state(
            change,
            if complete {
                "rolled_back"
            } else {
                "rollback_failed"
            },
            None,
        )?;
        Ok(complete)
    }

    /// Delete the removed resources and the replaced ones' old physical
    /// resources; the problems, as warnings.
    async fn cleanup(
        &self,
        change: i64,
        app: &str,
        deletes: &[ResourceRow],
    ) -> Result<Vec<String>, StoreError> {
        let cx = self.cx(app);
        let steps = self.inner.store.steps(change)?;
        let mut seq = steps.iter().map(|s| s.seq + 1).max().unwrap_or(0);
        let done = |action: &str, id: &str| {
            steps
                .iter()
                .any(|s| s.action == action && s.logical_id == id && s.state == "done")
        };
        let mut warnings = Vec::new();
        // Old physical resources of replacements.
        for st in steps
            .iter()
            .filter(|s| s.action == "replace" && s.state == "done")
        {
            let Some(old) = &st.before else { continue };
            if done("delete_old", &st.logical_id) {
                continue;
            }
            let rec = StepRecord {
                seq,
                logical_id: st.logical_id.clone(),
                action: "delete_old".into(),
                state: "started".into(),
                before: Some(old.clone()),
                after: None,
                error: None,
            };
            self.inner.store.start_step(change, &rec)?;
            let r = if old.update_replace_policy.as_deref() == Some("Retain") {
                Ok(())
            } else {
                providers::delete(&cx, old).await
            };
            match r {
                Ok(()) => self.inner.store.finish_step(
                    change,
                    seq,
                    "done",
                    app,
                    &st.logical_id,
                    None,
                    None,
                    None,
                )?,
                Err(e) => {
                    let m = format!(
                        "could not delete the replaced {} {}: {e}",
                        old.logical_id, old.physical_id
                    );
                    self.inner.store.finish_step(
                        change,
                        seq,
                        "failed",
                        app,
                        &st.logical_id,
                        None,
                        None,
                        Some(&m),
                    )?;
                    warnings.push(m);
                }
            }
            seq += 1;
        }
        for row in deletes {
            if done("delete", &row.logical_id) {
                continue;
            }
            let rec = StepRecord {
                seq,
                logical_id: row.logical_id.clone(),
                action: "delete".into(),
                state: "started".into(),
                before: Some(row.clone()),
                after: None,
                error: None,
            };
            self.inner.store.start_step(change, &rec)?;
            let r = if row.retained() {
                tracing::info!(app, resource = %row.logical_id, physical = %row.physical_id, "apps: retained");
                Ok(())
            } else {
                providers::delete(&cx, row).await
            };
            match r {
                Ok(()) => self.inner.store.finish_step(
                    change,
                    seq,
                    "done",
                    app,
                    &row.logical_id,
                    None,
                    Some(None),
                    None,
                )?,
                Err(e) => {
                    let m = format!(
                        "could not delete {} ({}): {e}",
                        row.logical_id, row.physical_id
                    );
                    self.inner.store.finish_step(
                        change,
                        seq,
                        "failed",
                        app,
                        &row.logical_id,
                        None,
                        None,
                        Some(&m),
                    )?;
                    warnings.push(m);
                }
            }
            seq += 1;
        }
        Ok(warnings)
    }

    /// Remove an app's resources in reverse dependency order (honouring
    /// `DeletionPolicy: Retain`) and forget the app.
    pub async fn remove(&self, app: &str) -> Result<DeployOutcome, EngineError> {
        let _g = self.inner.lock.lock().await;
        let rows = self.inner.store.resources(app)?;
        if self.inner.store.app(app)?.is_none() && rows.is_empty() {
            return Err(EngineError::NotFound(format!("no app named {app}")));
        }
        for (name, owner, _) in self.inner.store.exports()? {
            if owner == app {
                let users = self.inner.store.importers(&name, app)?;
                if !users.is_empty() {
                    return Err(EngineError::Refused(format!(
                        "app {app} exports {name}, which app(s) {} import: remove them first",
                        users.join(", ")
                    )));
                }
            }
        }
        let deletes = deletion_order(rows.into_values().collect());
        let plan = deletes
            .iter()
            .map(|c| PlannedChange {
                logical_id: c.logical_id.clone(),
                kind: c.kind.clone(),
                action: Action::Delete,
                physical_id: Some(c.physical_id.clone()),
                detail: c
                    .retained()
                    .then(|| "retained (DeletionPolicy: Retain)".to_string()),
            })
            .collect();
        let j = Journaled {
            template: None,
            deletes: deletes.clone(),
        };
        let change = self.inner.store.begin_change(
            app,
            "remove",
            "cleanup",
            &serde_json::to_value(&j).expect("json"),
        )?;
        let warnings = self.cleanup(change, app, &deletes).await?;
        self.finish(change, app, "remove", &warnings)?;
        if !warnings.is_empty() {
            return Err(EngineError::Failed {
                message: format!(
                    "app {app} was not removed completely: {}; run app rm again",
                    warnings.join("; ")
                ),
                rolled_back: false,
            });
        }
        Ok(DeployOutcome {
            app: app.to_string(),
            plan,
            applied: true,
            change_id: Some(change),
            outputs: BTreeMap::new(),
            warnings,
        })
    }

    /// An app's description: resources, outputs, exports, last changes.
    pub fn describe(&self, app: &str) -> Result<Value, EngineError> {
        let st = &self.inner.store;
        let rec = st.app(app)?;
        let rows = st.resources(app)?;
        let changes = st.changes(app)?;
        let removed = changes
            .last()
            .is_none_or(|c| c.kind == "remove" && c.state == "done");
        if rec.is_none() && rows.is_empty() && removed {
            return Err(EngineError::NotFound(format!("no app named {app}")));
        }
        let last = changes.last();
        let status = match last {
            Some(c) => status_of(&c.kind, &c.state),
            None => "UNKNOWN".into(),
        };
        let resources: Vec<Value> = rows
            .values()
            .map(|r| {
                json!({
                    "LogicalResourceId": r.logical_id,
                    "ResourceType": r.kind,
                    "PhysicalResourceId": r.physical_id,
                    "ResourceStatus": "COMPLETE",
                    "DeletionPolicy": r.deletion_policy,
                    "Attributes": r.attributes,
                })
            })
            .collect();
        let exports: Vec<Value> = st
            .exports()?
            .into_iter()
            .filter(|(_, a, _)| a == app)
            .map(|(n, _, v)| json!({"Name": n, "Value": v}))
            .collect();
        let recent: Vec<Value> = changes
            .iter()
            .rev()
            .take(5)
            .map(|c| {
                let steps = st.steps(c.id).unwrap_or_default();
                json!({
                    "Id": c.id, "Kind": c.kind, "State": c.state, "Error": c.error,
                    "Created": c.created_ms, "Updated": c.updated_ms,
                    "Steps": steps.iter().map(|s| json!({
                        "Seq": s.seq, "LogicalResourceId": s.logical_id,
                        "Action": s.action, "State": s.state, "Error": s.error,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({
            "Name": app,
            "Status": status,
            "Created": rec.as_ref().map(|r| r.created_ms),
            "Updated": rec.as_ref().map(|r| r.updated_ms),
            "Resources": resources,
            "Outputs": rec.as_ref().map(|r| r.outputs.clone()).unwrap_or(json!({})),
            "Exports": exports,
            // The gateway settings the CLI applied with this template (CORS,
            // authorizer names): what the app owns on the gateway.
            "Gateway": rec
                .as_ref()
                .and_then(|r| r.template.get("Gateway").cloned())
                .unwrap_or(Value::Null),
            "Changes": recent,
        }))
    }

    /// Every app, with its status and resource count.
    pub fn list(&self) -> Result<Value, EngineError> {
        let st = &self.inner.store;
        let mut out = Vec::new();
        for a in st.apps()? {
            let n = st.resources(&a.name)?.len();
            let status = st
                .changes(&a.name)?
                .last()
                .map(|c| status_of(&c.kind, &c.state))
                .unwrap_or_default();
            out.push(json!({
                "Name": a.name, "Status": status, "Resources": n,
                "Outputs": a.outputs, "Updated": a.updated_ms,
            }));
        }
        Ok(json!({ "Apps": out }))
    }
}

/// CloudFormation-like status words for a change's state.
fn status_of(kind: &str, state: &str) -> String {
    let verb = if kind == "remove" { "DELETE" } else { "UPDATE" };
    match state {
        "applying" | "cleanup" => format!("{verb}_IN_PROGRESS"),
        "rolling_back" => "ROLLBACK_IN_PROGRESS".into(),
        "rolled_back" => "ROLLBACK_COMPLETE".into(),
        "rollback_failed" => "ROLLBACK_FAILED".into(),
        "done" => format!("{verb}_COMPLETE"),
        other => other.to_uppercase(),
    }
}

fn live_of(r: &ResourceRow) -> Live {
    Live {
        ref_value: r.ref_value.clone(),
        attributes: r.attributes.clone(),
    }
}

fn same_policies(c: &ResourceRow, r: &Resource) -> bool {
    c.deletion_policy == r.deletion_policy && c.update_replace_policy == r.update_replace_policy
}

fn same_deps(c: &ResourceRow, d: &BTreeSet<String>) -> bool {
    c.depends_on.iter().cloned().collect::<BTreeSet<_>>() == *d
}

/// Put the physical name in `props` when the template does not give one: the
/// name `existing` was generated with, else (or when `fresh`) a new one.
fn complete_name(
    app: &str,
    logical: &str,
    kind: &str,
    mut props: Value,
    existing: Option<&ResourceRow>,
    fresh: bool,
) -> (Value, Option<String>) {
    // A resource without `Properties` has an empty set of them.
    if props.is_null() {
        props = Value::Object(Map::new());
    }
    let Some(rule) = naming::rule(kind) else {
        return (props, None);
    };
    if props.get(rule.property).is_some() {
        return (props, None);
    }
    let name = match existing.and_then(|e| e.generated_name.clone()) {
        Some(n) if !fresh => n,
        _ => {
            let fifo = kind == "AWS::SQS::Queue"
                && (props.get("FifoQueue") == Some(&Value::Bool(true))
                    || props.get("FifoQueue") == Some(&Value::String("true".into())));
            let suffix = naming::random_suffix();
            naming::generate(
                app,
                logical,
                &suffix,
                if fifo { ".fifo" } else { "" },
                &rule,
            )
        }
    };
    if let Value::Object(m) = &mut props {
        m.insert(rule.property.to_string(), name.clone().into());
    }
    (props, Some(name))
}

/// The top-level properties that differ, for the plan's detail column.
fn changed_keys(old: &Value, new: &Value) -> String {
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let changed: Vec<&str> = keys
        .into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| k.as_str())
        .collect();
    if changed.is_empty() {
        "policies".into()
    } else {
        changed.join(", ")
    }
}

/// Rows in deletion order: dependents before what they depend on.
fn deletion_order(rows: Vec<ResourceRow>) -> Vec<ResourceRow> {
    let ids: BTreeSet<String> = rows.iter().map(|r| r.logical_id.clone()).collect();
    let deps: BTreeMap<String, BTreeSet<String>> = rows
        .iter()
        .map(|r| {
            (
                r.logical_id.clone(),
                r.depends_on
                    .iter()
                    .filter(|d| ids.contains(*d))
                    .cloned()
                    .collect(),
            )
        })
        .collect();
    let order = graph::order(&deps).unwrap_or_else(|_| ids.iter().cloned().collect());
    let mut by_id: BTreeMap<String, ResourceRow> = rows
        .into_iter()
        .map(|r| (r.logical_id.clone(), r))
        .collect();
    order
        .iter()
        .rev()
        .filter_map(|id| by_id.remove(id))
        .collect()
}

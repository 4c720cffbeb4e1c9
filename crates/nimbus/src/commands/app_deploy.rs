//! `nimbus deploy` without NAME: deploy the app of a `serverless.yml` or SAM
//! `template.yaml` (read by nimbus-manifest) in one step.
//!
//! The app owns its resources: each function carries the tag `nimbus:app=<app>`,
//! each schedule the `app` field, and the routes of an app are the routes whose
//! function the app owns. A redeploy removes what the manifest no longer declares.
//!
//! All or nothing, as far as a client can make it so: the manifest is checked
//! whole and every code bundle is uploaded (content-addressed, invisible until a
//! function names it) before the first change. The changes are then applied one
//! by one while a journal records how to undo each; if one fails, the journal is
//! played backwards (previous function configuration and code, tags, async
//! settings, routes, schedules, aliases; deleted resources are recreated) and the
//! command exits 1. What the undo cannot bring back — a version published on the
//! way stays published, route settings the manifest does not manage (authorizers,
//! validation) are not restored on a route that was replaced — is named in
//! docs/compat/manifests.md. A crash of the CLI in the middle of a deploy can leave
//! a partial app; deploying again converges.

use crate::client::Client;
use crate::package;
use anyhow::{anyhow, bail, Context, Result};
use nimbus_manifest::{App, Function, APP_TAG};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(clap::Args, Default, Clone)]
pub struct AppArgs {
    /// The manifest to deploy (default: serverless.yml, serverless.yaml,
    /// template.yaml or template.yml in the current directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The Framework's stage (`${opt:stage}`, `${sls:stage}`); default provider.stage, else dev.
    #[arg(long)]
    pub stage: Option<String>,
    /// The region the manifest's `${opt:region}`/`AWS::Region` see.
    #[arg(long)]
    pub region: Option<String>,
    /// SAM template parameters: `Name=Value` (or `ParameterKey=Name,ParameterValue=Value`).
    #[arg(long = "parameter-overrides", num_args = 1.., value_name = "K=V")]
    pub parameter_overrides: Vec<String>,
    /// The SAM app's name (default: the template directory's name).
    #[arg(long)]
    pub stack_name: Option<String>,
    /// Deploy even when the manifest declares things Nimbus cannot honour yet
    /// (resources, events, keys reported as "not supported yet"): they are skipped
    /// with a warning. Without it such a manifest fails before any change.
    #[arg(long)]
    pub allow_unsupported: bool,
    /// Show what the deploy would change (per resource: create, update,
    /// replace, delete; functions, routes, schedules) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow replacing or deleting queues, buckets, tables and streams that hold
    /// data (without it such a deploy is refused before any change).
    #[arg(long)]
    pub allow_replace: bool,
}

impl AppArgs {
    pub fn any(&self) -> bool {
        self.file.is_some()
            || self.stage.is_some()
            || self.region.is_some()
            || !self.parameter_overrides.is_empty()
            || self.stack_name.is_some()
            || self.allow_unsupported
            || self.dry_run
            || self.allow_replace
    }
}

pub async fn run(client: &Client, a: AppArgs) -> Result<i32> {
    let manifest = match &a.file {
        Some(f) => f.clone(),
        None => {
            let cwd = std::env::current_dir()?;
            let found = nimbus_manifest::find_manifest(&cwd).ok_or_else(|| {
                anyhow!(
                    "no serverless.yml or template.yaml in {} (give NAME to deploy one function, or -f FILE)",
                    cwd.display()
                )
            })?;
            PathBuf::from(found.file_name().expect("a file name"))
        }
    };
    let opts = nimbus_manifest::Options {
        stage: a.stage,
        region: a.region,
        stack_name: a.stack_name,
        parameter_overrides: nimbus_manifest::parse_parameter_overrides(&a.parameter_overrides)
            .map_err(|e| anyhow!("--parameter-overrides {e}"))?,
        env: std::env::vars().collect(),
    };
    let mut loaded = nimbus_manifest::load(&manifest, &opts);
    // Resources of a type the server's app engine cannot apply are reported as
    // not supported yet (strict mode then refuses the deploy; with
    // --allow-unsupported they are left out of the template sent to it).
    loaded.report_template_unapplied(
        &nimbus_apps::providers::supported,
        &nimbus_apps::providers::property_support,
    );
    if a.allow_unsupported {
        if let Some(app) = &mut loaded.app {
            app.template
                .resources
                .retain(|_, r| nimbus_apps::providers::supported(&r.kind));
        }
    }
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    // Strict by default: an app that declares what Nimbus cannot run would deploy
    // "successfully" and then not work, so CI pipelines must see a failure.
    let unsupported = loaded
        .diagnostics
        .iter()
        .filter(|d| d.level == nimbus_manifest::Level::Unsupported)
        .count();
    if unsupported > 0 && !a.allow_unsupported && loaded.app.is_some() {
        eprintln!(
            "error: {} declares {unsupported} thing{} Nimbus cannot honour yet (above); nothing was deployed. \
             Pass --allow-unsupported to deploy the rest without {}.",
            manifest.display(),
            if unsupported == 1 { "" } else { "s" },
            if unsupported == 1 { "it" } else { "them" },
        );
        return Ok(1);
    }
    // Route keys as the gateway will parse them, before anything changes.
    if let Some(app) = &loaded.app {
        let bad: Vec<String> = app
            .routes
            .iter()
            .filter_map(|r| {
                nimbus_gateway::RouteKey::parse(&r.route_key)
                    .err()
                    .map(|e| format!("{}:{}: error: {e}", manifest.display(), r.line))
            })
            .collect();
        if !bad.is_empty() {
            for b in &bad {
                eprintln!("{b}");
            }
            eprintln!(
                "error: {} error(s) in {}; nothing was deployed",
                bad.len(),
                manifest.display()
            );
            loaded.app = None;
            return Ok(1);
        }
    }
    let Some(mut app) = loaded.app else {
        let n = loaded.errors().count();
        eprintln!(
            "error: {n} error{} in {}; nothing was deployed",
            if n == 1 { "" } else { "s" },
            manifest.display()
        );
        return Ok(1);
    };
    eprintln!(
        "Deploying app {} from {}{}: {} function(s), {} route(s), {} schedule(s)",
        app.name,
        manifest.display(),
        app.stage
            .as_ref()
            .map(|s| format!(" (stage {s})"))
            .unwrap_or_default(),
        app.functions.len(),
        app.routes.len(),
        app.schedules.len()
    );

    // The gateway settings, checked (and the JWT issuers' keys found) before
    // anything changes.
    let gw_cur = super::app_gateway::read(client, &app.name).await?;
    let gw = match super::app_gateway::plan(client, &app, &gw_cur).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(1);
        }
    };
    app.template.gateway = Some(gw.record.clone());

    if a.dry_run {
        return dry_run(client, &app, &gw).await;
    }

    // 1. Package and upload every bundle: nothing visible changes yet.
    let mut shas: BTreeMap<String, String> = BTreeMap::new();
    for f in &app.functions {
        if shas.contains_key(&bundle_key(f)) {
            continue;
        }
        eprint!("  packaging {} … ", f.code.display());
        let code = f.code.clone();
        let patterns = f.package_patterns.clone();
        let zip = tokio::task::spawn_blocking(move || {
            package::bundle_matching(&code, &|rel| patterns.includes(rel))
        })
        .await??;
        let size = zip.len() as u64;
        let sha = upload_zip(client, zip).await?;
        eprintln!("{} uploaded ({})", super::human_bytes(size), &sha[..12]);
        shas.insert(bundle_key(f), sha);
    }

    // 2. What is there now.
    let state = State::read(client, &app).await?;
    let plan = plan(&app, &state)?;

    // 3. Apply, undoing everything on the first failure: the app's layers first
    // (functions name their versions), then the functions, routes and schedules.
    let mut journal = Vec::new();
    let mut layers = super::layer_publish::Published::default();
    let outcome = match super::layer_publish::publish(client, &app, &mut layers).await {
        Ok(()) => {
            apply(
                client,
                &app,
                &state,
                &plan,
                &gw,
                &shas,
                &layers,
                &mut journal,
            )
            .await
        }
        Err(e) => Err(e),
    };
    // The app's other resources: applied by the server's app engine as one
    // journaled change (it rolls itself back if a step fails).
    let outcome = match outcome {
        Ok(()) => apply_resources(client, &app, a.allow_replace).await,
        Err(e) => Err(e),
    };
    // The engine set resource-dependent variables and the declared role on
    // $LATEST: an alias (AutoPublishAlias) moves to a version that has them.
    let outcome = match outcome {
        Ok(v) => repoint_aliases(client, &app, &mut journal).await.map(|_| v),
        Err(e) => Err(e),
    };
    if let Err(e) = &outcome {
        eprintln!("error: {e:#}");
        eprintln!("rolling back {} change(s) …", journal.len());
        let mut failed = 0;
        while let Some(u) = journal.pop() {
            if let Err(e) = undo(client, &u).await {
                failed += 1;
                eprintln!("  could not undo {}: {e:#}", u.describe());
            }
        }
        super::layer_publish::unpublish(client, &layers).await;
        if failed == 0 {
            eprintln!(
                "the previous version of app {} is restored; nothing was changed",
                app.name
            );
        } else {
            eprintln!("{failed} change(s) could not be undone; deploy again to converge");
        }
        return Ok(1);
    }
    print_summary(client, &app, &plan).await?;
    if let Ok(v) = &outcome {
        print_outputs(v);
    }
    Ok(0)
}

/// Functions with the same directory and patterns share one bundle.
fn bundle_key(f: &Function) -> String {
    format!("{}\0{:?}", f.code.display(), f.package_patterns)
}

/// Publish a version of each aliased function whose environment the engine
/// completed, and point its alias at it (journaled like the first publish).
async fn repoint_aliases(client: &Client, app: &App, journal: &mut Vec<Undo>) -> Result<()> {
    for f in &app.functions {
        let Some(alias) = &f.alias else { continue };
        // The engine set variables or a dead-letter queue on $LATEST.
        let has_env = app.template.functions.iter().any(|(logical, name)| {
            *name == f.name
                && (app.template.function_environment.contains_key(logical)
                    || app.template.resources.values().any(|r| {
                        r.kind == "Nimbus::Lambda::DeadLetterConfig"
                            && r.properties["FunctionName"]["Ref"] == logical.as_str()
                    })
                    || app.template.function_roles.contains_key(logical))
        });
        if !has_env {
            continue;
        }
        let apath = format!(
            "/2015-03-31/functions/{}/aliases/{}",
            path_seg(&f.name),
            path_seg(alias)
        );
        let prev_alias = get_optional(client, &apath).await?;
        let v: Value = client
            .send(
                client
                    .http
                    .post(client.url(&format!(
                        "/2015-03-31/functions/{}/versions",
                        path_seg(&f.name)
                    )))
                    .json(&json!({})),
            )
            .await
            .with_context(|| format!("publishing a version of {}", f.name))?
            .json()
            .await?;
        let version = v["Version"].as_str().unwrap_or("").to_string();
        journal.push(Undo::Alias(f.name.clone(), alias.clone(), prev_alias));
        client
            .send(
                client
                    .http
                    .put(client.url(&apath))
                    .json(&json!({ "FunctionVersion": version })),
            )
            .await
            .with_context(|| format!("pointing alias {}:{alias} at version {version}", f.name))?;
    }
    Ok(())
}

/// `PUT /_nimbus/apps/{app}`: the server plans and applies the template.
async fn put_app(client: &Client, app: &App, dry_run: bool, allow_replace: bool) -> Result<Value> {
    let body = json!({
        "template": app.template,
        "dry_run": dry_run,
        "allow_replace": allow_replace,
    });
    let resp = client
        .send(
            client
                .http
                .put(client.url(&format!("/_nimbus/apps/{}", path_seg(&app.name))))
                .json(&body),
        )
        .await?;
    resp.json().await.context("the server sent invalid JSON")
}

async fn apply_resources(client: &Client, app: &App, allow_replace: bool) -> Result<Value> {
    let v = put_app(client, app, false, allow_replace)
        .await
        .with_context(|| format!("applying the resources of app {}", app.name))?;
    let changed: Vec<&Value> = v["plan"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["action"] != "keep")
        .collect();
    for p in &changed {
        eprintln!(
            "  {:<8} {} ({})",
            p["action"].as_str().unwrap_or(""),
            p["logical_id"].as_str().unwrap_or(""),
            p["type"].as_str().unwrap_or("")
        );
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or(""));
    }
    Ok(v)
}

fn print_outputs(v: &Value) {
    let Some(outputs) = v["outputs"].as_object().filter(|o| !o.is_empty()) else {
        return;
    };
    println!("Outputs:");
    for (k, val) in outputs {
        let shown = match val {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("  {k}: {shown}");
    }
}

/// `--dry-run`: the table of what would change, and nothing applied.
async fn dry_run(client: &Client, app: &App, gw: &super::app_gateway::Plan) -> Result<i32> {
    let state = State::read(client, app).await?;
    let plan = plan(app, &state)?;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for (action, name) in super::layer_publish::plan(client, app).await? {
        rows.push((action.into(), name, "layer".into()));
    }
    for f in &app.functions {
        let action = if state.functions.contains_key(&f.name) {
            "update"
        } else {
            "create"
        };
        rows.push((action.into(), f.name.clone(), "function".into()));
    }
    for n in &plan.delete_functions {
        rows.push(("delete".into(), n.clone(), "function".into()));
    }
    for r in &app.routes {
        let exists = state
            .routes
            .iter()
            .any(|x| x["route_key"] == r.route_key.as_str());
        let action = if exists { "update" } else { "create" };
        rows.push((action.into(), r.route_key.clone(), "route".into()));
    }
    for r in &plan.delete_routes {
        rows.push((
            "delete".into(),
            r["route_key"].as_str().unwrap_or("").into(),
            "route".into(),
        ));
    }
    for (name, _, prev) in &gw.put {
        let action = if prev.is_some() { "update" } else { "create" };
        rows.push((action.into(), name.clone(), "authorizer".into()));
    }
    for a in &gw.delete {
        rows.push((
            "delete".into(),
            a["name"].as_str().unwrap_or("").into(),
            "authorizer".into(),
        ));
    }
    if gw.cors.is_some() {
        rows.push(("set".into(), "CORS".into(), "gateway".into()));
    } else if gw.clear_cors {
        rows.push(("delete".into(), "CORS".into(), "gateway".into()));
    }
    for sch in &app.schedules {
        let exists = state
            .schedules
            .iter()
            .flatten()
            .any(|x| x["name"] == sch.name.as_str());
        let action = if exists { "update" } else { "create" };
        rows.push((action.into(), sch.name.clone(), "schedule".into()));
    }
    for sch in &plan.delete_schedules {
        rows.push((
            "delete".into(),
            sch["name"].as_str().unwrap_or("").into(),
            "schedule".into(),
        ));
    }
    let v = put_app(client, app, true, false).await?;
    for p in v["plan"].as_array().into_iter().flatten() {
        let action = p["action"].as_str().unwrap_or("");
        let mut what = p["logical_id"].as_str().unwrap_or("").to_string();
        if let Some(d) = p["detail"].as_str() {
            what = format!("{what} [{d}]");
        }
        rows.push((action.into(), what, p["type"].as_str().unwrap_or("").into()));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(8).max(8);
    println!("{:<w0$}  {:<w1$}  TYPE", "ACTION", "RESOURCE");
    for (a, n, t) in &rows {
        println!("{a:<w0$}  {n:<w1$}  {t}");
    }
    eprintln!("dry run: nothing was changed");
    Ok(0)
}

/// The server's state that the deploy touches.
struct State {
    /// Every function, by name (the `function` object of `GET /_nimbus/functions`).
    functions: BTreeMap<String, Value>,
    routes: Vec<Value>,
    /// `None`: the server has no scheduler.
    schedules: Option<Vec<Value>>,
}

impl State {
    async fn read(client: &Client, app: &App) -> Result<State> {
        let fns = client.get_json("/_nimbus/functions").await?;
        let functions = fns["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|f| {
                let f = f["function"].clone();
                Some((f["name"].as_str()?.to_string(), f))
            })
            .collect();
        let routes = client.get_json("/_nimbus/routes").await?;
        let schedules = match client
            .send(client.http.get(client.url("/_nimbus/schedules")))
            .await
        {
            Ok(r) => Some(
                r.json::<Value>().await.context("schedules")?["schedules"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            ),
            Err(e) if !app.schedules.is_empty() => {
                bail!("app {} declares schedules, but this server cannot store them (GET /_nimbus/schedules: {e:#}); nothing was changed", app.name)
            }
            Err(_) => None,
        };
        Ok(State {
            functions,
            routes: routes["routes"].as_array().cloned().unwrap_or_default(),
            schedules,
        })
    }

    fn owner(&self, function: &str) -> Option<&str> {
        self.functions.get(function)?["tags"][APP_TAG].as_str()
    }
}

struct Plan {
    /// Functions that exist but belong to no app: taken over (tagged).
    adopted: BTreeSet<String>,
    delete_functions: Vec<String>,
    delete_routes: Vec<Value>,
    delete_schedules: Vec<Value>,
}

fn plan(app: &App, st: &State) -> Result<Plan> {
    let declared: BTreeSet<&str> = app.functions.iter().map(|f| f.name.as_str()).collect();
    let mut problems = Vec::new();
    let mut adopted = BTreeSet::new();
    for f in &app.functions {
        if !st.functions.contains_key(&f.name) {
            continue;
        }
        match st.owner(&f.name) {
            Some(o) if o == app.name => {}
            Some(o) => problems.push(format!("function {} belongs to app {o}", f.name)),
            None => {
                adopted.insert(f.name.clone());
            }
        }
    }
    let owned = |name: &str| st.owner(name) == Some(app.name.as_str()) || declared.contains(name);
    for r in &app.routes {
        if let Some(cur) = st
            .routes
            .iter()
            .find(|x| x["route_key"] == r.route_key.as_str())
        {
            let target = cur["function"].as_str().unwrap_or("");
            if let Some(o) = st.owner(target).filter(|o| *o != app.name) {
                problems.push(format!(
                    "route {} belongs to app {o} (it runs {target})",
                    r.route_key
                ));
            } else if !owned(target) {
                eprintln!(
                    "note: route {} now runs {} instead of {target}",
                    r.route_key, r.function
                );
            }
        }
    }
    if let Some(schedules) = &st.schedules {
        for s in &app.schedules {
            if let Some(cur) = schedules.iter().find(|x| x["name"] == s.name.as_str()) {
                match cur["app"].as_str() {
                    Some(o) if o != app.name && !o.is_empty() => {
                        problems.push(format!("schedule {} belongs to app {o}", s.name))
                    }
                    _ => {}
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}; nothing was changed", problems.join("; "));
    }
    for name in &adopted {
        eprintln!(
            "note: function {name} exists outside any app; app {} takes it over",
            app.name
        );
    }
    let delete_functions: Vec<String> = st
        .functions
        .keys()
        .filter(|n| st.owner(n) == Some(app.name.as_str()) && !declared.contains(n.as_str()))
        .cloned()
        .collect();
    let declared_keys: BTreeSet<&str> = app.routes.iter().map(|r| r.route_key.as_str()).collect();
    let delete_routes = st
        .routes
        .iter()
        .filter(|r| {
            let target = r["function"].as_str().unwrap_or("");
            st.owner(target) == Some(app.name.as_str())
                && !declared_keys.contains(r["route_key"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    let declared_schedules: BTreeSet<&str> =
        app.schedules.iter().map(|s| s.name.as_str()).collect();
    let delete_schedules = st
        .schedules
        .iter()
        .flatten()
        .filter(|s| {
            s["app"].as_str() == Some(app.name.as_str())
                && !declared_schedules.contains(s["name"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    Ok(Plan {
        adopted,
        delete_functions,
        delete_routes,
        delete_schedules,
    })
}

/// One applied change and what restores the state before it.
enum Undo {
    DeleteFunction(String),
    /// Redeploy this configuration (with its code and tags).
    RestoreFunction(Value),
    /// `(function, previous config or none)`.
    EventInvoke(String, Option<Value>),
    /// `(function, alias, previous alias or none)`.
    Alias(String, String, Option<Value>),
    /// `(route key, previous route or none)`.
    Route(String, Option<Value>),
    /// `(schedule name, previous schedule or none)`.
    Schedule(String, Option<Value>),
    /// `(function, qualifier, previous URL config or none)`.
    Url(String, Option<String>, Option<Value>),
    /// `(authorizer, previous view or none)`.
    Authorizer(String, Option<Value>),
    /// The previous CORS configuration (`null`: off).
    Cors(Value),
}

impl Undo {
    fn describe(&self) -> String {
        match self {
            Undo::DeleteFunction(n) => format!("the creation of function {n}"),
            Undo::RestoreFunction(f) => format!("the update of function {}", f["name"]),
            Undo::EventInvoke(n, _) => format!("the async settings of {n}"),
            Undo::Alias(n, a, _) => format!("alias {n}:{a}"),
            Undo::Route(k, _) => format!("route {k}"),
            Undo::Schedule(n, _) => format!("schedule {n}"),
            Undo::Url(n, _, _) => format!("the function URL of {n}"),
            Undo::Authorizer(n, _) => format!("authorizer {n}"),
            Undo::Cors(_) => "the gateway's CORS configuration".into(),
        }
    }
}

pub(crate) fn function_body(f: &Function, sha: &str) -> Value {
    let mut body = json!({
        "runtime": f.runtime,
        "handler": f.handler,
        "code_sha256": sha,
        "environment": f.environment,
        "provisioned_concurrency": f.provisioned_concurrency,
        "description": f.description,
    });
    if let Some(m) = f.memory_mb {
        body["memory_mb"] = m.into();
    }
    if let Some(t) = f.timeout_s {
        body["timeout_s"] = t.into();
    }
    if let Some(r) = f.reserved_concurrency {
        body["reserved_concurrency"] = r.into();
    }
    body
}

/// The deploy body that recreates a function as `GET /_nimbus/functions` showed it.
fn body_of(cfg: &Value) -> Value {
    json!({
        "runtime": cfg["runtime"],
        "handler": cfg["handler"],
        "code_sha256": cfg["code_sha256"],
        "environment": cfg["environment"],
        "provisioned_concurrency": cfg["provisioned_concurrency"],
        "description": cfg["description"],
        "memory_mb": cfg["memory_mb"],
        "timeout_s": cfg["timeout_s"],
        "reserved_concurrency": cfg["reserved_concurrency"],
        "layers": cfg["layers"]
            .as_array()
            .map(|ls| ls.iter().map(|l| l["arn"].clone()).collect::<Vec<_>>())
            .unwrap_or_default(),
    })
}

pub(crate) fn path_seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) async fn put_function(client: &Client, name: &str, body: &Value) -> Result<()> {
    client
        .send(
            client
                .http
                .put(client.url(&format!("/_nimbus/functions/{}", path_seg(name))))
                .json(body),
        )
        .await?;
    Ok(())
}

async fn tag(client: &Client, name: &str, tags: &Value) -> Result<()> {
    client
        .send(
            client
                .http
                .post(client.url(&format!("/2017-03-31/tags/{}", path_seg(name))))
                .json(&json!({ "Tags": tags })),
        )
        .await?;
    Ok(())
}

async fn untag(client: &Client, name: &str, key: &str) -> Result<()> {
    client
        .send(
            client
                .http
                .delete(client.url(&format!("/2017-03-31/tags/{}", path_seg(name))))
                .query(&[("tagKeys", key)]),
        )
        .await?;
    Ok(())
}

/// GET that maps 404 to `None`.
pub(crate) async fn get_optional(client: &Client, path: &str) -> Result<Option<Value>> {
    match client.send(client.http.get(client.url(path))).await {
        Ok(r) => Ok(Some(r.json().await?)),
        Err(e)
            if format!("{e:#}").contains("ResourceNotFoundException")
                || format!("{e:#}").contains("(HTTP 404") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn eic_path(name: &str) -> String {
    format!(
        "/2019-09-25/functions/{}/event-invoke-config",
        path_seg(name)
    )
}

async fn put_eic(client: &Client, name: &str, body: &Value) -> Result<()> {
    client
        .send(client.http.put(client.url(&eic_path(name))).json(body))
        .await?;
    Ok(())
}

async fn delete(client: &Client, path: &str, query: &[(&str, &str)]) -> Result<()> {
    client
        .send(client.http.delete(client.url(path)).query(query))
        .await?;
    Ok(())
}

fn route_body(r: &Value) -> Value {
    let mut b = json!({
        "route_key": r["route_key"],
        "function": r["function"],
        "payload_format": r["payload_format"],
        "timeout_ms": r["timeout_ms"],
    });
    if let Some(q) = r["qualifier"].as_str() {
        b["qualifier"] = q.into();
    }
    if let Some(t) = r["api_type"].as_str() {
        b["api_type"] = t.into();
    }
    if let Some(t) = r["binary_media_types"].as_array() {
        b["binary_media_types"] = t.clone().into();
    }
    // Access control the route had (authorizer, scopes, API key, throttle).
    if let Some(a) = r["authorizer"].as_str() {
        b["authorizer"] = a.into();
    }
    for k in ["authorization_scopes", "api_key_required", "throttle"] {
        if !r[k].is_null() {
            b[k] = r[k].clone();
        }
    }
    b
}

fn schedule_body(s: &Value) -> Value {
    let mut b = json!({});
    for k in [
        "expression",
        "function",
        "qualifier",
        "input",
        "timezone",
        "enabled",
        "app",
    ] {
        if !s[k].is_null() {
            b[k] = s[k].clone();
        }
    }
    b
}

async fn put_route(client: &Client, body: &Value) -> Result<()> {
    client
        .send(client.http.put(client.url("/_nimbus/routes")).json(body))
        .await?;
    Ok(())
}

async fn put_schedule(client: &Client, name: &str, body: &Value) -> Result<()> {
    client
        .send(
            client
                .http
                .put(client.url(&format!("/_nimbus/schedules/{}", path_seg(name))))
                .json(body),
        )
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    client: &Client,
    app: &App,
    st: &State,
    plan: &Plan,
    gw: &super::app_gateway::Plan,
    shas: &BTreeMap<String, String>,
    layers: &super::layer_publish::Published,
    journal: &mut Vec<Undo>,
) -> Result<()> {
    for f in &app.functions {
        let prev = st.functions.get(&f.name);
        let mut body = function_body(f, &shas[&bundle_key(f)]);
        // The manifest is the truth for layers: none declared removes them.
        body["layers"] = json!(layers.resolve(&f.layers)?);
        put_function(client, &f.name, &body)
            .await
            .with_context(|| format!("deploying function {}", f.name))?;
        journal.push(match prev {
            Some(p) => Undo::RestoreFunction(p.clone()),
            None => Undo::DeleteFunction(f.name.clone()),
        });
        if prev.is_none() || plan.adopted.contains(&f.name) {
            tag(client, &f.name, &json!({ APP_TAG: app.name }))
                .await
                .with_context(|| format!("tagging function {}", f.name))?;
        }
        if let Some(alias) = &f.alias {
            let apath = format!(
                "/2015-03-31/functions/{}/aliases/{}",
                path_seg(&f.name),
                path_seg(alias)
            );
            let prev_alias = match prev {
                Some(_) => get_optional(client, &apath).await?,
                None => None,
            };
            let v: Value = client
                .send(
                    client
                        .http
                        .post(client.url(&format!(
                            "/2015-03-31/functions/{}/versions",
                            path_seg(&f.name)
                        )))
                        .json(&json!({})),
                )
                .await
                .with_context(|| format!("publishing a version of {}", f.name))?
                .json()
                .await?;
            let version = v["Version"].as_str().unwrap_or("").to_string();
            journal.push(Undo::Alias(
                f.name.clone(),
                alias.clone(),
                prev_alias.clone(),
            ));
            let req = if prev_alias.is_some() {
                client
                    .http
                    .put(client.url(&apath))
                    .json(&json!({ "FunctionVersion": version }))
            } else {
                client
                    .http
                    .post(client.url(&format!(
                        "/2015-03-31/functions/{}/aliases",
                        path_seg(&f.name)
                    )))
                    .json(&json!({ "Name": alias, "FunctionVersion": version }))
            };
            client.send(req).await.with_context(|| {
                format!("pointing alias {}:{alias} at version {version}", f.name)
            })?;
        }
    }
    // Authorizers (a Lambda one needs its function) and CORS before the routes
    // that use them.
    for (name, body, prev) in &gw.put {
        super::app_gateway::put_authorizer(client, name, body).await?;
        journal.push(Undo::Authorizer(name.clone(), prev.clone()));
    }
    if let Some(c) = &gw.cors {
        let prev = super::app_gateway::Current::cors_now(client).await?;
        if prev != *c {
            super::app_gateway::set_cors(client, c).await?;
            journal.push(Undo::Cors(prev));
        }
    }
    for r in &app.routes {
        let prev = st
            .routes
            .iter()
            .find(|x| x["route_key"] == r.route_key.as_str())
            .cloned();
        let mut body = json!({
            "route_key": r.route_key,
            "function": r.function,
            "payload_format": r.payload_format,
            "api_type": if r.rest { "REST" } else { "HTTP" },
        });
        if !r.binary_media_types.is_empty() {
            body["binary_media_types"] = json!(r.binary_media_types);
        }
        if let Some(q) = &r.qualifier {
            body["qualifier"] = q.as_str().into();
        }
        if let Some(t) = r.timeout_ms {
            body["timeout_ms"] = t.into();
        }
        if let Some(a) = &r.authorizer {
            body["authorizer"] = nimbus_manifest::gateway::server_name(&app.name, a).into();
            body["authorization_scopes"] = json!(r.authorization_scopes);
        }
        put_route(client, &body)
            .await
            .with_context(|| format!("adding route {}", r.route_key))?;
        journal.push(Undo::Route(r.route_key.clone(), prev));
    }
    for s in &app.schedules {
        let prev = st
            .schedules
            .iter()
            .flatten()
            .find(|x| x["name"] == s.name.as_str())
            .cloned();
        let mut body = json!({
            "expression": s.expression,
            "function": s.function,
            "enabled": s.enabled,
            "app": app.name,
        });
        if let Some(q) = &s.qualifier {
            body["qualifier"] = q.as_str().into();
        }
        if let Some(i) = &s.input {
            body["input"] = i.clone();
        }
        if let Some(tz) = &s.timezone {
            body["timezone"] = tz.as_str().into();
        }
        put_schedule(client, &s.name, &body)
            .await
            .with_context(|| format!("adding schedule {} ({})", s.name, s.expression))?;
        journal.push(Undo::Schedule(s.name.clone(), prev));
    }
    // Async settings last among the updates: a destination the server refuses
    // (a service it does not have) is then undone with everything else.
    for f in &app.functions {
        let prev = st.functions.get(&f.name);
        // Async settings: the manifest's, or none.
        let prev_eic = match prev {
            Some(_) => get_optional(client, &eic_path(&f.name)).await?,
            None => None,
        };
        match &f.event_invoke {
            Some(e) => {
                let target = |d: &Option<String>| match d {
                    Some(arn) => json!({ "Destination": arn }),
                    None => json!({}),
                };
                let mut body = json!({
                    "DestinationConfig": { "OnSuccess": target(&e.on_success), "OnFailure": target(&e.on_failure) },
                });
                if let Some(r) = e.maximum_retry_attempts {
                    body["MaximumRetryAttempts"] = r.into();
                }
                if let Some(a) = e.maximum_event_age_s {
                    body["MaximumEventAgeInSeconds"] = a.into();
                }
                put_eic(client, &f.name, &body)
                    .await
                    .with_context(|| format!("setting async invocation of {}", f.name))?;
                journal.push(Undo::EventInvoke(f.name.clone(), prev_eic));
            }
            // Settings naming the app's resources are the engine's to apply.
            None if prev_eic.is_some() && !f.event_invoke_in_template => {
                delete(client, &eic_path(&f.name), &[]).await?;
                journal.push(Undo::EventInvoke(f.name.clone(), prev_eic));
            }
            None => {}
        }
    }
    // Function URLs: the manifest's, or none (for functions the app had before).
    for f in &app.functions {
        let q = f.alias.clone();
        let prev = match st.functions.get(&f.name) {
            Some(_) => get_url(client, &f.name, &q).await?,
            None => None,
        };
        match &f.url {
            Some(u) => {
                let cors = u.cors.clone().unwrap_or(Value::Null);
                put_url(
                    client,
                    &f.name,
                    &q,
                    &url_body(&json!(u.auth_type), &cors),
                    prev.is_some(),
                )
                .await
                .with_context(|| format!("setting the function URL of {}", f.name))?;
                journal.push(Undo::Url(f.name.clone(), q, prev));
            }
            None if prev.is_some() => {
                client
                    .send(
                        client
                            .http
                            .delete(client.url(&url_path(&f.name)))
                            .query(&url_query(&q)),
                    )
                    .await
                    .with_context(|| format!("removing the function URL of {}", f.name))?;
                journal.push(Undo::Url(f.name.clone(), q, prev));
            }
            None => {}
        }
    }
    // Removals last, so a failure above never leaves the app without something it had.
    for s in &plan.delete_schedules {
        let name = s["name"].as_str().unwrap_or("");
        delete(
            client,
            &format!("/_nimbus/schedules/{}", path_seg(name)),
            &[],
        )
        .await
        .with_context(|| format!("removing schedule {name}"))?;
        journal.push(Undo::Schedule(name.to_string(), Some(s.clone())));
    }
    for r in &plan.delete_routes {
        let key = r["route_key"].as_str().unwrap_or("");
        delete(client, "/_nimbus/routes", &[("route_key", key)])
            .await
            .with_context(|| format!("removing route {key}"))?;
        journal.push(Undo::Route(key.to_string(), Some(r.clone())));
    }
    // Authorizers no route of the app uses any more, and CORS the app dropped.
    for a in &gw.delete {
        let name = a["name"].as_str().unwrap_or("");
        super::app_gateway::delete_authorizer(client, name).await?;
        journal.push(Undo::Authorizer(name.to_string(), Some(a.clone())));
    }
    if gw.clear_cors {
        let prev = super::app_gateway::Current::cors_now(client).await?;
        super::app_gateway::set_cors(client, &Value::Null).await?;
        journal.push(Undo::Cors(prev));
    }
    for name in &plan.delete_functions {
        let prev_eic = get_optional(client, &eic_path(name)).await?;
        delete(
            client,
            &format!("/_nimbus/functions/{}", path_seg(name)),
            &[],
        )
        .await
        .with_context(|| format!("removing function {name}"))?;
        journal.push(Undo::RestoreFunction(st.functions[name].clone()));
        if prev_eic.is_some() {
            journal.push(Undo::EventInvoke(name.clone(), prev_eic));
        }
    }
    Ok(())
}

async fn undo(client: &Client, u: &Undo) -> Result<()> {
    match u {
        Undo::DeleteFunction(name) => {
            delete(
                client,
                &format!("/_nimbus/functions/{}", path_seg(name)),
                &[],
            )
            .await
        }
        Undo::RestoreFunction(cfg) => {
            let name = cfg["name"].as_str().unwrap_or("");
            put_function(client, name, &body_of(cfg)).await?;
            // A redeploy keeps tags; a recreated function needs them back, and a
            // taken-over one loses the app tag.
            let tags = cfg["tags"].clone();
            if tags.as_object().is_some_and(|t| !t.is_empty()) {
                tag(client, name, &tags).await?;
            }
            if tags[APP_TAG].is_null() {
                untag(client, name, APP_TAG).await?;
            }
            Ok(())
        }
        Undo::EventInvoke(name, prev) => match prev {
            Some(p) => {
                let mut body = json!({ "DestinationConfig": p["DestinationConfig"] });
                for k in ["MaximumRetryAttempts", "MaximumEventAgeInSeconds"] {
                    if !p[k].is_null() {
                        body[k] = p[k].clone();
                    }
                }
                put_eic(client, name, &body).await
            }
            None => delete(client, &eic_path(name), &[])
                .await
                .or_else(ignore_missing),
        },
        Undo::Alias(name, alias, prev) => {
            let apath = format!(
                "/2015-03-31/functions/{}/aliases/{}",
                path_seg(name),
                path_seg(alias)
            );
            match prev {
                Some(p) => {
                    client
                        .send(
                            client
                                .http
                                .put(client.url(&apath))
                                .json(&json!({ "FunctionVersion": p["FunctionVersion"] })),
                        )
                        .await?;
                    Ok(())
                }
                None => delete(client, &apath, &[]).await.or_else(ignore_missing),
            }
        }
        Undo::Route(key, prev) => match prev {
            Some(p) => put_route(client, &route_body(p)).await,
            None => delete(client, "/_nimbus/routes", &[("route_key", key)])
                .await
                .or_else(ignore_missing),
        },
        Undo::Url(name, q, prev) => match prev {
            Some(p) => put_url(client, name, q, &url_body(&p["AuthType"], &p["Cors"]), true).await,
            None => client
                .send(
                    client
                        .http
                        .delete(client.url(&url_path(name)))
                        .query(&url_query(q)),
                )
                .await
                .map(|_| ())
                .or_else(ignore_missing),
        },
        Undo::Authorizer(name, prev) => match prev {
            Some(p) => {
                super::app_gateway::put_authorizer(
                    client,
                    name,
                    &super::app_gateway::restore_body(p)?,
                )
                .await
            }
            None => super::app_gateway::delete_authorizer(client, name).await,
        },
        Undo::Cors(prev) => super::app_gateway::set_cors(client, prev).await,
        Undo::Schedule(name, prev) => match prev {
            Some(p) => put_schedule(client, name, &schedule_body(p)).await,
            None => delete(
                client,
                &format!("/_nimbus/schedules/{}", path_seg(name)),
                &[],
            )
            .await
            .or_else(ignore_missing),
        },
    }
}

fn url_path(name: &str) -> String {
    format!("/2021-10-31/functions/{}/url", path_seg(name))
}

fn url_query(q: &Option<String>) -> Vec<(&'static str, String)> {
    q.iter().map(|q| ("Qualifier", q.clone())).collect()
}

/// Create (`prev` none) or update a function URL to `{AuthType, Cors}`.
async fn put_url(
    client: &Client,
    name: &str,
    q: &Option<String>,
    body: &Value,
    exists: bool,
) -> Result<()> {
    let req = if exists {
        client.http.put(client.url(&url_path(name)))
    } else {
        client.http.post(client.url(&url_path(name)))
    };
    client.send(req.query(&url_query(q)).json(body)).await?;
    Ok(())
}

async fn get_url(client: &Client, name: &str, q: &Option<String>) -> Result<Option<Value>> {
    match client
        .send(
            client
                .http
                .get(client.url(&url_path(name)))
                .query(&url_query(q)),
        )
        .await
    {
        Ok(r) => Ok(Some(r.json().await?)),
        Err(e) => ignore_missing(e).map(|_| None),
    }
}

fn url_body(auth: &Value, cors: &Value) -> Value {
    let mut b = json!({ "AuthType": auth });
    if !cors.is_null() {
        b["Cors"] = cors.clone();
    }
    b
}

fn ignore_missing(e: anyhow::Error) -> Result<()> {
    let s = format!("{e:#}");
    if s.contains("ResourceNotFoundException") || s.contains("(HTTP 404") {
        Ok(())
    } else {
        Err(e)
    }
}

fn fmt_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "?".into())
}

async fn print_summary(client: &Client, app: &App, plan: &Plan) -> Result<()> {
    println!("App {} deployed", app.name);
    println!();
    println!(
        "{:<40} {:<12} {:>7} {:>8}  URL",
        "FUNCTION", "RUNTIME", "MEMORY", "TIMEOUT"
    );
    let fns = client.get_json("/_nimbus/functions").await?;
    for f in &app.functions {
        let cfg = fns["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| &x["function"])
            .find(|x| x["name"] == f.name.as_str());
        let (mem, to) = cfg
            .map(|c| (c["memory_mb"].to_string(), format!("{}s", c["timeout_s"])))
            .unwrap_or_default();
        let name = match &f.alias {
            Some(a) => format!("{}:{a}", f.name),
            None => f.name.clone(),
        };
        let url = match &f.url {
            Some(_) => get_url(client, &f.name, &f.alias)
                .await?
                .and_then(|u| u["FunctionUrl"].as_str().map(str::to_string))
                .unwrap_or_default(),
            None => String::new(),
        };
        println!("{:<40} {:<12} {:>7} {:>8}  {url}", name, f.runtime, mem, to);
    }
    if !app.routes.is_empty() {
        let routes = client.get_json("/_nimbus/routes").await?;
        let base = routes["gateway_url"].as_str().unwrap_or("").to_string();
        println!();
        println!("{:<32} {:<40} URL", "ROUTE", "FUNCTION");
        for r in &app.routes {
            let url = routes["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["route_key"] == r.route_key.as_str())
                .and_then(|x| x["url"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{base}/* (every unmatched request)"));
            println!("{:<32} {:<40} {url}", r.route_key, r.function);
        }
    }
    if !app.schedules.is_empty() {
        let s = client.get_json("/_nimbus/schedules").await?;
        println!();
        println!(
            "{:<40} {:<26} {:<36} NEXT FIRE",
            "SCHEDULE", "EXPRESSION", "FUNCTION"
        );
        for sc in &app.schedules {
            let cur = s["schedules"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == sc.name.as_str());
            let next = match cur.and_then(|c| c["next_fire_ms"].as_i64()) {
                _ if !sc.enabled => "disabled".to_string(),
                Some(ms) => fmt_time(ms),
                None => "-".to_string(),
            };
            println!(
                "{:<40} {:<26} {:<36} {next}",
                sc.name, sc.expression, sc.function
            );
        }
    }
    let removed: Vec<String> = plan
        .delete_functions
        .iter()
        .map(|f| format!("function {f}"))
        .chain(
            plan.delete_routes
                .iter()
                .map(|r| format!("route {}", r["route_key"].as_str().unwrap_or(""))),
        )
        .chain(
            plan.delete_schedules
                .iter()
                .map(|s| format!("schedule {}", s["name"].as_str().unwrap_or(""))),
        )
        .collect();
    if !removed.is_empty() {
        println!();
        println!("Removed (no longer declared): {}", removed.join(", "));
    }
    Ok(())
}

/// Upload a code zip; the server answers with its sha256.
pub(crate) async fn upload_zip(client: &Client, zip: Vec<u8>) -> Result<String> {
    let up: Value = client
        .send(
            client
                .http
                .post(client.url("/_nimbus/code"))
                .header("content-type", "application/zip")
                .body(zip),
        )
        .await?
        .json()
        .await
        .context("invalid upload answer")?;
    Ok(up["sha256"]
        .as_str()
        .context("upload answer lacks sha256")?
        .to_string())
}

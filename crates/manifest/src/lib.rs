//! Reads the manifests serverless apps already have — the Serverless Framework's
//! `serverless.yml` (v3/v4 syntax) and AWS SAM's `template.yaml` — into one
//! normalised [`App`]: the functions, gateway routes and schedules that `nimbus
//! deploy` creates, updates and prunes as one unit.
//!
//! Parsing is strict in the useful way (STYLE.md habit 5): every message names
//! `file:line`. An unknown key is a warning, a key or event Nimbus recognises but
//! does not run yet is reported as "not supported yet" and the rest of the app
//! still loads, a wrong type or a missing handler file is an error and no app is
//! returned.
//!
//! * [`yaml`]: YAML to a tree of nodes that keep their line and local tag;
//! * [`vars`]: the Framework's `${…}` variables (`self:`, `opt:`, `sls:`, `env:`,
//!   `file(…)`, `param:`);
//! * [`serverless`] and [`sam`]: one interpreter per format; [`sam`] also evaluates
//!   the intrinsic functions (`!Ref`, `!Sub`, `!GetAtt`, `!If`, `!Equals`, …);
//! * [`template`]: the CloudFormation-shaped resources both formats compile to,
//!   applied by the server's app engine;
//! * [`schedule`]: the syntax check of `rate(…)`/`cron(…)` expressions done before
//!   anything is deployed (the scheduler does the full check).
//!
//! The crate does no I/O beyond reading the manifest, files it names and checking
//! that handler files exist; applying the app is the CLI's job.

pub mod cfn;
pub mod gateway;
pub mod patterns;
pub mod sam;
pub mod schedule;
pub mod serverless;
pub mod template;
pub mod vars;
pub mod yaml;

mod fields;
mod sam_events;
mod sls_events;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The function tag that records which app owns a function.
pub const APP_TAG: &str = "nimbus:app";

/// The manifest file names looked for in an app directory, in order.
pub const MANIFEST_NAMES: &[&str] = &[
    "serverless.yml",
    "serverless.yaml",
    "template.yaml",
    "template.yml",
];

/// The manifest in `dir`, if there is one.
pub fn find_manifest(dir: &Path) -> Option<PathBuf> {
    MANIFEST_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Serverless,
    Sam,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Serverless => "serverless.yml",
            Format::Sam => "SAM template",
        })
    }
}

/// What the caller passes in from the command line and the environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--stage`.
    pub stage: Option<String>,
    /// `--region`; the Framework's `${opt:region}`.
    pub region: Option<String>,
    /// SAM `--stack-name` (default: the template directory's name).
    pub stack_name: Option<String>,
    /// `--parameter-overrides K=V`.
    pub parameter_overrides: BTreeMap<String, String>,
    /// The environment `${env:…}` reads.
    pub env: BTreeMap<String, String>,
}

/// One app, normalised from either format.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The owner name recorded on every resource: `<service>-<stage>` or the stack name.
    pub name: String,
    pub format: Format,
    pub manifest: PathBuf,
    /// The Framework's stage (`None` for SAM).
    pub stage: Option<String>,
    pub functions: Vec<Function>,
    pub routes: Vec<Route>,
    pub schedules: Vec<Schedule>,
    /// The layers the app publishes from its own directories.
    pub layers: Vec<Layer>,
    /// Every other resource, and those the functions' events generate.
    pub template: template::Template,
    /// The HTTP API's CORS configuration and authorizers.
    pub gateway: gateway::Gateway,
}

/// A Lambda layer the app publishes from a directory: sls `layers.<key>`, SAM
/// `AWS::Serverless::LayerVersion`. `nimbus deploy` publishes a new version when
/// the directory's zip or the settings changed, and points the functions at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The logical id functions reference (`{Ref: <Key>LambdaLayer}` in a
    /// serverless.yml, the resource's logical id in SAM).
    pub logical_id: String,
    /// The deployed layer name.
    pub name: String,
    /// The directory packaged as the layer's content (its top-level `python/`,
    /// `nodejs/`, `bin/`, `lib/` land under `/opt`).
    pub content: PathBuf,
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license_info: Option<String>,
    pub line: usize,
}

/// Lambda's rule for layer names (`LayerName`).
pub(crate) fn valid_layer_name(name: &str) -> bool {
    (1..=140).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `X` of `!Ref X` or `{Ref: X}`.
pub(crate) fn ref_target(n: &yaml::Node) -> Option<String> {
    if n.tag.as_deref() == Some("Ref") {
        return n.scalar_text();
    }
    match n.as_map()? {
        [(k, v)] if k.as_str() == Some("Ref") => v.scalar_text(),
        _ => None,
    }
}

/// One entry of a function's `layers`/`Layers`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerUse {
    /// A layer version ARN published elsewhere.
    Arn(String),
    /// One of the app's own [`Layer`]s, by logical id.
    App(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// The name in the manifest (`functions.<key>` or the SAM logical id).
    pub key: String,
    /// The deployed name.
    pub name: String,
    pub runtime: String,
    pub handler: String,
    /// The directory packaged as the function's code.
    pub code: PathBuf,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub environment: BTreeMap<String, String>,
    pub reserved_concurrency: Option<u32>,
    pub provisioned_concurrency: u32,
    pub description: String,
    /// Async-invocation settings (retries, max age, destinations).
    pub event_invoke: Option<EventInvoke>,
    /// The async-invocation settings name resources of the app: they are an
    /// `AWS::Lambda::EventInvokeConfig` of the template (the engine applies
    /// them once those resources exist), and `event_invoke` is `None`.
    pub event_invoke_in_template: bool,
    /// Which files of `code` are bundled (serverless.yml `package.patterns`,
    /// the service's then the function's; empty: all of them).
    pub package_patterns: patterns::Patterns,
    /// SAM `AutoPublishAlias`: publish a version on change and point this alias at
    /// it; routes and schedules then target the alias.
    pub alias: Option<String>,
    /// A Lambda function URL (on the alias when there is one).
    pub url: Option<FunctionUrl>,
    /// Its layers, in order (later ones overwrite earlier files under `/opt`).
    pub layers: Vec<LayerUse>,
    pub line: usize,
}

/// A function URL as the Lambda API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionUrl {
    /// `NONE` or `AWS_IAM`.
    pub auth_type: String,
    /// Lambda's `Cors` object (`AllowOrigins`, `AllowMethods`, …).
    pub cors: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventInvoke {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_s: Option<u32>,
    /// Destination ARNs.
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `GET /users/{id}`, `ANY /{proxy+}` or `$default`.
    pub route_key: String,
    /// The deployed function name.
    pub function: String,
    pub qualifier: Option<String>,
    /// `1.0` (REST API, `http` / `Api` events) or `2.0` (HTTP API).
    pub payload_format: String,
    /// A REST API route (`http` / `Api` events) rather than an HTTP API one.
    pub rest: bool,
    /// The REST API's binary media types (sls `provider.apiGateway.binaryMediaTypes`,
    /// SAM `BinaryMediaTypes`).
    pub binary_media_types: Vec<String>,
    /// SAM: the logical id of the `AWS::Serverless::Api` an `Api` event names
    /// (`RestApiId`); `None` is the implicit API.
    pub rest_api_id: Option<String>,
    pub timeout_ms: Option<u64>,
    /// The name (in the manifest) of the authorizer requests must pass.
    pub authorizer: Option<String>,
    /// With a JWT authorizer: the token needs one of these scopes.
    pub authorization_scopes: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub expression: String,
    pub function: String,
    pub qualifier: Option<String>,
    /// The event the function receives; `None`: EventBridge's scheduled event.
    pub input: Option<serde_json::Value>,
    pub timezone: Option<String>,
    pub enabled: bool,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    /// Recognised, but Nimbus does not run it yet: skipped, the rest deploys.
    Unsupported,
    Warning,
}

/// What the server's app engine does with one property of a resource type
/// (the engine says, through the function the CLI passes to
/// [`Loaded::report_template_unapplied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertySupport {
    /// Applied on create and update.
    Applied,
    /// Accepted, with no effect on a single self-hosted node (a warning).
    NoEffect,
    /// Not applied: reported as "not supported yet".
    NotSupported,
}

/// One message about the manifest, always with `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub level: Level,
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Unsupported => "not supported yet",
            Level::Warning => "warning",
        };
        write!(
            f,
            "{}:{}: {level}: {}",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

/// The messages collected while reading one manifest.
#[derive(Debug, Clone)]
pub struct Diags {
    file: PathBuf,
    pub list: Vec<Diagnostic>,
}

impl Diags {
    pub fn new(file: &Path) -> Self {
        Diags {
            file: file.to_path_buf(),
            list: Vec::new(),
        }
    }

    fn push(&mut self, level: Level, line: usize, message: String) {
        self.list.push(Diagnostic {
            level,
            file: self.file.clone(),
            line,
            message,
        });
    }

    pub fn error(&mut self, line: usize, message: impl Into<String>) {
        self.push(Level::Error, line, message.into());
    }

    pub fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.push(Level::Warning, line, message.into());
    }

    pub fn unsupported(&mut self, line: usize, message: impl Into<String>) {
        self.push(Level::Unsupported, line, message.into());
    }

    /// The manifest the messages are about.
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.level == Level::Error)
    }
}

/// The result of [`load`]: the app when there was no error, and every message.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub app: Option<App>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.level == Level::Error)
    }
}

/// Read the manifest at `path` (shown in messages as given). The format comes from
/// the content: `service:` is the Framework's, `Resources:`/`Transform:` SAM's.
pub fn load(path: &Path, opts: &Options) -> Loaded {
    let mut d = Diags::new(path);
    let app = load_inner(path, opts, &mut d);
    let mut diagnostics = d.list;
    diagnostics.sort_by_key(|x| (x.level, x.line));
    let app = if diagnostics.iter().any(|x| x.level == Level::Error) {
        None
    } else {
        app
    };
    Loaded { app, diagnostics }
}

fn load_inner(path: &Path, opts: &Options, d: &mut Diags) -> Option<App> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            d.error(0, format!("cannot read the manifest: {e}"));
            return None;
        }
    };
    let root = match yaml::parse(&text) {
        Ok(r) => r,
        Err(e) => {
            d.error(e.pos.line, format!("invalid YAML: {}", e.message));
            return None;
        }
    };
    if root.as_map().is_none() {
        d.error(
            root.pos.line,
            format!("the manifest must be a mapping, found {}", root.kind()),
        );
        return None;
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if root.get("service").is_some() {
        serverless::interpret(&root, dir, opts, d)
    } else if root.get("Resources").is_some() || root.get("Transform").is_some() {
        sam::interpret(&root, dir, opts, d)
    } else {
        d.error(
            1,
            "neither a serverless.yml (no `service:`) nor a SAM template (no `Resources:`)",
        );
        None
    }
}

impl Loaded {
    /// Each resource of the app's [`template::Template`] whose type the server's
    /// app engine cannot apply (`applies` says which it can: the CLI passes
    /// `nimbus_apps::providers::supported`), as "not supported yet", so a strict
    /// deploy fails before any change rather than deploying an app that cannot
    /// work. (Function environment variables that name resources are resolved by
    /// the engine once the resources exist, so they are not reported.)
    pub fn report_template_unapplied(
        &mut self,
        applies: &dyn Fn(&str) -> bool,
        property: &dyn Fn(&str, &str) -> PropertySupport,
    ) {
        let Some(app) = &self.app else { return };
        let file = app.manifest.clone();
        let line_of = |source: &Option<String>| {
            source
                .as_deref()
                .and_then(|s| s.rsplit(':').next())
                .and_then(|l| l.parse().ok())
                .unwrap_or(1)
        };
        let t = &app.template;
        let mut more = Vec::new();
        for (id, r) in t.resources.iter().filter(|(_, r)| !applies(&r.kind)) {
            more.push((
                line_of(&r.source),
                format!(
                    "resource {id} ({}): the app engine does not apply this type yet",
                    r.kind
                ),
            ));
        }
        // Properties of the applied types that the engine does not apply.
        let mut props = Vec::new();
        for (id, r) in t.resources.iter().filter(|(_, r)| applies(&r.kind)) {
            for k in r.properties.as_object().into_iter().flat_map(|m| m.keys()) {
                let line = line_of(&r.source);
                match property(&r.kind, k) {
                    PropertySupport::Applied => {}
                    PropertySupport::NoEffect => props.push((
                        Level::Warning,
                        line,
                        format!(
                            "resource {id} ({}): property {k} is accepted and has no effect",
                            r.kind
                        ),
                    )),
                    PropertySupport::NotSupported => props.push((
                        Level::Unsupported,
                        line,
                        format!(
                            "resource {id} ({}): property {k} is not applied by the app engine",
                            r.kind
                        ),
                    )),
                }
            }
        }
        for (level, line, message) in props {
            self.diagnostics.push(Diagnostic {
                level,
                file: file.clone(),
                line,
                message,
            });
        }
        for (line, message) in more {
            self.diagnostics.push(Diagnostic {
                level: Level::Unsupported,
                file: file.clone(),
                line,
                message,
            });
        }
        self.diagnostics.sort_by_key(|x| (x.level, x.line));
    }
}

/// Lambda's function-name rule.
pub(crate) fn valid_function_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Check that the handler's file exists under the code directory
/// (`src/app.handler` → `src/app.py` for Python, `.js`/`.mjs`/`.cjs` for Node).
pub(crate) fn handler_file_problem(runtime: &str, handler: &str, code: &Path) -> Option<String> {
    if runtime.starts_with("provided") {
        return None;
    }
    let Some((module, _func)) = handler.rsplit_once('.') else {
        return Some(format!(
            "handler {handler:?} must be file.function (for example app.handler)"
        ));
    };
    let candidates: Vec<PathBuf> = if runtime.starts_with("python") {
        vec![
            code.join(format!("{module}.py")),
            code.join(module).join("__init__.py"),
        ]
    } else if runtime.starts_with("nodejs") {
        ["js", "mjs", "cjs"]
            .iter()
            .map(|e| code.join(format!("{module}.{e}")))
            .collect()
    } else {
        return None;
    };
    if candidates.iter().any(|c| c.is_file()) {
        None
    } else {
        Some(format!(
            "handler file {} does not exist",
            candidates[0].display()
        ))
    }
}

/// `--parameter-overrides` items: `K=V` or SAM's `ParameterKey=K,ParameterValue=V`.
pub fn parse_parameter_overrides(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in items {
        if let Some(rest) = item.strip_prefix("ParameterKey=") {
            let Some((k, v)) = rest.split_once(",ParameterValue=") else {
                return Err(format!(
                    "{item:?}: expected ParameterKey=K,ParameterValue=V"
                ));
            };
            out.insert(k.to_string(), v.to_string());
        } else if let Some((k, v)) = item.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        } else {
            return Err(format!("{item:?}: expected KEY=VALUE"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_overrides_both_forms() {
        let o =
            parse_parameter_overrides(&["A=1".into(), "ParameterKey=B,ParameterValue=x=y".into()])
                .unwrap();
        assert_eq!(o["A"], "1");
        assert_eq!(o["B"], "x=y");
        assert!(parse_parameter_overrides(&["nope".into()]).is_err());
    }

    #[test]
    fn diagnostic_display() {
        let mut d = Diags::new(Path::new("app/serverless.yml"));
        d.warn(7, "unknown key 'functions.a.memorySiz'");
        assert_eq!(
            d.list[0].to_string(),
            "app/serverless.yml:7: warning: unknown key 'functions.a.memorySiz'"
        );
    }
}

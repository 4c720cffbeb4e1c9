//! `serverless.yml` (Serverless Framework v3/v4) into an [`App`].
//!
//! Functions are named `<service>-<stage>-<function>` as the Framework names them;
//! the whole service directory is each function's code (the Framework's default
//! packaging). `http` events become payload-1.0 routes (REST API), `httpApi` events
//! payload-2.0 routes (or `provider.httpApi.payload`), `schedule` events schedules
//! named `<function name>-schedule-<n>` unless they carry a `name`.

use crate::cfn;
use crate::fields::{self, fields, join, Field};
use crate::gateway;
use crate::sls_events;
use crate::vars::Context;
use crate::yaml::{Node, Value};
use crate::{
    handler_file_problem, valid_function_name, App, Diags, EventInvoke, Format, Function, Layer,
    LayerUse, Options, Route, Schedule,
};
use std::collections::BTreeMap;
use std::path::Path;

const TOP: &[&str] = &[
    "service",
    "frameworkVersion",
    "provider",
    "functions",
    "custom",
    "plugins",
    "package",
    "resources",
    "params",
    "useDotenv",
    "configValidationMode",
    "variablesResolutionMode",
    "org",
    "app",
    "console",
    "outputs",
    "layers",
    "stepFunctions",
    "deprecationNotificationMode",
    "disabledDeprecations",
];

const PROVIDER: &[&str] = &[
    "name",
    "runtime",
    "memorySize",
    "timeout",
    "environment",
    "stage",
    "region",
    "httpApi",
    "apiGateway",
    "s3",
    // Accepted and without effect on Nimbus (no IAM, no CloudFormation, one host).
    "iam",
    "iamRoleStatements",
    "role",
    "profile",
    "deploymentBucket",
    "deploymentMethod",
    "deploymentPrefix",
    "versionFunctions",
    "logRetentionInDays",
    "logs",
    "tracing",
    "architecture",
    "tags",
    "stackTags",
    "stackName",
    "apiName",
    "lambdaHashingVersion",
    "runtimeManagement",
    "endpointType",
    "layers",
    // Recognised, not run yet.
    "vpc",
    "kmsKeyArn",
    "eventBridge",
    "websocketsApiName",
    "alb",
];
const PROVIDER_UNSUPPORTED: &[&str] = &["vpc", "kmsKeyArn", "eventBridge", "alb"];

const FUNCTION: &[&str] = &[
    "handler",
    "runtime",
    "memorySize",
    "timeout",
    "environment",
    "reservedConcurrency",
    "provisionedConcurrency",
    "destinations",
    "maximumRetryAttempts",
    "maximumEventAge",
    "url",
    "events",
    "name",
    "description",
    "package",
    // Accepted without effect.
    "role",
    "tags",
    "architecture",
    "logRetentionInDays",
    "tracing",
    "disableLogs",
    "dependsOn",
    "condition",
    "layers",
    // Recognised, not run yet.
    "vpc",
    "image",
    "onError",
    "kmsKeyArn",
    "fileSystemConfig",
    "snapStart",
];
const FUNCTION_UNSUPPORTED: &[&str] =
    &["vpc", "image", "kmsKeyArn", "fileSystemConfig", "snapStart"];

/// Event types whose services Nimbus does not have yet.
const UNSUPPORTED_EVENTS: &[&str] = &[
    "cloudwatchEvent",
    "cloudwatchLog",
    "websocket",
    "alb",
    "alexaSkill",
    "alexaSmartHome",
    "iot",
    "iotFleetProvisioning",
    "cognitoUserPool",
    "kafka",
    "msk",
    "activemq",
    "rabbitmq",
    "cloudFront",
];

pub(crate) fn interpret(root: &Node, dir: &Path, opts: &Options, d: &mut Diags) -> Option<App> {
    // The stage first: --stage, else provider.stage (which may use ${opt:…}), else dev.
    let mut options = BTreeMap::new();
    if let Some(s) = &opts.stage {
        options.insert("stage".to_string(), s.clone());
    }
    if let Some(r) = &opts.region {
        options.insert("region".to_string(), r.clone());
    }
    let mut ctx = Context {
        root,
        stage: None,
        region: opts
            .region
            .clone()
            .unwrap_or_else(|| nimbus_core::DEFAULT_REGION.to_string()),
        options,
        env: &opts.env,
        dir: dir.to_path_buf(),
    };
    let stage = match (&opts.stage, root.path("provider.stage")) {
        (Some(s), _) => s.clone(),
        (None, Some(n)) => {
            let r = ctx.resolve(n, d);
            match r.scalar_text() {
                Some(s) => s,
                None => {
                    d.error(n.pos.line, "provider.stage must be a string");
                    return None;
                }
            }
        }
        (None, None) => "dev".to_string(),
    };
    ctx.stage = Some(stage.clone());
    if let Some(n) = root.path("provider.region") {
        if let Some(r) = ctx.resolve(n, d).scalar_text() {
            if opts.region.is_none() {
                ctx.region = r;
            }
        }
    }
    let root = ctx.resolve(root, d);
    let top = fields(d, &root, "", TOP)?;

    let service = match top.get("service") {
        Some(f) => match &f.val.value {
            // Framework v1's `service: {name: …}`.
            Value::Map(_) => f.val.get("name").and_then(Node::scalar_text),
            _ => fields::string(d, *f, "service"),
        },
        None => None,
    };
    let Some(service) = service else {
        d.error(1, "service is required");
        return None;
    };
    if let Some(f) = top.get("frameworkVersion") {
        if let Some(v) = fields::string(d, *f, "frameworkVersion") {
            let major = v
                .trim_start_matches(['^', '~', '>', '=', ' '])
                .split('.')
                .next();
            if !matches!(major, Some("3" | "4")) {
                d.warn(
                    f.line(),
                    format!("frameworkVersion {v:?}: Nimbus reads Framework v3/v4 syntax"),
                );
            }
        }
    }
    for key in ["stepFunctions"] {
        if let Some(f) = top.get(key) {
            d.unsupported(
                f.line(),
                format!("'{key}' (CloudFormation and extra resources) is ignored"),
            );
        }
    }
    if let Some(f) = top.get("outputs") {
        d.unsupported(
            f.line(),
            "'outputs' (Serverless Dashboard outputs) is ignored; resources.Outputs is applied",
        );
    }
    if let Some(f) = top.get("plugins") {
        let empty = f.val.as_seq().is_some_and(|s| s.is_empty()) || f.val.is_null();
        if !empty {
            d.unsupported(f.line(), "'plugins' are not run by Nimbus");
        }
    }
    let mut service_patterns = crate::patterns::Patterns::default();
    if let Some(f) = top.get("package") {
        service_patterns = package(d, *f, "package");
    }

    let app_name = format!("{service}-{stage}");
    let mut defaults = Defaults::default();
    let mut payload_default = "2.0".to_string();
    let mut binary_media_types: Vec<String> = Vec::new();
    let mut provider_s3: BTreeMap<String, Node> = BTreeMap::new();
    let mut user_statements: Vec<serde_json::Value> = Vec::new();
    let mut provider_layers: Vec<LayerUse> = Vec::new();
    let mut http_api_cors: Option<(serde_json::Value, usize)> = None;
    let mut http_api_authorizers: Option<Field> = None;
    if let Some(p) = top.get("provider") {
        let pf = fields(d, p.val, "provider", PROVIDER)?;
        if let Some(f) = pf.get("layers") {
            provider_layers = layer_uses(d, *f, "provider.layers");
        }
        if let Some(f) = pf.get("s3") {
            for (k, v) in f.val.as_map().unwrap_or(&[]) {
                provider_s3.insert(k.scalar_text().unwrap_or_default(), v.clone());
            }
        }
        user_statements = iam_statements(d, &pf);
        for key in PROVIDER_UNSUPPORTED {
            if let Some(f) = pf.get(*key) {
                d.unsupported(f.line(), format!("provider.{key} is ignored"));
            }
        }
        if let Some(f) = pf.get("name") {
            if let Some(n) = fields::string(d, *f, "provider.name") {
                if n != "aws" {
                    d.error(f.line(), format!("provider.name must be aws, found {n:?}"));
                }
            }
        }
        defaults = read_defaults(d, &pf, "provider");
        if let Some(h) = pf.get("httpApi") {
            if let Some(hf) = fields(
                d,
                h.val,
                "provider.httpApi",
                &[
                    "cors",
                    "authorizers",
                    "payload",
                    "name",
                    "id",
                    "disableDefaultEndpoint",
                    "metrics",
                    "useProviderTags",
                    "shouldStartNameWithService",
                ],
            ) {
                if let Some(f) = hf.get("payload") {
                    if let Some(v) = fields::payload_version(d, *f, "provider.httpApi.payload") {
                        payload_default = v;
                    }
                }
                if let Some(f) = hf.get("id") {
                    d.unsupported(
                        f.line(),
                        "provider.httpApi.id: an HTTP API created outside the app; the gateway's routes are the app's own",
                    );
                }
                if let Some(f) = hf.get("cors") {
                    http_api_cors =
                        gateway::sls_cors(d, *f, "provider.httpApi.cors").map(|c| (c, f.line()));
                }
                if let Some(f) = hf.get("authorizers") {
                    http_api_authorizers = Some(*f);
                }
            }
        }
        if let Some(a) = pf.get("apiGateway") {
            if let Some(af) = a.val.as_map() {
                for (k, v) in af {
                    let key = k.scalar_text().unwrap_or_default();
                    if key == "binaryMediaTypes" {
                        let f = crate::fields::Field { key: k, val: v };
                        if let Some(types) =
                            fields::string_list(d, f, "provider.apiGateway.binaryMediaTypes")
                        {
                            binary_media_types = types;
                        }
                        continue;
                    }
                    d.unsupported(
                        k.pos.line,
                        format!("provider.apiGateway.{key}: the gateway does not apply it"),
                    );
                }
            }
        }
    }

    let mut app = App {
        name: app_name,
        format: Format::Serverless,
        manifest: d.file().to_path_buf(),
        stage: Some(stage.clone()),
        functions: Vec::new(),
        routes: Vec::new(),
        schedules: Vec::new(),
        layers: match top.get("layers") {
            Some(f) => layers(d, *f, dir),
            None => Vec::new(),
        },
        template: Default::default(),
        gateway: Default::default(),
    };
    let Some(funcs) = top.get("functions") else {
        d.warn(1, "no functions");
        return Some(app);
    };
    let Some(fmap) = funcs.val.as_map() else {
        d.error(
            funcs.line(),
            format!("functions must be a mapping, found {}", funcs.val.kind()),
        );
        return None;
    };
    let mut generated = sls_events::Out::default();
    // Names first: destinations may name another function of the service.
    let names: BTreeMap<String, String> = fmap
        .iter()
        .filter_map(|(k, v)| {
            let key = k.scalar_text()?;
            let name = v
                .get("name")
                .and_then(Node::scalar_text)
                .unwrap_or_else(|| format!("{service}-{stage}-{key}"));
            Some((key, name))
        })
        .collect();
    if let Some(f) = http_api_authorizers {
        app.gateway.authorizers =
            gateway::sls_authorizers(d, f, "provider.httpApi.authorizers", &app.name, &names);
    }
    if let Some((c, line)) = http_api_cors {
        app.gateway.cors = Some(c);
        app.gateway.cors_line = line;
    }
    for (k, v) in fmap {
        let key = k.scalar_text().unwrap_or_default();
        let path = format!("functions.{key}");
        let Some(ff) = fields(d, v, &path, FUNCTION) else {
            continue;
        };
        for u in FUNCTION_UNSUPPORTED {
            if let Some(f) = ff.get(*u) {
                d.unsupported(f.line(), format!("{path}.{u}: ignored"));
            }
        }
        let name = names[&key].clone();
        if let Some(f) = ff.get("name") {
            fields::string(d, *f, &join(&path, "name"));
        }
        if !valid_function_name(&name) {
            d.error(
                k.pos.line,
                format!("function name {name:?} must be 1 to 64 letters, digits, - or _"),
            );
        }
        let mut own_patterns = crate::patterns::Patterns::default();
        if let Some(f) = ff.get("package") {
            own_patterns = package(d, *f, &join(&path, "package"));
        }
        let own = read_defaults(d, &ff, &path);
        let runtime = own.runtime.or(defaults.runtime.clone());
        let Some(runtime) = runtime else {
            d.error(
                k.pos.line,
                format!("{path}: no runtime (set provider.runtime or {path}.runtime)"),
            );
            continue;
        };
        if let Err(e) = runtime.parse::<nimbus_core::Runtime>() {
            let line = ff
                .get("runtime")
                .map(|f| f.line())
                .or_else(|| root.path("provider.runtime").map(|n| n.pos.line))
                .unwrap_or(k.pos.line);
            d.error(line, e.to_string());
            continue;
        }
        let handler = match ff.get("handler") {
            Some(f) => fields::string(d, *f, &join(&path, "handler")),
            None => {
                d.error(k.pos.line, format!("{path}.handler is required"));
                None
            }
        };
        let Some(handler) = handler else { continue };
        if let Some(problem) = handler_file_problem(&runtime, &handler, dir) {
            d.error(
                ff["handler"].val.pos.line,
                format!("{path}.handler: {problem}"),
            );
        }
        let mut environment = defaults.environment.clone();
        environment.extend(own.environment);
        let mut env_intrinsics = defaults.env_intrinsics.clone();
        for k in environment.keys() {
            env_intrinsics.remove(k);
        }
        for (k, v) in own.env_intrinsics {
            environment.remove(&k);
            env_intrinsics.insert(k, v);
        }
        let logical_id = cfn::lambda_logical_id(&key);
        if !env_intrinsics.is_empty() {
            app.template
                .function_environment
                .insert(logical_id.clone(), env_intrinsics);
        }
        app.template
            .functions
            .insert(logical_id.clone(), name.clone());
        let mut event_invoke = EventInvoke::default();
        if let Some(f) = ff.get("maximumRetryAttempts") {
            event_invoke.maximum_retry_attempts =
                fields::int(d, *f, &join(&path, "maximumRetryAttempts"), 0, 2);
        }
        if let Some(f) = ff.get("maximumEventAge") {
            event_invoke.maximum_event_age_s =
                fields::int(d, *f, &join(&path, "maximumEventAge"), 60, 21600);
        }
        // Destinations that are resources of the app (`{type: sqs, arn: {Fn::GetAtt: …}}`)
        // make the settings an `AWS::Lambda::EventInvokeConfig` the engine applies.
        let mut engine_destinations: Vec<(&str, serde_json::Value)> = Vec::new();
        let mut destinations_line = k.pos.line;
        if let Some(f) = ff.get("destinations") {
            destinations_line = f.line();
            let dp = join(&path, "destinations");
            if let Some(df) = fields(d, f.val, &dp, &["onSuccess", "onFailure"]) {
                for (which, key, slot) in [
                    ("onSuccess", "OnSuccess", &mut event_invoke.on_success),
                    ("onFailure", "OnFailure", &mut event_invoke.on_failure),
                ] {
                    if let Some(t) = df.get(which) {
                        match sls_destination(d, *t, &join(&dp, which), &names, &ctx.region) {
                            Some(serde_json::Value::String(arn)) => {
                                *slot = Some(arn.clone());
                                engine_destinations.push((key, arn.into()));
                            }
                            Some(v) => engine_destinations.push((key, v)),
                            None => {}
                        }
                    }
                }
            }
        }
        // `onError`: the function's dead-letter queue or topic (an ARN, or `Ref`/
        // `Fn::GetAtt` of the app's resource), set by the engine.
        if let Some(f) = ff.get("onError") {
            let target = match f.val.scalar_text() {
                Some(arn) if arn.starts_with("arn:aws:sqs:") || arn.starts_with("arn:aws:sns:") => {
                    Some(serde_json::Value::String(arn))
                }
                Some(other) => {
                    d.error(
                        f.line(),
                        format!(
                            "{path}.onError must be an SQS queue or SNS topic ARN, found {other:?}"
                        ),
                    );
                    None
                }
                None => Some(cfn::to_cfn(f.val, d)),
            };
            if let Some(target) = target {
                app.template.resources.insert(
                    format!(
                        "{}LambdaDeadLetterConfig",
                        logical_id.trim_end_matches("LambdaFunction")
                    ),
                    crate::template::Resource {
                        kind: "Nimbus::Lambda::DeadLetterConfig".into(),
                        properties: serde_json::json!({
                            "FunctionName": {"Ref": logical_id},
                            "TargetArn": target,
                        }),
                        depends_on: Vec::new(),
                        deletion_policy: None,
                        update_replace_policy: None,
                        condition: None,
                        source: Some(cfn::source(d, f.line())),
                    },
                );
            }
        }
        let event_invoke_in_template = engine_destinations.iter().any(|(_, v)| !v.is_string());
        if event_invoke_in_template {
            let mut props = serde_json::json!({
                "FunctionName": {"Ref": logical_id},
                "Qualifier": "$LATEST",
            });
            if let Some(r) = event_invoke.maximum_retry_attempts {
                props["MaximumRetryAttempts"] = r.into();
            }
            if let Some(a) = event_invoke.maximum_event_age_s {
                props["MaximumEventAgeInSeconds"] = a.into();
            }
            let mut config = serde_json::json!({});
            for (key, v) in engine_destinations {
                config[key] = serde_json::json!({"Destination": v});
            }
            props["DestinationConfig"] = config;
            let id = format!(
                "{}LambdaEvConf",
                logical_id.trim_end_matches("LambdaFunction")
            );
            app.template.resources.insert(
                id,
                crate::template::Resource {
                    kind: "AWS::Lambda::EventInvokeConfig".into(),
                    properties: props,
                    depends_on: Vec::new(),
                    deletion_policy: None,
                    update_replace_policy: None,
                    condition: None,
                    source: Some(cfn::source(d, destinations_line)),
                },
            );
            event_invoke = EventInvoke::default();
        }
        let function = Function {
            key: key.clone(),
            name: name.clone(),
            runtime,
            handler,
            code: dir.to_path_buf(),
            memory_mb: own.memory_mb.or(defaults.memory_mb),
            timeout_s: own.timeout_s.or(defaults.timeout_s),
            environment,
            reserved_concurrency: ff
                .get("reservedConcurrency")
                .and_then(|f| fields::int(d, *f, &join(&path, "reservedConcurrency"), 0, 100_000)),
            provisioned_concurrency: ff
                .get("provisionedConcurrency")
                .and_then(|f| {
                    fields::int(d, *f, &join(&path, "provisionedConcurrency"), 0, 100_000)
                })
                .unwrap_or(0),
            description: ff
                .get("description")
                .and_then(|f| fields::string(d, *f, &join(&path, "description")))
                .unwrap_or_default(),
            event_invoke: (event_invoke != EventInvoke::default()).then_some(event_invoke),
            event_invoke_in_template,
            package_patterns: service_patterns.then(&own_patterns),
            alias: None,
            url: ff
                .get("url")
                .and_then(|f| function_url(d, *f, &join(&path, "url"))),
            // The function's own list replaces the provider's, as the Framework does.
            layers: match ff.get("layers") {
                Some(f) => layer_uses(d, *f, &join(&path, "layers")),
                None => provider_layers.clone(),
            },
            line: k.pos.line,
        };
        for u in &function.layers {
            if let LayerUse::App(id) = u {
                if !app.layers.iter().any(|l| &l.logical_id == id) {
                    let known: Vec<&str> =
                        app.layers.iter().map(|l| l.logical_id.as_str()).collect();
                    d.error(
                        ff.get("layers").map(|f| f.line()).unwrap_or(k.pos.line),
                        format!(
                            "{path}.layers: {id} is not a layer of this service (its layers: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
        }
        if let Some(f) = ff.get("events") {
            let ctx = EventCtx {
                payload: &payload_default,
                region: &ctx.region,
                provider_s3: &provider_s3,
                names: &names,
            };
            events(d, *f, &path, &function, &ctx, &mut app, &mut generated);
        }
        app.functions.push(function);
    }
    for r in app.routes.iter_mut().filter(|r| r.rest) {
        r.binary_media_types = binary_media_types.clone();
    }
    check_duplicate_routes(d, &app.routes);
    gateway::finish(d, &mut app.gateway, &app.routes);
    sls_events::finish(d, &provider_s3, &mut generated);
    let role_needed = generated
        .resources
        .iter()
        .any(|(_, r)| r.depends_on.iter().any(|x| x == sls_events::ROLE))
        || !user_statements.is_empty();
    let statements = std::mem::take(&mut generated.statements);
    sls_events::into_template(d, generated, &mut app.template);
    if role_needed && !app.functions.is_empty() {
        let names: Vec<String> = app.functions.iter().map(|f| f.name.clone()).collect();
        let line = top.get("provider").map_or(1, |p| p.line());
        app.template.resources.insert(
            sls_events::ROLE.to_string(),
            crate::template::Resource {
                kind: "AWS::IAM::Role".into(),
                properties: sls_events::role(&service, &stage, &names, user_statements, statements),
                depends_on: Vec::new(),
                deletion_policy: None,
                update_replace_policy: None,
                condition: None,
                source: Some(cfn::source(d, line)),
            },
        );
        for logical in app.template.functions.keys() {
            app.template.function_roles.insert(
                logical.clone(),
                serde_json::json!({"Fn::GetAtt": [sls_events::ROLE, "Arn"]}),
            );
        }
    }
    if let Some(f) = top.get("resources") {
        resources(d, *f, &mut app.template);
    }
    cfn::check_references(d, &app.template);
    Some(app)
}

/// `resources:` — a mapping with `Resources`, `Outputs`, `Conditions` (and
/// `extensions`), or a list of such mappings (often `${file(…)}`), merged in
/// order. A resource with the logical id of a generated one is merged over it,
/// as the Framework merges `resources.Resources` into its template.
fn resources(d: &mut Diags, f: Field, t: &mut crate::template::Template) {
    let parts: Vec<&Node> = match &f.val.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![f.val],
    };
    for part in parts {
        let Some(rf) = fields(
            d,
            part,
            "resources",
            &[
                "Resources",
                "Outputs",
                "Conditions",
                "Description",
                "AWSTemplateFormatVersion",
                "extensions",
            ],
        ) else {
            continue;
        };
        if let Some(x) = rf.get("extensions") {
            d.unsupported(
                x.line(),
                "resources.extensions: extending generated resources that way",
            );
        }
        if let Some(r) = rf.get("Resources") {
            let mut own = crate::template::Template::default();
            let generated: Vec<(String, crate::template::Resource)> = r
                .val
                .as_map()
                .unwrap_or(&[])
                .iter()
                .filter_map(|(k, _)| {
                    let id = k.scalar_text()?;
                    t.resources.remove(&id).map(|g| (id, g))
                })
                .collect();
            cfn::resources_section(d, r.val, "resources.Resources", &mut own);
            for (id, mut g) in generated {
                match own.resources.remove(&id) {
                    Some(u) => {
                        if u.kind != g.kind {
                            d.error(
                                r.line(),
                                format!(
                                    "resources.Resources.{id}: {} cannot extend the generated {}",
                                    u.kind, g.kind
                                ),
                            );
                        }
                        sls_events::merge(&mut g.properties, u.properties);
                        g.depends_on.extend(u.depends_on);
                        g.deletion_policy = u.deletion_policy.or(g.deletion_policy);
                        g.update_replace_policy =
                            u.update_replace_policy.or(g.update_replace_policy);
                        g.condition = u.condition.or(g.condition);
                        t.resources.insert(id, g);
                    }
                    None => {
                        t.resources.insert(id, g);
                    }
                }
            }
            for (id, res) in own.resources {
                if t.functions.contains_key(&id) {
                    d.error(
                        r.line(),
                        format!("resources.Resources.{id}: the logical id of a function"),
                    );
                    continue;
                }
                t.resources.insert(id, res);
            }
        }
        if let Some(o) = rf.get("Outputs") {
            cfn::outputs_section(d, o.val, "resources.Outputs", t);
        }
        if let Some(c) = rf.get("Conditions") {
            cfn::conditions_section(d, c.val, "resources.Conditions", t);
        }
    }
}

/// `provider.iam.role.statements` (v3) or `provider.iamRoleStatements` (v2).
fn iam_statements(d: &mut Diags, pf: &BTreeMap<String, Field>) -> Vec<serde_json::Value> {
    let node = pf
        .get("iam")
        .and_then(|f| f.val.path("role.statements"))
        .or_else(|| pf.get("iamRoleStatements").map(|f| f.val));
    match node {
        Some(n) => match cfn::to_cfn(n, d) {
            serde_json::Value::Array(items) => items,
            _ => {
                d.error(n.pos.line, "provider.iam.role.statements must be a list");
                Vec::new()
            }
        },
        None => Vec::new(),
    }
}

/// What every function's events share.
struct EventCtx<'a> {
    payload: &'a str,
    region: &'a str,
    provider_s3: &'a BTreeMap<String, Node>,
    /// The service's function keys → deployed names.
    names: &'a BTreeMap<String, String>,
}

#[derive(Default, Clone)]
struct Defaults {
    runtime: Option<String>,
    memory_mb: Option<u32>,
    timeout_s: Option<u32>,
    environment: BTreeMap<String, String>,
    /// Variables whose values are intrinsics (`!Ref Table`), for the engine.
    env_intrinsics: BTreeMap<String, serde_json::Value>,
}

fn read_defaults(d: &mut Diags, f: &BTreeMap<String, Field>, path: &str) -> Defaults {
    Defaults {
        runtime: f
            .get("runtime")
            .and_then(|x| fields::string(d, *x, &join(path, "runtime"))),
        memory_mb: f
            .get("memorySize")
            .and_then(|x| fields::int(d, *x, &join(path, "memorySize"), 128, 10240)),
        timeout_s: f
            .get("timeout")
            .and_then(|x| fields::int(d, *x, &join(path, "timeout"), 1, 900)),
        environment: BTreeMap::new(),
        env_intrinsics: BTreeMap::new(),
    }
    .with_environment(d, f.get("environment").copied(), &join(path, "environment"))
}

impl Defaults {
    /// Split `environment` into plain values and intrinsics (`!Ref X`, `{Ref: X}`,
    /// `Fn::GetAtt`, …) that only the engine can resolve.
    fn with_environment(mut self, d: &mut Diags, f: Option<Field>, path: &str) -> Self {
        let Some(f) = f else { return self };
        if let Some(map) = f.val.as_map() {
            let mut plain = Vec::new();
            for (k, v) in map {
                if crate::sam::is_intrinsic(v) {
                    self.env_intrinsics
                        .insert(k.scalar_text().unwrap_or_default(), cfn::to_cfn(v, d));
                } else {
                    plain.push((k.clone(), v.clone()));
                }
            }
            let node = Node::new(Value::Map(plain), f.val.pos);
            let field = Field {
                key: f.key,
                val: &node,
            };
            self.environment = fields::string_map(d, field, path).unwrap_or_default();
        } else {
            self.environment = fields::string_map(d, f, path).unwrap_or_default();
        }
        self
    }
}

/// The top-level `layers:` (the Framework's layer definitions).
fn layers(d: &mut Diags, f: Field, dir: &Path) -> Vec<Layer> {
    let Some(map) = f.val.as_map() else {
        d.error(
            f.line(),
            format!("layers must be a mapping, found {}", f.val.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let key = k.scalar_text().unwrap_or_default();
        let path = format!("layers.{key}");
        let Some(lf) = fields(
            d,
            v,
            &path,
            &[
                "path",
                "name",
                "description",
                "compatibleRuntimes",
                "compatibleArchitectures",
                "licenseInfo",
                "retain",
                "allowedAccounts",
                "package",
            ],
        ) else {
            continue;
        };
        let Some(rel) = lf
            .get("path")
            .and_then(|f| fields::string(d, *f, &join(&path, "path")))
        else {
            if !lf.contains_key("path") {
                d.error(k.pos.line, format!("{path}.path is required"));
            }
            continue;
        };
        let content = dir.join(&rel);
        if !content.is_dir() {
            d.error(
                lf["path"].line(),
                format!("{path}.path: {rel} is not a directory next to the manifest"),
            );
            continue;
        }
        let name = lf
            .get("name")
            .and_then(|f| fields::string(d, *f, &join(&path, "name")))
            .unwrap_or_else(|| key.clone());
        if !crate::valid_layer_name(&name) {
            d.error(
                lf.get("name").map(|f| f.line()).unwrap_or(k.pos.line),
                format!("{path}: layer name {name:?} must be 1 to 140 letters, digits, - or _"),
            );
            continue;
        }
        for key in ["allowedAccounts", "package"] {
            if let Some(f) = lf.get(key) {
                d.unsupported(f.line(), format!("{path}.{key}: ignored (the directory is zipped as it is; layer permissions are set through the Lambda API)"));
            }
        }
        if let Some(f) = lf.get("retain") {
            fields::boolean(d, *f, &join(&path, "retain"));
        }
        out.push(Layer {
            logical_id: format!("{}LambdaLayer", cfn::normalized_function(&key)),
            name,
            content,
            description: lf
                .get("description")
                .and_then(|f| fields::string(d, *f, &join(&path, "description")))
                .unwrap_or_default(),
            compatible_runtimes: lf
                .get("compatibleRuntimes")
                .and_then(|f| fields::string_list(d, *f, &join(&path, "compatibleRuntimes")))
                .unwrap_or_default(),
            compatible_architectures: lf
                .get("compatibleArchitectures")
                .and_then(|f| fields::string_list(d, *f, &join(&path, "compatibleArchitectures")))
                .unwrap_or_default(),
            license_info: lf
                .get("licenseInfo")
                .and_then(|f| fields::string(d, *f, &join(&path, "licenseInfo"))),
            line: k.pos.line,
        });
    }
    out
}

/// A function's (or the provider's) `layers:` list: ARNs and `{Ref: XLambdaLayer}`.
fn layer_uses(d: &mut Diags, f: Field, path: &str) -> Vec<LayerUse> {
    let Some(items) = f.val.as_seq() else {
        d.error(
            f.line(),
            format!("{path} must be a list, found {}", f.val.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(id) = crate::ref_target(item) {
            out.push(LayerUse::App(id));
        } else if let Some(arn) = item.as_str() {
            out.push(LayerUse::Arn(arn.to_string()));
        } else {
            d.error(
                item.pos.line,
                format!("{path}: each layer is a layer version ARN or {{Ref: <Name>LambdaLayer}}"),
            );
        }
    }
    if out.len() > 5 {
        d.error(
            f.line(),
            format!("{path}: a function takes at most 5 layers"),
        );
    }
    out
}

/// `package`: `patterns` (and v2's `exclude`/`include`, read as `!x` then
/// `x` patterns, as the Framework v3 does); `individually` needs nothing more
/// (each function's patterns follow the service's); `artifact` is not supported.
fn package(d: &mut Diags, f: Field, path: &str) -> crate::patterns::Patterns {
    let mut list: Vec<String> = Vec::new();
    let mut line = f.line();
    if let Some(pf) = fields(
        d,
        f.val,
        path,
        &[
            "patterns",
            "individually",
            "artifact",
            "exclude",
            "include",
            "excludeDevDependencies",
        ],
    ) {
        for key in ["exclude", "include", "patterns"] {
            let Some(x) = pf.get(key) else { continue };
            line = x.line();
            let Some(items) = fields::string_list(d, *x, &join(path, key)) else {
                continue;
            };
            if key != "patterns" {
                d.warn(
                    x.line(),
                    format!("{path}.{key} is deprecated in Framework v3; read as package.patterns"),
                );
            }
            list.extend(items.into_iter().map(|p| match key {
                "exclude" => format!("!{p}"),
                _ => p,
            }));
        }
        if let Some(x) = pf.get("individually") {
            fields::boolean(d, *x, &join(path, "individually"));
        }
        if let Some(x) = pf.get("artifact") {
            d.unsupported(
                x.line(),
                format!("{path}.artifact: a prebuilt zip; the service directory is packaged"),
            );
        }
    }
    match crate::patterns::Patterns::new(&list) {
        Ok(p) => p,
        Err(e) => {
            d.error(line, format!("{path}.patterns: {e}"));
            Default::default()
        }
    }
}

/// A destination: a function of this service (by its key), a deployed function
/// name, or an ARN.
/// A destination: a function of the service, a function name or an ARN (a
/// string), or `{type: sqs|sns|eventBus|function, arn}` whose `arn` may be an
/// intrinsic naming a resource of the app (returned in CloudFormation's form).
fn sls_destination(
    d: &mut Diags,
    f: Field,
    path: &str,
    names: &BTreeMap<String, String>,
    region: &str,
) -> Option<serde_json::Value> {
    if f.val.as_map().is_none() {
        return destination(d, f, path, names, region).map(Into::into);
    }
    let df = fields(d, f.val, path, &["type", "arn"])?;
    if let Some(t) = df.get("type") {
        let ty = fields::string(d, *t, &join(path, "type")).unwrap_or_default();
        if !matches!(ty.as_str(), "sqs" | "sns" | "eventBus" | "function") {
            d.error(
                t.line(),
                format!("{path}.type must be sqs, sns, eventBus or function, found {ty:?}"),
            );
            return None;
        }
    }
    let Some(arn) = df.get("arn") else {
        d.error(f.line(), format!("{path} needs arn"));
        return None;
    };
    if arn.val.scalar_text().is_some() {
        return destination(d, *arn, &join(path, "arn"), names, region).map(Into::into);
    }
    if !df.contains_key("type") {
        d.error(
            f.line(),
            format!("{path}: an arn given by a CloudFormation function needs a type (sqs, sns, eventBus or function)"),
        );
        return None;
    }
    Some(cfn::to_cfn(arn.val, d))
}

fn destination(
    d: &mut Diags,
    f: Field,
    path: &str,
    names: &BTreeMap<String, String>,
    region: &str,
) -> Option<String> {
    let target = match &f.val.value {
        Value::Map(_) => f.val.get("arn").and_then(Node::scalar_text),
        _ => fields::string(d, f, path),
    }?;
    if target.starts_with("arn:") {
        return Some(target);
    }
    let name = names.get(&target).cloned().unwrap_or(target);
    if !valid_function_name(&name) {
        d.error(
            f.line(),
            format!("{path}: {name:?} is neither a function nor an ARN"),
        );
        return None;
    }
    Some(nimbus_core::function_arn(region, &name, None))
}

fn events(
    d: &mut Diags,
    f: Field,
    path: &str,
    func: &Function,
    ctx: &EventCtx,
    app: &mut App,
    out: &mut sls_events::Out,
) {
    let payload = ctx.payload;
    let sf = sls_events::Func {
        key: &func.key,
        name: &func.name,
        logical_id: cfn::lambda_logical_id(&func.key),
    };
    let Some(list) = f.val.as_seq() else {
        if !f.val.is_null() {
            d.error(
                f.line(),
                format!("{path}.events must be a list, found {}", f.val.kind()),
            );
        }
        return;
    };
    let mut n_schedule = 0;
    for (i, ev) in list.iter().enumerate() {
        let epath = format!("{path}.events[{i}]");
        let Some(entries) = ev.as_map().filter(|m| m.len() == 1) else {
            d.error(
                ev.pos.line,
                format!(
                    "{epath} must be a mapping with one event type (http, httpApi, schedule, …)"
                ),
            );
            continue;
        };
        let (k, v) = &entries[0];
        let kind = k.scalar_text().unwrap_or_default();
        let f = Field { key: k, val: v };
        match kind.as_str() {
            "http" => http_event(d, f, &format!("{epath}.http"), func, ctx, app),
            "httpApi" => http_api_event(d, f, &format!("{epath}.httpApi"), func, payload, app),
            "schedule" => {
                schedule_event(d, f, &format!("{epath}.schedule"), func, &mut n_schedule, app)
            }
            "sqs" => sls_events::sqs(d, f, &format!("{epath}.sqs"), &sf, out),
            "stream" => sls_events::stream(d, f, &format!("{epath}.stream"), &sf, out),
            "sns" => sls_events::sns(d, f, &format!("{epath}.sns"), &sf, ctx.region, out),
            "s3" => sls_events::s3(d, f, &format!("{epath}.s3"), &sf, ctx.provider_s3, out),
            "eventBridge" => {
                sls_events::event_bridge(d, f, &format!("{epath}.eventBridge"), &sf, i + 1, out)
            }
            other if UNSUPPORTED_EVENTS.contains(&other) => d.unsupported(
                k.pos.line,
                format!("event '{other}' of {path}: manifests do not wire this event kind yet (create it with the service API or `nimbus mappings`)"),
            ),
            other => d.warn(k.pos.line, format!("unknown event type '{other}' in {path}")),
        }
    }
}

fn norm_path(p: &str) -> String {
    let p = p.trim().trim_end_matches('/');
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

fn norm_method(m: &str) -> String {
    match m.trim() {
        "*" => "ANY".to_string(),
        m => m.to_ascii_uppercase(),
    }
}

fn http_event(d: &mut Diags, f: Field, path: &str, func: &Function, ctx: &EventCtx, app: &mut App) {
    let mut authorizer = None;
    let mut cors = None;
    let (method, p) = match &f.val.value {
        Value::Str(s) => match s.split_once(char::is_whitespace) {
            Some((m, p)) => (m.to_string(), p.to_string()),
            None => {
                d.error(
                    f.line(),
                    format!("{path} must be 'METHOD path', found {s:?}"),
                );
                return;
            }
        },
        Value::Map(_) => {
            let Some(hf) = fields(
                d,
                f.val,
                path,
                &[
                    "path",
                    "method",
                    "cors",
                    "private",
                    "authorizer",
                    "request",
                    "integration",
                    "async",
                    "response",
                    "operationId",
                    "summary",
                    "description",
                ],
            ) else {
                return;
            };
            if let Some(x) = hf.get("authorizer") {
                authorizer = gateway::sls_http_authorizer(
                    d,
                    *x,
                    &join(path, "authorizer"),
                    ctx.names,
                    &mut app.gateway,
                );
            }
            if let Some(x) = hf.get("cors") {
                cors = Some(*x);
            }
            for key in ["private", "request", "integration", "async", "response"] {
                if let Some(x) = hf.get(key) {
                    let what = match key {
                        "private" => "API keys".to_string(),
                        "request" => "request validation (schemas, parameters)".to_string(),
                        k => k.to_string(),
                    };
                    d.unsupported(
                        x.line(),
                        format!("{path}.{key}: the gateway does not apply {what} yet; the route deploys without it"),
                    );
                }
            }
            let (Some(m), Some(p)) = (hf.get("method"), hf.get("path")) else {
                d.error(f.line(), format!("{path} needs method and path"));
                return;
            };
            let (Some(m), Some(p)) = (
                fields::string(d, *m, &join(path, "method")),
                fields::string(d, *p, &join(path, "path")),
            ) else {
                return;
            };
            (m, p)
        }
        _ => {
            d.error(
                f.line(),
                format!(
                    "{path} must be a string or a mapping, found {}",
                    f.val.kind()
                ),
            );
            return;
        }
    };
    let method = norm_method(&method);
    if let Some(x) = cors {
        gateway::sls_http_cors(d, x, &join(path, "cors"), &method, &mut app.gateway);
    }
    push_route(
        d,
        f.line(),
        format!("{} {}", method, norm_path(&p)),
        func,
        "1.0",
        app,
    );
    if let Some(r) = app.routes.last_mut() {
        r.rest = true;
        if let Some((name, scopes)) = authorizer {
            r.authorizer = Some(name);
            r.authorization_scopes = scopes;
        }
    }
}

fn http_api_event(
    d: &mut Diags,
    f: Field,
    path: &str,
    func: &Function,
    payload: &str,
    app: &mut App,
) {
    let mut authorizer = None;
    let key = match &f.val.value {
        Value::Str(s) if s.trim() == "*" => "$default".to_string(),
        Value::Str(s) => match s.split_once(char::is_whitespace) {
            Some((m, p)) => format!("{} {}", norm_method(m), norm_path(p)),
            None => {
                d.error(
                    f.line(),
                    format!("{path} must be 'METHOD /path' or '*', found {s:?}"),
                );
                return;
            }
        },
        Value::Map(_) => {
            let Some(hf) = fields(
                d,
                f.val,
                path,
                &[
                    "method",
                    "path",
                    "authorizer",
                    "cors",
                    "summary",
                    "description",
                ],
            ) else {
                return;
            };
            if let Some(x) = hf.get("cors") {
                d.unsupported(
                    x.line(),
                    format!(
                        "{path}.cors: CORS is set for the whole HTTP API (provider.httpApi.cors)"
                    ),
                );
            }
            if let Some(x) = hf.get("authorizer") {
                authorizer = gateway::sls_event_authorizer(d, *x, &join(path, "authorizer"));
            }
            let method = hf
                .get("method")
                .and_then(|m| fields::string(d, *m, &join(path, "method")));
            let p = hf
                .get("path")
                .and_then(|p| fields::string(d, *p, &join(path, "path")));
            match (method, p) {
                (Some(m), Some(p)) => format!("{} {}", norm_method(&m), norm_path(&p)),
                (None, None) => "$default".to_string(),
                _ => {
                    d.error(f.line(), format!("{path} needs both method and path"));
                    return;
                }
            }
        }
        _ => {
            d.error(
                f.line(),
                format!(
                    "{path} must be a string or a mapping, found {}",
                    f.val.kind()
                ),
            );
            return;
        }
    };
    push_route(d, f.line(), key, func, payload, app);
    if let (Some((name, scopes)), Some(r)) = (authorizer, app.routes.last_mut()) {
        r.authorizer = Some(name);
        r.authorization_scopes = scopes;
    }
}

fn push_route(
    _d: &mut Diags,
    line: usize,
    route_key: String,
    func: &Function,
    payload: &str,
    app: &mut App,
) {
    app.routes.push(Route {
        route_key,
        function: func.name.clone(),
        qualifier: None,
        payload_format: payload.to_string(),
        rest: false,
        binary_media_types: Vec::new(),
        rest_api_id: None,
        timeout_ms: None,
        authorizer: None,
        authorization_scopes: Vec::new(),
        line,
    });
}

pub(crate) fn check_duplicate_routes(d: &mut Diags, routes: &[Route]) {
    for (i, r) in routes.iter().enumerate() {
        if let Some(first) = routes[..i].iter().find(|p| p.route_key == r.route_key) {
            d.error(
                r.line,
                format!(
                    "route {} is declared twice (first at line {})",
                    r.route_key, first.line
                ),
            );
        }
    }
}

fn schedule_event(
    d: &mut Diags,
    f: Field,
    path: &str,
    func: &Function,
    n: &mut usize,
    app: &mut App,
) {
    let mut exprs: Vec<(String, usize)> = Vec::new();
    let mut input = None;
    let mut enabled = true;
    let mut name = None;
    let mut timezone = None;
    match &f.val.value {
        Value::Str(s) => exprs.push((s.clone(), f.line())),
        Value::Map(_) => {
            let Some(sf) = fields(
                d,
                f.val,
                path,
                &[
                    "rate",
                    "cron",
                    "enabled",
                    "input",
                    "name",
                    "description",
                    "timezone",
                    "method",
                    "inputPath",
                    "inputTransformer",
                ],
            ) else {
                return;
            };
            for key in ["rate", "cron"] {
                if let Some(r) = sf.get(key) {
                    match &r.val.value {
                        Value::Seq(items) => {
                            for it in items {
                                match it.scalar_text() {
                                    Some(s) => exprs.push((s, it.pos.line)),
                                    None => d.error(
                                        it.pos.line,
                                        format!("{path}.{key} items must be strings"),
                                    ),
                                }
                            }
                        }
                        _ => {
                            if let Some(s) = fields::string(d, *r, &join(path, key)) {
                                exprs.push((s, r.line()));
                            }
                        }
                    }
                }
            }
            if exprs.is_empty() {
                d.error(
                    f.line(),
                    format!("{path} needs rate (a rate(…) or cron(…) expression)"),
                );
            }
            if let Some(x) = sf.get("enabled") {
                enabled = fields::boolean(d, *x, &join(path, "enabled")).unwrap_or(true);
            }
            if let Some(x) = sf.get("input") {
                input = json_input(d, *x, &join(path, "input"));
            }
            if let Some(x) = sf.get("name") {
                name = fields::string(d, *x, &join(path, "name"));
            }
            if let Some(x) = sf.get("timezone") {
                timezone = fields::string(d, *x, &join(path, "timezone"));
                if let Some(Err(e)) = timezone.as_deref().map(crate::schedule::check_timezone) {
                    d.error(x.line(), format!("{path}.timezone: {e}"));
                }
            }
            for key in ["inputPath", "inputTransformer"] {
                if let Some(x) = sf.get(key) {
                    d.unsupported(
                        x.line(),
                        format!("{path}.{key}: the schedule sends `input` or the scheduled event"),
                    );
                }
            }
        }
        _ => {
            d.error(
                f.line(),
                format!(
                    "{path} must be an expression or a mapping, found {}",
                    f.val.kind()
                ),
            );
            return;
        }
    }
    let multi = exprs.len() > 1;
    for (i, (expr, line)) in exprs.into_iter().enumerate() {
        if let Err(e) = crate::schedule::check(&expr) {
            d.error(line, format!("{path}: {e}"));
            continue;
        }
        *n += 1;
        let sname = match &name {
            Some(nm) if multi => format!("{nm}-{}", i + 1),
            Some(nm) => nm.clone(),
            None => format!("{}-schedule-{}", func.name, *n),
        };
        app.schedules.push(Schedule {
            name: sname,
            expression: expr,
            function: func.name.clone(),
            qualifier: None,
            input: input.clone(),
            timezone: timezone.clone(),
            enabled,
            line,
        });
    }
}

/// `url: true`, or `url: {authorizer: aws_iam, cors: true | {allowedOrigins, …}}`.
fn function_url(d: &mut Diags, f: Field, path: &str) -> Option<crate::FunctionUrl> {
    let mut url = crate::FunctionUrl {
        auth_type: "NONE".into(),
        cors: None,
    };
    match &f.val.value {
        Value::Bool(true) => return Some(url),
        Value::Bool(false) | Value::Null => return None,
        Value::Map(_) => {}
        _ => {
            d.error(
                f.line(),
                format!("{path} must be true or a mapping, found {}", f.val.kind()),
            );
            return None;
        }
    }
    let uf = fields(d, f.val, path, &["authorizer", "cors", "invokeMode"])?;
    if let Some(a) = uf.get("authorizer") {
        match a.val.as_str() {
            Some("aws_iam") => url.auth_type = "AWS_IAM".into(),
            _ => d.error(a.line(), format!("{path}.authorizer must be aws_iam")),
        }
    }
    if let Some(m) = uf.get("invokeMode") {
        if m.val.as_str() != Some("BUFFERED") {
            d.unsupported(m.line(), format!("{path}.invokeMode: only BUFFERED"));
        }
    }
    if let Some(c) = uf.get("cors") {
        url.cors = match &c.val.value {
            Value::Bool(true) => Some(serde_json::json!({
                "AllowOrigins": ["*"],
                "AllowMethods": ["*"],
                "AllowHeaders": ["Content-Type", "X-Amz-Date", "Authorization", "X-Api-Key", "X-Amz-Security-Token"],
            })),
            Value::Bool(false) | Value::Null => None,
            Value::Map(_) => {
                let cp = join(path, "cors");
                let cf = fields(
                    d,
                    c.val,
                    &cp,
                    &[
                        "allowCredentials",
                        "allowedHeaders",
                        "allowedMethods",
                        "allowedOrigins",
                        "exposedResponseHeaders",
                        "maxAge",
                    ],
                )?;
                let mut out = serde_json::Map::new();
                for (from, to) in [
                    ("allowCredentials", "AllowCredentials"),
                    ("allowedHeaders", "AllowHeaders"),
                    ("allowedMethods", "AllowMethods"),
                    ("allowedOrigins", "AllowOrigins"),
                    ("exposedResponseHeaders", "ExposeHeaders"),
                    ("maxAge", "MaxAge"),
                ] {
                    if let Some(x) = cf.get(from) {
                        out.insert(to.into(), x.val.to_json());
                    }
                }
                Some(serde_json::Value::Object(out))
            }
            _ => {
                d.error(c.line(), format!("{path}.cors must be true or a mapping"));
                None
            }
        };
    }
    Some(url)
}

/// `input`: a mapping, or a JSON text.
pub(crate) fn json_input(d: &mut Diags, f: Field, path: &str) -> Option<serde_json::Value> {
    match &f.val.value {
        Value::Str(s) => match serde_json::from_str(s) {
            Ok(v) => Some(v),
            Err(e) => {
                d.error(f.line(), format!("{path} is not valid JSON: {e}"));
                None
            }
        },
        _ => Some(f.val.to_json()),
    }
}

#[cfg(test)]
mod tests {
    use crate::{load, Level, Options};
    use std::path::Path;

    fn app_dir(manifest: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("serverless.yml"), manifest).unwrap();
        for (p, body) in files {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        dir
    }

    fn messages(dir: &Path, opts: &Options) -> Vec<String> {
        let l = load(&dir.join("serverless.yml"), opts);
        l.diagnostics
            .iter()
            .map(|d| {
                let s = d.to_string();
                s[s.find("serverless.yml").unwrap()..].to_string()
            })
            .collect()
    }

    const GOOD: &str = "\
service: orders
frameworkVersion: '3'
provider:
  name: aws
  runtime: python3.12
  stage: ${opt:stage, 'dev'}
  memorySize: 256
  environment:
    TABLE: ${self:service}-${sls:stage}
functions:
  create:
    handler: src/handler.create
    timeout: 10
    events:
      - http:
          path: orders
          method: post
      - httpApi: 'GET /orders/{id}'
  cleanup:
    handler: src/handler.cleanup
    maximumRetryAttempts: 1
    destinations:
      onFailure: create
    events:
      - schedule:
          rate: cron(0 2 * * ? *)
      - schedule:
          rate: rate(5 minutes)
          input:
            source: warmup
  all:
    handler: src/handler.create
    events:
      - httpApi: '*'
";

    #[test]
    fn full_app() {
        let dir = app_dir(GOOD, &[("src/handler.py", "def create(e, c): pass\n")]);
        let l = load(&dir.path().join("serverless.yml"), &Options::default());
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let app = l.app.unwrap();
        assert_eq!(app.name, "orders-dev");
        let names: Vec<_> = app.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["orders-dev-create", "orders-dev-cleanup", "orders-dev-all"]
        );
        let create = &app.functions[0];
        assert_eq!(create.memory_mb, Some(256));
        assert_eq!(create.timeout_s, Some(10));
        assert_eq!(create.environment["TABLE"], "orders-dev");
        assert_eq!(create.handler, "src/handler.create");
        let keys: Vec<_> = app
            .routes
            .iter()
            .map(|r| (r.route_key.as_str(), r.payload_format.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("POST /orders", "1.0"),
                ("GET /orders/{id}", "2.0"),
                ("$default", "2.0")
            ]
        );
        assert_eq!(app.schedules.len(), 2);
        assert_eq!(app.schedules[0].name, "orders-dev-cleanup-schedule-1");
        assert_eq!(app.schedules[0].expression, "cron(0 2 * * ? *)");
        assert_eq!(
            app.schedules[1].input,
            Some(serde_json::json!({"source": "warmup"}))
        );
        let ei = app.functions[1].event_invoke.as_ref().unwrap();
        assert_eq!(ei.maximum_retry_attempts, Some(1));
        assert_eq!(
            ei.on_failure.as_deref(),
            Some("arn:aws:lambda:us-east-1:000000000000:function:orders-dev-create")
                .map(|s| s.replace("000000000000", nimbus_core::ACCOUNT_ID))
                .as_deref()
        );

        let prod = load(
            &dir.path().join("serverless.yml"),
            &Options {
                stage: Some("prod".into()),
                ..Default::default()
            },
        )
        .app
        .unwrap();
        assert_eq!(prod.name, "orders-prod");
        assert_eq!(prod.functions[0].environment["TABLE"], "orders-prod");
    }

    #[test]
    fn malformed_manifests_name_file_and_line() {
        let handler = [("handler.py", "def main(e, c): pass\n")];
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (
                "service: s\nprovider:\n  runtime: python3.12\n  memorySize: lots\nfunctions:\n  a:\n    handler: handler.main\n",
                vec!["serverless.yml:4: error: provider.memorySize must be an integer, found a string"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    handler: handler.main\n    memorySiz: 512\n",
                vec!["serverless.yml:7: warning: unknown key 'functions.a.memorySiz'"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    handler: nope.main\n",
                vec!["serverless.yml:6: error: functions.a.handler: handler file"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    timeout: 5\n",
                vec!["serverless.yml:5: error: functions.a.handler is required"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    handler: handler.main\n    events:\n      - websocket: $connect\n      - http: GET hello\n",
                vec!["serverless.yml:8: not supported yet: event 'websocket' of functions.a"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    handler: handler.main\n    events:\n      - schedule: rate(5 minute)\n",
                vec!["serverless.yml:8: error: functions.a.events[0].schedule: \"rate(5 minute)\""],
            ),
            (
                "service: s\nprovider:\n  runtime: cobol\nfunctions:\n  a:\n    handler: handler.main\n",
                vec!["serverless.yml:3: error: Value cobol at 'runtime'"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\n  environment:\n    A: ${env:NIMBUS_TEST_UNSET_VAR}\nfunctions: {}\n",
                vec!["serverless.yml:5: error: variable ${env:NIMBUS_TEST_UNSET_VAR} cannot be resolved"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    handler: handler.main\n    events:\n      - httpApi: GET /x\n  b:\n    handler: handler.main\n    events:\n      - httpApi: GET /x\n",
                vec!["serverless.yml:12: error: route GET /x is declared twice (first at line 8)"],
            ),
            (
                "service: s\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    handler: handler.main\n  bad: [\n",
                vec!["serverless.yml:8: error: invalid YAML"],
            ),
            (
                "service: s\nresources:\n  Resources:\n    Cdn:\n      Type: AWS::CloudFront::Distribution\nprovider:\n  runtime: python3.12\nfunctions:\n  a:\n    handler: handler.main\n    url: true\n",
                vec![
                    "serverless.yml:4: not supported yet: resource Cdn of type AWS::CloudFront::Distribution",
                                    ],
            ),
        ];
        for (manifest, want) in cases {
            let dir = app_dir(manifest, &handler);
            let got = messages(dir.path(), &Options::default());
            for w in &want {
                assert!(
                    got.iter().any(|g| g.starts_with(w)),
                    "want {w:?} in {got:#?}\nfor\n{manifest}"
                );
            }
            let errors = want.iter().any(|w| w.contains(": error: "));
            let l = load(&dir.path().join("serverless.yml"), &Options::default());
            assert_eq!(l.app.is_none(), errors, "{got:?}");
            assert!(l.diagnostics.iter().all(|d| d.level != Level::Error) || errors);
        }
    }
}

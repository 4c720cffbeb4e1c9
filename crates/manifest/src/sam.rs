//! AWS SAM `template.yaml` into an [`App`].
//!
//! The app is the stack: `--stack-name`, else the template directory's name.
//! `AWS::Serverless::Function` resources become functions named
//! `<stack>-<LogicalId>` (or their `FunctionName`), with `Globals.Function` as
//! defaults; their `Api` events become payload-1.0 routes, `HttpApi` events
//! payload-2.0 routes (or `PayloadFormatVersion`), `Schedule`/`ScheduleV2` events
//! schedules named `<function>-<EventName>` (or their `Name`).
//!
//! Intrinsic functions are evaluated for what Nimbus knows, in short (`!Ref`) and
//! long (`Fn::Sub`) form: `Ref` (parameters, pseudo parameters, functions),
//! `Fn::Sub`, `Fn::GetAtt` (`<Function>.Arn`), `Fn::If` with `Conditions`
//! (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`), `Fn::Join`,
//! `Fn::Select`, `Fn::Split`, and `AWS::NoValue`.

use crate::fields::{self, fields, join, Field};
use crate::serverless::{check_duplicate_routes, json_input};
use crate::yaml::{Node, Pos, Value};
use crate::{
    handler_file_problem, valid_function_name, App, Diags, EventInvoke, Format, Function, Options,
    Route, Schedule,
};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const TRANSFORM: &str = "AWS::Serverless-2016-10-31";

const TOP: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Transform",
    "Description",
    "Metadata",
    "Parameters",
    "Mappings",
    "Conditions",
    "Globals",
    "Resources",
    "Outputs",
    "Rules",
];

const FUNCTION: &[&str] = &[
    "CodeUri",
    "Handler",
    "Runtime",
    "MemorySize",
    "Timeout",
    "Environment",
    "ReservedConcurrentExecutions",
    "ProvisionedConcurrencyConfig",
    "AutoPublishAlias",
    "FunctionUrlConfig",
    "EventInvokeConfig",
    "Events",
    "FunctionName",
    "Description",
    // Accepted without effect (no IAM, one host).
    "Policies",
    "Role",
    "Architectures",
    "Tags",
    "Tracing",
    "PackageType",
    "DeploymentPreference",
    "AutoPublishCodeSha256",
    "Layers",
    "DeadLetterQueue",
    // Recognised, not run yet.
    "VpcConfig",
    "InlineCode",
    "ImageUri",
    "FileSystemConfigs",
    "SnapStart",
    "KmsKeyArn",
    "RuntimeManagementConfig",
    "LoggingConfig",
    "EphemeralStorage",
];
const FUNCTION_UNSUPPORTED: &[&str] = &[
    "VpcConfig",
    "InlineCode",
    "ImageUri",
    "FileSystemConfigs",
    "SnapStart",
    "KmsKeyArn",
    "DeploymentPreference",
];

/// What an intrinsic evaluates against.
struct Eval<'a> {
    params: BTreeMap<String, Node>,
    conditions: Option<&'a Node>,
    /// Logical id → (type, deployed function name when a function).
    resources: HashMap<String, (String, Option<String>)>,
    stack: String,
    region: String,
    cond_cache: std::cell::RefCell<HashMap<String, bool>>,
}

type EvalResult = Result<Option<Node>, (usize, String)>;

const INTRINSICS: &[&str] = &[
    "Ref",
    "Sub",
    "GetAtt",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Join",
    "Select",
    "Split",
    "Condition",
    "FindInMap",
    "Base64",
    "GetAZs",
    "ImportValue",
    "Cidr",
    "Length",
    "ToJsonString",
];

/// Whether a node is an intrinsic function call (`!Ref X`, `{Fn::Sub: …}`).
pub(crate) fn is_intrinsic(n: &Node) -> bool {
    intrinsic(n).is_some()
}

/// The intrinsic a node is, with its argument: `!Ref X` or `{Ref: X}`, `{Fn::Sub: …}`.
fn intrinsic(n: &Node) -> Option<(String, Node)> {
    if let Some(t) = &n.tag {
        if INTRINSICS.contains(&t.as_str()) {
            let mut arg = n.clone();
            arg.tag = None;
            return Some((t.clone(), arg));
        }
    }
    let m = n.as_map()?;
    if m.len() != 1 {
        return None;
    }
    let key = m[0].0.as_str()?;
    let name = if key == "Ref" {
        "Ref"
    } else {
        key.strip_prefix("Fn::")?
    };
    if !INTRINSICS.contains(&name) || name == "Condition" {
        return None;
    }
    Some((name.to_string(), m[0].1.clone()))
}

impl Eval<'_> {
    /// Evaluate every intrinsic in `n`; `None` is `AWS::NoValue` (the key goes away).
    fn node(&self, n: &Node, d: &mut Diags) -> EvalResult {
        if let Some((f, arg)) = intrinsic(n) {
            let out = self.call(&f, &arg, n.pos, d)?;
            return Ok(out.map(|mut o| {
                o.pos = n.pos;
                o
            }));
        }
        Ok(Some(match &n.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    if let Some(v) = self.node(i, d)? {
                        out.push(v);
                    }
                }
                Node::new(Value::Seq(out), n.pos)
            }
            Value::Map(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    if let Some(v) = self.node(v, d)? {
                        out.push((k.clone(), v));
                    }
                }
                Node::new(Value::Map(out), n.pos)
            }
            _ => n.clone(),
        }))
    }

    fn value(&self, n: &Node, d: &mut Diags) -> Result<Node, (usize, String)> {
        self.node(n, d)?
            .ok_or((n.pos.line, "AWS::NoValue is not allowed here".into()))
    }

    fn text(&self, n: &Node, what: &str, d: &mut Diags) -> Result<String, (usize, String)> {
        let v = self.value(n, d)?;
        v.scalar_text().ok_or((
            n.pos.line,
            format!("{what} needs a string, found {}", v.kind()),
        ))
    }

    fn list(&self, n: &Node, what: &str, len: Option<usize>) -> Result<Vec<Node>, (usize, String)> {
        match n.as_seq() {
            Some(s) if len.is_none_or(|l| l == s.len()) => Ok(s.to_vec()),
            _ => Err((
                n.pos.line,
                match len {
                    Some(l) => format!("{what} needs a list of {l}"),
                    None => format!("{what} needs a list"),
                },
            )),
        }
    }

    fn call(&self, f: &str, arg: &Node, pos: Pos, d: &mut Diags) -> EvalResult {
        let line = pos.line;
        match f {
            "Ref" => {
                let name = self.text(arg, "!Ref", d)?;
                self.reference(&name, line, d)
            }
            "GetAtt" => {
                let (res, attr) = match &arg.value {
                    Value::Str(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_string(), a.to_string()),
                        None => {
                            return Err((line, format!("!GetAtt {s}: expected Resource.Attribute")))
                        }
                    },
                    _ => {
                        let l = self.list(arg, "!GetAtt", Some(2))?;
                        (
                            self.text(&l[0], "!GetAtt", d)?,
                            self.text(&l[1], "!GetAtt", d)?,
                        )
                    }
                };
                self.get_att(&res, &attr, line)
                    .map(|s| Some(Node::str(s, pos)))
            }
            "Sub" => {
                let (template, vars) = match &arg.value {
                    Value::Seq(items) if items.len() == 2 => {
                        let mut vars = BTreeMap::new();
                        for (k, v) in items[1].as_map().unwrap_or(&[]) {
                            vars.insert(
                                k.scalar_text().unwrap_or_default(),
                                self.text(v, "!Sub variable", d)?,
                            );
                        }
                        (self.text(&items[0], "!Sub", d)?, vars)
                    }
                    _ => (self.text(arg, "!Sub", d)?, BTreeMap::new()),
                };
                self.sub(&template, &vars, line, d)
                    .map(|s| Some(Node::str(s, pos)))
            }
            "If" => {
                let l = self.list(arg, "!If", Some(3))?;
                let cond = self.text(&l[0], "!If condition", d)?;
                let branch = if self.condition(&cond, line, d)? {
                    &l[1]
                } else {
                    &l[2]
                };
                self.node(branch, d)
            }
            "Equals" | "Not" | "And" | "Or" => {
                let b = self.boolean(f, arg, d)?;
                Ok(Some(Node::new(Value::Bool(b), pos)))
            }
            "Join" => {
                let l = self.list(arg, "!Join", Some(2))?;
                let sep = self.text(&l[0], "!Join delimiter", d)?;
                let items = self.value(&l[1], d)?;
                let items = self.list(&items, "!Join", None)?;
                let mut parts = Vec::new();
                for i in &items {
                    parts.push(self.text(i, "!Join item", d)?);
                }
                Ok(Some(Node::str(parts.join(&sep), pos)))
            }
            "Select" => {
                let l = self.list(arg, "!Select", Some(2))?;
                let idx: usize = self
                    .text(&l[0], "!Select index", d)?
                    .parse()
                    .map_err(|_| (line, "!Select index must be a number".to_string()))?;
                let items = self.value(&l[1], d)?;
                let items = self.list(&items, "!Select", None)?;
                let item = items
                    .get(idx)
                    .ok_or((line, format!("!Select index {idx} is out of range")))?;
                self.node(item, d)
            }
            "Split" => {
                let l = self.list(arg, "!Split", Some(2))?;
                let sep = self.text(&l[0], "!Split delimiter", d)?;
                let s = self.text(&l[1], "!Split", d)?;
                Ok(Some(Node::new(
                    Value::Seq(s.split(sep.as_str()).map(|p| Node::str(p, pos)).collect()),
                    pos,
                )))
            }
            other => Err((line, format!("!{other} is not supported yet"))),
        }
    }

    /// Whether `n` refers to a resource that is not a function (`!Ref Table`,
    /// `!GetAtt Queue.Arn`, `${Bucket}` in a `!Sub`): only the engine can resolve it.
    fn needs_resource(&self, n: &Node) -> bool {
        let other = |id: &str| matches!(self.resources.get(id), Some((_, None)));
        if let Some((f, arg)) = intrinsic(n) {
            match f.as_str() {
                "Ref" => return arg.as_str().is_some_and(other),
                "GetAtt" => {
                    let id = match &arg.value {
                        Value::Str(s) => s.split('.').next().unwrap_or_default().to_string(),
                        _ => arg
                            .as_seq()
                            .and_then(|l| l.first())
                            .and_then(Node::scalar_text)
                            .unwrap_or_default(),
                    };
                    return other(&id);
                }
                "Sub" => {
                    let (tmpl, vars) = match &arg.value {
                        Value::Seq(items) if items.len() == 2 => {
                            (items[0].as_str().unwrap_or_default(), Some(&items[1]))
                        }
                        _ => (arg.as_str().unwrap_or_default(), None),
                    };
                    let local = |name: &str| vars.is_some_and(|v| v.get(name).is_some());
                    let mut rest = tmpl;
                    while let Some(i) = rest.find("${") {
                        let after = &rest[i + 2..];
                        let Some(end) = after.find('}') else { break };
                        let name = after[..end].trim();
                        let id = name.split('.').next().unwrap_or_default();
                        if !name.starts_with('!') && !local(name) && other(id) {
                            return true;
                        }
                        rest = &after[end + 1..];
                    }
                    return vars.is_some_and(|v| self.needs_resource(v));
                }
                _ => return self.needs_resource(&arg),
            }
        }
        match &n.value {
            Value::Seq(items) => items.iter().any(|i| self.needs_resource(i)),
            Value::Map(m) => m.iter().any(|(_, v)| self.needs_resource(v)),
            _ => false,
        }
    }

    /// A function's `Properties` without what is compiled unevaluated (`Events`,
    /// `Policies`, `Role`), and without the `Environment.Variables` that need a
    /// resource, which are returned apart.
    fn split_function(&self, props: &Node) -> (Option<Node>, Vec<(String, Node)>) {
        let mut deferred = Vec::new();
        let mut out = props.clone();
        if let Value::Map(entries) = &mut out.value {
            // Layers name the app's own layer resources: read from the raw node.
            // A dead-letter queue, and async-invocation settings whose
            // destinations are resources of the app, go to the engine unevaluated.
            entries.retain(|(k, v)| {
                let deferred = match k.as_str() {
                    Some("Events" | "Policies" | "Role" | "Layers" | "DeadLetterQueue") => true,
                    Some("EventInvokeConfig") => self.needs_resource(v),
                    _ => false,
                };
                !deferred
            });
            for (k, v) in entries.iter_mut() {
                if k.as_str() != Some("Environment") {
                    continue;
                }
                if let Value::Map(env) = &mut v.value {
                    for (ek, ev) in env.iter_mut() {
                        if ek.as_str() != Some("Variables") {
                            continue;
                        }
                        if let Value::Map(vars) = &mut ev.value {
                            vars.retain(|(name, value)| {
                                if self.needs_resource(value) {
                                    deferred.push((
                                        name.scalar_text().unwrap_or_default(),
                                        value.clone(),
                                    ));
                                    false
                                } else {
                                    true
                                }
                            });
                        }
                    }
                }
            }
        }
        (Some(out), deferred)
    }

    fn reference(&self, name: &str, line: usize, d: &mut Diags) -> EvalResult {
        let pos = Pos { line, col: 1 };
        let s = |v: &str| Ok(Some(Node::str(v, pos)));
        match name {
            "AWS::Region" => return s(&self.region),
            "AWS::AccountId" => return s(nimbus_core::ACCOUNT_ID),
            "AWS::StackName" => return s(&self.stack),
            "AWS::Partition" => return s("aws"),
            "AWS::URLSuffix" => return s("amazonaws.com"),
            "AWS::StackId" => {
                return s(&format!(
                    "arn:aws:cloudformation:{}:{}:stack/{}/nimbus",
                    self.region,
                    nimbus_core::ACCOUNT_ID,
                    self.stack
                ))
            }
            "AWS::NoValue" => return Ok(None),
            _ => {}
        }
        if let Some(v) = self.params.get(name) {
            return Ok(Some(v.clone()));
        }
        match self.resources.get(name) {
            Some((_, Some(fname))) => s(fname),
            // An event's `ApiId`/`RestApiId`: the API's logical id links them.
            Some((ty, None))
                if ty == "AWS::Serverless::HttpApi" || ty == "AWS::Serverless::Api" =>
            {
                s(name)
            }
            Some((ty, None)) => {
                d.unsupported(
                    line,
                    format!("!Ref {name}: {ty} is not supported yet; it resolves to {name:?}"),
                );
                s(name)
            }
            None => Err((line, format!("!Ref {name}: no such parameter or resource"))),
        }
    }

    fn get_att(&self, res: &str, attr: &str, line: usize) -> Result<String, (usize, String)> {
        match (self.resources.get(res), attr) {
            (Some((_, Some(fname))), "Arn") => {
                Ok(nimbus_core::function_arn(&self.region, fname, None))
            }
            (Some((ty, _)), _) => Err((
                line,
                format!("!GetAtt {res}.{attr}: not supported yet for {ty}"),
            )),
            (None, _) => Err((line, format!("!GetAtt {res}.{attr}: no such resource"))),
        }
    }

    fn sub(
        &self,
        t: &str,
        vars: &BTreeMap<String, String>,
        line: usize,
        d: &mut Diags,
    ) -> Result<String, (usize, String)> {
        let mut out = String::new();
        let mut rest = t;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            if let Some(lit) = after.strip_prefix('!') {
                // `${!Literal}` writes `${Literal}`.
                out.push_str("${");
                rest = lit;
                continue;
            }
            let end = after
                .find('}')
                .ok_or((line, format!("!Sub {t:?}: unclosed ${{")))?;
            let name = after[..end].trim();
            let v = if let Some(v) = vars.get(name) {
                v.clone()
            } else if let Some((r, a)) = name.split_once('.').filter(|_| !name.starts_with("AWS::"))
            {
                self.get_att(r, a, line)?
            } else {
                self.reference(name, line, d)?
                    .and_then(|n| n.scalar_text())
                    .ok_or((line, format!("!Sub ${{{name}}} is not a string")))?
            };
            out.push_str(&v);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn boolean(&self, f: &str, arg: &Node, d: &mut Diags) -> Result<bool, (usize, String)> {
        match f {
            "Equals" => {
                let l = self.list(arg, "!Equals", Some(2))?;
                let a = self.value(&l[0], d)?;
                let b = self.value(&l[1], d)?;
                Ok(
                    a.scalar_text() == b.scalar_text() && a.scalar_text().is_some()
                        || (a.scalar_text().is_none() && a.value == b.value),
                )
            }
            "Not" => {
                let l = self.list(arg, "!Not", Some(1))?;
                Ok(!self.cond_node(&l[0], d)?)
            }
            "And" => {
                let mut all = true;
                for c in self.list(arg, "!And", None)? {
                    all &= self.cond_node(&c, d)?;
                }
                Ok(all)
            }
            "Or" => {
                let mut any = false;
                for c in self.list(arg, "!Or", None)? {
                    any |= self.cond_node(&c, d)?;
                }
                Ok(any)
            }
            _ => Err((arg.pos.line, format!("!{f} is not a condition function"))),
        }
    }

    /// A condition expression: `!Equals`, `!Not`, …, `{Condition: Name}`, `!Condition Name`.
    fn cond_node(&self, n: &Node, d: &mut Diags) -> Result<bool, (usize, String)> {
        if n.tag.as_deref() == Some("Condition") {
            return self.condition(n.as_str().unwrap_or(""), n.pos.line, d);
        }
        if let Some(c) = n.get("Condition").and_then(Node::as_str) {
            if n.as_map().is_some_and(|m| m.len() == 1) {
                return self.condition(c, n.pos.line, d);
            }
        }
        if let Some((f, arg)) = intrinsic(n) {
            if matches!(f.as_str(), "Equals" | "Not" | "And" | "Or") {
                return self.boolean(&f, &arg, d);
            }
        }
        match self.value(n, d)?.value {
            Value::Bool(b) => Ok(b),
            _ => Err((
                n.pos.line,
                "a condition must be !Equals, !Not, !And, !Or or !Condition".into(),
            )),
        }
    }

    fn condition(&self, name: &str, line: usize, d: &mut Diags) -> Result<bool, (usize, String)> {
        if let Some(b) = self.cond_cache.borrow().get(name) {
            return Ok(*b);
        }
        let node = self.conditions.and_then(|c| c.get(name)).ok_or((
            line,
            format!("condition {name:?} is not defined in Conditions"),
        ))?;
        // A cycle shows as a missing entry while it is being evaluated.
        self.cond_cache.borrow_mut().insert(name.to_string(), false);
        let b = self.cond_node(node, d)?;
        self.cond_cache.borrow_mut().insert(name.to_string(), b);
        Ok(b)
    }
}

pub(crate) fn interpret(root: &Node, dir: &Path, opts: &Options, d: &mut Diags) -> Option<App> {
    let top = fields(d, root, "", TOP)?;
    match top.get("Transform") {
        Some(t) => {
            let ok = match &t.val.value {
                Value::Str(s) => s == TRANSFORM,
                Value::Seq(items) => items.iter().any(|i| i.as_str() == Some(TRANSFORM)),
                _ => false,
            };
            if !ok {
                d.error(t.line(), format!("Transform must be {TRANSFORM}"));
            }
        }
        None => d.error(
            1,
            format!("Transform: {TRANSFORM} is required (this is not a SAM template)"),
        ),
    }
    if let Some(f) = top.get("Mappings") {
        d.unsupported(f.line(), "Mappings (and !FindInMap)");
    }
    let stack = opts.stack_name.clone().unwrap_or_else(|| {
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        sanitize(
            &abs.file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "app".into()),
        )
    });
    if opts.stage.is_some() {
        d.warn(
            1,
            "--stage applies to serverless.yml; a SAM template takes --parameter-overrides",
        );
    }
    let region = opts
        .region
        .clone()
        .unwrap_or_else(|| nimbus_core::DEFAULT_REGION.to_string());

    // Parameters, with overrides.
    let mut params = BTreeMap::new();
    if let Some(pf) = top.get("Parameters") {
        if let Some(pmap) = pf.val.as_map() {
            for (k, v) in pmap {
                let name = k.scalar_text().unwrap_or_default();
                let path = format!("Parameters.{name}");
                let Some(f) = fields(
                    d,
                    v,
                    &path,
                    &[
                        "Type",
                        "Default",
                        "AllowedValues",
                        "AllowedPattern",
                        "Description",
                        "ConstraintDescription",
                        "MinLength",
                        "MaxLength",
                        "MinValue",
                        "MaxValue",
                        "NoEcho",
                    ],
                ) else {
                    continue;
                };
                let ty = f
                    .get("Type")
                    .and_then(|t| t.val.scalar_text())
                    .unwrap_or_else(|| "String".into());
                let value = match opts.parameter_overrides.get(&name) {
                    Some(v) => Some(v.clone()),
                    None => f.get("Default").and_then(|x| x.val.scalar_text()),
                };
                let Some(value) = value else {
                    d.error(
                        k.pos.line,
                        format!("parameter {name} has no Default; give it with --parameter-overrides {name}=VALUE"),
                    );
                    continue;
                };
                if let Some(allowed) = f.get("AllowedValues").and_then(|a| a.val.as_seq()) {
                    let allowed: Vec<String> =
                        allowed.iter().filter_map(Node::scalar_text).collect();
                    if !allowed.contains(&value) {
                        d.error(
                            k.pos.line,
                            format!("parameter {name}: {value:?} is not one of {allowed:?}"),
                        );
                    }
                }
                let node = if ty == "CommaDelimitedList" || ty.starts_with("List<") {
                    Node::new(
                        Value::Seq(
                            value
                                .split(',')
                                .map(|s| Node::str(s.trim(), k.pos))
                                .collect(),
                        ),
                        k.pos,
                    )
                } else {
                    Node::str(value, k.pos)
                };
                params.insert(name, node);
            }
        } else if !pf.val.is_null() {
            d.error(pf.line(), "Parameters must be a mapping");
        }
    }
    for name in opts.parameter_overrides.keys() {
        if !params.contains_key(name) {
            d.warn(
                1,
                format!("--parameter-overrides {name}: the template has no such parameter"),
            );
        }
    }

    let Some(resources) = top.get("Resources").and_then(|r| r.val.as_map()) else {
        d.error(1, "Resources must be a mapping");
        return None;
    };
    // Logical ids first: !Ref and !GetAtt may name a function defined later.
    let mut index = HashMap::new();
    for (k, v) in resources {
        let id = k.scalar_text().unwrap_or_default();
        let ty = v
            .get("Type")
            .and_then(Node::scalar_text)
            .unwrap_or_default();
        let fname = (ty == "AWS::Serverless::Function").then(|| {
            v.path("Properties.FunctionName")
                .and_then(Node::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| truncate(&format!("{stack}-{id}"), 64))
        });
        index.insert(id, (ty, fname));
    }
    let ev = Eval {
        params,
        conditions: top.get("Conditions").map(|c| c.val),
        resources: index,
        stack: stack.clone(),
        region,
        cond_cache: Default::default(),
    };

    // `Globals.Function.Environment` variables that need a resource apply to
    // every function that does not set the variable itself.
    let mut global_env: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let globals_node = top.get("Globals").map(|g| {
        let mut g = g.val.clone();
        if let Some(Value::Map(entries)) = Some(&mut g.value) {
            for (k, v) in entries.iter_mut() {
                if k.as_str() == Some("Function") {
                    let (stripped, deferred) = ev.split_function(v);
                    if let Some(s) = stripped {
                        *v = s;
                    }
                    for (name, value) in deferred {
                        global_env.insert(name, crate::cfn::to_cfn(&value, d));
                    }
                }
            }
        }
        g
    });
    let globals = match &globals_node {
        Some(g) => globals(d, g, &ev),
        None => None,
    };

    let mut app = App {
        name: stack.clone(),
        format: Format::Sam,
        manifest: d.file().to_path_buf(),
        stage: None,
        functions: Vec::new(),
        routes: Vec::new(),
        schedules: Vec::new(),
        layers: Vec::new(),
        template: Default::default(),
        gateway: Default::default(),
    };
    // `Globals.Function.Layers` come before a function's own (SAM adds lists).
    let global_layers: Vec<crate::LayerUse> = top
        .get("Globals")
        .and_then(|g| g.val.path("Function.Layers"))
        .map(|n| layer_uses(d, n, "Globals.Function.Layers", &ev))
        .unwrap_or_default();
    let mut api_binary_types: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Each `AWS::Serverless::HttpApi`'s CORS and Auth by logical id; "" is the
    // implicit API (`Globals.HttpApi` only).
    let mut http_apis: BTreeMap<String, HttpApiSettings> = BTreeMap::new();
    let mut route_apis: BTreeMap<usize, RouteApi> = BTreeMap::new();
    for (id, (ty, _)) in &ev.resources {
        if ty == "AWS::Serverless::HttpApi" {
            http_apis.insert(id.clone(), HttpApiSettings::default());
        }
    }
    let global_http_api = match globals_node.as_ref().and_then(|g| g.get("HttpApi")) {
        Some(n) => match ev.node(n, d) {
            Ok(Some(n)) => {
                let mut g = HttpApiSettings::default();
                if let Some(c) = n.get("CorsConfiguration") {
                    g.cors = Some(
                        crate::gateway::sam_cors(d, c, "Globals.HttpApi.CorsConfiguration")
                            .map(|x| (x, c.pos.line)),
                    );
                }
                if let Some(a) = n.get("Auth") {
                    let (auths, default) =
                        crate::gateway::sam_auth(d, a, "Globals.HttpApi.Auth", &app.name);
                    g.authorizers = Some(auths);
                    g.default = default;
                }
                g
            }
            Ok(None) => HttpApiSettings::default(),
            Err((line, e)) => {
                d.error(line, e);
                HttpApiSettings::default()
            }
        },
        None => HttpApiSettings::default(),
    };
    let mut pending_s3 = Vec::new();
    for (id, (ty, fname)) in &ev.resources {
        if let (true, Some(name)) = (ty == "AWS::Serverless::Function", fname) {
            app.template.functions.insert(id.clone(), name.clone());
        }
    }
    for (k, v) in resources {
        let id = k.scalar_text().unwrap_or_default();
        let path = format!("Resources.{id}");
        let Some(rf) = fields(
            d,
            v,
            &path,
            &[
                "Type",
                "Properties",
                "Condition",
                "DependsOn",
                "Metadata",
                "DeletionPolicy",
                "UpdateReplacePolicy",
            ],
        ) else {
            continue;
        };
        let Some(ty) = rf
            .get("Type")
            .and_then(|t| fields::string(d, *t, &join(&path, "Type")))
        else {
            d.error(k.pos.line, format!("{path}.Type is required"));
            continue;
        };
        if ty == "AWS::Serverless::LayerVersion" {
            if let Some(c) = rf.get("Condition") {
                let name = c.val.scalar_text().unwrap_or_default();
                match ev.condition(&name, c.line(), d) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err((line, e)) => {
                        d.error(line, e);
                        continue;
                    }
                }
            }
            if let Some(l) = layer_version(
                d,
                &id,
                k.pos.line,
                rf.get("Properties").map(|p| p.val),
                dir,
                &ev,
            ) {
                app.layers.push(l);
            }
            continue;
        }
        // Everything but the functions and APIs goes to the engine as written.
        if !matches!(
            ty.as_str(),
            "AWS::Serverless::Function" | "AWS::Serverless::HttpApi" | "AWS::Serverless::Api"
        ) {
            template_resource(d, &id, k.pos.line, v, &ty, &path, &mut app.template);
            continue;
        }
        if let Some(c) = rf.get("Condition") {
            let name = c.val.scalar_text().unwrap_or_default();
            match ev.condition(&name, c.line(), d) {
                Ok(true) => {}
                Ok(false) => continue,
                Err((line, e)) => {
                    d.error(line, e);
                    continue;
                }
            }
        }
        // A function's events, policies and the environment variables that need a
        // resource are compiled for the engine, unevaluated.
        let raw = rf.get("Properties").map(|p| p.val);
        let (stripped, deferred_env) = match (ty.as_str(), raw) {
            ("AWS::Serverless::Function", Some(r)) => ev.split_function(r),
            _ => (raw.cloned(), Vec::new()),
        };
        let props = match stripped.as_ref() {
            Some(p) => match ev.node(p, d) {
                Ok(Some(n)) => n,
                Ok(None) => Node::new(Value::Null, p.pos),
                Err((line, e)) => {
                    d.error(line, e);
                    continue;
                }
            },
            None => Node::new(Value::Null, k.pos),
        };
        match ty.as_str() {
            "AWS::Serverless::Function" => {
                let empty = Node::new(Value::Null, k.pos);
                let raw = raw.unwrap_or(&empty);
                let mut env = global_env.clone();
                let mut own = BTreeMap::new();
                for (name, value) in deferred_env {
                    own.insert(name, crate::cfn::to_cfn(&value, d));
                }
                function(
                    d,
                    &id,
                    k.pos.line,
                    &props,
                    raw,
                    globals.as_ref(),
                    dir,
                    &ev,
                    &mut app,
                    &mut pending_s3,
                    &mut route_apis,
                );
                // A variable the function sets plainly itself wins over a global one.
                let own_plain: Vec<String> = raw
                    .path("Environment.Variables")
                    .and_then(Node::as_map)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|(_, v)| !ev.needs_resource(v))
                    .filter_map(|(k, _)| k.scalar_text())
                    .collect();
                env.retain(|k, _| !own_plain.contains(k));
                env.extend(own);
                let mut layers = global_layers.clone();
                if let Some(n) = raw.get("Layers") {
                    layers.extend(layer_uses(d, n, &format!("{path}.Properties.Layers"), &ev));
                }
                if layers.len() > 5 {
                    d.error(
                        raw.get("Layers").map(|n| n.pos.line).unwrap_or(k.pos.line),
                        format!("{path}: a function takes at most 5 layers (Globals included)"),
                    );
                }
                if let Some(f) = app.functions.last_mut().filter(|f| f.key == id) {
                    f.layers = layers;
                    for k in env.keys() {
                        f.environment.remove(k);
                    }
                    if !env.is_empty() {
                        app.template.function_environment.insert(id.clone(), env);
                    }
                }
            }
            "AWS::Serverless::HttpApi" | "AWS::Serverless::Api" => {
                if let Some(pm) = props.as_map() {
                    for (pk, pv) in pm {
                        let key = pk.scalar_text().unwrap_or_default();
                        if key == "BinaryMediaTypes" && ty.as_str() == "AWS::Serverless::Api" {
                            let f = crate::fields::Field { key: pk, val: pv };
                            if let Some(types) = fields::string_list(
                                d,
                                f,
                                &format!("{path}.Properties.BinaryMediaTypes"),
                            ) {
                                api_binary_types.insert(id.to_string(), types);
                            }
                            continue;
                        }
                        if ty.as_str() == "AWS::Serverless::HttpApi"
                            && matches!(key.as_str(), "Auth" | "CorsConfiguration")
                        {
                            let entry = http_apis.entry(id.to_string()).or_default();
                            let kp = format!("{path}.Properties.{key}");
                            if key == "Auth" {
                                let (auths, default) =
                                    crate::gateway::sam_auth(d, pv, &kp, &app.name);
                                entry.authorizers = Some(auths);
                                entry.default = default;
                            } else {
                                entry.cors = Some(
                                    crate::gateway::sam_cors(d, pv, &kp).map(|c| (c, pk.pos.line)),
                                );
                            }
                            continue;
                        }
                        if matches!(
                            key.as_str(),
                            "Auth"
                                | "CorsConfiguration"
                                | "Cors"
                                | "Domain"
                                | "DefinitionBody"
                                | "DefinitionUri"
                                | "AccessLogSettings"
                        ) {
                            d.unsupported(
                                pk.pos.line,
                                format!("{path}.Properties.{key}: the gateway does not apply it yet; its routes deploy without it"),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    crate::sam_events::apply_s3(d, pending_s3, &mut app.template);
    for (name, value) in &ev.params {
        app.template
            .parameters
            .insert(name.clone(), value.to_json());
    }
    if let Some(c) = top.get("Conditions") {
        crate::cfn::conditions_section(d, c.val, "Conditions", &mut app.template);
    }
    if let Some(o) = top.get("Outputs") {
        crate::cfn::outputs_section(d, o.val, "Outputs", &mut app.template);
    }
    crate::cfn::check_references(d, &app.template);
    // A REST route takes its API's binary media types: the named
    // `AWS::Serverless::Api`'s, else the implicit API's (`Globals.Api`).
    let global_binary: Vec<String> = globals
        .as_ref()
        .and_then(|g| g.to_json().pointer("/Api/BinaryMediaTypes").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for r in app.routes.iter_mut().filter(|r| r.rest) {
        r.binary_media_types = match r
            .rest_api_id
            .as_ref()
            .and_then(|id| api_binary_types.get(id))
        {
            Some(types) => types.clone(),
            None => global_binary.clone(),
        };
    }
    check_duplicate_routes(d, &app.routes);
    http_api_gateway(d, &mut app, &http_apis, global_http_api, &route_apis);
    Some(app)
}

/// One HTTP API's settings as the template gives them (`None`: not given, so
/// `Globals.HttpApi`'s apply).
#[derive(Default)]
struct HttpApiSettings {
    cors: Option<Option<(serde_json::Value, usize)>>,
    authorizers: Option<Vec<crate::gateway::Authorizer>>,
    default: Option<String>,
}

/// What an `HttpApi` event says about its API and authorizer.
struct RouteApi {
    /// The `AWS::Serverless::HttpApi` logical id; `None` is the implicit API.
    api: Option<String>,
    /// `Some(None)`: `Auth.Authorizer: NONE`.
    authorizer: Option<Option<String>>,
    scopes: Vec<String>,
}

/// Merge the HTTP APIs' CORS and authorizers into the app's one gateway, and
/// give each route its API's authorizer.
fn http_api_gateway(
    d: &mut Diags,
    app: &mut App,
    apis: &BTreeMap<String, HttpApiSettings>,
    global: HttpApiSettings,
    route_apis: &BTreeMap<usize, RouteApi>,
) {
    let empty = HttpApiSettings::default();
    let settings = |id: &Option<String>| -> (
        Option<(serde_json::Value, usize)>,
        Vec<crate::gateway::Authorizer>,
        Option<String>,
    ) {
        let own = id.as_ref().and_then(|i| apis.get(i)).unwrap_or(&empty);
        let cors = match &own.cors {
            Some(c) => c.clone(),
            None => global.cors.clone().flatten(),
        };
        let (auths, default) = match &own.authorizers {
            Some(a) => (a.clone(), own.default.clone()),
            None => (
                global.authorizers.clone().unwrap_or_default(),
                global.default.clone(),
            ),
        };
        (cors, auths, default)
    };
    // The APIs in use: every declared one, and the implicit one when a route
    // uses it.
    let mut used: Vec<Option<String>> = apis.keys().cloned().map(Some).collect();
    let implicit_used = app
        .routes
        .iter()
        .enumerate()
        .any(|(i, r)| !r.rest && route_apis.get(&i).is_some_and(|a| a.api.is_none()));
    if implicit_used || apis.is_empty() {
        used.push(None);
    }
    let mut cors: Option<(serde_json::Value, usize)> = None;
    for id in &used {
        let (c, auths, _) = settings(id);
        if let Some((c, line)) = c {
            match &cors {
                Some((prev, _)) if *prev != c => d.unsupported(
                    line,
                    "a second, different CORS configuration: the Nimbus gateway has one for all of an app's HTTP API routes",
                ),
                Some(_) => {}
                None => cors = Some((c, line)),
            }
        }
        for a in auths {
            match app.gateway.authorizers.iter().find(|b| b.name == a.name) {
                Some(b) if b.kind != a.kind => d.error(
                    a.line,
                    format!(
                        "authorizer {:?} is declared differently by two HTTP APIs; authorizer names are shared by the app",
                        a.name
                    ),
                ),
                Some(_) => {}
                None => app.gateway.authorizers.push(a),
            }
        }
    }
    if let Some((c, line)) = cors {
        app.gateway.cors = Some(c);
        app.gateway.cors_line = line;
    }
    for (i, r) in app.routes.iter_mut().enumerate() {
        let Some(ra) = route_apis.get(&i) else {
            continue;
        };
        let (_, auths, default) = settings(&ra.api);
        let name = match &ra.authorizer {
            Some(explicit) => explicit.clone(),
            None => default,
        };
        if let Some(n) = &name {
            if !auths.iter().any(|a| &a.name == n) {
                d.error(
                    r.line,
                    format!(
                        "route {}: its HTTP API has no authorizer named {n:?} (Auth.Authorizers)",
                        r.route_key
                    ),
                );
                continue;
            }
        }
        r.authorizer = name;
        r.authorization_scopes = ra.scopes.clone();
    }
    crate::gateway::finish(d, &mut app.gateway, &app.routes);
}

fn globals(d: &mut Diags, g: &Node, ev: &Eval) -> Option<Node> {
    let gf = fields(
        d,
        g,
        "Globals",
        &[
            "Function",
            "Api",
            "HttpApi",
            "SimpleTable",
            "LayerVersion",
            "StateMachine",
        ],
    )?;
    for key in ["Api", "HttpApi"] {
        if let Some(x) = gf.get(key) {
            for (pk, _) in x.val.as_map().unwrap_or(&[]) {
                let name = pk.scalar_text().unwrap_or_default();
                // HTTP APIs' Auth and CorsConfiguration are applied (below).
                let applied =
                    key == "HttpApi" && matches!(name.as_str(), "Auth" | "CorsConfiguration");
                if !applied
                    && matches!(
                        name.as_str(),
                        "Auth" | "Cors" | "CorsConfiguration" | "Domain"
                    )
                {
                    d.unsupported(
                        pk.pos.line,
                        format!("Globals.{key}.{name}: the gateway does not apply it yet"),
                    );
                }
            }
        }
    }
    let f = gf.get("Function")?;
    match ev.node(f.val, d) {
        Ok(n) => n,
        Err((line, e)) => {
            d.error(line, e);
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn function(
    d: &mut Diags,
    id: &str,
    line: usize,
    props: &Node,
    raw: &Node,
    globals: Option<&Node>,
    dir: &Path,
    ev: &Eval,
    app: &mut App,
    pending_s3: &mut Vec<crate::sam_events::PendingS3>,
    route_apis: &mut BTreeMap<usize, RouteApi>,
) {
    let path = format!("Resources.{id}.Properties");
    let empty = Node::new(Value::Null, Pos::default());
    let Some(pf) = fields(d, props, &path, FUNCTION) else {
        return;
    };
    let gf = fields(d, globals.unwrap_or(&empty), "Globals.Function", FUNCTION).unwrap_or_default();
    for u in FUNCTION_UNSUPPORTED {
        if let Some(f) = pf.get(*u).or(gf.get(*u)) {
            d.unsupported(f.line(), format!("{path}.{u} is ignored"));
        }
    }
    if let Some(f) = pf.get("PackageType") {
        if f.val.as_str() == Some("Image") {
            d.unsupported(
                f.line(),
                format!("{path}.PackageType Image: container images"),
            );
            return;
        }
    }
    // A property, else its global.
    let get = |k: &str| pf.get(k).or_else(|| gf.get(k)).copied();
    let name = ev.resources[id].1.clone().unwrap_or_default();
    if !valid_function_name(&name) {
        d.error(
            line,
            format!("function name {name:?} must be 1 to 64 letters, digits, - or _"),
        );
    }
    let code = match get("CodeUri") {
        Some(f) => match &f.val.value {
            Value::Str(s) => dir.join(s),
            _ => {
                d.error(
                    f.line(),
                    format!(
                        "{path}.CodeUri must be a local directory, found {}",
                        f.val.kind()
                    ),
                );
                return;
            }
        },
        None => dir.to_path_buf(),
    };
    if !code.is_dir() {
        let l = get("CodeUri").map_or(line, |f| f.line());
        d.error(
            l,
            format!(
                "{path}.CodeUri: directory {} does not exist",
                code.display()
            ),
        );
        return;
    }
    let Some(runtime) = get("Runtime").and_then(|f| fields::string(d, f, &join(&path, "Runtime")))
    else {
        d.error(
            line,
            format!("{path}.Runtime is required (or Globals.Function.Runtime)"),
        );
        return;
    };
    if let Err(e) = runtime.parse::<nimbus_core::Runtime>() {
        d.error(get("Runtime").map_or(line, |f| f.line()), e.to_string());
        return;
    }
    let handler = match get("Handler") {
        Some(f) => fields::string(d, f, &join(&path, "Handler")),
        None => {
            d.error(line, format!("{path}.Handler is required"));
            None
        }
    };
    let Some(handler) = handler else { return };
    if let Some(problem) = handler_file_problem(&runtime, &handler, &code) {
        d.error(
            get("Handler").map_or(line, |f| f.line()),
            format!("{path}.Handler: {problem}"),
        );
    }
    let mut environment = BTreeMap::new();
    for src in [gf.get("Environment"), pf.get("Environment")]
        .into_iter()
        .flatten()
    {
        let epath = join(&path, "Environment");
        if let Some(ef) = fields(d, src.val, &epath, &["Variables"]) {
            if let Some(vars) = ef.get("Variables") {
                if let Some(m) = fields::string_map(d, *vars, &join(&epath, "Variables")) {
                    environment.extend(m);
                }
            }
        }
    }
    let provisioned = match get("ProvisionedConcurrencyConfig") {
        Some(f) => {
            let p = join(&path, "ProvisionedConcurrencyConfig");
            fields(d, f.val, &p, &["ProvisionedConcurrentExecutions"])
                .and_then(|m| m.get("ProvisionedConcurrentExecutions").copied())
                .and_then(|x| {
                    fields::int(
                        d,
                        x,
                        &join(&p, "ProvisionedConcurrentExecutions"),
                        0,
                        100_000,
                    )
                })
                .unwrap_or(0)
        }
        None => 0,
    };
    let alias = get("AutoPublishAlias")
        .and_then(|f| fields::string(d, f, &join(&path, "AutoPublishAlias")));
    if provisioned > 0 && alias.is_none() {
        d.warn(line, format!("{path}.ProvisionedConcurrencyConfig needs AutoPublishAlias in SAM; Nimbus applies it to the function"));
    }
    let url = get("FunctionUrlConfig").and_then(|f| {
        let p = join(&path, "FunctionUrlConfig");
        let uf = fields(d, f.val, &p, &["AuthType", "Cors", "InvokeMode"])?;
        let auth = match uf.get("AuthType").and_then(|a| a.val.as_str()) {
            Some(a @ ("NONE" | "AWS_IAM")) => a.to_string(),
            _ => {
                d.error(f.line(), format!("{p}.AuthType must be NONE or AWS_IAM"));
                return None;
            }
        };
        if let Some(m) = uf.get("InvokeMode") {
            if m.val.as_str() != Some("BUFFERED") {
                d.unsupported(m.line(), format!("{p}.InvokeMode: only BUFFERED"));
            }
        }
        Some(crate::FunctionUrl {
            auth_type: auth,
            cors: uf.get("Cors").map(|c| c.val.to_json()),
        })
    });
    let event_invoke = get("EventInvokeConfig")
        .and_then(|f| event_invoke(d, f, &join(&path, "EventInvokeConfig")));
    // What names resources of the app is applied by the engine, as SAM's
    // transform makes `<Function>EventInvokeConfig` and the function's
    // `DeadLetterConfig`.
    let mut event_invoke_in_template = false;
    if let Some((k, n)) = raw
        .as_map()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_str() == Some("EventInvokeConfig"))
        })
        .filter(|(_, n)| ev.needs_resource(n))
    {
        let ep = join(&path, "EventInvokeConfig");
        if let Some(props) = engine_event_invoke(d, n, &ep, id, alias.as_deref()) {
            event_invoke_in_template = true;
            app.template.resources.insert(
                format!("{id}EventInvokeConfig"),
                template_resource_of("AWS::Lambda::EventInvokeConfig", props, d, k.pos.line),
            );
        }
    }
    if let Some((k, n)) = raw.as_map().and_then(|m| {
        m.iter()
            .find(|(k, _)| k.as_str() == Some("DeadLetterQueue"))
    }) {
        let dp = join(&path, "DeadLetterQueue");
        if let Some(df) = fields(d, n, &dp, &["Type", "TargetArn"]) {
            let ty = df
                .get("Type")
                .and_then(|x| fields::string(d, *x, &join(&dp, "Type")));
            match (ty.as_deref(), df.get("TargetArn")) {
                (Some("SQS" | "SNS"), Some(t)) => {
                    let target = crate::cfn::to_cfn(t.val, d);
                    app.template.resources.insert(
                        format!("{id}DeadLetterConfig"),
                        template_resource_of(
                            "Nimbus::Lambda::DeadLetterConfig",
                            serde_json::json!({"FunctionName": {"Ref": id}, "TargetArn": target}),
                            d,
                            k.pos.line,
                        ),
                    );
                }
                (Some("SQS" | "SNS"), None) => {
                    d.error(k.pos.line, format!("{dp}.TargetArn is required"))
                }
                (other, _) => d.error(
                    k.pos.line,
                    format!("{dp}.Type must be SQS or SNS, found {other:?}"),
                ),
            }
        }
    }
    let func = Function {
        key: id.to_string(),
        name: name.clone(),
        runtime,
        handler,
        code,
        memory_mb: get("MemorySize")
            .and_then(|f| fields::int(d, f, &join(&path, "MemorySize"), 128, 10240)),
        timeout_s: get("Timeout").and_then(|f| fields::int(d, f, &join(&path, "Timeout"), 1, 900)),
        environment,
        reserved_concurrency: get("ReservedConcurrentExecutions").and_then(|f| {
            fields::int(
                d,
                f,
                &join(&path, "ReservedConcurrentExecutions"),
                0,
                100_000,
            )
        }),
        provisioned_concurrency: provisioned,
        description: get("Description")
            .and_then(|f| fields::string(d, f, &join(&path, "Description")))
            .unwrap_or_default(),
        event_invoke,
        event_invoke_in_template,
        package_patterns: Default::default(),
        alias: alias.clone(),
        url,
        layers: Vec::new(),
        line,
    };
    let mut event_policies = Vec::new();
    if let Some((k, evs)) = raw
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("Events")))
    {
        let f = Field { key: k, val: evs };
        events(
            d,
            f,
            &join(&path, "Events"),
            &func,
            ev,
            app,
            pending_s3,
            &mut event_policies,
            route_apis,
        );
    }
    let role = raw
        .get("Role")
        .or_else(|| globals.and_then(|g| g.get("Role")));
    app.template.function_roles.insert(
        id.to_string(),
        match role {
            Some(r) => crate::cfn::to_cfn(r, d),
            None => serde_json::json!({"Fn::GetAtt": [format!("{id}Role"), "Arn"]}),
        },
    );
    if role.is_none() {
        let policies = raw.get("Policies");
        crate::sam_events::role(
            d,
            &crate::sam_events::Func {
                logical_id: id,
                alias: None,
            },
            policies,
            &event_policies,
            line,
            &mut app.template,
        );
    }
    app.functions.push(func);
}

fn event_invoke(d: &mut Diags, f: Field, path: &str) -> Option<EventInvoke> {
    let ef = fields(
        d,
        f.val,
        path,
        &[
            "MaximumEventAgeInSeconds",
            "MaximumRetryAttempts",
            "DestinationConfig",
        ],
    )?;
    let mut out = EventInvoke {
        maximum_event_age_s: ef
            .get("MaximumEventAgeInSeconds")
            .and_then(|x| fields::int(d, *x, &join(path, "MaximumEventAgeInSeconds"), 60, 21600)),
        maximum_retry_attempts: ef
            .get("MaximumRetryAttempts")
            .and_then(|x| fields::int(d, *x, &join(path, "MaximumRetryAttempts"), 0, 2)),
        ..Default::default()
    };
    if let Some(dc) = ef.get("DestinationConfig") {
        let dp = join(path, "DestinationConfig");
        if let Some(df) = fields(d, dc.val, &dp, &["OnSuccess", "OnFailure"]) {
            for (which, slot) in [
                ("OnSuccess", &mut out.on_success),
                ("OnFailure", &mut out.on_failure),
            ] {
                let Some(t) = df.get(which) else { continue };
                let tp = join(&dp, which);
                let Some(tf) = fields(d, t.val, &tp, &["Type", "Destination"]) else {
                    continue;
                };
                let ty = tf
                    .get("Type")
                    .and_then(|x| x.val.scalar_text())
                    .unwrap_or_default();
                if !destination_type(d, &ty, tf.contains_key("Destination"), t.line(), &tp) {
                    continue;
                }
                match tf
                    .get("Destination")
                    .and_then(|x| fields::string(d, *x, &join(&tp, "Destination")))
                {
                    Some(arn) => *slot = Some(arn),
                    None => d.error(t.line(), format!("{tp}.Destination is required")),
                }
            }
        }
    }
    Some(out)
}

/// A destination `Type` SAM takes: Lambda, SQS, SNS, EventBridge (with a
/// `Destination`); S3Bucket and SAM-created queues/topics are not supported.
fn destination_type(d: &mut Diags, ty: &str, has_dest: bool, line: usize, path: &str) -> bool {
    match ty {
        "Lambda" | "SQS" | "SNS" | "EventBridge" if has_dest => true,
        "SQS" | "SNS" => {
            d.unsupported(
                line,
                format!("{path}: a {ty} destination without Destination (a queue or topic SAM would create); give its ARN"),
            );
            false
        }
        "S3Bucket" => {
            d.unsupported(line, format!("{path}: S3 bucket destinations"));
            false
        }
        "Lambda" | "EventBridge" => {
            d.error(line, format!("{path}.Destination is required"));
            false
        }
        other => {
            d.error(
                line,
                format!("{path}.Type must be Lambda, SQS, SNS or EventBridge, found {other:?}"),
            );
            false
        }
    }
}

/// `EventInvokeConfig` naming resources of the app, as the properties of an
/// `AWS::Lambda::EventInvokeConfig` (intrinsics unevaluated, for the engine).
fn engine_event_invoke(
    d: &mut Diags,
    n: &Node,
    path: &str,
    id: &str,
    alias: Option<&str>,
) -> Option<serde_json::Value> {
    let ef = fields(
        d,
        n,
        path,
        &[
            "MaximumEventAgeInSeconds",
            "MaximumRetryAttempts",
            "DestinationConfig",
        ],
    )?;
    let mut props = serde_json::json!({
        "FunctionName": {"Ref": id},
        "Qualifier": alias.unwrap_or("$LATEST"),
    });
    if let Some(x) = ef.get("MaximumEventAgeInSeconds") {
        props["MaximumEventAgeInSeconds"] =
            fields::int(d, *x, &join(path, "MaximumEventAgeInSeconds"), 60, 21600)?.into();
    }
    if let Some(x) = ef.get("MaximumRetryAttempts") {
        props["MaximumRetryAttempts"] =
            fields::int(d, *x, &join(path, "MaximumRetryAttempts"), 0, 2)?.into();
    }
    if let Some(dc) = ef.get("DestinationConfig") {
        let dp = join(path, "DestinationConfig");
        let df = fields(d, dc.val, &dp, &["OnSuccess", "OnFailure"])?;
        let mut config = serde_json::json!({});
        for which in ["OnSuccess", "OnFailure"] {
            let Some(t) = df.get(which) else { continue };
            let tp = join(&dp, which);
            let tf = fields(d, t.val, &tp, &["Type", "Destination"])?;
            let ty = tf
                .get("Type")
                .and_then(|x| x.val.scalar_text())
                .unwrap_or_default();
            if !destination_type(d, &ty, tf.contains_key("Destination"), t.line(), &tp) {
                continue;
            }
            config[which] =
                serde_json::json!({"Destination": crate::cfn::to_cfn(tf["Destination"].val, d)});
        }
        props["DestinationConfig"] = config;
    }
    Some(props)
}

/// A resource the function's properties generate, declared at `line`.
fn template_resource_of(
    kind: &str,
    properties: serde_json::Value,
    d: &Diags,
    line: usize,
) -> crate::template::Resource {
    crate::template::Resource {
        kind: kind.into(),
        properties,
        depends_on: Vec::new(),
        deletion_policy: None,
        update_replace_policy: None,
        condition: None,
        source: Some(crate::cfn::source(d, line)),
    }
}

#[allow(clippy::too_many_arguments)]
fn events(
    d: &mut Diags,
    f: Field,
    path: &str,
    func: &Function,
    ev: &Eval,
    app: &mut App,
    pending_s3: &mut Vec<crate::sam_events::PendingS3>,
    event_policies: &mut Vec<&'static str>,
    route_apis: &mut BTreeMap<usize, RouteApi>,
) {
    let Some(evs) = f.val.as_map() else {
        if !f.val.is_null() {
            d.error(
                f.line(),
                format!("{path} must be a mapping, found {}", f.val.kind()),
            );
        }
        return;
    };
    for (k, v) in evs {
        let name = k.scalar_text().unwrap_or_default();
        let epath = join(path, &name);
        let Some(ef) = fields(d, v, &epath, &["Type", "Properties"]) else {
            continue;
        };
        let Some(ty) = ef
            .get("Type")
            .and_then(|t| fields::string(d, *t, &join(&epath, "Type")))
        else {
            d.error(k.pos.line, format!("{epath}.Type is required"));
            continue;
        };
        let empty = Node::new(Value::Null, k.pos);
        let raw_props = ef.get("Properties").map_or(&empty, |p| p.val);
        if !matches!(ty.as_str(), "Api" | "HttpApi" | "Schedule" | "ScheduleV2") {
            let sf = crate::sam_events::Func {
                logical_id: &func.key,
                alias: func.alias.as_deref(),
            };
            let pp = join(&epath, "Properties");
            if matches!(
                ty.as_str(),
                "SQS"
                    | "SNS"
                    | "S3"
                    | "DynamoDB"
                    | "Kinesis"
                    | "EventBridgeRule"
                    | "CloudWatchEvent"
            ) {
                if let Some(p) = crate::sam_events::event(
                    d,
                    &sf,
                    &name,
                    &ty,
                    raw_props,
                    &pp,
                    k.pos.line,
                    &mut app.template,
                    pending_s3,
                ) {
                    event_policies.push(p);
                }
            } else {
                d.unsupported(
                    k.pos.line,
                    format!("event {name} of type {ty}: manifests do not wire this event kind yet (create it with the service API or `nimbus mappings`)"),
                );
            }
            continue;
        }
        let evaluated = match ev.node(raw_props, d) {
            Ok(Some(n)) => n,
            Ok(None) => empty.clone(),
            Err((line, e)) => {
                d.error(line, e);
                continue;
            }
        };
        let props = &evaluated;
        let pp = join(&epath, "Properties");
        match ty.as_str() {
            "Api" | "HttpApi" => {
                let known: &[&str] = if ty == "Api" {
                    &[
                        "Path",
                        "Method",
                        "RestApiId",
                        "Auth",
                        "RequestModel",
                        "RequestParameters",
                        "TimeoutInMillis",
                    ]
                } else {
                    &[
                        "Path",
                        "Method",
                        "ApiId",
                        "Auth",
                        "PayloadFormatVersion",
                        "TimeoutInMillis",
                        "RouteSettings",
                    ]
                };
                let Some(pf) = fields(d, props, &pp, known) else {
                    continue;
                };
                let mut event_auth = (None, Vec::new());
                if ty == "HttpApi" {
                    if let Some(x) = pf.get("Auth") {
                        event_auth = crate::gateway::sam_event_auth(d, *x, &join(&pp, "Auth"));
                    }
                }
                for key in ["Auth", "RequestModel", "RequestParameters", "RouteSettings"] {
                    if key == "Auth" && ty == "HttpApi" {
                        continue;
                    }
                    if let Some(x) = pf.get(key) {
                        d.unsupported(x.line(), format!("{pp}.{key}: the gateway does not apply it yet; the route deploys without it"));
                    }
                }
                let method = pf
                    .get("Method")
                    .and_then(|m| fields::string(d, *m, &join(&pp, "Method")));
                let p = pf
                    .get("Path")
                    .and_then(|m| fields::string(d, *m, &join(&pp, "Path")));
                let route_key = match (method, p) {
                    (Some(m), Some(p)) => {
                        let m = if m.eq_ignore_ascii_case("any") || m == "*" {
                            "ANY".to_string()
                        } else {
                            m.to_ascii_uppercase()
                        };
                        format!("{m} {p}")
                    }
                    (None, None) if ty == "HttpApi" => "$default".to_string(),
                    _ => {
                        d.error(k.pos.line, format!("{pp} needs Path and Method"));
                        continue;
                    }
                };
                let payload = match pf.get("PayloadFormatVersion") {
                    Some(x) => fields::payload_version(d, *x, &join(&pp, "PayloadFormatVersion"))
                        .unwrap_or_default(),
                    None if ty == "Api" => "1.0".into(),
                    None => "2.0".into(),
                };
                let timeout_ms = pf
                    .get("TimeoutInMillis")
                    .and_then(|x| fields::int(d, *x, &join(&pp, "TimeoutInMillis"), 50, 30_000))
                    .map(u64::from);
                // `RestApiId: !Ref MyApi` (or the logical id as a string).
                let rest_api_id = pf.get("RestApiId").and_then(|x| match x.val.to_json() {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Object(o) => {
                        o.get("Ref").and_then(|r| r.as_str()).map(str::to_string)
                    }
                    _ => None,
                });
                app.routes.push(Route {
                    route_key,
                    function: func.name.clone(),
                    qualifier: func.alias.clone(),
                    payload_format: payload,
                    rest: ty == "Api",
                    binary_media_types: Vec::new(),
                    rest_api_id: if ty == "Api" { rest_api_id } else { None },
                    timeout_ms,
                    authorizer: None,
                    authorization_scopes: Vec::new(),
                    line: k.pos.line,
                });
                if ty == "HttpApi" {
                    let api = pf.get("ApiId").and_then(|x| match x.val.to_json() {
                        serde_json::Value::String(s) => Some(s),
                        serde_json::Value::Object(o) => {
                            o.get("Ref").and_then(|r| r.as_str()).map(str::to_string)
                        }
                        _ => None,
                    });
                    route_apis.insert(
                        app.routes.len() - 1,
                        RouteApi {
                            api,
                            authorizer: event_auth.0,
                            scopes: event_auth.1,
                        },
                    );
                }
            }
            "Schedule" | "ScheduleV2" => {
                let v2 = ty == "ScheduleV2";
                let known: &[&str] = if v2 {
                    &[
                        "ScheduleExpression",
                        "ScheduleExpressionTimezone",
                        "Input",
                        "State",
                        "Name",
                        "Description",
                        "FlexibleTimeWindow",
                        "RetryPolicy",
                        "DeadLetterConfig",
                        "StartDate",
                        "EndDate",
                        "GroupName",
                        "RoleArn",
                        "KmsKeyArn",
                        "OmitName",
                    ]
                } else {
                    &[
                        "Schedule",
                        "Input",
                        "Enabled",
                        "State",
                        "Name",
                        "Description",
                        "RetryPolicy",
                        "DeadLetterConfig",
                    ]
                };
                let Some(pf) = fields(d, props, &pp, known) else {
                    continue;
                };
                for key in [
                    "RetryPolicy",
                    "DeadLetterConfig",
                    "StartDate",
                    "EndDate",
                    "FlexibleTimeWindow",
                ] {
                    if let Some(x) = pf.get(key) {
                        d.unsupported(x.line(), format!("{pp}.{key} is ignored (retries follow the function's async settings)"));
                    }
                }
                let ekey = if v2 { "ScheduleExpression" } else { "Schedule" };
                let Some(ex) = pf.get(ekey) else {
                    d.error(k.pos.line, format!("{pp}.{ekey} is required"));
                    continue;
                };
                let Some(expr) = fields::string(d, *ex, &join(&pp, ekey)) else {
                    continue;
                };
                if let Err(e) = crate::schedule::check(&expr) {
                    d.error(ex.line(), format!("{pp}.{ekey}: {e}"));
                    continue;
                }
                let mut enabled = true;
                if let Some(x) = pf.get("Enabled") {
                    enabled = fields::boolean(d, *x, &join(&pp, "Enabled")).unwrap_or(true);
                }
                if let Some(x) = pf.get("State") {
                    match x.val.as_str() {
                        Some("ENABLED") => enabled = true,
                        Some("DISABLED") => enabled = false,
                        _ => d.error(x.line(), format!("{pp}.State must be ENABLED or DISABLED")),
                    }
                }
                if let Some(x) = pf.get("ScheduleExpressionTimezone") {
                    if let Some(Err(e)) = x.val.as_str().map(crate::schedule::check_timezone) {
                        d.error(x.line(), format!("{pp}.ScheduleExpressionTimezone: {e}"));
                    }
                }
                let input = pf
                    .get("Input")
                    .and_then(|x| json_input(d, *x, &join(&pp, "Input")));
                let sname = pf
                    .get("Name")
                    .and_then(|x| fields::string(d, *x, &join(&pp, "Name")))
                    .unwrap_or_else(|| truncate(&format!("{}-{name}", func.name), 64));
                app.schedules.push(Schedule {
                    name: sname,
                    expression: expr,
                    function: func.name.clone(),
                    qualifier: func.alias.clone(),
                    input,
                    timezone: pf.get("ScheduleExpressionTimezone").and_then(|x| {
                        fields::string(d, *x, &join(&pp, "ScheduleExpressionTimezone"))
                    }),
                    enabled,
                    line: k.pos.line,
                });
            }
            _ => unreachable!("other event types are handled above"),
        }
    }
}

/// A resource that is neither a function nor an API: into the template as
/// written (`AWS::Serverless::SimpleTable` lowered to `AWS::DynamoDB::Table`).
fn template_resource(
    d: &mut Diags,
    id: &str,
    line: usize,
    v: &Node,
    ty: &str,
    path: &str,
    t: &mut crate::template::Template,
) {
    match ty {
        "AWS::Serverless::SimpleTable" => {
            let Some(rf) = fields(
                d,
                v,
                path,
                &[
                    "Type",
                    "Properties",
                    "Condition",
                    "DependsOn",
                    "Metadata",
                    "DeletionPolicy",
                    "UpdateReplacePolicy",
                ],
            ) else {
                return;
            };
            let props = rf.get("Properties").map(|p| p.val);
            let Some(properties) =
                crate::sam_events::simple_table(d, props, &join(path, "Properties"), line)
            else {
                return;
            };
            // The rest of the resource as any other, with the lowered type.
            let mut lowered = v.clone();
            if let Value::Map(entries) = &mut lowered.value {
                entries.retain(|(k, _)| !matches!(k.as_str(), Some("Properties" | "Type")));
                entries.push((
                    Node::str("Type", v.pos),
                    Node::str("AWS::DynamoDB::Table", v.pos),
                ));
            }
            if let Some(mut r) = crate::cfn::resource(d, id, line, &lowered, path) {
                r.properties = properties;
                crate::cfn::insert(d, t, id.to_string(), r, line);
            }
        }
        "AWS::Serverless::StateMachine"
        | "AWS::Serverless::Application"
        | "AWS::Serverless::GraphQLApi"
        | "AWS::Serverless::Connector" => {
            d.unsupported(line, format!("resource {id} of type {ty} is ignored"))
        }
        _ => {
            if let Some(r) = crate::cfn::resource(d, id, line, v, path) {
                crate::cfn::insert(d, t, id.to_string(), r, line);
            }
        }
    }
}

/// An `AWS::Serverless::LayerVersion` with a local `ContentUri`.
fn layer_version(
    d: &mut Diags,
    id: &str,
    line: usize,
    raw: Option<&Node>,
    dir: &Path,
    ev: &Eval,
) -> Option<crate::Layer> {
    let path = format!("Resources.{id}.Properties");
    let props = match raw {
        Some(p) => match ev.node(p, d) {
            Ok(Some(n)) => n,
            Ok(None) => Node::new(Value::Null, p.pos),
            Err((line, e)) => {
                d.error(line, e);
                return None;
            }
        },
        None => Node::new(Value::Null, Pos { line, col: 1 }),
    };
    let pf = fields(
        d,
        &props,
        &path,
        &[
            "ContentUri",
            "LayerName",
            "Description",
            "CompatibleRuntimes",
            "CompatibleArchitectures",
            "LicenseInfo",
            "RetentionPolicy",
            "PublishLambdaVersion",
        ],
    )?;
    let Some(uri) = pf.get("ContentUri") else {
        d.error(line, format!("{path}.ContentUri is required"));
        return None;
    };
    let Some(rel) = uri.val.as_str() else {
        d.unsupported(
            uri.line(),
            format!("{path}.ContentUri: only a local directory (an S3 location is not fetched)"),
        );
        return None;
    };
    let content = dir.join(rel);
    if !content.is_dir() {
        d.error(
            uri.line(),
            format!("{path}.ContentUri: {rel} is not a directory next to the template"),
        );
        return None;
    }
    let name = pf
        .get("LayerName")
        .and_then(|f| fields::string(d, *f, &join(&path, "LayerName")))
        .unwrap_or_else(|| id.to_string());
    if !crate::valid_layer_name(&name) {
        d.error(
            line,
            format!("{path}.LayerName {name:?} must be 1 to 140 letters, digits, - or _"),
        );
        return None;
    }
    if let Some(f) = pf.get("RetentionPolicy") {
        if let Some(v) = fields::string(d, *f, &join(&path, "RetentionPolicy")) {
            if !v.eq_ignore_ascii_case("retain") && !v.eq_ignore_ascii_case("delete") {
                d.error(
                    f.line(),
                    format!("{path}.RetentionPolicy must be Retain or Delete"),
                );
            }
        }
    }
    let list = |d: &mut Diags, key: &str| {
        pf.get(key)
            .and_then(|f| fields::string_list(d, *f, &join(&path, key)))
            .unwrap_or_default()
    };
    Some(crate::Layer {
        logical_id: id.to_string(),
        name,
        content,
        description: pf
            .get("Description")
            .and_then(|f| fields::string(d, *f, &join(&path, "Description")))
            .unwrap_or_default(),
        compatible_runtimes: list(d, "CompatibleRuntimes"),
        compatible_architectures: list(d, "CompatibleArchitectures"),
        license_info: pf
            .get("LicenseInfo")
            .and_then(|f| fields::string(d, *f, &join(&path, "LicenseInfo"))),
        line,
    })
}

/// A function's `Layers` (or `Globals.Function.Layers`): `!Ref` to one of the
/// template's `AWS::Serverless::LayerVersion`s, or anything evaluating to an ARN.
fn layer_uses(d: &mut Diags, n: &Node, path: &str, ev: &Eval) -> Vec<crate::LayerUse> {
    let Some(items) = n.as_seq() else {
        d.error(
            n.pos.line,
            format!("{path} must be a list, found {}", n.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(id) = crate::ref_target(item) {
            if ev
                .resources
                .get(&id)
                .is_some_and(|(ty, _)| ty == "AWS::Serverless::LayerVersion")
            {
                out.push(crate::LayerUse::App(id));
                continue;
            }
        }
        match ev.node(item, d) {
            Ok(Some(v)) => match v.as_str() {
                Some(arn) => out.push(crate::LayerUse::Arn(arn.to_string())),
                None => d.error(
                    item.pos.line,
                    format!("{path}: each layer is a layer version ARN or !Ref to an AWS::Serverless::LayerVersion"),
                ),
            },
            Ok(None) => {}
            Err((line, e)) => d.error(line, e),
        }
    }
    out
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    truncate(out.trim_matches('-'), 40)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load, yaml};
    use serde_json::json;

    fn eval_ctx(root: &Node) -> Eval<'_> {
        let mut resources = HashMap::new();
        resources.insert(
            "UsersFunction".to_string(),
            (
                "AWS::Serverless::Function".to_string(),
                Some("app-UsersFunction".to_string()),
            ),
        );
        resources.insert(
            "Table".to_string(),
            ("AWS::DynamoDB::Table".to_string(), None),
        );
        Eval {
            params: [
                ("Stage".to_string(), Node::str("prod", Pos::default())),
                ("Mem".to_string(), Node::str("512", Pos::default())),
            ]
            .into(),
            conditions: root.get("Conditions"),
            resources,
            stack: "app".into(),
            region: "eu-west-1".into(),
            cond_cache: Default::default(),
        }
    }

    #[test]
    fn intrinsics_table() {
        let acct = nimbus_core::ACCOUNT_ID;
        let cases: Vec<(&str, Result<serde_json::Value, &str>)> = vec![
            ("!Ref Stage", Ok(json!("prod"))),
            ("{Ref: Stage}", Ok(json!("prod"))),
            ("!Ref AWS::Region", Ok(json!("eu-west-1"))),
            ("!Ref AWS::StackName", Ok(json!("app"))),
            ("!Ref UsersFunction", Ok(json!("app-UsersFunction"))),
            ("!Ref Nope", Err("no such parameter or resource")),
            (
                "!Sub '${AWS::StackName}-${Stage}-x'",
                Ok(json!("app-prod-x")),
            ),
            ("{'Fn::Sub': 'a-${Stage}'}", Ok(json!("a-prod"))),
            (
                "!Sub ['${A}-${Stage}', {A: !Ref Mem}]",
                Ok(json!("512-prod")),
            ),
            ("!Sub 'lit ${!Stage}'", Ok(json!("lit ${Stage}"))),
            (
                "!Sub '${UsersFunction.Arn}'",
                Ok(json!(format!(
                    "arn:aws:lambda:eu-west-1:{acct}:function:app-UsersFunction"
                ))),
            ),
            (
                "!GetAtt UsersFunction.Arn",
                Ok(json!(format!(
                    "arn:aws:lambda:eu-west-1:{acct}:function:app-UsersFunction"
                ))),
            ),
            (
                "{'Fn::GetAtt': [UsersFunction, Arn]}",
                Ok(json!(format!(
                    "arn:aws:lambda:eu-west-1:{acct}:function:app-UsersFunction"
                ))),
            ),
            (
                "!GetAtt Table.StreamArn",
                Err("not supported yet for AWS::DynamoDB::Table"),
            ),
            ("!If [IsProd, 1024, 128]", Ok(json!(1024))),
            ("{'Fn::If': [IsDev, 1024, 128]}", Ok(json!(128))),
            ("!If [IsNotDev, big, small]", Ok(json!("big"))),
            ("!If [Both, yes, no]", Ok(json!("yes"))),
            (
                "!If [Missing, yes, no]",
                Err("condition \"Missing\" is not defined"),
            ),
            ("!Equals [!Ref Stage, prod]", Ok(json!(true))),
            ("!Join ['-', [a, !Ref Stage, c]]", Ok(json!("a-prod-c"))),
            ("!Select [1, [a, b, c]]", Ok(json!("b"))),
            ("!Select [1, !Split [',', 'x,y']]", Ok(json!("y"))),
            ("[a, !Ref AWS::NoValue, b]", Ok(json!(["a", "b"]))),
            (
                "{A: !If [IsDev, x, !Ref AWS::NoValue], B: 1}",
                Ok(json!({"B": 1})),
            ),
            (
                "!FindInMap [M, a, b]",
                Err("!FindInMap is not supported yet"),
            ),
        ];
        let conditions = yaml::parse(
            "Conditions:\n  IsProd: !Equals [!Ref Stage, prod]\n  IsDev: {'Fn::Equals': [!Ref Stage, dev]}\n  IsNotDev: !Not [!Condition IsDev]\n  Both: !And [{Condition: IsProd}, !Or [!Condition IsDev, !Equals [a, a]]]\n",
        )
        .unwrap();
        let ev = eval_ctx(&conditions);
        for (src, want) in cases {
            let node = yaml::parse(&format!("v: {src}\n")).unwrap();
            let mut d = Diags::new(Path::new("t.yaml"));
            let got = ev.node(node.get("v").unwrap(), &mut d);
            match (got, want) {
                (Ok(Some(n)), Ok(w)) => assert_eq!(n.to_json(), w, "{src}"),
                (Err((_, e)), Err(w)) => assert!(e.contains(w), "{src}: {e}"),
                (got, want) => panic!("{src}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn template_dir(t: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("template.yaml"), t).unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(
            dir.path().join("src/app.js"),
            "exports.handler = async () => ({})\n",
        )
        .unwrap();
        dir
    }

    const GOOD: &str = "\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Globals:
  Function:
    Runtime: nodejs20.x
    MemorySize: !If [IsProd, 1024, 256]
    Timeout: 10
    Environment:
      Variables:
        STAGE: !Ref Stage
Resources:
  UsersFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Environment:
        Variables:
          SELF: !Sub '${AWS::StackName}-users'
      EventInvokeConfig:
        MaximumRetryAttempts: 0
        DestinationConfig:
          OnFailure:
            Type: Lambda
            Destination: !GetAtt Dlq.Arn
      Events:
        List:
          Type: HttpApi
          Properties:
            Path: /users
            Method: get
        Create:
          Type: Api
          Properties:
            Path: /users
            Method: post
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 2 * * ? *)
            ScheduleExpressionTimezone: Europe/Paris
            Input: '{\"job\": \"cleanup\"}'
        Queue:
          Type: SQS
          Properties:
            Queue: arn:aws:sqs:us-east-1:1:q
  Dlq:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: my-dlq
      CodeUri: src/
      Handler: app.handler
  Table:
    Type: AWS::DynamoDB::Table
";

    #[test]
    fn full_template() {
        let dir = template_dir(GOOD);
        let opts = Options {
            stack_name: Some("users".into()),
            ..Default::default()
        };
        let l = load(&dir.path().join("template.yaml"), &opts);
        let msgs: Vec<String> = l.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(msgs.is_empty(), "{msgs:#?}");
        let app = l.app.unwrap();
        let t = &app.template;
        assert_eq!(t.resources["Table"].kind, "AWS::DynamoDB::Table");
        assert_eq!(
            t.resources["Table"].source.as_deref(),
            Some("template.yaml:60")
        );
        assert_eq!(
            t.resources["UsersFunctionQueue"].properties,
            json!({"EventSourceArn": "arn:aws:sqs:us-east-1:1:q", "FunctionName": {"Ref": "UsersFunction"}})
        );
        assert_eq!(t.functions["UsersFunction"], "users-UsersFunction");
        assert_eq!(t.functions["Dlq"], "my-dlq");
        assert_eq!(t.parameters["Stage"], json!("dev"));
        assert_eq!(
            t.conditions["IsProd"],
            json!({"Fn::Equals": [{"Ref": "Stage"}, "prod"]})
        );
        assert_eq!(app.name, "users");
        let f = &app.functions[0];
        assert_eq!(f.name, "users-UsersFunction");
        assert_eq!(f.memory_mb, Some(256));
        assert_eq!(f.environment["STAGE"], "dev");
        assert_eq!(f.environment["SELF"], "users-users");
        assert!(f.code.ends_with("src/"));
        assert_eq!(
            f.event_invoke
                .as_ref()
                .unwrap()
                .on_failure
                .as_deref()
                .unwrap(),
            nimbus_core::function_arn(nimbus_core::DEFAULT_REGION, "my-dlq", None)
        );
        assert_eq!(app.functions[1].name, "my-dlq");
        let routes: Vec<_> = app
            .routes
            .iter()
            .map(|r| (r.route_key.as_str(), r.payload_format.as_str()))
            .collect();
        assert_eq!(routes, [("GET /users", "2.0"), ("POST /users", "1.0")]);
        let s = &app.schedules[0];
        assert_eq!(s.name, "users-UsersFunction-Nightly");
        assert_eq!(s.timezone.as_deref(), Some("Europe/Paris"));
        assert_eq!(s.input, Some(json!({"job": "cleanup"})));

        let prod = load(
            &dir.path().join("template.yaml"),
            &Options {
                parameter_overrides: [("Stage".to_string(), "prod".to_string())].into(),
                ..opts.clone()
            },
        );
        assert_eq!(prod.app.unwrap().functions[0].memory_mb, Some(1024));
        let bad = load(
            &dir.path().join("template.yaml"),
            &Options {
                parameter_overrides: [("Stage".to_string(), "qa".to_string())].into(),
                ..opts
            },
        );
        assert!(
            bad.errors().any(|e| e.to_string().ends_with(
                "template.yaml:4: error: parameter Stage: \"qa\" is not one of [\"dev\", \"prod\"]"
            )),
            "{:?}",
            bad.diagnostics
        );
    }

    #[test]
    fn malformed_templates_name_file_and_line() {
        let head = "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src\n";
        let cases: Vec<(String, &str)> = vec![
            (format!("{head}      Handler: app.handler\n      Runtime: nodejs20.x\n      MemorySize: big\n"), "template.yaml:9: error: Resources.Fn.Properties.MemorySize must be an integer, found a string"),
            (format!("{head}      Handler: nope.handler\n      Runtime: nodejs20.x\n"), "template.yaml:7: error: Resources.Fn.Properties.Handler: handler file"),
            (format!("{head}      Handler: app.handler\n      Runtime: nodejs20.x\n      Timeoutt: 3\n"), "template.yaml:9: warning: unknown key 'Resources.Fn.Properties.Timeoutt'"),
            (format!("{head}      Handler: app.handler\n      Runtime: nodejs20.x\n      Environment:\n        Variables:\n          A: !Ref Nope\n"), "template.yaml:11: error: !Ref Nope: no such parameter or resource"),
            (format!("{head}      Handler: app.handler\n      Runtime: nodejs20.x\n      Events:\n        E:\n          Type: Schedule\n          Properties:\n            Schedule: cron(0 2 * * *)\n"), "template.yaml:13: error: Resources.Fn.Properties.Events.E.Properties.Schedule: \"cron(0 2 * * *)\": cron needs 6 fields"),
            (format!("{head}      Handler: app.handler\n"), "template.yaml:3: error: Resources.Fn.Properties.Runtime is required"),
            ("Resources:\n  X:\n    Type: AWS::SQS::Queue\n".to_string(), "template.yaml:1: error: Transform: AWS::Serverless-2016-10-31 is required"),
            (format!("{head}      Handler: app.handler\n      Runtime: nodejs20.x\n      FunctionUrlConfig:\n        AuthType: PUBLIC\n"), "template.yaml:9: error: Resources.Fn.Properties.FunctionUrlConfig.AuthType must be NONE or AWS_IAM"),
        ];
        for (t, want) in cases {
            let dir = template_dir(&t);
            let l = load(&dir.path().join("template.yaml"), &Options::default());
            let msgs: Vec<String> = l.diagnostics.iter().map(|d| d.to_string()).collect();
            assert!(
                msgs.iter()
                    .any(|m| m.contains(want)
                        && m[..m.find("template.yaml").unwrap()].ends_with('/')),
                "want {want:?} in {msgs:#?}\n{t}"
            );
            assert_eq!(l.app.is_none(), want.contains(": error: "), "{msgs:?}");
        }
    }
}

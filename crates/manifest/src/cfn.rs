//! CloudFormation pieces shared by both formats: YAML nodes to CloudFormation's
//! JSON form (the short-form tags `!Ref`, `!GetAtt a.b`, `!Sub`, … become
//! `{"Ref": …}`, `{"Fn::GetAtt": [a, b]}`, `{"Fn::Sub": …}`), the `Resources`,
//! `Outputs` and `Conditions` sections read into a [`Template`], the resource
//! types the app engine applies, and the Serverless Framework's logical-id naming
//! (`lib/plugins/aws/lib/naming.js`).

use crate::fields::{self, fields, join};
use crate::template::{Output, Resource, Template};
use crate::yaml::{Node, Value};
use crate::Diags;
use serde_json::{json, Value as J};

/// The short-form tags and the long-form key each becomes.
const TAGS: &[(&str, &str)] = &[
    ("Ref", "Ref"),
    ("Condition", "Condition"),
    ("GetAtt", "Fn::GetAtt"),
    ("Sub", "Fn::Sub"),
    ("Join", "Fn::Join"),
    ("Select", "Fn::Select"),
    ("Split", "Fn::Split"),
    ("If", "Fn::If"),
    ("Equals", "Fn::Equals"),
    ("Not", "Fn::Not"),
    ("And", "Fn::And"),
    ("Or", "Fn::Or"),
    ("FindInMap", "Fn::FindInMap"),
    ("Base64", "Fn::Base64"),
    ("GetAZs", "Fn::GetAZs"),
    ("ImportValue", "Fn::ImportValue"),
    ("Cidr", "Fn::Cidr"),
    ("Length", "Fn::Length"),
    ("ToJsonString", "Fn::ToJsonString"),
];

/// The resource types the app engine creates, updates and deletes.
pub const SUPPORTED_TYPES: &[&str] = &[
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Topic",
    "AWS::SNS::Subscription",
    "AWS::SNS::TopicPolicy",
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "AWS::DynamoDB::Table",
    "AWS::Kinesis::Stream",
    "AWS::Events::EventBus",
    "AWS::Events::Rule",
    "AWS::SecretsManager::Secret",
    "AWS::SSM::Parameter",
    "AWS::SES::EmailIdentity",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Lambda::Permission",
    "AWS::Lambda::Url",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
];

/// A node in CloudFormation's JSON form, short-form tags converted. An unknown
/// local tag is an error at its line (CloudFormation rejects it too).
pub fn to_cfn(n: &Node, d: &mut Diags) -> J {
    let body = match &n.value {
        Value::Seq(items) => J::Array(items.iter().map(|i| to_cfn(i, d)).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.scalar_text().unwrap_or_default(), to_cfn(v, d)))
                .collect(),
        ),
        _ => n.to_json(),
    };
    let Some(tag) = &n.tag else { return body };
    let Some((_, long)) = TAGS.iter().find(|(t, _)| t == tag) else {
        d.error(
            n.pos.line,
            format!("!{tag} is not a CloudFormation intrinsic function"),
        );
        return body;
    };
    let arg = match (tag.as_str(), &body) {
        // `!GetAtt Resource.Attribute` (the attribute may itself hold dots).
        ("GetAtt", J::String(s)) => match s.split_once('.') {
            Some((r, a)) => json!([r, a]),
            None => {
                d.error(
                    n.pos.line,
                    format!("!GetAtt {s}: expected Resource.Attribute"),
                );
                body
            }
        },
        _ => body,
    };
    json!({ *long: arg })
}

/// `file:line` for [`Resource::source`].
pub fn source(d: &Diags, line: usize) -> String {
    let file = d
        .file()
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    format!("{file}:{line}")
}

/// A `Resources` mapping (serverless.yml `resources.Resources`, or a SAM
/// template's non-function resources one by one through [`resource`]).
pub fn resources_section(d: &mut Diags, node: &Node, path: &str, t: &mut Template) {
    let Some(map) = node.as_map() else {
        if !node.is_null() {
            d.error(
                node.pos.line,
                format!("{path} must be a mapping, found {}", node.kind()),
            );
        }
        return;
    };
    for (k, v) in map {
        let id = k.scalar_text().unwrap_or_default();
        if let Some(r) = resource(d, &id, k.pos.line, v, &join(path, &id)) {
            insert(d, t, id, r, k.pos.line);
        }
    }
}

/// Add a resource; a logical id used twice is an error (CloudFormation's too).
pub fn insert(d: &mut Diags, t: &mut Template, id: String, r: Resource, line: usize) {
    if !valid_logical_id(&id) {
        d.error(
            line,
            format!("logical id {id:?} must be 1 to 255 letters and digits"),
        );
        return;
    }
    if t.resources.contains_key(&id) || t.functions.contains_key(&id) {
        d.error(line, format!("resource {id} is declared twice"));
        return;
    }
    t.resources.insert(id, r);
}

fn valid_logical_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One resource: `Type`, `Properties`, `DependsOn`, `DeletionPolicy`,
/// `UpdateReplacePolicy`, `Condition` (`Metadata` accepted). A type the engine
/// does not apply is reported as not supported yet.
pub fn resource(d: &mut Diags, id: &str, line: usize, v: &Node, path: &str) -> Option<Resource> {
    let rf = fields(
        d,
        v,
        path,
        &[
            "Type",
            "Properties",
            "DependsOn",
            "DeletionPolicy",
            "UpdateReplacePolicy",
            "Condition",
            "Metadata",
            "CreationPolicy",
            "UpdatePolicy",
        ],
    )?;
    let Some(kind) = rf
        .get("Type")
        .and_then(|t| fields::string(d, *t, &join(path, "Type")))
    else {
        d.error(line, format!("{path}.Type is required"));
        return None;
    };
    if !SUPPORTED_TYPES.contains(&kind.as_str()) {
        d.unsupported(
            line,
            format!("resource {id} of type {kind}: the app engine does not create this type"),
        );
        return None;
    }
    let properties = rf
        .get("Properties")
        .map(|p| to_cfn(p.val, d))
        .unwrap_or(J::Object(Default::default()));
    if !properties.is_object() {
        d.error(line, format!("{path}.Properties must be a mapping"));
        return None;
    }
    let depends_on = match rf.get("DependsOn") {
        Some(f) => match &f.val.value {
            Value::Str(s) => vec![s.clone()],
            Value::Seq(_) => fields::string_list(d, *f, &join(path, "DependsOn"))?,
            _ => {
                d.error(
                    f.line(),
                    format!("{path}.DependsOn must be a logical id or a list of them"),
                );
                return None;
            }
        },
        None => Vec::new(),
    };
    let mut policy = |key: &str| -> Option<String> {
        let f = rf.get(key)?;
        let p = fields::string(d, *f, &join(path, key))?;
        if !matches!(
            p.as_str(),
            "Delete" | "Retain" | "Snapshot" | "RetainExceptOnCreate"
        ) {
            d.error(
                f.line(),
                format!("{path}.{key} must be Delete, Retain, RetainExceptOnCreate or Snapshot"),
            );
            return None;
        }
        Some(p)
    };
    let deletion_policy = policy("DeletionPolicy");
    let update_replace_policy = policy("UpdateReplacePolicy");
    for key in ["CreationPolicy", "UpdatePolicy"] {
        if let Some(f) = rf.get(key) {
            d.warn(
                f.line(),
                format!("{path}.{key}: no effect (resources are ready when created)"),
            );
        }
    }
    let condition = rf
        .get("Condition")
        .and_then(|c| fields::string(d, *c, &join(path, "Condition")));
    Some(Resource {
        kind,
        properties,
        depends_on,
        deletion_policy,
        update_replace_policy,
        condition,
        source: Some(source(d, line)),
    })
}

/// An `Outputs` mapping: `Value`, `Description`, `Export.Name`, `Condition`.
pub fn outputs_section(d: &mut Diags, node: &Node, path: &str, t: &mut Template) {
    let Some(map) = node.as_map() else {
        if !node.is_null() {
            d.error(node.pos.line, format!("{path} must be a mapping"));
        }
        return;
    };
    for (k, v) in map {
        let id = k.scalar_text().unwrap_or_default();
        let p = join(path, &id);
        let Some(of) = fields(d, v, &p, &["Value", "Description", "Export", "Condition"]) else {
            continue;
        };
        let Some(value) = of.get("Value").map(|x| to_cfn(x.val, d)) else {
            d.error(k.pos.line, format!("{p}.Value is required"));
            continue;
        };
        let export = match of.get("Export") {
            Some(e) => {
                let Some(ef) = fields(d, e.val, &join(&p, "Export"), &["Name"]) else {
                    continue;
                };
                match ef.get("Name") {
                    Some(n) => Some(to_cfn(n.val, d)),
                    None => {
                        d.error(e.line(), format!("{p}.Export.Name is required"));
                        continue;
                    }
                }
            }
            None => None,
        };
        t.outputs.insert(
            id,
            Output {
                value,
                description: of
                    .get("Description")
                    .and_then(|x| fields::string(d, *x, &join(&p, "Description"))),
                export,
                condition: of
                    .get("Condition")
                    .and_then(|x| fields::string(d, *x, &join(&p, "Condition"))),
            },
        );
    }
}

/// A `Conditions` mapping, each expression in CloudFormation's JSON form.
pub fn conditions_section(d: &mut Diags, node: &Node, path: &str, t: &mut Template) {
    let Some(map) = node.as_map() else {
        if !node.is_null() {
            d.error(node.pos.line, format!("{path} must be a mapping"));
        }
        return;
    };
    for (k, v) in map {
        t.conditions
            .insert(k.scalar_text().unwrap_or_default(), to_cfn(v, d));
    }
}

// ---- The Serverless Framework's naming (lib/plugins/aws/lib/naming.js) ----

/// `normalizeName`: the first letter upper-cased.
pub fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `normalizeNameToAlphaNumericOnly`.
pub fn alnum(s: &str) -> String {
    upper_first(
        &s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>(),
    )
}

/// `getNormalizedFunctionName`: `-` → `Dash`, `_` → `Underscore`, first letter up.
pub fn normalized_function(key: &str) -> String {
    upper_first(&key.replace('-', "Dash").replace('_', "Underscore"))
}

/// `getLambdaLogicalId`: `<Normalized>LambdaFunction`.
pub fn lambda_logical_id(key: &str) -> String {
    format!("{}LambdaFunction", normalized_function(key))
}

/// `Fn::GetAtt [<fn>, Arn]`: how generated resources name their function.
pub fn function_arn(logical_id: &str) -> J {
    json!({"Fn::GetAtt": [logical_id, "Arn"]})
}

/// `Fn::Join ["", ["arn:", Ref AWS::Partition, ":<svc>:", Ref AWS::Region, ":", Ref AWS::AccountId, ":", name]]`
pub fn regional_arn(service: &str, name: J) -> J {
    json!({"Fn::Join": ["", [
        "arn:", {"Ref": "AWS::Partition"}, format!(":{service}:"), {"Ref": "AWS::Region"},
        ":", {"Ref": "AWS::AccountId"}, ":", name
    ]]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use std::path::Path;

    fn cfn(src: &str) -> (J, Vec<String>) {
        let n = yaml::parse(src).unwrap();
        let mut d = Diags::new(Path::new("t.yaml"));
        let v = to_cfn(&n, &mut d);
        (v, d.list.iter().map(|x| x.message.clone()).collect())
    }

    #[test]
    fn short_forms_become_long_forms() {
        let cases: Vec<(&str, J)> = vec![
            ("!Ref Queue", json!({"Ref": "Queue"})),
            ("!GetAtt Queue.Arn", json!({"Fn::GetAtt": ["Queue", "Arn"]})),
            (
                "!GetAtt Db.Endpoint.Address",
                json!({"Fn::GetAtt": ["Db", "Endpoint.Address"]}),
            ),
            (
                "!GetAtt [Queue, QueueUrl]",
                json!({"Fn::GetAtt": ["Queue", "QueueUrl"]}),
            ),
            (
                "!Sub '${AWS::StackName}-q'",
                json!({"Fn::Sub": "${AWS::StackName}-q"}),
            ),
            (
                "!Sub ['${A}-x', {A: !Ref B}]",
                json!({"Fn::Sub": ["${A}-x", {"A": {"Ref": "B"}}]}),
            ),
            (
                "!Join ['', [a, !Ref B]]",
                json!({"Fn::Join": ["", ["a", {"Ref": "B"}]]}),
            ),
            (
                "!Select [0, !Split [',', !Ref L]]",
                json!({"Fn::Select": [0, {"Fn::Split": [",", {"Ref": "L"}]}]}),
            ),
            (
                "!If [IsProd, 10, !Ref AWS::NoValue]",
                json!({"Fn::If": ["IsProd", 10, {"Ref": "AWS::NoValue"}]}),
            ),
            (
                "!Equals [!Ref Stage, prod]",
                json!({"Fn::Equals": [{"Ref": "Stage"}, "prod"]}),
            ),
            (
                "!Not [!Condition IsProd]",
                json!({"Fn::Not": [{"Condition": "IsProd"}]}),
            ),
            (
                "!And [!Condition A, !Or [!Condition B, !Condition C]]",
                json!({"Fn::And": [{"Condition": "A"}, {"Fn::Or": [{"Condition": "B"}, {"Condition": "C"}]}]}),
            ),
            (
                "!ImportValue shared-bus",
                json!({"Fn::ImportValue": "shared-bus"}),
            ),
            (
                "!ImportValue {'Fn::Sub': '${Env}-bus'}",
                json!({"Fn::ImportValue": {"Fn::Sub": "${Env}-bus"}}),
            ),
            (
                "!FindInMap [M, !Ref AWS::Region, x]",
                json!({"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "x"]}),
            ),
            ("!Base64 hi", json!({"Fn::Base64": "hi"})),
            ("!GetAZs ''", json!({"Fn::GetAZs": ""})),
            // Long forms pass through unchanged.
            (
                "{'Fn::GetAtt': [Q, Arn]}",
                json!({"Fn::GetAtt": ["Q", "Arn"]}),
            ),
            (
                "{a: [1, !Ref X, {b: !GetAtt Y.Z}]}",
                json!({"a": [1, {"Ref": "X"}, {"b": {"Fn::GetAtt": ["Y", "Z"]}}]}),
            ),
        ];
        for (src, want) in cases {
            let (got, msgs) = cfn(src);
            assert_eq!(got, want, "{src}");
            assert!(msgs.is_empty(), "{src}: {msgs:?}");
        }
        let (_, msgs) = cfn("!Bogus x");
        assert_eq!(msgs, ["!Bogus is not a CloudFormation intrinsic function"]);
        let (_, msgs) = cfn("!GetAtt NoDot");
        assert_eq!(msgs, ["!GetAtt NoDot: expected Resource.Attribute"]);
    }

    #[test]
    fn framework_naming() {
        assert_eq!(lambda_logical_id("hello"), "HelloLambdaFunction");
        assert_eq!(
            lambda_logical_id("my-func_x"),
            "MyDashfuncUnderscorexLambdaFunction"
        );
        assert_eq!(alnum("my-queue.fifo"), "Myqueuefifo");
    }
}

/// Logical ids CloudFormation, the Framework or SAM create implicitly, which a
/// template may name but Nimbus does not create: a reference to one is "not
/// supported yet" rather than an error.
const IMPLICIT: &[&str] = &[
    "ServerlessHttpApi",
    "ServerlessRestApi",
    "ServerlessDeploymentBucket",
    "ApiGatewayRestApi",
    "HttpApi",
    "HttpApiStage",
    "ServerlessRestApiProdStage",
];

/// Check, as CloudFormation validates a template, that every `Ref`, `Fn::GetAtt`,
/// `Fn::Sub` reference and `DependsOn` names a resource, a function, a parameter
/// or a pseudo parameter; each miss is an error at the referring resource's line.
pub fn check_references(d: &mut Diags, t: &Template) {
    let known = |id: &str| {
        t.resources.contains_key(id)
            || t.functions.contains_key(id)
            || t.parameters.contains_key(id)
            || id.starts_with("AWS::")
    };
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut visit = |what: &str, line: usize, v: &J, depends_on: &[String]| {
        let mut refs = Vec::new();
        collect_refs(v, &mut refs);
        refs.extend(depends_on.iter().cloned());
        refs.sort();
        refs.dedup();
        for r in refs {
            if known(&r) {
                continue;
            }
            let msg = if IMPLICIT.contains(&r.as_str()) {
                format!("{what} refers to {r}, a resource the transform creates implicitly; Nimbus does not create it")
            } else {
                format!("{what} refers to {r}, which is not a resource, function or parameter of the app")
            };
            problems.push((line, msg));
        }
    };
    let line_of = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| s.rsplit(':').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or(1)
    };
    for (id, r) in &t.resources {
        visit(
            &format!("resource {id}"),
            line_of(&r.source),
            &r.properties,
            &r.depends_on,
        );
    }
    for (id, o) in &t.outputs {
        let v = json!([o.value, o.export]);
        visit(&format!("output {id}"), 1, &v, &[]);
    }
    for (f, vars) in &t.function_environment {
        for (k, v) in vars {
            visit(&format!("environment variable {k} of {f}"), 1, v, &[]);
        }
    }
    for (line, msg) in problems {
        if msg.starts_with("output ") && msg.contains("creates implicitly") {
            // An output is only printed: the app works without it.
            d.warn(line, format!("{msg}; the output is left empty"));
        } else if msg.contains("creates implicitly") {
            d.unsupported(line, msg);
        } else {
            d.error(line, msg);
        }
    }
}

/// The logical ids a value names through `Ref`, `Fn::GetAtt` and `Fn::Sub`.
fn collect_refs(v: &J, out: &mut Vec<String>) {
    match v {
        J::Object(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next().expect("one entry");
            match (k.as_str(), arg) {
                ("Ref", J::String(s)) => out.push(s.clone()),
                ("Fn::GetAtt", J::Array(a)) => {
                    if let Some(J::String(s)) = a.first() {
                        out.push(s.clone());
                    }
                }
                ("Fn::Sub", J::String(s)) => sub_refs(s, &[], out),
                ("Fn::Sub", J::Array(a)) => {
                    let locals: Vec<String> = a
                        .get(1)
                        .and_then(J::as_object)
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    if let Some(J::String(s)) = a.first() {
                        sub_refs(s, &locals, out);
                    }
                    if let Some(vars) = a.get(1) {
                        collect_refs(vars, out);
                    }
                }
                _ => collect_refs(arg, out),
            }
        }
        J::Object(m) => m.values().for_each(|x| collect_refs(x, out)),
        J::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn sub_refs(s: &str, locals: &[String], out: &mut Vec<String>) {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else { break };
        let name = after[..end].trim();
        if !name.starts_with('!') && !locals.iter().any(|l| l == name) {
            let id = name.split('.').next().unwrap_or_default();
            if !id.is_empty() {
                out.push(id.to_string());
            }
        }
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::template::Resource;
    use std::path::Path;

    #[test]
    fn unknown_references_are_errors_implicit_ones_unsupported() {
        let mut t = Template::default();
        t.functions.insert("Fn".into(), "app-Fn".into());
        t.parameters.insert("Stage".into(), json!("dev"));
        let r = |props: J, deps: Vec<&str>, line: usize| Resource {
            kind: "AWS::SQS::Queue".into(),
            properties: props,
            depends_on: deps.into_iter().map(String::from).collect(),
            deletion_policy: None,
            update_replace_policy: None,
            condition: None,
            source: Some(format!("template.yaml:{line}")),
        };
        t.resources.insert(
            "Ok".into(),
            r(
                json!({"A": {"Ref": "Fn"}, "B": {"Fn::GetAtt": ["Ok", "Arn"]},
                       "C": {"Fn::Sub": ["${AWS::Region}-${Stage}-${Fn.Arn}-${x}-${!lit}", {"x": {"Ref": "Stage"}}]}}),
                vec!["Fn"],
                3,
            ),
        );
        t.resources.insert(
            "Bad".into(),
            r(
                json!({"A": {"Ref": "Nope"}, "B": {"Fn::Sub": "${Gone.Arn}"}, "C": {"Ref": "ServerlessHttpApi"}}),
                vec!["Missing"],
                9,
            ),
        );
        let mut d = Diags::new(Path::new("template.yaml"));
        check_references(&mut d, &t);
        let got: Vec<(usize, crate::Level, String)> = d
            .list
            .iter()
            .map(|x| (x.line, x.level, x.message.clone()))
            .collect();
        use crate::Level::{Error, Unsupported};
        assert_eq!(
            got,
            [
                (9, Error, "resource Bad refers to Gone, which is not a resource, function or parameter of the app".into()),
                (9, Error, "resource Bad refers to Missing, which is not a resource, function or parameter of the app".into()),
                (9, Error, "resource Bad refers to Nope, which is not a resource, function or parameter of the app".into()),
                (9, Unsupported, "resource Bad refers to ServerlessHttpApi, a resource the transform creates implicitly; Nimbus does not create it".into()),
            ]
        );
    }
}

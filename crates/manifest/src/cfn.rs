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

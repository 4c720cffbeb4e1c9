//! CloudFormation's intrinsic functions, evaluated against live state: `Ref`,
//! `Fn::GetAtt`, `Fn::Sub` (both forms), `Fn::Join`, `Fn::Select`, `Fn::Split`,
//! `Fn::If` with conditions (`Fn::Equals`, `Fn::And`, `Fn::Or`, `Fn::Not`,
//! `Condition`), `Fn::ImportValue`, `Fn::GetAZs`, `Fn::Base64`, and the pseudo
//! parameters. `AWS::NoValue` removes the property (or list element) it stands for.
//!
//! A reference to a resource that does not exist yet (planning a change) can
//! evaluate to a placeholder string (`{{unresolved:Queue.Arn}}`) so the plan can
//! still compare a resource's properties; applying never sees one, because the
//! engine applies a resource only after what it references.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// An intrinsic that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IntrinsicError(pub String);

type R<T> = Result<T, IntrinsicError>;

fn err<T>(m: impl Into<String>) -> R<T> {
    Err(IntrinsicError(m.into()))
}

/// What a resource that exists answers to `Ref` and `Fn::GetAtt`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub ref_value: Value,
    pub attributes: Map<String, Value>,
}

/// Everything an expression may read.
pub struct Env<'a> {
    pub app: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    pub parameters: &'a BTreeMap<String, Value>,
    /// Evaluated conditions.
    pub conditions: &'a BTreeMap<String, bool>,
    /// Function logical id → deployed name.
    pub functions: &'a BTreeMap<String, String>,
    /// Logical ids of the template's resources (to tell "not yet created" from "unknown").
    pub declared: &'a BTreeSet<String>,
    /// Live resources by logical id.
    pub live: &'a (dyn Fn(&str) -> Option<Live> + Sync),
    /// `Fn::ImportValue`: an export's value.
    pub import: &'a (dyn Fn(&str) -> Option<Value> + Sync),
    /// Whether a declared resource that does not exist yet evaluates to a
    /// placeholder (planning) rather than an error (applying).
    pub placeholders: bool,
}

impl Env<'_> {
    fn pseudo(&self, name: &str) -> Option<Option<Value>> {
        Some(Some(match name {
            "AWS::Region" => self.region.into(),
            "AWS::AccountId" => self.account_id.into(),
            "AWS::StackName" => self.app.into(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/nimbus",
                self.region, self.account_id, self.app
            )
            .into(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::NotificationARNs" => Value::Array(vec![]),
            "AWS::NoValue" => return Some(None),
            _ => return None,
        }))
    }

    fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account_id
        )
    }

    fn unresolved(&self, what: &str) -> R<Value> {
        if self.placeholders {
            Ok(Value::String(format!("{{{{unresolved:{what}}}}}")))
        } else {
            err(format!("{what} is not available yet"))
        }
    }

    fn reference(&self, name: &str) -> R<Option<Value>> {
        if let Some(v) = self.pseudo(name) {
            return Ok(v);
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(Some(v.clone()));
        }
        if let Some(f) = self.functions.get(name) {
            return Ok(Some(f.clone().into()));
        }
        if let Some(l) = (self.live)(name) {
            return Ok(Some(l.ref_value));
        }
        if self.declared.contains(name) {
            return self.unresolved(name).map(Some);
        }
        err(format!(
            "Ref {name}: no resource, parameter or function of that name"
        ))
    }

    fn get_att(&self, name: &str, attr: &str) -> R<Value> {
        if let Some(f) = self.functions.get(name) {
            return match attr {
                "Arn" => Ok(self.function_arn(f).into()),
                _ => err(format!(
                    "Fn::GetAtt {name}.{attr}: a function has the attribute Arn"
                )),
            };
        }
        if let Some(l) = (self.live)(name) {
            return match l.attributes.get(attr) {
                Some(v) => Ok(v.clone()),
                None => {
                    let mut known: Vec<&String> = l.attributes.keys().collect();
                    known.sort();
                    err(format!(
                        "Fn::GetAtt {name}.{attr}: no such attribute (it has {})",
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            };
        }
        if self.declared.contains(name) {
            return self.unresolved(&format!("{name}.{attr}"));
        }
        err(format!("Fn::GetAtt {name}.{attr}: no resource {name}"))
    }

    /// Evaluate a condition expression.
    pub fn condition(&self, v: &Value) -> R<bool> {
        match self.eval(v)? {
            Some(Value::Bool(b)) => Ok(b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            other => err(format!("a condition evaluated to {other:?}, not a boolean")),
        }
    }

    /// Evaluate an expression; `None` for `AWS::NoValue`.
    pub fn eval(&self, v: &Value) -> R<Option<Value>> {
        match v {
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().expect("one entry");
                match k.as_str() {
                    "Ref" => {
                        let name = arg
                            .as_str()
                            .ok_or_else(|| IntrinsicError("Ref takes a name".into()))?;
                        self.reference(name)
                    }
                    "Condition" => {
                        let name = arg
                            .as_str()
                            .ok_or_else(|| IntrinsicError("Condition takes a name".into()))?;
                        match self.conditions.get(name) {
                            Some(b) => Ok(Some(Value::Bool(*b))),
                            None => err(format!("no condition {name}")),
                        }
                    }
                    k if k.starts_with("Fn::") => self.function(k, arg),
                    _ => self.object(m),
                }
            }
            Value::Object(m) => self.object(m),
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for x in a {
                    if let Some(v) = self.eval(x)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    fn object(&self, m: &Map<String, Value>) -> R<Option<Value>> {
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(v) = self.eval(v)? {
                out.insert(k.clone(), v);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn value(&self, v: &Value, what: &str) -> R<Value> {
        self.eval(v)?
            .ok_or_else(|| IntrinsicError(format!("{what}: AWS::NoValue is not allowed here")))
    }

    fn string(&self, v: &Value, what: &str) -> R<String> {
        match self.value(v, what)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => err(format!("{what}: expected a string, got {other}")),
        }
    }

    fn list(&self, v: &Value, what: &str) -> R<Vec<Value>> {
        match self.value(v, what)? {
            Value::Array(a) => Ok(a),
            other => err(format!("{what}: expected a list, got {other}")),
        }
    }

    fn function(&self, name: &str, arg: &Value) -> R<Option<Value>> {
        let args = |n: usize| -> R<&Vec<Value>> {
            match arg {
                Value::Array(a) if a.len() == n => Ok(a),
                _ => err(format!("{name} takes a list of {n}")),
            }
        };
        Ok(Some(match name {
            "Fn::GetAtt" => {
                let (res, attr) = match arg {
                    Value::String(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_string(), a.to_string()),
                        None => return err("Fn::GetAtt takes Resource.Attribute"),
                    },
                    Value::Array(a) if a.len() == 2 => {
                        (self.string(&a[0], name)?, self.string(&a[1], name)?)
                    }
                    _ => return err("Fn::GetAtt takes [Resource, Attribute]"),
                };
                self.get_att(&res, &attr)?
            }
            "Fn::Join" => {
                let a = args(2)?;
                let sep = self.string(&a[0], name)?;
                let parts = self.list(&a[1], name)?;
                let mut out = Vec::new();
                for p in parts {
                    out.push(match p {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => return err(format!("Fn::Join: cannot join {other}")),
                    });
                }
                out.join(&sep).into()
            }
            "Fn::Select" => {
                let a = args(2)?;
                let i: usize = self
                    .string(&a[0], name)?
                    .parse()
                    .map_err(|_| IntrinsicError("Fn::Select: the index is not a number".into()))?;
                let list = self.list(&a[1], name)?;
                list.get(i).cloned().ok_or_else(|| {
                    IntrinsicError(format!(
                        "Fn::Select: index {i} is past the list's {} elements",
                        list.len()
                    ))
                })?
            }
            "Fn::Split" => {
                let a = args(2)?;
                let sep = self.string(&a[0], name)?;
                if sep.is_empty() {
                    return err("Fn::Split: the delimiter is empty");
                }
                let s = self.string(&a[1], name)?;
                Value::Array(s.split(sep.as_str()).map(|p| p.into()).collect())
            }
            "Fn::If" => {
                let a = args(3)?;
                let c = a[0]
                    .as_str()
                    .ok_or_else(|| IntrinsicError("Fn::If takes a condition name".into()))?;
                let b = *self
                    .conditions
                    .get(c)
                    .ok_or_else(|| IntrinsicError(format!("Fn::If: no condition {c}")))?;
                return self.eval(if b { &a[1] } else { &a[2] });
            }
            "Fn::Equals" => {
                let a = args(2)?;
                let x = self.value(&a[0], name)?;
                let y = self.value(&a[1], name)?;
                Value::Bool(loose_eq(&x, &y))
            }
            "Fn::Not" => {
                let a = args(1)?;
                Value::Bool(!self.condition(&a[0])?)
            }
            "Fn::And" | "Fn::Or" => {
                let a = arg
                    .as_array()
                    .filter(|a| (2..=10).contains(&a.len()))
                    .ok_or_else(|| IntrinsicError(format!("{name} takes 2 to 10 conditions")))?;
                let mut vals = Vec::new();
                for c in a {
                    vals.push(self.condition(c)?);
                }
                Value::Bool(if name == "Fn::And" {
                    vals.iter().all(|b| *b)
                } else {
                    vals.iter().any(|b| *b)
                })
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.clone(), Map::new()),
                    Value::Array(a) if a.len() == 2 => {
                        let text = a[0]
                            .as_str()
                            .ok_or_else(|| IntrinsicError("Fn::Sub takes a string".into()))?
                            .to_string();
                        let vars = match self.value(&a[1], name)? {
                            Value::Object(m) => m,
                            _ => return err("Fn::Sub: the variables are not a map"),
                        };
                        (text, vars)
                    }
                    _ => return err("Fn::Sub takes a string or [string, {vars}]"),
                };
                self.sub(&text, &vars)?.into()
            }
            "Fn::ImportValue" => {
                let n = self.string(arg, name)?;
                if n.contains("{{unresolved:") {
                    return self.unresolved(&format!("ImportValue {n}")).map(Some);
                }
                (self.import)(&n).ok_or_else(|| {
                    IntrinsicError(format!(
                        "Fn::ImportValue: no app exports {n} (Outputs with Export.Name)"
                    ))
                })?
            }
            "Fn::GetAZs" => {
                let r = self.string(arg, name)?;
                let r = if r.is_empty() {
                    self.region.to_string()
                } else {
                    r
                };
                Value::Array(
                    ["a", "b", "c"]
                        .iter()
                        .map(|z| format!("{r}{z}").into())
                        .collect(),
                )
            }
            "Fn::Base64" => {
                use base64::Engine;
                let s = self.string(arg, name)?;
                base64::engine::general_purpose::STANDARD
                    .encode(s.as_bytes())
                    .into()
            }
            other => return err(format!("{other} is not supported")),
        }))
    }

    fn sub(&self, text: &str, vars: &Map<String, Value>) -> R<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            if let Some(lit) = after.strip_prefix('!') {
                // `${!Literal}` is written as `${Literal}`.
                out.push_str("${");
                rest = lit;
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| IntrinsicError(format!("Fn::Sub: unclosed ${{ in {text:?}")))?;
            let var = after[..end].trim();
            let value = if let Some(v) = vars.get(var) {
                v.clone()
            } else if let Some((res, attr)) = var.split_once('.') {
                if self.pseudo(var).is_some() {
                    self.reference(var)?.unwrap_or(Value::Null)
                } else {
                    self.get_att(res, attr)?
                }
            } else {
                self.reference(var)?.unwrap_or(Value::Null)
            };
            match value {
                Value::String(s) => out.push_str(&s),
                Value::Number(n) => out.push_str(&n.to_string()),
                Value::Bool(b) => out.push_str(&b.to_string()),
                other => return err(format!("Fn::Sub: ${{{var}}} is {other}, not a string")),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// CloudFormation compares `Fn::Equals` operands as strings: `"1" == 1`.
fn loose_eq(a: &Value, b: &Value) -> bool {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    a == b || s(a) == s(b)
}

/// The logical ids an expression references through `Ref`, `Fn::GetAtt` and
/// `Fn::Sub` (of those in `declared`).
pub fn references(v: &Value, declared: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if m.len() == 1 {
                let (k, arg) = m.iter().next().expect("one");
                match k.as_str() {
                    "Ref" => {
                        if let Some(n) = arg.as_str().filter(|n| declared.contains(*n)) {
                            out.insert(n.to_string());
                        }
                        return;
                    }
                    "Fn::GetAtt" => {
                        let n = match arg {
                            Value::String(s) => s.split('.').next().map(str::to_string),
                            Value::Array(a) => {
                                a.first().and_then(|x| x.as_str()).map(str::to_string)
                            }
                            _ => None,
                        };
                        if let Some(n) = n.filter(|n| declared.contains(n)) {
                            out.insert(n);
                        }
                        if let Value::Array(a) = arg {
                            for x in a.iter().skip(1) {
                                references(x, declared, out);
                            }
                        }
                        return;
                    }
                    "Fn::Sub" => {
                        let (text, vars) = match arg {
                            Value::String(s) => (s.as_str(), None),
                            Value::Array(a) if !a.is_empty() => {
                                (a[0].as_str().unwrap_or(""), a.get(1))
                            }
                            _ => ("", None),
                        };
                        let explicit: BTreeSet<&str> = vars
                            .and_then(|v| v.as_object())
                            .map(|m| m.keys().map(|k| k.as_str()).collect())
                            .unwrap_or_default();
                        for name in sub_vars(text) {
                            if explicit.contains(name.as_str()) {
                                continue;
                            }
                            let base = name.split('.').next().unwrap_or("").to_string();
                            if declared.contains(&base) {
                                out.insert(base);
                            }
                        }
                        if let Some(v) = vars {
                            references(v, declared, out);
                        }
                        return;
                    }
                    _ => {}
                }
            }
            for x in m.values() {
                references(x, declared, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                references(x, declared, out);
            }
        }
        _ => {}
    }
}

/// The export names an expression imports (`Fn::ImportValue` of a literal).
pub fn imports(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(n)) = m.get("Fn::ImportValue") {
                out.insert(n.clone());
            }
            for x in m.values() {
                imports(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| imports(x, out)),
        _ => {}
    }
}

fn sub_vars(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        if let Some(lit) = after.strip_prefix('!') {
            rest = lit;
            continue;
        }
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].trim().to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_env<T>(f: impl FnOnce(&Env) -> T) -> T {
        let params: BTreeMap<String, Value> = [
            ("Stage".to_string(), json!("prod")),
            ("Count".to_string(), json!(3)),
        ]
        .into();
        let conditions: BTreeMap<String, bool> =
            [("IsProd".to_string(), true), ("IsDev".to_string(), false)].into();
        let functions: BTreeMap<String, String> = [(
            "WorkerLambdaFunction".to_string(),
            "app-dev-worker".to_string(),
        )]
        .into();
        let declared: BTreeSet<String> = ["Queue", "Later"].iter().map(|s| s.to_string()).collect();
        let live = |n: &str| {
            (n == "Queue").then(|| Live {
                ref_value: json!("http://q/1/app-Queue-ABC"),
                attributes: json!({"Arn": "arn:aws:sqs:us-east-1:000000000000:app-Queue-ABC",
                                   "QueueName": "app-Queue-ABC"})
                .as_object()
                .unwrap()
                .clone(),
            })
        };
        let import = |n: &str| (n == "shared-topic").then(|| json!("arn:topic"));
        let env = Env {
            app: "app",
            region: "us-east-1",
            account_id: "000000000000",
            parameters: &params,
            conditions: &conditions,
            functions: &functions,
            declared: &declared,
            live: &live,
            import: &import,
            placeholders: false,
        };
        f(&env)
    }

    #[test]
    fn evaluates_the_intrinsics() {
        let cases: Vec<(Value, Result<Option<Value>, &str>)> = vec![
            (
                json!({"Ref": "Queue"}),
                Ok(Some(json!("http://q/1/app-Queue-ABC"))),
            ),
            (json!({"Ref": "Stage"}), Ok(Some(json!("prod")))),
            (json!({"Ref": "AWS::Region"}), Ok(Some(json!("us-east-1")))),
            (json!({"Ref": "AWS::StackName"}), Ok(Some(json!("app")))),
            (json!({"Ref": "AWS::Partition"}), Ok(Some(json!("aws")))),
            (
                json!({"Ref": "AWS::URLSuffix"}),
                Ok(Some(json!("amazonaws.com"))),
            ),
            (json!({"Ref": "AWS::NoValue"}), Ok(None)),
            (
                json!({"Ref": "WorkerLambdaFunction"}),
                Ok(Some(json!("app-dev-worker"))),
            ),
            (
                json!({"Fn::GetAtt": ["Queue", "Arn"]}),
                Ok(Some(json!(
                    "arn:aws:sqs:us-east-1:000000000000:app-Queue-ABC"
                ))),
            ),
            (
                json!({"Fn::GetAtt": "Queue.QueueName"}),
                Ok(Some(json!("app-Queue-ABC"))),
            ),
            (
                json!({"Fn::GetAtt": ["WorkerLambdaFunction", "Arn"]}),
                Ok(Some(json!(
                    "arn:aws:lambda:us-east-1:000000000000:function:app-dev-worker"
                ))),
            ),
            (
                json!({"Fn::Sub": "${AWS::StackName}-${Stage}-${Queue.QueueName}-${!Literal}"}),
                Ok(Some(json!("app-prod-app-Queue-ABC-${Literal}"))),
            ),
            (
                json!({"Fn::Sub": ["${A}/${Stage}", {"A": {"Ref": "AWS::AccountId"}}]}),
                Ok(Some(json!("000000000000/prod"))),
            ),
            (
                json!({"Fn::Join": ["-", ["a", {"Ref": "Stage"}, 3]]}),
                Ok(Some(json!("a-prod-3"))),
            ),
            (
                json!({"Fn::Select": ["1", {"Fn::Split": [",", "x,y,z"]}]}),
                Ok(Some(json!("y"))),
            ),
            (json!({"Fn::Select": [5, ["x"]]}), Err("past the list")),
            (
                json!({"Fn::If": ["IsProd", "big", "small"]}),
                Ok(Some(json!("big"))),
            ),
            (
                json!({"Fn::If": ["IsDev", "big", {"Ref": "AWS::NoValue"}]}),
                Ok(None),
            ),
            (
                json!({"Fn::Equals": [{"Ref": "Count"}, "3"]}),
                Ok(Some(json!(true))),
            ),
            (
                json!({"Fn::And": [{"Condition": "IsProd"}, {"Fn::Not": [{"Condition": "IsDev"}]}]}),
                Ok(Some(json!(true))),
            ),
            (
                json!({"Fn::Or": [{"Condition": "IsDev"}, {"Fn::Equals": ["a", "b"]}]}),
                Ok(Some(json!(false))),
            ),
            (
                json!({"Fn::ImportValue": "shared-topic"}),
                Ok(Some(json!("arn:topic"))),
            ),
            (
                json!({"Fn::ImportValue": "nope"}),
                Err("no app exports nope"),
            ),
            (json!({"Fn::Base64": "hi"}), Ok(Some(json!("aGk=")))),
            (
                json!({"Fn::GetAZs": ""}),
                Ok(Some(json!(["us-east-1a", "us-east-1b", "us-east-1c"]))),
            ),
            (json!({"Ref": "Later"}), Err("not available yet")),
            (
                json!({"Ref": "Nope"}),
                Err("no resource, parameter or function"),
            ),
            (
                json!({"Fn::GetAtt": ["Queue", "Bogus"]}),
                Err("no such attribute"),
            ),
            (
                json!({"Fn::FindInMap": ["a", "b", "c"]}),
                Err("not supported"),
            ),
            (
                json!({"A": [1, {"Ref": "AWS::NoValue"}, {"Ref": "Stage"}], "B": {"Ref": "AWS::NoValue"}}),
                Ok(Some(json!({"A": [1, "prod"]}))),
            ),
        ];
        with_env(|env| {
            for (input, want) in cases {
                let got = env.eval(&input);
                match want {
                    Ok(v) => assert_eq!(got, Ok(v), "{input}"),
                    Err(m) => {
                        let e = got.expect_err(&input.to_string());
                        assert!(e.0.contains(m), "{input}: {e}");
                    }
                }
            }
        });
    }

    #[test]
    fn placeholders_while_planning() {
        with_env(|env| {
            let env = Env {
                placeholders: true,
                ..*env
            };
            assert_eq!(
                env.eval(&json!({"Fn::GetAtt": ["Later", "Arn"]})).unwrap(),
                Some(json!("{{unresolved:Later.Arn}}"))
            );
        });
    }

    #[test]
    fn finds_references() {
        let declared: BTreeSet<String> =
            ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect();
        let v = json!({
            "X": {"Ref": "A"},
            "Y": [{"Fn::GetAtt": ["B", "Arn"]}, {"Fn::Sub": "${C.Arn}-${AWS::Region}-${!D}"}],
            "Z": {"Fn::Sub": ["${D}", {"D": "literal"}]},
            "W": {"Ref": "Param"}
        });
        let mut out = BTreeSet::new();
        references(&v, &declared, &mut out);
        assert_eq!(out, ["A", "B", "C"].iter().map(|s| s.to_string()).collect());
    }
}

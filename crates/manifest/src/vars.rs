//! The Serverless Framework's variables: `${source:address, fallback, …}` in any
//! string of `serverless.yml`.
//!
//! | source | value |
//! |---|---|
//! | `self:a.b` | the (resolved) value at `a.b` of this file |
//! | `opt:stage`, `opt:region` | the command-line option |
//! | `sls:stage` | the stage: `--stage`, else `provider.stage`, else `dev` |
//! | `env:NAME` | the environment variable |
//! | `file(./x.yml):a.b` | a value of another YAML/JSON file (the whole file without `:a.b`) |
//! | `param:NAME` | `params.<stage>.NAME`, else `params.default.NAME` |
//! | `aws:region`, `aws:accountId` | the region, Nimbus's account id |
//!
//! A fallback is a quoted string, a number, or another source; the first that
//! resolves wins, and none resolving is an error. A string that is exactly one
//! variable takes the variable's type (a mapping, a number); otherwise the values
//! are written into the string.

use crate::yaml::{self, Node, Value};
use crate::Diags;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Recursion limit: `self:` references that go deeper are taken as a cycle.
const MAX_DEPTH: usize = 24;

pub struct Context<'a> {
    pub root: &'a Node,
    /// `None` while the stage itself is being resolved.
    pub stage: Option<String>,
    pub region: String,
    /// `opt:` values.
    pub options: BTreeMap<String, String>,
    pub env: &'a BTreeMap<String, String>,
    /// Where `file(…)` paths start.
    pub dir: PathBuf,
}

impl Context<'_> {
    /// Resolve every variable in `node`; unresolvable ones are errors at their line
    /// and the string is kept as written.
    pub fn resolve(&self, node: &Node, d: &mut Diags) -> Node {
        self.node(node, 0, d)
    }

    fn node(&self, node: &Node, depth: usize, d: &mut Diags) -> Node {
        match &node.value {
            Value::Str(s) if s.contains("${") => match self.string(s, depth) {
                Ok(mut n) => {
                    n.pos = node.pos;
                    // `!Sub '${AWS::StackName}-${self:service}'` stays a `!Sub`.
                    if n.tag.is_none() {
                        n.tag = node.tag.clone();
                    }
                    n
                }
                Err(e) => {
                    d.error(node.pos.line, e);
                    node.clone()
                }
            },
            Value::Seq(items) => Node {
                value: Value::Seq(items.iter().map(|i| self.node(i, depth, d)).collect()),
                ..node.clone()
            },
            Value::Map(entries) => Node {
                value: Value::Map(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), self.node(v, depth, d)))
                        .collect(),
                ),
                ..node.clone()
            },
            _ => node.clone(),
        }
    }

    /// Resolve the variables of one string.
    pub fn string(&self, s: &str, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "variables nest deeper than {MAX_DEPTH} levels in {s:?} (a cycle?)"
            ));
        }
        let mut spans = find_vars(s)?;
        // `${AWS::Region}`, `${Queue}`, `${Queue.Arn}`: CloudFormation `Fn::Sub`
        // references, left for the engine (the Framework leaves them too).
        spans.retain(|(start, end)| !is_sub_reference(&s[start + 2..end - 1]));
        let pos = Default::default();
        if spans.len() == 1 && spans[0].0 == 0 && spans[0].1 == s.len() {
            let inner = &s[2..s.len() - 1];
            return self.expr(inner, depth)?.ok_or_else(|| unresolved(inner));
        }
        let mut out = String::new();
        let mut last = 0;
        for (start, end) in spans {
            out.push_str(&s[last..start]);
            let inner = &s[start + 2..end - 1];
            let v = self.expr(inner, depth)?.ok_or_else(|| unresolved(inner))?;
            match v.scalar_text() {
                Some(t) => out.push_str(&t),
                None => {
                    return Err(format!(
                        "${{{inner}}} is {} and cannot be part of a string",
                        v.kind()
                    ))
                }
            }
            last = end;
        }
        out.push_str(&s[last..]);
        Ok(Node::str(out, pos))
    }

    /// `source, fallback, …` → the first that resolves.
    fn expr(&self, inner: &str, depth: usize) -> Result<Option<Node>, String> {
        for part in split_top(inner) {
            if let Some(v) = self.part(part.trim(), depth)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    fn part(&self, p: &str, depth: usize) -> Result<Option<Node>, String> {
        let pos = Default::default();
        if p.len() >= 2
            && ((p.starts_with('\'') && p.ends_with('\''))
                || (p.starts_with('"') && p.ends_with('"')))
        {
            return Ok(Some(Node::str(&p[1..p.len() - 1], pos)));
        }
        if p.starts_with("${") && p.ends_with('}') {
            return self.expr(&p[2..p.len() - 1], depth + 1);
        }
        if let Ok(i) = p.parse::<i64>() {
            return Ok(Some(Node::new(Value::Int(i), pos)));
        }
        if let Ok(f) = p.parse::<f64>() {
            return Ok(Some(Node::new(Value::Float(f), pos)));
        }
        if p == "true" || p == "false" {
            return Ok(Some(Node::new(Value::Bool(p == "true"), pos)));
        }
        if p == "null" {
            return Ok(Some(Node::new(Value::Null, pos)));
        }
        if let Some(path) = p.strip_prefix("self:") {
            return match self.root.path(path.trim()) {
                Some(n) => self.deep(n, depth + 1).map(Some),
                None => Ok(None),
            };
        }
        if let Some(name) = p.strip_prefix("opt:") {
            return Ok(self
                .options
                .get(name.trim())
                .map(|v| Node::str(v.clone(), pos)));
        }
        if let Some(name) = p.strip_prefix("env:") {
            return Ok(self.env.get(name.trim()).map(|v| Node::str(v.clone(), pos)));
        }
        if let Some(name) = p.strip_prefix("sls:") {
            return match name.trim() {
                "stage" => match &self.stage {
                    Some(s) => Ok(Some(Node::str(s.clone(), pos))),
                    None => Err("${sls:stage} cannot be used to define the stage itself".into()),
                },
                other => Err(format!("variable sls:{other} is not supported yet")),
            };
        }
        if let Some(name) = p.strip_prefix("aws:") {
            return match name.trim() {
                "region" => Ok(Some(Node::str(self.region.clone(), pos))),
                "accountId" => Ok(Some(Node::str(nimbus_core::ACCOUNT_ID, pos))),
                other => Err(format!("variable aws:{other} is not supported yet")),
            };
        }
        if let Some(name) = p.strip_prefix("param:") {
            let stage = self.stage.clone().unwrap_or_default();
            let found = self
                .root
                .get("params")
                .and_then(|ps| {
                    ps.get(&stage)
                        .and_then(|s| s.get(name.trim()))
                        .or_else(|| ps.get("default").and_then(|s| s.get(name.trim())))
                })
                .cloned();
            return match found {
                Some(n) => self.deep(&n, depth + 1).map(Some),
                None => Ok(None),
            };
        }
        if let Some(rest) = p.strip_prefix("file(") {
            let Some((file, after)) = rest.split_once(')') else {
                return Err(format!("${{{p}}}: file( needs a closing parenthesis"));
            };
            let key = after.strip_prefix(':').unwrap_or("").trim();
            return self.file(file.trim(), key, depth);
        }
        let source = p.split(':').next().unwrap_or(p);
        Err(format!(
            "variable source {source:?} in ${{{p}}} is not supported yet"
        ))
    }

    fn deep(&self, n: &Node, depth: usize) -> Result<Node, String> {
        let mut d = Diags::new(Path::new(""));
        let out = self.node(n, depth, &mut d);
        match d.list.into_iter().next() {
            Some(e) => Err(e.message),
            None => Ok(out),
        }
    }

    fn file(&self, file: &str, key: &str, depth: usize) -> Result<Option<Node>, String> {
        let path = self.dir.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // A missing file resolves to nothing, so a fallback can apply.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let doc = yaml::parse(&text).map_err(|e| {
            format!(
                "{}:{}: invalid YAML: {}",
                path.display(),
                e.pos.line,
                e.message
            )
        })?;
        let n = if key.is_empty() {
            Some(&doc)
        } else {
            doc.path(key)
        };
        match n {
            Some(n) => self.deep(n, depth + 1).map(Some),
            None => Ok(None),
        }
    }
}

/// A `Fn::Sub` reference rather than a variable: `AWS::Name`, or a logical id
/// with an optional `.Attribute`, and no source prefix.
fn is_sub_reference(inner: &str) -> bool {
    if let Some(rest) = inner.strip_prefix("AWS::") {
        return !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric());
    }
    let (id, attr) = inner.split_once('.').unwrap_or((inner, ""));
    !id.is_empty()
        && id.chars().all(|c| c.is_ascii_alphanumeric())
        && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        && !matches!(
            id,
            "self" | "opt" | "env" | "sls" | "aws" | "param" | "file"
        )
}

fn unresolved(inner: &str) -> String {
    format!("variable ${{{inner}}} cannot be resolved (give a fallback as ${{{inner}, 'default'}})")
}

/// Byte spans `[start, end)` of the top-level `${…}` in `s`.
fn find_vars(s: &str) -> Result<Vec<(usize, usize)>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' && b[i + 1] == b'{' {
            let start = i;
            let mut depth = 0;
            let mut quote: Option<u8> = None;
            let mut j = i;
            let mut end = None;
            while j < b.len() {
                match (quote, b[j]) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'\'' | b'"') if depth > 0 => quote = Some(b[j]),
                    (None, b'{') => depth += 1,
                    (None, b'}') => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j + 1);
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let end = end.ok_or_else(|| format!("unclosed variable in {s:?}"))?;
            out.push((start, end));
            i = end;
        } else {
            i += 1;
        }
    }
    Ok(out)
}

/// Split on commas outside quotes, parentheses and nested `${…}`.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{' | '(') => depth += 1,
            (None, '}' | ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(root: &'a Node, env: &'a BTreeMap<String, String>, dir: &Path) -> Context<'a> {
        Context {
            root,
            stage: Some("prod".into()),
            region: "eu-west-1".into(),
            options: [("stage".to_string(), "prod".to_string())].into(),
            env,
            dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn resolution_table() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.yml"),
            "db:\n  host: db.local\n  port: 5432\nname: ${self:service}\n",
        )
        .unwrap();
        let root = yaml::parse(
            "service: orders\ncustom:\n  table: ${self:service}-${sls:stage}\n  mem: 256\n  obj: {a: 1}\n  loop: ${self:custom.loop2}\n  loop2: ${self:custom.loop}\nparams:\n  default: {domain: example.com}\n  prod: {domain: prod.example.com}\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> =
            [("HOME_DIR".to_string(), "/home/x".to_string())].into();
        let c = ctx(&root, &env, dir.path());
        let text = |s: &str| c.string(s, 0).map(|n| n.to_json());
        use serde_json::json;
        let cases: Vec<(&str, Result<serde_json::Value, &str>)> = vec![
            ("plain", Ok(json!("plain"))),
            ("${sls:stage}", Ok(json!("prod"))),
            ("${opt:stage, 'dev'}", Ok(json!("prod"))),
            ("${opt:region, 'us-east-1'}", Ok(json!("us-east-1"))),
            ("${opt:region, \"a,b\"}", Ok(json!("a,b"))),
            ("${self:service}", Ok(json!("orders"))),
            ("${self:custom.table}", Ok(json!("orders-prod"))),
            ("t-${self:custom.table}-x", Ok(json!("t-orders-prod-x"))),
            ("${self:custom.mem}", Ok(json!(256))),
            ("${self:custom.obj}", Ok(json!({"a": 1}))),
            ("${env:HOME_DIR}", Ok(json!("/home/x"))),
            ("${env:NOPE, 'fallback'}", Ok(json!("fallback"))),
            ("${env:NOPE, self:service}", Ok(json!("orders"))),
            (
                "${env:NOPE, ${self:custom.table}}",
                Ok(json!("orders-prod")),
            ),
            ("${env:NOPE, 7}", Ok(json!(7))),
            ("${file(./config.yml):db.host}", Ok(json!("db.local"))),
            ("${file(./config.yml):db.port}", Ok(json!(5432))),
            ("${file(./config.yml):name}", Ok(json!("orders"))),
            ("${file(./missing.yml):x, 'none'}", Ok(json!("none"))),
            ("${param:domain}", Ok(json!("prod.example.com"))),
            ("${aws:region}", Ok(json!("eu-west-1"))),
            // Fn::Sub references stay for CloudFormation (the engine).
            (
                "arn:${AWS::Partition}:s3:::${Bucket}/${self:service}",
                Ok(json!("arn:${AWS::Partition}:s3:::${Bucket}/orders")),
            ),
            ("${Queue.Arn}", Ok(json!("${Queue.Arn}"))),
            ("${env:NOPE}", Err("cannot be resolved")),
            ("${self:custom.nope}", Err("cannot be resolved")),
            ("x-${self:custom.obj}", Err("cannot be part of a string")),
            (
                "${ssm:/a/b}",
                Err("\"ssm\" in ${ssm:/a/b} is not supported yet"),
            ),
            ("${self:custom.loop}", Err("a cycle?")),
            ("${self:service", Err("unclosed variable")),
        ];
        for (input, want) in cases {
            match (text(input), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{input}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn errors_carry_the_line() {
        let root = yaml::parse("service: a\nprovider:\n  runtime: ${env:NOPE}\n").unwrap();
        let env = BTreeMap::new();
        let c = ctx(&root, &env, Path::new("."));
        let mut d = Diags::new(Path::new("serverless.yml"));
        let out = c.resolve(&root, &mut d);
        assert_eq!(d.list.len(), 1);
        assert!(d.list[0]
            .to_string()
            .starts_with("serverless.yml:3: error: variable ${env:NOPE} cannot be resolved"));
        assert_eq!(out.path("provider.runtime").unwrap().pos.line, 3);
    }
}

//! The one event-pattern language of Nimbus.
//!
//! EventBridge rules, SNS subscription filter policies (with `FilterPolicyScope:
//! MessageBody`) and Lambda event-source-mapping filter criteria are all the same
//! language: a JSON object that mirrors the shape of the events it selects, whose
//! leaves are arrays of alternatives. This crate owns it, so every trigger filters
//! events one way (DESIGN.md, "Backend services and event sources").
//!
//! ```
//! use nimbus_patterns::Pattern;
//! let p = Pattern::parse(r#"{"source": ["aws.ec2"], "detail": {"state": [{"anything-but": "pending"}]}}"#).unwrap();
//! assert!(p.matches(&serde_json::json!({"source": "aws.ec2", "detail": {"state": "running"}})));
//! assert!(!p.matches(&serde_json::json!({"source": "aws.ec2", "detail": {"state": "pending"}})));
//! ```
//!
//! Semantics (those of EventBridge):
//! * Every field of the pattern must match (AND); the values listed for a field are
//!   alternatives (OR). Nested objects in the pattern select nested fields.
//! * Exact values: strings, numbers (compared as numbers: `5` matches `5.0`),
//!   `true`/`false` and `null`; `""` matches the empty string.
//! * An array in the event matches when any of its elements does.
//! * `{"prefix": "us-"}`, `{"exists": true|false}` (leaves only; a missing field
//!   matches `exists: false` and nothing else), `{"anything-but": v}` and
//!   `{"anything-but": [v, …]}` (present and equal to none of the values).
//!
//! Not yet understood (refused by [`Pattern::parse`] with
//! [`PatternError::Unsupported`], never silently ignored): `suffix`,
//! `equals-ignore-case`, `wildcard`, `numeric`, `cidr`, `$or` and the operator forms
//! of `anything-but`. They are issue 14's.

use serde_json::{Map, Value};

/// Why a pattern was refused. The messages follow EventBridge's
/// `InvalidEventPatternException` reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("Event pattern is not valid. Reason: {0}")]
    Invalid(String),
    #[error(
        "Event pattern is not valid. Reason: the '{0}' operator is not supported by Nimbus yet"
    )]
    Unsupported(String),
}

/// A parsed event pattern. Parse once, match many times.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Node,
}

/// An object level of a pattern: every field must match.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    fields: Vec<(String, Field)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    /// A nested object of the pattern.
    Nested(Node),
    /// A leaf: any of these matches.
    Any(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exact(Value),
    Prefix(String),
    Exists(bool),
    AnythingBut(Vec<Value>),
}

impl Pattern {
    /// Parse a pattern's JSON text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| PatternError::Invalid(format!("Filter is not valid JSON: {e}")))?;
        Pattern::from_value(&v)
    }

    /// Build a pattern from JSON already parsed (a manifest's `pattern:` block).
    pub fn from_value(v: &Value) -> Result<Pattern, PatternError> {
        match v {
            Value::Object(o) => Ok(Pattern {
                root: parse_node(o, "")?,
            }),
            _ => Err(PatternError::Invalid("Filter is not an object".to_string())),
        }
    }

    /// Whether `event` matches the pattern.
    pub fn matches(&self, event: &Value) -> bool {
        match_node(&self.root, Some(event))
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

fn path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn parse_node(o: &Map<String, Value>, at: &str) -> Result<Node, PatternError> {
    if o.is_empty() {
        return Err(PatternError::Invalid(format!(
            "Empty objects are not allowed (at '{at}')"
        )));
    }
    let mut fields = Vec::with_capacity(o.len());
    for (k, v) in o {
        let here = path(at, k);
        if k.starts_with('$') {
            return Err(PatternError::Unsupported(k.clone()));
        }
        let field = match v {
            Value::Object(inner) => Field::Nested(parse_node(inner, &here)?),
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(PatternError::Invalid(format!(
                        "Empty arrays are not allowed (at '{here}')"
                    )));
                }
                Field::Any(
                    items
                        .iter()
                        .map(|i| parse_matcher(i, &here))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => {
                return Err(PatternError::Invalid(format!(
                    "Match value must be String, number, true, false, or null (at '{here}': leaf values go in an array)"
                )))
            }
        };
        fields.push((k.clone(), field));
    }
    Ok(Node { fields })
}

fn parse_matcher(v: &Value, at: &str) -> Result<Matcher, PatternError> {
    let o = match v {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(PatternError::Invalid(format!(
                "Arrays are not allowed inside a match array (at '{at}')"
            )))
        }
        scalar => return Ok(Matcher::Exact(scalar.clone())),
    };
    let mut it = o.iter();
    let (Some((op, arg)), None) = (it.next(), it.next()) else {
        return Err(PatternError::Invalid(format!(
            "A match expression must have exactly one operator (at '{at}')"
        )));
    };
    match (op.as_str(), arg) {
        ("prefix", Value::String(p)) => Ok(Matcher::Prefix(p.clone())),
        ("prefix", Value::Object(_)) => Err(PatternError::Unsupported(format!(
            "prefix.{}",
            first_key(arg)
        ))),
        ("prefix", _) => Err(PatternError::Invalid(format!(
            "prefix match pattern must be a string (at '{at}')"
        ))),
        ("exists", Value::Bool(b)) => Ok(Matcher::Exists(*b)),
        ("exists", _) => Err(PatternError::Invalid(format!(
            "exists match pattern must be either true or false (at '{at}')"
        ))),
        ("anything-but", Value::Array(vals)) => {
            if vals.is_empty() {
                return Err(PatternError::Invalid(format!(
                    "Empty arrays are not allowed (at '{at}')"
                )));
            }
            if let Some(bad) = vals
                .iter()
                .find(|x| !matches!(x, Value::String(_) | Value::Number(_)))
            {
                return Err(PatternError::Invalid(format!(
                    "Inside anything-but list, {bad} is not supported (at '{at}')"
                )));
            }
            Ok(Matcher::AnythingBut(vals.clone()))
        }
        ("anything-but", Value::String(_) | Value::Number(_)) => {
            Ok(Matcher::AnythingBut(vec![arg.clone()]))
        }
        ("anything-but", Value::Object(_)) => Err(PatternError::Unsupported(format!(
            "anything-but.{}",
            first_key(arg)
        ))),
        ("anything-but", _) => Err(PatternError::Invalid(format!(
            "Value of anything-but must be an array or single string/number value (at '{at}')"
        ))),
        ("suffix" | "equals-ignore-case" | "wildcard" | "numeric" | "cidr", _) => {
            Err(PatternError::Unsupported(op.clone()))
        }
        (other, _) => Err(PatternError::Invalid(format!(
            "Unrecognized match type {other} (at '{at}')"
        ))),
    }
}

fn first_key(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default()
}

/// A level of the pattern against the event value found there (`None`: absent).
fn match_node(node: &Node, value: Option<&Value>) -> bool {
    match value {
        // An array of objects: the level matches when one of its elements does.
        Some(Value::Array(items)) => items
            .iter()
            .any(|i| matches!(i, Value::Object(_)) && match_node(node, Some(i))),
        Some(Value::Object(o)) => node.fields.iter().all(|(k, f)| match_field(f, o.get(k))),
        // Absent (or not an object): only `exists: false` leaves can still match.
        _ => node.fields.iter().all(|(_, f)| match_field(f, None)),
    }
}

fn match_field(field: &Field, value: Option<&Value>) -> bool {
    match field {
        Field::Nested(node) => match_node(node, value),
        Field::Any(matchers) => match value {
            None => matchers.contains(&Matcher::Exists(false)),
            Some(Value::Array(items)) => items
                .iter()
                .any(|i| matchers.iter().any(|m| match_leaf(m, i))),
            Some(v) => matchers.iter().any(|m| match_leaf(m, v)),
        },
    }
}

/// One matcher against one present value of the event.
fn match_leaf(m: &Matcher, v: &Value) -> bool {
    // Operators work on leaves: an object in the event matches none of them.
    if v.is_object() {
        return false;
    }
    match m {
        Matcher::Exact(want) => same(want, v),
        Matcher::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        Matcher::Exists(e) => *e,
        Matcher::AnythingBut(not) => !not.iter().any(|n| same(n, v)),
    }
}

/// Equality of pattern and event values; numbers compare by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;

//! The one event-pattern language of Nimbus.
//!
//! EventBridge rules, SNS subscription filter policies and Lambda event-source-mapping
//! filter criteria are all the same language: a JSON object that mirrors the shape of
//! the events it selects, whose leaves are arrays of alternatives. This crate owns it,
//! so every trigger filters events one way (DESIGN.md, "Backend services and event
//! sources").
//!
//! ```
//! use nimbus_patterns::Pattern;
//! let p = Pattern::parse(r#"{"source": ["aws.ec2"], "detail": {"state": [{"anything-but": "pending"}]}}"#).unwrap();
//! assert!(p.matches(&serde_json::json!({"source": "aws.ec2", "detail": {"state": "running"}})));
//! assert!(!p.matches(&serde_json::json!({"source": "aws.ec2", "detail": {"state": "pending"}})));
//! ```
//!
//! Semantics (those of EventBridge and of AWS's `event-ruler`, whose compiler's error
//! messages [`PatternError::Invalid`] reuses):
//! * Every field of the pattern must match (AND); the values listed for a field are
//!   alternatives (OR). Nested objects in the pattern select nested fields. `$or`
//!   (an array of at least two objects) makes its branches alternatives.
//! * Exact values: strings, numbers (compared as numbers: `5` matches `5.0`),
//!   `true`/`false` and `null`; `""` matches the empty string.
//! * An array in the event matches when any of its elements does; an array of
//!   objects matches a nested pattern when one element matches all of it.
//! * Operators: `prefix`, `suffix` (both also as `{"equals-ignore-case": …}`),
//!   `equals-ignore-case`, `wildcard` (`*`, `\*`, `\\`), `anything-but` (a value, a
//!   list of strings or of numbers, or `prefix`/`suffix`/`equals-ignore-case`/
//!   `wildcard`), `numeric` (`=`, or a lower and/or an upper bound), `exists`
//!   (leaves only: an object, an empty array or a missing field is absent), `cidr`
//!   (IPv4 and IPv6).
//!
//! A pattern is compiled once ([`Pattern::parse`]) into matchers that never re-parse
//! (wildcards are split into literal segments, CIDRs into address ranges, numbers
//! into `f64`). [`PatternSet`] matches one event against many patterns (a bus's
//! rules) by indexing them on the exact strings they require.
//!
//! SNS filter policies are the same language with SNS's own limits (5 keys, 150
//! combinations) and its own error text: [`Pattern::parse_filter_policy`] applies
//! them ([`PatternError::Policy`]).

mod set;

pub use set::PatternSet;

use serde_json::{Map, Value};
use std::net::IpAddr;

/// Why a pattern was refused. The messages follow EventBridge's
/// `InvalidEventPatternException` reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// EventBridge's reason (a rule, `TestEventPattern`, ESM filter criteria).
    #[error("Event pattern is not valid. Reason: {0}")]
    Invalid(String),
    /// An SNS filter policy's reason: SNS answers `InvalidParameter` with
    /// `Invalid parameter: FilterPolicy: <reason>` (this error's `Display`).
    #[error("Invalid parameter: FilterPolicy: {0}")]
    Policy(String),
}

impl PatternError {
    /// The reason alone, without the service's prefix.
    pub fn reason(&self) -> &str {
        match self {
            PatternError::Invalid(r) | PatternError::Policy(r) => r,
        }
    }
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError::Invalid(msg.into()))
}

/// A parsed event pattern. Parse once, match many times.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Node,
}

/// An object level of a pattern: every field must match, and one branch of each
/// `$or`.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    fields: Vec<(String, Field)>,
    ors: Vec<Vec<Node>>,
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
    PrefixIgnoreCase(String),
    Suffix(String),
    SuffixIgnoreCase(String),
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    Numeric(Range),
    Exists(bool),
    Cidr(Cidr),
    AnythingBut(Vec<Value>),
    AnythingButPrefix(String),
    AnythingButSuffix(String),
    AnythingButIgnoreCase(Vec<String>),
    AnythingButWildcard(Vec<Wildcard>),
}

/// A numeric range: bounds with their openness.
#[derive(Debug, Clone, PartialEq)]
struct Range {
    low: Option<(f64, bool)>,
    high: Option<(f64, bool)>,
}

impl Range {
    fn contains(&self, x: f64) -> bool {
        if !(-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(&x) {
            return false;
        }
        let lo = match self.low {
            None => true,
            Some((b, open)) => {
                if open {
                    x > b
                } else {
                    x >= b
                }
            }
        };
        let hi = match self.high {
            None => true,
            Some((b, open)) => {
                if open {
                    x < b
                } else {
                    x <= b
                }
            }
        };
        lo && hi
    }
}

/// The range EventBridge's numeric matching works in.
const NUMERIC_LIMIT: f64 = 5.0e9;

/// A compiled wildcard: the literal parts between its `*`s (empty parts kept, so
/// `parts.len() - 1` is the number of stars).
#[derive(Debug, Clone, PartialEq)]
struct Wildcard {
    parts: Vec<String>,
}

impl Wildcard {
    fn compile(p: &str) -> Result<Wildcard, PatternError> {
        let mut parts = vec![String::new()];
        let mut chars = p.chars().enumerate();
        let mut last_star = false;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('*' | '\\'))) => {
                        parts.last_mut().expect("one part").push(e);
                        last_star = false;
                    }
                    _ => return invalid(format!("Invalid escape character at pos {i}")),
                },
                '*' => {
                    if last_star {
                        return invalid(format!("Consecutive wildcard characters at pos {i}"));
                    }
                    parts.push(String::new());
                    last_star = true;
                }
                c => {
                    parts.last_mut().expect("one part").push(c);
                    last_star = false;
                }
            }
        }
        Ok(Wildcard { parts })
    }

    fn matches(&self, s: &str) -> bool {
        let parts = &self.parts;
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if parts.len() == 1 {
            return s == first;
        }
        if s.len() < first.len() + last.len()
            || !s.starts_with(first.as_str())
            || !s.ends_with(last.as_str())
        {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// An IP range in 128-bit space (IPv4 mapped to its own family).
#[derive(Debug, Clone, PartialEq)]
struct Cidr {
    v6: bool,
    low: u128,
    high: u128,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, PatternError> {
        let bad = || PatternError::Invalid(format!("Nonstandard IP address: {s}"));
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let (v6, raw, width) = match ip {
            IpAddr::V4(a) => (false, u32::from(a) as u128, 32u32),
            IpAddr::V6(a) => (true, u128::from(a), 128u32),
        };
        let bits = match bits {
            Some(b) => b.parse::<u32>().map_err(|_| bad())?,
            None => width,
        };
        if bits > width {
            return Err(bad());
        }
        let host = width - bits;
        let mask: u128 = if host == 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        Ok(Cidr {
            v6,
            low: raw & !mask,
            high: (raw & !mask) | mask,
        })
    }

    fn contains(&self, s: &str) -> bool {
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !self.v6 => {
                let x = u32::from(a) as u128;
                self.low <= x && x <= self.high
            }
            Ok(IpAddr::V6(a)) if self.v6 => {
                let x = u128::from(a);
                self.low <= x && x <= self.high
            }
            _ => false,
        }
    }
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
                root: parse_node(o, false)?,
            }),
            _ => invalid("Filter is not an object"),
        }
    }

    /// Parse an SNS subscription filter policy: the same language, with SNS's
    /// limits (at most 5 keys, at most 150 combinations of values) and SNS's errors
    /// ([`PatternError::Policy`]). `wildcard` is EventBridge's only and refused here.
    pub fn parse_filter_policy(text: &str) -> Result<Pattern, PatternError> {
        let policy = |m: String| PatternError::Policy(m);
        let v: Value =
            serde_json::from_str(text).map_err(|_| policy("failed to parse JSON.".to_string()))?;
        if text.contains("\"wildcard\"") && has_wildcard(&v) {
            return Err(policy("Unrecognized match type wildcard".to_string()));
        }
        let p = Pattern::from_value(&v).map_err(|e| policy(e.reason().to_string()))?;
        let keys = p.key_count();
        if keys > 5 {
            return Err(policy(
                "Filter policy can not have more than 5 keys".to_string(),
            ));
        }
        if p.combinations() > 150 {
            return Err(policy("Filter policy is too complex".to_string()));
        }
        Ok(p)
    }

    /// Whether `event` matches the pattern.
    pub fn matches(&self, event: &Value) -> bool {
        match_node(&self.root, Some(event))
    }

    /// The number of distinct leaf fields the pattern tests (SNS's "keys").
    pub fn key_count(&self) -> usize {
        fn walk(n: &Node, at: &str, out: &mut std::collections::BTreeSet<String>) {
            for (k, f) in &n.fields {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match f {
                    Field::Nested(inner) => walk(inner, &here, out),
                    Field::Any(_) => {
                        out.insert(here);
                    }
                }
            }
            for branch in n.ors.iter().flatten() {
                walk(branch, at, out);
            }
        }
        let mut keys = std::collections::BTreeSet::new();
        walk(&self.root, "", &mut keys);
        keys.len()
    }

    /// SNS's complexity: the product of the number of values of each leaf, summed
    /// over the `$or` branches.
    pub fn combinations(&self) -> u64 {
        fn node(n: &Node) -> u64 {
            let mut product: u64 = 1;
            for (_, f) in &n.fields {
                let c = match f {
                    Field::Nested(inner) => node(inner),
                    Field::Any(ms) => ms.len() as u64,
                };
                product = product.saturating_mul(c.max(1));
            }
            for branches in &n.ors {
                let sum: u64 = branches.iter().map(node).fold(0, u64::saturating_add);
                product = product.saturating_mul(sum.max(1));
            }
            product
        }
        node(&self.root)
    }

    /// Exact strings some top-level-AND field requires: `(path, values)` where
    /// the event must carry one of `values` at `path` for the pattern to match.
    /// [`PatternSet`] indexes on it.
    pub(crate) fn required_strings(&self) -> Vec<(Vec<String>, Vec<String>)> {
        fn walk(n: &Node, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, Vec<String>)>) {
            for (k, f) in &n.fields {
                at.push(k.clone());
                match f {
                    Field::Nested(inner) => walk(inner, at, out),
                    Field::Any(ms) => {
                        let strings: Option<Vec<String>> = ms
                            .iter()
                            .map(|m| match m {
                                Matcher::Exact(Value::String(s)) => Some(s.clone()),
                                _ => None,
                            })
                            .collect();
                        if let Some(s) = strings {
                            out.push((at.clone(), s));
                        }
                    }
                }
                at.pop();
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut Vec::new(), &mut out);
        out
    }
}

fn has_wildcard(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, v)| k == "wildcard" || has_wildcard(v)),
        Value::Array(a) => a.iter().any(has_wildcard),
        _ => false,
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

fn parse_node(o: &Map<String, Value>, in_or: bool) -> Result<Node, PatternError> {
    if o.is_empty() {
        return invalid("Empty objects are not allowed");
    }
    let mut fields = Vec::with_capacity(o.len());
    let mut ors = Vec::new();
    for (k, v) in o {
        if k == "$or" {
            let Value::Array(items) = v else {
                return invalid("It must be an Array followed with $or.");
            };
            let mut branches = Vec::with_capacity(items.len());
            for item in items {
                let Value::Object(b) = item else {
                    return invalid("Only JSON object is allowed in array of $or relationship.");
                };
                branches.push(parse_node(b, true)?);
            }
            if branches.len() < 2 {
                return invalid("There must have at least 2 Objects in $or relationship.");
            }
            ors.push(branches);
            continue;
        }
        if in_or && RESERVED_IN_OR.contains(&k.as_str()) {
            return invalid(format!(
                "{k} is Ruler reserved fieldName which cannot be used inside $or."
            ));
        }
        let field = match v {
            Value::Object(inner) => Field::Nested(parse_node(inner, in_or)?),
            Value::Array(items) => {
                if items.is_empty() {
                    return invalid("Empty arrays are not allowed");
                }
                Field::Any(items.iter().map(parse_matcher).collect::<Result<_, _>>()?)
            }
            _ => return invalid(format!("\"{k}\" must be an object or an array")),
        };
        fields.push((k.clone(), field));
    }
    Ok(Node { fields, ors })
}

/// Field names Ruler keeps for its own operators, refused inside `$or`.
const RESERVED_IN_OR: &[&str] = &[
    "anything-but",
    "exists",
    "prefix",
    "suffix",
    "numeric",
    "cidr",
    "equals-ignore-case",
    "wildcard",
];

fn one_key(o: &Map<String, Value>) -> Result<(&String, &Value), PatternError> {
    let mut it = o.iter();
    match (it.next(), it.next()) {
        (Some(kv), None) => Ok(kv),
        (None, _) => invalid("Match expression name not found"),
        (Some(_), Some(_)) => invalid("Only one key allowed in match expression"),
    }
}

fn string_arg<'a>(arg: &'a Value, op: &str) -> Result<&'a str, PatternError> {
    arg.as_str()
        .ok_or_else(|| PatternError::Invalid(format!("{op} match pattern must be a string")))
}

fn parse_matcher(v: &Value) -> Result<Matcher, PatternError> {
    let o = match v {
        Value::Object(o) => o,
        Value::Array(_) => {
            return invalid("Match value must be String, number, true, false, or null")
        }
        scalar => return Ok(Matcher::Exact(scalar.clone())),
    };
    let (op, arg) = one_key(o)?;
    match op.as_str() {
        "prefix" | "suffix" => {
            let prefix = op == "prefix";
            if let Value::Object(inner) = arg {
                let (iop, iarg) = one_key(inner)?;
                if iop != "equals-ignore-case" {
                    return invalid(format!("Unsupported {op} pattern: {iop}"));
                }
                let s = string_arg(iarg, "equals-ignore-case")?.to_lowercase();
                return Ok(if prefix {
                    Matcher::PrefixIgnoreCase(s)
                } else {
                    Matcher::SuffixIgnoreCase(s)
                });
            }
            let s = string_arg(arg, op)?.to_string();
            Ok(if prefix {
                Matcher::Prefix(s)
            } else {
                Matcher::Suffix(s)
            })
        }
        "equals-ignore-case" => Ok(Matcher::EqualsIgnoreCase(
            string_arg(arg, op)?.to_lowercase(),
        )),
        "wildcard" => Ok(Matcher::Wildcard(Wildcard::compile(string_arg(arg, op)?)?)),
        "exists" => match arg {
            Value::Bool(b) => Ok(Matcher::Exists(*b)),
            _ => invalid("exists match pattern must be either true or false."),
        },
        "cidr" => match arg {
            Value::String(s) => Ok(Matcher::Cidr(Cidr::parse(s)?)),
            _ => invalid("cidr match pattern must be a string"),
        },
        "numeric" => match arg {
            Value::Array(items) => Ok(Matcher::Numeric(parse_numeric(items)?)),
            _ => invalid("Value of numeric must be an array."),
        },
        "anything-but" => parse_anything_but(arg),
        other => invalid(format!("Unrecognized match type {other}")),
    }
}

fn numeric_value(v: Option<&Value>, op: &str) -> Result<f64, PatternError> {
    let Some(x) = v.and_then(Value::as_f64) else {
        let name = if op == "=" { "equals" } else { op };
        return invalid(format!("Value of {name} must be numeric"));
    };
    if !(-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(&x) {
        return invalid("Value must be between -5.0E9 and 5.0E9, inclusive");
    }
    Ok(x)
}

fn parse_numeric(items: &[Value]) -> Result<Range, PatternError> {
    let too_many = || invalid("Too many elements in numeric expression");
    let Some(Value::String(op)) = items.first() else {
        let shown = items.first().map(|v| v.to_string()).unwrap_or_default();
        return invalid(format!("Invalid member in numeric match: {shown}"));
    };
    let x = numeric_value(items.get(1), op)?;
    match op.as_str() {
        "=" => {
            if items.len() > 2 {
                return too_many();
            }
            Ok(Range {
                low: Some((x, false)),
                high: Some((x, false)),
            })
        }
        "<" | "<=" => {
            if items.len() > 2 {
                return too_many();
            }
            Ok(Range {
                low: None,
                high: Some((x, op == "<")),
            })
        }
        ">" | ">=" => {
            let low = Some((x, op == ">"));
            if items.len() == 2 {
                return Ok(Range { low, high: None });
            }
            let top_op = match items.get(2) {
                Some(Value::String(t)) => t.as_str(),
                Some(other) => return invalid(format!("Bad value in numeric range: {other}")),
                None => unreachable!("len > 2"),
            };
            if top_op != "<" && top_op != "<=" {
                return invalid(format!("Bad numeric range operator: {top_op}"));
            }
            let top = numeric_value(items.get(3), top_op)?;
            if items.len() > 4 {
                return invalid("Too many terms in numeric range expression");
            }
            if top < x || (top == x && (op == ">" || top_op == "<")) {
                return invalid("Bottom must be less than top");
            }
            Ok(Range {
                low,
                high: Some((top, top_op == "<")),
            })
        }
        other => invalid(format!("Unrecognized numeric range operator: {other}")),
    }
}

fn parse_anything_but(arg: &Value) -> Result<Matcher, PatternError> {
    match arg {
        Value::Object(inner) => {
            let (iop, iarg) = one_key(inner)?;
            match iop.as_str() {
                "prefix" | "suffix" => {
                    let Value::String(s) = iarg else {
                        return invalid("prefix/suffix match pattern must be a string");
                    };
                    if s.is_empty() {
                        return invalid("Null prefix/suffix not allowed");
                    }
                    Ok(if iop == "prefix" {
                        Matcher::AnythingButPrefix(s.clone())
                    } else {
                        Matcher::AnythingButSuffix(s.clone())
                    })
                }
                "equals-ignore-case" => match iarg {
                    Value::String(s) => Ok(Matcher::AnythingButIgnoreCase(vec![s.to_lowercase()])),
                    Value::Array(items) if !items.is_empty() => items
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => Ok(s.to_lowercase()),
                            _ => invalid("Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported."),
                        })
                        .collect::<Result<_, _>>()
                        .map(Matcher::AnythingButIgnoreCase),
                    Value::Array(_) => invalid("Empty arrays are not allowed"),
                    _ => invalid("Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported."),
                },
                "wildcard" => match iarg {
                    Value::String(s) => Ok(Matcher::AnythingButWildcard(vec![Wildcard::compile(s)?])),
                    Value::Array(items) if !items.is_empty() => items
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => Wildcard::compile(s),
                            _ => invalid("wildcard match pattern must be a string"),
                        })
                        .collect::<Result<_, _>>()
                        .map(Matcher::AnythingButWildcard),
                    Value::Array(_) => invalid("Empty arrays are not allowed"),
                    _ => invalid("wildcard match pattern must be a string"),
                },
                other => invalid(format!("Unsupported anything-but pattern: {other}")),
            }
        }
        Value::Array(vals) => {
            if vals.is_empty() {
                return invalid("Empty arrays are not allowed");
            }
            let mut strings = false;
            let mut numbers = false;
            for v in vals {
                match v {
                    Value::String(_) => strings = true,
                    Value::Number(_) => numbers = true,
                    _ => {
                        return invalid(
                            "Inside anything but list, start|null|boolean is not supported.",
                        )
                    }
                }
            }
            if strings && numbers {
                return invalid("Inside anything but list, either all values are number or string, mixed type is not supported");
            }
            Ok(Matcher::AnythingBut(vals.clone()))
        }
        Value::String(_) | Value::Number(_) => Ok(Matcher::AnythingBut(vec![arg.clone()])),
        _ => invalid("Value of anything-but must be an array or single string/number value."),
    }
}

/// A level of the pattern against the event value found there (`None`: absent).
fn match_node(node: &Node, value: Option<&Value>) -> bool {
    match value {
        // An array of objects: the level matches when one of its elements does.
        Some(Value::Array(items)) if items.iter().any(Value::is_object) => items
            .iter()
            .any(|i| i.is_object() && match_node(node, Some(i))),
        Some(Value::Object(o)) => {
            node.fields.iter().all(|(k, f)| match_field(f, o.get(k)))
                && node
                    .ors
                    .iter()
                    .all(|branches| branches.iter().any(|b| match_node(b, value)))
        }
        // Absent (or not an object): only `exists: false` leaves can still match.
        _ => {
            node.fields.iter().all(|(_, f)| match_field(f, None))
                && node
                    .ors
                    .iter()
                    .all(|branches| branches.iter().any(|b| match_node(b, None)))
        }
    }
}

/// Whether a value has any leaf (a scalar, or an array holding one).
fn has_leaf(v: &Value) -> bool {
    match v {
        Value::Object(_) => false,
        Value::Array(items) => items.iter().any(has_leaf),
        _ => true,
    }
}

fn any_leaf(v: &Value, f: &mut impl FnMut(&Value) -> bool) -> bool {
    match v {
        Value::Object(_) => false,
        Value::Array(items) => items.iter().any(|i| any_leaf(i, f)),
        leaf => f(leaf),
    }
}

fn match_field(field: &Field, value: Option<&Value>) -> bool {
    match field {
        Field::Nested(node) => match_node(node, value),
        Field::Any(matchers) => match value {
            Some(v) if has_leaf(v) => {
                any_leaf(v, &mut |leaf| matchers.iter().any(|m| match_leaf(m, leaf)))
            }
            // Absent: a missing field, an object, an empty array.
            _ => matchers.contains(&Matcher::Exists(false)),
        },
    }
}

/// One matcher against one present leaf value of the event.
fn match_leaf(m: &Matcher, v: &Value) -> bool {
    let s = v.as_str();
    match m {
        Matcher::Exact(want) => same(want, v),
        Matcher::Prefix(p) => s.is_some_and(|s| s.starts_with(p.as_str())),
        Matcher::Suffix(p) => s.is_some_and(|s| s.ends_with(p.as_str())),
        Matcher::PrefixIgnoreCase(p) => s.is_some_and(|s| s.to_lowercase().starts_with(p.as_str())),
        Matcher::SuffixIgnoreCase(p) => s.is_some_and(|s| s.to_lowercase().ends_with(p.as_str())),
        Matcher::EqualsIgnoreCase(p) => s.is_some_and(|s| s.to_lowercase() == *p),
        Matcher::Wildcard(w) => s.is_some_and(|s| w.matches(s)),
        Matcher::Numeric(r) => v.as_f64().is_some_and(|x| r.contains(x)),
        Matcher::Exists(e) => *e,
        Matcher::Cidr(c) => s.is_some_and(|s| c.contains(s)),
        Matcher::AnythingBut(not) => !not.iter().any(|n| same(n, v)),
        Matcher::AnythingButPrefix(p) => s.is_none_or(|s| !s.starts_with(p.as_str())),
        Matcher::AnythingButSuffix(p) => s.is_none_or(|s| !s.ends_with(p.as_str())),
        Matcher::AnythingButIgnoreCase(not) => s.is_none_or(|s| {
            let l = s.to_lowercase();
            !not.contains(&l)
        }),
        Matcher::AnythingButWildcard(ws) => s.is_none_or(|s| !ws.iter().any(|w| w.matches(s))),
    }
}

/// Equality of pattern and event values; numbers compare by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64() || x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;

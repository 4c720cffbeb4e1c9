//! Typed, strict access to a mapping's keys, shared by both formats: unknown keys
//! are warnings, wrong types are errors, each at the key's line.

use crate::yaml::{Node, Value};
use crate::Diags;
use std::collections::BTreeMap;

/// One entry of a mapping with the dotted path it lives at (for messages).
#[derive(Clone, Copy)]
pub struct Field<'a> {
    pub key: &'a Node,
    pub val: &'a Node,
}

impl Field<'_> {
    pub fn line(&self) -> usize {
        self.key.pos.line
    }
}

/// The entries of `node` by key. Keys outside `known` are warned about as
/// `unknown key 'path.key'`. A node that is not a mapping is an error (`None`).
pub fn fields<'a>(
    d: &mut Diags,
    node: &'a Node,
    path: &str,
    known: &[&str],
) -> Option<BTreeMap<String, Field<'a>>> {
    let Some(map) = node.as_map() else {
        if node.is_null() {
            return Some(BTreeMap::new());
        }
        d.error(
            node.pos.line,
            format!("{path} must be a mapping, found {}", node.kind()),
        );
        return None;
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Some(name) = k.scalar_text() else {
            d.error(k.pos.line, format!("{path}: keys must be strings"));
            continue;
        };
        if !known.contains(&name.as_str()) {
            d.warn(k.pos.line, format!("unknown key '{}'", join(path, &name)));
        }
        out.insert(name, Field { key: k, val: v });
    }
    Some(out)
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A scalar as a string (numbers and booleans are written out).
pub fn string(d: &mut Diags, f: Field, path: &str) -> Option<String> {
    match f.val.scalar_text() {
        Some(s) => Some(s),
        None => {
            d.error(
                f.line(),
                format!("{path} must be a string, found {}", f.val.kind()),
            );
            None
        }
    }
}

/// A list of strings (scalars written out).
pub fn string_list(d: &mut Diags, f: Field, path: &str) -> Option<Vec<String>> {
    let Some(items) = f.val.as_seq() else {
        d.error(
            f.line(),
            format!("{path} must be a list, found {}", f.val.kind()),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.scalar_text() {
            Some(s) => out.push(s),
            None => {
                d.error(
                    item.pos.line,
                    format!("{path}[{i}] must be a string, found {}", item.kind()),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// An integer in `min..=max`; a numeric string counts (variables resolve to text).
pub fn int(d: &mut Diags, f: Field, path: &str, min: i64, max: i64) -> Option<u32> {
    let n = match &f.val.value {
        Value::Int(i) => Some(*i),
        Value::Str(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(i) if (min..=max).contains(&i) => Some(i as u32),
        Some(i) => {
            d.error(
                f.line(),
                format!("{path} must be between {min} and {max}, found {i}"),
            );
            None
        }
        None => {
            d.error(
                f.line(),
                format!("{path} must be an integer, found {}", f.val.kind()),
            );
            None
        }
    }
}

pub fn boolean(d: &mut Diags, f: Field, path: &str) -> Option<bool> {
    match &f.val.value {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if s == "true" => Some(true),
        Value::Str(s) if s == "false" => Some(false),
        _ => {
            d.error(
                f.line(),
                format!("{path} must be true or false, found {}", f.val.kind()),
            );
            None
        }
    }
}

/// A mapping of scalars (environment variables).
pub fn string_map(d: &mut Diags, f: Field, path: &str) -> Option<BTreeMap<String, String>> {
    let map = match &f.val.value {
        Value::Map(m) => m,
        Value::Null => return Some(BTreeMap::new()),
        _ => {
            d.error(
                f.line(),
                format!("{path} must be a mapping, found {}", f.val.kind()),
            );
            return None;
        }
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in map {
        let key = k.scalar_text().unwrap_or_default();
        match v.scalar_text() {
            Some(s) => {
                out.insert(key, s);
            }
            None => {
                ok = false;
                d.error(
                    k.pos.line,
                    format!("{} must be a string, found {}", join(path, &key), v.kind()),
                );
            }
        }
    }
    ok.then_some(out)
}

/// A payload format version, tolerant of YAML reading `2.0` as a number.
pub fn payload_version(d: &mut Diags, f: Field, path: &str) -> Option<String> {
    let s = match &f.val.value {
        Value::Float(x) => format!("{x:.1}"),
        Value::Int(i) => format!("{i}.0"),
        Value::Str(s) => s.clone(),
        _ => String::new(),
    };
    if s == "1.0" || s == "2.0" {
        Some(s)
    } else {
        d.error(
            f.line(),
            format!("{path} must be '1.0' or '2.0', found {}", f.val.kind()),
        );
        None
    }
}

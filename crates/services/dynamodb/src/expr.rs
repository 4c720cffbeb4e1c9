//! The expression language: a tokenizer and recursive-descent parser for
//! condition/filter, key-condition, update and projection expressions, their
//! `ExpressionAttributeNames`/`Values` resolution and validation (with DynamoDB's
//! `ValidationException` messages), and their evaluation against an item.
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, then `BETWEEN`/`IN`/comparators,
//! then parentheses and functions — as DynamoDB documents it.

use crate::reserved::is_reserved;
use crate::value::{add_numbers, AttrValue, Item};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElem {
    Key(String),
    Index(usize),
}

pub type Path = Vec<PathElem>;

/// `[a, b, [0]]`, as DynamoDB writes paths in messages.
pub fn show_path(p: &Path) -> String {
    let parts: Vec<String> = p
        .iter()
        .map(|e| match e {
            PathElem::Key(k) => k.clone(),
            PathElem::Index(i) => format!("[{i}]"),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Path),
    Value(AttrValue),
    Size(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Cmp(Operand, CmpOp, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Exists(Path),
    NotExists(Path),
    AttrType(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
}

/// The right-hand side of a `SET` action.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Operand(Operand),
    IfNotExists(Path, Box<SetValue>),
    ListAppend(Box<SetValue>, Box<SetValue>),
    Plus(Box<SetValue>, Box<SetValue>),
    Minus(Box<SetValue>, Box<SetValue>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpdateAction {
    Set(Path, SetValue),
    Remove(Path),
    Add(Path, AttrValue),
    Delete(Path, AttrValue),
}

/// The names and values of a request, and which of them its expressions used.
pub struct Params {
    names: Option<BTreeMap<String, String>>,
    values: Option<BTreeMap<String, AttrValue>>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl Params {
    /// Read and validate `ExpressionAttributeNames`/`Values` from a request.
    pub fn from_request(req: &Value) -> Result<Params, String> {
        let names = match req.get("ExpressionAttributeNames") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                if m.is_empty() {
                    return Err("ExpressionAttributeNames must not be empty".into());
                }
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    if !k.starts_with('#')
                        || k.len() < 2
                        || !k[1..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "ExpressionAttributeNames contains invalid key: Syntax error; key: \"{k}\""
                        ));
                    }
                    let v = v.as_str().unwrap_or_default();
                    if v.is_empty() {
                        return Err(format!(
                            "ExpressionAttributeNames contains invalid value: Empty attribute name for key {k}"
                        ));
                    }
                    out.insert(k.clone(), v.to_string());
                }
                Some(out)
            }
            Some(_) => return Err("ExpressionAttributeNames must be a map".into()),
        };
        let values = match req.get("ExpressionAttributeValues") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                if m.is_empty() {
                    return Err("ExpressionAttributeValues must not be empty".into());
                }
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    if !k.starts_with(':')
                        || k.len() < 2
                        || !k[1..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "ExpressionAttributeValues contains invalid key: Syntax error; key: \"{k}\""
                        ));
                    }
                    let v = AttrValue::from_json(v).map_err(|e| {
                        format!("ExpressionAttributeValues contains invalid value: {e} for key {k}")
                    })?;
                    out.insert(k.clone(), v);
                }
                Some(out)
            }
            Some(_) => return Err("ExpressionAttributeValues must be a map".into()),
        };
        Ok(Params {
            names,
            values,
            used_names: BTreeSet::new(),
            used_values: BTreeSet::new(),
        })
    }

    /// No names or values (legacy-parameter requests).
    pub fn empty() -> Params {
        Params {
            names: None,
            values: None,
            used_names: BTreeSet::new(),
            used_values: BTreeSet::new(),
        }
    }

    /// Whether the request gave names or values at all.
    pub fn given(&self) -> bool {
        self.names.is_some() || self.values.is_some()
    }

    /// After every expression is parsed: names or values no expression used.
    pub fn check_unused(&self) -> Result<(), String> {
        if let Some(n) = &self.names {
            let unused: Vec<&String> = n.keys().filter(|k| !self.used_names.contains(*k)).collect();
            if !unused.is_empty() {
                return Err(format!(
                    "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                    unused.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if let Some(v) = &self.values {
            let unused: Vec<&String> = v
                .keys()
                .filter(|k| !self.used_values.contains(*k))
                .collect();
            if !unused.is_empty() {
                return Err(format!(
                    "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                    unused.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Name(String),
    Val(String),
    Num(String),
    P(&'static str),
    Eof,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Name(s) | Tok::Val(s) | Tok::Num(s) => s.clone(),
            Tok::P(p) => p.to_string(),
            Tok::Eof => "<EOF>".into(),
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Spanned>,
    pos: usize,
    params: &'a mut Params,
    /// `ConditionExpression`, `UpdateExpression`, … for messages.
    kind: &'static str,
}

/// A token with its byte span.
type Spanned = (Tok, usize, usize);

/// The bad text and its span.
type LexError = (String, usize, usize);

fn tokenize(src: &str) -> Result<Vec<Spanned>, LexError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let word = |j: usize| -> usize {
        let mut k = j;
        while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
            k += 1;
        }
        k
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            b'#' | b':' => {
                let end = word(i + 1);
                if end == i + 1 {
                    return Err(((c as char).to_string(), start, start + 1));
                }
                i = end;
                if c == b'#' {
                    Tok::Name(src[start..end].to_string())
                } else {
                    Tok::Val(src[start..end].to_string())
                }
            }
            b'0'..=b'9' => {
                let mut end = i;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                i = end;
                Tok::Num(src[start..end].to_string())
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                i = word(i);
                Tok::Ident(src[start..i].to_string())
            }
            b'<' if b.get(i + 1) == Some(&b'>') => {
                i += 2;
                Tok::P("<>")
            }
            b'<' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::P("<=")
            }
            b'>' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::P(">=")
            }
            _ => {
                let p = match c {
                    b'(' => "(",
                    b')' => ")",
                    b'[' => "[",
                    b']' => "]",
                    b',' => ",",
                    b'.' => ".",
                    b'=' => "=",
                    b'+' => "+",
                    b'-' => "-",
                    b'<' => "<",
                    b'>' => ">",
                    _ => {
                        let ch = src[i..].chars().next().unwrap_or('?');
                        return Err((ch.to_string(), start, start + ch.len_utf8()));
                    }
                };
                i += 1;
                Tok::P(p)
            }
        };
        out.push((tok, start, i));
    }
    out.push((Tok::Eof, src.len(), src.len()));
    Ok(out)
}

const CMP: &[&str] = &["=", "<>", "<", "<=", ">", ">="];

impl<'a> Parser<'a> {
    fn new(src: &'a str, params: &'a mut Params, kind: &'static str) -> Result<Self, String> {
        if src.trim().is_empty() {
            return Err(format!("Invalid {kind}: The expression can not be empty;"));
        }
        let toks = tokenize(src).map_err(|(t, s, e)| {
            let near_start = src[..s].rfind(char::is_whitespace).map_or(0, |p| p + 1);
            let near_end = src[e..]
                .find(char::is_whitespace)
                .map_or(src.len(), |p| e + p);
            format!(
                "Invalid {kind}: Syntax error; token: \"{t}\", near: \"{}\"",
                &src[near_start..near_end]
            )
        })?;
        Ok(Parser {
            src,
            toks,
            pos: 0,
            params,
            kind,
        })
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn peek2(&self) -> &Tok {
        &self.toks[(self.pos + 1).min(self.toks.len() - 1)].0
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn is_p(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::P(q) if *q == p)
    }

    fn err(&self, msg: impl std::fmt::Display) -> String {
        format!("Invalid {}: {msg}", self.kind)
    }

    /// DynamoDB's syntax error at the current token: `near` spans the previous
    /// token to the next.
    fn syntax(&self) -> String {
        let (tok, _, _) = &self.toks[self.pos];
        let start = if self.pos > 0 {
            self.toks[self.pos - 1].1
        } else {
            self.toks[self.pos].1
        };
        let end = if matches!(tok, Tok::Eof) {
            self.src.len()
        } else {
            self.toks[(self.pos + 1).min(self.toks.len() - 1)].2
        };
        self.err(format!(
            "Syntax error; token: \"{}\", near: \"{}\"",
            tok.text(),
            &self.src[start.min(end)..end]
        ))
    }

    fn expect_p(&mut self, p: &str) -> Result<(), String> {
        if self.is_p(p) {
            self.next();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn name_part(&mut self) -> Result<String, String> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                if is_reserved(&s) {
                    return Err(self.err(format!(
                        "Attribute name is a reserved keyword; reserved keyword: {s}"
                    )));
                }
                self.next();
                Ok(s)
            }
            Tok::Name(n) => {
                self.next();
                let v = self.params.names.as_ref().and_then(|m| m.get(&n)).cloned();
                match v {
                    Some(v) => {
                        self.params.used_names.insert(n);
                        Ok(v)
                    }
                    None => Err(self.err(format!(
                        "An expression attribute name used in the document path is not defined; attribute name: {n}"
                    ))),
                }
            }
            _ => Err(self.syntax()),
        }
    }

    fn path(&mut self) -> Result<Path, String> {
        let mut p = vec![PathElem::Key(self.name_part()?)];
        loop {
            if self.is_p(".") {
                self.next();
                p.push(PathElem::Key(self.name_part()?));
            } else if self.is_p("[") {
                self.next();
                match self.next() {
                    Tok::Num(n) => {
                        let i: usize = n.parse().map_err(|_| self.syntax())?;
                        p.push(PathElem::Index(i));
                    }
                    _ => {
                        self.pos -= 1;
                        return Err(self.syntax());
                    }
                }
                self.expect_p("]")?;
            } else {
                return Ok(p);
            }
        }
    }

    fn value(&mut self, v: &str) -> Result<AttrValue, String> {
        match self.params.values.as_ref().and_then(|m| m.get(v)).cloned() {
            Some(x) => {
                self.params.used_values.insert(v.to_string());
                Ok(x)
            }
            None => Err(self.err(format!(
                "An expression attribute value used in expression is not defined; attribute value: {v}"
            ))),
        }
    }

    fn done(&mut self) -> Result<(), String> {
        if matches!(self.peek(), Tok::Eof) {
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    // ---- conditions -------------------------------------------------------

    fn cond(&mut self) -> Result<Cond, String> {
        let mut left = self.and()?;
        while self.is_kw("OR") {
            self.next();
            let right = self.and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut left = self.not()?;
        while self.is_kw("AND") {
            self.next();
            let right = self.not()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.is_kw("NOT") {
            self.next();
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond, String> {
        if self.is_p("(") {
            self.next();
            let c = self.cond()?;
            self.expect_p(")")?;
            return Ok(c);
        }
        if let (Tok::Ident(f), Tok::P("(")) = (self.peek().clone(), self.peek2().clone()) {
            let lf = f.to_ascii_lowercase();
            match lf.as_str() {
                "attribute_exists" | "attribute_not_exists" => {
                    self.next();
                    self.next();
                    let p = self.path()?;
                    self.expect_p(")")?;
                    return Ok(if lf == "attribute_exists" {
                        Cond::Exists(p)
                    } else {
                        Cond::NotExists(p)
                    });
                }
                "attribute_type" => {
                    self.next();
                    self.next();
                    let p = self.path()?;
                    self.expect_p(",")?;
                    let t = self.operand()?;
                    self.expect_p(")")?;
                    if let Operand::Value(v) = &t {
                        let ok = matches!(v, AttrValue::S(s) if ["S","N","B","BOOL","NULL","L","M","SS","NS","BS"].contains(&s.as_str()));
                        if !ok {
                            let shown = match v {
                                AttrValue::S(s) => s.clone(),
                                other => other.to_json().to_string(),
                            };
                            return Err(self.err(format!(
                                "Invalid attribute type name found; type: {shown}, valid types: {{ B,NULL,SS,BOOL,L,BS,N,NS,S,M }}"
                            )));
                        }
                    }
                    return Ok(Cond::AttrType(p, t));
                }
                "begins_with" | "contains" => {
                    self.next();
                    self.next();
                    let a = self.operand()?;
                    self.expect_p(",")?;
                    let b = self.operand()?;
                    self.expect_p(")")?;
                    if lf == "begins_with" {
                        for o in [&a, &b] {
                            if let Operand::Value(v) = o {
                                if !matches!(v, AttrValue::S(_) | AttrValue::B(_)) {
                                    return Err(self.err(format!(
                                        "Incorrect operand type for operator or function; operator or function: begins_with, operand type: {}",
                                        v.type_name()
                                    )));
                                }
                            }
                        }
                        return Ok(Cond::BeginsWith(a, b));
                    }
                    return Ok(Cond::Contains(a, b));
                }
                "size" => {}
                _ => {
                    return Err(self.err(format!("Invalid function name; function: {f}")));
                }
            }
        }
        let left = self.operand()?;
        if self.is_kw("BETWEEN") {
            self.next();
            let lo = self.operand()?;
            if !self.is_kw("AND") {
                return Err(self.syntax());
            }
            self.next();
            let hi = self.operand()?;
            if let (Operand::Value(l), Operand::Value(h)) = (&lo, &hi) {
                if l.compare(h) == Some(Ordering::Greater) {
                    return Err(self.err(format!(
                        "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {}, upper bound operand: AttributeValue: {}",
                        show_value(l), show_value(h)
                    )));
                }
            }
            return Ok(Cond::Between(left, lo, hi));
        }
        if self.is_kw("IN") {
            self.next();
            self.expect_p("(")?;
            let mut list = vec![self.operand()?];
            while self.is_p(",") {
                self.next();
                list.push(self.operand()?);
            }
            self.expect_p(")")?;
            if list.len() > 100 {
                return Err(self.err(
                    "The IN operator is provided with too many operands; number of operands: "
                        .to_string()
                        + &list.len().to_string(),
                ));
            }
            return Ok(Cond::In(left, list));
        }
        let op = match self.peek() {
            Tok::P(p) if CMP.contains(p) => match *p {
                "=" => CmpOp::Eq,
                "<>" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            },
            _ => return Err(self.syntax()),
        };
        self.next();
        let right = self.operand()?;
        if let (Operand::Path(a), Operand::Path(b)) = (&left, &right) {
            if a == b {
                return Err(self.err(format!(
                    "The first operand must be distinct from the remaining operands for this operator or function; operator: {}, first operand: {}",
                    ["=", "<>", "<", "<=", ">", ">="][op as usize],
                    show_path(a)
                )));
            }
        }
        Ok(Cond::Cmp(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.peek().clone() {
            Tok::Val(v) => {
                self.next();
                Ok(Operand::Value(self.value(&v)?))
            }
            Tok::Ident(f) if matches!(self.peek2(), Tok::P("(")) => {
                if f.eq_ignore_ascii_case("size") {
                    self.next();
                    self.next();
                    let p = self.path()?;
                    self.expect_p(")")?;
                    Ok(Operand::Size(p))
                } else if [
                    "attribute_exists",
                    "attribute_not_exists",
                    "attribute_type",
                    "begins_with",
                    "contains",
                ]
                .contains(&f.to_ascii_lowercase().as_str())
                {
                    Err(self.err(format!(
                        "The function is not allowed to be used this way in an expression; function: {f}"
                    )))
                } else {
                    Err(self.err(format!("Invalid function name; function: {f}")))
                }
            }
            Tok::Ident(_) | Tok::Name(_) => Ok(Operand::Path(self.path()?)),
            _ => Err(self.syntax()),
        }
    }

    // ---- updates ----------------------------------------------------------

    fn update(&mut self) -> Result<Vec<UpdateAction>, String> {
        let mut actions = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        loop {
            let kw = match self.peek() {
                Tok::Ident(s) => s.to_ascii_uppercase(),
                Tok::Eof if !actions.is_empty() => break,
                _ => return Err(self.syntax()),
            };
            if !["SET", "REMOVE", "ADD", "DELETE"].contains(&kw.as_str()) {
                return Err(self.syntax());
            }
            if !seen.insert(kw.clone()) {
                return Err(self.err(format!(
                    "The \"{kw}\" section can only be used once in an update expression;"
                )));
            }
            self.next();
            loop {
                let path = self.path()?;
                match kw.as_str() {
                    "SET" => {
                        self.expect_p("=")?;
                        let v = self.set_value()?;
                        actions.push(UpdateAction::Set(path, v));
                    }
                    "REMOVE" => actions.push(UpdateAction::Remove(path)),
                    _ => {
                        let v = match self.next() {
                            Tok::Val(v) => self.value(&v)?,
                            _ => {
                                self.pos -= 1;
                                return Err(self.syntax());
                            }
                        };
                        let ok = match kw.as_str() {
                            "ADD" => matches!(
                                v,
                                AttrValue::N(_)
                                    | AttrValue::SS(_)
                                    | AttrValue::NS(_)
                                    | AttrValue::BS(_)
                            ),
                            _ => {
                                matches!(v, AttrValue::SS(_) | AttrValue::NS(_) | AttrValue::BS(_))
                            }
                        };
                        if !ok {
                            return Err(self.err(format!(
                                "Incorrect operand type for operator or function; operator: {kw}, operand type: {}",
                                v.type_name()
                            )));
                        }
                        actions.push(if kw == "ADD" {
                            UpdateAction::Add(path, v)
                        } else {
                            UpdateAction::Delete(path, v)
                        });
                    }
                }
                if self.is_p(",") {
                    self.next();
                } else {
                    break;
                }
            }
        }
        // Overlapping or conflicting document paths.
        let paths: Vec<&Path> = actions
            .iter()
            .map(|a| match a {
                UpdateAction::Set(p, _)
                | UpdateAction::Remove(p)
                | UpdateAction::Add(p, _)
                | UpdateAction::Delete(p, _) => p,
            })
            .collect();
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[..i] {
                let n = a.len().min(b.len());
                if a[..n] == b[..n] {
                    return Err(self.err(format!(
                        "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {}, path two: {}",
                        show_path(b),
                        show_path(a)
                    )));
                }
            }
        }
        Ok(actions)
    }

    fn set_value(&mut self) -> Result<SetValue, String> {
        let left = self.set_operand()?;
        if self.is_p("+") || self.is_p("-") {
            let plus = self.is_p("+");
            self.next();
            let right = self.set_operand()?;
            return Ok(if plus {
                SetValue::Plus(Box::new(left), Box::new(right))
            } else {
                SetValue::Minus(Box::new(left), Box::new(right))
            });
        }
        Ok(left)
    }

    fn set_operand(&mut self) -> Result<SetValue, String> {
        if let (Tok::Ident(f), Tok::P("(")) = (self.peek().clone(), self.peek2().clone()) {
            let lf = f.to_ascii_lowercase();
            self.next();
            self.next();
            match lf.as_str() {
                "if_not_exists" => {
                    let p = self.path()?;
                    self.expect_p(",")?;
                    let v = self.set_operand()?;
                    self.expect_p(")")?;
                    return Ok(SetValue::IfNotExists(p, Box::new(v)));
                }
                "list_append" => {
                    let a = self.set_operand()?;
                    self.expect_p(",")?;
                    let b = self.set_operand()?;
                    self.expect_p(")")?;
                    return Ok(SetValue::ListAppend(Box::new(a), Box::new(b)));
                }
                "attribute_exists"
                | "attribute_not_exists"
                | "attribute_type"
                | "begins_with"
                | "contains"
                | "size" => {
                    return Err(self.err(format!(
                        "The function is not allowed in an update expression; function: {f}"
                    )))
                }
                _ => return Err(self.err(format!("Invalid function name; function: {f}"))),
            }
        }
        match self.peek().clone() {
            Tok::Val(v) => {
                self.next();
                Ok(SetValue::Operand(Operand::Value(self.value(&v)?)))
            }
            Tok::Ident(_) | Tok::Name(_) => Ok(SetValue::Operand(Operand::Path(self.path()?))),
            _ => Err(self.syntax()),
        }
    }
}

fn show_value(v: &AttrValue) -> String {
    match v {
        AttrValue::S(s) => format!("{{S:{s}}}"),
        AttrValue::N(n) => format!("{{N:{n}}}"),
        other => format!("{{{}:…}}", other.type_name()),
    }
}

/// Parse a condition or filter expression; `kind` names it in messages.
pub fn parse_condition(src: &str, params: &mut Params, kind: &'static str) -> Result<Cond, String> {
    let mut p = Parser::new(src, params, kind)?;
    let c = p.cond()?;
    p.done()?;
    Ok(c)
}

/// Parse an update expression.
pub fn parse_update(src: &str, params: &mut Params) -> Result<Vec<UpdateAction>, String> {
    let mut p = Parser::new(src, params, "UpdateExpression")?;
    p.update()
}

/// Parse a projection expression.
pub fn parse_projection(src: &str, params: &mut Params) -> Result<Vec<Path>, String> {
    let mut p = Parser::new(src, params, "ProjectionExpression")?;
    let mut out = vec![p.path()?];
    while p.is_p(",") {
        p.next();
        out.push(p.path()?);
    }
    p.done()?;
    for (i, a) in out.iter().enumerate() {
        for b in &out[..i] {
            let n = a.len().min(b.len());
            if a[..n] == b[..n] {
                return Err(p.err(format!(
                    "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {}, path two: {}",
                    show_path(b),
                    show_path(a)
                )));
            }
        }
    }
    Ok(out)
}

/// A key condition, reduced to the hash value and an optional range condition.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyCond {
    pub hash_name: String,
    pub hash: AttrValue,
    pub range: Option<(String, RangeCond)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RangeCond {
    Cmp(CmpOp, AttrValue),
    Between(AttrValue, AttrValue),
    BeginsWith(AttrValue),
}

/// Parse a `KeyConditionExpression` against the key schema (hash, range).
pub fn parse_key_condition(
    src: &str,
    params: &mut Params,
    hash: &str,
    range: Option<&str>,
) -> Result<KeyCond, String> {
    let c = parse_condition(src, params, "KeyConditionExpression")?;
    let mut parts = Vec::new();
    fn flatten(c: Cond, out: &mut Vec<Cond>) -> Result<(), String> {
        match c {
            Cond::And(a, b) => {
                flatten(*a, out)?;
                flatten(*b, out)
            }
            other => {
                out.push(other);
                Ok(())
            }
        }
    }
    flatten(c, &mut parts)?;
    let unsupported = || "Query key condition not supported".to_string();
    if parts.len() > 2 {
        return Err("Conditions can be of length 1 or 2 only".into());
    }
    let top = |p: &Path| -> Result<String, String> {
        match p.as_slice() {
            [PathElem::Key(k)] => Ok(k.clone()),
            _ => Err(unsupported()),
        }
    };
    let mut hash_v = None;
    let mut range_c = None;
    for part in parts {
        let (name, rc) = match part {
            Cond::Cmp(Operand::Path(p), op, Operand::Value(v)) => (top(&p)?, RangeCond::Cmp(op, v)),
            Cond::Cmp(Operand::Value(v), op, Operand::Path(p)) => {
                let op = match op {
                    CmpOp::Lt => CmpOp::Gt,
                    CmpOp::Le => CmpOp::Ge,
                    CmpOp::Gt => CmpOp::Lt,
                    CmpOp::Ge => CmpOp::Le,
                    o => o,
                };
                (top(&p)?, RangeCond::Cmp(op, v))
            }
            Cond::Between(Operand::Path(p), Operand::Value(a), Operand::Value(b)) => {
                (top(&p)?, RangeCond::Between(a, b))
            }
            Cond::BeginsWith(Operand::Path(p), Operand::Value(v)) => {
                (top(&p)?, RangeCond::BeginsWith(v))
            }
            _ => return Err(unsupported()),
        };
        if matches!(rc, RangeCond::Cmp(CmpOp::Ne, _)) {
            return Err(unsupported());
        }
        if name == hash && hash_v.is_none() {
            match rc {
                RangeCond::Cmp(CmpOp::Eq, v) => hash_v = Some(v),
                _ => return Err(unsupported()),
            }
        } else if Some(name.as_str()) == range && range_c.is_none() {
            range_c = Some((name, rc));
        } else if name == hash || Some(name.as_str()) == range {
            return Err(unsupported());
        } else {
            return Err(format!(
                "Query condition missed key schema element: {}",
                if hash_v.is_none() {
                    hash
                } else {
                    range.unwrap_or(hash)
                }
            ));
        }
    }
    let Some(hash_v) = hash_v else {
        return Err(format!("Query condition missed key schema element: {hash}"));
    };
    Ok(KeyCond {
        hash_name: hash.to_string(),
        hash: hash_v,
        range: range_c,
    })
}

// ---- evaluation -----------------------------------------------------------

/// The value at `path` in `item`.
pub fn get_path<'a>(item: &'a Item, path: &Path) -> Option<&'a AttrValue> {
    let PathElem::Key(first) = &path[0] else {
        return None;
    };
    let mut cur = item.get(first)?;
    for e in &path[1..] {
        cur = match (e, cur) {
            (PathElem::Key(k), AttrValue::M(m)) => m.get(k)?,
            (PathElem::Index(i), AttrValue::L(l)) => l.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn resolve(o: &Operand, item: &Item) -> Option<AttrValue> {
    match o {
        Operand::Value(v) => Some(v.clone()),
        Operand::Path(p) => get_path(item, p).cloned(),
        Operand::Size(p) => {
            let n = match get_path(item, p)? {
                AttrValue::S(s) => s.chars().count(),
                AttrValue::B(b) => b.len(),
                AttrValue::L(l) => l.len(),
                AttrValue::M(m) => m.len(),
                AttrValue::SS(s) | AttrValue::NS(s) => s.len(),
                AttrValue::BS(s) => s.len(),
                _ => return None,
            };
            Some(AttrValue::N(n.to_string()))
        }
    }
}

fn cmp_holds(a: &AttrValue, op: CmpOp, b: &AttrValue) -> bool {
    match op {
        CmpOp::Eq => a.equals(b),
        CmpOp::Ne => !a.equals(b),
        _ => match a.compare(b) {
            None => false,
            Some(o) => match op {
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            },
        },
    }
}

/// Whether `c` holds for `item` (an absent item is the empty item).
pub fn eval(c: &Cond, item: &Item) -> bool {
    match c {
        Cond::And(a, b) => eval(a, item) && eval(b, item),
        Cond::Or(a, b) => eval(a, item) || eval(b, item),
        Cond::Not(a) => !eval(a, item),
        Cond::Exists(p) => get_path(item, p).is_some(),
        Cond::NotExists(p) => get_path(item, p).is_none(),
        Cond::AttrType(p, t) => match (get_path(item, p), resolve(t, item)) {
            (Some(v), Some(AttrValue::S(t))) => v.type_name() == t,
            _ => false,
        },
        Cond::Cmp(a, op, b) => match (resolve(a, item), resolve(b, item)) {
            (Some(x), Some(y)) => cmp_holds(&x, *op, &y),
            (None, Some(_)) | (Some(_), None) => *op == CmpOp::Ne,
            _ => false,
        },
        Cond::Between(a, lo, hi) => {
            match (resolve(a, item), resolve(lo, item), resolve(hi, item)) {
                (Some(x), Some(l), Some(h)) => {
                    cmp_holds(&x, CmpOp::Ge, &l) && cmp_holds(&x, CmpOp::Le, &h)
                }
                _ => false,
            }
        }
        Cond::In(a, list) => match resolve(a, item) {
            Some(x) => list
                .iter()
                .any(|o| resolve(o, item).is_some_and(|y| x.equals(&y))),
            None => false,
        },
        Cond::BeginsWith(a, b) => match (resolve(a, item), resolve(b, item)) {
            (Some(AttrValue::S(x)), Some(AttrValue::S(y))) => x.starts_with(&y),
            (Some(AttrValue::B(x)), Some(AttrValue::B(y))) => x.starts_with(&y),
            _ => false,
        },
        Cond::Contains(a, b) => match (resolve(a, item), resolve(b, item)) {
            (Some(AttrValue::S(x)), Some(AttrValue::S(y))) => x.contains(&y),
            (Some(AttrValue::B(x)), Some(AttrValue::B(y))) => {
                y.is_empty() || x.windows(y.len()).any(|w| w == y.as_slice())
            }
            (Some(AttrValue::SS(x)), Some(AttrValue::S(y))) => x.contains(&y),
            (Some(AttrValue::NS(x)), Some(AttrValue::N(y))) => x
                .iter()
                .any(|n| AttrValue::N(n.clone()).equals(&AttrValue::N(y.clone()))),
            (Some(AttrValue::BS(x)), Some(AttrValue::B(y))) => x.contains(&y),
            (Some(AttrValue::L(x)), Some(y)) => x.iter().any(|v| v.equals(&y)),
            _ => false,
        },
    }
}

/// Whether the key condition's range part holds for a range value.
pub fn range_holds(rc: &RangeCond, v: &AttrValue) -> bool {
    match rc {
        RangeCond::Cmp(op, x) => cmp_holds(v, *op, x),
        RangeCond::Between(a, b) => cmp_holds(v, CmpOp::Ge, a) && cmp_holds(v, CmpOp::Le, b),
        RangeCond::BeginsWith(p) => match (v, p) {
            (AttrValue::S(x), AttrValue::S(y)) => x.starts_with(y.as_str()),
            (AttrValue::B(x), AttrValue::B(y)) => x.starts_with(y),
            _ => false,
        },
    }
}

const BAD_TYPE: &str = "An operand in the update expression has an incorrect data type";

fn eval_set(v: &SetValue, item: &Item) -> Result<AttrValue, String> {
    match v {
        SetValue::Operand(o) => resolve(o, item).ok_or_else(|| {
            "The provided expression refers to an attribute that does not exist in the item"
                .to_string()
        }),
        SetValue::IfNotExists(p, d) => match get_path(item, p) {
            Some(x) => Ok(x.clone()),
            None => eval_set(d, item),
        },
        SetValue::ListAppend(a, b) => match (eval_set(a, item)?, eval_set(b, item)?) {
            (AttrValue::L(mut x), AttrValue::L(y)) => {
                x.extend(y);
                Ok(AttrValue::L(x))
            }
            _ => Err(BAD_TYPE.into()),
        },
        SetValue::Plus(a, b) | SetValue::Minus(a, b) => {
            match (eval_set(a, item)?, eval_set(b, item)?) {
                (AttrValue::N(x), AttrValue::N(y)) => Ok(AttrValue::N(add_numbers(
                    &x,
                    &y,
                    matches!(v, SetValue::Minus(..)),
                )?)),
                _ => Err(BAD_TYPE.into()),
            }
        }
    }
}

const BAD_PATH: &str = "The document path provided in the update expression is invalid for update";

/// The container holding `path`'s last element, created on the way only at the
/// top level.
fn parent_mut<'a>(item: &'a mut Item, path: &Path) -> Result<Option<&'a mut AttrValue>, String> {
    if path.len() == 1 {
        return Ok(None);
    }
    let PathElem::Key(first) = &path[0] else {
        return Err(BAD_PATH.into());
    };
    let mut cur = item.get_mut(first).ok_or(BAD_PATH)?;
    for e in &path[1..path.len() - 1] {
        cur = match (e, cur) {
            (PathElem::Key(k), AttrValue::M(m)) => m.get_mut(k).ok_or(BAD_PATH)?,
            (PathElem::Index(i), AttrValue::L(l)) => l.get_mut(*i).ok_or(BAD_PATH)?,
            _ => return Err(BAD_PATH.into()),
        };
    }
    Ok(Some(cur))
}

fn set_path(item: &mut Item, path: &Path, v: AttrValue) -> Result<(), String> {
    let last = path.last().ok_or(BAD_PATH)?;
    match (parent_mut(item, path)?, last) {
        (None, PathElem::Key(k)) => {
            item.insert(k.clone(), v);
        }
        (Some(AttrValue::M(m)), PathElem::Key(k)) => {
            m.insert(k.clone(), v);
        }
        (Some(AttrValue::L(l)), PathElem::Index(i)) => {
            if *i < l.len() {
                l[*i] = v;
            } else {
                l.push(v);
            }
        }
        _ => return Err(BAD_PATH.into()),
    }
    Ok(())
}

fn remove_path(item: &mut Item, path: &Path) -> Result<(), String> {
    let last = path.last().ok_or(BAD_PATH)?;
    match (parent_mut(item, path), last) {
        (Ok(None), PathElem::Key(k)) => {
            item.remove(k);
        }
        (Ok(Some(AttrValue::M(m))), PathElem::Key(k)) => {
            m.remove(k);
        }
        (Ok(Some(AttrValue::L(l))), PathElem::Index(i)) => {
            if *i < l.len() {
                l.remove(*i);
            }
        }
        // Removing below a missing or mistyped parent is a no-op.
        (Err(_), _) => {}
        _ => return Err(BAD_PATH.into()),
    }
    Ok(())
}

/// Apply update actions to `item` (right-hand sides read the item as it was).
pub fn apply_update(item: &Item, actions: &[UpdateAction]) -> Result<Item, String> {
    let before = item.clone();
    let mut out = item.clone();
    // REMOVEs of list elements go from the highest index down.
    let mut removes: Vec<&Path> = Vec::new();
    for a in actions {
        match a {
            UpdateAction::Set(p, v) => {
                let v = eval_set(v, &before)?;
                set_path(&mut out, p, v)?;
            }
            UpdateAction::Remove(p) => removes.push(p),
            UpdateAction::Add(p, v) => {
                let cur = get_path(&before, p).cloned();
                let new = match (cur, v) {
                    (None, v) => v.clone(),
                    (Some(AttrValue::N(a)), AttrValue::N(b)) => {
                        AttrValue::N(add_numbers(&a, b, false)?)
                    }
                    (Some(AttrValue::SS(mut a)), AttrValue::SS(b)) => {
                        for x in b {
                            if !a.contains(x) {
                                a.push(x.clone());
                            }
                        }
                        AttrValue::SS(a)
                    }
                    (Some(AttrValue::NS(mut a)), AttrValue::NS(b)) => {
                        for x in b {
                            if !a.contains(x) {
                                a.push(x.clone());
                            }
                        }
                        AttrValue::NS(a)
                    }
                    (Some(AttrValue::BS(mut a)), AttrValue::BS(b)) => {
                        for x in b {
                            if !a.contains(x) {
                                a.push(x.clone());
                            }
                        }
                        AttrValue::BS(a)
                    }
                    _ => return Err(BAD_TYPE.into()),
                };
                set_path(&mut out, p, new)?;
            }
            UpdateAction::Delete(p, v) => {
                let cur = get_path(&before, p).cloned();
                let new = match (cur, v) {
                    (None, _) => continue,
                    (Some(AttrValue::SS(a)), AttrValue::SS(b)) => {
                        let r: Vec<String> = a.into_iter().filter(|x| !b.contains(x)).collect();
                        (!r.is_empty()).then_some(AttrValue::SS(r))
                    }
                    (Some(AttrValue::NS(a)), AttrValue::NS(b)) => {
                        let r: Vec<String> = a.into_iter().filter(|x| !b.contains(x)).collect();
                        (!r.is_empty()).then_some(AttrValue::NS(r))
                    }
                    (Some(AttrValue::BS(a)), AttrValue::BS(b)) => {
                        let r: Vec<Vec<u8>> = a.into_iter().filter(|x| !b.contains(x)).collect();
                        (!r.is_empty()).then_some(AttrValue::BS(r))
                    }
                    _ => return Err(BAD_TYPE.into()),
                };
                match new {
                    Some(v) => set_path(&mut out, p, v)?,
                    None => remove_path(&mut out, p)?,
                }
            }
        }
    }
    removes.sort_by(|a, b| {
        let ia = match a.last() {
            Some(PathElem::Index(i)) => *i,
            _ => 0,
        };
        let ib = match b.last() {
            Some(PathElem::Index(i)) => *i,
            _ => 0,
        };
        ib.cmp(&ia)
    });
    for p in removes {
        remove_path(&mut out, p)?;
    }
    Ok(out)
}

/// The top-level attribute names update actions touch.
pub fn touched_attributes(actions: &[UpdateAction]) -> BTreeSet<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            UpdateAction::Set(p, _)
            | UpdateAction::Remove(p)
            | UpdateAction::Add(p, _)
            | UpdateAction::Delete(p, _) => match &p[0] {
                PathElem::Key(k) => Some(k.clone()),
                PathElem::Index(_) => None,
            },
        })
        .collect()
}

/// Keep only `paths` of `item`.
pub fn project(item: &Item, paths: &[Path]) -> Item {
    let mut out = Item::new();
    for p in paths {
        if let Some(v) = get_path(item, p) {
            insert_projected(&mut out, p, v.clone());
        }
    }
    out
}

fn insert_projected(out: &mut Item, path: &Path, v: AttrValue) {
    let PathElem::Key(first) = &path[0] else {
        return;
    };
    if path.len() == 1 {
        out.insert(first.clone(), v);
        return;
    }
    let slot = out.entry(first.clone()).or_insert_with(|| match path[1] {
        PathElem::Key(_) => AttrValue::M(BTreeMap::new()),
        PathElem::Index(_) => AttrValue::L(Vec::new()),
    });
    insert_nested(slot, &path[1..], v);
}

fn insert_nested(slot: &mut AttrValue, rest: &[PathElem], v: AttrValue) {
    if rest.is_empty() {
        *slot = v;
        return;
    }
    let make = |next: Option<&PathElem>| match next {
        Some(PathElem::Index(_)) => AttrValue::L(Vec::new()),
        _ => AttrValue::M(BTreeMap::new()),
    };
    match (&rest[0], slot) {
        (PathElem::Key(k), AttrValue::M(m)) => {
            let s = m.entry(k.clone()).or_insert_with(|| make(rest.get(1)));
            insert_nested(s, &rest[1..], v);
        }
        (PathElem::Index(_), AttrValue::L(l)) => {
            // Projected list elements keep their relative order, compacted.
            let mut s = make(rest.get(1));
            insert_nested(&mut s, &rest[1..], v);
            l.push(s);
        }
        _ => {}
    }
}

/// `Map` of an item for JSON answers.
pub fn item_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(names: Value, values: Value) -> Params {
        let mut req = json!({});
        if !names.is_null() {
            req["ExpressionAttributeNames"] = names;
        }
        if !values.is_null() {
            req["ExpressionAttributeValues"] = values;
        }
        Params::from_request(&req).unwrap()
    }

    fn item(v: Value) -> Item {
        crate::value::item_from_json(&v).unwrap()
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let mut p = params(
            Value::Null,
            json!({":t": {"BOOL": true}, ":f": {"BOOL": false}}),
        );
        // a = :t OR a = :f AND a = :f  ==  a = :t OR (a = :f AND a = :f)
        let c =
            parse_condition("a = :t OR a = :f AND a = :f", &mut p, "ConditionExpression").unwrap();
        assert!(eval(&c, &item(json!({"a": {"BOOL": true}}))));
        let c = parse_condition(
            "(a = :t OR a = :f) AND a = :f",
            &mut p,
            "ConditionExpression",
        )
        .unwrap();
        assert!(!eval(&c, &item(json!({"a": {"BOOL": true}}))));
        let c = parse_condition("NOT a = :f AND a = :t", &mut p, "ConditionExpression").unwrap();
        assert!(eval(&c, &item(json!({"a": {"BOOL": true}}))));
        p.check_unused().unwrap();
    }

    #[test]
    fn errors_carry_dynamodbs_messages() {
        let mut p = params(Value::Null, Value::Null);
        assert_eq!(
            parse_condition("status = :v", &mut p, "ConditionExpression").unwrap_err(),
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status"
        );
        assert_eq!(
            parse_condition("a = :v", &mut p, "ConditionExpression").unwrap_err(),
            "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :v"
        );
        assert_eq!(
            parse_condition("#n = a", &mut p, "ConditionExpression").unwrap_err(),
            "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; attribute name: #n"
        );
        assert_eq!(
            parse_condition("a = ", &mut p, "ConditionExpression").unwrap_err(),
            "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"= \""
        );
        let mut p = params(json!({"#a": "a", "#b": "b"}), Value::Null);
        parse_condition("attribute_exists(#a)", &mut p, "ConditionExpression").unwrap();
        assert_eq!(
            p.check_unused().unwrap_err(),
            "Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}"
        );
    }

    #[test]
    fn updates_apply_exactly() {
        let mut p = params(
            Value::Null,
            json!({":one": {"N": "0.1"}, ":l": {"L": [{"S": "z"}]}, ":s": {"SS": ["b"]}}),
        );
        let acts = parse_update(
            "SET n = n + :one, l = list_append(l, :l), m.x = :one REMOVE gone ADD s :s",
            &mut p,
        )
        .unwrap();
        let it = item(json!({
            "n": {"N": "0.2"}, "l": {"L": [{"S": "a"}]}, "m": {"M": {}},
            "gone": {"S": "x"}, "s": {"SS": ["a"]}
        }));
        let out = apply_update(&it, &acts).unwrap();
        assert_eq!(out["n"], AttrValue::N("0.3".into()));
        assert_eq!(
            out["l"],
            AttrValue::L(vec![AttrValue::S("a".into()), AttrValue::S("z".into())])
        );
        assert!(!out.contains_key("gone"));
        assert_eq!(out["s"], AttrValue::SS(vec!["a".into(), "b".into()]));
        let mut p = params(Value::Null, json!({":v": {"N": "1"}}));
        assert!(parse_update("SET a = :v, a.b = :v", &mut p)
            .unwrap_err()
            .contains("Two document paths overlap"));
    }

    #[test]
    fn key_conditions_reduce_to_hash_and_range() {
        let mut p = params(
            json!({"#k": "pk"}),
            json!({":h": {"S": "u"}, ":lo": {"N": "1"}, ":hi": {"N": "5"}}),
        );
        let k = parse_key_condition(
            "#k = :h AND sk BETWEEN :lo AND :hi",
            &mut p,
            "pk",
            Some("sk"),
        )
        .unwrap();
        assert_eq!(k.hash, AttrValue::S("u".into()));
        assert!(matches!(k.range, Some((_, RangeCond::Between(_, _)))));
        let mut p = params(Value::Null, json!({":h": {"S": "u"}}));
        assert_eq!(
            parse_key_condition("sk = :h", &mut p, "pk", Some("sk")).unwrap_err(),
            "Query condition missed key schema element: pk"
        );
    }
}

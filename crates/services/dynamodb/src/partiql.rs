//! PartiQL for DynamoDB (`ExecuteStatement`, `BatchExecuteStatement`,
//! `ExecuteTransaction`): `SELECT`, `INSERT`, `UPDATE` and `DELETE` statements,
//! translated onto the same operations and expression engine the JSON API uses.
//!
//! A `WHERE` clause is rewritten into a condition expression (identifiers become
//! `#pN` names, literals and `?` parameters `:pN` values) and parsed by
//! [`crate::expr`]; a `SELECT` whose `WHERE` pins the hash key (and optionally a
//! range condition) runs as a `Query`, any other as a `Scan` with a filter.

use crate::api::{self, validation, ApiError};
use crate::db::Store;
use crate::expr::{parse_key_condition, Params};
use crate::value::AttrValue;
use crate::Op;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
enum T {
    /// A bare word (keyword or identifier).
    Word(String),
    /// A `"quoted"` identifier.
    Quoted(String),
    Str(String),
    Num(String),
    Param,
    P(&'static str),
}

fn syntax(msg: impl std::fmt::Display) -> ApiError {
    validation(format!(
        "Statement wasn't well formed, can't be processed: {msg}"
    ))
}

fn lex(src: &str) -> Result<Vec<T>, ApiError> {
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        match ch {
            '"' | '\'' => {
                let q = ch;
                let mut s = String::new();
                i += 1;
                loop {
                    if i >= c.len() {
                        return Err(syntax("unterminated quoted text"));
                    }
                    if c[i] == q {
                        if c.get(i + 1) == Some(&q) {
                            s.push(q);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    s.push(c[i]);
                    i += 1;
                }
                out.push(if q == '"' { T::Quoted(s) } else { T::Str(s) });
            }
            '0'..='9' | '-' if ch != '-' || c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                let start = i;
                i += 1;
                while i < c.len() && (c[i].is_ascii_digit() || matches!(c[i], '.' | 'e' | 'E'))
                    || (i < c.len() && matches!(c[i], '+' | '-') && matches!(c[i - 1], 'e' | 'E'))
                {
                    i += 1;
                }
                out.push(T::Num(c[start..i].iter().collect()));
            }
            '?' => {
                out.push(T::Param);
                i += 1;
            }
            c0 if c0.is_alphabetic() || c0 == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(T::Word(c[start..i].iter().collect()));
            }
            _ => {
                let two: String = c[i..(i + 2).min(c.len())].iter().collect();
                let p = match two.as_str() {
                    "<<" => Some("<<"),
                    ">>" => Some(">>"),
                    "<>" => Some("<>"),
                    "!=" => Some("<>"),
                    "<=" => Some("<="),
                    ">=" => Some(">="),
                    _ => None,
                };
                if let Some(p) = p {
                    out.push(T::P(p));
                    i += 2;
                    continue;
                }
                let p = match ch {
                    '{' => "{",
                    '}' => "}",
                    '[' => "[",
                    ']' => "]",
                    ':' => ":",
                    ',' => ",",
                    '(' => "(",
                    ')' => ")",
                    '.' => ".",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    '*' => "*",
                    '+' => "+",
                    '-' => "-",
                    ';' => ";",
                    other => return Err(syntax(format!("unexpected character {other}"))),
                };
                out.push(T::P(p));
                i += 1;
            }
        }
    }
    if out.last() == Some(&T::P(";")) {
        out.pop();
    }
    Ok(out)
}

struct P<'a> {
    t: Vec<T>,
    i: usize,
    params: &'a [Value],
    next_param: usize,
    /// Generated `ExpressionAttributeNames`/`Values`.
    names: Map<String, Value>,
    values: Map<String, Value>,
}

impl P<'_> {
    fn peek(&self) -> Option<&T> {
        self.t.get(self.i)
    }

    fn kw(&self, k: &str) -> bool {
        matches!(self.peek(), Some(T::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn p(&self, p: &str) -> bool {
        matches!(self.peek(), Some(T::P(q)) if *q == p)
    }

    fn expect_kw(&mut self, k: &str) -> Result<(), ApiError> {
        if self.kw(k) {
            self.i += 1;
            Ok(())
        } else {
            Err(syntax(format!("expected {k}")))
        }
    }

    fn expect_p(&mut self, p: &str) -> Result<(), ApiError> {
        if self.p(p) {
            self.i += 1;
            Ok(())
        } else {
            Err(syntax(format!("expected {p}")))
        }
    }

    fn ident(&mut self) -> Result<String, ApiError> {
        match self.t.get(self.i).cloned() {
            Some(T::Quoted(s)) | Some(T::Word(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(syntax("expected an identifier")),
        }
    }

    /// A literal or parameter as an attribute value.
    fn value(&mut self) -> Result<AttrValue, ApiError> {
        let t = self.t.get(self.i).cloned();
        self.i += 1;
        match t {
            Some(T::Param) => {
                let v = self.params.get(self.next_param).ok_or_else(|| {
                    validation("Number of parameters in request and statement don't match.")
                })?;
                self.next_param += 1;
                AttrValue::from_json(v).map_err(validation)
            }
            Some(T::Str(s)) => Ok(AttrValue::S(s)),
            Some(T::Num(n)) => crate::value::canonical_number(&n)
                .map(AttrValue::N)
                .map_err(validation),
            Some(T::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(AttrValue::Bool(true)),
            Some(T::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(AttrValue::Bool(false)),
            Some(T::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(AttrValue::Null),
            Some(T::P("{")) => {
                let mut m = std::collections::BTreeMap::new();
                if !self.p("}") {
                    loop {
                        let k = match self.t.get(self.i).cloned() {
                            Some(T::Str(s)) | Some(T::Quoted(s)) => s,
                            _ => return Err(syntax("expected a map key")),
                        };
                        self.i += 1;
                        self.expect_p(":")?;
                        let v = self.value()?;
                        m.insert(k, v);
                        if self.p(",") {
                            self.i += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect_p("}")?;
                Ok(AttrValue::M(m))
            }
            Some(T::P("[")) => {
                let mut l = Vec::new();
                if !self.p("]") {
                    loop {
                        l.push(self.value()?);
                        if self.p(",") {
                            self.i += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect_p("]")?;
                Ok(AttrValue::L(l))
            }
            Some(T::P("<<")) => {
                let mut l = Vec::new();
                loop {
                    l.push(self.value()?);
                    if self.p(",") {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                self.expect_p(">>")?;
                let j = if l.iter().all(|v| matches!(v, AttrValue::S(_))) {
                    json!({"SS": l.iter().map(|v| match v { AttrValue::S(s) => s.clone(), _ => String::new() }).collect::<Vec<_>>()})
                } else if l.iter().all(|v| matches!(v, AttrValue::N(_))) {
                    json!({"NS": l.iter().map(|v| match v { AttrValue::N(s) => s.clone(), _ => String::new() }).collect::<Vec<_>>()})
                } else if l.iter().all(|v| matches!(v, AttrValue::B(_))) {
                    json!({"BS": l.iter().map(|v| v.to_json()["B"].clone()).collect::<Vec<_>>()})
                } else {
                    return Err(validation("Unsupported type passed: set elements must be all strings, numbers or binaries"));
                };
                AttrValue::from_json(&j).map_err(validation)
            }
            _ => Err(syntax("expected a value")),
        }
    }

    fn name_ref(&mut self, n: String) -> String {
        let k = format!("#p{}", self.names.len());
        self.names.insert(k.clone(), json!(n));
        k
    }

    fn value_ref(&mut self, v: AttrValue) -> String {
        let k = format!(":p{}", self.values.len());
        self.values.insert(k.clone(), v.to_json());
        k
    }

    /// A document path as expression text (`#p0.#p1[2]`).
    fn path(&mut self) -> Result<String, ApiError> {
        let first = self.ident()?;
        let mut out = self.name_ref(first);
        loop {
            if self.p(".") {
                self.i += 1;
                let n = self.ident()?;
                let r = self.name_ref(n);
                out.push('.');
                out.push_str(&r);
            } else if self.p("[") {
                self.i += 1;
                match self.t.get(self.i).cloned() {
                    Some(T::Num(n)) => {
                        self.i += 1;
                        out.push_str(&format!("[{n}]"));
                    }
                    _ => return Err(syntax("expected a list index")),
                }
                self.expect_p("]")?;
            } else {
                return Ok(out);
            }
        }
    }

    fn is_value_start(&self) -> bool {
        match self.peek() {
            Some(T::Param | T::Str(_) | T::Num(_)) => true,
            Some(T::P("{" | "[" | "<<")) => true,
            Some(T::Word(w)) => ["true", "false", "null"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)),
            _ => false,
        }
    }

    fn operand(&mut self) -> Result<String, ApiError> {
        if self.is_value_start() {
            let v = self.value()?;
            return Ok(self.value_ref(v));
        }
        if let (Some(T::Word(f)), Some(T::P("("))) =
            (self.peek().cloned(), self.t.get(self.i + 1).cloned())
        {
            if f.eq_ignore_ascii_case("size") {
                self.i += 2;
                let p = self.path()?;
                self.expect_p(")")?;
                return Ok(format!("size({p})"));
            }
        }
        self.path()
    }

    /// A `WHERE` condition as expression text.
    fn cond(&mut self) -> Result<String, ApiError> {
        let mut out = self.cond_and()?;
        while self.kw("OR") {
            self.i += 1;
            out = format!("{out} OR {}", self.cond_and()?);
        }
        Ok(out)
    }

    fn cond_and(&mut self) -> Result<String, ApiError> {
        let mut out = self.cond_not()?;
        while self.kw("AND") {
            self.i += 1;
            out = format!("{out} AND {}", self.cond_not()?);
        }
        Ok(out)
    }

    fn cond_not(&mut self) -> Result<String, ApiError> {
        if self.kw("NOT") {
            self.i += 1;
            return Ok(format!("NOT {}", self.cond_not()?));
        }
        if self.p("(") {
            self.i += 1;
            let c = self.cond()?;
            self.expect_p(")")?;
            return Ok(format!("({c})"));
        }
        if let (Some(T::Word(f)), Some(T::P("("))) =
            (self.peek().cloned(), self.t.get(self.i + 1).cloned())
        {
            let lf = f.to_ascii_lowercase();
            if [
                "begins_with",
                "contains",
                "attribute_exists",
                "attribute_not_exists",
                "attribute_type",
            ]
            .contains(&lf.as_str())
            {
                self.i += 2;
                let mut args = vec![self.operand()?];
                while self.p(",") {
                    self.i += 1;
                    args.push(self.operand()?);
                }
                self.expect_p(")")?;
                return Ok(format!("{lf}({})", args.join(", ")));
            }
        }
        let left = self.operand()?;
        if self.kw("IS") {
            self.i += 1;
            let not = self.kw("NOT");
            if not {
                self.i += 1;
            }
            if self.kw("MISSING") {
                self.i += 1;
                return Ok(if not {
                    format!("attribute_exists({left})")
                } else {
                    format!("attribute_not_exists({left})")
                });
            }
            if self.kw("NULL") {
                self.i += 1;
                let v = self.value_ref(AttrValue::S("NULL".into()));
                return Ok(if not {
                    format!("NOT attribute_type({left}, {v})")
                } else {
                    format!("attribute_type({left}, {v})")
                });
            }
            return Err(syntax("expected MISSING or NULL after IS"));
        }
        if self.kw("BETWEEN") {
            self.i += 1;
            let a = self.operand()?;
            self.expect_kw("AND")?;
            let b = self.operand()?;
            return Ok(format!("{left} BETWEEN {a} AND {b}"));
        }
        if self.kw("IN") {
            self.i += 1;
            let close = if self.p("[") { "]" } else { ")" };
            self.i += 1;
            let mut items = vec![self.operand()?];
            while self.p(",") {
                self.i += 1;
                items.push(self.operand()?);
            }
            self.expect_p(close)?;
            return Ok(format!("{left} IN ({})", items.join(", ")));
        }
        let op = match self.peek() {
            Some(T::P(p @ ("=" | "<>" | "<" | "<=" | ">" | ">="))) => *p,
            _ => return Err(syntax("expected a comparison")),
        };
        self.i += 1;
        let right = self.operand()?;
        Ok(format!("{left} {op} {right}"))
    }

    fn done(&self) -> Result<(), ApiError> {
        if self.i < self.t.len() {
            Err(syntax(format!("unexpected {:?}", self.t[self.i])))
        } else {
            Ok(())
        }
    }
}

/// A statement turned into an API request.
fn plan(store: &Store, statement: &str, params: &[Value]) -> Result<(Op, Value), ApiError> {
    let mut p = P {
        t: lex(statement)?,
        i: 0,
        params,
        next_param: 0,
        names: Map::new(),
        values: Map::new(),
    };
    let finish = |p: &P<'_>, mut req: Value| -> Result<Value, ApiError> {
        if p.next_param != p.params.len() {
            return Err(validation(
                "Number of parameters in request and statement don't match.",
            ));
        }
        if !p.names.is_empty() {
            req["ExpressionAttributeNames"] = Value::Object(p.names.clone());
        }
        if !p.values.is_empty() {
            req["ExpressionAttributeValues"] = Value::Object(p.values.clone());
        }
        Ok(req)
    };
    if p.kw("SELECT") {
        p.i += 1;
        let mut proj = Vec::new();
        if p.p("*") {
            p.i += 1;
        } else {
            loop {
                proj.push(p.path()?);
                if p.p(",") {
                    p.i += 1;
                } else {
                    break;
                }
            }
        }
        p.expect_kw("FROM")?;
        let table = p.ident()?;
        let index = if p.p(".") {
            p.i += 1;
            Some(p.ident()?)
        } else {
            None
        };
        let cond = if p.kw("WHERE") {
            p.i += 1;
            Some(p.cond()?)
        } else {
            None
        };
        p.done()?;
        let mut req = json!({"TableName": table});
        if let Some(i) = &index {
            req["IndexName"] = json!(i);
        }
        if !proj.is_empty() {
            req["ProjectionExpression"] = json!(proj.join(", "));
        }
        let req = finish(&p, req)?;
        let Some(cond) = cond else {
            return Ok((Op::Scan, req));
        };
        // A WHERE that pins the key schema's hash runs as a Query.
        if let Some(t) = store.table(&table) {
            let (h, r) = match index.as_deref().and_then(|i| t.index(i)) {
                Some(ix) => (
                    ix.hash.name.clone(),
                    ix.range.as_ref().map(|r| r.name.clone()),
                ),
                None => (
                    t.hash.name.clone(),
                    t.range.as_ref().map(|r| r.name.clone()),
                ),
            };
            if let Ok(mut params) = Params::from_request(&req) {
                if parse_key_condition(&cond, &mut params, &h, r.as_deref()).is_ok() {
                    let mut q = req.clone();
                    q["KeyConditionExpression"] = json!(cond);
                    return Ok((Op::Query, q));
                }
            }
        }
        let mut s = req;
        s["FilterExpression"] = json!(cond);
        return Ok((Op::Scan, s));
    }
    if p.kw("INSERT") {
        p.i += 1;
        p.expect_kw("INTO")?;
        let table = p.ident()?;
        p.expect_kw("VALUE")?;
        let item = p.value()?;
        p.done()?;
        let AttrValue::M(m) = item else {
            return Err(syntax("INSERT needs a map value"));
        };
        let t = store.table(&table).ok_or_else(|| {
            ApiError::new(
                400,
                "ResourceNotFoundException",
                "Requested resource not found",
            )
        })?;
        let key_check: Vec<String> = t
            .key_names()
            .iter()
            .map(|k| p.name_ref(k.to_string()))
            .collect();
        let req = json!({
            "TableName": table,
            "Item": crate::value::item_to_json(&m),
            "ConditionExpression": key_check.iter().map(|k| format!("attribute_not_exists({k})")).collect::<Vec<_>>().join(" AND "),
        });
        return Ok((Op::PutItem, finish(&p, req)?));
    }
    if p.kw("UPDATE") {
        p.i += 1;
        let table = p.ident()?;
        let mut sets = Vec::new();
        let mut removes = Vec::new();
        loop {
            let comma_set = p.p(",") && !sets.is_empty() && removes.is_empty();
            if p.kw("SET") || comma_set {
                p.i += 1;
                let path = p.path()?;
                p.expect_p("=")?;
                let mut v = p.operand()?;
                if p.p("+") || p.p("-") {
                    let op = if p.p("+") { "+" } else { "-" };
                    p.i += 1;
                    let r = p.operand()?;
                    v = format!("{v} {op} {r}");
                }
                sets.push(format!("{path} = {v}"));
            } else if p.kw("REMOVE") {
                p.i += 1;
                removes.push(p.path()?);
            } else {
                break;
            }
        }
        p.expect_kw("WHERE")?;
        let cond = p.cond()?;
        p.done()?;
        if sets.is_empty() && removes.is_empty() {
            return Err(syntax("UPDATE needs SET or REMOVE"));
        }
        let t = store.table(&table).ok_or_else(|| {
            ApiError::new(
                400,
                "ResourceNotFoundException",
                "Requested resource not found",
            )
        })?;
        let key = key_from_where(&p, &cond, &t)?;
        let mut expr = String::new();
        if !sets.is_empty() {
            expr.push_str(&format!("SET {}", sets.join(", ")));
        }
        if !removes.is_empty() {
            expr.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let exists: Vec<String> = t
            .key_names()
            .iter()
            .map(|k| p.name_ref(k.to_string()))
            .collect();
        let req = json!({
            "TableName": table, "Key": key, "UpdateExpression": expr.trim(),
            "ConditionExpression": format!("({cond}) AND {}", exists.iter().map(|k| format!("attribute_exists({k})")).collect::<Vec<_>>().join(" AND ")),
            "ReturnValues": "ALL_NEW",
        });
        return Ok((Op::UpdateItem, finish(&p, req)?));
    }
    if p.kw("DELETE") {
        p.i += 1;
        p.expect_kw("FROM")?;
        let table = p.ident()?;
        p.expect_kw("WHERE")?;
        let cond = p.cond()?;
        p.done()?;
        let t = store.table(&table).ok_or_else(|| {
            ApiError::new(
                400,
                "ResourceNotFoundException",
                "Requested resource not found",
            )
        })?;
        let key = key_from_where(&p, &cond, &t)?;
        let req = json!({"TableName": table, "Key": key, "ConditionExpression": cond});
        return Ok((Op::DeleteItem, finish(&p, req)?));
    }
    Err(syntax("expected SELECT, INSERT, UPDATE or DELETE"))
}

/// The full primary key an UPDATE/DELETE's WHERE pins with equalities.
fn key_from_where(p: &P<'_>, cond: &str, t: &crate::db::TableMeta) -> Result<Value, ApiError> {
    let mut req = json!({});
    if !p.names.is_empty() {
        req["ExpressionAttributeNames"] = Value::Object(p.names.clone());
    }
    if !p.values.is_empty() {
        req["ExpressionAttributeValues"] = Value::Object(p.values.clone());
    }
    let mut params = Params::from_request(&req).map_err(validation)?;
    let missing =
        || validation("Where clause does not contain a mandatory equality on all key attributes");
    let kc = parse_key_condition(
        // Only the leading key equalities matter; extra conditions stay as the condition.
        cond.split(" AND ")
            .take(if t.range.is_some() { 2 } else { 1 })
            .collect::<Vec<_>>()
            .join(" AND ")
            .as_str(),
        &mut params,
        &t.hash.name,
        t.range.as_ref().map(|r| r.name.as_str()),
    )
    .map_err(|_| missing())?;
    let mut key = Map::new();
    key.insert(kc.hash_name.clone(), kc.hash.to_json());
    match (&t.range, kc.range) {
        (Some(r), Some((_, crate::expr::RangeCond::Cmp(crate::expr::CmpOp::Eq, v)))) => {
            key.insert(r.name.clone(), v.to_json());
        }
        (Some(_), _) => return Err(missing()),
        (None, _) => {}
    }
    Ok(Value::Object(key))
}

fn run_one(
    store: &Store,
    statement: &str,
    params: &[Value],
    req: &Value,
) -> Result<Value, ApiError> {
    let (op, mut r) = plan(store, statement, params)?;
    if let Some(v) = req.get("ConsistentRead") {
        if matches!(op, Op::Scan | Op::Query) {
            r["ConsistentRead"] = v.clone();
        }
    }
    if let Some(l) = req.get("Limit") {
        if matches!(op, Op::Scan | Op::Query) {
            r["Limit"] = l.clone();
        }
    }
    if let Some(n) = req.get("NextToken").and_then(Value::as_str) {
        let k: Value = serde_json::from_str(n).map_err(|_| validation("Invalid NextToken"))?;
        r["ExclusiveStartKey"] = k;
    }
    let out = api::handle(store, op, &r, "")?;
    Ok(match op {
        Op::Scan | Op::Query => {
            let mut o = json!({"Items": out["Items"]});
            if let Some(k) = out.get("LastEvaluatedKey") {
                o["NextToken"] = json!(k.to_string());
            }
            o
        }
        _ => json!({"Items": []}),
    })
}

/// `ExecuteStatement`, `BatchExecuteStatement`, `ExecuteTransaction`.
pub fn handle(store: &Store, op: Op, req: &Value) -> Result<Value, ApiError> {
    let params_of = |v: &Value| -> Vec<Value> {
        v.get("Parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match op {
        Op::ExecuteStatement => {
            let st = req
                .get("Statement")
                .and_then(Value::as_str)
                .unwrap_or_default();
            run_one(store, st, &params_of(req), req).map_err(|e| {
                if e.code == "ConditionalCheckFailedException" {
                    ApiError::new(
                        400,
                        "ConditionalCheckFailedException",
                        "The conditional request failed",
                    )
                } else {
                    e
                }
            })
        }
        Op::BatchExecuteStatement => {
            let stmts = req
                .get("Statements")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if stmts.is_empty() || stmts.len() > 25 {
                return Err(validation("1 validation error detected: Value at 'statements' failed to satisfy constraint: Member must have length less than or equal to 25"));
            }
            let mut out = Vec::new();
            for s in &stmts {
                let st = s
                    .get("Statement")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match run_one(store, st, &params_of(s), s) {
                    Ok(r) => {
                        let item = r["Items"].as_array().and_then(|a| a.first().cloned());
                        out.push(match item {
                            Some(i) => json!({"TableName": table_of(st), "Item": i}),
                            None => json!({"TableName": table_of(st)}),
                        });
                    }
                    Err(e) => out
                        .push(json!({"Error": {"Code": batch_code(e.code), "Message": e.message}})),
                }
            }
            Ok(json!({"Responses": out}))
        }
        Op::ExecuteTransaction => {
            let stmts = req
                .get("TransactStatements")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut items = Vec::new();
            let mut reads = Vec::new();
            for s in &stmts {
                let st = s
                    .get("Statement")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let (op, r) = plan(store, st, &params_of(s))?;
                match op {
                    Op::PutItem => items.push(json!({"Put": r})),
                    Op::DeleteItem => items.push(json!({"Delete": r})),
                    Op::UpdateItem => {
                        let mut r = r;
                        if let Some(o) = r.as_object_mut() {
                            o.remove("ReturnValues");
                        }
                        items.push(json!({"Update": r}))
                    }
                    Op::Query => reads.push(r),
                    _ => return Err(validation("Transactions can only contain SELECT statements that select by full primary key, or INSERT, UPDATE and DELETE statements")),
                }
            }
            if !items.is_empty() && !reads.is_empty() {
                return Err(validation(
                    "Transactions must contain either all read statements or all write statements",
                ));
            }
            if !items.is_empty() {
                let mut t = json!({"TransactItems": items});
                if let Some(tok) = req.get("ClientRequestToken") {
                    t["ClientRequestToken"] = tok.clone();
                }
                api::handle(store, Op::TransactWriteItems, &t, "")?;
                return Ok(json!({}));
            }
            let mut responses = Vec::new();
            for r in reads {
                let out = api::handle(store, Op::Query, &r, "")?;
                responses.push(match out["Items"].as_array().and_then(|a| a.first()) {
                    Some(i) => json!({"Item": i}),
                    None => json!({}),
                });
            }
            Ok(json!({"Responses": responses}))
        }
        _ => Err(validation("not a PartiQL operation")),
    }
}

fn batch_code(code: &str) -> &str {
    match code {
        "ConditionalCheckFailedException" => "ConditionalCheckFailed",
        "ResourceNotFoundException" => "ResourceNotFound",
        "ValidationException" => "ValidationError",
        other => other,
    }
}

fn table_of(statement: &str) -> String {
    lex(statement)
        .ok()
        .and_then(|t| {
            t.iter().enumerate().find_map(|(i, x)| match x {
                T::Word(w)
                    if ["FROM", "INTO", "UPDATE"].contains(&w.to_ascii_uppercase().as_str()) =>
                {
                    match t.get(i + 1) {
                        Some(T::Quoted(s)) | Some(T::Word(s)) => Some(s.clone()),
                        _ => None,
                    }
                }
                _ => None,
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_values_and_identifiers() {
        let t = lex(r#"SELECT * FROM "t" WHERE a = 'it''s' AND b = -1.5 AND c IN [?, <<'x'>>]"#)
            .unwrap();
        assert!(t.contains(&T::Quoted("t".into())));
        assert!(t.contains(&T::Str("it's".into())));
        assert!(t.contains(&T::Num("-1.5".into())));
        assert!(t.contains(&T::P("<<")));
    }
}

//! Lambda authorizers, as API Gateway calls them.
//!
//! * `TOKEN` (REST APIs): the event is `{"type": "TOKEN", "authorizationToken",
//!   "methodArn"}`, the token taken from one header.
//! * `REQUEST`, payload format 1.0 (REST APIs, HTTP APIs' 1.0): the route's 1.0
//!   proxy event without `body`/`isBase64Encoded`, plus `type`, `methodArn`,
//!   `identitySource` and `authorizationToken` (the identity values comma-joined).
//! * `REQUEST`, payload format 2.0 (HTTP APIs): the 2.0 proxy event without the
//!   body, plus `type`, `routeArn` and `identitySource` (a list).
//!
//! The answer is an IAM policy (`principalId`, `policyDocument`, `context`), its
//! `Allow`/`Deny` statements matched against the request's method ARN (an explicit
//! Deny wins; no matching Allow is a deny), or with `simple_responses` (2.0 only)
//! `{"isAuthorized", "context"}`. A deny is 403 `Forbidden`; an identity source
//! missing from the request is 401 without calling the function; a function that
//! fails with the message `Unauthorized` is 401 (AWS's convention); any other
//! failure, a timeout or a malformed answer is 500.
//!
//! Answers are cached per authorizer for `ttl_seconds` (default 300, 0 turns the
//! cache off), keyed on the identity source values; a cached policy is evaluated
//! again against each request's method ARN, as AWS does.

use super::{is_v1, method_arn, Denied, GatewayAuth, IdentitySource};
use crate::event::{self, RequestInfo};
use crate::route::{PayloadFormat, Route};
use bytes::Bytes;
use nimbus_core::Trigger;
use nimbus_dispatch::{Dispatch, Invocation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the gateway waits for an authorizer function.
pub const AUTHORIZER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TTL_S: u64 = 300;
pub const MAX_TTL_S: u64 = 3600;
const CACHE_MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LambdaAuthorizerType {
    Token,
    #[default]
    Request,
}

fn default_ttl() -> u64 {
    DEFAULT_TTL_S
}

/// A Lambda authorizer's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: LambdaAuthorizerType,
    /// REQUEST authorizers: the event format, 1.0 or 2.0 (default).
    #[serde(default)]
    pub payload_format: PayloadFormat,
    /// 2.0 only: the function answers `{"isAuthorized": bool, "context"}`.
    #[serde(default)]
    pub simple_responses: bool,
    /// Default `["$request.header.Authorization"]`; TOKEN takes exactly one header.
    #[serde(default)]
    pub identity_sources: Vec<String>,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
}

impl LambdaConfig {
    pub fn validate(&self) -> Result<(), String> {
        let f = &self.function;
        if f.is_empty()
            || f.len() > 64
            || !f
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("Invalid function name {f:?}"));
        }
        if self.ttl_seconds > MAX_TTL_S {
            return Err(format!(
                "Invalid ttl_seconds {}: at most {MAX_TTL_S}",
                self.ttl_seconds
            ));
        }
        let sources = self.sources()?;
        match self.kind {
            LambdaAuthorizerType::Token => {
                if sources.len() != 1 || !matches!(sources[0], IdentitySource::Header(_)) {
                    return Err(
                        "A TOKEN authorizer takes exactly one header identity source".into(),
                    );
                }
                if self.simple_responses {
                    return Err(
                        "simple_responses needs a REQUEST authorizer with payload format 2.0"
                            .into(),
                    );
                }
            }
            LambdaAuthorizerType::Request => {
                if self.simple_responses && self.payload_format != PayloadFormat::V2 {
                    return Err("simple_responses needs payload format 2.0".into());
                }
            }
        }
        Ok(())
    }

    fn sources(&self) -> Result<Vec<IdentitySource>, String> {
        if self.identity_sources.is_empty() {
            return Ok(vec![IdentitySource::Header("authorization".into())]);
        }
        self.identity_sources
            .iter()
            .map(|s| IdentitySource::parse(s))
            .collect()
    }
}

/// What an authorizer function answered, as cached.
#[derive(Debug, Clone)]
enum Answer {
    Simple {
        authorized: bool,
        context: Option<Value>,
    },
    Policy {
        principal: Value,
        statements: Vec<Statement>,
        context: Option<Map<String, Value>>,
    },
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
}

struct Cached {
    answer: Arc<Answer>,
    until: Instant,
}

/// Answers by (authorizer, identity values).
#[derive(Default)]
pub(crate) struct DecisionCache {
    entries: Mutex<HashMap<(String, String), Cached>>,
}

impl DecisionCache {
    fn get(&self, name: &str, key: &str) -> Option<Arc<Answer>> {
        let m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(name.to_string(), key.to_string()))
            .filter(|c| c.until > Instant::now())
            .map(|c| c.answer.clone())
    }

    fn put(&self, name: &str, key: String, answer: Arc<Answer>, ttl: Duration) {
        let now = Instant::now();
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CACHE_MAX_ENTRIES {
            m.retain(|_, c| c.until > now);
            if m.len() >= CACHE_MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert(
            (name.to_string(), key),
            Cached {
                answer,
                until: now + ttl,
            },
        );
    }

    pub(crate) fn forget(&self, name: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, _), _| n != name);
    }
}

/// Run the authorizer for a request; on success the value of
/// `requestContext.authorizer` for the route's payload format.
pub(crate) async fn authorize(
    auth: &GatewayAuth,
    name: &str,
    cfg: &LambdaConfig,
    route: &Route,
    req: &RequestInfo<'_>,
    dispatch: &Arc<dyn Dispatch>,
) -> Result<Value, Denied> {
    let sources = cfg.sources().map_err(|_| Denied::Failed)?;
    let mut values = Vec::with_capacity(sources.len());
    for s in &sources {
        match s.value(req) {
            Some(v) => values.push(v.into_owned()),
            None => return Err(Denied::Unauthorized),
        }
    }
    let arn = method_arn(req, dispatch.region());
    let cache_key = values.join("\u{0}");
    let ttl = cfg.ttl_seconds;
    let started = Instant::now();
    let cached = if ttl > 0 {
        auth.inner.lambda_cache.get(name, &cache_key)
    } else {
        None
    };
    let hit = cached.is_some();
    let answer = match cached {
        Some(a) => a,
        None => {
            let payload = event_for(cfg, req, &arn, &values);
            let a = Arc::new(call(name, cfg, payload, req, dispatch).await?);
            if ttl > 0 {
                auth.inner
                    .lambda_cache
                    .put(name, cache_key, a.clone(), Duration::from_secs(ttl));
            }
            a
        }
    };
    // API Gateway reports 0 for an answer from its cache.
    let latency_ms = if hit {
        0
    } else {
        started.elapsed().as_millis() as u64
    };
    match &*answer {
        Answer::Simple {
            authorized,
            context,
        } => {
            if !authorized {
                return Err(Denied::Forbidden);
            }
            Ok(event_authorizer(route, None, context.clone(), latency_ms))
        }
        Answer::Policy {
            principal,
            statements,
            context,
        } => {
            if !allowed(statements, &arn) {
                return Err(Denied::Forbidden);
            }
            let ctx = context.clone().map(Value::Object);
            Ok(event_authorizer(route, Some(principal), ctx, latency_ms))
        }
    }
}

/// `requestContext.authorizer` for the function's event.
fn event_authorizer(
    route: &Route,
    principal: Option<&Value>,
    context: Option<Value>,
    latency_ms: u64,
) -> Value {
    if is_v1(route) {
        // 1.0: principalId and the context's keys side by side, as REST APIs do.
        let mut m = Map::new();
        if let Some(p) = principal {
            m.insert("principalId".into(), p.clone());
        }
        if let Some(Value::Object(c)) = context {
            for (k, v) in c {
                m.insert(k, v);
            }
        }
        m.insert("integrationLatency".into(), Value::from(latency_ms));
        Value::Object(m)
    } else {
        let mut m = Map::new();
        m.insert("lambda".into(), context.unwrap_or(Value::Null));
        Value::Object(m)
    }
}

/// The authorizer function's event.
fn event_for(cfg: &LambdaConfig, req: &RequestInfo<'_>, arn: &str, values: &[String]) -> Vec<u8> {
    match (cfg.kind, cfg.payload_format) {
        (LambdaAuthorizerType::Token, _) => serde_json::to_vec(&serde_json::json!({
            "type": "TOKEN",
            "authorizationToken": values.first().cloned().unwrap_or_default(),
            "methodArn": arn,
        }))
        .expect("serialises"),
        (LambdaAuthorizerType::Request, PayloadFormat::V1) => {
            let mut e = proxy_event(&event::v1(req));
            if let Some(Value::Object(c)) = e.get_mut("requestContext") {
                c.remove("authorizer");
            }
            let joined = values.join(",");
            e.insert("type".into(), "REQUEST".into());
            e.insert("methodArn".into(), arn.into());
            e.insert("identitySource".into(), joined.clone().into());
            e.insert("authorizationToken".into(), joined.into());
            serde_json::to_vec(&e).expect("serialises")
        }
        (LambdaAuthorizerType::Request, PayloadFormat::V2) => {
            let mut e = proxy_event(&event::v2(req));
            e.insert("type".into(), "REQUEST".into());
            e.insert("routeArn".into(), arn.into());
            e.insert("identitySource".into(), Value::from(values.to_vec()));
            serde_json::to_vec(&e).expect("serialises")
        }
    }
}

/// A proxy event without its body: authorizers never see the body.
fn proxy_event(bytes: &[u8]) -> Map<String, Value> {
    let mut e: Map<String, Value> = serde_json::from_slice(bytes).expect("events are JSON objects");
    e.remove("body");
    e.remove("isBase64Encoded");
    e
}

async fn call(
    name: &str,
    cfg: &LambdaConfig,
    payload: Vec<u8>,
    req: &RequestInfo<'_>,
    dispatch: &Arc<dyn Dispatch>,
) -> Result<Answer, Denied> {
    let trace_id = req
        .headers
        .iter()
        .find(|(n, _)| *n == "x-amzn-trace-id")
        .map(|(_, v)| v.to_string());
    let inv = Invocation {
        function: cfg.function.clone(),
        qualifier: cfg.qualifier.clone(),
        payload: Bytes::from(payload),
        trigger: Trigger::Http,
        client_context: None,
        trace_id,
    };
    let dispatch = dispatch.clone();
    let task = tokio::spawn(async move { dispatch.invoke(inv).await });
    let res = match tokio::time::timeout(AUTHORIZER_TIMEOUT, task).await {
        Err(_) => {
            tracing::warn!(authorizer = %name, "Lambda authorizer timed out");
            return Err(Denied::Failed);
        }
        Ok(Err(e)) => {
            tracing::error!(authorizer = %name, error = %e, "Lambda authorizer task failed");
            return Err(Denied::Failed);
        }
        Ok(Ok(Err(e))) => {
            tracing::warn!(authorizer = %name, error = %e, "Lambda authorizer invocation failed");
            return Err(Denied::Failed);
        }
        Ok(Ok(Ok(r))) => r,
    };
    if res.function_error {
        let msg = serde_json::from_slice::<Value>(&res.payload)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if msg.as_deref() == Some("Unauthorized") {
            return Err(Denied::Unauthorized);
        }
        tracing::warn!(authorizer = %name, function_request_id = %res.request_id,
            error = msg.as_deref().unwrap_or("?"), "Lambda authorizer failed");
        return Err(Denied::Failed);
    }
    parse_answer(cfg, &res.payload).map_err(|why| {
        tracing::warn!(authorizer = %name, function_request_id = %res.request_id,
            "malformed Lambda authorizer response: {why}");
        Denied::Failed
    })
}

fn parse_answer(cfg: &LambdaConfig, payload: &[u8]) -> Result<Answer, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not a JSON object")?;
    if cfg.simple_responses {
        let authorized = o
            .get("isAuthorized")
            .and_then(Value::as_bool)
            .ok_or("isAuthorized is missing or not a boolean")?;
        let context = match o.get("context") {
            None | Some(Value::Null) => None,
            Some(c @ Value::Object(_)) => Some(c.clone()),
            Some(_) => return Err("context is not an object".into()),
        };
        return Ok(Answer::Simple {
            authorized,
            context,
        });
    }
    let principal = match o.get("principalId") {
        Some(p @ (Value::String(_) | Value::Number(_))) => p.clone(),
        _ => return Err("principalId is missing or not a string".into()),
    };
    let doc = o
        .get("policyDocument")
        .and_then(Value::as_object)
        .ok_or("policyDocument is missing or not an object")?;
    let stmts = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return Err("policyDocument.Statement is missing".into()),
    };
    let mut statements = Vec::new();
    for s in &stmts {
        let s = s.as_object().ok_or("a Statement is not an object")?;
        let allow = match s.get("Effect").and_then(Value::as_str) {
            Some(e) if e.eq_ignore_ascii_case("allow") => true,
            Some(e) if e.eq_ignore_ascii_case("deny") => false,
            _ => return Err("a Statement's Effect is not Allow or Deny".into()),
        };
        statements.push(Statement {
            allow,
            actions: strings(s.get("Action")).ok_or("a Statement's Action is missing")?,
            resources: strings(s.get("Resource")).ok_or("a Statement's Resource is missing")?,
        });
    }
    let context = match o.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            // REST APIs take string, number and boolean values only.
            if c.values().any(|v| v.is_object() || v.is_array()) {
                return Err("context values must be strings, numbers or booleans".into());
            }
            Some(c.clone())
        }
        Some(_) => return Err("context is not an object".into()),
    };
    Ok(Answer::Policy {
        principal,
        statements,
        context,
    })
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// IAM evaluation for one ARN: an explicit Deny wins, else some Allow must match.
fn allowed(statements: &[Statement], arn: &str) -> bool {
    let applies = |s: &Statement| {
        s.actions
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), "execute-api:invoke"))
            && s.resources.iter().any(|r| glob(r, arn))
    };
    if statements.iter().any(|s| !s.allow && applies(s)) {
        return false;
    }
    statements.iter().any(|s| s.allow && applies(s))
}

/// IAM wildcards: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abc/$default/GET/pets/1";

    fn cfg(simple: bool) -> LambdaConfig {
        LambdaConfig {
            function: "auth".into(),
            qualifier: None,
            kind: LambdaAuthorizerType::Request,
            payload_format: PayloadFormat::V2,
            simple_responses: simple,
            identity_sources: vec![],
            ttl_seconds: 300,
        }
    }

    fn policy(effect: &str, resource: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "principalId": "user",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]},
            "context": {"a": "1", "n": 2, "b": true}
        }))
        .unwrap()
    }

    fn decide(p: &[u8]) -> bool {
        match parse_answer(&cfg(false), p).unwrap() {
            Answer::Policy { statements, .. } => allowed(&statements, ARN),
            _ => unreachable!(),
        }
    }

    #[test]
    fn policies_match_the_method_arn() {
        assert!(decide(&policy("Allow", ARN)));
        assert!(decide(&policy(
            "Allow",
            "arn:aws:execute-api:*:*:abc/*/GET/*"
        )));
        assert!(decide(&policy("Allow", "*")));
        assert!(!decide(&policy(
            "Allow",
            "arn:aws:execute-api:*:*:abc/*/POST/*"
        )));
        assert!(!decide(&policy("Deny", ARN)));
        assert!(!decide(&policy("Deny", "*")));
        let both = serde_json::json!({
            "principalId": "u",
            "policyDocument": {"Statement": [
                {"Action": ["execute-api:Invoke"], "Effect": "Allow", "Resource": ["*"]},
                {"Action": "execute-api:*", "Effect": "Deny", "Resource": [ARN]}]}
        });
        assert!(!decide(&serde_json::to_vec(&both).unwrap()));
    }

    #[test]
    fn malformed_answers() {
        for bad in [
            "not json",
            "[]",
            r#"{"policyDocument": {"Statement": []}}"#,
            r#"{"principalId": "u"}"#,
            r#"{"principalId": "u", "policyDocument": {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}}"#,
            r#"{"principalId": "u", "policyDocument": {"Statement": []}, "context": {"x": {"nested": 1}}}"#,
        ] {
            assert!(parse_answer(&cfg(false), bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_answer(&cfg(true), br#"{"isAuthorized": "yes"}"#).is_err());
        assert!(matches!(
            parse_answer(
                &cfg(true),
                br#"{"isAuthorized": true, "context": {"x": [1]}}"#
            ),
            Ok(Answer::Simple {
                authorized: true,
                ..
            })
        ));
    }

    #[test]
    fn globs() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*", ""));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn config_validation() {
        assert!(cfg(true).validate().is_ok());
        let token = LambdaConfig {
            kind: LambdaAuthorizerType::Token,
            ..cfg(false)
        };
        assert!(token.validate().is_ok());
        assert!(LambdaConfig {
            identity_sources: vec!["$request.querystring.t".into()],
            ..token.clone()
        }
        .validate()
        .is_err());
        assert!(LambdaConfig {
            payload_format: PayloadFormat::V1,
            ..cfg(true)
        }
        .validate()
        .is_err());
        assert!(LambdaConfig {
            ttl_seconds: 3601,
            ..cfg(false)
        }
        .validate()
        .is_err());
    }
}

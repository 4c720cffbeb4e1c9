//! Access control in front of routes, as API Gateway does it:
//!
//! * **Throttling** ([`crate::throttle`]): a token bucket per route (its `throttle`)
//!   and per API key (its usage plan's) → 429 `Too Many Requests`.
//! * **Authorizers**, defined once by name and attached to routes: JWT
//!   ([`jwt`]: issuer, audiences, scopes, HS256 secret or a JWKS) and Lambda
//!   ([`lambda`]: TOKEN and REQUEST types, IAM-policy and simple responses, a
//!   TTL cache keyed on the identity source).
//! * **API keys and usage plans** ([`keys`]): `x-api-key` on routes that require
//!   one, a plan's rate/burst and daily/weekly/monthly quota with durable counters.
//!
//! A request passes the checks in this order: route throttle (429), authorizer
//! (401/403/500), API key (403), the key's throttle (429), the key's quota (429
//! `Limit Exceeded`). Only then is the function invoked.
//!
//! The definitions live in SQLite ([`nimbus_store::GatewayAuthStore`]) and are served
//! from an in-memory snapshot swapped whole on each change, like the route table.

pub mod jwt;
pub mod keys;
pub mod lambda;

use crate::event::RequestInfo;
use crate::response::{self, Response};
use crate::route::{PayloadFormat, Route};
use crate::throttle::{ThrottleSettings, Throttles};
use http::StatusCode;
use nimbus_dispatch::{Dispatch, FunctionLookup};
use nimbus_store::{GatewayAuthStore, StoreError, StoredObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub use jwt::JwtConfig;
pub use keys::{ApiKey, Quota, QuotaPeriod, UsagePlan};
pub use lambda::{LambdaAuthorizerType, LambdaConfig};

pub(crate) const KIND_AUTHORIZER: &str = "authorizer";
pub(crate) const KIND_PLAN: &str = "usage_plan";
pub(crate) const KIND_KEY: &str = "api_key";

/// Why an access-control change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot store the change: {0}")]
    Store(#[from] StoreError),
}

/// `jwt` or `lambda`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorizerKind {
    Jwt,
    Lambda,
}

impl AuthorizerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthorizerKind::Jwt => "jwt",
            AuthorizerKind::Lambda => "lambda",
        }
    }
}

/// A named authorizer that routes refer to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorizer {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AuthorizerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaConfig>,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

impl Authorizer {
    pub fn validate(&self) -> Result<(), String> {
        validate_name("authorizer", &self.name)?;
        match (self.kind, &self.jwt, &self.lambda) {
            (AuthorizerKind::Jwt, Some(j), None) => j.validate(),
            (AuthorizerKind::Lambda, None, Some(l)) => l.validate(),
            (k, _, _) => Err(format!(
                "a {0} authorizer takes a \"{0}\" configuration and no other",
                k.as_str()
            )),
        }
    }
}

/// Names of authorizers and usage plans: 1–64 of letters, digits, `-`, `_`, `.`.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "Invalid {what} name {name:?}: 1 to 64 letters, digits, -, _ and ."
        ));
    }
    Ok(())
}

/// Where a request carries an identity: `$request.header.NAME` or
/// `$request.querystring.NAME` (REST's `method.request.…` spelling is accepted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// Lower-cased header name.
    Header(String),
    Query(String),
}

impl IdentitySource {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let rest = t
            .strip_prefix("$request.")
            .or_else(|| t.strip_prefix("method.request."))
            .or_else(|| t.strip_prefix("route.request."))
            .ok_or_else(|| {
                format!(
                    "Invalid identity source {s:?}: expected $request.header.NAME or $request.querystring.NAME"
                )
            })?;
        if let Some(h) = rest.strip_prefix("header.") {
            if !h.is_empty() && http::HeaderName::from_bytes(h.as_bytes()).is_ok() {
                return Ok(IdentitySource::Header(h.to_ascii_lowercase()));
            }
        } else if let Some(q) = rest.strip_prefix("querystring.") {
            if !q.is_empty() {
                return Ok(IdentitySource::Query(q.to_string()));
            }
        }
        Err(format!(
            "Invalid identity source {s:?}: expected $request.header.NAME or $request.querystring.NAME"
        ))
    }

    /// The value in this request; `None` when absent or empty (AWS answers 401 then).
    pub fn value<'a>(&self, req: &'a RequestInfo<'_>) -> Option<std::borrow::Cow<'a, str>> {
        let v: std::borrow::Cow<'a, str> = match self {
            IdentitySource::Header(h) => {
                let vals: Vec<&str> = req
                    .headers
                    .iter()
                    .filter(|(n, _)| *n == h.as_str())
                    .map(|(_, v)| v.as_ref())
                    .collect();
                match vals.len() {
                    0 => return None,
                    1 => std::borrow::Cow::Borrowed(vals[0]),
                    _ => std::borrow::Cow::Owned(vals.join(",")),
                }
            }
            IdentitySource::Query(q) => {
                let vals: Vec<String> = form_urlencoded::parse(req.raw_query.as_bytes())
                    .filter(|(k, _)| k == q)
                    .map(|(_, v)| v.into_owned())
                    .collect();
                if vals.is_empty() {
                    return None;
                }
                std::borrow::Cow::Owned(vals.join(","))
            }
        };
        if v.trim().is_empty() {
            None
        } else {
            Some(v)
        }
    }
}

/// What passed the checks hands to the event: `requestContext.authorizer` in the
/// route's payload format, and the API key used (`identity.apiKey`/`apiKeyId` in 1.0).
#[derive(Debug, Clone, Default)]
pub struct Granted {
    pub authorizer: Option<Value>,
    /// `(value, id)`.
    pub api_key: Option<(String, String)>,
}

/// Every definition, as requests see them.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub authorizers: HashMap<String, Arc<Authorizer>>,
    pub plans: HashMap<String, Arc<UsagePlan>>,
    /// By id.
    pub keys: HashMap<String, Arc<ApiKey>>,
    /// Key value → id.
    pub key_values: HashMap<String, String>,
}

pub(crate) struct Inner {
    pub store: GatewayAuthStore,
    /// Writers hold this for the whole change (store write, then swap).
    pub write: tokio::sync::Mutex<()>,
    pub snapshot: RwLock<Arc<Snapshot>>,
    pub throttles: Throttles,
    pub jwks: jwt::JwksCache,
    pub lambda_cache: lambda::DecisionCache,
    pub usage: keys::Usage,
}

/// The gateway's access control: definitions plus the state requests share
/// (buckets, caches, quota counters). Cheap to clone.
#[derive(Clone)]
pub struct GatewayAuth {
    pub(crate) inner: Arc<Inner>,
}

impl GatewayAuth {
    /// Load the definitions and quota counters stored in the database at `db_path`.
    /// Counters are written back every second by a background task (started when a
    /// tokio runtime is running) and by [`GatewayAuth::flush`].
    pub fn open(db_path: &Path) -> Result<Self, StoreError> {
        let store = GatewayAuthStore::open(db_path)?;
        let mut snap = Snapshot::default();
        for o in store.list()? {
            let loaded = match o.kind.as_str() {
                KIND_AUTHORIZER => serde_json::from_str::<Authorizer>(&o.config).map(|a| {
                    snap.authorizers.insert(a.name.clone(), Arc::new(a));
                }),
                KIND_PLAN => serde_json::from_str::<UsagePlan>(&o.config).map(|p| {
                    snap.plans.insert(p.name.clone(), Arc::new(p));
                }),
                KIND_KEY => serde_json::from_str::<ApiKey>(&o.config).map(|k| {
                    snap.key_values.insert(k.value.clone(), k.id.clone());
                    snap.keys.insert(k.id.clone(), Arc::new(k));
                }),
                _ => Ok(()),
            };
            if let Err(e) = loaded {
                tracing::warn!(kind = %o.kind, name = %o.name, error = %e,
                    "skipping a stored gateway access-control object that no longer parses");
            }
        }
        let usage = keys::Usage::load(&store)?;
        let auth = Self {
            inner: Arc::new(Inner {
                store,
                write: tokio::sync::Mutex::new(()),
                snapshot: RwLock::new(Arc::new(snap)),
                throttles: Throttles::default(),
                jwks: jwt::JwksCache::default(),
                lambda_cache: lambda::DecisionCache::default(),
                usage,
            }),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&auth.inner);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    GatewayAuth { inner }.flush().await;
                }
            });
        }
        Ok(auth)
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn swap(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut guard = self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let old = &**guard;
        let mut next = Snapshot {
            authorizers: old.authorizers.clone(),
            plans: old.plans.clone(),
            keys: old.keys.clone(),
            key_values: old.key_values.clone(),
        };
        f(&mut next);
        *guard = Arc::new(next);
    }

    pub(crate) async fn store_put(
        &self,
        kind: &str,
        name: &str,
        config: String,
    ) -> Result<(), AuthError> {
        let store = self.inner.store.clone();
        let o = StoredObject {
            kind: kind.to_string(),
            name: name.to_string(),
            config,
            updated_ms: nimbus_core::now_ms(),
        };
        tokio::task::spawn_blocking(move || store.put(&o))
            .await
            .map_err(|e| StoreError::Corrupt(format!("write task failed: {e}")))??;
        Ok(())
    }

    pub(crate) async fn store_delete(&self, kind: &str, name: &str) -> Result<bool, AuthError> {
        let store = self.inner.store.clone();
        let (k, n) = (kind.to_string(), name.to_string());
        Ok(tokio::task::spawn_blocking(move || store.delete(&k, &n))
            .await
            .map_err(|e| StoreError::Corrupt(format!("delete task failed: {e}")))??)
    }

    // -- authorizers ---------------------------------------------------------

    pub fn authorizers(&self) -> Vec<Arc<Authorizer>> {
        let mut v: Vec<_> = self.snapshot().authorizers.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn authorizer(&self, name: &str) -> Option<Arc<Authorizer>> {
        self.snapshot().authorizers.get(name).cloned()
    }

    /// Create or replace an authorizer; `true` when new. A Lambda authorizer's
    /// function must exist.
    pub async fn put_authorizer(
        &self,
        mut a: Authorizer,
        invoker: &dyn FunctionLookup,
    ) -> Result<(Arc<Authorizer>, bool), AuthError> {
        a.validate().map_err(AuthError::Invalid)?;
        if let Some(l) = &a.lambda {
            if invoker.function(&l.function).is_none() {
                return Err(AuthError::NotFound(format!(
                    "Function not found: {} (deploy the authorizer function first)",
                    l.function
                )));
            }
            if l.qualifier.is_some()
                && !invoker.qualifier_exists(&l.function, l.qualifier.as_deref())
            {
                return Err(AuthError::NotFound(format!(
                    "Function {} has no version or alias {}",
                    l.function,
                    l.qualifier.as_deref().unwrap_or("")
                )));
            }
        }
        let _w = self.inner.write.lock().await;
        let prev = self.authorizer(&a.name);
        let now = nimbus_core::now_ms();
        a.created_ms = prev.as_ref().map_or(now, |p| p.created_ms);
        a.updated_ms = now;
        let json = serde_json::to_string(&a).expect("an authorizer serialises");
        self.store_put(KIND_AUTHORIZER, &a.name, json).await?;
        let a = Arc::new(a);
        self.swap(|s| {
            s.authorizers.insert(a.name.clone(), a.clone());
        });
        // New settings: cached decisions and keys of the old ones no longer hold.
        self.inner.lambda_cache.forget(&a.name);
        self.inner.jwks.forget(&a.name);
        Ok((a, prev.is_none()))
    }

    /// Delete an authorizer no route uses (`in_use`: the routes that do).
    pub async fn delete_authorizer(&self, name: &str, in_use: &[String]) -> Result<(), AuthError> {
        if !in_use.is_empty() {
            return Err(AuthError::Conflict(format!(
                "Authorizer {name} is used by route(s) {}; remove it from them first",
                in_use.join(", ")
            )));
        }
        let _w = self.inner.write.lock().await;
        if self.authorizer(name).is_none() {
            return Err(AuthError::NotFound(format!("Authorizer not found: {name}")));
        }
        self.store_delete(KIND_AUTHORIZER, name).await?;
        self.swap(|s| {
            s.authorizers.remove(name);
        });
        self.inner.lambda_cache.forget(name);
        self.inner.jwks.forget(name);
        Ok(())
    }

    /// Check a route's access-control settings against the definitions: its
    /// authorizer must exist (and be of `expected` kind when given), and scopes need
    /// a JWT authorizer.
    pub fn check_route(
        &self,
        route: &Route,
        expected: Option<AuthorizerKind>,
    ) -> Result<(), AuthError> {
        if let Some(t) = &route.throttle {
            t.validate().map_err(AuthError::Invalid)?;
        }
        match &route.authorizer {
            None => {
                if !route.authorization_scopes.is_empty() {
                    return Err(AuthError::Invalid(
                        "Authorization scopes need a JWT authorizer on the route".into(),
                    ));
                }
            }
            Some(name) => {
                let a = self
                    .authorizer(name)
                    .ok_or_else(|| AuthError::NotFound(format!("Authorizer not found: {name}")))?;
                if let Some(k) = expected {
                    if k != a.kind {
                        return Err(AuthError::Invalid(format!(
                            "Authorizer {name} is a {} authorizer, not {}",
                            a.kind.as_str(),
                            k.as_str()
                        )));
                    }
                }
                if !route.authorization_scopes.is_empty() && a.kind != AuthorizerKind::Jwt {
                    return Err(AuthError::Invalid(
                        "Authorization scopes apply to JWT authorizers only".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Write the quota counters that changed since the last flush.
    pub async fn flush(&self) {
        self.inner.usage.flush(&self.inner.store).await;
    }

    // -- requests ------------------------------------------------------------

    /// Run a request through the route's checks. `Ok(None)`: the route has none.
    /// `Err`: why the request stops here (401, 403, 429, 500); the function is not invoked.
    pub async fn check(
        &self,
        route: &Route,
        req: &RequestInfo<'_>,
        dispatch: &Arc<dyn Dispatch>,
    ) -> Result<Option<Granted>, Denied> {
        if route.authorizer.is_none() && !route.api_key_required && route.throttle.is_none() {
            return Ok(None);
        }
        if let Some(t) = route.throttle {
            if !self
                .inner
                .throttles
                .allow(&format!("route {}", req.route_key), t)
            {
                return Err(Denied::Throttled);
            }
        }
        let mut granted = Granted::default();
        if let Some(name) = &route.authorizer {
            let Some(a) = self.authorizer(name) else {
                tracing::warn!(route = %req.route_key, authorizer = %name, "the route's authorizer is gone");
                return Err(Denied::Failed);
            };
            granted.authorizer = Some(match a.kind {
                AuthorizerKind::Jwt => {
                    let cfg = a.jwt.as_ref().expect("validated");
                    jwt::authorize(self, &a.name, cfg, route, req).await?
                }
                AuthorizerKind::Lambda => {
                    let cfg = a.lambda.as_ref().expect("validated");
                    lambda::authorize(self, &a.name, cfg, route, req, dispatch).await?
                }
            });
        }
        if route.api_key_required {
            granted.api_key = Some(keys::check(self, req)?);
        }
        Ok(Some(granted))
    }
}

/// The `execute-api` ARN of a request: `arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/{path}`.
pub fn method_arn(req: &RequestInfo<'_>, region: &str) -> String {
    format!(
        "arn:aws:execute-api:{region}:{}:{}/{}/{}/{}",
        req.account_id,
        req.api_id,
        req.stage,
        req.method,
        req.raw_path.trim_start_matches('/')
    )
}

/// Why a request was stopped before its function ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 401: no identity, or a token that does not verify.
    Unauthorized,
    /// 403: an authorizer's deny, a missing scope, a missing or unknown API key.
    Forbidden,
    /// 429 `Too Many Requests`: a route's or an API key's token bucket is empty.
    Throttled,
    /// 429 `Limit Exceeded`: the API key's quota for the period is used up.
    LimitExceeded,
    /// 500: the authorizer failed (error, timeout, malformed answer, unreachable JWKS).
    Failed,
}

impl Denied {
    /// The reason label of `nimbus_gateway_rejections_total` and the access log.
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Unauthorized => "unauthorized",
            Denied::Forbidden => "forbidden",
            Denied::Throttled => "throttled",
            Denied::LimitExceeded => "quota_exceeded",
            Denied::Failed => "authorizer_failed",
        }
    }

    /// The gateway's answer, in API Gateway's words.
    pub fn response(self) -> Response {
        let (status, text) = match self {
            Denied::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Denied::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
            Denied::Throttled => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            Denied::LimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "Limit Exceeded"),
            Denied::Failed => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        };
        response::message(status, text)
    }
}

/// Whether a route's events are format 1.0 (for the shape of `authorizer`).
pub(crate) fn is_v1(route: &Route) -> bool {
    route.payload_format == PayloadFormat::V1
}

/// A usage plan's or route's throttle, for the API.
pub fn parse_throttle(s: &str) -> Result<ThrottleSettings, String> {
    ThrottleSettings::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sources() {
        assert_eq!(
            IdentitySource::parse("$request.header.Authorization").unwrap(),
            IdentitySource::Header("authorization".into())
        );
        assert_eq!(
            IdentitySource::parse("method.request.querystring.token").unwrap(),
            IdentitySource::Query("token".into())
        );
        for bad in [
            "Authorization",
            "$request.header.",
            "$request.body.x",
            "$context.x",
        ] {
            assert!(IdentitySource::parse(bad).is_err(), "{bad}");
        }
    }
}

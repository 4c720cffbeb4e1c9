//! JWT authorizers, as HTTP APIs have them: the token comes from the identity source
//! (default `Authorization`, an optional `Bearer ` prefix dropped); its signature
//! is checked with the authorizer's HS256/384/512 secret or with a key of its JWKS
//! (a file or an `http(s)` URL; RS256/384/512, PS256/384/512, ES256/384, EdDSA);
//! `iss` must equal the issuer, `aud` (or `client_id`) must name one of the
//! audiences, `exp` must be present and not past, `nbf` and `iat` not in the
//! future. Any failure is 401 `Unauthorized`. A route's authorization scopes then
//! need at least one of them in the token's `scope` (space-separated) or `scp`
//! claim, else 403 `Forbidden`.
//!
//! Signatures are checked by the `jsonwebtoken` crate. A JWKS is cached per
//! authorizer for an hour; a token naming a key id the cached set lacks refetches it
//! (at most every 30 s), so key rotation needs no restart.

use super::{is_v1, Denied, GatewayAuth, IdentitySource};
use crate::event::RequestInfo;
use crate::route::Route;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const JWKS_TTL: Duration = Duration::from_secs(3600);
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(30);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_MAX_BYTES: usize = 1024 * 1024;

/// A JWT authorizer's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The exact `iss` tokens must carry.
    pub issuer: String,
    /// Tokens' `aud` (or `client_id`) must be one of these.
    pub audiences: Vec<String>,
    /// Where the token is; default `$request.header.Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_source: Option<String>,
    /// A shared secret for HS256/384/512 tokens (a Nimbus extension: AWS takes
    /// only JWKS keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A JWKS: an `http://` or `https://` URL, or a file path on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
}

impl JwtConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.issuer.trim().is_empty() {
            return Err("A JWT authorizer needs an issuer".into());
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.is_empty()) {
            return Err("A JWT authorizer needs at least one audience".into());
        }
        if self.secret.is_none() && self.jwks.is_none() {
            return Err("A JWT authorizer needs a secret (HS256) or a JWKS (file or URL)".into());
        }
        if self.secret.as_deref().is_some_and(str::is_empty) {
            return Err("The JWT secret is empty".into());
        }
        if let Some(j) = &self.jwks {
            if j.trim().is_empty() {
                return Err("The JWKS location is empty".into());
            }
        }
        self.source()?;
        Ok(())
    }

    fn source(&self) -> Result<IdentitySource, String> {
        match &self.identity_source {
            None => Ok(IdentitySource::Header("authorization".into())),
            Some(s) => IdentitySource::parse(s),
        }
    }
}

struct CachedSet {
    location: String,
    set: Arc<JwkSet>,
    fetched: Instant,
}

/// JWKS documents by authorizer name.
#[derive(Default)]
pub(crate) struct JwksCache {
    sets: Mutex<HashMap<String, CachedSet>>,
    /// One fetch at a time; waiters then find the fresh set.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub(crate) fn forget(&self, name: &str) {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    fn cached(&self, name: &str, location: &str) -> Option<(Arc<JwkSet>, Instant)> {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .filter(|c| c.location == location)
            .map(|c| (c.set.clone(), c.fetched))
    }

    /// The set for `name`: the cached one unless it is stale, or `refresh` asks for a
    /// new one and the cached one is older than [`JWKS_REFETCH_MIN`].
    async fn get(&self, name: &str, location: &str, refresh: bool) -> Result<Arc<JwkSet>, String> {
        let usable = |c: &Option<(Arc<JwkSet>, Instant)>| match c {
            Some((_, at)) => {
                let age = at.elapsed();
                age < JWKS_TTL && !(refresh && age >= JWKS_REFETCH_MIN)
            }
            None => false,
        };
        let cached = self.cached(name, location);
        if usable(&cached) {
            return Ok(cached.expect("usable").0);
        }
        let _one = self.fetching.lock().await;
        let again = self.cached(name, location);
        if let Some((set, at)) = &again {
            // Someone else fetched while we waited.
            if cached.as_ref().map(|c| c.1) != Some(*at) && at.elapsed() < JWKS_TTL {
                return Ok(set.clone());
            }
        }
        match fetch(location).await {
            Ok(set) => {
                let set = Arc::new(set);
                self.sets.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    name.to_string(),
                    CachedSet {
                        location: location.to_string(),
                        set: set.clone(),
                        fetched: Instant::now(),
                    },
                );
                Ok(set)
            }
            // A stale set beats none while the source is unreachable.
            Err(e) => match again {
                Some((set, _)) => {
                    tracing::warn!(authorizer = %name, jwks = %location, error = %e,
                        "cannot refresh the JWKS; using the cached one");
                    Ok(set)
                }
                None => Err(e),
            },
        }
    }
}

async fn fetch(location: &str) -> Result<JwkSet, String> {
    let bytes: Vec<u8> = if location.starts_with("http://") || location.starts_with("https://") {
        let client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let resp = client
            .get(location)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {location}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{location} answered {}", resp.status()));
        }
        let b = resp
            .bytes()
            .await
            .map_err(|e| format!("cannot read {location}: {e}"))?;
        b.to_vec()
    } else {
        let path = location.strip_prefix("file://").unwrap_or(location);
        tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?
    };
    if bytes.len() > JWKS_MAX_BYTES {
        return Err(format!("{location} is larger than {JWKS_MAX_BYTES} bytes"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{location} is not a JWKS: {e}"))
}

/// Why a token was refused (logged at debug level; the client only sees 401).
#[derive(Debug)]
enum Refusal {
    Unauthorized(String),
    /// The authorizer cannot work (its JWKS is unreachable): 500.
    Broken(String),
}

/// Check the request's token; on success the value of `requestContext.authorizer`.
pub(crate) async fn authorize(
    auth: &GatewayAuth,
    name: &str,
    cfg: &JwtConfig,
    route: &Route,
    req: &RequestInfo<'_>,
) -> Result<Value, Denied> {
    let source = cfg.source().map_err(|_| Denied::Failed)?;
    let Some(raw) = source.value(req) else {
        return Err(Denied::Unauthorized);
    };
    let token = strip_bearer(&raw);
    let claims = match verify(auth, name, cfg, token, req.time_ms / 1000).await {
        Ok(c) => c,
        Err(Refusal::Unauthorized(why)) => {
            tracing::debug!(authorizer = %name, route = %req.route_key, "JWT refused: {why}");
            return Err(Denied::Unauthorized);
        }
        Err(Refusal::Broken(why)) => {
            tracing::warn!(authorizer = %name, route = %req.route_key, "JWT authorizer failed: {why}");
            return Err(Denied::Failed);
        }
    };
    let scopes = token_scopes(&claims);
    if !route.authorization_scopes.is_empty()
        && !route
            .authorization_scopes
            .iter()
            .any(|s| scopes.iter().any(|t| t == s))
    {
        return Err(Denied::Forbidden);
    }
    let claims: Map<String, Value> = claims
        .into_iter()
        .map(|(k, v)| (k, Value::String(claim_text(&v))))
        .collect();
    let scopes = if scopes.is_empty() {
        Value::Null
    } else {
        Value::from(scopes)
    };
    let mut out = Map::new();
    if is_v1(route) {
        out.insert("claims".into(), Value::Object(claims));
        out.insert("scopes".into(), scopes);
    } else {
        let mut jwt = Map::new();
        jwt.insert("claims".into(), Value::Object(claims));
        jwt.insert("scopes".into(), scopes);
        out.insert("jwt".into(), Value::Object(jwt));
    }
    Ok(Value::Object(out))
}

fn strip_bearer(raw: &str) -> &str {
    let t = raw.trim();
    match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => t[7..].trim_start(),
        _ => t,
    }
}

async fn verify(
    auth: &GatewayAuth,
    name: &str,
    cfg: &JwtConfig,
    token: &str,
    now_s: i64,
) -> Result<Map<String, Value>, Refusal> {
    let u = |s: String| Refusal::Unauthorized(s);
    let header = jsonwebtoken::decode_header(token).map_err(|e| u(format!("bad header: {e}")))?;
    let key = match header.alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => match &cfg.secret {
            Some(s) => DecodingKey::from_secret(s.as_bytes()),
            None => {
                return Err(u(format!(
                    "{:?} token, but the authorizer has no secret",
                    header.alg
                )))
            }
        },
        alg => {
            let Some(location) = &cfg.jwks else {
                return Err(u(format!("{alg:?} token, but the authorizer has no JWKS")));
            };
            let jwks = &auth.inner.jwks;
            let mut set = jwks
                .get(name, location, false)
                .await
                .map_err(Refusal::Broken)?;
            let mut jwk = pick(&set, header.kid.as_deref());
            if jwk.is_none() && header.kid.is_some() {
                // Maybe the keys rotated.
                set = jwks
                    .get(name, location, true)
                    .await
                    .map_err(Refusal::Broken)?;
                jwk = pick(&set, header.kid.as_deref());
            }
            let Some(jwk) = jwk else {
                return Err(u(format!("no JWKS key for kid {:?}", header.kid)));
            };
            DecodingKey::from_jwk(jwk).map_err(|e| u(format!("unusable JWKS key: {e}")))?
        }
    };
    let mut v = Validation::new(header.alg);
    v.leeway = 0;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iss"]);
    v.set_issuer(&[cfg.issuer.as_str()]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .map_err(|e| u(format!("invalid token: {e}")))?;
    let claims = data.claims;
    if let Some(iat) = claims.get("iat").and_then(Value::as_f64) {
        if iat > now_s as f64 + 1.0 {
            return Err(u("iat is in the future".into()));
        }
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => cfg.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| cfg.audiences.iter().any(|x| x == a)),
        _ => false,
    } || claims
        .get("client_id")
        .and_then(Value::as_str)
        .is_some_and(|c| cfg.audiences.iter().any(|x| x == c));
    if !aud_ok {
        return Err(u("no accepted audience in aud or client_id".into()));
    }
    Ok(claims)
}

fn pick<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// The token's scopes: `scope` (space-separated) or `scp` (a list or a string).
fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for k in ["scope", "scp"] {
        match claims.get(k) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    out
}

/// Claims reach the function as strings, as HTTP APIs pass them: numbers and
/// booleans as their text, lists as `[a b]`, objects as JSON.
fn claim_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(claim_text).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bearer_prefix_is_optional() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer  abc"), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
    }

    #[test]
    fn scopes_and_claims() {
        let c = json!({"scope": "read write", "scp": ["admin"]});
        assert_eq!(
            token_scopes(c.as_object().unwrap()),
            ["read", "write", "admin"]
        );
        assert_eq!(claim_text(&json!(12)), "12");
        assert_eq!(claim_text(&json!(["a", "b"])), "[a b]");
        assert_eq!(claim_text(&json!(true)), "true");
    }

    #[test]
    fn config_validation() {
        let ok = JwtConfig {
            issuer: "https://issuer".into(),
            audiences: vec!["api".into()],
            identity_source: None,
            secret: Some("s3cret".into()),
            jwks: None,
        };
        assert!(ok.validate().is_ok());
        assert!(JwtConfig {
            secret: None,
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(JwtConfig {
            audiences: vec![],
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(JwtConfig {
            identity_source: Some("Authorization".into()),
            ..ok
        }
        .validate()
        .is_err());
    }
}

//! OIDC ID tokens for `AssumeRoleWithWebIdentity`, checked against the issuers
//! the server trusts (`nimbus up --oidc-issuer URL`, the counterpart of IAM's
//! OpenID Connect providers): the issuer's keys come from its discovery
//! document (`<issuer>/.well-known/openid-configuration` → `jwks_uri`),
//! cached for an hour and fetched again early when a token names a key id the
//! cached set lacks (keys rotate); RS256 and ES256 signatures; `iss`, `aud`
//! (against `--oidc-audience` when given), `exp` and `nbf` checked.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a fetched key set is used.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// A key set is fetched again for an unknown key id at most this often.
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest discovery document or key set read.
const DOCUMENT_MAX: usize = 512 * 1024;

/// Why a token was refused: AWS's error codes for `AssumeRoleWithWebIdentity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// `InvalidIdentityToken` (400): unsigned, badly signed, not an issuer the
    /// server trusts, an audience it does not accept.
    Invalid(String),
    /// `ExpiredTokenException` (400): `exp` has passed.
    Expired(String),
    /// `IDPRejectedClaim` (403): a claim the token cannot be used with (not
    /// valid yet, no subject).
    Rejected(String),
    /// `IDPCommunicationError` (400): the issuer's keys cannot be fetched.
    Communication(String),
}

/// A verified token: its issuer and claims.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The `iss` claim, as the token carries it.
    pub issuer: String,
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The issuer without its scheme and trailing slash: IAM's name of the
    /// provider (`token.actions.githubusercontent.com`), the prefix of the
    /// trust policy's condition keys (`<provider>:aud`, `<provider>:sub`).
    pub fn provider(&self) -> String {
        provider_name(&self.issuer)
    }

    /// A string claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The audiences (`aud` is a string or a list).
    pub fn audiences(&self) -> Vec<String> {
        match self.claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(l)) => l
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => vec![],
        }
    }
}

/// `https://host/path/` → `host/path`.
pub fn provider_name(issuer: &str) -> String {
    issuer
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

struct Cached {
    set: Arc<JwkSet>,
    fetched: Instant,
}

/// The trusted issuers and their cached key sets.
pub struct Verifier {
    issuers: Vec<String>,
    audiences: Vec<String>,
    cache: Mutex<HashMap<String, Cached>>,
    /// One fetch at a time; waiters then find the fresh set.
    fetching: tokio::sync::Mutex<()>,
}

impl Verifier {
    pub fn new(issuers: Vec<String>, audiences: Vec<String>) -> Self {
        Self {
            issuers: issuers
                .into_iter()
                .map(|i| i.trim_end_matches('/').to_string())
                .collect(),
            audiences,
            cache: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any issuer is configured.
    pub fn is_configured(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Check `token`: signed by a key of a trusted issuer, unexpired, valid
    /// already, for an accepted audience, with a subject.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let invalid = |m: String| TokenError::Invalid(m);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("The web identity token is not a signed JWT.".into()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(invalid(format!(
                "The web identity token is signed with {:?}; only RS256 and ES256 are accepted.",
                header.alg
            )));
        }
        // The issuer names which keys to check the signature with: read it
        // unverified, then verify against that issuer's keys only.
        let iss = unverified_claims(token)
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| invalid("The web identity token has no iss claim.".into()))?;
        let Some(issuer) = self
            .issuers
            .iter()
            .find(|i| i.as_str() == iss.trim_end_matches('/'))
        else {
            return Err(invalid(format!(
                "No OpenIDConnect provider found in your account for {iss}"
            )));
        };
        let mut set = self.keys(issuer, false).await?;
        let mut jwk = pick(&set, header.kid.as_deref()).cloned();
        if jwk.is_none() {
            // The issuer may have rotated its keys.
            set = self.keys(issuer, true).await?;
            jwk = pick(&set, header.kid.as_deref()).cloned();
        }
        let jwk = jwk.ok_or_else(|| {
            invalid(format!(
                "The issuer {iss} has no key {:?} to verify the web identity token with.",
                header.kid.as_deref().unwrap_or("")
            ))
        })?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| invalid(format!("The issuer's key cannot be used: {e}")))?;
        let mut v = Validation::new(header.alg);
        v.leeway = 0;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss"]);
        v.set_issuer(&[iss.as_str()]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => TokenError::Expired(
                    "Token expired: current date/time must be before the expiration date/time."
                        .into(),
                ),
                K::ImmatureSignature => {
                    TokenError::Rejected("The web identity token is not valid yet (nbf).".into())
                }
                K::InvalidSignature => {
                    invalid("The web identity token's signature does not verify.".into())
                }
                K::MissingRequiredClaim(c) => {
                    invalid(format!("The web identity token has no {c} claim."))
                }
                other => invalid(format!("The web identity token is invalid: {other:?}")),
            }
        })?;
        let verified = Verified {
            issuer: iss.clone(),
            claims: data.claims,
        };
        let auds = verified.audiences();
        if auds.is_empty() {
            return Err(invalid("The web identity token has no aud claim.".into()));
        }
        if !self.audiences.is_empty() && !auds.iter().any(|a| self.audiences.contains(a)) {
            return Err(invalid("Incorrect token audience".into()));
        }
        if verified.claim("sub").is_none_or(str::is_empty) {
            return Err(TokenError::Rejected(
                "The web identity token has no sub claim.".into(),
            ));
        }
        Ok(verified)
    }

    /// The issuer's key set: cached, or fetched (again when `refresh` and the
    /// cached one is not brand new).
    async fn keys(&self, issuer: &str, refresh: bool) -> Result<Arc<JwkSet>, TokenError> {
        let cached = || {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(issuer)
                .map(|c| (c.set.clone(), c.fetched))
        };
        let usable = |at: Instant| {
            let age = at.elapsed();
            age < JWKS_TTL && !(refresh && age >= JWKS_REFETCH_MIN)
        };
        if let Some((set, at)) = cached() {
            if usable(at) {
                return Ok(set);
            }
        }
        let _one = self.fetching.lock().await;
        let before = cached();
        if let Some((set, at)) = &before {
            if at.elapsed() < JWKS_REFETCH_MIN {
                return Ok(set.clone());
            }
        }
        match fetch_keys(issuer).await {
            Ok(set) => {
                let set = Arc::new(set);
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    issuer.to_string(),
                    Cached {
                        set: set.clone(),
                        fetched: Instant::now(),
                    },
                );
                tracing::info!(issuer, keys = set.keys.len(), "sts: OIDC keys fetched");
                Ok(set)
            }
            // A cached set beats none while the issuer is unreachable.
            Err(e) => match before {
                Some((set, _)) => {
                    tracing::warn!(issuer, error = %e, "sts: cannot refresh the OIDC keys; using the cached ones");
                    Ok(set)
                }
                None => Err(TokenError::Communication(e)),
            },
        }
    }
}

/// The claims of a JWT, signature unchecked (only to learn its issuer).
fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn pick<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > DOCUMENT_MAX as u64)
    {
        return Err(format!("{url} is larger than {DOCUMENT_MAX} bytes"));
    }
    let b = resp
        .bytes()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    if b.len() > DOCUMENT_MAX {
        return Err(format!("{url} is larger than {DOCUMENT_MAX} bytes"));
    }
    serde_json::from_slice(&b).map_err(|e| format!("{url} is not JSON: {e}"))
}

/// The discovery document's `jwks_uri`, then the key set.
async fn fetch_keys(issuer: &str) -> Result<JwkSet, String> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    let doc = get_json(&client, &discovery).await?;
    let jwks_uri = doc["jwks_uri"]
        .as_str()
        .ok_or_else(|| format!("{discovery} has no jwks_uri"))?;
    let set = get_json(&client, jwks_uri).await?;
    serde_json::from_value(set).map_err(|e| format!("{jwks_uri} is not a JWKS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_drop_the_scheme() {
        assert_eq!(
            provider_name("https://token.actions.githubusercontent.com"),
            "token.actions.githubusercontent.com"
        );
        assert_eq!(
            provider_name("http://127.0.0.1:8080/realms/x/"),
            "127.0.0.1:8080/realms/x"
        );
    }

    #[tokio::test]
    async fn tokens_of_other_issuers_and_algorithms_are_invalid() {
        let v = Verifier::new(vec!["https://issuer.example/".into()], vec![]);
        assert!(v.is_configured());
        // HS256 (a shared secret) is not an OIDC provider's signature.
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "https://issuer.example", "sub": "x", "aud": "a", "exp": 4_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(v.verify(&hs).await, Err(TokenError::Invalid(m)) if m.contains("HS256")));
        assert!(matches!(
            v.verify("not.a.jwt").await,
            Err(TokenError::Invalid(_))
        ));
        // An RS256 header naming an issuer nobody configured: refused before any fetch.
        let other = format!(
            "{}.{}.sig",
            base64_url(br#"{"alg":"RS256","kid":"k1"}"#),
            base64_url(br#"{"iss":"https://evil.example","sub":"x","aud":"a","exp":4000000000}"#)
        );
        assert_eq!(
            v.verify(&other).await.unwrap_err(),
            TokenError::Invalid(
                "No OpenIDConnect provider found in your account for https://evil.example".into()
            )
        );
    }

    fn base64_url(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }
}

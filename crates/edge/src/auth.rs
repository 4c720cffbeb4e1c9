//! SigV4 authentication of the edge listener.
//!
//! With credentials configured ([`AuthConfig`] with at least one [`AccessKey`]),
//! every request — every AWS API, the `/_nimbus/` control API, unknown routes —
//! must carry a valid AWS Signature Version 4 (header or presigned URL) made
//! with one of the access keys; only `GET /_nimbus/health` is open. Failures
//! answer in the protocol of the API the request was classified to (awsJson,
//! awsQuery XML, restXml, restJson1), through [`nimbus_protocol::error_response`].
//!
//! With no credentials, every request is accepted, signed or not, and the scope a
//! request names (if any) is read without being checked.
//!
//! Either way the edge learns the [`RequestScope`] (the service and region of the
//! signature, when the request is signed) and the [`Principal`] the request acts
//! as, and hands them to the front-end in its [`nimbus_protocol::EdgeContext`].
//!
//! The body: a request whose signature covers the body's hash (what the SDKs do
//! for every service but S3) is buffered whole before the front-end runs, at most
//! the operation's [`nimbus_protocol::Frontend::body_limit`]; larger is refused
//! before any front-end runs. The access key and the time are checked *before*
//! anything is buffered, so only holders of a key can make the server buffer. A
//! body declared `UNSIGNED-PAYLOAD` streams through untouched, with the
//! front-end's own limit.

use nimbus_auth::{AuthError, Credentials, KeyRing, Scope, Verifier};
pub use nimbus_core::Principal;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The SigV4 credential scope of a request, for routing and ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestScope {
    /// The signing name, e.g. `lambda`, `sts`.
    pub service: String,
    pub region: String,
    pub access_key_id: String,
    /// The signature was checked (false when authentication is off and the
    /// scope was only read from the request).
    pub verified: bool,
}

impl RequestScope {
    pub(crate) fn new(scope: Scope, verified: bool) -> Self {
        Self {
            service: scope.service,
            region: scope.region,
            access_key_id: scope.access_key_id,
            verified,
        }
    }
}

/// One accepted access key: `ACCESS_KEY:SECRET`, or `ACCESS_KEY:SECRET:USER` to
/// act as the IAM user `USER` rather than the account root.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub credentials: Credentials,
    pub principal: Principal,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.credentials.access_key_id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl FromStr for AccessKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let mut parts = s.splitn(3, ':');
        let (Some(key), Some(secret)) = (parts.next(), parts.next()) else {
            return Err("expected ACCESS_KEY:SECRET or ACCESS_KEY:SECRET:USER".into());
        };
        let user = parts.next();
        if key.is_empty()
            || key.len() > 128
            || !key
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"/,:".contains(&b))
        {
            return Err(format!(
                "access key id {key:?} must be 1 to 128 printable characters without '/', ',' or ':'"
            ));
        }
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(format!(
                "the secret of access key {key:?} must be printable characters without spaces or ','"
            ));
        }
        let principal = match user {
            None => Principal::Root,
            Some(u)
                if (1..=64).contains(&u.len())
                    && u.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)) =>
            {
                Principal::User(u.to_owned())
            }
            Some(u) => {
                return Err(format!(
                    "user name {u:?} of access key {key:?} must be 1 to 64 of A-Z a-z 0-9 +=,.@_-"
                ))
            }
        };
        Ok(AccessKey {
            credentials: Credentials::new(key, secret),
            principal,
        })
    }
}

/// The API listener's credentials: no keys means authentication is off.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    keys: Vec<AccessKey>,
    /// These keys, and the function session keys minted into it later.
    key_ring: Arc<KeyRing>,
}

impl AuthConfig {
    /// Accept these keys. The same access key id twice is an error, unless both
    /// say the same.
    pub fn new(keys: impl IntoIterator<Item = AccessKey>) -> Result<Self, String> {
        let mut out: Vec<AccessKey> = Vec::new();
        for key in keys {
            match out
                .iter()
                .find(|k| k.credentials.access_key_id == key.credentials.access_key_id)
            {
                Some(seen) if *seen == key => {}
                Some(_) => {
                    return Err(format!(
                        "access key {:?} is configured twice with different secrets or users",
                        key.credentials.access_key_id
                    ))
                }
                None => out.push(key),
            }
        }
        let key_ring = Arc::new(KeyRing::new(
            out.iter()
                .map(|k| (k.credentials.clone(), k.principal.clone())),
        ));
        Ok(Self {
            keys: out,
            key_ring,
        })
    }

    /// The ring of accepted keys, shared with whoever mints function credentials
    /// into it (the pool).
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.key_ring.clone()
    }

    /// Parse a credentials file: one `ACCESS_KEY:SECRET[:USER]` per line; blank
    /// lines and lines starting with `#` are ignored.
    pub fn parse_file(text: &str) -> Result<Vec<AccessKey>, String> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .map(|(n, l)| l.parse().map_err(|e| format!("line {n}: {e}")))
            .collect()
    }

    /// Whether requests must be signed.
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// How many access keys are accepted.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The accepted access keys.
    pub fn keys(&self) -> &[AccessKey] {
        &self.keys
    }
}

/// The edge's authentication state, built once from the [`AuthConfig`].
#[derive(Debug)]
pub(crate) struct Auth {
    pub(crate) verifier: Option<Verifier>,
    /// Checks function instances' requests when `verifier` is off (the ring
    /// then holds only function session keys; see `peers`).
    pub(crate) instance_verifier: Verifier,
    key_ring: Arc<KeyRing>,
}

impl From<AuthConfig> for Auth {
    fn from(config: AuthConfig) -> Self {
        let verifier = config
            .is_enabled()
            .then(|| Verifier::with_key_ring(config.key_ring.clone()));
        Self {
            verifier,
            instance_verifier: Verifier::with_key_ring(config.key_ring.clone()),
            key_ring: config.key_ring,
        }
    }
}

impl Auth {
    /// Whom an access key acts as: a configured key's principal, a function's
    /// role for its session key (recognised even when authentication is off),
    /// else the account root.
    pub(crate) fn principal(&self, scope: &Scope) -> Principal {
        self.key_ring
            .principal(&scope.access_key_id)
            .unwrap_or(Principal::Root)
    }
}

/// Log why a request was refused (the canonical request of a mismatch helps the
/// client's author find what was signed differently).
pub(crate) fn log_refusal(e: &AuthError, method: &http::Method, path: &str) {
    match e {
        AuthError::SignatureMismatch(m) => tracing::info!(
            method = %method,
            path,
            access_key = m.access_key_id,
            canonical_request = m.canonical_request,
            "request refused: signature does not match"
        ),
        _ => tracing::info!(method = %method, path, "request refused: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_keys_parse_with_and_without_user() {
        let k: AccessKey = "AKID:se/cr+et".parse().unwrap();
        assert_eq!(k.credentials, Credentials::new("AKID", "se/cr+et"));
        assert_eq!(k.principal, Principal::Root);
        let k: AccessKey = " AKID:secret:alice@example.com ".parse().unwrap();
        assert_eq!(k.principal, Principal::User("alice@example.com".into()));
        for bad in [
            "",
            "AKID",
            "AKID:",
            ":secret",
            "AK ID:secret",
            "AKID:sec ret",
            "AKID:secret:",
            "AKID:secret:bad user",
            "AKID:secret:a:b",
        ] {
            assert!(bad.parse::<AccessKey>().is_err(), "{bad:?}");
        }
        // The secret never shows in debug output.
        let k: AccessKey = "AKID:hunter2".parse().unwrap();
        assert!(!format!("{k:?}").contains("hunter2"));
    }

    #[test]
    fn config_files_and_duplicates() {
        let keys = AuthConfig::parse_file("# keys\n\nA:1\n  B:2:bob\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            AuthConfig::parse_file("A:1\nnonsense\n").unwrap_err(),
            "line 2: expected ACCESS_KEY:SECRET or ACCESS_KEY:SECRET:USER"
        );
        let a1: AccessKey = "A:1".parse().unwrap();
        let a2: AccessKey = "A:2".parse().unwrap();
        assert_eq!(
            AuthConfig::new([a1.clone(), a1.clone()])
                .unwrap()
                .key_count(),
            1
        );
        assert!(AuthConfig::new([a1, a2]).is_err());
        assert!(!AuthConfig::default().is_enabled());
    }
}

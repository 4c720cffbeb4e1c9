//! The key ring: every access key the API accepts and whom each acts as.
//!
//! Two kinds of keys live here:
//! * the **static** keys of the server's configuration (`--credentials`), each
//!   acting as the account root or an IAM user; fixed for the server's life;
//! * **function session keys**, minted by Nimbus for each function (as Lambda
//!   hands each function its execution role's temporary credentials): an
//!   `ASIA…` access key id, a secret and a session token, all random from the
//!   operating system's CSPRNG, never derived from the static keys. They act as
//!   [`Principal::AssumedRole`] `{ role, session: <function> }` and are revoked
//!   when the function is deleted. They live in memory only, so a restart mints
//!   new ones (instances started before it are gone by then).
//!
//! The ring is shared (`Arc`) between the pool, which mints a function's keys
//! when it starts an instance, and the API's SigV4 [`Verifier`](crate::Verifier),
//! which looks every request's access key up here. A session key verifies only
//! when the request also carries its session token (`X-Amz-Security-Token`,
//! header or presigned query parameter), compared in constant time.
//!
//! Secrets and tokens never appear in `Debug` output.

use crate::canonical::decode_component;
use base64::Engine;
use nimbus_core::Principal;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// The prefix of temporary (session) access key ids, as AWS STS issues them.
pub const SESSION_KEY_PREFIX: &str = "ASIA";

/// Temporary credentials: what a function finds in `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .finish()
    }
}

impl SessionCredentials {
    /// Fresh random credentials: `ASIA` and 16 base32 characters (80 bits), a
    /// 40-character secret (240 bits) and a 128-character token (768 bits).
    fn mint() -> Result<Self, getrandom::Error> {
        let mut id = [0u8; 10];
        let mut secret = [0u8; 30];
        let mut token = [0u8; 96];
        getrandom::fill(&mut id)?;
        getrandom::fill(&mut secret)?;
        getrandom::fill(&mut token)?;
        Ok(Self {
            access_key_id: format!("{SESSION_KEY_PREFIX}{}", base32(&id)),
            secret_access_key: base64::engine::general_purpose::STANDARD.encode(secret),
            // URL-safe, so a presigned URL carries it with no escaping surprises.
            session_token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token),
        })
    }
}

/// RFC 4648 base32 without padding (the alphabet of AWS access key ids).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// IAM's unique id of a role: `AROA` and 17 base32 characters (21 in all, as
/// AWS's are), derived from the role's name so it is stable across restarts.
pub fn role_id(role: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("nimbus-iam-role:{role}").as_bytes());
    let mut id = String::from("AROA");
    id.push_str(&base32(&digest)[..17]);
    id
}

/// What a request's access key resolves to.
#[derive(Clone)]
pub(crate) struct KeyEntry {
    pub secret: String,
    /// Required with the key (session keys only).
    pub session_token: Option<String>,
    pub principal: Principal,
    /// When the key stops being accepted (STS sessions), else never.
    pub expires_at: Option<time::OffsetDateTime>,
}

#[derive(Default)]
struct Sessions {
    by_key: HashMap<String, Arc<KeyEntry>>,
    /// Each function's keys, one per role it ran as.
    by_function: HashMap<String, Vec<(String, SessionCredentials)>>,
}

/// Every access key the API accepts (see the module docs).
#[derive(Default)]
pub struct KeyRing {
    statics: HashMap<String, Arc<KeyEntry>>,
    sessions: RwLock<Sessions>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.statics.keys().collect();
        ids.sort();
        f.debug_struct("KeyRing")
            .field("static_access_key_ids", &ids)
            .field(
                "function_sessions",
                &self.sessions.read().unwrap().by_key.len(),
            )
            .finish()
    }
}

/// Why a function's credentials could not be minted.
#[derive(Debug, thiserror::Error)]
#[error("cannot mint function credentials: the system random source failed: {0}")]
pub struct MintError(#[from] getrandom::Error);

impl KeyRing {
    /// A ring with these static keys (a later duplicate access key id replaces an
    /// earlier one) and no session keys yet.
    pub fn new(keys: impl IntoIterator<Item = (crate::Credentials, Principal)>) -> Self {
        Self {
            statics: keys
                .into_iter()
                .map(|(c, principal)| {
                    let entry = KeyEntry {
                        secret: c.secret_access_key,
                        session_token: None,
                        principal,
                        expires_at: None,
                    };
                    (c.access_key_id, Arc::new(entry))
                })
                .collect(),
            sessions: RwLock::default(),
        }
    }

    /// How many static keys the ring holds (none: authentication is off).
    pub fn static_key_count(&self) -> usize {
        self.statics.len()
    }

    /// The static access key ids, sorted.
    pub fn static_key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.statics.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// `function`'s credentials acting as `role`: the ones already minted for
    /// this function and role, or new ones registered now.
    pub fn function_credentials(
        &self,
        function: &str,
        role: &str,
    ) -> Result<SessionCredentials, MintError> {
        if let Some(c) = self.existing(function, role) {
            return Ok(c);
        }
        let mut s = self.sessions.write().unwrap();
        // Minted by someone else while we waited for the lock?
        if let Some((_, c)) = s
            .by_function
            .get(function)
            .and_then(|v| v.iter().find(|(r, _)| r == role))
        {
            return Ok(c.clone());
        }
        let creds = loop {
            let c = SessionCredentials::mint()?;
            // 80 random bits: a collision is practically impossible, but cheap to rule out.
            if !s.by_key.contains_key(&c.access_key_id)
                && !self.statics.contains_key(&c.access_key_id)
            {
                break c;
            }
        };
        let entry = KeyEntry {
            secret: creds.secret_access_key.clone(),
            session_token: Some(creds.session_token.clone()),
            principal: Principal::AssumedRole {
                role: role.to_owned(),
                session: function.to_owned(),
            },
            expires_at: None,
        };
        s.by_key
            .insert(creds.access_key_id.clone(), Arc::new(entry));
        s.by_function
            .entry(function.to_owned())
            .or_default()
            .push((role.to_owned(), creds.clone()));
        tracing::debug!(
            function,
            role,
            access_key_id = %creds.access_key_id,
            "minted function credentials"
        );
        Ok(creds)
    }

    fn existing(&self, function: &str, role: &str) -> Option<SessionCredentials> {
        let s = self.sessions.read().unwrap();
        s.by_function
            .get(function)?
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, c)| c.clone())
    }

    /// Forget every key of `function` (it was deleted): requests signed with
    /// them are refused from now on. Returns how many keys were revoked.
    pub fn revoke_function(&self, function: &str) -> usize {
        let mut s = self.sessions.write().unwrap();
        let Some(keys) = s.by_function.remove(function) else {
            return 0;
        };
        for (_, c) in &keys {
            s.by_key.remove(&c.access_key_id);
        }
        tracing::debug!(
            function,
            revoked = keys.len(),
            "revoked function credentials"
        );
        keys.len()
    }

    /// Accept another key from now on: an IAM user's access key
    /// (`session_token: None`, `expires_at: None`) or STS temporary
    /// credentials (a token, an expiry after which requests get
    /// [`AuthError::ExpiredToken`](crate::AuthError::ExpiredToken)). A static
    /// key of the same id is not replaced. Returns false if the id is taken.
    pub fn register(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        principal: Principal,
        expires_at: Option<time::OffsetDateTime>,
    ) -> bool {
        if self.statics.contains_key(access_key_id) {
            return false;
        }
        let entry = KeyEntry {
            secret: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
            principal,
            expires_at,
        };
        self.sessions
            .write()
            .unwrap()
            .by_key
            .insert(access_key_id.to_owned(), Arc::new(entry));
        true
    }

    /// Stop accepting a key added with [`KeyRing::register`] (deleted or
    /// deactivated). Static keys and function keys are not touched.
    pub fn unregister(&self, access_key_id: &str) -> bool {
        let mut s = self.sessions.write().unwrap();
        let is_function_key = s
            .by_function
            .values()
            .flatten()
            .any(|(_, c)| c.access_key_id == access_key_id);
        !is_function_key && s.by_key.remove(access_key_id).is_some()
    }

    /// Forget registered keys that expired before `now`; returns how many.
    pub fn sweep_expired(&self, now: time::OffsetDateTime) -> usize {
        let mut s = self.sessions.write().unwrap();
        let before = s.by_key.len();
        s.by_key.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
        before - s.by_key.len()
    }

    pub(crate) fn get(&self, access_key_id: &str) -> Option<Arc<KeyEntry>> {
        if let Some(e) = self.statics.get(access_key_id) {
            return Some(e.clone());
        }
        self.sessions
            .read()
            .unwrap()
            .by_key
            .get(access_key_id)
            .cloned()
    }

    /// Whom a request naming `access_key_id` acts as, without checking anything
    /// (for attribution when authentication is off). `None` for unknown keys.
    pub fn principal(&self, access_key_id: &str) -> Option<Principal> {
        self.get(access_key_id).map(|e| e.principal.clone())
    }
}

/// The session token a request carries: the `X-Amz-Security-Token` header, or
/// for a presigned URL the query parameter of that name.
pub(crate) fn security_token(
    headers: &http::HeaderMap,
    query: &str,
    presigned: bool,
) -> Option<String> {
    if let Some(v) = headers.get("x-amz-security-token") {
        return Some(String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    }
    if !presigned {
        return None;
    }
    query.split('&').find_map(|part| {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        (decode_component(k) == "X-Amz-Security-Token").then(|| decode_component(v))
    })
}

/// Constant-time equality of two tokens (their lengths are not secret).
pub(crate) fn tokens_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Credentials;

    #[test]
    fn minted_keys_look_like_sts_ones_and_differ() {
        let ring = KeyRing::default();
        let a = ring.function_credentials("thumbs", "thumbs-role").unwrap();
        assert!(a.access_key_id.starts_with("ASIA"));
        assert_eq!(a.access_key_id.len(), 20);
        assert!(a.access_key_id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_eq!(a.secret_access_key.len(), 40);
        assert_eq!(a.session_token.len(), 128);
        // The same function and role keep their keys; another function gets its own.
        assert_eq!(
            ring.function_credentials("thumbs", "thumbs-role").unwrap(),
            a
        );
        let b = ring.function_credentials("resize", "thumbs-role").unwrap();
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_ne!(a.secret_access_key, b.secret_access_key);
        assert_ne!(a.session_token, b.session_token);
        assert_eq!(
            ring.principal(&a.access_key_id),
            Some(Principal::AssumedRole {
                role: "thumbs-role".into(),
                session: "thumbs".into()
            })
        );
    }

    #[test]
    fn revoking_a_function_forgets_only_its_keys() {
        let ring = KeyRing::new([(Credentials::new("AKID", "s"), Principal::Root)]);
        let a = ring.function_credentials("a", "r1").unwrap();
        let a2 = ring.function_credentials("a", "r2").unwrap();
        let b = ring.function_credentials("b", "r1").unwrap();
        assert_eq!(ring.revoke_function("a"), 2);
        assert!(ring.principal(&a.access_key_id).is_none());
        assert!(ring.principal(&a2.access_key_id).is_none());
        assert!(ring.principal(&b.access_key_id).is_some());
        assert_eq!(ring.principal("AKID"), Some(Principal::Root));
        assert_eq!(ring.revoke_function("a"), 0);
        // A function created again under the same name gets new keys.
        assert_ne!(ring.function_credentials("a", "r1").unwrap(), a);
    }

    #[test]
    fn registered_keys_verify_until_they_expire_or_are_unregistered() {
        use crate::{AuthError, Request, Signer, Verifier};
        use time::{Duration, OffsetDateTime};
        let ring = Arc::new(KeyRing::new([(
            Credentials::new("AKID", "s"),
            Principal::Root,
        )]));
        let verifier = Verifier::with_key_ring(ring.clone());
        let t0 = OffsetDateTime::now_utc();
        assert!(ring.register(
            "ASIATEMP",
            "sec",
            Some("tok"),
            Principal::User("u".into()),
            Some(t0 + Duration::minutes(10)),
        ));
        assert!(ring.register("AKIAUSER", "sec2", None, Principal::User("v".into()), None));
        // A static key's id cannot be taken over.
        assert!(!ring.register("AKID", "x", None, Principal::User("w".into()), None));
        let uri: http::Uri = "http://localhost/".parse().unwrap();
        let check = |key: &str, secret: &str, token: Option<&str>, at: OffsetDateTime| {
            let mut h = http::HeaderMap::new();
            if let Some(t) = token {
                h.insert("x-amz-security-token", t.parse().unwrap());
            }
            Signer::new(Credentials::new(key, secret), "us-east-1", "sts").sign_at(
                "GET",
                &uri,
                &mut h,
                Some(b""),
                at,
            );
            verifier.verify_at(&Request::new("GET", &uri, &h, Some(b"")), at)
        };
        let ok = check("ASIATEMP", "sec", Some("tok"), t0).unwrap();
        assert_eq!(ok.principal, Principal::User("u".into()));
        let later = t0 + Duration::minutes(11);
        assert!(matches!(
            check("ASIATEMP", "sec", Some("tok"), later),
            Err(AuthError::ExpiredToken { .. })
        ));
        assert!(matches!(
            check("ASIATEMP", "sec", None, t0),
            Err(AuthError::InvalidToken { .. })
        ));
        assert!(check("AKIAUSER", "sec2", None, later).is_ok());
        assert_eq!(ring.sweep_expired(later), 1);
        assert!(ring.unregister("AKIAUSER"));
        assert!(matches!(
            check("AKIAUSER", "sec2", None, t0),
            Err(AuthError::UnrecognizedClient { .. })
        ));
        // Function keys are not unregistered this way.
        let f = ring.function_credentials("f", "r").unwrap();
        assert!(!ring.unregister(&f.access_key_id));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let ring = KeyRing::new([(Credentials::new("AKID", "hunter2"), Principal::Root)]);
        let c = ring.function_credentials("f", "r").unwrap();
        for text in [format!("{ring:?}"), format!("{c:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(&c.secret_access_key), "{text}");
            assert!(!text.contains(&c.session_token), "{text}");
        }
    }

    #[test]
    fn role_ids_look_like_iam_ones() {
        let id = role_id("thumbs-role");
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("AROA"));
        assert_eq!(id, role_id("thumbs-role"));
        assert_ne!(id, role_id("other-role"));
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(&[0xff; 10]), "7".repeat(16));
    }

    #[test]
    fn tokens_are_read_from_header_or_presigned_query() {
        let mut h = http::HeaderMap::new();
        assert_eq!(
            security_token(&h, "X-Amz-Security-Token=a%2Bb", true).as_deref(),
            Some("a+b")
        );
        assert_eq!(security_token(&h, "X-Amz-Security-Token=ab", false), None);
        h.insert("x-amz-security-token", "tok".parse().unwrap());
        assert_eq!(security_token(&h, "", false).as_deref(), Some("tok"));
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "abcd"));
    }
}

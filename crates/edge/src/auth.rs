//! SigV4 authentication of the API listener, as an axum middleware.
//!
//! With credentials configured ([`AuthConfig`] with at least one [`AccessKey`]),
//! every request — Lambda, STS, the `/_nimbus/` control API, unknown routes —
//! must carry a valid AWS Signature Version 4 (header or presigned URL) made
//! with one of the access keys; only `GET /_nimbus/health` is open. Failures
//! answer in the protocol's own shape: the REST-JSON one
//! (`x-amzn-ErrorType: UnrecognizedClientException`, `{"message": …}`) for every
//! path but `/`, and the query protocol's XML `ErrorResponse` for `/` (STS).
//!
//! With no credentials, every request is accepted, signed or not, and the scope a
//! request names (if any) is read without being checked.
//!
//! Either way handlers find, as request extensions, the [`RequestScope`] (the
//! service and region of the signature, when the request is signed) and the
//! [`Principal`] the request acts as.
//!
//! The body: a request whose signature covers the body's hash (what the SDKs do
//! for every service but S3) is buffered whole before the handler runs, at most
//! [`body_limit`] bytes (Lambda's 6 MB for `Invoke`, the largest upload
//! elsewhere); larger answers `413` before any handler runs. The access key and
//! the time are checked *before* anything is buffered, so only holders of a key
//! can make the server buffer. A body declared `UNSIGNED-PAYLOAD` streams through
//! untouched, with the handler's own limit.

use crate::error::ApiError;
use crate::sts::QueryError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{request::Parts, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use nimbus_auth::{AuthError, Credentials, Payload, Protocol, Scope, Verifier};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Whom a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The account root (`arn:aws:iam::<account>:root`): every key configured
    /// without a user name, and every request when authentication is off.
    Root,
    /// The IAM user of that name (`arn:aws:iam::<account>:user/<name>`).
    User(String),
}

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
    fn new(scope: Scope, verified: bool) -> Self {
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
        Ok(Self { keys: out })
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

/// The middleware's state, built once from the [`AuthConfig`].
#[derive(Debug)]
pub(crate) struct Auth {
    verifier: Option<Verifier>,
    principals: HashMap<String, Principal>,
}

impl From<AuthConfig> for Auth {
    fn from(config: AuthConfig) -> Self {
        let verifier = config
            .is_enabled()
            .then(|| Verifier::new(config.keys.iter().map(|k| k.credentials.clone())));
        let principals = config
            .keys
            .into_iter()
            .map(|k| (k.credentials.access_key_id, k.principal))
            .collect();
        Self {
            verifier,
            principals,
        }
    }
}

/// The largest body buffered for signature checking on `path`, and how a larger
/// one is refused (the same code and message the route's handler uses).
pub(crate) fn body_limit(path: &str) -> (usize, &'static str, String) {
    let invoke = path.starts_with("/2015-03-31/functions/") && path.ends_with("/invocations");
    if invoke {
        let max = nimbus_core::limits::SYNC_PAYLOAD_MAX;
        (
            max,
            "RequestTooLargeException",
            format!("Request must be smaller than {max} bytes for the InvokeFunction operation"),
        )
    } else {
        let max = crate::nimbus::CODE_UPLOAD_MAX;
        (
            max,
            "RequestEntityTooLargeException",
            format!("Request must be smaller than {max} bytes"),
        )
    }
}

/// Requests to `/` speak the query protocol (STS); everything else REST-JSON.
fn protocol(parts: &Parts) -> Protocol {
    if parts.uri.path() == "/" {
        Protocol::Query
    } else {
        Protocol::Json
    }
}

fn refuse(e: &AuthError, protocol: Protocol) -> Response {
    let (status, code, message) = (
        e.status_for(protocol),
        e.code_for(protocol),
        e.message_for(protocol).into_owned(),
    );
    match protocol {
        Protocol::Query => QueryError::new(status, code, message).into_response(),
        _ => ApiError::new(status, code, message).into_response(),
    }
}

fn error(protocol: Protocol, status: StatusCode, code: &'static str, message: String) -> Response {
    match protocol {
        Protocol::Query => QueryError::new(status, code, message).into_response(),
        _ => ApiError::new(status, code, message).into_response(),
    }
}

/// Read the whole body, at most the route's limit.
async fn buffer(parts: &Parts, body: Body) -> Result<Bytes, Response> {
    let (max, code, message) = body_limit(parts.uri.path());
    let too_large = || {
        error(
            protocol(parts),
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            message.clone(),
        )
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(error(
            protocol(parts),
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("could not read request body: {e}"),
        )),
    }
}

/// The middleware.
pub(crate) async fn authenticate(
    State(auth): State<Arc<Auth>>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let Some(verifier) = &auth.verifier else {
        if let Some(scope) = nimbus_auth::parse_scope_unverified(&parts.headers, &query) {
            parts.extensions.insert(RequestScope::new(scope, false));
        }
        parts.extensions.insert(Principal::Root);
        return next.run(Request::from_parts(parts, body)).await;
    };
    if parts.method == Method::GET && parts.uri.path() == "/_nimbus/health" {
        return next.run(Request::from_parts(parts, body)).await;
    }

    let method = parts.method.as_str().to_owned();
    let request = |body| nimbus_auth::Request {
        method: &method,
        path: parts.uri.path(),
        query: &query,
        headers: &parts.headers,
        body,
    };
    // Without the body first: unknown keys and stale or malformed signatures are
    // refused before anything is read.
    let (verified, body) = match verifier.verify(&request(None)) {
        Ok(v) if v.payload == Payload::Unsigned => (v, body),
        Ok(nimbus_auth::Verified {
            payload: Payload::Streaming { .. },
            ..
        }) => {
            let e = AuthError::IncompleteSignature {
                message: "Nimbus does not accept aws-chunked (STREAMING-*) payloads on this \
                          API; send the body whole."
                    .into(),
                presigned: false,
            };
            return refuse(&e, protocol(&parts));
        }
        // The signature covers the body's hash: read it and check again.
        Ok(_) | Err(AuthError::BodyNotProvided) => {
            let bytes = match buffer(&parts, body).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            match verifier.verify(&request(Some(&bytes))) {
                Ok(v) => (v, Body::from(bytes)),
                Err(e) => return rejected(&e, &parts),
            }
        }
        Err(e) => return rejected(&e, &parts),
    };
    let principal = auth
        .principals
        .get(&verified.scope.access_key_id)
        .cloned()
        .unwrap_or(Principal::Root);
    parts
        .extensions
        .insert(RequestScope::new(verified.scope, true));
    parts.extensions.insert(principal);
    next.run(Request::from_parts(parts, body)).await
}

fn rejected(e: &AuthError, parts: &Parts) -> Response {
    match e {
        AuthError::SignatureMismatch(m) => tracing::info!(
            method = %parts.method,
            path = parts.uri.path(),
            access_key = m.access_key_id,
            canonical_request = m.canonical_request,
            "request refused: signature does not match"
        ),
        _ => tracing::info!(
            method = %parts.method,
            path = parts.uri.path(),
            "request refused: {e}"
        ),
    }
    refuse(e, protocol(parts))
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

    #[test]
    fn invoke_is_capped_at_the_sync_payload_limit() {
        let (max, code, _) = body_limit("/2015-03-31/functions/f/invocations");
        assert_eq!(max, nimbus_core::limits::SYNC_PAYLOAD_MAX);
        assert_eq!(code, "RequestTooLargeException");
        let (max, _, _) = body_limit("/_nimbus/code");
        assert_eq!(max, crate::nimbus::CODE_UPLOAD_MAX);
    }
}

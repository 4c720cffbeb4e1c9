//! AWS Signature Version 4 for Nimbus: **verification** of what clients send, and
//! a small [`Signer`] for Nimbus's own clients.
//!
//! Real clients (boto3, the aws CLI, the SDKs) sign every request with SigV4,
//! either in the `Authorization` header or, for presigned URLs, in `X-Amz-*` query
//! parameters. A [`Verifier`] rebuilds the canonical request from what arrived,
//! recomputes the signature with the secret of the named access key and compares
//! in constant time. On success it returns the credential [`Scope`] (access key,
//! date, region, service), which the router uses to pick the service front-end.
//!
//! ```
//! use nimbus_auth::{AuthError, Credentials, Request, Verifier};
//! # let (method, uri, headers) = (http::Method::GET, http::Uri::from_static("/"), http::HeaderMap::new());
//! # let body = bytes_of_the_body();
//! # fn bytes_of_the_body() -> Vec<u8> { Vec::new() }
//! let verifier = Verifier::new([Credentials::new("AKID", "secret")]);
//! // First without the body: rejects unknown keys and stale requests before
//! // anything is buffered, and settles requests whose payload is declared.
//! let req = Request::new(method.as_str(), &uri, &headers, None);
//! let verified = match verifier.verify(&req) {
//!     Err(AuthError::BodyNotProvided) => {
//!         // The signature covers the body's hash: buffer it and check again.
//!         verifier.verify(&Request::new(method.as_str(), &uri, &headers, Some(&body)))
//!     }
//!     other => other,
//! };
//! match verified {
//!     Ok(v) => { /* route on v.scope.service, v.scope.region */ }
//!     Err(e) => { /* answer e.code_for(protocol), e.status_for(protocol), e.message_for(protocol) */ }
//! }
//! ```
//!
//! What is checked, as AWS does:
//! * the access key is one of the configured [`Credentials`] or a function's
//!   session key in the [`KeyRing`] ([`AuthError::UnrecognizedClient`]), and a
//!   session key comes with its session token ([`AuthError::InvalidToken`]);
//! * the time: header auth within 15 minutes of the server clock either way,
//!   presigned URLs until `X-Amz-Date + X-Amz-Expires` (at most a week);
//! * the credential scope's date is the day of `X-Amz-Date`;
//! * `host` is among the signed headers;
//! * the signature over method, path, query, the signed headers and the payload
//!   hash ([`AuthError::SignatureMismatch`]);
//! * a hex `x-amz-content-sha256` against the body, when the body is given.
//!
//! The region and service of the scope are *not* restricted: like the AWS
//! emulators, one endpoint answers for every region, and the service routes.
//!
//! Canonicalisation follows the published rules: S3 paths are used as sent, other
//! services' paths are normalised (dot segments and `//` removed) and encoded a
//! second time; the query is decoded, RFC 3986-encoded and sorted; header values
//! are trimmed with whitespace runs folded. Where real signers disagree (paths with
//! `%`-escapes, a raw `+` in the query, tabs in header values, the payload line
//! of a presigned URL) a
//! small set of candidates derived from the received request is tried; see
//! [`PathRule`]. Every candidate is a function of the received bytes, so accepting
//! one never lets a signature cover a different request than its signer saw.
//!
//! Streaming uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) are verified up to the
//! seed signature; per-chunk signatures are the body reader's business
//! ([`Payload::Streaming`] carries the seed, [`Verifier::chunk_signer`] the
//! chain to check them with).
//!
//! The cryptography is the `hmac` and `sha2` crates; encoding is `percent-encoding`.

mod canonical;
mod chunk;
mod error;
mod keyring;
mod parse;
mod signing;
#[cfg(test)]
mod suite;

pub use canonical::PathRule;
pub use chunk::ChunkSigner;
pub use error::{AuthError, Protocol, SignatureMismatch};
pub use keyring::{role_id, KeyRing, MintError, SessionCredentials, SESSION_KEY_PREFIX};
pub use nimbus_core::Principal;
pub use signing::{Signer, ALGORITHM};

use std::fmt;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// How far the request time may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);

/// One accepted access key and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The credential scope a request was signed for:
/// `<access key>/<date>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    /// The signing name, e.g. `lambda`, `sqs`, `s3`, `sts`, `iam`, `execute-api`.
    pub service: String,
}

impl Scope {
    /// `<date>/<region>/<service>/aws4_request`, as it appears in the string to sign.
    pub fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// The parts of an HTTP request the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path exactly as received (still percent-encoded), e.g. `uri.path()`.
    pub path: &'a str,
    /// The raw query string without `?`, `""` if none.
    pub query: &'a str,
    /// Must contain `host` (for HTTP/2, insert it from `:authority` first).
    pub headers: &'a http::HeaderMap,
    /// The whole body if it was buffered (`Some(b"")` for an empty one). `None`
    /// means not buffered: the request must then carry `x-amz-content-sha256`
    /// (S3 clients always do), which is trusted for the signature and reported in
    /// [`Verified::payload`] for the body reader to check.
    pub body: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    pub fn new(
        method: &'a str,
        uri: &'a http::Uri,
        headers: &'a http::HeaderMap,
        body: Option<&'a [u8]>,
    ) -> Self {
        Self {
            method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers,
            body,
        }
    }
}

/// How the body is covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The body's SHA-256 (lower-case hex) is signed. `checked` is false only
    /// when the body was not given and the hash came from `x-amz-content-sha256`:
    /// the caller must then compare it while reading the body.
    Sha256 { hex: String, checked: bool },
    /// `UNSIGNED-PAYLOAD` (or an S3 presigned URL): the body is not signed.
    Unsigned,
    /// An `aws-chunked` body (`STREAMING-…`). Only the seed signature (the
    /// request's own) was verified; for the HMAC modes each chunk carries a
    /// signature chained from `seed_signature`.
    Streaming {
        mode: String,
        seed_signature: String,
    },
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scope: Scope,
    /// The request time (`X-Amz-Date`).
    pub signed_at: OffsetDateTime,
    /// Signed in the query string (a presigned URL) rather than the header.
    pub presigned: bool,
    pub payload: Payload,
    /// Whom the access key acts as (see [`KeyRing`]).
    pub principal: Principal,
}

/// Checks SigV4 signatures against the accepted keys of a [`KeyRing`].
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<KeyRing>,
    /// Services canonicalised with S3's path rule.
    s3_style: Vec<String>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("s3_style", &self.s3_style)
            .finish()
    }
}

/// The signing names whose paths follow S3's rule.
const S3_STYLE_SERVICES: [&str; 4] = ["s3", "s3-object-lambda", "s3express", "s3-outposts"];

/// The path rule of a service, as its AWS signers apply it.
pub(crate) fn default_path_rule(service: &str) -> PathRule {
    if S3_STYLE_SERVICES.contains(&service) {
        PathRule::S3
    } else {
        PathRule::Normalized
    }
}

impl Verifier {
    /// A verifier accepting exactly these credentials, each acting as the account
    /// root (a later duplicate access key id replaces an earlier one).
    pub fn new(credentials: impl IntoIterator<Item = Credentials>) -> Self {
        Self::with_key_ring(Arc::new(KeyRing::new(
            credentials.into_iter().map(|c| (c, Principal::Root)),
        )))
    }

    /// A verifier accepting the keys of `ring`, also those added to it later
    /// (function session keys) and no longer those revoked.
    pub fn with_key_ring(keys: Arc<KeyRing>) -> Self {
        Self {
            keys,
            s3_style: S3_STYLE_SERVICES.map(String::from).to_vec(),
        }
    }

    /// Also canonicalise `service`'s paths with S3's rule (no normalisation, no
    /// second encoding). `s3`, `s3-object-lambda`, `s3express` and `s3-outposts`
    /// are preset.
    pub fn with_s3_path_rule(mut self, service: impl Into<String>) -> Self {
        self.s3_style.push(service.into());
        self
    }

    /// The path rule used for a service's signing name.
    pub fn path_rule(&self, service: &str) -> PathRule {
        if self.s3_style.iter().any(|s| s == service) {
            PathRule::S3
        } else {
            PathRule::Normalized
        }
    }

    /// Verify the request's signature against the server clock.
    ///
    /// With `body: None`, everything that does not need the body is checked
    /// (authentication present and well-formed, access key known, time, scope
    /// date), and then: if the request declares its payload (`x-amz-content-sha256`
    /// or a presigned URL's rule) the signature is checked too; if instead the
    /// signature covers a hash of the body the client did not declare, the answer
    /// is [`AuthError::BodyNotProvided`]: buffer the body and call again with it.
    pub fn verify(&self, req: &Request<'_>) -> Result<Verified, AuthError> {
        self.verify_at(req, OffsetDateTime::now_utc())
    }

    /// [`Verifier::verify`] with an explicit "now".
    pub fn verify_at(&self, req: &Request<'_>, now: OffsetDateTime) -> Result<Verified, AuthError> {
        let auth = parse::auth_input(req.headers, req.query)?;
        let scope = parse::parse_scope(&auth.credential, auth.presigned)?;
        let Some(entry) = self.keys.get(&scope.access_key_id) else {
            return Err(AuthError::UnrecognizedClient {
                access_key_id: scope.access_key_id,
            });
        };
        if let Some(expected) = &entry.session_token {
            let given = keyring::security_token(req.headers, req.query, auth.presigned);
            if !given.is_some_and(|t| keyring::tokens_match(&t, expected)) {
                return Err(AuthError::InvalidToken {
                    access_key_id: scope.access_key_id,
                });
            }
        }
        if entry.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::ExpiredToken {
                access_key_id: scope.access_key_id,
            });
        }
        let secret = &entry.secret;
        check_time(&auth, now)?;
        let day = &auth.amz_date[..8];
        if scope.date != day {
            return Err(AuthError::CredentialDateMismatch {
                scope_date: scope.date,
                date: day.to_owned(),
                amz_date: auth.amz_date,
            });
        }
        if !auth.signed_headers.split(';').any(|h| h == "host") {
            let m = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.";
            return Err(if auth.presigned {
                AuthError::incomplete_query(m)
            } else {
                AuthError::incomplete(m)
            });
        }

        let candidates = self.canonical_requests(req, &auth, &scope)?;
        let key = signing::signing_key(secret, &scope.date, &scope.region, &scope.service);
        let provided = hex::decode(&auth.signature).unwrap_or_default();
        let credential_scope = scope.credential_scope();
        let mut first_attempt = None;
        for (canonical_request, payload) in candidates {
            let sts =
                signing::string_to_sign(&auth.amz_date, &credential_scope, &canonical_request);
            if signing::signature_matches(&key, &sts, &provided) {
                return finish(req, scope, &auth, payload, entry.principal.clone());
            }
            first_attempt.get_or_insert((canonical_request, sts));
        }
        let (canonical_request, string_to_sign) = first_attempt.expect("at least one candidate");
        Err(AuthError::SignatureMismatch(Box::new(SignatureMismatch {
            access_key_id: scope.access_key_id,
            signature_provided: auth.signature,
            canonical_request: String::from_utf8_lossy(&canonical_request).into_owned(),
            string_to_sign,
        })))
    }

    /// Verify a browser `POST` upload's policy signature (S3's POST Object with
    /// SigV4): `signature` is the hex HMAC of the base64 `policy` (the string
    /// to sign) under the key derived from `credential`'s scope. The policy's own
    /// expiration and conditions are the service's to check. `security_token`
    /// is the form's `x-amz-security-token`, needed for session keys.
    pub fn verify_post_policy(
        &self,
        credential: &str,
        policy: &str,
        signature: &str,
        security_token: Option<&str>,
    ) -> Result<(Scope, Principal), AuthError> {
        let scope = parse::parse_scope(credential, false)?;
        let Some(entry) = self.keys.get(&scope.access_key_id) else {
            return Err(AuthError::UnrecognizedClient {
                access_key_id: scope.access_key_id,
            });
        };
        if let Some(expected) = &entry.session_token {
            if !security_token.is_some_and(|t| keyring::tokens_match(t, expected)) {
                return Err(AuthError::InvalidToken {
                    access_key_id: scope.access_key_id,
                });
            }
        }
        if entry
            .expires_at
            .is_some_and(|t| t <= OffsetDateTime::now_utc())
        {
            return Err(AuthError::ExpiredToken {
                access_key_id: scope.access_key_id,
            });
        }
        let key = signing::signing_key(&entry.secret, &scope.date, &scope.region, &scope.service);
        let provided = hex::decode(signature.trim()).unwrap_or_default();
        if signing::signature_matches(&key, policy, &provided) {
            return Ok((scope, entry.principal.clone()));
        }
        Err(AuthError::SignatureMismatch(Box::new(SignatureMismatch {
            access_key_id: scope.access_key_id,
            signature_provided: signature.to_owned(),
            canonical_request: String::new(),
            string_to_sign: policy.to_owned(),
        })))
    }

    /// Every canonical request the client may have signed, the service's own rule
    /// first (see [`PathRule`]), each with what its payload-hash line means.
    fn canonical_requests(
        &self,
        req: &Request<'_>,
        auth: &parse::AuthInput,
        scope: &Scope,
    ) -> Result<Vec<(Vec<u8>, Payload)>, AuthError> {
        let rule = self.path_rule(&scope.service);
        let payloads = payload_hashes(req, auth, rule)?;
        let signed: Vec<&str> = auth
            .signed_headers
            .split(';')
            .filter(|h| !h.is_empty())
            .collect();
        let mut header_blocks = vec![canonical::canonical_headers(
            req.headers,
            &signed,
            canonical::Fold::Whitespace,
        )];
        if canonical::folds_differ(req.headers, &signed) {
            header_blocks.push(canonical::canonical_headers(
                req.headers,
                &signed,
                canonical::Fold::Spaces,
            ));
        }
        let mut queries = vec![canonical::canonical_query(req.query, auth.presigned, false)];
        if req.query.contains('+') {
            queries.push(canonical::canonical_query(req.query, auth.presigned, true));
        }
        let mut out = Vec::new();
        for (payload_hash, payload) in &payloads {
            for path in canonical::path_candidates(req.path, rule) {
                for query in &queries {
                    for headers in &header_blocks {
                        let bytes = canonical::CanonicalRequest {
                            method: req.method,
                            path: &path,
                            query,
                            headers,
                            signed_headers: &auth.signed_headers,
                            payload_hash,
                        }
                        .to_bytes();
                        out.push((bytes, payload.clone()));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn check_time(auth: &parse::AuthInput, now: OffsetDateTime) -> Result<(), AuthError> {
    let fmt = parse::format_amz_date;
    if auth.signed_at > now + MAX_CLOCK_SKEW {
        return Err(AuthError::SignatureNotYetCurrent {
            signed: auth.amz_date.clone(),
            latest: fmt(now + MAX_CLOCK_SKEW),
            now: fmt(now),
        });
    }
    match (auth.presigned, auth.expires_s) {
        (true, Some(expires_s)) => {
            if now > auth.signed_at + Duration::seconds(expires_s as i64) {
                return Err(AuthError::RequestExpired {
                    signed: auth.amz_date.clone(),
                    expires_s,
                    now: fmt(now),
                });
            }
        }
        _ => {
            if auth.signed_at < now - MAX_CLOCK_SKEW {
                return Err(AuthError::SignatureExpired {
                    signed: auth.amz_date.clone(),
                    earliest: fmt(now - MAX_CLOCK_SKEW),
                    now: fmt(now),
                });
            }
        }
    }
    Ok(())
}

pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const STREAMING_MODES: [&str; 5] = [
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "STREAMING-AWS4-HMAC-SHA256-EVENTS",
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
];

/// The payload-hash lines the client may have signed, and what each means.
///
/// A declared value (`x-amz-content-sha256`, or for a presigned URL its
/// `X-Amz-Content-Sha256` parameter) is the only candidate. A presigned URL that
/// declares nothing was signed either with `UNSIGNED-PAYLOAD` (S3's rule, and
/// what S3-style services try first) or with the body's hash (everyone else).
/// Header auth that declares nothing signed the body's hash.
fn payload_hashes(
    req: &Request<'_>,
    auth: &parse::AuthInput,
    rule: PathRule,
) -> Result<Vec<(String, Payload)>, AuthError> {
    let header = req
        .headers
        .get("x-amz-content-sha256")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    let declared = if auth.presigned {
        auth.query_content_sha256.clone().or(header)
    } else {
        header
    };
    let Some(declared) = declared else {
        let unsigned = (UNSIGNED_PAYLOAD.to_owned(), Payload::Unsigned);
        let hashed = req.body.map(|body| {
            let hex = signing::sha256_hex(body);
            (hex.clone(), Payload::Sha256 { hex, checked: true })
        });
        return match (hashed, auth.presigned, rule) {
            (None, _, _) => Err(AuthError::BodyNotProvided),
            (Some(h), false, _) => Ok(vec![h]),
            (Some(h), true, PathRule::S3) => Ok(vec![unsigned, h]),
            (Some(h), true, PathRule::Normalized) => Ok(vec![h, unsigned]),
        };
    };
    let payload = if declared == UNSIGNED_PAYLOAD {
        Payload::Unsigned
    } else if STREAMING_MODES.contains(&declared.as_str()) {
        Payload::Streaming {
            mode: declared.clone(),
            seed_signature: auth.signature.clone(),
        }
    } else if declared.len() == 64 && declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        Payload::Sha256 {
            hex: declared.to_ascii_lowercase(),
            checked: false,
        }
    } else {
        return Err(AuthError::InvalidContentSha256 { value: declared });
    };
    Ok(vec![(declared, payload)])
}

/// After the signature matched: compare a declared body hash with the body.
fn finish(
    req: &Request<'_>,
    scope: Scope,
    auth: &parse::AuthInput,
    payload: Payload,
    principal: Principal,
) -> Result<Verified, AuthError> {
    let payload = match (payload, req.body) {
        (
            Payload::Sha256 {
                hex,
                checked: false,
            },
            Some(body),
        ) => {
            let computed = signing::sha256_hex(body);
            if computed != hex {
                return Err(AuthError::ContentSha256Mismatch {
                    claimed: hex,
                    computed,
                });
            }
            Payload::Sha256 { hex, checked: true }
        }
        (p, _) => p,
    };
    Ok(Verified {
        scope,
        signed_at: auth.signed_at,
        presigned: auth.presigned,
        payload,
        principal,
    })
}

/// The scope (service, region, access key, date) a request names, from the
/// `Authorization` header's `Credential=` or the `X-Amz-Credential` query
/// parameter, without checking the signature. For routing when verification is
/// off; `None` if the request names no well-formed scope.
pub fn parse_scope_unverified(headers: &http::HeaderMap, query: &str) -> Option<Scope> {
    parse::scope_unverified(headers, query)
}

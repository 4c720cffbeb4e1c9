//! The edge listener (default `127.0.0.1:4566`): the one port every AWS API Nimbus
//! serves, and its control API, answer on.
//!
//! The edge only routes. For every request it
//! 1. classifies it to exactly one front-end ([`routes`]: SigV4 scope,
//!    `X-Amz-Target`, form `Action` + `Version`, `Host`, path), from the
//!    [`ServiceMeta`] of the front-ends it was given;
//! 2. authenticates it ([`auth`]: SigV4 against the configured access keys), and
//!    buffers the body where the signature covers it or the `Action` is in it, at
//!    most the operation's [`Frontend::body_limit`];
//! 3. hands it to the front-end with an [`EdgeContext`] (request id, region,
//!    [`nimbus_core::Principal`], protocol) as a request extension;
//! 4. writes one access-log line (target `nimbus::api::access`).
//!
//! Refusals before a front-end runs (authentication, body too large, nothing
//! claims the request) are written in the protocol the request was classified to,
//! through [`nimbus_protocol::error_response`]. The listener itself ([`server`])
//! bounds header and body read times and the number of connections.

pub mod auth;
pub mod authz;
pub mod peers;
pub mod routes;
pub mod server;

pub use auth::{AccessKey, AuthConfig, Principal, RequestScope};

/// A request extension: the edge let this request through without a
/// signature although authentication is on, because it is STS's
/// `AssumeRoleWithWebIdentity` (unsigned on AWS). Its principal is no one's;
/// STS refuses any other operation carrying it.
#[derive(Debug, Clone, Copy)]
pub struct Unsigned;
pub use peers::{InstancePeer, InstancePeers, PeerIdentity};
pub use routes::{Route, Rule, Table, Unrecognised};
pub use server::EdgeSettings;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode};
use nimbus_auth::{AuthError, Payload};
use nimbus_protocol::{error_response, AwsError, EdgeContext, Frontend, Protocol, ServiceMeta};
use std::sync::Arc;
use std::time::Instant;

struct Inner {
    table: Table,
    frontends: Vec<Arc<dyn Frontend>>,
    auth: auth::Auth,
    settings: EdgeSettings,
    /// IAM's authorisation hook ([`authz`]), if any.
    authorizer: Option<Arc<dyn authz::Authorizer>>,
}

/// The edge: front-ends, their routing table, the access keys. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

/// What a request was refused with before reaching a front-end.
struct Refused(Response);

impl Edge {
    /// An edge over these front-ends (registering one is one more element);
    /// `auth` says which SigV4 credentials every request must be signed with
    /// (none: accept everything).
    pub fn new(
        frontends: Vec<Arc<dyn Frontend>>,
        auth: AuthConfig,
        settings: EdgeSettings,
    ) -> Self {
        let table = Table::new(frontends.iter().map(|f| f.meta()).collect());
        Self {
            inner: Arc::new(Inner {
                table,
                frontends,
                auth: auth::Auth::from(auth),
                settings,
                authorizer: None,
            }),
        }
    }

    /// Authorise every routed request with `authorizer` before its front-end
    /// runs (see [`authz`]). Call before the edge is cloned or served.
    pub fn with_authorizer(mut self, authorizer: Arc<dyn authz::Authorizer>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.authorizer = Some(authorizer),
            None => panic!("Edge::with_authorizer called after the edge was shared"),
        }
        self
    }

    /// The routing table.
    pub fn table(&self) -> &Table {
        &self.inner.table
    }

    /// Serve one request: classify, authenticate, hand on, log.
    pub async fn handle(&self, req: Request) -> Response {
        let started = Instant::now();
        let request_id = nimbus_core::new_request_id();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let mut log = AccessLog::default();
        let mut resp = match self.route(req, &request_id, &mut log).await {
            Ok(r) => r,
            Err(Refused(r)) => r,
        };
        // Every AWS answer carries a request id, errors included.
        if !resp.headers().contains_key("x-amzn-requestid") {
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-amzn-requestid", v);
            }
        }
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        tracing::info!(
            target: "nimbus::api::access",
            method = %method,
            path = %path,
            service = log.service,
            rule = log.rule,
            status = resp.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            request_id = %header("x-amzn-requestid"),
            error_type = %header("x-amzn-errortype"),
            "api request"
        );
        resp
    }

    async fn route(
        &self,
        req: Request,
        request_id: &str,
        log: &mut AccessLog,
    ) -> Result<Response, Refused> {
        let inner = &*self.inner;
        let (mut parts, body) = req.into_parts();
        let first = inner.table.classify(&parts, None);
        // Who answers refusals, in which protocol, and how much body may be read.
        let (meta, protocol): (&'static ServiceMeta, Protocol) = match &first {
            Ok(r) => (inner.frontends[r.index].meta(), r.protocol),
            Err(u) => (&routes::UNROUTED, u.protocol()),
        };
        let refuse = |err: &AwsError| Refused(error_response(protocol, meta, err, request_id));
        let (limit, too_large) = match &first {
            Ok(r) => {
                let fe = &inner.frontends[r.index];
                let max = fe.body_limit(&parts);
                (max, fe.body_too_large(&parts, max))
            }
            Err(_) => {
                let max = inner.settings.form_limit;
                (max, default_too_large(max))
            }
        };
        let reader = BodyReader {
            limit,
            too_large: &too_large,
            timeout: inner.settings.body_read_timeout,
        };
        let query = parts.uri.query().unwrap_or("").to_owned();
        let mut buffered: Option<Bytes> = None;
        let mut body = Some(body);
        // Open without a signature: the health check, and what SNS hands to
        // subscribers as AWS does (its signing certificate, SubscribeURL,
        // UnsubscribeURL).
        let health = parts.method == Method::GET
            && (parts.uri.path() == "/_nimbus/health"
                || parts
                    .uri
                    .path()
                    .starts_with("/_nimbus/services/sns/public/"));
        let mut streaming = None;
        let mut signer = None;
        // A large S3 body whose declared SHA-256 is signed: hashed as it streams
        // to the front-end rather than buffered (see `check_sha256`).
        let mut hash_check = None;
        // S3's browser `POST` upload carries its signature in the form (the
        // front-end checks it through the `PostPolicyVerifier` it is given).
        let post_upload = first
            .as_ref()
            .is_ok_and(|r| r.protocol == Protocol::RestXml)
            && routes::is_post_upload(&parts)
            && !parts.headers.contains_key(http::header::AUTHORIZATION)
            && !query.contains("X-Amz-Credential");
        let mut policy_check = None;
        // A function instance's request is authenticated even with auth off.
        let instance = parts.extensions.remove::<peers::InstancePeer>();
        let verifier = match (&inner.auth.verifier, &instance) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => Some(&inner.auth.instance_verifier),
            (None, None) => None,
        };
        // STS's AssumeRoleWithWebIdentity is unsigned on AWS (its token is the
        // proof): let an unsigned STS form through as `Unsigned`, which STS
        // answers for that operation only.
        let mut web_identity = false;
        if verifier.is_some()
            && !health
            && !post_upload
            && !parts.headers.contains_key(http::header::AUTHORIZATION)
            && !query.contains("X-Amz-Credential")
            && match &first {
                Ok(r) => inner.frontends[r.index].meta().name == "sts",
                Err(u) => matches!(u, Unrecognised::NeedsBody),
            }
        {
            let form = if parts.method == Method::POST {
                let max = inner.settings.form_limit.min(limit);
                let small = BodyReader {
                    limit: max,
                    too_large: &default_too_large(max),
                    timeout: inner.settings.body_read_timeout,
                };
                let bytes = small
                    .read(&parts, body.take().expect("body unread"))
                    .await
                    .map_err(|e| refuse(&e))?;
                buffered = Some(bytes.clone());
                bytes
            } else {
                Bytes::new()
            };
            web_identity = form_urlencoded::parse(query.as_bytes())
                .chain(form_urlencoded::parse(&form))
                .filter(|(k, _)| k == "Action")
                .last()
                .is_some_and(|(_, v)| v == "AssumeRoleWithWebIdentity");
        }
        let (principal, scope) = match verifier {
            None => {
                // Unchecked, but a function's own key still says which function calls.
                let scope = nimbus_auth::parse_scope_unverified(&parts.headers, &query);
                let principal = scope
                    .as_ref()
                    .map(|s| inner.auth.principal(s))
                    .unwrap_or(Principal::Root);
                (principal, scope.map(|s| RequestScope::new(s, false)))
            }
            Some(_) if health => (Principal::Root, None),
            Some(_) if web_identity => {
                parts.extensions.insert(Unsigned);
                (Principal::Root, None)
            }
            Some(verifier) if post_upload => {
                policy_check = Some(nimbus_protocol::PostPolicyVerifier(Arc::new(PolicyCheck(
                    verifier.clone(),
                ))));
                (Principal::Root, None)
            }
            Some(verifier) => {
                let request = |parts, body| auth_request(parts, &query, body);
                let refuse_auth = |e: &AuthError| {
                    auth::log_refusal(e, &parts.method, parts.uri.path());
                    refuse(&auth_error(e, protocol))
                };
                // Without the body first: unknown keys and stale or malformed
                // signatures are refused before anything is read.
                let verified = match verifier.verify(&request(&parts, None)) {
                    Ok(v) if v.payload == Payload::Unsigned => v,
                    // aws-chunked bodies: only S3 (restXml) takes them; it checks
                    // the chunk signatures from the seed it finds in the extensions.
                    Ok(
                        v @ nimbus_auth::Verified {
                            payload: Payload::Streaming { .. },
                            ..
                        },
                    ) if protocol == Protocol::RestXml => {
                        streaming = Some(v.payload.clone());
                        signer = verifier.chunk_signer(&v);
                        v
                    }
                    Ok(nimbus_auth::Verified {
                        payload: Payload::Streaming { .. },
                        ..
                    }) => {
                        let e = AuthError::IncompleteSignature {
                            message: "Nimbus does not accept aws-chunked (STREAMING-*) payloads \
                                      for this API; send the body whole."
                                .into(),
                            presigned: false,
                        };
                        return Err(refuse_auth(&e));
                    }
                    // S3 object bodies with a declared hash stream; the hash is
                    // compared when the body ends.
                    Ok(
                        v @ nimbus_auth::Verified {
                            payload: Payload::Sha256 { checked: false, .. },
                            ..
                        },
                    ) if protocol == Protocol::RestXml
                        && limit > nimbus_protocol::DEFAULT_BODY_LIMIT =>
                    {
                        if let Payload::Sha256 { hex, .. } = &v.payload {
                            hash_check = Some(hex.clone());
                        }
                        v
                    }
                    // The signature covers the body's hash: read it and check again.
                    Ok(_) | Err(AuthError::BodyNotProvided) => {
                        let bytes = match buffered.take() {
                            Some(b) => b,
                            None => reader
                                .read(&parts, body.take().expect("body unread"))
                                .await
                                .map_err(|e| refuse(&e))?,
                        };
                        let v = verifier
                            .verify(&request(&parts, Some(&bytes)))
                            .map_err(|e| refuse_auth(&e))?;
                        buffered = Some(bytes);
                        v
                    }
                    Err(e) => return Err(refuse_auth(&e)),
                };
                let principal = inner.auth.principal(&verified.scope);
                // A presigned URL is a capability handed on on purpose (as on
                // AWS, whoever holds it may use it): only header signatures must
                // be the instance's own.
                if let Some(i) = instance.as_ref().filter(|_| !verified.presigned) {
                    peers::check(i, &principal, &verified.scope.access_key_id)
                        .map_err(|e| refuse_auth(&e))?;
                }
                (principal, Some(RequestScope::new(verified.scope, true)))
            }
        };

        // The front-end (reading a form's body when its `Action` is there).
        let route = match first {
            Ok(r) => r,
            Err(Unrecognised::NeedsBody) => {
                if buffered.is_none() {
                    let bytes = reader
                        .read(&parts, body.take().expect("body unread"))
                        .await
                        .map_err(|e| refuse(&e))?;
                    buffered = Some(bytes);
                }
                match inner.table.classify(&parts, buffered.as_deref()) {
                    Ok(r) => r,
                    Err(u) => return Err(unrecognised(&u, request_id)),
                }
            }
            Err(u) => return Err(unrecognised(&u, request_id)),
        };
        let fe = &inner.frontends[route.index];
        log.service = route.service;
        log.rule = route.rule.as_str();
        if let Some(az) = &inner.authorizer {
            self::authorize(
                &**az,
                &route,
                &parts,
                (&mut buffered, &mut body, &reader),
                (
                    &principal,
                    scope.as_ref(),
                    &inner.settings.region,
                    request_id,
                ),
            )
            .await
            .map_err(|e| Refused(error_response(route.protocol, fe.meta(), &e, request_id)))?;
        }
        let body = match (buffered, body) {
            (Some(bytes), _) => {
                // Read under another API's (or the form) limit: hold it to this one's.
                let max = fe.body_limit(&parts);
                if bytes.len() > max {
                    let e = fe.body_too_large(&parts, max);
                    return Err(Refused(error_response(
                        route.protocol,
                        fe.meta(),
                        &e,
                        request_id,
                    )));
                }
                Body::from(bytes)
            }
            (None, Some(body)) => {
                let body = server::deadline(body, inner.settings.body_read_timeout);
                match hash_check {
                    Some(claimed) => check_sha256(body, claimed),
                    None => body,
                }
            }
            (None, None) => Body::empty(),
        };
        let region = scope
            .as_ref()
            .map(|s| s.region.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| inner.settings.region.clone());
        parts.extensions.insert(EdgeContext {
            request_id: request_id.to_owned(),
            region,
            principal,
            protocol: route.protocol,
        });
        if let Some(s) = scope {
            parts.extensions.insert(s);
        }
        if let Some(p) = streaming {
            parts.extensions.insert(p);
        }
        if let Some(p) = policy_check {
            parts.extensions.insert(p);
        }
        let mut req = Request::from_parts(parts, body);
        // aws-chunked bodies (S3 only) are decoded as a stream here: every chunk
        // signature (when authentication is on) and the trailing checksum are
        // checked as the front-end reads, a failure ending the body with S3's error.
        if route.protocol == Protocol::RestXml {
            req = nimbus_protocol::decode_aws_chunked_request(req, signer).map_err(|e| {
                Refused(error_response(Protocol::RestXml, fe.meta(), &e, request_id))
            })?;
        }
        Ok(fe.call(req).await)
    }
}

/// Run the authorisation hook on a routed request, reading the body of JSON
/// and query APIs first when the authoriser wants the request.
async fn authorize(
    az: &dyn authz::Authorizer,
    route: &Route,
    parts: &Parts,
    (buffered, body, reader): (&mut Option<Bytes>, &mut Option<Body>, &BodyReader<'_>),
    (principal, scope, default_region, request_id): (&Principal, Option<&RequestScope>, &str, &str),
) -> Result<(), AwsError> {
    let verified = scope.is_some_and(|s| s.verified);
    if !az.wants(principal, verified) {
        return Ok(());
    }
    if buffered.is_none() && route.protocol != Protocol::RestXml {
        if let Some(b) = body.take() {
            *buffered = Some(reader.read(parts, b).await?);
        }
    }
    let region = scope
        .map(|s| s.region.as_str())
        .filter(|r| !r.is_empty())
        .unwrap_or(default_region);
    az.authorize(authz::AuthzRequest {
        service: route.service,
        protocol: route.protocol,
        parts,
        body: buffered.as_deref(),
        principal,
        access_key_id: scope.map(|s| s.access_key_id.as_str()),
        verified,
        region,
        peer: parts.extensions.get::<authz::PeerAddr>().map(|p| p.0),
        request_id,
    })
    .await
}

/// A body whose signed `x-amz-content-sha256` is compared with what streamed
/// through as it ends: a mismatch ends the body with S3's
/// `XAmzContentSHA256Mismatch` (the front-end, reading to the end before it
/// acknowledges anything, stores nothing).
fn check_sha256(body: Body, claimed: String) -> Body {
    use futures_util::StreamExt;
    use sha2::Digest;
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let stream = body.into_data_stream();
    let checked = futures_util::stream::unfold(
        (stream, Some(sha2::Sha256::new())),
        move |(mut stream, hasher)| {
            let claimed = claimed.clone();
            async move {
                let mut hasher = hasher?;
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        hasher.update(&chunk);
                        Some((Ok(chunk), (stream, Some(hasher))))
                    }
                    Some(Err(e)) => Some((Err(BoxError::from(e)), (stream, None))),
                    None => {
                        let computed = format!("{:x}", hasher.finalize());
                        if computed == claimed {
                            return None;
                        }
                        let e = AuthError::ContentSha256Mismatch {
                            claimed: claimed.clone(),
                            computed: computed.clone(),
                        };
                        let err = auth_error(&e, Protocol::RestXml)
                            .with_field("ClientComputedContentSHA256", claimed)
                            .with_field("S3ComputedContentSHA256", computed);
                        Some((Err(BoxError::from(err)), (stream, None)))
                    }
                }
            }
        },
    );
    Body::from_stream(checked)
}

/// The edge's keys, checking S3 `POST` upload policies for the front-end.
struct PolicyCheck(nimbus_auth::Verifier);

impl nimbus_protocol::PolicySignatureCheck for PolicyCheck {
    fn check(
        &self,
        credential: &str,
        policy: &str,
        signature: &str,
        security_token: Option<&str>,
    ) -> Result<Principal, AwsError> {
        self.0
            .verify_post_policy(credential, policy, signature, security_token)
            .map(|(_, principal)| principal)
            .map_err(|e| {
                auth::log_refusal(&e, &Method::POST, "POST upload policy");
                auth_error(&e, Protocol::RestXml)
            })
    }
}

/// The access-log fields learned while routing.
#[derive(Default)]
struct AccessLog {
    service: &'static str,
    rule: &'static str,
}

fn auth_request<'a>(
    parts: &'a Parts,
    query: &'a str,
    body: Option<&'a [u8]>,
) -> nimbus_auth::Request<'a> {
    nimbus_auth::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query,
        headers: &parts.headers,
        body,
    }
}

/// The answer to a request no front-end claims.
fn unrecognised(u: &Unrecognised, request_id: &str) -> Refused {
    Refused(error_response(
        u.protocol(),
        &routes::UNROUTED,
        &u.error(),
        request_id,
    ))
}

fn default_too_large(max: usize) -> AwsError {
    AwsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("Request must be smaller than {max} bytes"),
    )
}

/// An authentication failure as the protocol's services word it.
fn auth_error(e: &AuthError, protocol: Protocol) -> AwsError {
    let p = match protocol {
        Protocol::AwsQuery => nimbus_auth::Protocol::Query,
        Protocol::RestXml => nimbus_auth::Protocol::S3,
        Protocol::AwsJson10 | Protocol::AwsJson11 | Protocol::RestJson1 => {
            nimbus_auth::Protocol::Json
        }
    };
    AwsError::new(
        e.status_for(p),
        e.code_for(p),
        e.message_for(p).into_owned(),
    )
}

/// Reads a whole body, bounded in size and time.
struct BodyReader<'a> {
    limit: usize,
    too_large: &'a AwsError,
    timeout: std::time::Duration,
}

impl BodyReader<'_> {
    async fn read(&self, parts: &Parts, body: Body) -> Result<Bytes, AwsError> {
        // A body over the limit is drained (up to a cap) before the refusal, so
        // the client reads it.
        let read = nimbus_protocol::read_at_most(body, &parts.headers, self.limit);
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(AwsError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                format!(
                    "The request body was not received within {}s.",
                    self.timeout.as_secs_f64()
                ),
            )),
            Ok(Ok(Some(bytes))) => Ok(bytes),
            Ok(Ok(None)) => Err(self.too_large.clone()),
            Ok(Err(e)) => Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                format!("could not read request body: {e}"),
            )),
        }
    }
}

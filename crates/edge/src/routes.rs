//! The routing table: which front-end a request on the API port goes to.
//!
//! Every request goes to exactly one front-end, decided in this order (the first
//! rule that names a served API wins):
//!
//! 0. the path `/_nimbus/…` is the control API's (no AWS API uses it: a bucket
//!    name cannot hold `_`), and so is `/metrics` unless signed for S3 or sent to
//!    an S3 host (a bucket may be called `metrics`);
//! 1. the SigV4 credential scope's service (the `Authorization` header, or the
//!    `X-Amz-Credential` of a presigned URL). A signing name shared by several
//!    APIs is told apart by the rules below: `ses` is SES v1 (awsQuery, `Action`)
//!    or SES v2 (restJson1, `/v2/email/…`); `dynamodb` is DynamoDB or DynamoDB
//!    Streams by `X-Amz-Target` prefix;
//! 2. the `X-Amz-Target` prefix (before the `.`): the JSON protocols. An API
//!    speaking both awsJson and awsQuery (SQS) answers in the one the request
//!    used;
//! 3. the form `Action` + `Version` (a `POST` of
//!    `application/x-www-form-urlencoded`, whose body the edge buffers, bounded,
//!    and hands on; or `?Action=` in the query string): awsQuery, by `Version`;
//! 4. the `Host`: S3's virtual-host style (`bucket.localhost`,
//!    `bucket.s3.localhost`, `bucket.s3.<region>.amazonaws.com`) and its
//!    path-style endpoints (`s3.<region>.amazonaws.com`, `s3.localhost`);
//! 5. the path ([`PATH_RULES`]): Lambda's dated REST prefixes, SES v2's
//!    `/v2/email/`.
//!
//! The table is built from each front-end's [`ServiceMeta`] (signing name,
//! target prefix, API version, protocols) plus [`PATH_RULES`] and the host rule.
//! A request no front-end claims is [`Unrecognised`], which says what was not
//! recognised and answers in the protocol the request spoke.

use http::request::Parts;
use http::{header, Method, StatusCode};
use nimbus_protocol::{AwsError, Protocol, ServiceMeta};

/// Path prefixes that name an API (checked last, after the scope, target, action
/// and host), by [`ServiceMeta::name`].
pub const PATH_RULES: &[(&str, &str)] = &[
    // Lambda's REST API: every binding in its model starts with one of these.
    ("/2014-11-13/", "lambda"),
    ("/2015-03-31/", "lambda"),
    ("/2016-08-19/", "lambda"),
    ("/2017-03-31/", "lambda"),
    ("/2017-10-31/", "lambda"),
    ("/2018-10-31/", "lambda"),
    ("/2019-09-25/", "lambda"),
    ("/2019-09-30/", "lambda"),
    ("/2020-04-22/", "lambda"),
    ("/2020-06-30/", "lambda"),
    ("/2021-07-20/", "lambda"),
    ("/2021-10-31/", "lambda"),
    ("/2021-11-15/", "lambda"),
    ("/2024-08-31/", "lambda"),
    // SES v2 (restJson1); SES v1 is awsQuery on `/`.
    ("/v2/email/", "sesv2"),
];

/// The control API's path prefix, claimed before anything else.
pub const CONTROL_PREFIX: &str = "/_nimbus/";
/// Prometheus metrics, the control API's outside `/_nimbus/`.
pub const METRICS: &str = "/metrics";
/// [`ServiceMeta::name`] of the control API.
pub const CONTROL: &str = "nimbus";
/// [`ServiceMeta::name`] the `Host` rule sends S3-style hosts to.
pub const S3: &str = "s3";

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index of the front-end in the table (the order it was given in).
    pub index: usize,
    /// The front-end's [`ServiceMeta::name`].
    pub service: &'static str,
    /// The protocol the request speaks (and its answer uses).
    pub protocol: Protocol,
    /// Which rule decided.
    pub rule: Rule,
}

/// The rule that routed a request (for the access log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Control,
    Scope,
    Target,
    Action,
    Host,
    Path,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Control => "control",
            Rule::Scope => "scope",
            Rule::Target => "target",
            Rule::Action => "action",
            Rule::Host => "host",
            Rule::Path => "path",
        }
    }
}

/// A request no front-end claims (or one that cannot be told yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrecognised {
    /// A form `POST` whose `Action` is in the body: call again with the body.
    #[error("the form body is needed to route this request")]
    NeedsBody,
    /// `X-Amz-Target` names no API Nimbus serves.
    #[error("no API Nimbus serves has the X-Amz-Target prefix of {target:?}")]
    Target { target: String },
    /// `Action` (with `Version`) names no API Nimbus serves.
    #[error("no API Nimbus serves has the Action {action:?} (Version {version:?})")]
    Action {
        action: String,
        version: Option<String>,
    },
    /// Nothing about the request names an API Nimbus serves.
    #[error("Nimbus does not implement {method} {path}")]
    NoRoute {
        method: String,
        path: String,
        /// The SigV4 scope's service, when signed.
        service: Option<String>,
    },
}

/// What a request refused before it reaches a front-end is answered as.
pub(crate) const UNROUTED: ServiceMeta = ServiceMeta {
    name: "nimbus",
    signing_name: "nimbus",
    endpoint_prefix: "nimbus",
    api_version: "",
    protocol: Protocol::RestJson1,
    protocols: &[Protocol::RestJson1],
    target_prefix: None,
    xml_namespace: None,
    query_compatible: false,
};

impl Unrecognised {
    /// The protocol the request spoke, for its error.
    pub fn protocol(&self) -> Protocol {
        match self {
            Unrecognised::Target { .. } => Protocol::AwsJson11,
            Unrecognised::NeedsBody | Unrecognised::Action { .. } => Protocol::AwsQuery,
            Unrecognised::NoRoute { .. } => Protocol::RestJson1,
        }
    }

    /// The AWS-shaped error naming what was not recognised.
    pub fn error(&self) -> AwsError {
        match self {
            Unrecognised::Target { target } => AwsError::new(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!(
                    "Nimbus serves no API with the X-Amz-Target prefix {:?} (target {target:?})",
                    target.split('.').next().unwrap_or("")
                ),
            ),
            Unrecognised::Action { action, version } => AwsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                match version {
                    Some(v) => format!(
                        "The action {action} is not valid for this web service: Nimbus serves \
                         no API of version {v}."
                    ),
                    None => format!(
                        "The action {action} is not valid for this web service: the request \
                         has no Version."
                    ),
                },
            ),
            Unrecognised::NoRoute {
                method,
                path,
                service,
            } => AwsError::new(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                match service {
                    Some(s) => format!(
                        "Nimbus does not implement {method} {path} (signed for service {s:?})"
                    ),
                    None => format!("Nimbus does not implement {method} {path}"),
                },
            ),
            Unrecognised::NeedsBody => AwsError::new(
                StatusCode::BAD_REQUEST,
                "MissingAction",
                "The request must contain the parameter Action.",
            ),
        }
    }
}

/// The routing table over the served APIs' [`ServiceMeta`]s.
#[derive(Debug, Clone)]
pub struct Table {
    metas: Vec<&'static ServiceMeta>,
}

impl Table {
    /// A table over these APIs, in this order (a [`Route::index`] is a position
    /// here). Two APIs with the same name are a programming error.
    pub fn new(metas: Vec<&'static ServiceMeta>) -> Self {
        for (i, m) in metas.iter().enumerate() {
            assert!(
                metas[..i].iter().all(|o| o.name != m.name),
                "service {} registered twice",
                m.name
            );
        }
        Self { metas }
    }

    /// The APIs, in order.
    pub fn metas(&self) -> &[&'static ServiceMeta] {
        &self.metas
    }

    fn route(&self, index: usize, protocol: Protocol, rule: Rule) -> Route {
        Route {
            index,
            service: self.metas[index].name,
            protocol,
            rule,
        }
    }

    fn by_name(&self, name: &str) -> Option<usize> {
        self.metas.iter().position(|m| m.name == name)
    }

    /// Route a request from its head and, for a form `POST` whose `Action` is in
    /// the body, its (buffered) body. Pure: no I/O, no authentication.
    pub fn classify(&self, parts: &Parts, body: Option<&[u8]>) -> Result<Route, Unrecognised> {
        let path = parts.uri.path();
        let target = header_str(parts, "x-amz-target");
        let query = parts.uri.query().unwrap_or("");
        let scope = signing_service(parts, query);
        // `/metrics` too, whatever it is signed for (the CLI signs it `lambda`),
        // unless it is S3's bucket of that name.
        let control = path.starts_with(CONTROL_PREFIX)
            || path == CONTROL_PREFIX.trim_end_matches('/')
            || (path == METRICS && scope.as_deref() != Some(S3) && !is_s3_host(host(parts)));
        if control {
            if let Some(i) = self.by_name(CONTROL) {
                return Ok(self.route(i, Protocol::RestJson1, Rule::Control));
            }
        }
        let form = is_form_post(parts);
        // `Action`/`Version` from the query string, then the form body (the
        // body's win, as AWS reads them).
        let mut action = param(query, "Action");
        let mut version = param(query, "Version");
        if form {
            if let Some(b) = body {
                action = param_bytes(b, "Action").or(action);
                version = param_bytes(b, "Version").or(version);
            }
        }

        // 1. The credential scope.
        if let Some(service) = scope.as_deref() {
            let candidates: Vec<usize> = (0..self.metas.len())
                .filter(|&i| self.metas[i].signing_name == service)
                .collect();
            if !candidates.is_empty() {
                if let Some(r) = self.among(&candidates, parts, target, action.as_deref(), form) {
                    return r.map(|(i, p)| self.route(i, p, Rule::Scope));
                }
            }
        }
        // 2. X-Amz-Target.
        if let Some(t) = target {
            return match self.by_target(t) {
                Some((i, p)) => Ok(self.route(i, p, Rule::Target)),
                None => Err(Unrecognised::Target {
                    target: t.to_owned(),
                }),
            };
        }
        // 3. Action + Version.
        if form && action.is_none() && body.is_none() {
            return Err(Unrecognised::NeedsBody);
        }
        if let Some(a) = action {
            let found = self.metas.iter().position(|m| {
                m.protocols.contains(&Protocol::AwsQuery)
                    && version.as_deref() == Some(m.api_version)
            });
            return match found {
                Some(i) => Ok(self.route(i, Protocol::AwsQuery, Rule::Action)),
                None => Err(Unrecognised::Action { action: a, version }),
            };
        }
        // 4. Host (S3), and S3's browser `POST` uploads on a path-style host.
        if is_s3_host(host(parts)) || is_post_upload(parts) {
            if let Some(i) = self.by_name(S3) {
                return Ok(self.route(i, Protocol::RestXml, Rule::Host));
            }
        }
        // 5. Path.
        for (prefix, name) in PATH_RULES {
            let hit = if prefix.ends_with('/') {
                path.starts_with(prefix)
            } else {
                path == *prefix
            };
            if hit {
                if let Some(i) = self.by_name(name) {
                    return Ok(self.route(i, self.metas[i].protocol, Rule::Path));
                }
            }
        }
        Err(Unrecognised::NoRoute {
            method: parts.method.to_string(),
            path: path.to_owned(),
            service: scope,
        })
    }

    /// The API among `candidates` (sharing a signing name) a request is for, and
    /// its protocol; `None` when none of them fits (the other rules decide).
    fn among(
        &self,
        candidates: &[usize],
        parts: &Parts,
        target: Option<&str>,
        action: Option<&str>,
        form: bool,
    ) -> Option<Result<(usize, Protocol), Unrecognised>> {
        if let Some(t) = target {
            let prefix = t.split('.').next().unwrap_or("");
            let hit = candidates
                .iter()
                .find(|&&i| self.metas[i].target_prefix == Some(prefix));
            return match hit {
                Some(&i) => Some(Ok((i, json_protocol(self.metas[i])))),
                // Signed for this API with a target none of its APIs has.
                None if candidates
                    .iter()
                    .any(|&i| self.metas[i].target_prefix.is_some()) =>
                {
                    Some(Err(Unrecognised::Target {
                        target: t.to_owned(),
                    }))
                }
                None => None,
            };
        }
        // A form or an `Action`: the candidate speaking awsQuery (SES v1, SQS).
        if action.is_some() || form {
            if let Some(&i) = candidates
                .iter()
                .find(|&&i| self.metas[i].protocols.contains(&Protocol::AwsQuery))
            {
                return Some(Ok((i, Protocol::AwsQuery)));
            }
        }
        // Several REST APIs under one name: the path rules tell them apart (SES v2).
        let path = parts.uri.path();
        for (prefix, name) in PATH_RULES {
            if prefix.ends_with('/') && path.starts_with(prefix) {
                if let Some(&i) = candidates.iter().find(|&&i| self.metas[i].name == *name) {
                    return Some(Ok((i, self.metas[i].protocol)));
                }
            }
        }
        // Otherwise the one whose own protocol is not awsQuery (S3, Lambda), else
        // the first.
        let i = candidates
            .iter()
            .copied()
            .find(|&i| self.metas[i].protocol != Protocol::AwsQuery)
            .unwrap_or(candidates[0]);
        Some(Ok((i, self.metas[i].protocol)))
    }

    fn by_target(&self, target: &str) -> Option<(usize, Protocol)> {
        let prefix = target.split('.').next().unwrap_or("");
        self.metas
            .iter()
            .position(|m| m.target_prefix == Some(prefix))
            .map(|i| (i, json_protocol(self.metas[i])))
    }
}

/// The awsJson protocol an API speaks (SQS: 1.0, next to awsQuery).
fn json_protocol(meta: &ServiceMeta) -> Protocol {
    meta.protocols
        .iter()
        .copied()
        .find(|p| matches!(p, Protocol::AwsJson10 | Protocol::AwsJson11))
        .unwrap_or(meta.protocol)
}

fn header_str<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A `POST` of a form: its body holds `Action=…`.
fn is_form_post(parts: &Parts) -> bool {
    parts.method == Method::POST
        && header_str(parts, header::CONTENT_TYPE.as_str()).is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// S3's browser `POST` upload (POST Object): a `multipart/form-data` `POST` to
/// `/<bucket>` (or `/<bucket>/`), its credentials in the form rather than in
/// headers. No other API Nimbus serves posts forms there.
pub fn is_post_upload(parts: &Parts) -> bool {
    let bucket = parts.uri.path().trim_start_matches('/');
    let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
    parts.method == Method::POST
        && !bucket.is_empty()
        && !bucket.contains('/')
        && header_str(parts, header::CONTENT_TYPE.as_str()).is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The signing name of the request's credential scope (header or presigned).
pub fn signing_service(parts: &Parts, query: &str) -> Option<String> {
    nimbus_auth::parse_scope_unverified(&parts.headers, query)
        .map(|s| s.service)
        .filter(|s| !s.is_empty())
}

fn param(query: &str, name: &str) -> Option<String> {
    param_bytes(query.as_bytes(), name)
}

fn param_bytes(form: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(form)
        .filter(|(k, _)| k == name)
        .last()
        .map(|(_, v)| v.into_owned())
}

/// The request's host without the port (`Host`, else the URI's authority).
fn host(parts: &Parts) -> &str {
    let h = header_str(parts, header::HOST.as_str())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    // `[::1]:4566`, `localhost:4566`.
    match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => h,
    }
}

/// S3's hosts: virtual-host style `bucket.localhost`, `bucket.s3.localhost`,
/// `bucket.s3.<region>.amazonaws.com`, `bucket.s3.amazonaws.com`, and the
/// path-style endpoints `s3.localhost`, `s3.<region>.amazonaws.com`,
/// `s3.amazonaws.com` (also with the legacy `s3-<region>` form).
pub fn is_s3_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = host.strip_suffix(".amazonaws.com") {
        // …s3, …s3.<region>, …s3-<region>, with or without a bucket in front.
        let labels: Vec<&str> = rest.split('.').collect();
        return labels
            .iter()
            .any(|l| *l == "s3" || l.starts_with("s3-") || *l == "s3-external-1");
    }
    if let Some(rest) = host.strip_suffix(".localhost") {
        // `bucket.localhost`, `bucket.s3.localhost`, `s3.localhost`.
        return !rest.is_empty() && rest.split('.').all(|l| !l.is_empty());
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_hosts() {
        for h in [
            "bucket.localhost",
            "my.bucket.s3.localhost",
            "s3.localhost",
            "bucket.s3.us-east-1.amazonaws.com",
            "s3.eu-west-1.amazonaws.com",
            "bucket.s3.amazonaws.com",
            "s3.amazonaws.com",
        ] {
            assert!(is_s3_host(h), "{h}");
        }
        for h in [
            "localhost",
            "127.0.0.1",
            "sqs.us-east-1.amazonaws.com",
            "lambda.us-east-1.amazonaws.com",
            "example.com",
            ".localhost",
        ] {
            assert!(!is_s3_host(h), "{h}");
        }
    }

    #[test]
    fn browser_post_uploads_are_s3s() {
        let parts = |method: &str, path: &str, ct: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "127.0.0.1:4566")
                .header("content-type", ct)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let form = "multipart/form-data; boundary=x";
        assert!(is_post_upload(&parts("POST", "/bucket", form)));
        assert!(is_post_upload(&parts("POST", "/bucket/", form)));
        assert!(!is_post_upload(&parts("POST", "/bucket/key", form)));
        assert!(!is_post_upload(&parts("POST", "/", form)));
        assert!(!is_post_upload(&parts("PUT", "/bucket", form)));
        assert!(!is_post_upload(&parts(
            "POST",
            "/bucket",
            "application/x-www-form-urlencoded"
        )));
    }

    #[test]
    fn hosts_lose_their_port() {
        let parts = |h: &str| {
            http::Request::builder()
                .uri("/")
                .header("host", h)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        assert_eq!(host(&parts("bucket.localhost:4566")), "bucket.localhost");
        assert_eq!(host(&parts("[::1]:4566")), "[::1]");
        assert_eq!(host(&parts("localhost")), "localhost");
    }
}

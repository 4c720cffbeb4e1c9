//! The AWS STS front-end, on the query protocol: `Action=…&Version=2011-06-15` as
//! a form POST (or a GET query), answered in XML.
//!
//! The edge sends a request here when its SigV4 scope names `sts` or its `Action`
//! and `Version` are STS's ([`META`]), with the form body already read.
//! [`Operation`] lists every STS operation; the ones Nimbus does not implement
//! answer `501 InvalidAction` naming themselves, unknown ones AWS's
//! `400 InvalidAction`. Every error leaves through [`QueryError`], a thin wrapper
//! over [`nimbus_protocol::error_response`] in awsQuery's XML `ErrorResponse` shape.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use nimbus_core::{Principal, ACCOUNT_ID};
use nimbus_protocol::{AwsError, EdgeContext, Frontend, Protocol, ResponseFuture, ServiceMeta};
use nimbus_svc_iam::Iam;
use sha2::Digest;
use std::sync::Arc;

pub mod oidc;
mod session;

/// The only STS API version.
const VERSION: &str = "2011-06-15";
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// STS on the wire (botocore's `sts/2011-06-15/service-2.json` metadata).
pub const META: ServiceMeta = ServiceMeta {
    name: "sts",
    signing_name: "sts",
    endpoint_prefix: "sts",
    api_version: VERSION,
    protocol: Protocol::AwsQuery,
    protocols: &[Protocol::AwsQuery],
    target_prefix: None,
    xml_namespace: Some(XMLNS),
    query_compatible: false,
};

/// Largest STS request (policies and SAML assertions are the big ones).
const BODY_MAX: usize = 1024 * 1024;

struct Sts {
    iam: Option<Iam>,
    oidc: Arc<oidc::Verifier>,
}

/// The STS front-end without IAM: `GetCallerIdentity` only.
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(Sts {
        iam: None,
        oidc: Arc::new(oidc::Verifier::new(vec![], vec![])),
    })
}

/// The STS front-end over IAM: roles to assume, sessions registered in IAM's
/// key ring and store; web identity tokens of IAM's configured OIDC issuers.
pub fn frontend_with(iam: Iam) -> Arc<dyn Frontend> {
    let oidc = Arc::new(oidc::Verifier::new(
        iam.oidc_issuers.clone(),
        iam.oidc_audiences.clone(),
    ));
    Arc::new(Sts {
        iam: Some(iam),
        oidc,
    })
}

impl Frontend for Sts {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let iam = self.iam.clone();
        let oidc = self.oidc.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let key = parts
                .extensions
                .get::<nimbus_edge::RequestScope>()
                .map(|s| s.access_key_id.clone());
            let ctx = parts.extensions.get::<EdgeContext>().cloned();
            let unsigned = parts.extensions.get::<nimbus_edge::Unsigned>().is_some();
            let body = match axum::body::to_bytes(body, BODY_MAX).await {
                Ok(b) => b,
                Err(e) => {
                    return QueryError::new(
                        StatusCode::BAD_REQUEST,
                        "MalformedInput",
                        format!("could not read the request body: {e}"),
                    )
                    .into_response()
                }
            };
            let principal = ctx.map(|c| c.principal).unwrap_or(Principal::Root);
            let caller = Caller {
                principal,
                access_key_id: key,
                iam,
                unsigned,
                oidc,
                runtime: tokio::runtime::Handle::current(),
            };
            match tokio::task::spawn_blocking(move || {
                query_api(&caller, parts.method, parts.headers, parts.uri, body)
            })
            .await
            {
                Ok(r) => r,
                Err(_) => QueryError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    "The request processing has failed.",
                )
                .into_response(),
            }
        })
    }

    fn body_limit(&self, _parts: &http::request::Parts) -> usize {
        BODY_MAX
    }
}

/// Every operation of the STS API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    AssumeRole,
    AssumeRoleWithSaml,
    AssumeRoleWithWebIdentity,
    AssumeRoot,
    DecodeAuthorizationMessage,
    GetAccessKeyInfo,
    GetCallerIdentity,
    GetFederationToken,
    GetSessionToken,
}

impl Operation {
    const ALL: [Operation; 9] = [
        Operation::AssumeRole,
        Operation::AssumeRoleWithSaml,
        Operation::AssumeRoleWithWebIdentity,
        Operation::AssumeRoot,
        Operation::DecodeAuthorizationMessage,
        Operation::GetAccessKeyInfo,
        Operation::GetCallerIdentity,
        Operation::GetFederationToken,
        Operation::GetSessionToken,
    ];

    /// The `Action` name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::AssumeRole => "AssumeRole",
            Operation::AssumeRoleWithSaml => "AssumeRoleWithSAML",
            Operation::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentity",
            Operation::AssumeRoot => "AssumeRoot",
            Operation::DecodeAuthorizationMessage => "DecodeAuthorizationMessage",
            Operation::GetAccessKeyInfo => "GetAccessKeyInfo",
            Operation::GetCallerIdentity => "GetCallerIdentity",
            Operation::GetFederationToken => "GetFederationToken",
            Operation::GetSessionToken => "GetSessionToken",
        }
    }

    pub fn parse(action: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == action)
    }
}

/// A query-protocol error: status, `<Code>`, `<Message>`, in STS's XML shape.
#[derive(Debug, Clone)]
pub struct QueryError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl QueryError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let err = AwsError::new(self.status, self.code, self.message);
        let request_id = nimbus_core::new_request_id();
        nimbus_protocol::error_response(Protocol::AwsQuery, &META, &err, &request_id)
    }
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Who calls, and IAM if the server has it.
struct Caller {
    principal: Principal,
    access_key_id: Option<String>,
    iam: Option<Iam>,
    /// The edge let the request through unsigned (authentication on): only
    /// `AssumeRoleWithWebIdentity` may be asked that way.
    unsigned: bool,
    oidc: Arc<oidc::Verifier>,
    /// To wait, from the blocking handler, for an issuer's keys to be fetched.
    runtime: tokio::runtime::Handle,
}

/// One STS request: its `Action` from the query string or the form body.
fn query_api(
    caller: &Caller,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut params: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let form = match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        Some(Ok(ct)) => ct.starts_with("application/x-www-form-urlencoded"),
        Some(Err(_)) => false,
        None => true,
    };
    if method == Method::POST && form {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let action = param("Action");
    let operation = action.and_then(Operation::parse);
    let Some(action) = action else {
        return QueryError::new(StatusCode::BAD_REQUEST, "MissingAction", "Missing Action")
            .into_response();
    };
    let version = param("Version").unwrap_or(VERSION);
    let (Some(operation), VERSION) = (operation, version) else {
        return QueryError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        )
        .into_response();
    };
    if caller.unsigned && operation != Operation::AssumeRoleWithWebIdentity {
        return QueryError::new(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
        .into_response();
    }
    let iam = caller.iam.as_ref();
    let result = match (operation, iam) {
        (Operation::GetCallerIdentity, _) => return get_caller_identity(caller),
        (Operation::AssumeRole, Some(iam)) => session::assume_role(iam, caller, &param),
        (Operation::AssumeRoleWithWebIdentity, Some(iam)) => {
            session::assume_role_with_web_identity(iam, caller, &param)
        }
        (Operation::GetSessionToken, Some(iam)) => session::get_session_token(iam, caller, &param),
        (Operation::GetFederationToken, Some(iam)) => {
            session::get_federation_token(iam, caller, &param)
        }
        (Operation::GetAccessKeyInfo, _) => session::get_access_key_info(&param),
        _ => Err(QueryError::new(
            StatusCode::NOT_IMPLEMENTED,
            "InvalidAction",
            format!(
                "Nimbus does not implement the STS operation {}.",
                operation.name()
            ),
        )),
    };
    match result {
        Ok((body, request_id)) => xml_response(StatusCode::OK, body, &request_id),
        Err(e) => e.into_response(),
    }
}

/// The caller's ARN and id, as AWS gives them: the account root is
/// `arn:aws:iam::<account>:root` with the account id as its user id; an IAM user
/// is `arn:aws:iam::<account>:user/<name>` with a stable `AIDA…` id; a function
/// is `arn:aws:sts::<account>:assumed-role/<role>/<function>` with the user id
/// `<role id>:<function>`.
fn get_caller_identity(caller: &Caller) -> Response {
    let principal = &caller.principal;
    let arn = principal.arn();
    let iam = caller.iam.as_ref();
    let user_id = match principal {
        Principal::Root => ACCOUNT_ID.to_owned(),
        Principal::User(name) => iam
            .and_then(|i| i.store.user(name))
            .map(|u| u.id)
            .unwrap_or_else(|| user_id(name)),
        Principal::AssumedRole { role, session } => {
            let id = iam
                .and_then(|i| i.store.role(role))
                .map(|r| r.id)
                .unwrap_or_else(|| nimbus_auth::role_id(role));
            format!("{id}:{session}")
        }
        Principal::FederatedUser { name, .. } => format!("{ACCOUNT_ID}:{name}"),
    };
    let request_id = nimbus_core::new_request_id();
    let body = format!(
        "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    \
         <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{ACCOUNT_ID}</Account>\n  \
         </GetCallerIdentityResult>\n  <ResponseMetadata>\n    \
         <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n\
         </GetCallerIdentityResponse>\n",
        xml_escape(&arn),
        xml_escape(&user_id)
    );
    xml_response(StatusCode::OK, body, &request_id)
}

/// IAM's unique id of a user: `AIDA` and 17 upper-case characters, here derived
/// from the name so it is stable across restarts.
fn user_id(name: &str) -> String {
    let digest = sha2::Sha256::digest(format!("nimbus-iam-user:{name}").as_bytes());
    let mut id = String::from("AIDA");
    id.push_str(&hex::encode_upper(digest)[..17]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_their_names() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.name()), Some(op));
        }
        assert_eq!(Operation::parse("getcalleridentity"), None);
    }

    #[test]
    fn user_ids_look_like_iam_ones() {
        let id = user_id("alice");
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("AIDA"));
        assert_eq!(id, user_id("alice"));
        assert_ne!(id, user_id("bob"));
    }

    #[test]
    fn messages_are_escaped() {
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}

//! AWS STS on the query protocol: `Action=…&Version=2011-06-15` as a form POST
//! (or a GET query) to `/`, answered in XML.
//!
//! `/` is where every query-protocol service lives, so a request there is STS's
//! when its SigV4 scope names `sts` or its `Action` is an STS operation.
//! [`Operation`] lists every STS operation; the ones Nimbus does not implement
//! answer `501 InvalidAction` naming themselves, unknown ones AWS's
//! `400 InvalidAction`. Errors here, and the authentication failures of requests
//! to `/`, leave through [`QueryError`] in STS's XML `ErrorResponse` shape.

use crate::auth::{Principal, RequestScope};
use crate::AppState;
use axum::extract::Extension;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use nimbus_core::ACCOUNT_ID;
use sha2::Digest;

/// The only STS API version.
const VERSION: &str = "2011-06-15";
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(query_api).post(query_api))
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
        // `Sender` for the client's faults, `Receiver` for ours, as AWS writes it.
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let request_id = nimbus_core::new_request_id();
        let body = format!(
            "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
             <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
             <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            self.code,
            xml_escape(&self.message)
        );
        xml_response(self.status, body, &request_id)
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

/// `/`: STS when the scope or the action says so; anything else there is not
/// an operation Nimbus knows.
async fn query_api(
    scope: Option<Extension<RequestScope>>,
    principal: Option<Extension<Principal>>,
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
    let service = scope.as_ref().map(|s| s.service.as_str());
    let operation = action.and_then(Operation::parse);
    if service != Some("sts") && operation.is_none() {
        return match action {
            Some(a) => QueryError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!("The action {a} is not valid for this web service."),
            )
            .into_response(),
            None => crate::error::unknown_operation(method, uri)
                .await
                .into_response(),
        };
    }
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
    let principal = principal.map(|p| p.0).unwrap_or(Principal::Root);
    match operation {
        Operation::GetCallerIdentity => get_caller_identity(&principal),
        other => QueryError::new(
            StatusCode::NOT_IMPLEMENTED,
            "InvalidAction",
            format!(
                "Nimbus does not implement the STS operation {}.",
                other.name()
            ),
        )
        .into_response(),
    }
}

/// The caller's ARN and id, as AWS gives them: the account root is
/// `arn:aws:iam::<account>:root` with the account id as its user id; an IAM user
/// is `arn:aws:iam::<account>:user/<name>` with a stable `AIDA…` id.
fn get_caller_identity(principal: &Principal) -> Response {
    let (arn, user_id) = match principal {
        Principal::Root => (
            format!("arn:aws:iam::{ACCOUNT_ID}:root"),
            ACCOUNT_ID.to_owned(),
        ),
        Principal::User(name) => (
            format!("arn:aws:iam::{ACCOUNT_ID}:user/{name}"),
            user_id(name),
        ),
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

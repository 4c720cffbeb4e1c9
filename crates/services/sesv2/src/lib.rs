//! Nimbus's Amazon SES v2 front-end (email, restJson1 under `/v2/email/`): the
//! API's exhaustive operation table, generated from the AWS API model by
//! `scripts/gen-ops.py` ([`ops`]), and the front-end the edge routes SES v2
//! requests to.
//!
//! The operations arrive with issue 17; until then every operation answers `501
//! NotImplemented` naming itself, a path no operation has answers `404
//! UnknownOperationException`, and a method a path does not take `405`.

pub mod ops;

pub use ops::{Op, META};

use nimbus_protocol::Frontend;
use nimbus_svc_common::PendingFrontend;
use std::sync::Arc;

/// The front-end the edge registers for SES v2.
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(PendingFrontend::<Op>::new())
}

/// Start the service: what the server calls once at start.
pub fn start(
    _ctx: &nimbus_svc_common::ServiceContext,
) -> Result<nimbus_svc_common::Service, nimbus_svc_common::StartError> {
    Ok(nimbus_svc_common::Service::frontend_only(frontend()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};
    use nimbus_protocol::Protocol;
    use nimbus_svc_common::testing::{answer, rest_request, REQUEST_ID};

    async fn call(method: &str, uri: &str) -> (u16, HeaderMap, serde_json::Value) {
        let req = rest_request(Protocol::RestJson1, method, uri, &[]);
        let (status, headers, body) = answer(&*frontend(), req).await;
        assert_eq!(headers["x-amzn-requestid"], REQUEST_ID);
        assert_eq!(headers["content-type"], "application/json");
        (
            status.as_u16(),
            headers,
            serde_json::from_str(&body).unwrap(),
        )
    }

    #[tokio::test]
    async fn operations_answer_not_implemented_naming_themselves() {
        for (method, uri, want) in [
            ("POST", "/v2/email/outbound-emails", "SendEmail"),
            ("GET", "/v2/email/account", "GetAccount"),
            ("GET", "/v2/email/identities", "ListEmailIdentities"),
            (
                "GET",
                "/v2/email/identities/a%40example.com",
                "GetEmailIdentity",
            ),
            // A literal segment wins over a label in the same place.
            (
                "POST",
                "/v2/email/contact-lists/l/contacts/list",
                "ListContacts",
            ),
            (
                "GET",
                "/v2/email/contact-lists/l/contacts/a%40b.c",
                "GetContact",
            ),
        ] {
            let (status, headers, body) = call(method, uri).await;
            assert_eq!(status, 501, "{method} {uri}: {body}");
            assert_eq!(headers["x-amzn-errortype"], "NotImplemented");
            let message = body["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("sesv2 operation {want} ")),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_rest_errors() {
        let (status, headers, _) = call("GET", "/v2/email/no-such-thing").await;
        assert_eq!(status, 404);
        assert_eq!(headers["x-amzn-errortype"], "UnknownOperationException");
        let (status, headers, _) = call("DELETE", "/v2/email/outbound-emails").await;
        assert_eq!(status, 405);
        assert_eq!(headers["x-amzn-errortype"], "MethodNotAllowedException");
    }

    #[test]
    fn every_operation_is_recognised_by_its_own_binding() {
        for op in Op::ALL {
            let (method, uri) = op.binding();
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            let path: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let mut query = query.to_string();
            for q in op.rest().query {
                query.push_str(&format!("&{q}=1"));
            }
            let got = Op::recognise(&method, &path, Some(&query), &HeaderMap::new());
            assert_eq!(got, Some(*op), "{method} {path}?{query}");
        }
        assert_eq!(Method::POST, Op::SendEmail.binding().0);
    }

    /// Real requests captured from botocore and the JS SDK v3. The JS SDK's newer
    /// model sends ListEmailIdentities as `POST /v2/email/list-identities`, which
    /// botocore 1.35's model (this table's) does not have.
    #[tokio::test]
    async fn captured_sdk_requests_decode_to_their_operation() {
        nimbus_svc_common::testing::assert_captured_requests_decode(
            &*frontend(),
            &[("jssdk-sesv2-ListEmailIdentities.http", 404)],
        )
        .await;
    }
}

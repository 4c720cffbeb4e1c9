//! Nimbus's AWS IAM (users, roles and policies) front-end: the API's exhaustive operation table, generated
//! from the AWS API model by `scripts/gen-ops.py` ([`ops`]), and the front-end the
//! edge routes the API's requests to (awsQuery).
//!
//! The operations arrive with issue 19; until then every operation answers its
//! protocol's `501 NotImplemented` naming itself, and a request naming no
//! operation of the API gets the protocol's own unknown-operation error.

pub mod ops;

pub use ops::{Op, META};

use nimbus_protocol::Frontend;
use nimbus_svc_common::PendingFrontend;
use std::sync::Arc;

/// The front-end the edge registers for this API.
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(PendingFrontend::<Op>::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_protocol::Protocol;
    use nimbus_svc_common::testing::{answer, query_request, REQUEST_ID};

    #[tokio::test]
    async fn every_operation_answers_not_implemented_naming_itself() {
        let fe = frontend();
        for op in Op::ALL {
            assert_eq!(Op::from_action(op.name()), Some(*op));
            let body = format!("Action={}&Version={}", op.name(), META.api_version);
            let req = query_request(Some(Protocol::AwsQuery), "/", &body);
            let (status, headers, body) = answer(&*fe, req).await;
            assert_eq!(status, 501, "{op:?}: {body}");
            assert_eq!(headers["content-type"], "text/xml");
            assert!(body.contains("<Code>NotImplemented</Code>"), "{body}");
            assert!(
                body.contains(&format!("operation {} yet", op.name())),
                "{body}"
            );
            assert!(
                body.contains(&format!("<RequestId>{REQUEST_ID}</RequestId>")),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_or_missing_action_is_the_protocols_error() {
        let fe = frontend();
        let req = query_request(
            Some(Protocol::AwsQuery),
            "/",
            "Action=NoSuchAction&Version=1",
        );
        let (status, _, body) = answer(&*fe, req).await;
        assert_eq!(status, 400);
        assert!(body.contains("<Code>InvalidAction</Code>"), "{body}");
        assert!(
            body.contains("The action NoSuchAction is not valid for this web service."),
            "{body}"
        );
        let req = query_request(Some(Protocol::AwsQuery), "/", "Version=1");
        let (status, _, body) = answer(&*fe, req).await;
        assert_eq!(status, 400);
        assert!(body.contains("<Code>MissingAction</Code>"), "{body}");
    }

    /// Real requests captured from botocore and the JS SDK v3.
    #[tokio::test]
    async fn captured_sdk_requests_decode_to_their_operation() {
        nimbus_svc_common::testing::assert_captured_requests_decode(&*frontend(), &[]).await;
    }
}

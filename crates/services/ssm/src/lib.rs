//! Nimbus's AWS Systems Manager (Parameter Store) front-end: the API's exhaustive operation table, generated
//! from the AWS API model by `scripts/gen-ops.py` ([`ops`]), and the front-end the
//! edge routes the API's requests to (awsJson 1.1).
//!
//! The operations arrive with issue 17; until then every operation answers its
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
    use nimbus_svc_common::testing::{answer, json_request, REQUEST_ID};

    #[tokio::test]
    async fn every_operation_answers_not_implemented_naming_itself() {
        let fe = frontend();
        let prefix = META.target_prefix.unwrap();
        for op in Op::ALL {
            assert_eq!(
                Op::from_target(&format!("{prefix}.{}", op.name())),
                Some(*op)
            );
            let req = json_request(Some(META.protocol), &format!("{prefix}.{}", op.name()));
            let (status, headers, body) = answer(&*fe, req).await;
            assert_eq!(status, 501, "{op:?}: {body}");
            assert_eq!(headers["x-amzn-requestid"], REQUEST_ID);
            assert_eq!(headers["x-amzn-errortype"], "NotImplemented");
            let content_type = match META.protocol {
                Protocol::AwsJson10 => "application/x-amz-json-1.0",
                _ => "application/x-amz-json-1.1",
            };
            assert_eq!(headers["content-type"], content_type);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["__type"],
                format!("com.amazonaws.{}#NotImplemented", META.name)
            );
            let message = v["message"].as_str().unwrap();
            assert!(
                message.contains(op.name()) && message.contains(META.name),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_target_is_the_protocols_unknown_operation() {
        let fe = frontend();
        let prefix = META.target_prefix.unwrap();
        for target in [
            format!("{prefix}.NoSuchOperation"),
            "Other_20120810.ListTables".to_string(),
        ] {
            let (status, headers, body) =
                answer(&*fe, json_request(Some(META.protocol), &target)).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(headers["x-amzn-errortype"], "UnknownOperationException");
            assert!(body.contains(&target), "{body}");
        }
    }

    /// Real requests captured from botocore and the JS SDK v3.
    #[tokio::test]
    async fn captured_sdk_requests_decode_to_their_operation() {
        nimbus_svc_common::testing::assert_captured_requests_decode(&*frontend(), &[]).await;
    }
}

//! Nimbus's Amazon SQS (queues) front-end: the API's exhaustive operation table, generated
//! from the AWS API model by `scripts/gen-ops.py` ([`ops`]), and the front-end the
//! edge routes the API's requests to (both awsJson 1.0 and the legacy awsQuery, answering in the protocol the request used).
//!
//! The operations arrive with issue 13; until then every operation answers its
//! protocol's `501 NotImplemented` naming itself, and a request naming no
//! operation of the API gets the protocol's own unknown-operation error.

pub mod ops;

pub use ops::{Op, META};

use nimbus_protocol::Frontend;
use nimbus_svc_common::{PendingFrontend, Service, ServiceContext, StartError};
use std::sync::Arc;

/// The front-end the edge registers for this API.
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(PendingFrontend::<Op>::new())
}

/// Start the service: what the server calls once at start.
pub fn start(_ctx: &ServiceContext) -> Result<Service, StartError> {
    Ok(Service::frontend_only(frontend()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_protocol::Protocol;
    use nimbus_svc_common::testing::{answer, json_request, query_request, REQUEST_ID};

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

    #[tokio::test]
    async fn every_operation_answers_not_implemented_naming_itself_in_json() {
        let fe = frontend();
        let prefix = META.target_prefix.unwrap();
        for op in Op::ALL {
            assert_eq!(
                Op::from_target(&format!("{prefix}.{}", op.name())),
                Some(*op)
            );
            let req = json_request(
                Some(Protocol::AwsJson10),
                &format!("{prefix}.{}", op.name()),
            );
            let (status, headers, body) = answer(&*fe, req).await;
            assert_eq!(status, 501, "{op:?}: {body}");
            assert_eq!(headers["x-amzn-requestid"], REQUEST_ID);
            assert_eq!(headers["x-amzn-errortype"], "NotImplemented");
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
    async fn an_unknown_target_is_the_protocols_unknown_operation_in_json() {
        let fe = frontend();
        let prefix = META.target_prefix.unwrap();
        for target in [
            format!("{prefix}.NoSuchOperation"),
            "Other_20120810.ListTables".to_string(),
        ] {
            let (status, headers, body) =
                answer(&*fe, json_request(Some(Protocol::AwsJson10), &target)).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(headers["x-amzn-errortype"], "UnknownOperationException");
            assert!(body.contains(&target), "{body}");
        }
    }

    #[tokio::test]
    async fn json_requests_get_json_answers_with_the_query_error_header() {
        let fe = frontend();
        // Both with the edge's verdict and, without one, detected from X-Amz-Target.
        for protocol in [Some(Protocol::AwsJson10), None] {
            let req = json_request(protocol, "AmazonSQS.SendMessage");
            let (status, headers, body) = answer(&*fe, req).await;
            assert_eq!(status, 501, "{body}");
            assert_eq!(headers["content-type"], "application/x-amz-json-1.0");
            assert_eq!(headers["x-amzn-query-error"], "NotImplemented;Receiver");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["__type"], "com.amazonaws.sqs#NotImplemented");
            assert!(v["message"].as_str().unwrap().contains("SendMessage"));
        }
        let (status, headers, _) = answer(&*fe, json_request(None, "AmazonSQS.Nope")).await;
        assert_eq!(status, 400);
        assert_eq!(headers["x-amzn-errortype"], "UnknownOperationException");
    }

    #[tokio::test]
    async fn query_requests_get_xml_answers_also_on_a_queue_url_and_in_the_query_string() {
        let fe = frontend();
        // The legacy protocol posts to the queue's URL; without the edge's verdict
        // a form request is detected as awsQuery.
        let req = query_request(
            None,
            "/123456789012/orders",
            "Action=SendMessage&Version=2012-11-05&MessageBody=hi",
        );
        let (status, headers, body) = answer(&*fe, req).await;
        assert_eq!(status, 501, "{body}");
        assert_eq!(headers["content-type"], "text/xml");
        assert!(
            body.contains("<ErrorResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"),
            "{body}"
        );
        assert!(body.contains("SendMessage"), "{body}");
        let req = axum::extract::Request::builder()
            .uri("/?Action=ListQueues&Version=2012-11-05")
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, _, body) = answer(&*fe, req).await;
        assert_eq!(status, 501, "{body}");
        assert!(body.contains("operation ListQueues yet"), "{body}");
    }

    /// Real requests captured from botocore and the JS SDK v3.
    #[tokio::test]
    async fn captured_sdk_requests_decode_to_their_operation() {
        nimbus_svc_common::testing::assert_captured_requests_decode(&*frontend(), &[]).await;
    }
}

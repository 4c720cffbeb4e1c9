//! One error type for every AWS API, written once per protocol.

use crate::{Protocol, ServiceMeta};
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use std::borrow::Cow;

/// An error as an AWS client sees it: status, error code, message, and the few
/// extras some services add. Service crates map their own `thiserror` enums into
/// this once; [`error_response`] writes it in the protocol's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub status: StatusCode,
    /// The error code, e.g. `ResourceNotFoundException`, `NoSuchBucket`,
    /// `QueueDoesNotExist`.
    pub code: Cow<'static, str>,
    pub message: String,
    /// awsQueryCompatible services (SQS): the awsQuery code sent in
    /// `x-amzn-query-error` alongside a JSON error, e.g.
    /// `AWS.SimpleQueueService.NonExistentQueue`.
    pub query_code: Option<Cow<'static, str>>,
    /// Extra elements/fields of the error body (S3's `<BucketName>`, `<Key>`,
    /// Lambda's `Type`/`Reason`), in order.
    pub fields: Vec<(Cow<'static, str>, String)>,
    /// Extra response headers (`Retry-After`, `x-amz-id-2`…).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl AwsError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            query_code: None,
            fields: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The answer for a known operation Nimbus does not implement yet: 501
    /// `NotImplemented`, naming the service and the operation, in the service's
    /// protocol (callers pass it to [`error_response`]).
    pub fn not_implemented(service: &str, operation: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("Nimbus does not implement the {service} operation {operation} yet."),
        )
    }

    /// Add a body field (S3's `<BucketName>` etc.).
    pub fn with_field(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Add the awsQuery code of an awsQueryCompatible service.
    pub fn with_query_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.query_code = Some(code.into());
        self
    }

    /// `Sender` (the client's fault) or `Receiver` (ours), as awsQuery writes it.
    pub fn fault(&self) -> &'static str {
        if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

/// Escape text for an XML element (quick-xml's escaping: `<>&'"`).
pub(crate) fn xml_escape(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Write `err` as `service` answers errors in `protocol`, with `request_id` where
/// the protocol carries one (header and/or body).
///
/// * awsJson 1.0/1.1: `{"__type": "<code>", "message": …}`, `x-amzn-ErrorType`,
///   and for awsQueryCompatible services `x-amzn-query-error: <code>;<Sender|Receiver>`.
/// * restJson1: `x-amzn-ErrorType: <code>` and `{"message": …, <fields>}`.
/// * awsQuery: `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
/// * restXml (S3): `<Error><Code/><Message/><fields/><RequestId/></Error>`.
pub fn error_response(
    protocol: Protocol,
    service: &ServiceMeta,
    err: &AwsError,
    request_id: &str,
) -> Response {
    let (content_type, body) = match protocol {
        Protocol::AwsJson10 | Protocol::AwsJson11 => {
            let mut body = serde_json::Map::new();
            let prefixed = match service.target_prefix {
                // AWS's JSON services send a shape-qualified `__type`; SDKs strip
                // everything before `#`.
                Some(_) if !err.code.contains('#') => {
                    format!("com.amazonaws.{}#{}", service.name, err.code)
                }
                _ => err.code.to_string(),
            };
            body.insert("__type".into(), prefixed.into());
            body.insert("message".into(), err.message.clone().into());
            for (k, v) in &err.fields {
                body.insert(k.to_string(), v.clone().into());
            }
            let ct = if protocol == Protocol::AwsJson10 {
                "application/x-amz-json-1.0"
            } else {
                "application/x-amz-json-1.1"
            };
            (ct, serde_json::Value::Object(body).to_string())
        }
        Protocol::RestJson1 => {
            let mut body = serde_json::Map::new();
            for (k, v) in &err.fields {
                body.insert(k.to_string(), v.clone().into());
            }
            body.insert("message".into(), err.message.clone().into());
            (
                "application/json",
                serde_json::Value::Object(body).to_string(),
            )
        }
        Protocol::AwsQuery => {
            let xmlns = service
                .xml_namespace
                .map(|ns| format!(" xmlns=\"{ns}\""))
                .unwrap_or_default();
            let mut extra = String::new();
            for (k, v) in &err.fields {
                extra.push_str(&format!("<{k}>{}</{k}>", xml_escape(v)));
            }
            (
                "text/xml",
                format!(
                    "<?xml version=\"1.0\"?><ErrorResponse{xmlns}><Error><Type>{}</Type>\
                     <Code>{}</Code><Message>{}</Message>{extra}</Error>\
                     <RequestId>{request_id}</RequestId></ErrorResponse>",
                    err.fault(),
                    xml_escape(err.query_code.as_deref().unwrap_or(&err.code)),
                    xml_escape(&err.message),
                ),
            )
        }
        Protocol::RestXml => {
            let mut extra = String::new();
            for (k, v) in &err.fields {
                extra.push_str(&format!("<{k}>{}</{k}>", xml_escape(v)));
            }
            (
                "application/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code>\
                     <Message>{}</Message>{extra}<RequestId>{request_id}</RequestId></Error>",
                    xml_escape(&err.code),
                    xml_escape(&err.message),
                ),
            )
        }
    };
    let mut resp = (err.status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v.clone());
        if protocol == Protocol::RestXml {
            h.insert("x-amz-request-id", v);
        }
    }
    if protocol.is_json() {
        if let Ok(v) = HeaderValue::from_str(&err.code) {
            h.insert("x-amzn-errortype", v);
        }
    }
    if service.query_compatible && protocol.is_json() {
        let code = err.query_code.as_deref().unwrap_or(&err.code);
        if let Ok(v) = HeaderValue::from_str(&format!("{code};{}", err.fault())) {
            h.insert("x-amzn-query-error", v);
        }
    }
    for (k, v) in &err.headers {
        h.insert(k.clone(), v.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util_shim::body_string;

    const SQS: ServiceMeta = ServiceMeta {
        name: "sqs",
        signing_name: "sqs",
        endpoint_prefix: "sqs",
        api_version: "2012-11-05",
        protocol: Protocol::AwsJson10,
        protocols: &[Protocol::AwsJson10, Protocol::AwsQuery],
        target_prefix: Some("AmazonSQS"),
        xml_namespace: Some("http://queue.amazonaws.com/doc/2012-11-05/"),
        query_compatible: true,
    };

    mod http_body_util_shim {
        pub async fn body_string(r: axum::response::Response) -> String {
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        }
    }

    #[tokio::test]
    async fn sqs_json_errors_carry_the_query_code() {
        let e = AwsError::new(
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "The specified queue does not exist.",
        )
        .with_query_code("AWS.SimpleQueueService.NonExistentQueue");
        let r = error_response(Protocol::AwsJson10, &SQS, &e, "rid");
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.headers()["x-amzn-query-error"],
            "AWS.SimpleQueueService.NonExistentQueue;Sender"
        );
        let body: serde_json::Value = serde_json::from_str(&body_string(r).await).unwrap();
        assert_eq!(body["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
    }

    #[tokio::test]
    async fn query_errors_are_xml_with_type_and_request_id() {
        let e = AwsError::not_implemented("sqs", "AddPermission");
        let r = error_response(Protocol::AwsQuery, &SQS, &e, "rid-1");
        assert_eq!(r.status(), 501);
        let body = body_string(r).await;
        assert!(
            body.contains("<Type>Receiver</Type><Code>NotImplemented</Code>"),
            "{body}"
        );
        assert!(body.contains("<RequestId>rid-1</RequestId>"), "{body}");
    }
}

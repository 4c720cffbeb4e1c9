//! Nimbus's Amazon S3 front-end (buckets and objects): the API's exhaustive
//! operation table, generated from the AWS API model by `scripts/gen-ops.py`
//! ([`ops`]), how a request addresses a bucket (path style `/bucket/key` or
//! virtual-host style `bucket.s3.localhost/key`, [`addressing`]), and the front-end
//! the edge routes S3 requests to (restXml).
//!
//! The operations arrive with issue 15; until then every operation answers `501
//! NotImplemented` naming itself, in S3's `<Error>` XML, and a method a resource
//! does not take answers `405 MethodNotAllowed`, as S3 does.

pub mod addressing;
pub mod ops;

pub use ops::{Op, META};

use axum::extract::Request;
use nimbus_protocol::{Frontend, ResponseFuture, ServiceMeta};
use nimbus_svc_common::Call;
use std::sync::Arc;

/// The front-end the edge registers for S3.
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(S3Frontend)
}

/// Start the service: what the server calls once at start.
pub fn start(
    _ctx: &nimbus_svc_common::ServiceContext,
) -> Result<nimbus_svc_common::Service, nimbus_svc_common::StartError> {
    Ok(nimbus_svc_common::Service::frontend_only(frontend()))
}

/// S3 before its operations are built: requests are brought to path style, then
/// decoded against the model's bindings.
struct S3Frontend;

impl Frontend for S3Frontend {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, mut req: Request) -> ResponseFuture {
        addressing::to_path_style(&mut req);
        Box::pin(async move {
            match Call::<Op>::decode(req).await {
                Ok(call) => call.not_implemented(),
                Err(resp) => resp,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_protocol::Protocol;
    use nimbus_svc_common::testing::{answer, rest_request, REQUEST_ID};

    async fn s3(method: &str, uri: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let req = rest_request(Protocol::RestXml, method, uri, headers);
        let (status, h, body) = answer(&*frontend(), req).await;
        assert_eq!(h["x-amz-request-id"], REQUEST_ID);
        assert_eq!(h["content-type"], "application/xml");
        (status.as_u16(), body)
    }

    /// The operation named in a 501 answer.
    async fn op_of(method: &str, uri: &str, headers: &[(&str, &str)]) -> String {
        let (status, body) = s3(method, uri, headers).await;
        assert_eq!(status, 501, "{method} {uri}: {body}");
        assert!(body.contains("<Code>NotImplemented</Code>"), "{body}");
        assert!(
            body.contains(&format!("<RequestId>{REQUEST_ID}</RequestId>")),
            "{body}"
        );
        let start = body.find("the s3 operation ").unwrap() + "the s3 operation ".len();
        body[start..].split(' ').next().unwrap().to_string()
    }

    #[tokio::test]
    async fn object_operations_on_one_path_are_told_apart_by_query_and_headers() {
        let p = "/bucket/dir/key.txt";
        assert_eq!(op_of("PUT", p, &[]).await, "PutObject");
        assert_eq!(
            op_of("PUT", "/bucket/k?x-id=PutObject", &[]).await,
            "PutObject"
        );
        assert_eq!(
            op_of("PUT", p, &[("x-amz-copy-source", "/b/src")]).await,
            "CopyObject"
        );
        assert_eq!(
            op_of("PUT", &format!("{p}?partNumber=1&uploadId=u"), &[]).await,
            "UploadPart"
        );
        assert_eq!(
            op_of(
                "PUT",
                &format!("{p}?partNumber=1&uploadId=u"),
                &[("x-amz-copy-source", "/b/src")]
            )
            .await,
            "UploadPartCopy"
        );
        assert_eq!(
            op_of("POST", &format!("{p}?uploads"), &[]).await,
            "CreateMultipartUpload"
        );
        assert_eq!(
            op_of("POST", &format!("{p}?uploadId=u"), &[]).await,
            "CompleteMultipartUpload"
        );
        assert_eq!(op_of("GET", p, &[]).await, "GetObject");
        assert_eq!(
            op_of("GET", &format!("{p}?uploadId=u"), &[]).await,
            "ListParts"
        );
        assert_eq!(
            op_of("GET", &format!("{p}?tagging"), &[]).await,
            "GetObjectTagging"
        );
        assert_eq!(op_of("DELETE", p, &[]).await, "DeleteObject");
        // A key ending in `/` is still an object.
        assert_eq!(op_of("PUT", "/bucket/folder/", &[]).await, "PutObject");
    }

    #[tokio::test]
    async fn bucket_and_service_operations() {
        assert_eq!(op_of("GET", "/", &[]).await, "ListBuckets");
        assert_eq!(op_of("PUT", "/bucket", &[]).await, "CreateBucket");
        assert_eq!(op_of("PUT", "/bucket/", &[]).await, "CreateBucket");
        assert_eq!(op_of("GET", "/bucket", &[]).await, "ListObjects");
        assert_eq!(
            op_of("GET", "/bucket?list-type=2&prefix=a", &[]).await,
            "ListObjectsV2"
        );
        assert_eq!(
            op_of("GET", "/bucket?uploads", &[]).await,
            "ListMultipartUploads"
        );
        assert_eq!(op_of("POST", "/bucket?delete", &[]).await, "DeleteObjects");
        assert_eq!(
            op_of("GET", "/bucket?analytics", &[]).await,
            "ListBucketAnalyticsConfigurations"
        );
        assert_eq!(
            op_of("GET", "/bucket?analytics&id=a", &[]).await,
            "GetBucketAnalyticsConfiguration"
        );
        // Deprecated operations with the same binding lose to their successors.
        assert_eq!(
            op_of("GET", "/bucket?lifecycle", &[]).await,
            "GetBucketLifecycleConfiguration"
        );
        assert_eq!(
            op_of("PUT", "/bucket?notification", &[]).await,
            "PutBucketNotificationConfiguration"
        );
    }

    #[tokio::test]
    async fn presigned_urls_and_aws_chunked_uploads_are_ordinary_operations() {
        let presigned = "/bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=abc";
        assert_eq!(op_of("GET", presigned, &[]).await, "GetObject");
        let chunked = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
            ("x-amz-decoded-content-length", "5"),
        ];
        assert_eq!(op_of("PUT", "/bucket/key", &chunked).await, "PutObject");
    }

    #[tokio::test]
    async fn virtual_host_style_requests_are_recognised_as_path_style() {
        for host in [
            "bucket.localhost:4566",
            "bucket.s3.localhost",
            "bucket.s3.us-west-2.amazonaws.com",
            "bucket.s3.amazonaws.com",
        ] {
            let got = op_of("PUT", "/key", &[("host", host)]).await;
            assert_eq!(got, "PutObject", "{host}");
            let got = op_of("GET", "/?list-type=2", &[("host", host)]).await;
            assert_eq!(got, "ListObjectsV2", "{host}");
        }
        // Path style on a plain host stays path style.
        let got = op_of("GET", "/", &[("host", "127.0.0.1:4566")]).await;
        assert_eq!(got, "ListBuckets");
    }

    #[tokio::test]
    async fn a_method_a_resource_does_not_take_is_method_not_allowed() {
        let (status, body) = s3("POST", "/bucket/key", &[]).await;
        assert_eq!(status, 405, "{body}");
        assert!(body.contains("<Code>MethodNotAllowed</Code>"), "{body}");
        assert!(
            body.contains("<Method>POST</Method><ResourceType>OBJECT</ResourceType>"),
            "{body}"
        );
        let (status, body) = s3("PATCH", "/bucket", &[]).await;
        assert_eq!(status, 405, "{body}");
        assert!(
            body.contains("<ResourceType>BUCKET</ResourceType>"),
            "{body}"
        );
    }

    #[test]
    fn every_operation_is_recognised_by_its_own_binding_unless_shadowed() {
        use http::{HeaderMap, HeaderName, HeaderValue, Method};
        for op in Op::ALL {
            let b = op.rest();
            let (path, markers) = b.uri.split_once('?').unwrap_or((b.uri, ""));
            let path = path
                .replace("{Key+}", "dir/key")
                .replace("{Bucket}", "bucket");
            let mut query: Vec<String> = markers
                .split('&')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            query.extend(b.query.iter().map(|q| format!("{q}=1")));
            let mut headers = HeaderMap::new();
            for h in b.headers {
                headers.insert(HeaderName::from_static(h), HeaderValue::from_static("v"));
            }
            let q = query.join("&");
            let method = Method::from_bytes(b.method.as_bytes()).unwrap();
            let got = Op::recognise(&method, &path, Some(&q), &headers);
            let want = b
                .shadowed_by
                .map(|n| Op::from_name(n).unwrap())
                .unwrap_or(*op);
            assert_eq!(got, Some(want), "{op:?} {method} {path}?{q}");
        }
    }

    /// Real requests captured from botocore and the JS SDK v3.
    #[tokio::test]
    async fn captured_sdk_requests_decode_to_their_operation() {
        nimbus_svc_common::testing::assert_captured_requests_decode(&*frontend(), &[]).await;
    }
}

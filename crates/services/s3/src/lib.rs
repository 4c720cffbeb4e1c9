//! Nimbus's Amazon S3 (restXml): buckets and objects, multipart uploads, and
//! bucket notifications to functions, queues, topics and the event bus.
//!
//! * [`ops`]: the API's exhaustive operation table, generated from the AWS API
//!   model by `scripts/gen-ops.py`; [`addressing`]: path style and virtual-host
//!   style requests.
//! * [`store`]: metadata in `<data>/s3.db`, bytes in content-addressed files
//!   streamed and hashed on the fly, fsynced before a write is acknowledged.
//! * [`objects`], [`buckets`], [`multipart`], [`list`]: the operations.
//! * [`notify`]: notification configurations, the event records, and the
//!   durable outbox (a row committed with the object) drained into
//!   `ctx.sinks`.
//! * [`admin`]: `/_nimbus/services/s3/…` and the service's metrics.
//!
//! The edge authenticates (SigV4, presigned URLs), routes (virtual-host style
//! too) and decodes aws-chunked bodies as a stream before a request arrives
//! here; operations Nimbus does not implement answer `501 NotImplemented`.

pub mod addressing;
pub mod admin;
pub mod buckets;
pub mod config;
pub mod error;
pub mod list;
pub mod multipart;
pub mod notify;
pub mod objects;
pub mod ops;
pub mod post;
mod source;
pub mod store;
mod wire;

pub use ops::{Op, META};

use axum::extract::Request;
use axum::response::Response;
use error::S3Error;
use nimbus_protocol::{AwsError, Frontend, ResponseFuture, ServiceMeta};
use nimbus_svc_common::{Call, ServiceContext};
use std::sync::Arc;
use wire::S3Request;

/// The largest single PUT S3 takes (5 GiB).
pub const MAX_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// What every operation shares.
pub struct State {
    pub store: store::Store,
    pub notify: notify::Notifier,
    pub sinks: Arc<nimbus_triggers::sinks::Sinks>,
    pub region: String,
    pub account_id: String,
}

/// Start the service: open `<data>/s3.db` and the blob directory, start the
/// notification outbox's drain.
pub fn start(
    ctx: &ServiceContext,
) -> Result<nimbus_svc_common::Service, nimbus_svc_common::StartError> {
    let store = store::Store::open(&ctx.data_dir)
        .map_err(|e| nimbus_svc_common::StartError::new("s3", e))?;
    let notify = notify::Notifier::start(store.clone(), ctx.sinks.clone());
    ctx.sinks.register_objects(Arc::new(source::Objects {
        store: store.clone(),
    }));
    let state = Arc::new(State {
        store,
        notify,
        sinks: ctx.sinks.clone(),
        region: ctx.region.clone(),
        account_id: ctx.account_id.clone(),
    });
    config::start_sweeper(state.clone());
    Ok(nimbus_svc_common::Service {
        frontend: Arc::new(S3Frontend {
            state: state.clone(),
        }),
        admin: Some(Arc::new(admin::Admin { state })),
    })
}

/// The S3 front-end the edge routes to.
pub struct S3Frontend {
    pub state: Arc<State>,
}

impl Frontend for S3Frontend {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, mut req: Request) -> ResponseFuture {
        addressing::to_path_style(&mut req);
        let state = self.state.clone();
        Box::pin(async move {
            let origin = req
                .headers()
                .get(http::header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let method = req.method().to_string();
            let cors_bucket = req
                .uri()
                .path()
                .trim_start_matches('/')
                .split('/')
                .next()
                .and_then(|b| wire::percent_decode(b).ok())
                .filter(|b| !b.is_empty());
            if req.method() == http::Method::OPTIONS {
                return preflight(&state, req, cors_bucket.as_deref()).await;
            }
            let mut resp = if post::is_post_upload(&req) {
                let request_id = request_id_of(&req);
                match post::post_object(&state, req).await {
                    Ok(resp) => resp,
                    Err(S3Error(e)) => s3_error(*e, &request_id),
                }
            } else {
                Self::answer(&state, req).await
            };
            if let (Some(origin), Some(bucket)) = (origin, cors_bucket) {
                add_cors_headers(&state, &mut resp, &bucket, &origin, &method).await;
            }
            resp
        })
    }

    fn body_limit(&self, parts: &http::request::Parts) -> usize {
        // Object bodies may be as large as S3 takes; the edge only buffers a body
        // whose signature covers it (a signed payload).
        match Op::recognise(
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
        ) {
            Some(Op::PutObject | Op::UploadPart) => MAX_PUT as usize,
            _ => nimbus_protocol::DEFAULT_BODY_LIMIT,
        }
    }
}

impl S3Frontend {
    async fn answer(state: &Arc<State>, req: Request) -> Response {
        {
            let call = match Call::<Op>::decode(req).await {
                Ok(call) => call,
                Err(resp) => return resp,
            };
            let head = call.parts.method == http::Method::HEAD;
            let op = call.op;
            let request_id = call.request_id.clone();
            let out = match S3Request::new(call) {
                Ok(r) => serve(state, r).await,
                Err(e) => Err(e),
            };
            match out {
                Ok(resp) => resp,
                Err(S3Error(e)) => {
                    tracing::debug!(operation = op.name(), code = %e.code, request_id = %request_id, "s3 error");
                    let mut resp = nimbus_protocol::error_response(
                        nimbus_protocol::Protocol::RestXml,
                        &META,
                        &e,
                        &request_id,
                    );
                    if head || e.status == http::StatusCode::NOT_MODIFIED {
                        *resp.body_mut() = axum::body::Body::empty();
                    }
                    resp
                }
            }
        }
    }
}

fn s3_error(err: AwsError, request_id: &str) -> Response {
    nimbus_protocol::error_response(nimbus_protocol::Protocol::RestXml, &META, &err, request_id)
}

fn request_id_of(req: &Request) -> String {
    req.extensions()
        .get::<nimbus_protocol::EdgeContext>()
        .map(|c| c.request_id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// A CORS preflight (`OPTIONS`): allowed by the first rule of the bucket's CORS
/// configuration that matches the origin, method and headers, else 403.
async fn preflight(state: &Arc<State>, req: Request, bucket: Option<&str>) -> Response {
    let request_id = request_id_of(&req);
    let (parts, _) = req.into_parts();
    let h = &parts.headers;
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(origin), Some(method), Some(bucket)) = (
        get("origin"),
        get("access-control-request-method"),
        bucket.map(str::to_string),
    ) else {
        return s3_error(
            AwsError::new(
                http::StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
            ),
            &request_id,
        );
    };
    let headers: Vec<String> = get("access-control-request-headers")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let store = state.store.clone();
    let b = bucket.clone();
    let rules = tokio::task::spawn_blocking(move || config::cors_rules(&store, &b))
        .await
        .ok()
        .flatten();
    let forbidden = |msg: &str| {
        s3_error(
            AwsError::new(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                msg.to_string(),
            )
            .with_field("Method", method.clone())
            .with_field("ResourceType", "OBJECT"),
            &request_id,
        )
    };
    let Some(rules) = rules else {
        return forbidden("CORSResponse: CORS is not enabled for this bucket.");
    };
    match config::cors_match(&rules, &origin, &method, &headers) {
        Some(rule) => {
            let mut b = Response::builder()
                .status(http::StatusCode::OK)
                .header("x-amz-request-id", &request_id);
            for (k, v) in config::cors_headers(rule, &origin, Some((&method, &headers))) {
                b = b.header(k, v);
            }
            b.body(axum::body::Body::empty())
                .unwrap_or_else(|_| forbidden("CORSResponse: invalid header"))
        }
        None => forbidden(
            "CORSResponse: This CORS request is not allowed. This is usually because the \
             evalution of Origin, request method / Access-Control-Request-Method or \
             Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ),
    }
}

/// CORS headers on an actual request from a browser (one with `Origin`).
async fn add_cors_headers(
    state: &Arc<State>,
    resp: &mut Response,
    bucket: &str,
    origin: &str,
    method: &str,
) {
    let store = state.store.clone();
    let b = bucket.to_string();
    let Some(rules) = tokio::task::spawn_blocking(move || config::cors_rules(&store, &b))
        .await
        .ok()
        .flatten()
    else {
        return;
    };
    if let Some(rule) = config::cors_match(&rules, origin, method, &[]) {
        for (k, v) in config::cors_headers(rule, origin, None) {
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
    }
}

async fn serve(state: &Arc<State>, r: S3Request) -> Result<Response, S3Error> {
    use Op::*;
    match r.op {
        ListBuckets => buckets::list_buckets(state, r).await,
        CreateBucket => buckets::create_bucket(state, r).await,
        HeadBucket => buckets::head_bucket(state, r).await,
        DeleteBucket => buckets::delete_bucket(state, r).await,
        GetBucketLocation => buckets::get_bucket_location(state, r).await,
        PutBucketNotificationConfiguration => notify::put_configuration(state, r).await,
        GetBucketNotificationConfiguration => notify::get_configuration(state, r).await,
        PutBucketPolicy => config::put_policy(state, r).await,
        GetBucketPolicy => config::get_policy(state, r).await,
        DeleteBucketPolicy => config::delete_policy(state, r).await,
        PutBucketTagging => config::put_tagging(state, r).await,
        GetBucketTagging => config::get_tagging(state, r).await,
        DeleteBucketTagging => config::delete_tagging(state, r).await,
        PutBucketLifecycleConfiguration => config::put_lifecycle(state, r).await,
        GetBucketLifecycleConfiguration => config::get_lifecycle(state, r).await,
        DeleteBucketLifecycle => config::delete_lifecycle(state, r).await,
        PutBucketCors => config::put_cors(state, r).await,
        GetBucketCors => config::get_cors(state, r).await,
        DeleteBucketCors => config::delete_cors(state, r).await,
        PutObject => objects::put_object(state, r).await,
        GetObject => objects::get_object(state, r, false).await,
        HeadObject => objects::get_object(state, r, true).await,
        DeleteObject => objects::delete_object(state, r).await,
        DeleteObjects => objects::delete_objects(state, r).await,
        CopyObject => objects::copy_object(state, r).await,
        GetObjectTagging => objects::get_object_tagging(state, r).await,
        PutObjectTagging => objects::put_object_tagging(state, r).await,
        DeleteObjectTagging => objects::delete_object_tagging(state, r).await,
        ListObjects => list::list_objects(state, r, false).await,
        ListObjectsV2 => list::list_objects(state, r, true).await,
        ListObjectVersions => list::list_versions(state, r).await,
        PutBucketVersioning => buckets::put_versioning(state, r).await,
        GetBucketVersioning => buckets::get_versioning(state, r).await,
        CreateMultipartUpload => multipart::create(state, r).await,
        UploadPart => multipart::upload_part(state, r).await,
        UploadPartCopy => multipart::upload_part_copy(state, r).await,
        CompleteMultipartUpload => multipart::complete(state, r).await,
        AbortMultipartUpload => multipart::abort(state, r).await,
        ListParts => multipart::list_parts(state, r).await,
        ListMultipartUploads => multipart::list_uploads(state, r).await,
        op => Err(S3Error::from(nimbus_protocol::AwsError::not_implemented(
            "s3",
            op.name(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_protocol::Protocol;
    use nimbus_svc_common::testing::{answer, rest_request, REQUEST_ID};

    /// A server with no functions deployed.
    struct NoFunctions;

    impl nimbus_dispatch::FunctionLookup for NoFunctions {
        fn function(&self, _: &str) -> Option<Arc<nimbus_core::FunctionConfig>> {
            None
        }
        fn qualifier_exists(&self, _: &str, _: Option<&str>) -> bool {
            false
        }
        fn region(&self) -> &str {
            "us-east-1"
        }
    }

    impl nimbus_dispatch::Dispatch for NoFunctions {
        fn invoke(
            &self,
            inv: nimbus_dispatch::Invocation,
        ) -> nimbus_dispatch::BoxFuture<'_, nimbus_dispatch::Result<nimbus_dispatch::InvokeResult>>
        {
            Box::pin(async move { Err(nimbus_dispatch::InvokeError::NotFound(inv.function)) })
        }
        fn enqueue(
            &self,
            inv: nimbus_dispatch::Invocation,
            _: &'static str,
        ) -> nimbus_dispatch::BoxFuture<'_, nimbus_dispatch::Result<String>> {
            Box::pin(async move { Err(nimbus_dispatch::InvokeError::NotFound(inv.function)) })
        }
    }

    /// A front-end over a fresh data dir (kept alive for the test).
    fn test_frontend() -> (S3Frontend, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(dir.path()).unwrap();
        let dispatch: Arc<dyn nimbus_dispatch::Dispatch> = Arc::new(NoFunctions);
        let sinks = Arc::new(nimbus_triggers::sinks::Sinks::new(dispatch));
        let notify = notify::Notifier::start(store.clone(), sinks.clone());
        let state = Arc::new(State {
            store,
            notify,
            sinks,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        });
        (S3Frontend { state }, dir)
    }

    async fn s3(method: &str, uri: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let (fe, _dir) = test_frontend();
        let req = rest_request(Protocol::RestXml, method, uri, headers);
        let (status, h, body) = answer(&fe, req).await;
        assert_eq!(h["x-amz-request-id"], REQUEST_ID);
        (status.as_u16(), body)
    }

    /// The operation a request decodes to.
    async fn op_of(method: &str, uri: &str, headers: &[(&str, &str)]) -> String {
        let mut req = rest_request(Protocol::RestXml, method, uri, headers);
        addressing::to_path_style(&mut req);
        match Call::<Op>::decode(req).await {
            Ok(call) => call.op.name().to_string(),
            Err(resp) => panic!("{method} {uri}: {}", resp.status()),
        }
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
        for (file, op, mut req) in nimbus_svc_common::testing::captured_requests("s3") {
            addressing::to_path_style(&mut req);
            match Call::<Op>::decode(req).await {
                Ok(call) => assert_eq!(call.op.name(), op, "{file}"),
                Err(resp) => panic!("{file}: {}", resp.status()),
            }
        }
    }
}

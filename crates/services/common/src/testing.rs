//! Helpers for front-end unit tests (feature `testing`): requests as the edge hands
//! them over (with an [`EdgeContext`]), and the answer read back whole.

use axum::body::Body;
use axum::extract::Request;
use http::{HeaderMap, Method, StatusCode};
use nimbus_protocol::{EdgeContext, Frontend, Protocol};

/// The request id every test request carries in its [`EdgeContext`].
pub const REQUEST_ID: &str = "nimbus-test-request-id";

/// The context the edge would attach, naming `protocol`.
pub fn context(protocol: Protocol) -> EdgeContext {
    EdgeContext {
        request_id: REQUEST_ID.to_string(),
        region: "us-east-1".to_string(),
        principal: nimbus_core::Principal::Root,
        protocol,
    }
}

/// An awsJson request: `POST /` with `X-Amz-Target: target`.
pub fn json_request(protocol: Option<Protocol>, target: &str) -> Request {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from("{}"))
        .unwrap();
    if let Some(p) = protocol {
        req.extensions_mut().insert(context(p));
    }
    req
}

/// An awsQuery request: a form `POST path` with `body` (`Action=…&Version=…`).
pub fn query_request(protocol: Option<Protocol>, path: &str, body: &str) -> Request {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Body::from(body.to_string()))
        .unwrap();
    if let Some(p) = protocol {
        req.extensions_mut().insert(context(p));
    }
    req
}

/// A REST request: `method uri` with `headers`, through the edge as `protocol`.
pub fn rest_request(
    protocol: Protocol,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Request {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::empty()).unwrap();
    req.extensions_mut().insert(context(protocol));
    req
}

/// Call `frontend` and read the whole answer.
pub async fn answer(frontend: &dyn Frontend, req: Request) -> (StatusCode, HeaderMap, String) {
    let resp = frontend.call(req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The captured SDK requests of `service` (`crates/edge/tests/fixtures/<client>-<service>-<Operation>.http`,
/// written by `scripts/capture-requests.py`): `(file name, operation, request)`,
/// the request without an [`EdgeContext`] (the front-end detects the protocol).
pub fn captured_requests(service: &str) -> Vec<(String, String, Request)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../edge/tests/fixtures");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".http") else {
            continue;
        };
        let mut parts = stem.splitn(3, '-');
        let (_client, svc, op) = (parts.next(), parts.next(), parts.next());
        if svc != Some(service) {
            continue;
        }
        let raw = std::fs::read(&path).unwrap();
        out.push((file.clone(), op.unwrap().to_string(), parse_raw(&raw)));
    }
    assert!(
        !out.is_empty(),
        "no captured requests for {service} in {}",
        dir.display()
    );
    out
}

/// A raw HTTP/1.1 request as a [`Request`]; the body is kept byte for byte
/// (transfer-encoding framing included: decoding it is the listener's job).
fn parse_raw(raw: &[u8]) -> Request {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, uri) = (request_line.next().unwrap(), request_line.next().unwrap());
    let mut b = Request::builder().method(method).uri(uri);
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        b = b.header(k.trim(), v.trim());
    }
    b.body(Body::from(raw[end + 4..].to_vec())).unwrap()
}

/// Every captured request of `frontend`'s service reaches it as the operation its
/// file names and answers `501 NotImplemented` naming it — except the files in
/// `other`, which must answer that status instead.
pub async fn assert_captured_requests_decode(frontend: &dyn Frontend, other: &[(&str, u16)]) {
    let service = frontend.meta().name;
    for (file, op, req) in captured_requests(service) {
        let (status, _, body) = answer(frontend, req).await;
        if let Some((_, want)) = other.iter().find(|(f, _)| *f == file) {
            assert_eq!(status.as_u16(), *want, "{file}: {body}");
            continue;
        }
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{file}: {body}");
        assert!(
            body.contains(&format!("the {service} operation {op} yet")),
            "{file}: {body}"
        );
    }
}

/// What every awsJson front-end whose operations are all still pending answers:
/// each operation `501 NotImplemented` naming itself (JSON shape, request id,
/// content type), and an unknown target the protocol's `UnknownOperationException`.
pub async fn assert_pending_json_frontend<O: crate::Operation>(fe: &dyn Frontend) {
    let meta = O::meta();
    let prefix = meta
        .target_prefix
        .expect("an awsJson API has a target prefix");
    for op in O::all() {
        let target = format!("{prefix}.{}", op.name());
        assert_eq!(crate::decode::from_target::<O>(&target), Some(*op));
        let (status, headers, body) = answer(fe, json_request(Some(meta.protocol), &target)).await;
        assert_eq!(status, 501, "{op:?}: {body}");
        assert_eq!(headers["x-amzn-requestid"], REQUEST_ID);
        assert_eq!(headers["x-amzn-errortype"], "NotImplemented");
        let content_type = match meta.protocol {
            Protocol::AwsJson10 => "application/x-amz-json-1.0",
            _ => "application/x-amz-json-1.1",
        };
        assert_eq!(headers["content-type"], content_type);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["__type"],
            format!("com.amazonaws.{}#NotImplemented", meta.name)
        );
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains(op.name()) && message.contains(meta.name),
            "{message}"
        );
    }
    for target in [
        format!("{prefix}.NoSuchOperation"),
        "Other_20120810.ListTables".to_string(),
    ] {
        let (status, headers, body) = answer(fe, json_request(Some(meta.protocol), &target)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(headers["x-amzn-errortype"], "UnknownOperationException");
        assert!(body.contains(&target), "{body}");
    }
}

/// What every awsQuery front-end whose operations are all still pending answers:
/// each `Action` `501 NotImplemented` naming itself in XML with the request id, an
/// unknown `Action` `InvalidAction`, a missing one `MissingAction`.
pub async fn assert_pending_query_frontend<O: crate::Operation>(fe: &dyn Frontend) {
    let meta = O::meta();
    for op in O::all() {
        assert_eq!(O::from_name(op.name()), Some(*op));
        let body = format!("Action={}&Version={}", op.name(), meta.api_version);
        let req = query_request(Some(Protocol::AwsQuery), "/", &body);
        let (status, headers, body) = answer(fe, req).await;
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
    let req = query_request(
        Some(Protocol::AwsQuery),
        "/",
        "Action=NoSuchAction&Version=1",
    );
    let (status, _, body) = answer(fe, req).await;
    assert_eq!(status, 400);
    assert!(body.contains("<Code>InvalidAction</Code>"), "{body}");
    assert!(
        body.contains("The action NoSuchAction is not valid for this web service."),
        "{body}"
    );
    let req = query_request(Some(Protocol::AwsQuery), "/", "Version=1");
    let (status, _, body) = answer(fe, req).await;
    assert_eq!(status, 400);
    assert!(body.contains("<Code>MissingAction</Code>"), "{body}");
}

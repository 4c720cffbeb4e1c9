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

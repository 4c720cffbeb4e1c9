//! The gateway listener: hyper's auto connection builder (HTTP/1.1 keep-alive and
//! h2c), header- and body-read timeouts against slowloris, a cap on open
//! connections, a body limit, graceful shutdown and one access-log line per request.

use crate::event::{self, RequestInfo};
use crate::matcher::Match;
use crate::response::{self, Response};
use crate::route::PayloadFormat;
use crate::table::RouteTable;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use nimbus_core::Trigger;
use nimbus_dispatch::{Invocation, InvokeError};
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// API Gateway's request payload limit.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// How the gateway listener behaves.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The `apiId` events carry (10 characters, like AWS's).
    pub api_id: String,
    /// A client must send a request's whole head within this long.
    pub header_read_timeout: Duration,
    /// A client must send a request's whole body within this long; past it, 408.
    pub body_read_timeout: Duration,
    /// Open connections at most; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request body; past it, 413.
    pub body_limit: usize,
    /// Largest request head (request line and headers); past it, 431.
    pub max_header_bytes: usize,
    /// Access keys `AWS_IAM` function URLs accept (the server's credentials).
    pub iam_keys: Vec<crate::function_url::IamKey>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            api_id: "nimbus0000".into(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            body_limit: BODY_LIMIT,
            max_header_bytes: 64 * 1024,
            iam_keys: Vec::new(),
        }
    }
}

struct Inner {
    routes: RouteTable,
    settings: GatewaySettings,
    port: String,
}

/// The gateway: a route table served on a listener. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    pub fn new(routes: RouteTable, settings: GatewaySettings) -> Self {
        let port = routes
            .public_url()
            .rsplit(':')
            .next()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or("80")
            .to_string();
        Self {
            inner: Arc::new(Inner {
                routes,
                settings,
                port,
            }),
        }
    }

    /// Serve `listener` until `shutdown` resolves, then stop accepting and wait for
    /// the requests in flight to finish (callers bound the wait).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(self.inner.settings.header_read_timeout)
            .max_buf_size(self.inner.settings.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.inner.settings.max_header_bytes as u32);
        let builder = Arc::new(builder);
        let header_timeout = self.inner.settings.header_read_timeout;
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.inner.settings.max_connections.max(1),
        ));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            // A connection slot first: at the cap, stop accepting.
            let permit = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                p = slots.clone().acquire_owned() => p.expect("never closed"),
            };
            let (stream, peer) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, don't spin.
                        tracing::warn!(error = %e, "gateway accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let gw = self.clone();
            let svc = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, std::convert::Infallible>(gw.handle(req, peer).await) }
            });
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                // hyper's header timer starts once the protocol is known; a client that
                // connects and sends nothing is cut off here instead.
                let mut first = [0u8; 1];
                match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, peer = %peer, "gateway connection ended");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
        // API key quota counters counted since the last periodic write.
        self.inner.routes.auth().flush().await;
    }

    async fn handle(&self, req: http::Request<Incoming>, peer: SocketAddr) -> Response {
        let started = Instant::now();
        let request_id = crate::http_util::new_apigw_request_id();
        let mut log = Access::default();
        let mut resp = crate::function_url::front(self, req, peer, &request_id, &mut log).await;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("apigw-requestid", v);
        }
        // The trace the function ran in goes back to the caller (W3C callers get
        // their traceparent back too).
        if !log.trace_id.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&log.trace_id) {
                resp.headers_mut().insert("x-amzn-trace-id", v);
            }
            if log.traceparent {
                let tp = nimbus_dispatch::traceparent(&log.trace_id);
                if let Some(v) = tp.and_then(|t| HeaderValue::from_str(&t).ok()) {
                    resp.headers_mut().insert("traceparent", v);
                }
            }
        }
        tracing::info!(
            target: "nimbus::gateway::access",
            request_id = %request_id,
            method = %log.method,
            path = %log.path,
            route = %log.route,
            status = resp.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            integration_ms = log.integration_ms,
            function_request_id = %log.function_request_id,
            trace_id = %log.trace_id,
            rejected = log.rejected,
            "gateway request"
        );
        let metrics = self.inner.routes.telemetry().metrics();
        if !log.rejected.is_empty() {
            metrics.gateway_rejection(&log.route, log.rejected);
        }
        metrics.gateway_request(
            std::mem::take(&mut log.route),
            resp.status().as_u16(),
            started.elapsed(),
        );
        resp
    }

    pub(crate) fn routes(&self) -> &RouteTable {
        &self.inner.routes
    }

    pub(crate) fn settings(&self) -> &GatewaySettings {
        &self.inner.settings
    }

    /// The listener's port, as `x-forwarded-port` carries it.
    pub(crate) fn port(&self) -> &str {
        &self.inner.port
    }

    pub(crate) async fn route(
        &self,
        req: http::Request<Incoming>,
        peer: SocketAddr,
        request_id: &str,
        log: &mut Access,
    ) -> Response {
        let time_ms = nimbus_core::now_ms();
        let (parts, body) = req.into_parts();
        log.method = parts.method.to_string();
        log.path = parts.uri.path().to_string();
        let matcher = self.inner.routes.matcher();
        let (route, params) = match matcher.find(&parts.method, parts.uri.path()) {
            Match::Found { route, params } => (route.clone(), params),
            Match::MethodNotAllowed(allow) => {
                let mut r = response::message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    r.headers_mut().insert(http::header::ALLOW, v);
                }
                return r;
            }
            Match::NotFound => return response::not_found(),
        };
        let route_key = route.route_key.to_string();
        log.route = route_key.clone();

        // The body, within the limit.
        let limit = self.inner.settings.body_limit;
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return too_large();
        }
        let read = Limited::new(body, limit).collect();
        let body: Bytes =
            match tokio::time::timeout(self.inner.settings.body_read_timeout, read).await {
                Err(_) => {
                    return response::message(StatusCode::REQUEST_TIMEOUT, "Request Timeout");
                }
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) => {
                    if e.is::<http_body_util::LengthLimitError>() {
                        return too_large();
                    }
                    tracing::debug!(error = %e, "gateway: client body read failed");
                    return response::message(StatusCode::BAD_REQUEST, "Bad Request");
                }
            };

        // Headers as the event carries them, plus what API Gateway adds.
        let source_ip = peer.ip().to_string();
        let trace_id = request_trace(&parts.headers, log);
        let headers = event_headers(&parts, &source_ip, &trace_id, &self.inner.port);
        let http1 = parts.version < http::Version::HTTP_2;

        let resource = route.route_key.path().map_or("$default", |p| p.as_str());
        let info = RequestInfo {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            protocol: protocol(parts.version),
            headers: &headers,
            http1,
            source_ip: &source_ip,
            request_id,
            time_ms,
            body: &body,
            route_key: &route_key,
            resource,
            params: &params,
            api_id: &self.inner.settings.api_id,
            account_id: nimbus_core::ACCOUNT_ID,
            stage: "$default",
            binary_media_types: (route.api_type == crate::route::ApiType::Rest)
                .then_some(route.binary_media_types.as_slice()),
        };
        // Throttling, authorizer, API key: 401/403/429/500 without invoking.
        let routes = &self.inner.routes;
        let granted = match routes.auth().check(&route, &info, routes.dispatch()).await {
            Ok(g) => g,
            Err(denied) => {
                log.rejected = denied.reason();
                return denied.response();
            }
        };
        // Request validation, after the authorizers as on AWS: 400 without invoking.
        let query = info.raw_query;
        if let Some(r) = route.validation.check(&parts.headers, query, &body) {
            log.rejected = "invalid_request";
            return r;
        }
        let payload = match route.payload_format {
            PayloadFormat::V1 => event::v1_with(&info, granted.as_ref()),
            PayloadFormat::V2 => event::v2_with(&info, granted.as_ref()),
        };
        drop(headers);

        // Run the function; past the integration timeout the client gets 504 and
        // the invocation runs on (as behind API Gateway).
        let dispatch = self.inner.routes.dispatch().clone();
        let inv = Invocation {
            function: route.function.clone(),
            qualifier: route.qualifier.clone(),
            payload: Bytes::from(payload),
            trigger: Trigger::Http,
            client_context: None,
            trace_id: Some(trace_id),
        };
        let t0 = Instant::now();
        let task = tokio::spawn(async move { dispatch.invoke(inv).await });
        let outcome = tokio::time::timeout(route.timeout(), task).await;
        log.integration_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let result = match outcome {
            Err(_) => {
                return response::message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
            }
            Ok(Err(join)) => {
                tracing::error!(error = %join, route = %route_key, "gateway invocation task failed");
                return response::message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                );
            }
            Ok(Ok(r)) => r,
        };
        match result {
            Ok(res) => {
                log.function_request_id = res.request_id.clone();
                if res.function_error {
                    return response::bad_gateway();
                }
                let decode_base64 = match route.api_type {
                    crate::route::ApiType::Http => response::DecodeBase64::Always,
                    crate::route::ApiType::Rest => response::DecodeBase64::ForTypes {
                        binary_media_types: &route.binary_media_types,
                        accept: parts
                            .headers
                            .get(http::header::ACCEPT)
                            .and_then(|v| v.to_str().ok()),
                    },
                };
                match response::from_function_with(
                    route.payload_format,
                    &res.payload,
                    decode_base64,
                ) {
                    Ok(r) => r,
                    Err(why) => {
                        tracing::warn!(
                            route = %route_key,
                            function = %route.function,
                            function_request_id = %res.request_id,
                            "malformed Lambda proxy response: {why}"
                        );
                        response::bad_gateway()
                    }
                }
            }
            Err(InvokeError::Throttled(_)) => {
                log.rejected = "function_throttled";
                response::message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
            }
            Err(InvokeError::TooLarge { .. }) => too_large(),
            Err(e @ (InvokeError::NotFound(_) | InvokeError::Missing { .. })) => {
                // The route outlived its function (or alias): API Gateway answers 500.
                tracing::warn!(route = %route_key, error = %e, "gateway route target is gone");
                response::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            Err(e) => {
                tracing::error!(route = %route_key, error = %e, "gateway invocation failed");
                response::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

/// The access-log fields a request fills in as it goes.
#[derive(Default)]
pub(crate) struct Access {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) route: String,
    pub(crate) integration_ms: f64,
    pub(crate) function_request_id: String,
    /// The request's trace header, once known (returned as `x-amzn-trace-id`).
    pub(crate) trace_id: String,
    /// The request came with a W3C `traceparent` (it gets one back).
    pub(crate) traceparent: bool,
    /// Why the gateway refused the request without a successful invocation
    /// (a [`crate::auth::Denied`] reason, `invalid_request`, `function_throttled`).
    pub(crate) rejected: &'static str,
}

/// The request's headers as an event carries them (each value of a repeated header
/// kept), minus the forwarding and trace headers the gateway sets itself, plus `host`
/// (from the URI over HTTP/2), `x-amzn-trace-id` and `x-forwarded-for/-port/-proto`
/// as API Gateway and function URLs add them.
pub(crate) fn event_headers<'a>(
    parts: &'a http::request::Parts,
    source_ip: &'a str,
    trace_id: &'a str,
    port: &'a str,
) -> Vec<(&'a str, Cow<'a, str>)> {
    let mut headers: Vec<(&str, Cow<str>)> = Vec::with_capacity(parts.headers.len() + 5);
    let mut xff = None;
    for name in parts.headers.keys() {
        let n = name.as_str();
        if n == "x-forwarded-for" || n == "x-forwarded-proto" || n == "x-forwarded-port" {
            if n == "x-forwarded-for" {
                xff = parts.headers.get(name).map(|v| lossy(v.as_bytes()));
            }
            continue;
        }
        if n == "x-amzn-trace-id" {
            continue;
        }
        for v in parts.headers.get_all(name) {
            headers.push((n, lossy(v.as_bytes())));
        }
    }
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host", Cow::Borrowed(a.as_str())));
        }
    }
    headers.push(("x-amzn-trace-id", Cow::Borrowed(trace_id)));
    headers.push((
        "x-forwarded-for",
        match xff {
            Some(prev) => Cow::Owned(format!("{prev}, {source_ip}")),
            None => Cow::Borrowed(source_ip),
        },
    ));
    headers.push(("x-forwarded-port", Cow::Borrowed(port)));
    headers.push(("x-forwarded-proto", Cow::Borrowed("http")));
    headers
}

/// The trace of a gateway request: its `X-Amzn-Trace-Id`, else its `traceparent`
/// converted, else a new one; noted in the access log.
pub(crate) fn request_trace(headers: &http::HeaderMap, log: &mut Access) -> String {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let trace_id = nimbus_dispatch::trace_header(get("x-amzn-trace-id"), get("traceparent"));
    log.trace_id = trace_id.clone();
    log.traceparent = get("traceparent").is_some();
    trace_id
}

fn too_large() -> Response {
    response::message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
}

pub(crate) fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

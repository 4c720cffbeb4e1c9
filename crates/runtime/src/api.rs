//! The Lambda Runtime API, served to one instance over loopback HTTP/1.1.
//!
//! Routes (all under `/2018-06-01`):
//! * `GET  /runtime/invocation/next` — long-poll; the first call marks init complete.
//! * `POST /runtime/invocation/{id}/response` — buffered or streaming
//!   (`Lambda-Runtime-Function-Response-Mode: streaming`, chunked, error trailers).
//! * `POST /runtime/invocation/{id}/error`
//! * `POST /runtime/init/error`
//!
//! Replies are small and written in one go (`writev` off, `TCP_NODELAY` on), so no
//! call waits on Nagle + delayed ACK.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use nimbus_core::{limits, FunctionError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// One invocation handed to the instance.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline_ms: i64,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub reply: oneshot::Sender<RuntimeReply>,
}

/// What the runtime answered.
#[derive(Debug)]
pub enum RuntimeReply {
    Response(Bytes),
    Error(FunctionError),
}

/// Lifecycle signals from the runtime.
#[derive(Debug)]
pub enum ApiEvent {
    /// First `/next`: init is over.
    Ready,
    InitError(FunctionError),
}

struct State {
    next_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    current: Mutex<Option<(String, oneshot::Sender<RuntimeReply>)>>,
    events: mpsc::UnboundedSender<ApiEvent>,
    ready: AtomicBool,
}

/// A running Runtime API endpoint for one instance.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    pub invocations: mpsc::Sender<Invocation>,
    pub events: mpsc::UnboundedReceiver<ApiEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Bind `127.0.0.1:0` and serve.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (inv_tx, inv_rx) = mpsc::channel(1);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            next_rx: tokio::sync::Mutex::new(inv_rx),
            current: Mutex::new(None),
            events: ev_tx,
            ready: AtomicBool::new(false),
        });
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "runtime api accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .writev(false)
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
                // Reap finished connection tasks.
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            invocations: inv_tx,
            events: ev_rx,
            task,
        })
    }
}

type Resp = Response<Full<Bytes>>;

fn json(status: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn api_error(status: StatusCode, kind: &str, msg: &str) -> Resp {
    let body = serde_json::json!({ "errorMessage": msg, "errorType": kind }).to_string();
    json(status, &body)
}

const ACCEPTED: &str = r#"{"status":"OK"}"#;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return api_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "unknown Runtime API path",
        );
    };
    match (req.method().clone(), rest) {
        (Method::GET, "invocation/next") => next(state).await,
        (Method::POST, "init/error") => {
            let ty = header(&req, "lambda-runtime-function-error-type");
            let body = match read_body(req, 1024 * 1024).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let err = FunctionError::from_runtime_body(&body, ty.as_deref());
            let _ = state.events.send(ApiEvent::InitError(err));
            json(StatusCode::ACCEPTED, ACCEPTED)
        }
        (Method::POST, r) if r.starts_with("invocation/") => {
            let r = &r["invocation/".len()..];
            if let Some(id) = r.strip_suffix("/response") {
                let id = id.to_string();
                response(state, id, req).await
            } else if let Some(id) = r.strip_suffix("/error") {
                let id = id.to_string();
                let ty = header(&req, "lambda-runtime-function-error-type");
                let body = match read_body(req, limits::SYNC_PAYLOAD_MAX).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let err = FunctionError::from_runtime_body(&body, ty.as_deref());
                deliver(&state, &id, RuntimeReply::Error(err))
            } else {
                api_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "unknown Runtime API path",
                )
            }
        }
        _ => api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed on this Runtime API path",
        ),
    }
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("Request must be smaller than {max} bytes"),
        )),
    }
}

async fn next(state: Arc<State>) -> Resp {
    if !state.ready.swap(true, Ordering::SeqCst) {
        let _ = state.events.send(ApiEvent::Ready);
    }
    // A runtime asking for more work without answering the last request abandons it.
    if let Some((_, tx)) = state.current.lock().unwrap().take() {
        let _ = tx.send(RuntimeReply::Error(FunctionError::new(
            "Runtime.InvalidStateTransition",
            "The runtime asked for the next invocation without answering the current one",
        )));
    }
    let inv = {
        let mut rx = state.next_rx.lock().await;
        rx.recv().await
    };
    let Some(inv) = inv else {
        return api_error(
            StatusCode::GONE,
            "ShuttingDown",
            "instance is shutting down",
        );
    };
    let mut r = Response::new(Full::new(inv.payload));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let put = |h: &mut http::HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put(h, "lambda-runtime-aws-request-id", &inv.request_id);
    put(
        h,
        "lambda-runtime-deadline-ms",
        &inv.deadline_ms.to_string(),
    );
    put(h, "lambda-runtime-invoked-function-arn", &inv.function_arn);
    put(h, "lambda-runtime-trace-id", &inv.trace_id);
    if let Some(cc) = &inv.client_context {
        put(h, "lambda-runtime-client-context", cc);
    }
    if let Some(ci) = &inv.cognito_identity {
        put(h, "lambda-runtime-cognito-identity", ci);
    }
    *state.current.lock().unwrap() = Some((inv.request_id, inv.reply));
    r
}

fn deliver(state: &State, id: &str, reply: RuntimeReply) -> Resp {
    let mut cur = state.current.lock().unwrap();
    match cur.as_ref() {
        Some((cur_id, _)) if cur_id == id => {
            let (_, tx) = cur.take().expect("checked");
            let _ = tx.send(reply);
            json(StatusCode::ACCEPTED, ACCEPTED)
        }
        Some(_) => api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            &format!("Invalid request ID: {id}"),
        ),
        None => api_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            &format!("Invalid state transition: no invocation {id} is awaiting a reply"),
        ),
    }
}

async fn response(state: Arc<State>, id: String, req: Request<Incoming>) -> Resp {
    {
        // Refuse early, before reading a body nobody is waiting for.
        let cur = state.current.lock().unwrap();
        match cur.as_ref() {
            Some((cur_id, _)) if *cur_id == id => {}
            _ => {
                drop(cur);
                return deliver(&state, &id, RuntimeReply::Response(Bytes::new()));
            }
        }
    }
    let streaming = req
        .headers()
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"));
    let max = if streaming {
        20 * 1024 * 1024
    } else {
        limits::SYNC_PAYLOAD_MAX
    };
    let collected = match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => c,
        Err(_) => {
            let err = FunctionError::new(
                "Function.ResponseSizeTooLarge",
                format!(
                    "Response payload size exceeded maximum allowed payload size ({max} bytes)."
                ),
            );
            deliver(&state, &id, RuntimeReply::Error(err));
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!(
                    "Response payload size exceeded maximum allowed payload size ({max} bytes)."
                ),
            );
        }
    };
    // Streaming responses report a mid-stream failure in trailers.
    if let Some(trailers) = collected.trailers() {
        if let Some(ty) = trailers.get("lambda-runtime-function-error-type") {
            let ty = ty.to_str().unwrap_or("Unhandled").to_string();
            let body = trailers
                .get("lambda-runtime-function-error-body")
                .and_then(|b| decode_b64(b.as_bytes()))
                .unwrap_or_default();
            let err = FunctionError::from_runtime_body(&body, Some(&ty));
            return deliver(&state, &id, RuntimeReply::Error(err));
        }
    }
    deliver(&state, &id, RuntimeReply::Response(collected.to_bytes()))
}

fn decode_b64(input: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(input).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64() {
        assert_eq!(decode_b64(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_b64(b"aGk=").unwrap(), b"hi");
        assert_eq!(decode_b64(b"YWJj").unwrap(), b"abc");
        assert!(decode_b64(b"!!!!").is_none());
    }
}

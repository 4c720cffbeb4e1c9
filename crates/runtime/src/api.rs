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
use http_body_util::{BodyExt, Full};
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

/// Who may talk to an endpoint: `None` until decided (connections wait), then
/// `Some(None)` anyone local, `Some(Some(uid))` only sockets owned by `uid`.
type Allowed = tokio::sync::watch::Sender<Option<Option<u32>>>;

/// A running Runtime API endpoint for one instance.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    pub invocations: mpsc::Sender<Invocation>,
    pub events: mpsc::UnboundedReceiver<ApiEvent>,
    task: tokio::task::JoinHandle<()>,
    allowed: Allowed,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Bind `127.0.0.1:0` and serve any local process.
    pub async fn start() -> std::io::Result<Self> {
        let api = Self::start_restricted().await?;
        api.allow(None);
        Ok(api)
    }

    /// Bind `127.0.0.1:0` and serve; connections wait until [`RuntimeApi::allow`]
    /// says whose they may be.
    pub async fn start_restricted() -> std::io::Result<Self> {
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
        let (allowed, allowed_rx) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "runtime api accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let mut allowed = allowed_rx.clone();
                conns.spawn(async move {
                    let Ok(rule) = allowed.wait_for(|a| a.is_some()).await.map(|a| a.flatten())
                    else {
                        return;
                    };
                    // Another process (another instance) gets 403 and nothing else.
                    let permitted = match rule {
                        None => true,
                        Some(uid) => stream.local_addr().ok().and_then(|l| {
                            crate::isolation::peer_uid(l, peer)
                        }) == Some(uid),
                    };
                    if !permitted {
                        tracing::warn!(%peer, "refused a Runtime API connection from another process");
                    }
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(if permitted {
                                handle(state, req).await
                            } else {
                                api_error(StatusCode::FORBIDDEN, "AccessDenied", "Forbidden")
                            })
                        }
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
            allowed,
        })
    }

    /// Serve only sockets owned by `uid` (the instance's own uid), or, with
    /// `None`, any local process. Connections made before wait for this.
    pub fn allow(&self, uid: Option<u32>) {
        self.allowed.send_replace(Some(uid));
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

/// Largest buffered response Lambda accepts from a runtime: 6 MB plus 100 bytes
/// (Lambda's own figure in `Function.ResponseSizeTooLarge`, 6291556 bytes).
pub const BUFFERED_RESPONSE_MAX: usize = limits::SYNC_PAYLOAD_MAX + 100;

/// Largest streamed response (Lambda's default soft limit for response streaming).
pub const STREAMING_RESPONSE_MAX: usize = 20 * 1024 * 1024;

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
    match read_capped(req.into_body(), max).await {
        BodyRead::Complete { data, .. } => Ok(data),
        BodyRead::TooLarge => Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("Request must be smaller than {max} bytes"),
        )),
        BodyRead::Broken => Err(broken_body()),
    }
}

/// The reply to a request whose body broke off (the runtime died or hung up mid-send).
/// Nobody is likely to read it; what matters is that nothing is delivered.
fn broken_body() -> Resp {
    api_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
        "the request body ended before it was complete",
    )
}

/// How far past its limit an oversized body is still read (and thrown away) so that
/// the runtime finishes sending and reads the 413, rather than meeting a reset
/// connection. Beyond this the connection is simply closed.
const DRAIN_MAX: usize = 64 * 1024 * 1024;

/// A request body read up to a limit.
#[derive(Debug)]
enum BodyRead {
    /// The whole body, and the trailers of a chunked one.
    Complete {
        data: Bytes,
        trailers: Option<http::HeaderMap>,
    },
    /// More than the limit was sent (the rest was drained, up to [`DRAIN_MAX`]).
    TooLarge,
    /// The body broke off: the connection closed or the framing was invalid.
    Broken,
}

async fn read_capped<B>(mut body: B, max: usize) -> BodyRead
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut data = bytes::BytesMut::new();
    let mut trailers = None;
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return BodyRead::Broken;
        };
        match frame.into_data() {
            Ok(chunk) => {
                seen = seen.saturating_add(chunk.len());
                if seen > DRAIN_MAX {
                    return BodyRead::TooLarge;
                }
                if seen <= max {
                    data.extend_from_slice(&chunk);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    if seen > max {
        return BodyRead::TooLarge;
    }
    BodyRead::Complete {
        data: data.freeze(),
        trailers,
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
    let awaited = matches!(
        state.current.lock().unwrap().as_ref(),
        Some((cur_id, _)) if *cur_id == id
    );
    if !awaited {
        // Nobody waits for this body: throw it away (so that the runtime's send
        // completes and it reads the refusal), then refuse with 400 or 403.
        let _ = read_capped(req.into_body(), 0).await;
        return deliver(&state, &id, RuntimeReply::Response(Bytes::new()));
    }
    let streaming = req
        .headers()
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"));
    let max = if streaming {
        STREAMING_RESPONSE_MAX
    } else {
        BUFFERED_RESPONSE_MAX
    };
    let (data, trailers) = match read_capped(req.into_body(), max).await {
        BodyRead::Complete { data, trailers } => (data, trailers),
        BodyRead::TooLarge => {
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({max} bytes)."
            );
            deliver(
                &state,
                &id,
                RuntimeReply::Error(FunctionError::new("Function.ResponseSizeTooLarge", &msg)),
            );
            return api_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &msg);
        }
        // The runtime hung up mid-response (it crashed, most likely): leave the
        // invocation open so that the instance's exit decides what the caller gets
        // (`Runtime.ExitError`), or a retry by a runtime that is still alive.
        BodyRead::Broken => return broken_body(),
    };
    // Streaming responses report a mid-stream failure in trailers.
    if let Some(ty) = trailers
        .as_ref()
        .and_then(|t| t.get("lambda-runtime-function-error-type"))
    {
        let ty = ty.to_str().unwrap_or("Unhandled").to_string();
        let body = trailers
            .as_ref()
            .and_then(|t| t.get("lambda-runtime-function-error-body"))
            .and_then(|b| decode_b64(b.as_bytes()))
            .unwrap_or_default();
        let err = FunctionError::from_runtime_body(&body, Some(&ty));
        return deliver(&state, &id, RuntimeReply::Error(err));
    }
    deliver(&state, &id, RuntimeReply::Response(data))
}

fn decode_b64(input: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(input).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    #[test]
    fn b64() {
        assert_eq!(decode_b64(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_b64(b"aGk=").unwrap(), b"hi");
        assert_eq!(decode_b64(b"YWJj").unwrap(), b"abc");
        assert!(decode_b64(b"!!!!").is_none());
    }

    /// Start an API, queue one invocation and take it with `/next` as a runtime would.
    async fn one_invocation() -> (RuntimeApi, oneshot::Receiver<RuntimeReply>) {
        let api = RuntimeApi::start().await.unwrap();
        let (tx, rx) = oneshot::channel();
        api.invocations
            .send(Invocation {
                request_id: "rid-1".into(),
                payload: Bytes::from_static(b"{}"),
                deadline_ms: 0,
                function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
                trace_id: "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
                client_context: None,
                cognito_identity: None,
                reply: tx,
            })
            .await
            .unwrap();
        let (status, _) = exchange(
            api.addr,
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        )
        .await;
        assert_eq!(status, 200);
        (api, rx)
    }

    /// Send raw request bytes on a new connection (writing and reading at once) and
    /// return the reply's status and body. Like real runtime clients, this one does
    /// not half-close its side of the connection while it waits for the reply.
    async fn exchange(addr: SocketAddr, request: Vec<u8>) -> (u16, String) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move { wr.write_all(&request).await.map(|()| wr) });
        let mut rd = BufReader::new(rd);
        let mut line = String::new();
        rd.read_line(&mut line).await.unwrap();
        let status: u16 = match line.split(' ').nth(1) {
            Some(s) => s.parse().unwrap(),
            None => panic!("no reply; writer: {:?}", writer.await.map(|r| r.is_ok())),
        };
        let mut len = 0;
        loop {
            let mut h = String::new();
            rd.read_line(&mut h).await.unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; len];
        rd.read_exact(&mut body).await.unwrap();
        writer.await.unwrap().unwrap();
        (status, String::from_utf8(body).unwrap())
    }

    fn post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "POST /2018-06-01/runtime/{path} HTTP/1.1\r\nhost: x\r\n{extra_headers}content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn oversized_response_is_a_413_the_runtime_can_read() {
        let (api, rx) = one_invocation().await;
        let body = vec![b'x'; BUFFERED_RESPONSE_MAX + 1];
        let (status, reply) =
            exchange(api.addr, post("invocation/rid-1/response", "", &body)).await;
        assert_eq!(status, 413, "{reply}");
        assert!(reply.contains("RequestEntityTooLarge"), "{reply}");
        match rx.await.unwrap() {
            RuntimeReply::Error(e) => {
                assert_eq!(e.error_type, "Function.ResponseSizeTooLarge");
                assert_eq!(
                    e.error_message,
                    "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn response_at_the_limit_is_accepted() {
        let (api, rx) = one_invocation().await;
        let body = vec![b'x'; BUFFERED_RESPONSE_MAX];
        let (status, _) = exchange(api.addr, post("invocation/rid-1/response", "", &body)).await;
        assert_eq!(status, 202);
        match rx.await.unwrap() {
            RuntimeReply::Response(b) => assert_eq!(b.len(), BUFFERED_RESPONSE_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_cut_off_mid_stream_delivers_nothing() {
        let (api, mut rx) = one_invocation().await;
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        s.write_all(
            b"POST /2018-06-01/runtime/invocation/rid-1/response HTTP/1.1\r\nhost: x\r\n\
              lambda-runtime-function-response-mode: streaming\r\n\
              transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
        drop(s); // the runtime dies mid-response
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "a broken body must not answer the invocation"
        );
        // The invocation is still open: a runtime that is alive can still answer it.
        let (status, _) = exchange(
            api.addr,
            post(
                "invocation/rid-1/error",
                "",
                br#"{"errorMessage":"retry","errorType":"Retried"}"#,
            ),
        )
        .await;
        assert_eq!(status, 202);
        match rx.await.unwrap() {
            RuntimeReply::Error(e) => assert_eq!(e.error_type, "Retried"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn streaming_body_and_error_trailers() {
        let (api, rx) = one_invocation().await;
        let req = b"POST /2018-06-01/runtime/invocation/rid-1/response HTTP/1.1\r\nhost: x\r\n\
              lambda-runtime-function-response-mode: streaming\r\n\
              transfer-encoding: chunked\r\n\
              trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n\
              3\r\nabc\r\n0\r\n\
              Lambda-Runtime-Function-Error-Type: Boom\r\n\
              Lambda-Runtime-Function-Error-Body: eyJlcnJvck1lc3NhZ2UiOiJtaWQtc3RyZWFtIn0=\r\n\r\n";
        let (status, _) = exchange(api.addr, req.to_vec()).await;
        assert_eq!(status, 202);
        match rx.await.unwrap() {
            RuntimeReply::Error(e) => {
                assert_eq!(e.error_type, "Boom");
                assert_eq!(e.error_message, "mid-stream");
            }
            other => panic!("{other:?}"),
        }
        // Without trailers the streamed bytes are the response.
        let (api, rx) = one_invocation().await;
        let req = b"POST /2018-06-01/runtime/invocation/rid-1/response HTTP/1.1\r\nhost: x\r\n\
              lambda-runtime-function-response-mode: streaming\r\n\
              transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (status, _) = exchange(api.addr, req.to_vec()).await;
        assert_eq!(status, 202);
        match rx.await.unwrap() {
            RuntimeReply::Response(b) => assert_eq!(&b[..], b"abcde"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn wrong_id_is_400_and_answering_twice_is_403() {
        let (api, rx) = one_invocation().await;
        let (status, body) = exchange(api.addr, post("invocation/other/response", "", b"{}")).await;
        assert_eq!(status, 400);
        assert!(body.contains("InvalidRequestID"), "{body}");
        let (status, _) = exchange(api.addr, post("invocation/rid-1/response", "", b"1")).await;
        assert_eq!(status, 202);
        let (status, body) = exchange(api.addr, post("invocation/rid-1/response", "", b"2")).await;
        assert_eq!(status, 403);
        assert!(body.contains("InvalidStateTransition"), "{body}");
        // A large refused body is read and dropped, so the refusal still arrives.
        let big = vec![b'x'; 8 * 1024 * 1024];
        let (status, body) = exchange(api.addr, post("invocation/rid-1/response", "", &big)).await;
        assert_eq!(status, 403);
        assert!(body.contains("InvalidStateTransition"), "{body}");
        match rx.await.unwrap() {
            RuntimeReply::Response(b) => assert_eq!(&b[..], b"1"),
            other => panic!("{other:?}"),
        }
    }
}

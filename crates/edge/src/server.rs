//! The edge listener: hyper's auto connection builder (HTTP/1.1 keep-alive and
//! h2c), with the same limits as the gateway listener — a header-read timeout and
//! a body-read timeout (slowloris), a cap on open connections (past it the
//! listener stops accepting until one closes; the kernel's backlog holds the
//! rest), a cap on the request head's size — and graceful shutdown.

use crate::Edge;
use axum::body::Body;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the edge listener behaves.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// The region of requests whose credential scope names none (`--region`).
    pub region: String,
    /// A client must send a request's whole head within this long.
    pub header_read_timeout: Duration,
    /// A client must send a request's whole body within this long (from when the
    /// edge or the front-end starts reading it).
    pub body_read_timeout: Duration,
    /// Open connections at most; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request head (request line and headers); past it, 431.
    pub max_header_bytes: usize,
    /// Largest form body read to find its `Action` before the API is known.
    pub form_limit: usize,
    /// How to recognise a function instance's connection ([`crate::peers`]);
    /// `None`: instances cannot be told apart (no per-instance uids).
    pub instance_peers: Option<crate::peers::InstancePeers>,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            region: nimbus_core::DEFAULT_REGION.to_owned(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            form_limit: nimbus_protocol::DEFAULT_BODY_LIMIT,
            instance_peers: None,
        }
    }
}

impl Edge {
    /// Serve `listener` until `shutdown` resolves, then stop accepting and wait for
    /// the requests in flight to finish (callers bound the wait).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let settings = self.inner.settings.clone();
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(settings.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(settings.max_header_bytes as u32);
        let builder = Arc::new(builder);
        let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
        let instance_caps = crate::peers::ConnCaps::new(settings.max_connections);
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
                        tracing::warn!(error = %e, "api accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let edge = self.clone();
            let peers = settings.instance_peers.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let header_timeout = settings.header_read_timeout;
            let caps = instance_caps.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // A function instance's connection: its requests must be signed
                // with its own key, and it holds a bounded share of the slots
                // (see `peers`).
                let identity = match (&peers, stream.local_addr()) {
                    (Some(p), Ok(local)) => p.identify(local, peer),
                    (Some(_), Err(_)) => crate::peers::PeerIdentity::Unknown,
                    (None, _) => crate::peers::PeerIdentity::Other,
                };
                let instance = match identity {
                    crate::peers::PeerIdentity::Other => None,
                    crate::peers::PeerIdentity::Instance(i) => Some(i),
                    crate::peers::PeerIdentity::Unknown => {
                        tracing::info!(%peer, "closed a connection whose local socket has no owner any more");
                        return;
                    }
                };
                let _hold = match &instance {
                    Some(i) => match caps.admit(i.uid) {
                        Some(h) => Some(h),
                        None => {
                            tracing::debug!(uid = i.uid, %peer, "instance connection over its cap: closed");
                            return;
                        }
                    },
                    None => None,
                };
                // hyper's header timer starts once the protocol is known; a client
                // that connects and sends nothing is cut off here instead.
                let mut first = [0u8; 1];
                match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let edge = edge.clone();
                    let mut req = req.map(Body::new);
                    req.extensions_mut().insert(crate::authz::PeerAddr(peer));
                    if let Some(i) = &instance {
                        req.extensions_mut().insert(i.clone());
                    }
                    async move { Ok::<_, std::convert::Infallible>(edge.handle(req).await) }
                });
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, peer = %peer, "api connection ended");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }
}

/// `body`, failing once `timeout` has passed since the first poll without it
/// being read to the end (a body sent one byte at a time is cut off).
pub(crate) fn deadline(body: Body, timeout: Duration) -> Body {
    Body::new(Deadline {
        inner: body,
        timeout,
        sleep: None,
    })
}

struct Deadline {
    inner: Body,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for Deadline {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body was not received in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {}s", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

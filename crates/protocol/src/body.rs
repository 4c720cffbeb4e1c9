//! Reading request bodies: per-operation size limits, and the errors a body
//! stream ends with (a chunk signature that failed, a checksum that did not
//! match) carried back out as the [`AwsError`] they are.

use crate::checksum::RunningChecks;
use crate::AwsError;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use std::error::Error as StdError;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The [`AwsError`] a body stream failed with: the one Nimbus's own decoders
/// put there ([`crate::decode_aws_chunked`], [`crate::verify_body_checksums`]),
/// wherever in the chain of wrapping errors it sits; otherwise (the client went
/// away, the connection broke) S3's `IncompleteBody`.
pub fn body_error(err: axum::Error) -> AwsError {
    let mut inner: BoxError = err.into_inner();
    loop {
        inner = match inner.downcast::<AwsError>() {
            Ok(e) => return *e,
            Err(other) => other,
        };
        inner = match inner.downcast::<axum::Error>() {
            Ok(e) => e.into_inner(),
            Err(other) => {
                let mut source = other.source();
                while let Some(s) = source {
                    if let Some(e) = s.downcast_ref::<AwsError>() {
                        return e.clone();
                    }
                    source = s.source();
                }
                return incomplete_body(&other.to_string());
            }
        };
    }
}

fn incomplete_body(detail: &str) -> AwsError {
    tracing::debug!(error = detail, "request body not read to its end");
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "IncompleteBody",
        "The request body ended before its declared length, or could not be read.",
    )
}

/// The largest body an operation accepts, and the error it answers a larger
/// one with (each service has its own: SQS's `InvalidParameterValue`,
/// Lambda's `RequestEntityTooLargeException`, S3's `EntityTooLarge`…).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    /// Bytes.
    pub max: usize,
    /// Builds the error from `max`.
    pub too_large: fn(max: usize) -> AwsError,
}

impl BodyLimit {
    pub const fn new(max: usize, too_large: fn(usize) -> AwsError) -> Self {
        Self { max, too_large }
    }

    /// `max` bytes, answering a larger body with 413
    /// `RequestEntityTooLargeException`.
    pub const fn bytes(max: usize) -> Self {
        Self::new(max, request_entity_too_large)
    }
}

fn request_entity_too_large(max: usize) -> AwsError {
    AwsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLargeException",
        format!("Request must be smaller than {max} bytes for this operation."),
    )
}

/// The length the body will have once read: `x-amz-decoded-content-length` for
/// an aws-chunked body (whose `Content-Length` counts the framing), else
/// `Content-Length`.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let parse = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    parse("x-amz-decoded-content-length").or_else(|| parse(http::header::CONTENT_LENGTH.as_str()))
}

/// Read a whole body no larger than `limit.max`: a declared length over the
/// limit is refused before a byte is read, and the read itself stops as soon as
/// the limit is passed (for bodies of undeclared or lying length). Errors of the
/// body stream come back as [`body_error`] makes them.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: BodyLimit,
) -> Result<Bytes, AwsError> {
    let declared = declared_length(headers);
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit.max as u64) {
        drain(&mut stream, declared.unwrap_or(0)).await;
        return Err((limit.too_large)(limit.max));
    }
    // Preallocate what was declared, but never trust it for more than 1 MiB.
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(1 << 20) as usize);
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(body_error)?;
        if buf.len() + piece.len() > limit.max {
            drain(&mut stream, declared.unwrap_or(DRAIN_MAX)).await;
            return Err((limit.too_large)(limit.max));
        }
        buf.extend_from_slice(&piece);
    }
    Ok(buf.freeze())
}

/// Read a whole body of at most `max` bytes; `Ok(None)` when it is larger (after
/// draining what fits in [`DRAIN_MAX`], so the client reads the refusal). For
/// callers with their own "too large" answer; [`read_body`] is the same with the
/// error built in.
pub async fn read_at_most(
    body: Body,
    headers: &HeaderMap,
    max: usize,
) -> Result<Option<Bytes>, axum::Error> {
    let declared = declared_length(headers);
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > max as u64) {
        drain(&mut stream, declared.unwrap_or(0)).await;
        return Ok(None);
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(1 << 20) as usize);
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        if buf.len() + piece.len() > max {
            drain(&mut stream, declared.unwrap_or(DRAIN_MAX)).await;
            return Ok(None);
        }
        buf.extend_from_slice(&piece);
    }
    Ok(Some(buf.freeze()))
}

/// The most of a refused body read and thrown away so its sender, still
/// writing, reads the error instead of a reset connection.
pub const DRAIN_MAX: u64 = 16 << 20;

/// Read and discard the rest of a refused body when it (as declared) fits in
/// [`DRAIN_MAX`]: a client that sends the whole body before it reads (the AWS
/// SDKs, reqwest) then gets the service's own "too large" error — Lambda's
/// `RequestTooLargeException`, SQS's — rather than "error sending request".
/// Larger bodies are not read: the connection closes after the answer. The
/// edge's body deadline bounds the time spent.
async fn drain<S>(stream: &mut S, declared: u64)
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    if declared > DRAIN_MAX {
        return;
    }
    let mut left = DRAIN_MAX;
    while let Some(Ok(piece)) = stream.next().await {
        let n = piece.len() as u64;
        if n > left {
            return;
        }
        left -= n;
    }
}

/// A body passed through unchanged while declared checksums run over it; a
/// mismatch replaces its end with the error.
pub(crate) struct VerifyStream;

impl VerifyStream {
    pub(crate) fn body(body: Body, checks: RunningChecks) -> Body {
        let stream = futures_util::stream::unfold(
            (body.into_data_stream(), Some(checks)),
            |(mut inner, checks)| async move {
                let mut checks = checks?;
                match inner.next().await {
                    Some(Ok(bytes)) => {
                        checks.update(&bytes);
                        Some((Ok(bytes), (inner, Some(checks))))
                    }
                    Some(Err(e)) => Some((Err(body_error(e)), (inner, None))),
                    None => match checks.finish() {
                        Ok(()) => None,
                        Err(e) => Some((Err(e), (inner, None))),
                    },
                }
            },
        );
        Body::from_stream(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqs_too_large(max: usize) -> AwsError {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            format!("Request body must be at most {max} bytes."),
        )
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_unread() {
        let limit = BodyLimit::new(10, sqs_too_large);
        // The body itself is small: only the declaration can have refused it.
        let e = read_body(
            Body::from("x"),
            &headers(&[("content-length", "11")]),
            limit,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert_eq!(e.message, "Request body must be at most 10 bytes.");
        // A chunked upload is judged by its decoded length.
        let h = headers(&[
            ("content-length", "500"),
            ("x-amz-decoded-content-length", "10"),
        ]);
        assert_eq!(
            read_body(Body::from("0123456789"), &h, limit)
                .await
                .unwrap()
                .len(),
            10
        );
    }

    #[tokio::test]
    async fn undeclared_bodies_are_bounded_while_read() {
        let limit = BodyLimit::bytes(8);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"12345")),
            Ok(Bytes::from_static(b"6789")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let e = read_body(body, &HeaderMap::new(), limit).await.unwrap_err();
        assert_eq!(
            (e.status, e.code.as_ref()),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException"
            )
        );
        let ok = read_body(Body::from("12345678"), &HeaderMap::new(), limit)
            .await
            .unwrap();
        assert_eq!(&ok[..], b"12345678");
    }

    #[tokio::test]
    async fn stream_errors_come_back_as_aws_errors() {
        let chunks: Vec<Result<Bytes, AwsError>> = vec![
            Ok(Bytes::from_static(b"12")),
            Err(AwsError::new(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "m",
            )),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let e = read_body(body, &HeaderMap::new(), BodyLimit::bytes(100))
            .await
            .unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        // Through axum's own to_bytes (which wraps the error once more) too.
        let chunks: Vec<Result<Bytes, AwsError>> = vec![Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "BadDigest",
            "m",
        ))];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let e = axum::body::to_bytes(body, 100).await.unwrap_err();
        assert_eq!(body_error(e).code, "BadDigest");
        // Anything else is an incomplete body.
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Err(std::io::Error::other("connection reset"))];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let e = read_body(body, &HeaderMap::new(), BodyLimit::bytes(100))
            .await
            .unwrap_err();
        assert_eq!(e.code, "IncompleteBody");
    }
}

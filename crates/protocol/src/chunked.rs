//! `aws-chunked` request bodies, decoded as a stream.
//!
//! S3 clients upload with `Content-Encoding: aws-chunked` and one of three
//! `x-amz-content-sha256` modes:
//!
//! | mode | chunk header | after the `0` chunk |
//! |---|---|---|
//! | `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` | `<hex size>;chunk-signature=<sig>` | `\r\n` |
//! | `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` | `<hex size>;chunk-signature=<sig>` | trailer lines, `x-amz-trailer-signature:<sig>`, `\r\n` |
//! | `STREAMING-UNSIGNED-PAYLOAD-TRAILER` | `<hex size>` | trailer lines, `\r\n` |
//!
//! Each chunk is `<header>\r\n<data>\r\n`. The decoder is a push state machine
//! ([`ChunkDecoder`]) fed whatever pieces the connection delivers; it emits the
//! chunk data as it arrives (slices of the input, never a whole chunk, never the
//! whole body), hashing it on the way for the chunk signature and for the
//! trailing checksum. A chunk's signature is checked when its data ends; the
//! trailer's checksum and signature, and the decoded length against
//! `x-amz-decoded-content-length`, when the trailer ends. Any failure ends the
//! stream with the [`AwsError`] (read it back with [`crate::body_error`]) *before*
//! its end: a consumer must treat a body as complete only when it ended without
//! error — which it has to do anyway, since a trailing checksum can only be
//! known at the end.

use crate::checksum::{ChecksumAlgorithm, Hasher};
use crate::{body::body_error, AwsError};
use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use nimbus_auth::ChunkSigner;
use sha2::{Digest as _, Sha256};
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

/// The longest chunk header line accepted (a signed one is about 90 bytes).
const MAX_CHUNK_HEADER: usize = 4096;
/// The most trailer bytes accepted.
const MAX_TRAILER: usize = 16 * 1024;

/// The `x-amz-content-sha256` values of an aws-chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingMode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
    Signed,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`
    SignedWithTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
    UnsignedWithTrailer,
}

impl StreamingMode {
    /// The mode a request declares, `Ok(None)` if its body is not aws-chunked,
    /// and `NotImplemented` for the streaming modes Nimbus does not decode
    /// (`STREAMING-AWS4-HMAC-SHA256-EVENTS`, SigV4a's ECDSA modes).
    pub fn of(headers: &HeaderMap) -> Result<Option<Self>, AwsError> {
        let Some(v) = headers.get("x-amz-content-sha256") else {
            return Ok(None);
        };
        match v.to_str().unwrap_or("").trim() {
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Ok(Some(Self::Signed)),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Ok(Some(Self::SignedWithTrailer)),
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Ok(Some(Self::UnsignedWithTrailer)),
            other if other.starts_with("STREAMING-") => Err(AwsError::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                format!("Nimbus does not accept x-amz-content-sha256: {other} uploads."),
            )),
            _ => Ok(None),
        }
    }

    fn signed(self) -> bool {
        !matches!(self, Self::UnsignedWithTrailer)
    }

    fn trailer(self) -> bool {
        !matches!(self, Self::Signed)
    }
}

/// Whether the request's body is aws-chunked (its `x-amz-content-sha256` is a
/// `STREAMING-…` mode).
pub fn is_aws_chunked(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("STREAMING-"))
}

/// The trailing checksum of an aws-chunked body, set once the body has been
/// read to its end and the checksum verified. [`decode_aws_chunked_request`]
/// puts one in the request's extensions so that the service can store and echo
/// the checksum (S3 answers `x-amz-checksum-crc32` etc.) that arrived after the
/// headers.
#[derive(Debug, Clone, Default)]
pub struct TrailingChecksum(Arc<OnceLock<(ChecksumAlgorithm, String)>>);

impl TrailingChecksum {
    /// The algorithm and base64 value, once verified.
    pub fn get(&self) -> Option<(ChecksumAlgorithm, &str)> {
        self.0.get().map(|(a, v)| (*a, v.as_str()))
    }
}

fn sig_mismatch() -> AwsError {
    AwsError::new(
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. \
         Check your key and signing method.",
    )
}

fn incomplete(detail: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "IncompleteBody",
        format!("The aws-chunked request body is incomplete: {detail}."),
    )
}

fn malformed(detail: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
        format!("The aws-chunked request body is malformed: {detail}."),
    )
}

fn malformed_trailer(detail: &str) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "MalformedTrailerError",
        format!(
            "The request contained trailing data that was not well-formed or did not conform \
             to our published schema: {detail}."
        ),
    )
}

#[derive(Debug)]
enum State {
    /// Waiting for a chunk header line.
    Header,
    /// Inside a chunk's data.
    Data {
        remaining: u64,
        signature: Option<String>,
    },
    /// After a chunk's data: its `\r\n`.
    DataEnd {
        signature: Option<String>,
    },
    /// After the final chunk: trailer lines (or, without a trailer, the `\r\n`).
    Trailer,
    Done,
}

/// The push decoder behind [`decode_aws_chunked`]: feed it the raw body in
/// pieces of any size, get back the decoded data, and call
/// [`ChunkDecoder::finish`] at the end of input.
pub struct ChunkDecoder {
    mode: StreamingMode,
    signer: Option<ChunkSigner>,
    buf: BytesMut,
    state: State,
    chunk_hash: Option<Sha256>,
    checksum: Option<Hasher>,
    decoded: u64,
    expected: Option<u64>,
    /// The trailer lines as signed (`name:value\n`), for the trailer signature.
    trailer_signed: Vec<u8>,
    trailer_bytes: usize,
    trailer_checksum: Option<String>,
    trailer_signature: Option<String>,
    outcome: TrailingChecksum,
}

impl std::fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDecoder")
            .field("mode", &self.mode)
            .field("state", &self.state)
            .field("decoded", &self.decoded)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ChunkDecoder {
    /// A decoder for a request with these headers. `signing` is the chain of
    /// chunk signatures ([`nimbus_auth::Verifier::chunk_signer`]); with `None`
    /// a signed mode's signatures are parsed but not checked (authentication
    /// off). Errors: the body is not aws-chunked or its mode is not supported;
    /// `x-amz-decoded-content-length` or `x-amz-trailer` is not understood.
    pub fn new(headers: &HeaderMap, signing: Option<ChunkSigner>) -> Result<Self, AwsError> {
        let mode = StreamingMode::of(headers)?
            .ok_or_else(|| malformed("x-amz-content-sha256 does not declare a STREAMING- mode"))?;
        let expected = match headers.get("x-amz-decoded-content-length") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        AwsError::new(
                            StatusCode::BAD_REQUEST,
                            "InvalidArgument",
                            "x-amz-decoded-content-length is not a number of bytes.",
                        )
                    })?,
            ),
        };
        let checksum = match (mode.trailer(), headers.get("x-amz-trailer")) {
            (true, Some(v)) => {
                let name = v.to_str().unwrap_or("");
                let alg = ChecksumAlgorithm::from_header_name(name).ok_or_else(|| {
                    AwsError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequest",
                        format!(
                            "The value specified in the x-amz-trailer header is not supported: \
                             {name}."
                        ),
                    )
                })?;
                Some(alg.hasher())
            }
            _ => None,
        };
        let signer = if mode.signed() { signing } else { None };
        Ok(Self {
            mode,
            chunk_hash: signer.as_ref().map(|_| Sha256::new()),
            signer,
            buf: BytesMut::new(),
            state: State::Header,
            checksum,
            decoded: 0,
            expected,
            trailer_signed: Vec::new(),
            trailer_bytes: 0,
            trailer_checksum: None,
            trailer_signature: None,
            outcome: TrailingChecksum::default(),
        })
    }

    /// Where the verified trailing checksum lands at the end.
    pub fn trailing_checksum(&self) -> TrailingChecksum {
        self.outcome.clone()
    }

    /// Decode as much of `input` (appended to what is pending) as possible,
    /// pushing decoded data onto `out`.
    pub fn feed(&mut self, input: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), AwsError> {
        if matches!(self.state, State::Done) {
            if input.is_empty() {
                return Ok(());
            }
            return Err(malformed("data after the final chunk"));
        }
        if self.buf.is_empty() && matches!(self.state, State::Data { .. }) {
            // The common case: a piece entirely (or partly) chunk data; no copy.
            let mut input = input;
            self.take_data_from(&mut input, out);
            if input.is_empty() {
                return Ok(());
            }
            self.buf.extend_from_slice(&input);
        } else {
            self.buf.extend_from_slice(&input);
        }
        self.run(out)
    }

    /// End of input: the body must have ended exactly at the end of its framing.
    pub fn finish(&mut self) -> Result<(), AwsError> {
        match self.state {
            State::Done if self.buf.is_empty() => Ok(()),
            State::Done => Err(malformed("data after the final chunk")),
            State::Data { .. } | State::DataEnd { .. } => Err(incomplete("a chunk is truncated")),
            State::Header => Err(incomplete("the final zero-length chunk is missing")),
            State::Trailer => Err(incomplete("the trailer is truncated")),
        }
    }

    /// Bytes of chunk data still expected (0 outside a chunk's data).
    fn data_remaining(&self) -> u64 {
        match self.state {
            State::Data { remaining, .. } => remaining,
            _ => 0,
        }
    }

    /// Pass chunk data from the front of `input` through, without copying.
    fn take_data_from(&mut self, input: &mut Bytes, out: &mut VecDeque<Bytes>) {
        let n = self.data_remaining().min(input.len() as u64) as usize;
        let data = input.split_to(n);
        self.consume(data, out);
    }

    /// `data` (at most what the chunk still holds) is chunk data: hash it, emit it.
    fn consume(&mut self, data: Bytes, out: &mut VecDeque<Bytes>) {
        let State::Data {
            remaining,
            signature,
        } = &mut self.state
        else {
            return;
        };
        *remaining -= data.len() as u64;
        if !data.is_empty() {
            if let Some(h) = &mut self.chunk_hash {
                h.update(&data);
            }
            if let Some(h) = &mut self.checksum {
                h.update(&data);
            }
            out.push_back(data);
        }
        if *remaining == 0 {
            let signature = signature.take();
            self.state = State::DataEnd { signature };
        }
    }

    fn run(&mut self, out: &mut VecDeque<Bytes>) -> Result<(), AwsError> {
        loop {
            match &mut self.state {
                State::Header => {
                    let Some(line) = self.take_line(MAX_CHUNK_HEADER, "chunk header")? else {
                        return Ok(());
                    };
                    self.start_chunk(&line)?;
                }
                State::Data { .. } => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    // O(1): the data shares the buffer's allocation.
                    let n = self.data_remaining().min(self.buf.len() as u64) as usize;
                    let data = self.buf.split_to(n).freeze();
                    self.consume(data, out);
                }
                State::DataEnd { signature } => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(malformed("a chunk's data is longer than its declared size"));
                    }
                    self.buf.advance(2);
                    let signature = signature.take();
                    self.end_chunk(signature.as_deref())?;
                    self.state = State::Header;
                }
                State::Trailer => {
                    let Some(line) = self.take_line(MAX_TRAILER, "trailer")? else {
                        return Ok(());
                    };
                    if line.is_empty() {
                        self.end_trailer()?;
                        self.state = State::Done;
                    } else if !self.mode.trailer() {
                        return Err(malformed("data after the final chunk"));
                    } else {
                        self.trailer_line(&line)?;
                    }
                }
                State::Done => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    return Err(malformed("data after the final chunk"));
                }
            }
        }
    }

    /// The next `\r\n`-terminated line of the buffer (without it), if complete.
    fn take_line(&mut self, max: usize, what: &str) -> Result<Option<Vec<u8>>, AwsError> {
        let window = &self.buf[..self.buf.len().min(max + 2)];
        match window.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                let line = self.buf.split_to(i).to_vec();
                self.buf.advance(2);
                if matches!(self.state, State::Trailer) {
                    self.trailer_bytes += i + 2;
                    if self.trailer_bytes > MAX_TRAILER {
                        return Err(malformed_trailer("the trailer is too long"));
                    }
                }
                Ok(Some(line))
            }
            None if self.buf.len() > max => Err(if matches!(self.state, State::Trailer) {
                malformed_trailer("a trailer line is too long")
            } else {
                malformed(&format!("a {what} line is too long"))
            }),
            None => Ok(None),
        }
    }

    fn start_chunk(&mut self, line: &[u8]) -> Result<(), AwsError> {
        let line =
            std::str::from_utf8(line).map_err(|_| malformed("a chunk header is not text"))?;
        let mut parts = line.split(';');
        let size_hex = parts.next().unwrap_or("").trim();
        if size_hex.is_empty()
            || size_hex.len() > 16
            || !size_hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(malformed(&format!("bad chunk size {size_hex:?}")));
        }
        let size = u64::from_str_radix(size_hex, 16)
            .map_err(|_| malformed(&format!("bad chunk size {size_hex:?}")))?;
        let mut signature = None;
        for ext in parts {
            if let Some(sig) = ext.trim().strip_prefix("chunk-signature=") {
                signature = Some(sig.to_owned());
            }
        }
        if self.mode.signed() && signature.is_none() {
            return Err(sig_mismatch());
        }
        if let Some(expected) = self.expected {
            if self.decoded + size > expected {
                return Err(malformed(&format!(
                    "the chunks hold more than the {expected} bytes of \
                     x-amz-decoded-content-length"
                )));
            }
        }
        self.decoded += size;
        if size == 0 {
            self.end_chunk(signature.as_deref())?;
            self.state = State::Trailer;
        } else {
            self.state = State::Data {
                remaining: size,
                signature,
            };
        }
        Ok(())
    }

    /// A chunk's data is complete: check its signature.
    fn end_chunk(&mut self, signature: Option<&str>) -> Result<(), AwsError> {
        if let (Some(signer), Some(hash)) = (&mut self.signer, &mut self.chunk_hash) {
            let digest: [u8; 32] = std::mem::take(hash).finalize().into();
            if !signer.verify_chunk(&digest, signature.unwrap_or("")) {
                tracing::debug!(
                    decoded = self.decoded,
                    "aws-chunked: chunk signature mismatch"
                );
                return Err(sig_mismatch());
            }
        }
        Ok(())
    }

    fn trailer_line(&mut self, line: &[u8]) -> Result<(), AwsError> {
        let text = std::str::from_utf8(line).map_err(|_| malformed_trailer("not text"))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| malformed_trailer("a trailer line is not name:value"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("x-amz-trailer-signature") {
            if !self.mode.signed() || self.trailer_signature.is_some() {
                return Err(malformed_trailer("unexpected x-amz-trailer-signature"));
            }
            self.trailer_signature = Some(value.to_owned());
            return Ok(());
        }
        if self.trailer_signature.is_some() {
            return Err(malformed_trailer(
                "a trailer line after the trailer signature",
            ));
        }
        let declared = self.checksum.as_ref().map(Hasher::algorithm);
        match ChecksumAlgorithm::from_header_name(name) {
            Some(alg) if Some(alg) == declared && self.trailer_checksum.is_none() => {
                self.trailer_checksum = Some(value.to_owned());
            }
            _ => {
                return Err(malformed_trailer(&format!(
                    "{name} was not declared in x-amz-trailer"
                )))
            }
        }
        self.trailer_signed.extend_from_slice(line);
        self.trailer_signed.push(b'\n');
        Ok(())
    }

    /// The blank line after the trailer (or after the final chunk): check the
    /// trailer signature, the checksum and the decoded length.
    fn end_trailer(&mut self) -> Result<(), AwsError> {
        if self.mode == StreamingMode::SignedWithTrailer {
            if let Some(signer) = &mut self.signer {
                let sig = self.trailer_signature.as_deref().unwrap_or("");
                if !signer.verify_trailer(&self.trailer_signed, sig) {
                    tracing::debug!("aws-chunked: trailer signature mismatch");
                    return Err(sig_mismatch());
                }
            } else if self.trailer_signature.is_none() {
                return Err(malformed_trailer("the trailer signature is missing"));
            }
        }
        if let Some(h) = self.checksum.take() {
            let alg = h.algorithm();
            let Some(sent) = self.trailer_checksum.take() else {
                return Err(malformed_trailer(&format!(
                    "x-amz-trailer declared {} but the trailer does not carry it",
                    alg.header_name()
                )));
            };
            let want = alg.decode_value(&sent)?;
            if h.finalize() != want {
                return Err(alg.bad_digest());
            }
            let _ = self.outcome.0.set((alg, sent));
        }
        if let Some(expected) = self.expected {
            if self.decoded != expected {
                return Err(incomplete(&format!(
                    "the chunks hold {} bytes, x-amz-decoded-content-length says {expected}",
                    self.decoded
                )));
            }
        }
        Ok(())
    }
}

/// Decode an aws-chunked body as a stream. A body that is not aws-chunked (no
/// `STREAMING-…` `x-amz-content-sha256`) comes back unchanged.
///
/// The returned body yields the decoded data as it arrives and ends with the
/// decoder's [`AwsError`] if a chunk signature, the trailer signature, the
/// trailing checksum, the framing or the decoded length is wrong (see the
/// module docs for when each is known); [`crate::body_error`] turns the stream
/// error back into it. Errors returned here are those the headers alone show.
///
/// `signing` is the chain of chunk signatures the verifier derived from the seed
/// signature ([`nimbus_auth::Verifier::chunk_signer`]); `None` with a signed
/// mode skips the chunk signatures (authentication off).
pub fn decode_aws_chunked(
    body: Body,
    headers: &HeaderMap,
    signing: Option<ChunkSigner>,
) -> Result<Body, AwsError> {
    if !is_aws_chunked(headers) {
        return Ok(body);
    }
    let decoder = ChunkDecoder::new(headers, signing)?;
    Ok(decoded_body(body, decoder))
}

/// [`decode_aws_chunked`] for a whole request: the body is replaced by the
/// decoded stream, the headers made to describe it (`aws-chunked` removed from
/// `Content-Encoding`, `Content-Length` set to `x-amz-decoded-content-length`
/// or removed), and a [`TrailingChecksum`] put in the extensions.
pub fn decode_aws_chunked_request(
    req: axum::extract::Request,
    signing: Option<ChunkSigner>,
) -> Result<axum::extract::Request, AwsError> {
    if !is_aws_chunked(req.headers()) {
        return Ok(req);
    }
    let decoder = ChunkDecoder::new(req.headers(), signing)?;
    let trailing = decoder.trailing_checksum();
    let (mut parts, body) = req.into_parts();
    strip_chunked_headers(&mut parts.headers);
    parts.extensions.insert(trailing);
    Ok(axum::extract::Request::from_parts(
        parts,
        decoded_body(body, decoder),
    ))
}

/// Make the headers of an aws-chunked request describe its decoded body.
pub fn strip_chunked_headers(headers: &mut HeaderMap) {
    let encodings: Vec<String> = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .map(str::to_owned)
        .collect();
    headers.remove(http::header::CONTENT_ENCODING);
    if !encodings.is_empty() {
        if let Ok(v) = http::HeaderValue::from_str(&encodings.join(", ")) {
            headers.insert(http::header::CONTENT_ENCODING, v);
        }
    }
    match headers.get("x-amz-decoded-content-length").cloned() {
        Some(v) => {
            headers.insert(http::header::CONTENT_LENGTH, v);
        }
        None => {
            headers.remove(http::header::CONTENT_LENGTH);
        }
    }
}

fn decoded_body(body: Body, decoder: ChunkDecoder) -> Body {
    struct St {
        inner: axum::body::BodyDataStream,
        decoder: ChunkDecoder,
        out: VecDeque<Bytes>,
        finished: bool,
    }
    let st = St {
        inner: body.into_data_stream(),
        decoder,
        out: VecDeque::new(),
        finished: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.out.pop_front() {
                return Some((Ok(b), st));
            }
            if st.finished {
                return None;
            }
            let result = match st.inner.next().await {
                Some(Ok(piece)) => st.decoder.feed(piece, &mut st.out),
                Some(Err(e)) => Err(body_error(e)),
                None => {
                    st.finished = true;
                    st.decoder.finish()
                }
            };
            if let Err(e) = result {
                st.finished = true;
                st.out.clear();
                return Some((Err::<Bytes, AwsError>(e), st));
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests;

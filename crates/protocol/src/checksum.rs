//! S3's flexible checksums (`x-amz-checksum-crc32|crc32c|crc64nvme|sha1|sha256`)
//! and `Content-MD5`: computing them, and checking the ones a request declares in
//! its headers against the body, whole or as it streams.
//!
//! The CRCs are the `crc-fast` crate's (CRC-32/ISO-HDLC, CRC-32/ISCSI,
//! CRC-64/NVME), the digests RustCrypto's. On the wire every checksum is the
//! base64 of its big-endian bytes.

use crate::body::VerifyStream;
use crate::AwsError;
use axum::body::Body;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// A checksum algorithm of S3's flexible checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every algorithm, in the order S3 documents them.
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// The name in `x-amz-checksum-algorithm` / `ChecksumAlgorithm` and in S3's
    /// messages: `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// The header carrying the checksum: `x-amz-checksum-crc32` etc.
    pub fn header_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The algorithm of a `name()` (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The algorithm of a `header_name()` (any case).
    pub fn from_header_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.header_name().eq_ignore_ascii_case(name.trim()))
    }

    /// Length in bytes of the raw checksum.
    pub fn byte_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// A fresh running checksum.
    pub fn hasher(self) -> Hasher {
        Hasher::new(self)
    }

    /// The base64 checksum of `data`, as S3 writes it.
    pub fn checksum_base64(self, data: &[u8]) -> String {
        let mut h = self.hasher();
        h.update(data);
        h.finalize_base64()
    }

    /// S3's `BadDigest` for a checksum of this algorithm that did not match.
    pub fn bad_digest(self) -> AwsError {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "BadDigest",
            format!(
                "The {} you specified did not match the calculated checksum.",
                self.name()
            ),
        )
    }

    /// S3's answer to a checksum value that is not base64 of the right length.
    pub fn invalid_value(self) -> AwsError {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            format!("Value for {} header is invalid.", self.header_name()),
        )
    }

    /// Decode a base64 checksum value as sent, checking its length.
    pub fn decode_value(self, value: &str) -> Result<Vec<u8>, AwsError> {
        match B64.decode(value.trim()) {
            Ok(raw) if raw.len() == self.byte_len() => Ok(raw),
            _ => Err(self.invalid_value()),
        }
    }
}

enum State {
    Crc(crc_fast::Digest),
    Sha1(Sha1),
    Sha256(Sha256),
}

/// A running checksum: feed it the bytes, read it at the end.
pub struct Hasher {
    algorithm: ChecksumAlgorithm,
    state: State,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        use crc_fast::CrcAlgorithm as C;
        let state = match algorithm {
            ChecksumAlgorithm::Crc32 => State::Crc(crc_fast::Digest::new(C::Crc32IsoHdlc)),
            ChecksumAlgorithm::Crc32c => State::Crc(crc_fast::Digest::new(C::Crc32Iscsi)),
            ChecksumAlgorithm::Crc64Nvme => State::Crc(crc_fast::Digest::new(C::Crc64Nvme)),
            ChecksumAlgorithm::Sha1 => State::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(Sha256::new()),
        };
        Self { algorithm, state }
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc(d) => d.update(data),
            State::Sha1(d) => d.update(data),
            State::Sha256(d) => d.update(data),
        }
    }

    /// The raw checksum, big-endian.
    pub fn finalize(self) -> Vec<u8> {
        match self.state {
            State::Crc(d) => {
                let v = d.finalize();
                if self.algorithm == ChecksumAlgorithm::Crc64Nvme {
                    v.to_be_bytes().to_vec()
                } else {
                    (v as u32).to_be_bytes().to_vec()
                }
            }
            State::Sha1(d) => d.finalize().to_vec(),
            State::Sha256(d) => d.finalize().to_vec(),
        }
    }

    /// The checksum as S3 writes it (base64 of the big-endian bytes).
    pub fn finalize_base64(self) -> String {
        B64.encode(self.finalize())
    }
}

/// The checksums a (non-chunked) request declares in its headers: at most one
/// `x-amz-checksum-*` and a `Content-MD5`, each decoded and checked for form up
/// front. Check them against a buffered body with [`DeclaredChecksums::verify`],
/// or against a streamed one with [`verify_body_checksums`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredChecksums {
    /// The flexible checksum and its raw (decoded) value.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    /// The raw 16 bytes of `Content-MD5`.
    pub content_md5: Option<Vec<u8>>,
}

impl DeclaredChecksums {
    /// Read the declared checksums. Errors as S3 answers them: a value that is
    /// not base64 of the right size (`InvalidRequest`, `InvalidDigest` for
    /// `Content-MD5`), more than one `x-amz-checksum-*` header (`InvalidRequest`).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, AwsError> {
        let mut out = DeclaredChecksums::default();
        for alg in ChecksumAlgorithm::ALL {
            let Some(v) = headers.get(alg.header_name()) else {
                continue;
            };
            if out.checksum.is_some() {
                return Err(AwsError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not \
                     allowed.",
                ));
            }
            let value = v.to_str().map_err(|_| alg.invalid_value())?;
            out.checksum = Some((alg, alg.decode_value(value)?));
        }
        if let Some(v) = headers.get("content-md5") {
            let invalid = || {
                AwsError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidDigest",
                    "The Content-MD5 you specified was not valid.",
                )
            };
            let raw = v
                .to_str()
                .ok()
                .and_then(|s| B64.decode(s.trim()).ok())
                .filter(|raw| raw.len() == 16)
                .ok_or_else(invalid)?;
            out.content_md5 = Some(raw);
        }
        Ok(out)
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.checksum.is_none() && self.content_md5.is_none()
    }

    /// Check a whole buffered body.
    pub fn verify(&self, body: &[u8]) -> Result<(), AwsError> {
        let mut running = self.running();
        running.update(body);
        running.finish()
    }

    pub(crate) fn running(&self) -> RunningChecks {
        RunningChecks {
            checksum: self
                .checksum
                .as_ref()
                .map(|(alg, want)| (alg.hasher(), want.clone())),
            md5: self
                .content_md5
                .as_ref()
                .map(|want| (Md5::new(), want.clone())),
        }
    }
}

/// [`DeclaredChecksums`] being computed over a body as it streams.
pub(crate) struct RunningChecks {
    checksum: Option<(Hasher, Vec<u8>)>,
    md5: Option<(Md5, Vec<u8>)>,
}

impl RunningChecks {
    pub(crate) fn update(&mut self, data: &[u8]) {
        if let Some((h, _)) = &mut self.checksum {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.md5 {
            h.update(data);
        }
    }

    pub(crate) fn finish(self) -> Result<(), AwsError> {
        if let Some((h, want)) = self.md5 {
            if h.finalize().as_slice() != want.as_slice() {
                return Err(AwsError::new(
                    StatusCode::BAD_REQUEST,
                    "BadDigest",
                    "The Content-MD5 you specified did not match what we received.",
                ));
            }
        }
        if let Some((h, want)) = self.checksum {
            let alg = h.algorithm();
            if h.finalize() != want {
                return Err(alg.bad_digest());
            }
        }
        Ok(())
    }
}

/// Wrap a non-chunked body so that the checksums its headers declare
/// (`x-amz-checksum-*`, `Content-MD5`) are verified as it streams: the returned
/// body yields the same bytes and, if a checksum does not match, ends with the
/// `BadDigest` error instead of its end (read it back with [`crate::body_error`]).
/// Declared values of the wrong form are refused up front.
pub fn verify_body_checksums(body: Body, headers: &HeaderMap) -> Result<Body, AwsError> {
    let declared = DeclaredChecksums::from_headers(headers)?;
    if declared.is_empty() {
        return Ok(body);
    }
    Ok(VerifyStream::body(body, declared.running()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values: zlib's CRC32 (`zlib.crc32(b"123456789")`), the check
    /// values of the CRC catalogue for CRC-32C and CRC-64/NVME, and the SHA-1 and
    /// SHA-256 of "123456789".
    #[test]
    fn checksums_match_reference_values() {
        let data = b"123456789";
        let hex_of = |alg: ChecksumAlgorithm| {
            let mut h = alg.hasher();
            h.update(&data[..4]);
            h.update(&data[4..]);
            hex::encode(h.finalize())
        };
        assert_eq!(hex_of(ChecksumAlgorithm::Crc32), "cbf43926");
        assert_eq!(hex_of(ChecksumAlgorithm::Crc32c), "e3069283");
        assert_eq!(hex_of(ChecksumAlgorithm::Crc64Nvme), "ae8b14860a799888");
        assert_eq!(
            hex_of(ChecksumAlgorithm::Sha1),
            "f7c3bc1d808e04732adf679965ccc34ca7ae3441"
        );
        assert_eq!(
            hex_of(ChecksumAlgorithm::Sha256),
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"
        );
        // Python: base64.b64encode(zlib.crc32(b"hello world").to_bytes(4, "big"))
        assert_eq!(
            ChecksumAlgorithm::Crc32.checksum_base64(b"hello world"),
            "DUoRhQ=="
        );
    }

    #[test]
    fn names_round_trip() {
        for alg in ChecksumAlgorithm::ALL {
            assert_eq!(ChecksumAlgorithm::from_name(alg.name()), Some(alg));
            assert_eq!(
                ChecksumAlgorithm::from_header_name(&alg.header_name().to_uppercase()),
                Some(alg)
            );
        }
        assert_eq!(ChecksumAlgorithm::from_name("md5"), None);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn declared_checksums_are_checked_for_form_and_value() {
        let ok = DeclaredChecksums::from_headers(&headers(&[
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            // md5("hello world")
            ("content-md5", "XrY7u+Ae7tCTyyK7j1rNww=="),
        ]))
        .unwrap();
        ok.verify(b"hello world").unwrap();
        let e = ok.verify(b"hello worle").unwrap_err();
        assert_eq!(e.code, "BadDigest");

        let only_crc =
            DeclaredChecksums::from_headers(&headers(&[("x-amz-checksum-crc32", "DUoRhQ==")]))
                .unwrap();
        let e = only_crc.verify(b"hello worle").unwrap_err();
        assert_eq!(
            e.message,
            "The CRC32 you specified did not match the calculated checksum."
        );

        let e = DeclaredChecksums::from_headers(&headers(&[("x-amz-checksum-sha256", "DUoRhQ==")]))
            .unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.message.as_str()),
            (
                "InvalidRequest",
                "Value for x-amz-checksum-sha256 header is invalid."
            )
        );
        let e = DeclaredChecksums::from_headers(&headers(&[("content-md5", "nope")])).unwrap_err();
        assert_eq!(e.code, "InvalidDigest");
        let e = DeclaredChecksums::from_headers(&headers(&[
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("x-amz-checksum-crc32c", "DUoRhQ=="),
        ]))
        .unwrap_err();
        assert_eq!(e.code, "InvalidRequest");
    }

    use crate::body_error;

    #[tokio::test]
    async fn streamed_bodies_end_in_bad_digest_on_mismatch() {
        let h = headers(&[("x-amz-checksum-crc32", "DUoRhQ==")]);
        let good = verify_body_checksums(Body::from("hello world"), &h).unwrap();
        let bytes = axum::body::to_bytes(good, usize::MAX).await.unwrap();
        assert_eq!(&bytes[..], b"hello world");

        let bad = verify_body_checksums(Body::from("hello worlD"), &h).unwrap();
        let err = axum::body::to_bytes(bad, usize::MAX).await.unwrap_err();
        assert_eq!(body_error(err).code, "BadDigest");
    }
}

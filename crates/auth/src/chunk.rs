//! The per-chunk signatures of `aws-chunked` uploads
//! (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`).
//!
//! The request's own signature (the *seed*) is checked by [`crate::Verifier`];
//! every chunk of the body then carries a signature chained from the one before:
//!
//! ```text
//! AWS4-HMAC-SHA256-PAYLOAD\n<amz-date>\n<scope>\n<previous signature>\n
//! <sha256("")>\n<sha256(chunk data)>
//! ```
//!
//! and a signed trailer ends with
//!
//! ```text
//! AWS4-HMAC-SHA256-TRAILER\n<amz-date>\n<scope>\n<previous signature>\n
//! <sha256(trailer headers, each "name:value\n")>
//! ```
//!
//! [`ChunkSigner`] holds the derived signing key and the chain's state; the body
//! reader (`nimbus-protocol`'s aws-chunked decoder) feeds it one chunk hash at a
//! time, so nothing here ever sees more than a digest.

use crate::signing::{self, signing_key};
use crate::{parse, Payload, Scope, Verified, Verifier};
use std::fmt;

/// The content-sha256 modes whose chunks are HMAC-signed.
const SIGNED_MODES: [&str; 2] = [
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
];

/// `sha256("")`, the "headers" line of every chunk's string to sign.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Verifies (or, for Nimbus's own clients and tests, computes) the chain of chunk
/// signatures of one streaming upload. Each successful step advances the chain,
/// so chunks must be fed in order; a failed step leaves it where it was.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkSigner {
    key: [u8; 32],
    amz_date: String,
    scope: String,
    previous: String,
}

impl fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSigner")
            .field("key", &"<redacted>")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("previous", &self.previous)
            .finish()
    }
}

impl ChunkSigner {
    /// A chain starting at `seed_signature` (hex), for a request signed at
    /// `amz_date` (`YYYYMMDDTHHMMSSZ`) under `scope` with `secret`.
    pub fn new(secret: &str, scope: &Scope, amz_date: &str, seed_signature: &str) -> Self {
        Self {
            key: signing_key(secret, &scope.date, &scope.region, &scope.service),
            amz_date: amz_date.to_owned(),
            scope: scope.credential_scope(),
            previous: seed_signature.to_ascii_lowercase(),
        }
    }

    /// The signature the chain stands at (the seed, then the last chunk's).
    pub fn previous_signature(&self) -> &str {
        &self.previous
    }

    fn chunk_string_to_sign(&self, chunk_sha256: &[u8; 32]) -> String {
        format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            hex::encode(chunk_sha256)
        )
    }

    fn trailer_string_to_sign(&self, trailer: &[u8]) -> String {
        format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            signing::sha256_hex(trailer)
        )
    }

    /// Check the signature (hex, as sent) of the next chunk, whose data has
    /// SHA-256 `chunk_sha256`; the final empty chunk is a chunk too. On success
    /// the chain moves on to it.
    pub fn verify_chunk(&mut self, chunk_sha256: &[u8; 32], provided_hex: &str) -> bool {
        let sts = self.chunk_string_to_sign(chunk_sha256);
        self.advance_if_matches(&sts, provided_hex)
    }

    /// Check the signature of the trailer: `trailer` is the trailing headers as
    /// signed, each `name:value\n` (the `x-amz-trailer-signature` line excluded).
    pub fn verify_trailer(&mut self, trailer: &[u8], provided_hex: &str) -> bool {
        let sts = self.trailer_string_to_sign(trailer);
        self.advance_if_matches(&sts, provided_hex)
    }

    /// Sign the next chunk (for senders), advancing the chain.
    pub fn sign_chunk(&mut self, chunk_sha256: &[u8; 32]) -> String {
        let sig = signing::signature(&self.key, &self.chunk_string_to_sign(chunk_sha256));
        self.previous.clone_from(&sig);
        sig
    }

    /// Sign the trailer (for senders), advancing the chain.
    pub fn sign_trailer(&mut self, trailer: &[u8]) -> String {
        let sig = signing::signature(&self.key, &self.trailer_string_to_sign(trailer));
        self.previous.clone_from(&sig);
        sig
    }

    fn advance_if_matches(&mut self, string_to_sign: &str, provided_hex: &str) -> bool {
        let Ok(provided) = hex::decode(provided_hex) else {
            return false;
        };
        if signing::signature_matches(&self.key, string_to_sign, &provided) {
            self.previous = provided_hex.to_ascii_lowercase();
            true
        } else {
            false
        }
    }
}

impl Verifier {
    /// The chunk-signature chain of a verified streaming upload: `Some` when
    /// `verified` is an HMAC-signed `aws-chunked` body
    /// (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`) under a key this
    /// verifier knows; `None` for every other payload (including
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, whose chunks carry no signatures).
    pub fn chunk_signer(&self, verified: &Verified) -> Option<ChunkSigner> {
        let Payload::Streaming {
            mode,
            seed_signature,
        } = &verified.payload
        else {
            return None;
        };
        if !SIGNED_MODES.contains(&mode.as_str()) {
            return None;
        }
        let entry = self.keys.get(&verified.scope.access_key_id)?;
        Some(ChunkSigner::new(
            &entry.secret,
            &verified.scope,
            &parse::format_amz_date(verified.signed_at),
            seed_signature,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credentials, Request};
    use sha2::{Digest, Sha256};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn scope() -> Scope {
        Scope {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            date: "20130524".into(),
            region: "us-east-1".into(),
            service: "s3".into(),
        }
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    /// The worked example of the S3 API reference, "Transferring Payload in
    /// Multiple Chunks": 66560 bytes of `a` in chunks of 65536, 1024 and 0.
    #[test]
    fn s3_streaming_worked_example() {
        let mut signer = ChunkSigner::new(
            SECRET,
            &scope(),
            "20130524T000000Z",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        );
        let sigs = [
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
        ];
        let chunks = [vec![b'a'; 65536], vec![b'a'; 1024], vec![]];
        // Out of order fails and does not move the chain.
        assert!(!signer.verify_chunk(&sha(&chunks[1]), sigs[1]));
        for (chunk, sig) in chunks.iter().zip(sigs) {
            let mut flipped = chunk.clone();
            if let Some(b) = flipped.first_mut() {
                *b = b'b';
                assert!(!signer.verify_chunk(&sha(&flipped), sig));
            }
            assert!(
                signer.verify_chunk(&sha(chunk), sig),
                "chunk of {}",
                chunk.len()
            );
        }
        assert_eq!(signer.previous_signature(), sigs[2]);
    }

    /// The worked example of "Signature calculations for trailing headers":
    /// the same object with a trailing CRC32C.
    #[test]
    fn s3_streaming_trailer_worked_example() {
        let mut signer = ChunkSigner::new(
            SECRET,
            &scope(),
            "20130524T000000Z",
            "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        );
        let sigs = [
            "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
        ];
        for (chunk, sig) in [vec![b'a'; 65536], vec![b'a'; 1024], vec![]]
            .iter()
            .zip(sigs)
        {
            assert!(signer.verify_chunk(&sha(chunk), sig));
        }
        let trailer_sig = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";
        assert!(!signer.verify_trailer(b"x-amz-checksum-crc32c:sOO8/R==\n", trailer_sig));
        assert!(signer.verify_trailer(b"x-amz-checksum-crc32c:sOO8/Q==\n", trailer_sig));
    }

    #[test]
    fn signing_and_verifying_agree() {
        let seed = "00".repeat(32);
        let mut sender = ChunkSigner::new("s", &scope(), "20130524T000000Z", &seed);
        let mut receiver = sender.clone();
        let s1 = sender.sign_chunk(&sha(b"hello"));
        let s2 = sender.sign_chunk(&sha(b""));
        let t = sender.sign_trailer(b"x-amz-checksum-crc32:NhCmhg==\n");
        assert!(!receiver.verify_chunk(&sha(b"hello"), "not hex"));
        assert!(receiver.verify_chunk(&sha(b"hello"), &s1.to_uppercase()));
        assert!(receiver.verify_chunk(&sha(b""), &s2));
        assert!(receiver.verify_trailer(b"x-amz-checksum-crc32:NhCmhg==\n", &t));
        assert!(!format!("{receiver:?}").contains(&hex::encode(receiver.key)));
    }

    #[test]
    fn verifier_hands_out_a_chain_only_for_signed_streaming() {
        let verifier = Verifier::new([Credentials::new("AKIAIOSFODNN7EXAMPLE", SECRET)]);
        let mut headers = http::HeaderMap::new();
        for (k, v) in [
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/\
                 aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-\
                 sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=\
                 4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
        ] {
            headers.insert(k, http::HeaderValue::from_static(v));
        }
        let uri = http::Uri::from_static("/examplebucket/chunkObject.txt");
        let now = time::macros::datetime!(2013-05-24 00:01 UTC);
        let verified = verifier
            .verify_at(&Request::new("PUT", &uri, &headers, None), now)
            .expect("the documented request verifies");
        let mut signer = verifier.chunk_signer(&verified).expect("a signed stream");
        assert!(signer.verify_chunk(
            &sha(&[b'a'; 65536]),
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        ));

        let mut unsigned = verified.clone();
        unsigned.payload = Payload::Streaming {
            mode: "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
            seed_signature: String::new(),
        };
        assert!(verifier.chunk_signer(&unsigned).is_none());
        unsigned.payload = Payload::Unsigned;
        assert!(verifier.chunk_signer(&unsigned).is_none());
    }
}

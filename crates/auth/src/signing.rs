//! The cryptographic steps of SigV4 (the derived signing key, the string to sign
//! and the signature, on the `hmac` and `sha2` crates), and [`Signer`], which
//! signs outgoing requests with them.

use crate::canonical::{self, CanonicalRequest};
use crate::{default_path_rule, parse, Credentials, UNSIGNED_PAYLOAD};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm SigV4 defines for HMAC signing.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256 of canonical request>`.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request)
    )
}

/// Hex signature of `string_to_sign`.
pub(crate) fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(key, string_to_sign.as_bytes()))
}

/// Whether `provided` (raw bytes of the hex signature) is the signature of
/// `string_to_sign`, compared in constant time.
pub(crate) fn signature_matches(key: &[u8; 32], string_to_sign: &str, provided: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(provided).is_ok()
}

/// Signs requests in the `Authorization` header, as the AWS SDKs do, for
/// Nimbus's own clients (the `nimbus` CLI). What it signs is exactly what
/// [`crate::Verifier`] checks, and what AWS's own verifiers would accept.
///
/// Signed headers: `host`, `x-amz-date`, `content-type`, `content-md5` and every
/// other `x-amz-*` header present; never hop-by-hop or proxy-rewritten ones
/// (`content-length`, `user-agent`, `transfer-encoding`, …).
#[derive(Debug, Clone)]
pub struct Signer {
    credentials: Credentials,
    region: String,
    service: String,
}

impl Signer {
    /// Sign as `credentials` for `service` (the signing name, e.g. `lambda`) in `region`.
    pub fn new(
        credentials: Credentials,
        region: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Self {
            credentials,
            region: region.into(),
            service: service.into(),
        }
    }

    /// The access key id requests are signed with.
    pub fn access_key_id(&self) -> &str {
        &self.credentials.access_key_id
    }

    /// Sign a request now: sets `x-amz-date`, `authorization`, `host` (from the
    /// URI's authority, unless already present) and, for `body: None` (a body
    /// that is streamed, not known up front), `x-amz-content-sha256:
    /// UNSIGNED-PAYLOAD`. `uri` is the request target as it will be sent
    /// (already percent-encoded); an absolute URI supplies the host.
    pub fn sign(
        &self,
        method: &str,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        body: Option<&[u8]>,
    ) {
        self.sign_at(method, uri, headers, body, OffsetDateTime::now_utc());
    }

    /// [`Signer::sign`] at an explicit time.
    pub fn sign_at(
        &self,
        method: &str,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        body: Option<&[u8]>,
        now: OffsetDateTime,
    ) {
        headers.remove(http::header::AUTHORIZATION);
        if !headers.contains_key(http::header::HOST) {
            if let Some(authority) = uri.authority() {
                let host = authority.as_str().rsplit('@').next().unwrap_or_default();
                if let Ok(v) = HeaderValue::from_str(host) {
                    headers.insert(http::header::HOST, v);
                }
            }
        }
        let amz_date = parse::format_amz_date(now);
        headers.insert(
            "x-amz-date",
            HeaderValue::from_str(&amz_date).expect("a date is a valid header value"),
        );
        let payload_hash = match body {
            Some(body) => {
                headers.remove("x-amz-content-sha256");
                sha256_hex(body)
            }
            None => {
                headers.insert(
                    "x-amz-content-sha256",
                    HeaderValue::from_static(UNSIGNED_PAYLOAD),
                );
                UNSIGNED_PAYLOAD.to_owned()
            }
        };

        let mut signed: Vec<&str> = headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| {
                matches!(*n, "host" | "content-type" | "content-md5") || n.starts_with("x-amz-")
            })
            .collect();
        signed.sort_unstable();
        signed.dedup();
        let signed_headers = signed.join(";");
        let canonical_headers =
            canonical::canonical_headers(headers, &signed, canonical::Fold::Spaces);
        let path =
            canonical::path_candidates(uri.path(), default_path_rule(&self.service)).swap_remove(0);
        // A raw `+` in the query means a space to form decoding, which is how
        // the server's handlers read it.
        let query = canonical::canonical_query(uri.query().unwrap_or(""), false, true);
        let canonical_request = CanonicalRequest {
            method,
            path: &path,
            query: &query,
            headers: &canonical_headers,
            signed_headers: &signed_headers,
            payload_hash: &payload_hash,
        }
        .to_bytes();

        let date = &amz_date[..8];
        let credential_scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let key = signing_key(
            &self.credentials.secret_access_key,
            date,
            &self.region,
            &self.service,
        );
        let sts = string_to_sign(&amz_date, &credential_scope, &canonical_request);
        let authorization = format!(
            "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, \
             Signature={}",
            self.credentials.access_key_id,
            signature(&key, &sts)
        );
        // Only an access key id, region or service with characters no header may
        // carry fails here; the request then goes unsigned and the server says so.
        if let Ok(v) = HeaderValue::from_str(&authorization) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// The worked example of the AWS General Reference ("Create a signature for an
    /// AWS API request", IAM `ListUsers`, 2015-08-30).
    #[test]
    fn iam_list_users_worked_example() {
        let key = signing_key(SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex::encode(key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let canonical = "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
                         content-type:application/x-www-form-urlencoded; charset=utf-8\n\
                         host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
                         content-type;host;x-amz-date\n\
                         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            canonical.as_bytes(),
        );
        let want = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
        assert_eq!(signature(&key, &sts), want);
        // Only the decoded bytes compare, never the hex text itself.
        assert!(!signature_matches(&key, &sts, want.as_bytes()));
        assert!(signature_matches(&key, &sts, &hex::decode(want).unwrap()));
        let mut tampered = hex::decode(want).unwrap();
        tampered[31] ^= 1;
        assert!(!signature_matches(&key, &sts, &tampered));
        assert!(!signature_matches(&key, &sts, &[]));
    }
}

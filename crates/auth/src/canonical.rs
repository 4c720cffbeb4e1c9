//! The canonical request: how a server rebuilds, from the bytes it received, the
//! exact string the client signed.

use http::HeaderMap;
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) stay, everything else is
/// `%XX` with upper-case hex: SigV4's `UriEncode`.
const ENCODE_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `UriEncode` with `/` kept, for paths.
const ENCODE_PATH: &AsciiSet = &ENCODE_COMPONENT.remove(b'/');

/// How a service canonicalises the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRule {
    /// S3 (and its relatives): the path is used as sent, neither normalised nor
    /// encoded a second time.
    S3,
    /// Every other service: remove `.`/`..` segments and empty segments, then
    /// `UriEncode` the (already percent-encoded) path again, so `%3A` becomes `%253A`.
    Normalized,
}

/// The canonical paths to try, the service's own rule first.
///
/// Signers disagree on paths with percent-escapes: botocore and the Rust SDK
/// double-encode them for non-S3 services, the CRT signer and some hand-written
/// clients do not; for S3 a client may escape a key differently from the spec's
/// `UriEncode`. The second candidate is the spec's single `UriEncode` of the decoded
/// path. Both are functions of the received path, so accepting either does not let a
/// signature move to another resource.
pub(crate) fn path_candidates(wire: &str, rule: PathRule) -> Vec<String> {
    let wire = if wire.is_empty() { "/" } else { wire };
    let mut out = match rule {
        PathRule::S3 => vec![wire.to_owned(), reencode_path(wire)],
        PathRule::Normalized => {
            let normalized = normalize_path(wire);
            vec![
                percent_encode(normalized.as_bytes(), ENCODE_PATH).to_string(),
                reencode_path(&normalized),
            ]
        }
    };
    out.dedup();
    out
}

/// Decode percent-escapes, then `UriEncode` once, segment by segment: an encoded
/// `/` (`%2F`) stays encoded, so `/a%2Fb` and `/a/b` never share a candidate.
fn reencode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let raw: Vec<u8> = percent_decode_str(segment).collect();
            percent_encode(&raw, ENCODE_COMPONENT).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// RFC 3986 §5.2.4 dot-segment removal, plus the collapse of empty segments (`//`)
/// that AWS's signers do. A trailing `/` (or a final `.`/`..`) keeps the trailing
/// slash; the result always starts with `/`.
pub(crate) fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    let trailing = ["/", "/.", "/.."].iter().any(|t| path.ends_with(t));
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query string: every `name=value` pair decoded and `UriEncode`d,
/// sorted by name then value, joined by `&`. A name without `=` gets an empty value.
///
/// `skip_signature` drops `X-Amz-Signature` (presigned URLs). With `plus_is_space`
/// a raw `+` is read as a space (form encoding, as the Rust SDK does) rather than
/// a literal plus (as botocore does).
pub(crate) fn canonical_query(raw: &str, skip_signature: bool, plus_is_space: bool) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = encode_component(name, plus_is_space);
        if skip_signature && name == "X-Amz-Signature" {
            continue;
        }
        pairs.push((name, encode_component(value, plus_is_space)));
    }
    pairs.sort();
    let mut out = String::with_capacity(raw.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

fn encode_component(raw: &str, plus_is_space: bool) -> String {
    let decoded: Vec<u8> = if plus_is_space {
        percent_decode_str(&raw.replace('+', " ")).collect()
    } else {
        percent_decode_str(raw).collect()
    };
    percent_encode(&decoded, ENCODE_COMPONENT).to_string()
}

/// Percent-decode one query component (no `+` handling).
pub(crate) fn decode_component(raw: &str) -> String {
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

/// How a signer trims header values for the canonical headers block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Trim, and fold every run of whitespace (tabs too) into one space: botocore.
    Whitespace,
    /// Trim spaces, and fold runs of spaces only (a tab stays): the AWS SDK for
    /// Rust, Java and the CRT, and the letter of the spec ("sequential spaces").
    Spaces,
}

/// The canonical headers block: for each signed header, in the order the client
/// listed them, `name:value\n`, where several headers of one name are joined with
/// `,` and each value is trimmed and folded per `fold`.
pub(crate) fn canonical_headers(headers: &HeaderMap, signed: &[&str], fold: Fold) -> Vec<u8> {
    let mut out = Vec::with_capacity(signed.len() * 32);
    for name in signed {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let lower = name.to_ascii_lowercase();
        for (i, value) in headers.get_all(lower.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_folded(&mut out, value.as_bytes(), fold);
        }
        out.push(b'\n');
    }
    out
}

/// Whether the two [`Fold`]s could give different blocks: some signed value has
/// whitespace other than a space.
pub(crate) fn folds_differ(headers: &HeaderMap, signed: &[&str]) -> bool {
    signed.iter().any(|name| {
        headers
            .get_all(name.to_ascii_lowercase().as_str())
            .iter()
            .any(|v| {
                v.as_bytes()
                    .iter()
                    .any(|b| b.is_ascii_whitespace() && *b != b' ')
            })
    })
}

/// Append `value` trimmed, with every run of (`fold`) whitespace folded into one space.
fn push_folded(out: &mut Vec<u8>, value: &[u8], fold: Fold) {
    let is_space = |b: u8| match fold {
        Fold::Whitespace => b.is_ascii_whitespace(),
        Fold::Spaces => b == b' ',
    };
    let mut started = false;
    let mut pending_space = false;
    for &b in value {
        if is_space(b) {
            pending_space = started;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            started = true;
        }
    }
}

/// The parts of a canonical request, assembled by [`CanonicalRequest::to_bytes`].
pub(crate) struct CanonicalRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [u8],
    pub signed_headers: &'a str,
    pub payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.method.len()
                + self.path.len()
                + self.query.len()
                + self.headers.len()
                + self.signed_headers.len()
                + self.payload_hash.len()
                + 8,
        );
        for part in [self.method, self.path, self.query] {
            out.extend_from_slice(part.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(self.headers);
        out.push(b'\n');
        out.extend_from_slice(self.signed_headers.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.payload_hash.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn normalizes_dot_segments_and_empty_segments() {
        for (input, want) in [
            ("/", "/"),
            ("//", "/"),
            ("/./", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/./example", "/example"),
            ("//example//", "/example/"),
            ("/a/b/../c/./d", "/a/c/d"),
            ("/a/b/.", "/a/b/"),
            ("/../a", "/a"),
        ] {
            assert_eq!(normalize_path(input), want, "{input}");
        }
    }

    #[test]
    fn non_s3_paths_are_encoded_twice_s3_paths_once() {
        let lambda =
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations";
        assert_eq!(
            path_candidates(lambda, PathRule::Normalized)[0],
            "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A1%253Afunction%253Af/invocations"
        );
        let s3 = "/bucket/my%20key/a..b//c";
        assert_eq!(path_candidates(s3, PathRule::S3)[0], s3);
        // The fallback is the spec's single encoding of the decoded path.
        assert_eq!(
            path_candidates("/bucket/a:b", PathRule::S3),
            vec!["/bucket/a:b".to_owned(), "/bucket/a%3Ab".to_owned()]
        );
        assert_eq!(
            path_candidates("", PathRule::Normalized),
            vec!["/".to_owned()]
        );
        // An encoded slash is never confused with a real one.
        for rule in [PathRule::S3, PathRule::Normalized] {
            let a = path_candidates("/f/a%2Fb", rule);
            let b = path_candidates("/f/a/b", rule);
            assert!(a.iter().all(|c| !b.contains(c)), "{rule:?}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(
            canonical_query("Param-3=Value3&Param=Value2&%E1%88%B4=Value1", false, false),
            "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"
        );
        assert_eq!(
            canonical_query("b=2&a&a=1&c=", false, false),
            "a=&a=1&b=2&c="
        );
        assert_eq!(
            canonical_query("k=a b%2Fc*~", false, false),
            "k=a%20b%2Fc%2A~"
        );
        assert_eq!(canonical_query("k=a+b", false, false), "k=a%2Bb");
        assert_eq!(canonical_query("k=a+b", false, true), "k=a%20b");
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&X-Amz-Date=1", true, false),
            "X-Amz-Date=1"
        );
        assert_eq!(canonical_query("", false, false), "");
    }

    #[test]
    fn header_values_are_trimmed_folded_and_joined() {
        let mut h = HeaderMap::new();
        h.append("my-header1", HeaderValue::from_static("  value4  "));
        h.append("my-header1", HeaderValue::from_static("value1"));
        h.append("my-header2", HeaderValue::from_static("\"a   b \t  c\""));
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        let signed = ["host", "my-header1", "my-header2", "absent"];
        let block = canonical_headers(&h, &signed, Fold::Whitespace);
        assert_eq!(
            String::from_utf8(block).unwrap(),
            "host:example.amazonaws.com\nmy-header1:value4,value1\nmy-header2:\"a b c\"\nabsent:\n"
        );
        assert!(folds_differ(&h, &signed));
        let block = canonical_headers(&h, &signed, Fold::Spaces);
        assert_eq!(
            String::from_utf8(block).unwrap(),
            "host:example.amazonaws.com\nmy-header1:value4,value1\nmy-header2:\"a b \t c\"\nabsent:\n"
        );
        assert!(!folds_differ(&h, &["host", "my-header1"]));
    }
}

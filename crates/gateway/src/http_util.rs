//! Small HTTP helpers of the gateway's hot path, written to avoid allocating when
//! there is nothing to change.

use std::borrow::Cow;

/// Percent-decode a path segment (`+` stays `+`: it is only a space in a query
/// string). Invalid escapes are kept as they are; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether API Gateway hands a body with this `content-type` to the function as
/// text. HTTP APIs pass `text/*`, `application/json`, `application/xml` and
/// `application/javascript` as text and base64-encode everything else, a missing
/// content type and `application/x-www-form-urlencoded` included.
pub fn is_text_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.len() >= 5 && essence[..5].eq_ignore_ascii_case("text/") {
        return true;
    }
    [
        "application/json",
        "application/xml",
        "application/javascript",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
}

/// `content-type` → `Content-Type`: the spelling HTTP/1.1 clients send. hyper
/// hands the gateway lower-cased names, and payload format 1.0 keeps the client's
/// case, so this restores the usual one.
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = true;
    for c in name.chars() {
        if up {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
        up = c == '-';
    }
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// API Gateway's request time: `12/Mar/2020:19:03:58 +0000`.
pub fn clf_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        t.day(),
        MONTHS[t.month() as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An API Gateway style request id (`JKJaXmPLvHcESHA=`): 10 random bytes in base64.
pub fn new_apigw_request_id() -> String {
    use base64::Engine;
    let u = uuid::Uuid::new_v4();
    base64::engine::general_purpose::STANDARD.encode(&u.as_bytes()[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn text_types() {
        assert!(is_text_content_type(Some("text/plain; charset=utf-8")));
        assert!(is_text_content_type(Some("Application/JSON")));
        assert!(!is_text_content_type(Some("application/octet-stream")));
        assert!(!is_text_content_type(Some(
            "application/x-www-form-urlencoded"
        )));
        assert!(!is_text_content_type(None));
    }

    #[test]
    fn formats() {
        assert_eq!(title_case("x-amzn-trace-id"), "X-Amzn-Trace-Id");
        assert_eq!(clf_time(1583348638390), "04/Mar/2020:19:03:58 +0000");
        assert_eq!(new_apigw_request_id().len(), 16);
    }
}

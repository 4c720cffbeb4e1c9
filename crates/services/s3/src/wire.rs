//! A decoded S3 request (bucket, key, query, headers, body) and the pieces of
//! S3's wire every operation shares: answers, ETags, dates, URL encoding.

use crate::error::{internal, S3Error};
use crate::Op;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use nimbus_protocol::{body_error, EdgeContext};
use nimbus_svc_common::Call;
use time::OffsetDateTime;

/// The largest XML request body S3 operations take here.
pub const XML_LIMIT: usize = 2 * 1024 * 1024;

pub struct S3Request {
    pub op: Op,
    pub parts: Parts,
    /// Behind a mutex only to make the request `Sync` (handlers hold `&S3Request`
    /// across awaits); it is taken once, through `&mut self`.
    pub body: std::sync::Mutex<Body>,
    pub request_id: String,
    pub bucket: String,
    pub key: String,
    pub query: Vec<(String, String)>,
}

impl S3Request {
    pub fn new(call: Call<Op>) -> Result<Self, S3Error> {
        let path = call.parts.uri.path();
        let path = path.strip_prefix('/').unwrap_or(path);
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        let bucket = percent_decode(bucket)?;
        let key = percent_decode(key)?;
        if key.len() > 1024 {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "KeyTooLongError",
                "Your key is too long",
            ));
        }
        let query = call
            .parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Ok(Self {
            op: call.op,
            parts: call.parts,
            body: std::sync::Mutex::new(call.body),
            request_id: call.request_id,
            bucket,
            key,
            query,
        })
    }

    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    pub fn region(&self) -> Option<&str> {
        self.parts
            .extensions
            .get::<EdgeContext>()
            .map(|c| c.region.as_str())
    }

    pub fn principal(&self) -> String {
        self.parts
            .extensions
            .get::<EdgeContext>()
            .map(|c| format!("{:?}", c.principal))
            .unwrap_or_else(|| "Root".into())
    }

    /// The body as a stream of chunks, its failures as S3 errors.
    pub fn take_stream(&mut self) -> impl Stream<Item = Result<Bytes, S3Error>> + Send + 'static {
        let body = std::mem::take(self.body.get_mut().unwrap_or_else(|p| p.into_inner()));
        body.into_data_stream()
            .map(|r| r.map_err(|e| S3Error::from(body_error(e))))
    }

    /// The whole (small, XML) body.
    pub async fn read_xml_body(&mut self) -> Result<Bytes, S3Error> {
        let body = std::mem::take(self.body.get_mut().unwrap_or_else(|p| p.into_inner()));
        let limit = nimbus_protocol::BodyLimit::new(XML_LIMIT, |_| crate::wire::xml_too_large());
        nimbus_protocol::read_body(body, &self.parts.headers, limit)
            .await
            .map_err(S3Error::from)
    }

    /// A builder for a successful answer with the request id headers.
    pub fn ok(&self, status: StatusCode) -> http::response::Builder {
        Response::builder()
            .status(status)
            .header("x-amz-request-id", &self.request_id)
            .header("x-amz-id-2", &self.request_id)
    }

    /// An XML answer.
    pub fn xml(&self, body: Vec<u8>) -> Result<Response, S3Error> {
        self.ok(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/xml")
            .body(Body::from(body))
            .map_err(internal)
    }

    /// An empty answer.
    pub fn empty(&self, status: StatusCode) -> Result<Response, S3Error> {
        self.ok(status).body(Body::empty()).map_err(internal)
    }
}

fn xml_too_large() -> nimbus_protocol::AwsError {
    nimbus_protocol::AwsError::new(
        StatusCode::BAD_REQUEST,
        "MaxMessageLengthExceeded",
        "Your request was too big.",
    )
}

/// Decode `%XX` escapes of a path segment (not `+`, which is literal in paths).
pub fn percent_decode(s: &str) -> Result<String, S3Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return Err(S3Error::invalid_argument("Invalid URI escape")),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| S3Error::invalid_argument("The key or bucket name is not valid UTF-8"))
}

/// URL-encode a key as S3 does in event records and in listings with
/// `encoding-type=url` (form encoding: space is `+`, `+` is `%2B`; `/` is kept).
/// botocore decodes listings with `unquote_plus`.
pub fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace("%2F", "/")
}

pub fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

pub fn iso8601_ms(ms: i64) -> String {
    let t = at_ms(ms);
    nimbus_protocol::timestamp::format_iso8601(t)
}

pub fn http_date_ms(ms: i64) -> String {
    nimbus_protocol::timestamp::format_http_date(at_ms(ms))
}

pub fn at_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// An HTTP date (`If-Modified-Since`): RFC 7231's IMF-fixdate, else RFC 2822,
/// else ISO 8601.
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    let s = s.trim();
    if let Some(rest) = s.strip_suffix(" GMT") {
        let with_zone = format!("{rest} +0000");
        if let Ok(t) = OffsetDateTime::parse(&with_zone, &Rfc2822) {
            return Some(t);
        }
    }
    OffsetDateTime::parse(s, &Rfc2822)
        .ok()
        .or_else(|| OffsetDateTime::parse(s, &Rfc3339).ok())
}

pub fn header_value(s: &str) -> Result<HeaderValue, S3Error> {
    HeaderValue::from_str(s).map_err(internal)
}

/// XML text of an element's value for a boolean.
pub fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

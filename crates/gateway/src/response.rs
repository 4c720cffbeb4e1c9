//! Turning a function's result into the HTTP response, per payload format, and the
//! gateway's own error answers.

use crate::route::PayloadFormat;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use serde_json::Value;

pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;

/// A JSON `{"message": …}` answer, API Gateway's shape for its own errors.
pub fn message(status: StatusCode, text: &'static str) -> Response {
    let mut body = Vec::with_capacity(text.len() + 14);
    body.extend_from_slice(b"{\"message\":\"");
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(b"\"}");
    let mut r = http::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

/// The function failed or answered something that is not a valid response.
pub fn bad_gateway() -> Response {
    message(StatusCode::BAD_GATEWAY, "Internal server error")
}

/// Headers a function may not set: they describe the connection, which the
/// gateway owns.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "content-length"
            | "transfer-encoding"
            | "keep-alive"
            | "upgrade"
            | "proxy-connection"
            | "te"
            | "trailer"
    )
}

/// A header value as the function wrote it: strings as they are, numbers and
/// booleans as their JSON text. `None` for anything else.
fn scalar(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}

fn put_header(h: &mut HeaderMap, name: &str, value: &str, append: bool) -> Result<(), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    if hop_by_hop(&n) {
        return Ok(());
    }
    let v =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name:?}"))?;
    if append {
        h.append(n, v);
    } else {
        h.insert(n, v);
    }
    Ok(())
}

/// When a proxy response's `isBase64Encoded` body is decoded to bytes.
#[derive(Debug, Clone, Copy)]
pub enum DecodeBase64<'a> {
    /// HTTP APIs and function URLs: always.
    Always,
    /// REST APIs: only when the request's `Accept` or the response's
    /// `Content-Type` matches one of the API's binary media types; otherwise the
    /// client gets the base64 text, as from API Gateway.
    ForTypes {
        binary_media_types: &'a [String],
        accept: Option<&'a str>,
    },
}

/// Build the client's response from a successful invocation's payload. `Err`
/// carries why the payload is not a valid proxy response (the caller answers 502).
pub fn from_function(format: PayloadFormat, payload: &Bytes) -> Result<Response, String> {
    from_function_with(format, payload, DecodeBase64::Always)
}

/// [`from_function`] with the route's base64 rule.
pub fn from_function_with(
    format: PayloadFormat,
    payload: &Bytes,
    decode: DecodeBase64<'_>,
) -> Result<Response, String> {
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| format!("response is not JSON: {e}"))?;
    let structured = v.as_object().is_some_and(|o| o.contains_key("statusCode"));
    if !structured {
        if format == PayloadFormat::V1 {
            return Err("response has no statusCode".into());
        }
        // Format 2.0 infers a response: 200, application/json, the value as body
        // (a JSON string is sent as its text).
        let body = match &v {
            Value::String(s) => Bytes::from(s.clone()),
            _ => payload.clone(),
        };
        let mut r = http::Response::new(Full::new(body));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(r);
    }
    let o = v.as_object().expect("checked above");
    let status = match &o["statusCode"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .and_then(|n| u16::try_from(n).ok())
    .and_then(|n| StatusCode::from_u16(n).ok())
    .filter(|s| s.as_u16() >= 100 && !s.is_informational())
    .ok_or_else(|| format!("invalid statusCode {}", o["statusCode"]))?;

    let mut headers = HeaderMap::new();
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                if v.is_null() {
                    continue;
                }
                let s = scalar(v).ok_or_else(|| format!("header {k:?} is not a string"))?;
                put_header(&mut headers, k, &s, false)?;
            }
        }
        Some(_) => return Err("headers is not an object".into()),
    }
    match format {
        PayloadFormat::V1 => match o.get("multiValueHeaders") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                // multiValueHeaders wins over headers for the same name.
                for (k, v) in h {
                    let vals = match v {
                        Value::Null => continue,
                        Value::Array(a) => a,
                        _ => return Err(format!("multiValueHeaders {k:?} is not a list")),
                    };
                    if let Ok(n) = HeaderName::from_bytes(k.as_bytes()) {
                        headers.remove(n);
                    }
                    for item in vals {
                        if item.is_null() {
                            continue;
                        }
                        let s = scalar(item)
                            .ok_or_else(|| format!("multiValueHeaders {k:?} holds a non-string"))?;
                        put_header(&mut headers, k, &s, true)?;
                    }
                }
            }
            Some(_) => return Err("multiValueHeaders is not an object".into()),
        },
        PayloadFormat::V2 => match o.get("cookies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for c in a {
                    let s = c.as_str().ok_or("a cookie is not a string")?;
                    let v = HeaderValue::from_str(s).map_err(|_| "invalid cookie".to_string())?;
                    headers.append(SET_COOKIE, v);
                }
            }
            Some(_) => return Err("cookies is not a list".into()),
        },
    }

    let b64 = match o.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("isBase64Encoded is not a boolean".into()),
    };
    let b64 = b64
        && match decode {
            DecodeBase64::Always => true,
            DecodeBase64::ForTypes {
                binary_media_types,
                accept,
            } => {
                let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
                accept.is_some_and(|a| {
                    a.split(',')
                        .any(|t| crate::route::is_binary_media_type(binary_media_types, Some(t)))
                }) || crate::route::is_binary_media_type(binary_media_types, content_type)
            }
        };
    let body = match o.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if b64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| format!("body is not valid base64: {e}"))?,
        ),
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(_) => return Err("body is not a string".into()),
    };
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let mut r = http::Response::new(Full::new(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn run(format: PayloadFormat, v: &str) -> Result<(u16, HeaderMap, Vec<u8>), String> {
        let r = from_function(format, &Bytes::from(v.to_string()))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = futures_body(r.into_body());
        Ok((status, headers, body))
    }

    fn futures_body(b: Body) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { b.collect().await.unwrap().to_bytes().to_vec() })
    }

    #[test]
    fn v2_infers_a_response_without_status_code() {
        let (s, h, b) = run(PayloadFormat::V2, r#"{ "message": "hi" }"#).unwrap();
        assert_eq!(s, 200);
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(b, br#"{ "message": "hi" }"#);
        let (_, _, b) = run(PayloadFormat::V2, r#""Hello from Lambda!""#).unwrap();
        assert_eq!(b, b"Hello from Lambda!");
        assert!(run(PayloadFormat::V1, r#"{ "message": "hi" }"#).is_err());
    }

    #[test]
    fn structured_responses() {
        let (s, h, b) = run(
            PayloadFormat::V1,
            r#"{"statusCode": 201, "headers": {"X-A": "1", "X-B": "h"},
                "multiValueHeaders": {"x-b": ["m1", "m2"]}, "body": "aGk=", "isBase64Encoded": true}"#,
        )
        .unwrap();
        assert_eq!(s, 201);
        assert_eq!(h["x-a"], "1");
        let xb: Vec<_> = h.get_all("x-b").iter().collect();
        assert_eq!(xb, ["m1", "m2"]);
        assert_eq!(b, b"hi");
        let (_, h, _) = run(
            PayloadFormat::V2,
            r#"{"statusCode": 200, "cookies": ["a=1", "b=2; Path=/"], "body": ""}"#,
        )
        .unwrap();
        let c: Vec<_> = h.get_all(SET_COOKIE).iter().collect();
        assert_eq!(c, ["a=1", "b=2; Path=/"]);
    }

    #[test]
    fn malformed_responses() {
        for v in [
            "not json",
            r#"{"statusCode": "abc"}"#,
            r#"{"statusCode": 99}"#,
            r#"{"statusCode": 200, "body": {"x": 1}}"#,
            r#"{"statusCode": 200, "headers": []}"#,
            r#"{"statusCode": 200, "headers": {"bad name": "x"}}"#,
            r#"{"statusCode": 200, "body": "!!", "isBase64Encoded": true}"#,
        ] {
            assert!(run(PayloadFormat::V2, v).is_err(), "{v}");
        }
    }
}

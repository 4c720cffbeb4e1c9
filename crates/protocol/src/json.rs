//! JSON bodies: awsJson 1.0/1.1 (`X-Amz-Target` operations) and restJson1.
//!
//! Decoding is into the operation's own `serde` input type; a body that is not
//! JSON, or does not fit the type, is the protocol's client error
//! (`SerializationException` for awsJson, a code the service picks for
//! restJson1) naming the member at fault. An empty body is `{}`, as AWS's JSON
//! services treat it.

use crate::{AwsError, Protocol};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The `Content-Type` of a JSON protocol's bodies.
pub fn json_content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::AwsJson10 => "application/x-amz-json-1.0",
        Protocol::AwsJson11 => "application/x-amz-json-1.1",
        _ => "application/json",
    }
}

/// Decode an awsJson request body into `T`; `SerializationException` (400) if
/// it is not JSON or does not fit.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    decode_json_as(body, "SerializationException")
}

/// Decode a JSON body into `T`, answering a bad one with `code` (400): restJson1
/// services differ (`BadRequestException` for SES v2 and API Gateway,
/// `SerializationException` for others).
pub fn decode_json_as<T: DeserializeOwned>(body: &[u8], code: &'static str) -> Result<T, AwsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() || path == "." {
            format!("The request body is not valid JSON for this operation: {inner}.")
        } else {
            format!("Could not read the member '{path}' of the request: {inner}.")
        };
        AwsError::new(StatusCode::BAD_REQUEST, code, message)
    })?;
    // Trailing garbage after the value.
    de.end().map_err(|e| {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("The request body is not valid JSON for this operation: {e}."),
        )
    })?;
    Ok(value)
}

/// Options of [`encode_json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonOptions {
    /// DynamoDB's `x-amz-crc32`: the CRC32 of the response body, in decimal.
    pub crc32: bool,
    pub status: StatusCode,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            crc32: false,
            status: StatusCode::OK,
        }
    }
}

impl JsonOptions {
    /// DynamoDB (and DynamoDB Streams): `x-amz-crc32` on every answer.
    pub fn dynamodb() -> Self {
        Self {
            crc32: true,
            ..Self::default()
        }
    }
}

/// Write `value` as a JSON protocol's answer: the protocol's content type,
/// `x-amzn-RequestId`, and the options'. A value that cannot be serialized
/// (a bug) is logged and answered 500 `InternalFailure`.
pub fn encode_json<T: Serialize + ?Sized>(
    protocol: Protocol,
    request_id: &str,
    value: &T,
    options: JsonOptions,
) -> Response {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (options.status, body),
        Err(e) => {
            tracing::error!(error = %e, "response not serializable as JSON");
            let body = serde_json::json!({
                "__type": "InternalFailure",
                "message": "The response could not be written.",
            });
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                body.to_string().into_bytes(),
            )
        }
    };
    let crc = options.crc32.then(|| crc_fast::crc32_iso_hdlc(&body));
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(json_content_type(protocol)),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(crc) = crc {
        h.insert("x-amz-crc32", HeaderValue::from(crc));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct ListQueues {
        queue_name_prefix: Option<String>,
        max_results: Option<u32>,
    }

    #[test]
    fn empty_bodies_are_empty_objects() {
        for body in [&b""[..], b"  \n", b"{}"] {
            let got: ListQueues = decode_json(body).unwrap();
            assert_eq!(
                got,
                ListQueues {
                    queue_name_prefix: None,
                    max_results: None
                }
            );
        }
    }

    #[test]
    fn bad_bodies_are_serialization_exceptions_naming_the_member() {
        let e = decode_json::<ListQueues>(br#"{"MaxResults": "ten"}"#).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_ref()),
            (StatusCode::BAD_REQUEST, "SerializationException")
        );
        assert!(e.message.contains("'MaxResults'"), "{}", e.message);
        assert!(
            e.message.contains("invalid type: string \"ten\""),
            "{}",
            e.message
        );

        let e = decode_json::<ListQueues>(b"{\"MaxResults\": 1").unwrap_err();
        assert!(
            e.message.starts_with("The request body is not valid JSON"),
            "{}",
            e.message
        );
        let e = decode_json::<ListQueues>(b"[1]").unwrap_err();
        assert_eq!(e.code, "SerializationException");
        let e = decode_json::<ListQueues>(b"{} {}").unwrap_err();
        assert_eq!(e.code, "SerializationException");
        let e = decode_json_as::<ListQueues>(b"nope", "BadRequestException").unwrap_err();
        assert_eq!(e.code, "BadRequestException");
    }

    #[tokio::test]
    async fn dynamodb_answers_carry_the_body_crc32() {
        let r = encode_json(
            Protocol::AwsJson10,
            "rid",
            &serde_json::json!({"TableNames": []}),
            JsonOptions::dynamodb(),
        );
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
        assert_eq!(r.headers()["x-amzn-requestid"], "rid");
        let crc: u32 = r.headers()["x-amz-crc32"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"TableNames":[]}"#);
        // zlib.crc32(b'{"TableNames":[]}')
        assert_eq!(crc, 1_315_925_753);

        let r = encode_json(Protocol::AwsJson11, "rid", &1, JsonOptions::default());
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.1");
        assert!(r.headers().get("x-amz-crc32").is_none());
    }
}

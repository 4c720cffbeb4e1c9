//! Browser-based uploads (S3's POST Object): a `multipart/form-data` `POST` to
//! `/<bucket>` whose form carries the key, the object's headers, a base64 JSON
//! policy (expiration and conditions every other field must satisfy) and its
//! SigV4 signature (`x-amz-signature`, the HMAC of the base64 policy under the
//! key derived from `x-amz-credential`). What `boto3`'s
//! `generate_presigned_post` and HTML upload forms send.
//!
//! The fields before `file` are read (at most 20 KiB, as S3), the policy and
//! its signature are checked, then the file streams into a staged blob like a
//! PUT's body (never whole in memory), bounded by the policy's
//! `content-length-range`; fields after `file` are ignored, as S3 does. The
//! signature is checked through the [`PostPolicyVerifier`] the edge puts in the
//! request when authentication is on (it holds the keys); with authentication
//! off a policy, when given, is still checked for expiry and conditions.

use crate::error::{internal, S3Error};
use crate::notify::{self, Change};
use crate::store::{self, Object};
use crate::wire::{self, quoted};
use crate::State;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use nimbus_protocol::{xml_document, EdgeContext, PostPolicyVerifier, S3_NAMESPACE};
use serde_json::Value;
use std::sync::Arc;
use time::OffsetDateTime;

/// The most the form fields before `file` may hold together (S3's 20 KB).
pub const MAX_FIELDS: usize = 20 * 1024;

/// Whether a (path-style) request is a browser POST upload: `POST /<bucket>`
/// with a `multipart/form-data` body.
pub fn is_post_upload(req: &Request) -> bool {
    let bucket = req.uri().path().trim_start_matches('/');
    let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
    req.method() == http::Method::POST
        && req.uri().query().is_none_or(str::is_empty)
        && !bucket.is_empty()
        && !bucket.contains('/')
        && content_type(req.headers())
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"))
}

fn content_type(h: &HeaderMap) -> Option<&str> {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn malformed(detail: &str) -> S3Error {
    tracing::debug!(detail, "malformed POST upload");
    S3Error::new(
        StatusCode::BAD_REQUEST,
        "MalformedPOSTRequest",
        "The body of your POST request is not well-formed multipart/form-data.",
    )
}

fn policy_denied(why: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        format!("Invalid according to Policy: {why}"),
    )
}

fn invalid_policy(why: &str) -> S3Error {
    S3Error::new(
        StatusCode::BAD_REQUEST,
        "InvalidPolicyDocument",
        format!("Invalid Policy: {why}"),
    )
}

fn missing_field(name: &str) -> S3Error {
    S3Error::invalid_argument(format!(
        "Bucket POST must contain a field named '{name}'.  If it is specified, please check the \
         order of the fields."
    ))
    .field("ArgumentName", name)
    .field("ArgumentValue", "")
}

/// The form fields (names lower-cased, in order).
#[derive(Debug, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed policy document.
#[derive(Debug)]
pub struct Policy {
    pub expiration: OffsetDateTime,
    pub conditions: Vec<Value>,
}

impl Policy {
    /// Decode the form's base64 JSON `policy`.
    pub fn parse(b64: &str) -> Result<Self, S3Error> {
        use base64::Engine;
        let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| invalid_policy("Invalid Simple-Base64 value."))?;
        let doc: Value =
            serde_json::from_slice(&raw).map_err(|_| invalid_policy("Invalid JSON."))?;
        let Some(obj) = doc.as_object() else {
            return Err(invalid_policy("Invalid JSON."));
        };
        let expiration = match obj.get("expiration") {
            None => return Err(invalid_policy("Policy missing expiration.")),
            Some(Value::String(s)) => parse_expiration(s)
                .ok_or_else(|| invalid_policy(&format!("Invalid 'expiration' value: '{s}'")))?,
            Some(_) => return Err(invalid_policy("Invalid 'expiration' value.")),
        };
        let conditions = match obj.get("conditions") {
            None => return Err(invalid_policy("Policy missing conditions.")),
            Some(Value::Array(c)) => c.clone(),
            Some(_) => return Err(invalid_policy("Invalid 'conditions' value.")),
        };
        Ok(Self {
            expiration,
            conditions,
        })
    }

    /// Check the expiration and every condition against the form: `Ok` with
    /// the allowed content length range (inclusive).
    pub fn check(
        &self,
        form: &Form,
        bucket: &str,
        now: OffsetDateTime,
    ) -> Result<(u64, u64), S3Error> {
        if now > self.expiration {
            return Err(policy_denied("Policy expired."));
        }
        let value_of = |name: &str| -> Option<String> {
            let name = name.to_ascii_lowercase();
            if name == "bucket" {
                return Some(bucket.to_string());
            }
            form.get(&name).map(str::to_string)
        };
        let mut covered: Vec<String> = vec!["bucket".into()];
        let mut range = (0u64, crate::MAX_PUT);
        for c in &self.conditions {
            let failed = || policy_denied(format!("Policy Condition failed: {}", show(c)));
            match c {
                Value::Object(m) => {
                    for (k, v) in m {
                        let want = v.as_str().ok_or_else(|| {
                            invalid_policy("Invalid Simple-Condition: value must be a string.")
                        })?;
                        covered.push(k.to_ascii_lowercase());
                        if value_of(k).as_deref() != Some(want) {
                            return Err(failed());
                        }
                    }
                }
                Value::Array(a) => {
                    let op = a
                        .first()
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase);
                    match (op.as_deref(), a.len()) {
                        (Some("content-length-range"), 3) => {
                            let n = |v: &Value| {
                                v.as_u64()
                                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                            };
                            match (n(&a[1]), n(&a[2])) {
                                (Some(lo), Some(hi)) => range = (lo, hi),
                                _ => {
                                    return Err(invalid_policy(
                                        "Invalid content-length-range condition.",
                                    ))
                                }
                            }
                        }
                        (Some(op @ ("eq" | "starts-with")), 3) => {
                            let (Some(field), Some(want)) = (a[1].as_str(), a[2].as_str()) else {
                                return Err(invalid_policy(&format!(
                                    "Invalid '{op}' condition: {}",
                                    show(c)
                                )));
                            };
                            let Some(field) = field.strip_prefix('$') else {
                                return Err(invalid_policy(&format!(
                                    "Invalid '{op}' condition: the field must start with '$': {}",
                                    show(c)
                                )));
                            };
                            covered.push(field.to_ascii_lowercase());
                            let got = value_of(field).unwrap_or_default();
                            let ok = if op == "eq" {
                                got == want
                            } else if field.eq_ignore_ascii_case("content-type") {
                                // A list of content types: each must match.
                                got.split(',').all(|t| t.trim().starts_with(want))
                            } else {
                                got.starts_with(want)
                            };
                            if !ok {
                                return Err(failed());
                            }
                        }
                        _ => {
                            return Err(invalid_policy(&format!("Invalid condition: {}", show(c))))
                        }
                    }
                }
                _ => return Err(invalid_policy("Invalid condition.")),
            }
        }
        // Every field but these must be named by a condition.
        let extra: Vec<&str> = form
            .fields
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| {
                !matches!(
                    *k,
                    "x-amz-signature" | "file" | "policy" | "signature" | "awsaccesskeyid"
                ) && !k.starts_with("x-ignore-")
                    && !covered.iter().any(|c| c == k)
            })
            .collect();
        if !extra.is_empty() {
            return Err(policy_denied(format!(
                "Extra input fields: {}",
                extra.join(", ")
            )));
        }
        Ok(range)
    }
}

/// A condition as S3 quotes it in its error (`["eq", "$key", "a"]`).
fn show(c: &Value) -> String {
    match c {
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// `2026-12-05T20:00:00Z`, with or without fractional seconds.
fn parse_expiration(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Serve a POST upload.
pub async fn post_object(state: &Arc<State>, req: Request) -> Result<Response, S3Error> {
    let (parts, body) = req.into_parts();
    let ctx = parts.extensions.get::<EdgeContext>().cloned();
    let request_id = ctx
        .as_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let path = parts.uri.path().trim_matches('/');
    let bucket = wire::percent_decode(path)?;
    {
        let b = bucket.clone();
        state
            .store
            .read(move |c| store::require_bucket(c, &b).map(|_| ()))
            .await?;
    }
    let boundary = content_type(&parts.headers)
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| malformed("no boundary"))?;
    let mut mp = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut form = Form::default();
    let mut size = 0usize;
    let file = loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(S3Error::invalid_argument(
                    "POST requires exactly one file upload per request.",
                )
                .field("ArgumentName", "file")
                .field("ArgumentValue", "0"))
            }
            Err(e) => return Err(malformed(&e.to_string())),
        };
        let name = field.name().unwrap_or("").to_ascii_lowercase();
        if name == "file" {
            break field;
        }
        let mut field = field;
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| malformed(&e.to_string()))? {
            size += chunk.len() + name.len();
            if size > MAX_FIELDS {
                return Err(S3Error::new(
                    StatusCode::BAD_REQUEST,
                    "MaxPostPreDataLengthExceeded",
                    "Your POST request fields preceding the upload file were too large.",
                ));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value).map_err(|_| malformed("a field is not UTF-8"))?;
        form.fields.push((name, value));
    };
    let Some(key_field) = form.get("key") else {
        return Err(missing_field("key"));
    };
    let filename = file.file_name().unwrap_or("").to_string();
    let key = key_field.replace("${filename}", &filename);
    if key.is_empty() {
        return Err(missing_field("key"));
    }
    if key.len() > 1024 {
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "KeyTooLongError",
            "Your key is too long",
        ));
    }
    let mut principal = nimbus_core::Principal::Root;
    let verifier = parts.extensions.get::<PostPolicyVerifier>().cloned();
    if verifier.is_some()
        && (form.get("awsaccesskeyid").is_some() || form.get("signature").is_some())
    {
        return Err(S3Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "Nimbus checks SigV4 POST policies (x-amz-signature) only; SigV2 fields \
             (AWSAccessKeyId, signature) are not supported.",
        ));
    }
    let range = match form.get("policy") {
        Some(p) => {
            let policy = Policy::parse(p)?;
            if let Some(v) = &verifier {
                if let Some(alg) = form.get("x-amz-algorithm") {
                    if alg != "AWS4-HMAC-SHA256" {
                        return Err(S3Error::invalid_argument(format!(
                            "The algorithm {alg} is not supported."
                        ))
                        .field("ArgumentName", "x-amz-algorithm")
                        .field("ArgumentValue", alg));
                    }
                }
                let credential = form
                    .get("x-amz-credential")
                    .ok_or_else(|| missing_field("x-amz-credential"))?;
                let signature = form
                    .get("x-amz-signature")
                    .ok_or_else(|| missing_field("x-amz-signature"))?;
                principal =
                    v.0.check(credential, p, signature, form.get("x-amz-security-token"))
                        .map_err(S3Error::from)?;
            }
            policy.check(&form, &bucket, OffsetDateTime::now_utc())?
        }
        None if verifier.is_some() => {
            // Authentication is on: an upload without a signed policy is anonymous.
            return Err(S3Error::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Access Denied",
            ));
        }
        None => (0, crate::MAX_PUT),
    };
    // The object's headers, from the form fields of the same names.
    let mut headers = HeaderMap::new();
    for (k, v) in &form.fields {
        let wanted = k.starts_with("x-amz-meta-")
            || matches!(
                k.as_str(),
                "content-type"
                    | "cache-control"
                    | "content-disposition"
                    | "content-encoding"
                    | "content-language"
                    | "expires"
                    | "x-amz-storage-class"
            );
        if !wanted {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(n, v);
        }
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        let ct = file
            .content_type()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "binary/octet-stream".into());
        if let Ok(v) = HeaderValue::from_str(&ct) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
    }
    let mut meta = crate::objects::meta_from_headers(&headers)?;
    meta.tags.clear();
    let (min, max) = (range.0, range.1.min(crate::MAX_PUT));
    let stream =
        file.map(|r: Result<Bytes, multer::Error>| r.map_err(|e| malformed(&e.to_string())));
    let staged = match state.store.stage(stream, None, max).await {
        Ok(s) => s,
        Err(e) if e.0.code == "EntityTooLarge" => {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
            )
            .field("MaxSizeAllowed", max.to_string()))
        }
        Err(e) => return Err(e),
    };
    if staged.size < min {
        state.store.discard(&staged);
        return Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "EntityTooSmall",
            "Your proposed upload is smaller than the minimum allowed size",
        )
        .field("ProposedSize", staged.size.to_string())
        .field("MinSizeAllowed", min.to_string()));
    }
    drop(mp);
    let obj = Object {
        key: key.clone(),
        blob: staged.sha256.clone(),
        size: staged.size,
        etag: hex::encode(staged.md5),
        modified_ms: store::now_ms(),
        meta,
        version_id: None,
    };
    let change = Change {
        category: "ObjectCreated",
        name: "Post",
        key: key.clone(),
        size: Some(obj.size),
        etag: Some(obj.etag.clone()),
        request_id: request_id.clone(),
        principal: format!("{principal:?}"),
        time_ms: store::now_ms(),
        version_id: None,
    };
    let etag = obj.etag.clone();
    let b = bucket.clone();
    let (queued, version_id) = state
        .store
        .tx(move |tx, st| {
            let mut obj = obj;
            let bucket_row = match store::require_bucket(tx, &b) {
                Ok(row) => row,
                Err(e) => {
                    st.discard(&staged);
                    return Err(e);
                }
            };
            st.link(&staged)?;
            let release = store::put_object_row(tx, &b, &mut obj)?;
            let queued = notify::enqueue(tx, &bucket_row, change.with_object(&obj))?;
            for old in release {
                st.release(tx, &old)?;
            }
            Ok((queued, obj.version_id))
        })
        .await?;
    if queued {
        state.notify.wake();
    }
    tracing::debug!(bucket = %bucket, request_id = %request_id, "POST upload stored");
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let location = format!(
        "http://{host}/{bucket}/{}",
        wire::url_encode(&key).replace('+', "%20")
    );
    let mut resp = Response::builder()
        .header("x-amz-request-id", &request_id)
        .header("x-amz-id-2", &request_id)
        .header("etag", quoted(&etag));
    if let Some(v) = &version_id {
        resp = resp.header("x-amz-version-id", v.as_str());
    }
    let redirect = form
        .get("success_action_redirect")
        .or_else(|| form.get("redirect"))
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    if let Some(url) = redirect {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("bucket", &bucket)
            .append_pair("key", &key)
            .append_pair("etag", &quoted(&etag))
            .finish();
        let sep = if url.contains('?') { '&' } else { '?' };
        let to = format!("{url}{sep}{q}");
        return resp
            .status(StatusCode::SEE_OTHER)
            .header(http::header::LOCATION, wire::header_value(&to)?)
            .body(Body::empty())
            .map_err(internal);
    }
    let resp = resp.header(http::header::LOCATION, wire::header_value(&location)?);
    match form.get("success_action_status") {
        Some("200") => resp
            .status(StatusCode::OK)
            .body(Body::empty())
            .map_err(internal),
        Some("201") => {
            let xml = xml_document("PostResponse", Some(S3_NAMESPACE), |w| {
                w.element("Location", &location)
                    .element("Bucket", &bucket)
                    .element("Key", &key)
                    .element("ETag", &quoted(&etag));
            });
            resp.status(StatusCode::CREATED)
                .header(http::header::CONTENT_TYPE, "application/xml")
                .body(Body::from(xml))
                .map_err(internal)
        }
        _ => resp
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .map_err(internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn policy(doc: serde_json::Value) -> Policy {
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.to_string());
        Policy::parse(&b64).unwrap()
    }

    fn form(fields: &[(&str, &str)]) -> Form {
        Form {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    fn code(e: S3Error) -> (u16, String, String) {
        (
            e.0.status.as_u16(),
            e.0.code.to_string(),
            e.0.message.clone(),
        )
    }

    #[test]
    fn conditions_eq_starts_with_and_length_range() {
        let p = policy(serde_json::json!({
            "expiration": "2099-01-01T00:00:00.000Z",
            "conditions": [
                {"bucket": "b"},
                ["starts-with", "$key", "uploads/"],
                ["eq", "$Content-Type", "text/plain"],
                ["content-length-range", 1, "100"],
            ]
        }));
        let now = OffsetDateTime::now_utc();
        let ok = form(&[("key", "uploads/a"), ("Content-Type", "text/plain")]);
        assert_eq!(p.check(&ok, "b", now).unwrap(), (1, 100));
        let (s, c, m) = code(p.check(&ok, "other", now).unwrap_err());
        assert_eq!((s, c.as_str()), (403, "AccessDenied"));
        assert_eq!(
            m,
            "Invalid according to Policy: Policy Condition failed: {\"bucket\":\"b\"}"
        );
        let bad = form(&[("key", "elsewhere"), ("Content-Type", "text/plain")]);
        let (_, _, m) = code(p.check(&bad, "b", now).unwrap_err());
        assert_eq!(
            m,
            "Invalid according to Policy: Policy Condition failed: [\"starts-with\", \"$key\", \"uploads/\"]"
        );
        let extra = form(&[
            ("key", "uploads/a"),
            ("Content-Type", "text/plain"),
            ("acl", "public-read"),
            ("x-ignore-this", "1"),
            ("x-amz-signature", "s"),
            ("policy", "p"),
        ]);
        let (_, _, m) = code(p.check(&extra, "b", now).unwrap_err());
        assert_eq!(m, "Invalid according to Policy: Extra input fields: acl");
        let later = OffsetDateTime::parse(
            "2100-01-01T00:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let (_, _, m) = code(p.check(&ok, "b", later).unwrap_err());
        assert_eq!(m, "Invalid according to Policy: Policy expired.");
    }

    #[test]
    fn malformed_policies_are_invalid_policy_documents() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for (doc, why) in [
            ("not json", "Invalid Policy: Invalid JSON."),
            (
                "{\"conditions\": []}",
                "Invalid Policy: Policy missing expiration.",
            ),
            (
                "{\"expiration\": \"2099-01-01T00:00:00Z\"}",
                "Invalid Policy: Policy missing conditions.",
            ),
            (
                "{\"expiration\": \"tomorrow\", \"conditions\": []}",
                "Invalid Policy: Invalid 'expiration' value: 'tomorrow'",
            ),
        ] {
            let (s, c, m) = code(Policy::parse(&enc(doc)).unwrap_err());
            assert_eq!(
                (s, c.as_str(), m.as_str()),
                (400, "InvalidPolicyDocument", why)
            );
        }
        let (_, c, _) = code(Policy::parse("***").unwrap_err());
        assert_eq!(c, "InvalidPolicyDocument");
        let p = policy(serde_json::json!({
            "expiration": "2099-01-01T00:00:00Z",
            "conditions": [["matches", "$key", "x"]]
        }));
        let (s, c, _) = code(
            p.check(&form(&[("key", "x")]), "b", OffsetDateTime::now_utc())
                .unwrap_err(),
        );
        assert_eq!((s, c.as_str()), (400, "InvalidPolicyDocument"));
    }
}

//! Request validation per route, as API Gateway's REST API request validators do it:
//! required query-string parameters and headers, then a JSON Schema for the body.
//! A request that fails is answered `400` by the gateway and no function runs.
//!
//! * Missing parameters: `{"message": "Missing required request parameters: [q, x-h]"}`
//!   — every missing one, query parameters first, in configuration order.
//! * A body that is not JSON or does not match the schema:
//!   `{"message": "Invalid request body", "validationErrors": […]}` — the message is
//!   API Gateway's; `validationErrors` (Nimbus's addition, what REST APIs expose as
//!   `$context.error.validationErrorString`) names each failing field as
//!   `{"path": "/items/0/qty", "message": "…"}`. An empty body is validated as
//!   `{}`, as API Gateway does.
//!
//! Schemas are compiled once, when the route is stored or loaded (JSON Schema
//! drafts 4, 6, 7, 2019-09 and 2020-12 via the `jsonschema` crate; the draft follows
//! `$schema`, 2020-12 when absent). Remote `$ref`s are not fetched: a schema must
//! be self-contained.

use crate::response::{Body, Response};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;

/// The most failing fields one answer lists.
const MAX_ERRORS: usize = 10;

/// A route's request validation; empty (the default) checks nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Validation {
    /// JSON Schema the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_schema: Option<BodySchema>,
    /// Query-string parameters that must be present (a value may be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_query: Vec<String>,
    /// Headers that must be present (names case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_headers: Vec<String>,
}

impl Validation {
    pub fn is_empty(&self) -> bool {
        self.body_schema.is_none()
            && self.required_query.is_empty()
            && self.required_headers.is_empty()
    }

    /// Check parameter names and normalise (header names lower-case, duplicates
    /// dropped).
    pub fn normalize(mut self) -> Result<Self, String> {
        let mut q: Vec<String> = Vec::new();
        for p in self.required_query {
            let p = p.trim().to_string();
            if p.is_empty() {
                return Err("a required query parameter name is empty".into());
            }
            if !q.contains(&p) {
                q.push(p);
            }
        }
        let mut h: Vec<String> = Vec::new();
        for n in self.required_headers {
            let n = n.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                return Err(format!("invalid required header name {n:?}"));
            }
            if !h.contains(&n) {
                h.push(n);
            }
        }
        self.required_query = q;
        self.required_headers = h;
        Ok(self)
    }

    /// Validate a request; `Some` is the 400 to answer instead of invoking.
    pub fn check(&self, headers: &HeaderMap, raw_query: &str, body: &[u8]) -> Option<Response> {
        if !self.required_query.is_empty() || !self.required_headers.is_empty() {
            let mut missing: Vec<&str> = Vec::new();
            if !self.required_query.is_empty() {
                let present: Vec<_> = form_urlencoded::parse(raw_query.as_bytes())
                    .map(|(k, _)| k)
                    .collect();
                missing.extend(
                    self.required_query
                        .iter()
                        .filter(|q| !present.iter().any(|p| p == q.as_str()))
                        .map(String::as_str),
                );
            }
            missing.extend(
                self.required_headers
                    .iter()
                    .filter(|h| !headers.contains_key(h.as_str()))
                    .map(String::as_str),
            );
            if !missing.is_empty() {
                let msg = format!(
                    "Missing required request parameters: [{}]",
                    missing.join(", ")
                );
                return Some(bad_request(json!({ "message": msg })));
            }
        }
        let schema = self.body_schema.as_ref()?;
        let errors = schema.errors(body);
        if errors.is_empty() {
            return None;
        }
        Some(bad_request(json!({
            "message": "Invalid request body",
            "validationErrors": errors,
        })))
    }
}

fn bad_request(v: Value) -> Response {
    let mut r = http::Response::new(Body::new(Bytes::from(v.to_string())));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A compiled JSON Schema; serialises as the schema document itself.
#[derive(Clone)]
pub struct BodySchema(Arc<(Value, jsonschema::Validator)>);

impl BodySchema {
    pub fn compile(schema: Value) -> Result<Self, String> {
        if !(schema.is_object() || schema.is_boolean()) {
            return Err("a JSON Schema must be an object (or a boolean)".into());
        }
        let v =
            jsonschema::validator_for(&schema).map_err(|e| format!("invalid JSON Schema: {e}"))?;
        Ok(Self(Arc::new((schema, v))))
    }

    pub fn schema(&self) -> &Value {
        &self.0 .0
    }

    /// Each failing field as `{"path", "message"}`; empty when the body is valid.
    pub fn errors(&self, body: &[u8]) -> Vec<Value> {
        let instance: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return vec![
                        json!({ "path": "", "message": format!("the body is not valid JSON: {e}") }),
                    ]
                }
            }
        };
        self.0
             .1
            .iter_errors(&instance)
            .take(MAX_ERRORS)
            .map(|e| json!({ "path": e.instance_path.as_str(), "message": e.to_string() }))
            .collect()
    }
}

impl fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BodySchema").field(self.schema()).finish()
    }
}

impl PartialEq for BodySchema {
    fn eq(&self, other: &Self) -> bool {
        self.schema() == other.schema()
    }
}

impl Eq for BodySchema {}

impl Serialize for BodySchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.schema().serialize(s)
    }
}

impl<'de> Deserialize<'de> for BodySchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BodySchema::compile(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body_of(r: Response) -> Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes() });
        serde_json::from_slice(&b).unwrap()
    }

    fn v() -> Validation {
        Validation {
            body_schema: Some(
                BodySchema::compile(json!({
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}
                }))
                .unwrap(),
            ),
            required_query: vec!["q".into(), "page".into()],
            required_headers: vec!["X-Tenant".into()],
        }
        .normalize()
        .unwrap()
    }

    #[test]
    fn missing_parameters_are_listed() {
        let r = v().check(&HeaderMap::new(), "q=1", b"{}").unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            body_of(r),
            json!({"message": "Missing required request parameters: [page, x-tenant]"})
        );
    }

    #[test]
    fn body_errors_name_the_field() {
        let mut h = HeaderMap::new();
        h.insert("x-tenant", HeaderValue::from_static("t"));
        let val = v();
        assert!(val
            .check(&h, "q=&page=2", br#"{"name": "a", "age": 3}"#)
            .is_none());
        let b = body_of(
            val.check(&h, "q=1&page=2", br#"{"name": "a", "age": -1}"#)
                .unwrap(),
        );
        assert_eq!(b["message"], "Invalid request body");
        assert_eq!(b["validationErrors"][0]["path"], "/age");
        let b = body_of(val.check(&h, "q=1&page=2", b"").unwrap());
        assert!(
            b["validationErrors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("name"),
            "{b}"
        );
        let b = body_of(val.check(&h, "q=1&page=2", b"{not json").unwrap());
        assert!(b["validationErrors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"));
    }

    #[test]
    fn schemas_round_trip_and_bad_ones_are_refused() {
        let val = v();
        let s = serde_json::to_string(&val).unwrap();
        let back: Validation = serde_json::from_str(&s).unwrap();
        assert_eq!(back, val);
        assert!(BodySchema::compile(json!({"type": "no-such-type"})).is_err());
        assert!(BodySchema::compile(json!(3)).is_err());
        // Remote references are never fetched: such a schema is refused.
        assert!(BodySchema::compile(json!({"$ref": "http://example.com/s.json"})).is_err());
        assert!(BodySchema::compile(json!({"$ref": "file:///etc/passwd"})).is_err());
        assert!(Validation::default().is_empty());
    }
}

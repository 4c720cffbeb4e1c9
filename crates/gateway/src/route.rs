//! What a route is: its key (`METHOD /path` or `$default`), the function it
//! targets and how the gateway talks to that function.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// API Gateway's default integration timeout (REST and HTTP APIs alike).
pub const DEFAULT_TIMEOUT_MS: u64 = 29_000;
/// HTTP APIs accept integration timeouts from 50 ms to 30 s.
pub const MIN_TIMEOUT_MS: u64 = 50;
pub const MAX_TIMEOUT_MS: u64 = 30_000;

/// Why a route definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("Invalid route key {key:?}: {reason}")]
    BadKey { key: String, reason: String },
    #[error("Invalid payload format version {0:?}: must be 1.0 or 2.0")]
    BadPayloadFormat(String),
    #[error("unknown API type {0:?} (HTTP or REST)")]
    BadApiType(String),
    #[error(
        "Invalid integration timeout {0} ms: must be between {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS} ms"
    )]
    BadTimeout(u64),
    #[error("Invalid function name {0:?}")]
    BadFunction(String),
}

/// The methods a route can name. `Any` matches every method the path has no
/// explicit route for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
    Any,
}

impl Method {
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Any => "ANY",
        }
    }

    /// The route method of a request method (`None`: no route can name it, so
    /// only `ANY` routes match it).
    pub fn of_request(m: &http::Method) -> Option<Method> {
        Some(match *m {
            http::Method::GET => Method::Get,
            http::Method::POST => Method::Post,
            http::Method::PUT => Method::Put,
            http::Method::PATCH => Method::Patch,
            http::Method::DELETE => Method::Delete,
            http::Method::HEAD => Method::Head,
            http::Method::OPTIONS => Method::Options,
            _ => return None,
        })
    }
}

impl FromStr for Method {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "ANY" => Method::Any,
            _ => return Err(()),
        })
    }
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this (decoded) text.
    Literal(String),
    /// `{name}`: one non-empty segment.
    Param(String),
    /// `{name+}`: the rest of the path (one segment or more); last only.
    Greedy(String),
}

/// A parsed path template such as `/users/{id}` or `/files/{proxy+}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments after the leading `/`; the root path `/` has none.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err("the path must start with /".into());
        }
        if text.len() > 1 && text.ends_with('/') {
            return Err("the path must not end with /".into());
        }
        if text.contains(['?', '#']) {
            return Err("the path must not contain a query string or fragment".into());
        }
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if text != "/" {
            let parts: Vec<&str> = text[1..].split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                if part.is_empty() {
                    return Err("the path has an empty segment (//)".into());
                }
                let seg = if let Some(inner) = part.strip_prefix('{') {
                    let Some(inner) = inner.strip_suffix('}') else {
                        return Err(format!(
                            "segment {part:?}: a path variable must be a whole segment, like {{id}}"
                        ));
                    };
                    let (name, greedy) = match inner.strip_suffix('+') {
                        Some(n) => (n, true),
                        None => (inner, false),
                    };
                    if name.is_empty()
                        || !name.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
                        })
                    {
                        return Err(format!(
                            "segment {part:?}: a variable name is letters, digits, _, - and ."
                        ));
                    }
                    if names.contains(&name) {
                        return Err(format!("the variable {{{name}}} appears twice"));
                    }
                    names.push(name);
                    if greedy {
                        if i + 1 != parts.len() {
                            return Err(format!(
                                "the greedy variable {{{name}+}} must be the last segment"
                            ));
                        }
                        Segment::Greedy(name.to_string())
                    } else {
                        Segment::Param(name.to_string())
                    }
                } else {
                    if part.contains(['{', '}']) {
                        return Err(format!(
                            "segment {part:?}: a path variable must be a whole segment, like {{id}}"
                        ));
                    }
                    Segment::Literal(crate::http_util::percent_decode(part).into_owned())
                };
                segments.push(seg);
            }
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }
}

/// `METHOD /path`, or `$default` (the catch-all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    Path { method: Method, path: PathTemplate },
    Default,
}

impl RouteKey {
    pub fn parse(s: &str) -> Result<Self, RouteError> {
        let bad = |reason: &str| RouteError::BadKey {
            key: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t == "$default" {
            return Ok(RouteKey::Default);
        }
        let Some((m, p)) = t.split_once(char::is_whitespace) else {
            return Err(bad(
                "expected METHOD /path (e.g. GET /users/{id}, ANY /{proxy+}) or $default",
            ));
        };
        let method: Method = m.parse().map_err(|_| {
            bad("the method must be GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY")
        })?;
        let path = PathTemplate::parse(p.trim()).map_err(|r| bad(&r))?;
        Ok(RouteKey::Path { method, path })
    }

    /// The path of the key (`None` for `$default`).
    pub fn path(&self) -> Option<&PathTemplate> {
        match self {
            RouteKey::Path { path, .. } => Some(path),
            RouteKey::Default => None,
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteKey::Path { method, path } => write!(f, "{} {}", method.as_str(), path.as_str()),
            RouteKey::Default => f.write_str("$default"),
        }
    }
}

impl Serialize for RouteKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RouteKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RouteKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Which API Gateway product a route belongs to: their body rules differ
/// (docs/compat/apigateway.md, "Bodies").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiType {
    /// An HTTP API (`httpApi` events, SAM `HttpApi`): bodies whose content type is
    /// not text reach the function base64-encoded.
    #[default]
    Http,
    /// A REST API (`http` events, SAM `Api`): bodies are text unless their content
    /// type matches one of the API's binary media types.
    Rest,
}

impl ApiType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ApiType::Http => "HTTP",
            ApiType::Rest => "REST",
        }
    }
}

impl FromStr for ApiType {
    type Err = RouteError;
    fn from_str(s: &str) -> Result<Self, RouteError> {
        match s.to_ascii_uppercase().as_str() {
            "HTTP" => Ok(ApiType::Http),
            "REST" => Ok(ApiType::Rest),
            other => Err(RouteError::BadApiType(other.to_string())),
        }
    }
}

/// Whether `content_type` matches a REST API's binary media type (`image/png`,
/// `image/*`, `*/*`), as API Gateway compares them: case-insensitively, on the
/// media type without its parameters.
pub fn is_binary_media_type(binary_media_types: &[String], content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (ty, sub) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
    binary_media_types.iter().any(|m| {
        let m = m.trim().to_ascii_lowercase();
        let (mty, msub) = m.split_once('/').unwrap_or((m.as_str(), ""));
        (mty == "*" || mty == ty) && (msub == "*" || msub == sub)
    })
}

/// The event shape the function receives and the response shape it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// REST API proxy / HTTP API format 1.0.
    V1,
    /// HTTP API format 2.0.
    #[default]
    V2,
}

impl PayloadFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            PayloadFormat::V1 => "1.0",
            PayloadFormat::V2 => "2.0",
        }
    }
}

impl FromStr for PayloadFormat {
    type Err = RouteError;
    fn from_str(s: &str) -> Result<Self, RouteError> {
        match s {
            "1.0" | "1" => Ok(PayloadFormat::V1),
            "2.0" | "2" => Ok(PayloadFormat::V2),
            other => Err(RouteError::BadPayloadFormat(other.to_string())),
        }
    }
}

impl Serialize for PayloadFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PayloadFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// One route as stored and served.
///
/// New per-route settings (authorizer, throttling, request validation) are added as
/// fields with `#[serde(default)]`, so routes stored by an older Nimbus still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub route_key: RouteKey,
    /// The target function's name.
    pub function: String,
    /// A version number or alias name; `None` runs `$LATEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    #[serde(default)]
    pub payload_format: PayloadFormat,
    /// REST API or HTTP API (their body rules differ).
    #[serde(default)]
    pub api_type: ApiType,
    /// A REST API's binary media types: request bodies of these content types
    /// reach the function base64-encoded, others as text; responses with
    /// `isBase64Encoded` are decoded only for these types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary_media_types: Vec<String>,
    /// The integration timeout: past it the client gets 504 (the function runs on).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Required query parameters and headers, and a JSON Schema for the body,
    /// checked before the function is invoked (400 on failure).
    #[serde(default, skip_serializing_if = "crate::validate::Validation::is_empty")]
    pub validation: crate::validate::Validation,
    /// The authorizer (JWT or Lambda, by name) requests must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer: Option<String>,
    /// With a JWT authorizer: the token needs one of these scopes (else 403).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_scopes: Vec<String>,
    /// Requests need the `x-api-key` of a key in a usage plan (else 403).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_key_required: bool,
    /// The route's token bucket: past it, 429 before anything runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<crate::throttle::ThrottleSettings>,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

impl Route {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Check the parts a route key's parser does not.
    pub fn validate(&self) -> Result<(), RouteError> {
        if self.api_type == ApiType::Rest && self.payload_format != PayloadFormat::V1 {
            return Err(RouteError::BadPayloadFormat(format!(
                "{} (a REST API route uses payload format 1.0)",
                self.payload_format.as_str()
            )));
        }
        if self.api_type == ApiType::Http && !self.binary_media_types.is_empty() {
            return Err(RouteError::BadApiType(
                "HTTP with binary media types (only REST APIs have them)".into(),
            ));
        }
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(RouteError::BadTimeout(self.timeout_ms));
        }
        let f = &self.function;
        if f.is_empty()
            || f.len() > 64
            || !f
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(RouteError::BadFunction(f.clone()));
        }
        if let Some(q) = &self.qualifier {
            if q.is_empty()
                || q.len() > 128
                || !q
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'$')
            {
                return Err(RouteError::BadFunction(format!("{f}:{q}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print() {
        for k in [
            "GET /users/{id}",
            "ANY /{proxy+}",
            "$default",
            "POST /",
            "DELETE /a/b/{c}/{rest+}",
        ] {
            assert_eq!(RouteKey::parse(k).unwrap().to_string(), k);
        }
        assert_eq!(
            RouteKey::parse("get /x").unwrap().to_string(),
            "GET /x",
            "methods are case-insensitive"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        for k in [
            "GET",
            "FETCH /x",
            "GET x",
            "GET /x/",
            "GET /a//b",
            "GET /{proxy+}/x",
            "GET /a{b}",
            "GET /{id}/{id}",
            "GET /{}",
            "GET /x?y=1",
        ] {
            assert!(RouteKey::parse(k).is_err(), "{k} should be refused");
        }
    }

    #[test]
    fn route_round_trips_with_defaults() {
        let r: Route =
            serde_json::from_str(r#"{"route_key":"GET /users/{id}","function":"getUser"}"#)
                .unwrap();
        assert_eq!(r.payload_format, PayloadFormat::V2);
        assert_eq!(r.timeout_ms, DEFAULT_TIMEOUT_MS);
        let back: Route = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

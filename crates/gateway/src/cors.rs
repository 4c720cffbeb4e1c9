//! CORS, as API Gateway's HTTP APIs and Lambda function URLs do it.
//!
//! One [`CorsConfig`] per API (the gateway listener's routes share one; each function
//! URL has its own). When an API has one:
//! * a **preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
//!   answered by the gateway with `204` — no route is matched, no authorizer runs, no
//!   function is invoked, whether or not an `OPTIONS` route exists. The CORS headers
//!   are present only when the origin, the requested method and every requested
//!   header are allowed; otherwise the `204` carries none and the browser refuses;
//! * every other response — the function's and the gateway's own errors alike —
//!   loses whatever `access-control-*` headers the function set ("API Gateway ignores
//!   CORS headers returned from your backend integration") and, when the request's
//!   `Origin` is allowed, gets `access-control-allow-origin`,
//!   `access-control-allow-credentials` and `access-control-expose-headers`.
//!
//! `*` in origins answers `access-control-allow-origin: *`; any other match echoes
//! the request's origin and adds `vary: origin`. `*` in methods or headers allows
//! any, and a preflight's answer then echoes what was requested (a literal `*` would
//! not cover `Authorization`, nor anything on credentialed requests).

use crate::response::{Body, Response};
use crate::server::Gateway;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ORIGIN, VARY};
use http::{HeaderMap, StatusCode};
use hyper::body::Incoming;
use nimbus_store::{RouteStore, StoreError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// The most any browser caches a preflight for; HTTP APIs and function URLs cap
/// `maxAge` at a day.
pub const MAX_AGE_LIMIT: u32 = 86_400;

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*",
];

/// An API's CORS configuration (HTTP API `CorsConfiguration` / function URL `Cors`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CorsConfig {
    /// `https://app.example.com` (scheme, host, optional port), or `*`.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// `GET`, `POST`, …, or `*`.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request header names a preflight may ask for, or `*`.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response header names scripts may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    /// Seconds a browser may cache a preflight's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

/// Why a CORS configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    #[error("Invalid CORS origin {0:?}: expected * or scheme://host[:port], like https://app.example.com")]
    BadOrigin(String),
    #[error(
        "Invalid CORS method {0:?}: must be GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or *"
    )]
    BadMethod(String),
    #[error("Invalid CORS header name {0:?}")]
    BadHeader(String),
    #[error("Invalid CORS max age {0}: must be between 0 and {MAX_AGE_LIMIT} seconds")]
    BadMaxAge(u32),
    #[error(
        "CORS allow credentials cannot be true when allowed origins contain *: name the origins"
    )]
    CredentialsWithWildcard,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_origin(o: &str) -> bool {
    if o == "*" {
        return true;
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
}

impl CorsConfig {
    /// Check and normalise: trimmed, methods upper-case, header names lower-case,
    /// duplicates dropped.
    pub fn normalize(mut self) -> Result<Self, CorsError> {
        fn clean(v: Vec<String>, f: impl Fn(&str) -> String) -> Vec<String> {
            let mut out: Vec<String> = Vec::with_capacity(v.len());
            for s in v {
                let s = f(s.trim());
                if !s.is_empty() && !out.contains(&s) {
                    out.push(s);
                }
            }
            out
        }
        self.allow_origins = clean(self.allow_origins, |s| {
            s.trim_end_matches('/').to_ascii_lowercase()
        });
        self.allow_methods = clean(self.allow_methods, str::to_ascii_uppercase);
        self.allow_headers = clean(self.allow_headers, str::to_ascii_lowercase);
        self.expose_headers = clean(self.expose_headers, str::to_ascii_lowercase);
        if let Some(o) = self.allow_origins.iter().find(|o| !valid_origin(o)) {
            return Err(CorsError::BadOrigin(o.clone()));
        }
        if let Some(m) = self
            .allow_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(CorsError::BadMethod(m.clone()));
        }
        if let Some(h) = self
            .allow_headers
            .iter()
            .chain(&self.expose_headers)
            .find(|h| !is_token(h))
        {
            return Err(CorsError::BadHeader(h.clone()));
        }
        if let Some(a) = self.max_age.filter(|a| *a > MAX_AGE_LIMIT) {
            return Err(CorsError::BadMaxAge(a));
        }
        if self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            return Err(CorsError::CredentialsWithWildcard);
        }
        Ok(self)
    }

    /// The `access-control-allow-origin` value for a request's `Origin`, if allowed.
    fn allowed_origin<'a>(&self, origin: &'a HeaderValue) -> Option<AllowOrigin<'a>> {
        let o = origin.to_str().ok()?;
        if self.allow_origins.iter().any(|a| a.eq_ignore_ascii_case(o)) {
            Some(AllowOrigin::Echo(origin))
        } else if self.allow_origins.iter().any(|a| a == "*") {
            Some(AllowOrigin::Any)
        } else {
            None
        }
    }

    fn allows_method(&self, m: &str) -> bool {
        self.allow_methods.iter().any(|a| a == "*" || a == m)
    }

    /// The gateway's answer to a preflight request.
    pub fn preflight(&self, req: &HeaderMap) -> Response {
        let mut r = http::Response::new(Body::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        let (Some(origin), Some(method)) = (
            req.get(ORIGIN),
            req.get("access-control-request-method")
                .and_then(|v| v.to_str().ok())
                .map(str::trim),
        ) else {
            return r;
        };
        let Some(allow_origin) = self.allowed_origin(origin) else {
            return r;
        };
        if !self.allows_method(method) {
            return r;
        }
        let requested: Vec<String> = req
            .get_all("access-control-request-headers")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let any_header = self.allow_headers.iter().any(|h| h == "*");
        if !any_header
            && requested
                .iter()
                .any(|h| !self.allow_headers.iter().any(|a| a == h))
        {
            return r;
        }
        let h = r.headers_mut();
        allow_origin.put(h);
        if self.allow_credentials {
            h.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
        }
        let methods = if self.allow_methods.iter().any(|m| m == "*") {
            method.to_string()
        } else {
            self.allow_methods.join(",")
        };
        put(h, "access-control-allow-methods", &methods);
        let headers = if any_header {
            requested.join(",")
        } else {
            self.allow_headers.join(",")
        };
        if !headers.is_empty() {
            put(h, "access-control-allow-headers", &headers);
        }
        if let Some(a) = self.max_age {
            put(h, "access-control-max-age", &a.to_string());
        }
        r
    }

    /// Put this configuration's headers on a (non-preflight) response to a request
    /// from `origin`, replacing any CORS headers the function set.
    pub fn apply(&self, origin: Option<&HeaderValue>, resp: &mut http::Response<Body>) {
        let h = resp.headers_mut();
        strip(h);
        let Some(allow_origin) = origin.and_then(|o| self.allowed_origin(o)) else {
            return;
        };
        allow_origin.put(h);
        if self.allow_credentials {
            h.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
        }
        if !self.expose_headers.is_empty() {
            put(
                h,
                "access-control-expose-headers",
                &self.expose_headers.join(","),
            );
        }
    }
}

/// The settings kind API CORS configurations are stored under (keyed by API).
const KIND: &str = "cors";

/// One API's CORS configuration: durable in the store, served from memory. Cheap to
/// clone.
#[derive(Clone)]
pub struct ApiCors {
    store: RouteStore,
    api: Arc<str>,
    current: Arc<RwLock<Option<Arc<CorsConfig>>>>,
    write: Arc<tokio::sync::Mutex<()>>,
}

impl ApiCors {
    /// Load `api`'s stored configuration.
    pub fn open(store: RouteStore, api: &str) -> Result<Self, StoreError> {
        let mut current = None;
        for (key, config) in store.list_settings(KIND)? {
            if key != api {
                continue;
            }
            match serde_json::from_str::<CorsConfig>(&config) {
                Ok(c) => current = Some(Arc::new(c)),
                Err(e) => tracing::warn!(
                    api = %key,
                    error = %e,
                    "ignoring a stored CORS configuration that no longer parses"
                ),
            }
        }
        Ok(Self {
            store,
            api: api.into(),
            current: Arc::new(RwLock::new(current)),
            write: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The configuration requests use now (`None`: CORS is off).
    pub fn get(&self) -> Option<Arc<CorsConfig>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Check, store and apply a configuration, replacing the previous one.
    pub async fn set(&self, c: CorsConfig) -> Result<Arc<CorsConfig>, SetCorsError> {
        let c = c.normalize()?;
        let _w = self.write.lock().await;
        let store = self.store.clone();
        let (api, text) = (
            self.api.clone(),
            serde_json::to_string(&c).expect("a CORS configuration serialises"),
        );
        tokio::task::spawn_blocking(move || {
            store.put_setting(KIND, &api, &text, nimbus_core::now_ms())
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("CORS write task failed: {e}")))??;
        let c = Arc::new(c);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Turn CORS off; `false` when it was off.
    pub async fn clear(&self) -> Result<bool, StoreError> {
        let _w = self.write.lock().await;
        let store = self.store.clone();
        let api = self.api.clone();
        let existed = tokio::task::spawn_blocking(move || store.delete_setting(KIND, &api))
            .await
            .map_err(|e| StoreError::Corrupt(format!("CORS delete task failed: {e}")))??;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(existed)
    }
}

/// Why a CORS configuration could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetCorsError {
    #[error(transparent)]
    Invalid(#[from] CorsError),
    #[error("cannot store the CORS configuration: {0}")]
    Store(#[from] StoreError),
}

/// The routes behind the API's CORS: preflights answered here, CORS headers on
/// everything else.
pub(crate) async fn serve_routes(
    gw: &Gateway,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    request_id: &str,
    log: &mut crate::server::Access,
) -> Response {
    let Some(cors) = gw.routes().cors().get() else {
        return gw.route(req, peer, request_id, log).await;
    };
    if is_preflight(req.method(), req.headers()) {
        log.method = req.method().to_string();
        log.path = req.uri().path().to_string();
        log.route = "CORS preflight".into();
        return cors.preflight(req.headers());
    }
    let origin = req.headers().get(ORIGIN).cloned();
    let mut resp = gw.route(req, peer, request_id, log).await;
    cors.apply(origin.as_ref(), &mut resp);
    resp
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key("access-control-request-method")
}

enum AllowOrigin<'a> {
    Any,
    Echo(&'a HeaderValue),
}

impl AllowOrigin<'_> {
    fn put(&self, h: &mut HeaderMap) {
        match self {
            AllowOrigin::Any => {
                h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
            }
            AllowOrigin::Echo(o) => {
                h.insert("access-control-allow-origin", (*o).clone());
                h.append(VARY, HeaderValue::from_static("origin"));
            }
        }
    }
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// Drop every `access-control-*` header.
fn strip(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|n| n.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> http::Response<Body> {
        http::Response::new(Body::new(Bytes::new()))
    }

    fn cfg() -> CorsConfig {
        CorsConfig {
            allow_origins: vec!["https://app.example.com".into()],
            allow_methods: vec!["get".into(), "POST".into()],
            allow_headers: vec!["Content-Type".into(), "x-api-key".into()],
            expose_headers: vec!["x-request-id".into()],
            allow_credentials: true,
            max_age: Some(300),
        }
        .normalize()
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn normalizes_and_refuses() {
        let c = cfg();
        assert_eq!(c.allow_methods, ["GET", "POST"]);
        assert_eq!(c.allow_headers, ["content-type", "x-api-key"]);
        for bad in [
            CorsConfig {
                allow_origins: vec!["app.example.com".into()],
                ..Default::default()
            },
            CorsConfig {
                allow_methods: vec!["FETCH".into()],
                ..Default::default()
            },
            CorsConfig {
                allow_headers: vec!["bad header".into()],
                ..Default::default()
            },
            CorsConfig {
                max_age: Some(86_401),
                ..Default::default()
            },
            CorsConfig {
                allow_origins: vec!["*".into()],
                allow_credentials: true,
                ..Default::default()
            },
        ] {
            assert!(bad.clone().normalize().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn preflight_allowed_and_refused() {
        let c = cfg();
        let r = c.preflight(&headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "Content-Type, X-Api-Key"),
        ]));
        assert_eq!(r.status(), 204);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-methods"], "GET,POST");
        assert_eq!(h["access-control-allow-headers"], "content-type,x-api-key");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-max-age"], "300");
        assert_eq!(h[VARY], "origin");
        for bad in [
            [
                ("origin", "https://evil.example.com"),
                ("access-control-request-method", "POST"),
            ],
            [
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "DELETE"),
            ],
            [
                ("origin", "https://app.example.com"),
                ("access-control-request-headers", "x-other"),
            ],
        ] {
            let mut h = headers(&bad);
            h.entry("access-control-request-method")
                .or_insert(HeaderValue::from_static("GET"));
            let r = c.preflight(&h);
            assert_eq!(r.status(), 204);
            assert!(r.headers().is_empty(), "{bad:?}: {:?}", r.headers());
        }
    }

    #[test]
    fn wildcards_echo_on_preflight() {
        let c = CorsConfig {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            ..Default::default()
        }
        .normalize()
        .unwrap();
        let r = c.preflight(&headers(&[
            ("origin", "https://x.example"),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "authorization,x-y"),
        ]));
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["access-control-allow-methods"], "DELETE");
        assert_eq!(h["access-control-allow-headers"], "authorization,x-y");
        assert!(h.get(VARY).is_none());
    }

    #[test]
    fn apply_replaces_function_headers() {
        let c = cfg();
        let mut r = empty();
        r.headers_mut().insert(
            "access-control-allow-origin",
            HeaderValue::from_static("https://wrong"),
        );
        r.headers_mut()
            .insert("access-control-max-age", HeaderValue::from_static("9"));
        let origin = HeaderValue::from_static("https://APP.example.com");
        c.apply(Some(&origin), &mut r);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://APP.example.com");
        assert_eq!(h["access-control-expose-headers"], "x-request-id");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(h.get("access-control-max-age").is_none());
        // Another origin gets nothing, and the function's headers are still gone.
        let mut r = empty();
        r.headers_mut()
            .insert("access-control-allow-origin", HeaderValue::from_static("*"));
        c.apply(Some(&HeaderValue::from_static("https://evil")), &mut r);
        assert!(r.headers().is_empty());
    }
}

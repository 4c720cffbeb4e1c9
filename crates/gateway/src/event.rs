//! The events a function receives: API Gateway's proxy payload formats 1.0 (REST
//! API proxy / HTTP API 1.0) and 2.0 (HTTP API), field for field as AWS documents
//! them. Serialised straight from borrowed request parts, without an intermediate
//! `serde_json::Value`.

use crate::http_util::{clf_time, is_text_content_type, title_case};
use base64::Engine;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use std::borrow::Cow;

/// What the gateway knows about one request when it builds the event.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'static str,
    /// Request headers in arrival order, names lower-cased, plus those the gateway
    /// adds (`x-forwarded-*`, `x-amzn-trace-id`); duplicates adjacent.
    pub headers: &'a [(&'a str, Cow<'a, str>)],
    /// Whether the client spoke HTTP/1.x (names are title-cased in format 1.0).
    pub http1: bool,
    pub source_ip: &'a str,
    pub request_id: &'a str,
    pub time_ms: i64,
    pub body: &'a [u8],
    pub route_key: &'a str,
    /// The route's path template (`$default` for the catch-all).
    pub resource: &'a str,
    pub params: &'a [(&'a str, String)],
    pub api_id: &'a str,
    pub account_id: &'a str,
    pub stage: &'a str,
    /// `Some(types)` for a REST API route: bodies are text unless their content
    /// type matches one of the API's binary media types. `None` (HTTP APIs,
    /// function URLs): bodies whose content type is not text are base64.
    pub binary_media_types: Option<&'a [String]>,
}

impl RequestInfo<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    fn domain(&self) -> &str {
        self.header("host").unwrap_or("")
    }

    fn user_agent(&self) -> &str {
        self.header("user-agent").unwrap_or("")
    }

    /// The body as the event carries it, and whether it is base64.
    fn body(&self) -> (Option<Cow<'_, str>>, bool) {
        if self.body.is_empty() {
            return (None, false);
        }
        let content_type = self.header("content-type");
        if let Some(types) = self.binary_media_types {
            // A REST API passes every body as text (UTF-8, invalid bytes replaced,
            // as API Gateway's text conversion does) but the binary media types.
            if !crate::route::is_binary_media_type(types, content_type) {
                return (Some(String::from_utf8_lossy(self.body)), false);
            }
        } else if is_text_content_type(content_type) {
            if let Ok(s) = std::str::from_utf8(self.body) {
                return (Some(Cow::Borrowed(s)), false);
            }
        }
        (
            Some(Cow::Owned(
                base64::engine::general_purpose::STANDARD.encode(self.body),
            )),
            true,
        )
    }

    /// Query parameters decoded, in order.
    fn query(&self) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
        if self.raw_query.is_empty() {
            return Vec::new();
        }
        form_urlencoded::parse(self.raw_query.as_bytes()).collect()
    }
}

/// Consecutive equal keys grouped: `[(k, [v…])]`, first-seen order.
fn group<K: PartialEq + Clone, V>(pairs: &[(K, V)]) -> Vec<(K, Vec<&V>)> {
    let mut out: Vec<(K, Vec<&V>)> = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(ok, _)| ok == k) {
            Some((_, vs)) => vs.push(v),
            None => out.push((k.clone(), vec![v])),
        }
    }
    out
}

/// A JSON object from `(key, value)` pairs.
struct Obj<'a, K, V>(&'a [(K, V)]);

impl<K: AsRef<str>, V: Serialize> Serialize for Obj<'_, K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k.as_ref(), v)?;
        }
        m.end()
    }
}

/// Payload format 2.0.
pub fn v2(req: &RequestInfo<'_>) -> Vec<u8> {
    v2_with(req, None)
}

/// Payload format 2.0 with what the route's authorizer granted
/// (`requestContext.authorizer`).
pub fn v2_with(req: &RequestInfo<'_>, auth: Option<&crate::auth::Granted>) -> Vec<u8> {
    let mut cookies: Vec<&str> = Vec::new();
    let mut headers: Vec<(&str, String)> = Vec::new();
    for (name, vals) in group(req.headers) {
        if name == "cookie" {
            for v in vals {
                cookies.extend(v.split(';').map(str::trim).filter(|c| !c.is_empty()));
            }
            continue;
        }
        let joined = vals
            .iter()
            .map(|v| v.as_ref())
            .collect::<Vec<&str>>()
            .join(",");
        headers.push((name, joined));
    }
    let query: Vec<(Cow<str>, String)> = group(&req.query())
        .into_iter()
        .map(|(k, vs)| {
            let joined = vs
                .iter()
                .map(|v| v.as_ref())
                .collect::<Vec<&str>>()
                .join(",");
            (k, joined)
        })
        .collect();
    let (body, b64) = req.body();
    let domain = req.domain();

    struct Http<'a>(&'a RequestInfo<'a>);
    impl Serialize for Http<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let r = self.0;
            let mut st = s.serialize_struct("Http", 5)?;
            st.serialize_field("method", r.method)?;
            st.serialize_field("path", r.raw_path)?;
            st.serialize_field("protocol", r.protocol)?;
            st.serialize_field("sourceIp", r.source_ip)?;
            st.serialize_field("userAgent", r.user_agent())?;
            st.end()
        }
    }
    struct Ctx<'a>(&'a RequestInfo<'a>, &'a str, Option<&'a serde_json::Value>);
    impl Serialize for Ctx<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let (r, domain) = (self.0, self.1);
            let mut st = s.serialize_struct("RequestContext", 10)?;
            st.serialize_field("accountId", r.account_id)?;
            st.serialize_field("apiId", r.api_id)?;
            if let Some(a) = self.2 {
                st.serialize_field("authorizer", a)?;
            }
            st.serialize_field("domainName", domain)?;
            st.serialize_field("domainPrefix", domain_prefix(domain))?;
            st.serialize_field("http", &Http(r))?;
            st.serialize_field("requestId", r.request_id)?;
            st.serialize_field("routeKey", r.route_key)?;
            st.serialize_field("stage", r.stage)?;
            st.serialize_field("time", &clf_time(r.time_ms))?;
            st.serialize_field("timeEpoch", &r.time_ms)?;
            st.end()
        }
    }

    let mut out = Vec::with_capacity(1024 + req.body.len() * 4 / 3);
    let mut ser = serde_json::Serializer::new(&mut out);
    let res = (|| {
        let mut m = (&mut ser).serialize_map(None)?;
        m.serialize_entry("version", "2.0")?;
        m.serialize_entry("routeKey", req.route_key)?;
        m.serialize_entry("rawPath", req.raw_path)?;
        m.serialize_entry("rawQueryString", req.raw_query)?;
        if !cookies.is_empty() {
            m.serialize_entry("cookies", &cookies)?;
        }
        m.serialize_entry("headers", &Obj(&headers))?;
        if !query.is_empty() {
            m.serialize_entry("queryStringParameters", &Obj(&query))?;
        }
        let authorizer = auth.and_then(|a| a.authorizer.as_ref());
        m.serialize_entry("requestContext", &Ctx(req, domain, authorizer))?;
        if let Some(b) = &body {
            m.serialize_entry("body", b)?;
        }
        if !req.params.is_empty() {
            m.serialize_entry("pathParameters", &Obj(req.params))?;
        }
        m.serialize_entry("isBase64Encoded", &b64)?;
        SerializeMap::end(m)
    })();
    res.expect("serialising to memory cannot fail");
    out
}

/// Payload format 1.0.
pub fn v1(req: &RequestInfo<'_>) -> Vec<u8> {
    v1_with(req, None)
}

/// Payload format 1.0 with what the route's authorizer and API key granted
/// (`requestContext.authorizer`, `identity.apiKey`/`apiKeyId`).
pub fn v1_with(req: &RequestInfo<'_>, auth: Option<&crate::auth::Granted>) -> Vec<u8> {
    let name_of = |n: &str| -> String {
        if req.http1 {
            title_case(n)
        } else {
            n.to_string()
        }
    };
    let grouped = group(req.headers);
    // `headers` holds the last value of a repeated header, as API Gateway does.
    let headers: Vec<(String, &str)> = grouped
        .iter()
        .map(|(n, vs)| (name_of(n), vs.last().map_or("", |v| v.as_ref())))
        .collect();
    let multi_headers: Vec<(String, Vec<&str>)> = grouped
        .iter()
        .map(|(n, vs)| (name_of(n), vs.iter().map(|v| v.as_ref()).collect()))
        .collect();
    let q = req.query();
    let qg = group(&q);
    let query: Vec<(&str, &str)> = qg
        .iter()
        .map(|(k, vs)| (k.as_ref(), vs.last().map_or("", |v| v.as_ref())))
        .collect();
    let multi_query: Vec<(&str, Vec<&str>)> = qg
        .iter()
        .map(|(k, vs)| (k.as_ref(), vs.iter().map(|v| v.as_ref()).collect()))
        .collect();
    let (body, b64) = req.body();
    let domain = req.domain();

    struct Identity<'a>(&'a RequestInfo<'a>, Option<&'a (String, String)>);
    impl Serialize for Identity<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let r = self.0;
            let none: Option<&str> = None;
            let mut st = s.serialize_struct("Identity", 12)?;
            st.serialize_field("accessKey", &none)?;
            st.serialize_field("accountId", &none)?;
            if let Some((key, id)) = self.1 {
                st.serialize_field("apiKey", key)?;
                st.serialize_field("apiKeyId", id)?;
            }
            st.serialize_field("caller", &none)?;
            st.serialize_field("cognitoAuthenticationProvider", &none)?;
            st.serialize_field("cognitoAuthenticationType", &none)?;
            st.serialize_field("cognitoIdentityId", &none)?;
            st.serialize_field("cognitoIdentityPoolId", &none)?;
            st.serialize_field("principalOrgId", &none)?;
            st.serialize_field("sourceIp", r.source_ip)?;
            st.serialize_field("user", &none)?;
            st.serialize_field("userAgent", r.user_agent())?;
            st.serialize_field("userArn", &none)?;
            st.end()
        }
    }
    struct Authorizer;
    impl Serialize for Authorizer {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let none: Option<&str> = None;
            let mut st = s.serialize_struct("Authorizer", 2)?;
            st.serialize_field("claims", &none)?;
            st.serialize_field("scopes", &none)?;
            st.end()
        }
    }
    struct Ctx<'a>(
        &'a RequestInfo<'a>,
        &'a str,
        Option<&'a crate::auth::Granted>,
    );
    impl Serialize for Ctx<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let (r, domain) = (self.0, self.1);
            let none: Option<&str> = None;
            let mut st = s.serialize_struct("RequestContext", 17)?;
            st.serialize_field("accountId", r.account_id)?;
            st.serialize_field("apiId", r.api_id)?;
            match self.2.and_then(|g| g.authorizer.as_ref()) {
                Some(a) => st.serialize_field("authorizer", a)?,
                None => st.serialize_field("authorizer", &Authorizer)?,
            }
            st.serialize_field("domainName", domain)?;
            st.serialize_field("domainPrefix", domain_prefix(domain))?;
            st.serialize_field("extendedRequestId", r.request_id)?;
            st.serialize_field("httpMethod", r.method)?;
            let api_key = self.2.and_then(|g| g.api_key.as_ref());
            st.serialize_field("identity", &Identity(r, api_key))?;
            st.serialize_field("path", r.raw_path)?;
            st.serialize_field("protocol", r.protocol)?;
            st.serialize_field("requestId", r.request_id)?;
            st.serialize_field("requestTime", &clf_time(r.time_ms))?;
            st.serialize_field("requestTimeEpoch", &r.time_ms)?;
            st.serialize_field("resourceId", &none)?;
            st.serialize_field("resourcePath", r.resource)?;
            st.serialize_field("stage", r.stage)?;
            st.end()
        }
    }

    let mut out = Vec::with_capacity(1536 + req.body.len() * 4 / 3);
    let mut ser = serde_json::Serializer::new(&mut out);
    let none: Option<&str> = None;
    let res = (|| {
        let mut m = (&mut ser).serialize_map(None)?;
        m.serialize_entry("version", "1.0")?;
        m.serialize_entry("resource", req.resource)?;
        m.serialize_entry("path", req.raw_path)?;
        m.serialize_entry("httpMethod", req.method)?;
        if headers.is_empty() {
            m.serialize_entry("headers", &none)?;
            m.serialize_entry("multiValueHeaders", &none)?;
        } else {
            m.serialize_entry("headers", &Obj(&headers))?;
            m.serialize_entry("multiValueHeaders", &Obj(&multi_headers))?;
        }
        if query.is_empty() {
            m.serialize_entry("queryStringParameters", &none)?;
            m.serialize_entry("multiValueQueryStringParameters", &none)?;
        } else {
            m.serialize_entry("queryStringParameters", &Obj(&query))?;
            m.serialize_entry("multiValueQueryStringParameters", &Obj(&multi_query))?;
        }
        m.serialize_entry("requestContext", &Ctx(req, domain, auth))?;
        if req.params.is_empty() {
            m.serialize_entry("pathParameters", &none)?;
        } else {
            m.serialize_entry("pathParameters", &Obj(req.params))?;
        }
        m.serialize_entry("stageVariables", &none)?;
        m.serialize_entry("body", &body)?;
        m.serialize_entry("isBase64Encoded", &b64)?;
        SerializeMap::end(m)
    })();
    res.expect("serialising to memory cannot fail");
    out
}

/// `id.execute-api.us-east-1.amazonaws.com` → `id`; a host without dots is its own
/// prefix.
fn domain_prefix(domain: &str) -> &str {
    domain.split(['.', ':']).next().unwrap_or(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn info<'a>(
        headers: &'a [(&'a str, Cow<'a, str>)],
        params: &'a [(&'a str, String)],
        body: &'a [u8],
    ) -> RequestInfo<'a> {
        RequestInfo {
            method: "POST",
            raw_path: "/users/42",
            raw_query: "a=1&a=2&b=x%20y",
            protocol: "HTTP/1.1",
            headers,
            http1: true,
            source_ip: "127.0.0.1",
            request_id: "JKJaXmPLvHcESHA=",
            time_ms: 1583348638390,
            body,
            route_key: "POST /users/{id}",
            resource: "/users/{id}",
            params,
            api_id: "abcdef1234",
            account_id: "123456789012",
            stage: "$default",
            binary_media_types: None,
        }
    }

    fn hdrs() -> Vec<(&'static str, Cow<'static, str>)> {
        vec![
            ("host", "api.example.com".into()),
            ("x-multi", "one".into()),
            ("x-multi", "two".into()),
            ("cookie", "a=1; b=2".into()),
            ("content-type", "application/json".into()),
        ]
    }

    #[test]
    fn v2_fields() {
        let h = hdrs();
        let p = vec![("id", "42".to_string())];
        let e: Value = serde_json::from_slice(&v2(&info(&h, &p, b"{\"x\":1}"))).unwrap();
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "POST /users/{id}");
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(e["cookies"], serde_json::json!(["a=1", "b=2"]));
        assert_eq!(e["headers"]["x-multi"], "one,two");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["queryStringParameters"]["a"], "1,2");
        assert_eq!(e["queryStringParameters"]["b"], "x y");
        assert_eq!(e["pathParameters"]["id"], "42");
        assert_eq!(e["body"], "{\"x\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        let c = &e["requestContext"];
        assert_eq!(c["domainPrefix"], "api");
        assert_eq!(c["http"]["method"], "POST");
        assert_eq!(c["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(c["timeEpoch"], 1583348638390i64);
        assert!(e.get("stageVariables").is_none());
    }

    #[test]
    fn v1_fields() {
        let h = hdrs();
        let e: Value = serde_json::from_slice(&v1(&info(&h, &[], &[0xff, 0x00]))).unwrap();
        assert_eq!(e["resource"], "/users/{id}");
        assert_eq!(e["headers"]["X-Multi"], "two");
        assert_eq!(
            e["multiValueHeaders"]["X-Multi"],
            serde_json::json!(["one", "two"])
        );
        assert_eq!(e["headers"]["Cookie"], "a=1; b=2");
        assert_eq!(e["queryStringParameters"]["a"], "2");
        assert_eq!(
            e["multiValueQueryStringParameters"]["a"],
            serde_json::json!(["1", "2"])
        );
        assert_eq!(e["pathParameters"], Value::Null);
        assert_eq!(e["stageVariables"], Value::Null);
        // Not UTF-8, so base64 whatever the content type says.
        assert_eq!(e["body"], "/wA=");
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(e["requestContext"]["requestTimeEpoch"], 1583348638390i64);
    }
}

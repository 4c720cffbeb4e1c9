//! The HTTP API settings of an app — CORS and authorizers — read from
//! serverless.yml (`provider.httpApi.cors`, `provider.httpApi.authorizers`, the
//! `httpApi` event's `authorizer`) and SAM (`AWS::Serverless::HttpApi`
//! `CorsConfiguration` and `Auth`, `Globals.HttpApi`, the `HttpApi` event's
//! `Auth`). `nimbus deploy` applies them through the gateway's own features
//! (`/_nimbus/cors`, `/_nimbus/authorizers`, a route's `authorizer`), so a
//! manifest's authorizer is exactly what `nimbus authorizer set` makes.
//!
//! The gateway has one CORS configuration for all its routes (as one HTTP API
//! has one), so an app declaring two different ones is "not supported yet".
//! Authorizers are named `<app>.<name>` on the server ([`server_name`]): the
//! prefix records which app owns them.

use crate::fields::{self, fields, join, Field};
use crate::yaml::{Node, Value};
use crate::{Diags, Route};
use serde_json::json;

/// An app's gateway settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gateway {
    /// The gateway's CORS configuration as `PUT /_nimbus/cors` takes it
    /// (`allow_origins`, `allow_methods`, …); `None`: the app sets none.
    pub cors: Option<serde_json::Value>,
    /// Where the CORS configuration is declared.
    pub cors_line: usize,
    pub authorizers: Vec<Authorizer>,
}

/// One authorizer, by its name in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorizer {
    pub name: String,
    pub kind: AuthorizerKind,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerKind {
    /// A JWT authorizer: the token's `iss` must be `issuer`, its `aud` one of
    /// `audiences`; the keys come from the issuer's OpenID discovery document.
    Jwt {
        issuer: String,
        audiences: Vec<String>,
        identity_source: Option<String>,
    },
    /// A Lambda authorizer: REQUEST, or TOKEN (REST APIs: one header).
    Lambda {
        /// The deployed function name.
        function: String,
        /// A TOKEN authorizer (the `http` event's default) rather than REQUEST.
        token: bool,
        qualifier: Option<String>,
        /// `1.0` or `2.0`.
        payload_format: String,
        simple_responses: bool,
        identity_sources: Vec<String>,
        ttl_seconds: u64,
    },
}

/// The authorizer's name on the server: `<app>.<name>` (app names have no `.`).
pub fn server_name(app: &str, name: &str) -> String {
    format!("{app}.{name}")
}

impl Authorizer {
    /// The body of `PUT /_nimbus/authorizers/{name}`; `jwks` is the JWT
    /// authorizer's key set URL (found by OpenID discovery at deploy time).
    pub fn server_body(&self, jwks: Option<&str>) -> serde_json::Value {
        match &self.kind {
            AuthorizerKind::Jwt {
                issuer,
                audiences,
                identity_source,
            } => {
                let mut j = json!({"issuer": issuer, "audiences": audiences, "jwks": jwks});
                if let Some(s) = identity_source {
                    j["identity_source"] = json!(s);
                }
                json!({"type": "jwt", "jwt": j})
            }
            AuthorizerKind::Lambda {
                function,
                token,
                qualifier,
                payload_format,
                simple_responses,
                identity_sources,
                ttl_seconds,
            } => {
                let mut l = json!({
                    "function": function,
                    "type": if *token { "TOKEN" } else { "REQUEST" },
                    "payload_format": payload_format,
                    "simple_responses": simple_responses,
                    "identity_sources": identity_sources,
                    "ttl_seconds": ttl_seconds,
                });
                if let Some(q) = qualifier {
                    l["qualifier"] = json!(q);
                }
                json!({"type": "lambda", "lambda": l})
            }
        }
    }
}

/// The function name (and qualifier) in a Lambda function ARN, or a plain name.
pub(crate) fn function_of_arn(s: &str) -> Option<(String, Option<String>)> {
    let rest = match s.split_once(":function:") {
        Some((_, r)) => r,
        None if s.starts_with("arn:") => return None,
        None => s,
    };
    let mut parts = rest.splitn(2, ':');
    let name = parts.next()?.to_string();
    if name.is_empty() {
        return None;
    }
    Some((name, parts.next().map(str::to_string)))
}

fn strings_or_one(d: &mut Diags, f: Field, path: &str) -> Option<Vec<String>> {
    match &f.val.value {
        Value::Seq(_) => fields::string_list(d, f, path),
        _ => fields::string(d, f, path).map(|s| vec![s]),
    }
}

/// Check the authorizer's name as the server will see it.
fn check_name(d: &mut Diags, app: &str, name: &str, line: usize, path: &str) -> bool {
    let full = server_name(app, name);
    let ok = !name.is_empty()
        && full.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        d.error(
            line,
            format!(
                "{path}: authorizer name {name:?} must be letters, digits, -, _ or . and, with the app's name ({full:?}), at most 64 characters"
            ),
        );
    }
    ok
}

// -- serverless.yml -------------------------------------------------------------

/// The Framework's default `allowedHeaders` for `cors: true`.
const SLS_CORS_HEADERS: &[&str] = &[
    "Content-Type",
    "X-Amz-Date",
    "Authorization",
    "X-Api-Key",
    "X-Amz-Security-Token",
    "X-Amz-User-Agent",
    "X-Amzn-Trace-Id",
];

/// `provider.httpApi.cors`: `true` or `{allowedOrigins, allowedHeaders,
/// allowedMethods, allowCredentials, exposedResponseHeaders, maxAge}`. The
/// methods default to those of the app's routes (filled in by [`finish_sls`]).
pub(crate) fn sls_cors(d: &mut Diags, f: Field, path: &str) -> Option<serde_json::Value> {
    let default = || {
        json!({
            "allow_origins": ["*"],
            "allow_headers": SLS_CORS_HEADERS,
            "allow_methods": serde_json::Value::Null,
            "expose_headers": [],
            "allow_credentials": false,
        })
    };
    match &f.val.value {
        Value::Bool(true) => return Some(default()),
        Value::Bool(false) | Value::Null => return None,
        Value::Str(s) if s == "true" => return Some(default()),
        Value::Str(s) if s == "false" => return None,
        Value::Map(_) => {}
        _ => {
            d.error(
                f.line(),
                format!("{path} must be true or a mapping, found {}", f.val.kind()),
            );
            return None;
        }
    }
    let cf = fields(
        d,
        f.val,
        path,
        &[
            "allowedOrigins",
            "allowedHeaders",
            "allowedMethods",
            "allowCredentials",
            "exposedResponseHeaders",
            "maxAge",
        ],
    )?;
    let mut c = default();
    let list = |d: &mut Diags, k: &str| {
        cf.get(k)
            .and_then(|x| strings_or_one(d, *x, &join(path, k)))
    };
    if let Some(v) = list(d, "allowedOrigins") {
        c["allow_origins"] = json!(v);
    }
    if let Some(v) = list(d, "allowedHeaders") {
        c["allow_headers"] = json!(v);
    }
    if let Some(v) = list(d, "allowedMethods") {
        c["allow_methods"] = json!(v);
    }
    if let Some(v) = list(d, "exposedResponseHeaders") {
        c["expose_headers"] = json!(v);
    }
    if let Some(x) = cf.get("allowCredentials") {
        if let Some(b) = fields::boolean(d, *x, &join(path, "allowCredentials")) {
            c["allow_credentials"] = json!(b);
        }
    }
    if let Some(x) = cf.get("maxAge") {
        if let Some(n) = fields::int(d, *x, &join(path, "maxAge"), 0, 86_400) {
            c["max_age"] = json!(n);
        }
    }
    Some(c)
}

/// `provider.httpApi.authorizers.<name>`: JWT (`identitySource`, `issuerUrl`,
/// `audience`) or `type: request` (`functionName` of this service or
/// `functionArn`, `identitySource`, `enableSimpleResponses`, `payloadVersion`,
/// `resultTtlInSeconds`). `names` maps the service's function keys to their
/// deployed names.
pub(crate) fn sls_authorizers(
    d: &mut Diags,
    f: Field,
    path: &str,
    app: &str,
    names: &std::collections::BTreeMap<String, String>,
) -> Vec<Authorizer> {
    let mut out = Vec::new();
    let map = match &f.val.value {
        Value::Map(m) => m.as_slice(),
        Value::Null => &[],
        _ => {
            d.error(
                f.line(),
                format!("{path} must be a mapping, found {}", f.val.kind()),
            );
            return out;
        }
    };
    for (k, v) in map {
        let key = k.scalar_text().unwrap_or_default();
        let ap = join(path, &key);
        let Some(af) = fields(
            d,
            v,
            &ap,
            &[
                "type",
                "name",
                "identitySource",
                "issuerUrl",
                "audience",
                "functionName",
                "functionArn",
                "enableSimpleResponses",
                "payloadVersion",
                "resultTtlInSeconds",
                "managedExternally",
            ],
        ) else {
            continue;
        };
        let name = af
            .get("name")
            .and_then(|x| fields::string(d, *x, &join(&ap, "name")))
            .unwrap_or_else(|| key.clone());
        if !check_name(d, app, &name, k.pos.line, &ap) {
            continue;
        }
        if let Some(x) = af.get("managedExternally") {
            if fields::boolean(d, *x, &join(&ap, "managedExternally")) == Some(true) {
                d.unsupported(
                    x.line(),
                    format!("{ap}.managedExternally: an authorizer managed outside the app"),
                );
                continue;
            }
        }
        let ty = af
            .get("type")
            .and_then(|x| fields::string(d, *x, &join(&ap, "type")))
            .unwrap_or_else(|| "jwt".into());
        match ty.to_ascii_lowercase().as_str() {
            "jwt" => {
                let issuer = af
                    .get("issuerUrl")
                    .and_then(|x| fields::string(d, *x, &join(&ap, "issuerUrl")));
                let audiences = af
                    .get("audience")
                    .and_then(|x| strings_or_one(d, *x, &join(&ap, "audience")));
                let identity_source = af
                    .get("identitySource")
                    .and_then(|x| fields::string(d, *x, &join(&ap, "identitySource")));
                match (issuer, audiences) {
                    (Some(issuer), Some(audiences)) if !audiences.is_empty() => {
                        out.push(Authorizer {
                            name,
                            kind: AuthorizerKind::Jwt {
                                issuer,
                                audiences,
                                identity_source,
                            },
                            line: k.pos.line,
                        })
                    }
                    _ => d.error(
                        k.pos.line,
                        format!("{ap}: a JWT authorizer needs issuerUrl and audience"),
                    ),
                }
            }
            "request" => {
                let function = match (af.get("functionName"), af.get("functionArn")) {
                    (Some(x), None) => {
                        fields::string(d, *x, &join(&ap, "functionName")).and_then(|n| match names
                            .get(&n)
                        {
                            Some(deployed) => Some((deployed.clone(), None)),
                            None => {
                                d.error(
                                    x.line(),
                                    format!("{ap}.functionName: no function {n:?} in this service"),
                                );
                                None
                            }
                        })
                    }
                    (None, Some(x)) => {
                        fields::string(d, *x, &join(&ap, "functionArn")).and_then(|a| {
                            let r = function_of_arn(&a);
                            if r.is_none() {
                                d.error(
                                    x.line(),
                                    format!("{ap}.functionArn: {a:?} is not a Lambda function ARN"),
                                );
                            }
                            r
                        })
                    }
                    _ => {
                        d.error(
                            k.pos.line,
                            format!("{ap}: a request authorizer needs functionName or functionArn (one of them)"),
                        );
                        None
                    }
                };
                let payload_format = match af.get("payloadVersion") {
                    Some(x) => fields::payload_version(d, *x, &join(&ap, "payloadVersion"))
                        .unwrap_or_else(|| "2.0".into()),
                    None => "2.0".into(),
                };
                let simple_responses = af
                    .get("enableSimpleResponses")
                    .and_then(|x| fields::boolean(d, *x, &join(&ap, "enableSimpleResponses")))
                    .unwrap_or(false);
                if simple_responses && payload_format != "2.0" {
                    d.error(
                        k.pos.line,
                        format!("{ap}: enableSimpleResponses needs payloadVersion '2.0'"),
                    );
                }
                let identity_sources = af
                    .get("identitySource")
                    .and_then(|x| strings_or_one(d, *x, &join(&ap, "identitySource")))
                    .unwrap_or_default();
                let ttl_seconds = af
                    .get("resultTtlInSeconds")
                    .and_then(|x| fields::int(d, *x, &join(&ap, "resultTtlInSeconds"), 0, 3600))
                    .map(u64::from)
                    .unwrap_or(300);
                if let Some((function, qualifier)) = function {
                    out.push(Authorizer {
                        name,
                        kind: AuthorizerKind::Lambda {
                            function,
                            token: false,
                            qualifier,
                            payload_format,
                            simple_responses,
                            identity_sources,
                            ttl_seconds,
                        },
                        line: k.pos.line,
                    });
                }
            }
            other => d.error(
                af.get("type").map(|x| x.line()).unwrap_or(k.pos.line),
                format!("{ap}.type must be jwt or request, found {other:?}"),
            ),
        }
    }
    out
}

/// The `httpApi` event's `authorizer`: a name, or `{name, scopes}`; `{type:
/// aws_iam}` and `{id}` (an authorizer outside the app) are not supported.
pub(crate) fn sls_event_authorizer(
    d: &mut Diags,
    f: Field,
    path: &str,
) -> Option<(String, Vec<String>)> {
    if let Some(s) = f.val.scalar_text() {
        return Some((s, Vec::new()));
    }
    let af = fields(d, f.val, path, &["name", "scopes", "type", "id"])?;
    if let Some(t) = af.get("type") {
        let ty = fields::string(d, *t, &join(path, "type")).unwrap_or_default();
        if ty.eq_ignore_ascii_case("aws_iam") {
            // An error, not "not supported yet": deploying the rest would leave
            // the route open.
            d.error(
                t.line(),
                format!("{path}.type: aws_iam (IAM-signed requests to the gateway) is not supported by the Nimbus gateway, and the route would be open; use a JWT or request authorizer"),
            );
            return None;
        }
        if !(ty.eq_ignore_ascii_case("jwt") || ty.eq_ignore_ascii_case("request")) {
            d.error(
                t.line(),
                format!("{path}.type must be aws_iam, jwt or request, found {ty:?}"),
            );
            return None;
        }
    }
    if let Some(x) = af.get("id") {
        d.error(
            x.line(),
            format!("{path}.id: an authorizer created outside the app is not supported (the route would be open); declare it in provider.httpApi.authorizers"),
        );
        return None;
    }
    let Some(name) = af
        .get("name")
        .and_then(|x| fields::string(d, *x, &join(path, "name")))
    else {
        d.error(f.line(), format!("{path} needs name"));
        return None;
    };
    let scopes = af
        .get("scopes")
        .and_then(|x| strings_or_one(d, *x, &join(path, "scopes")))
        .unwrap_or_default();
    Some((name, scopes))
}

/// After the routes are read: CORS methods from the routes when not given,
/// and every route's authorizer declared.
pub(crate) fn finish(d: &mut Diags, gw: &mut Gateway, routes: &[Route]) {
    if let Some(c) = &mut gw.cors {
        if c["allow_methods"].is_null() {
            let mut methods: Vec<String> = vec!["OPTIONS".into()];
            for r in routes {
                let m = match r.route_key.split_once(' ') {
                    Some(("ANY", _)) | None => "*".to_string(),
                    Some((m, _)) => m.to_string(),
                };
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
            if methods.iter().any(|m| m == "*") {
                methods = vec!["*".into()];
            }
            c["allow_methods"] = json!(methods);
        }
    }
    for (i, a) in gw.authorizers.iter().enumerate() {
        if gw.authorizers[..i].iter().any(|b| b.name == a.name) {
            d.error(a.line, format!("authorizer {:?} is declared twice", a.name));
        }
    }
    for r in routes {
        let Some(name) = &r.authorizer else { continue };
        match gw.authorizers.iter().find(|a| &a.name == name) {
            None => d.error(
                r.line,
                format!(
                    "route {}: no authorizer named {name:?} (declare it in provider.httpApi.authorizers / the API's Auth.Authorizers)",
                    r.route_key
                ),
            ),
            Some(a) => {
                if !r.authorization_scopes.is_empty()
                    && matches!(a.kind, AuthorizerKind::Lambda { .. })
                {
                    d.error(
                        r.line,
                        format!(
                            "route {}: authorization scopes apply to JWT authorizers only ({name:?} is a Lambda authorizer)",
                            r.route_key
                        ),
                    );
                }
            }
        }
    }
}

/// The `http` event's (REST API) `authorizer`: a function of the service (or its
/// ARN) as a TOKEN authorizer on `Authorization`, or `{name | arn, type: token |
/// request, identitySource, resultTtlInSeconds}`. Declared once per name in
/// `gw` (an identical second use is the same authorizer); returns the name the
/// route uses. Cognito user pools, `aws_iam` and `identityValidationExpression`
/// are refused: the route would not be protected as declared.
pub(crate) fn sls_http_authorizer(
    d: &mut Diags,
    f: Field,
    path: &str,
    names: &std::collections::BTreeMap<String, String>,
    gw: &mut Gateway,
) -> Option<(String, Vec<String>)> {
    let open = "the route would not be protected as declared";
    let (target, ty, sources, ttl) = match &f.val.value {
        Value::Map(_) => {
            let af = fields(
                d,
                f.val,
                path,
                &[
                    "name",
                    "arn",
                    "type",
                    "identitySource",
                    "resultTtlInSeconds",
                    "identityValidationExpression",
                    "scopes",
                    "authorizerId",
                    "managedExternally",
                ],
            )?;
            let ty = af
                .get("type")
                .and_then(|x| fields::string(d, *x, &join(path, "type")))
                .unwrap_or_else(|| "token".into())
                .to_ascii_lowercase();
            if ty == "aws_iam" || ty == "cognito_user_pools" {
                d.error(
                    af["type"].line(),
                    format!("{path}.type: {ty} is not supported by the Nimbus gateway, and {open}; use a Lambda (token or request) authorizer"),
                );
                return None;
            }
            for key in ["identityValidationExpression", "authorizerId", "scopes"] {
                if let Some(x) = af.get(key) {
                    d.error(
                        x.line(),
                        format!("{path}.{key} is not supported by the Nimbus gateway, and {open}"),
                    );
                    return None;
                }
            }
            if !matches!(ty.as_str(), "token" | "request") {
                d.error(
                    af["type"].line(),
                    format!("{path}.type must be token, request, cognito_user_pools or aws_iam, found {ty:?}"),
                );
                return None;
            }
            let target = af
                .get("arn")
                .or(af.get("name"))
                .and_then(|x| fields::string(d, *x, path));
            let sources = af
                .get("identitySource")
                .and_then(|x| fields::string(d, *x, &join(path, "identitySource")))
                .map(|s| {
                    s.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect::<Vec<_>>()
                });
            let ttl = af
                .get("resultTtlInSeconds")
                .and_then(|x| fields::int(d, *x, &join(path, "resultTtlInSeconds"), 0, 3600))
                .map(u64::from);
            (target, ty, sources, ttl)
        }
        _ => (fields::string(d, f, path), "token".into(), None, None),
    };
    let target = target?;
    if target.contains("cognito-idp") {
        d.error(
            f.line(),
            format!("{path}: Cognito user pool authorizers are not supported by the Nimbus gateway, and {open}"),
        );
        return None;
    }
    let (function, qualifier, name) = if target.starts_with("arn:") {
        let Some((fname, q)) = function_of_arn(&target) else {
            d.error(
                f.line(),
                format!("{path}: {target:?} is not a Lambda function ARN"),
            );
            return None;
        };
        (fname.clone(), q, fname)
    } else {
        match names.get(&target) {
            Some(n) => (n.clone(), None, target.clone()),
            None => {
                d.error(
                    f.line(),
                    format!("{path}: no function {target:?} in this service (give its ARN for another one)"),
                );
                return None;
            }
        }
    };
    let token = ty == "token";
    let identity_sources =
        sources.unwrap_or_else(|| vec!["method.request.header.Authorization".into()]);
    if token && identity_sources.len() != 1 {
        d.error(
            f.line(),
            format!("{path}.identitySource: a token authorizer takes exactly one header"),
        );
        return None;
    }
    let a = Authorizer {
        name: name.clone(),
        kind: AuthorizerKind::Lambda {
            function,
            token,
            qualifier,
            payload_format: "1.0".into(),
            simple_responses: false,
            identity_sources,
            ttl_seconds: ttl.unwrap_or(300),
        },
        line: f.line(),
    };
    match gw.authorizers.iter().find(|b| b.name == name) {
        Some(b) if b.kind != a.kind => {
            d.error(
                f.line(),
                format!(
                    "{path}: authorizer {name:?} is declared differently elsewhere in the service"
                ),
            );
            return None;
        }
        Some(_) => {}
        None => gw.authorizers.push(a),
    }
    Some((name, Vec::new()))
}

/// The `http` event's (REST API) `cors`: `true` (the Framework's defaults) or
/// `{origin | origins, headers, allowCredentials, maxAge}`. The gateway has one
/// CORS configuration, so every `http` event's must agree (their methods are
/// merged), and with `provider.httpApi.cors` when both are given.
pub(crate) fn sls_http_cors(d: &mut Diags, f: Field, path: &str, method: &str, gw: &mut Gateway) {
    let mut c = json!({
        "allow_origins": ["*"],
        "allow_headers": SLS_CORS_HEADERS,
        "allow_methods": ["OPTIONS", method],
        "expose_headers": [],
        "allow_credentials": false,
    });
    match &f.val.value {
        Value::Bool(true) => {}
        Value::Str(s) if s == "true" => {}
        Value::Bool(false) | Value::Null => return,
        Value::Str(s) if s == "false" => return,
        Value::Map(_) => {
            let Some(cf) = fields(
                d,
                f.val,
                path,
                &[
                    "origin",
                    "origins",
                    "headers",
                    "allowCredentials",
                    "maxAge",
                    "cacheControl",
                    "methods",
                ],
            ) else {
                return;
            };
            if let Some(x) = cf.get("origin").or(cf.get("origins")) {
                if let Some(v) = strings_or_one(d, *x, &join(path, "origins")) {
                    c["allow_origins"] = json!(v);
                }
            }
            if let Some(x) = cf.get("headers") {
                if let Some(v) = strings_or_one(d, *x, &join(path, "headers")) {
                    c["allow_headers"] = json!(v);
                }
            }
            if let Some(x) = cf.get("methods") {
                if let Some(v) = strings_or_one(d, *x, &join(path, "methods")) {
                    c["allow_methods"] = json!(v);
                }
            }
            if let Some(x) = cf.get("allowCredentials") {
                if let Some(b) = fields::boolean(d, *x, &join(path, "allowCredentials")) {
                    c["allow_credentials"] = json!(b);
                }
            }
            if let Some(x) = cf.get("maxAge") {
                if let Some(n) = fields::int(d, *x, &join(path, "maxAge"), 0, 86_400) {
                    c["max_age"] = json!(n);
                }
            }
            if let Some(x) = cf.get("cacheControl") {
                d.warn(
                    x.line(),
                    format!(
                        "{path}.cacheControl: the preflight's Cache-Control is not set (maxAge is)"
                    ),
                );
            }
        }
        _ => {
            d.error(
                f.line(),
                format!("{path} must be true or a mapping, found {}", f.val.kind()),
            );
            return;
        }
    }
    match &mut gw.cors {
        None => {
            gw.cors = Some(c);
            gw.cors_line = f.line();
        }
        Some(prev) => {
            // Methods add up; everything else must agree.
            let mut merged = prev.clone();
            if let (Some(m), Some(new)) = (
                merged["allow_methods"].as_array().cloned(),
                c["allow_methods"].as_array(),
            ) {
                let mut m = m;
                for x in new {
                    if !m.contains(x) {
                        m.push(x.clone());
                    }
                }
                merged["allow_methods"] = json!(m);
                c["allow_methods"] = json!(m);
            }
            if merged == c || prev["allow_methods"].is_null() {
                if prev["allow_methods"].is_null() {
                    // provider.httpApi.cors: true — its methods come from the routes.
                    return;
                }
                *prev = merged;
            } else {
                d.unsupported(
                    f.line(),
                    format!("{path}: a CORS configuration that differs from the app's other one (line {}); the Nimbus gateway has one for all routes", gw.cors_line),
                );
            }
        }
    }
}

// -- SAM ------------------------------------------------------------------------

/// `CorsConfiguration` of an `AWS::Serverless::HttpApi` (or `Globals.HttpApi`):
/// `true` (every origin, method and header) or `{AllowOrigins, AllowHeaders,
/// AllowMethods, AllowCredentials, ExposeHeaders, MaxAge}`.
pub(crate) fn sam_cors(d: &mut Diags, n: &Node, path: &str) -> Option<serde_json::Value> {
    match &n.value {
        Value::Bool(true) => {
            return Some(json!({
                "allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*"],
                "expose_headers": [], "allow_credentials": false,
            }))
        }
        Value::Bool(false) | Value::Null => return None,
        Value::Str(s) => {
            // SAM's Api `Cors: "'origin'"` string form: one quoted origin.
            let o = s.trim().trim_matches('\'').to_string();
            return Some(json!({
                "allow_origins": [o], "allow_methods": ["*"], "allow_headers": ["*"],
                "expose_headers": [], "allow_credentials": false,
            }));
        }
        Value::Map(_) => {}
        _ => {
            d.error(
                n.pos.line,
                format!("{path} must be true or a mapping, found {}", n.kind()),
            );
            return None;
        }
    }
    let cf = fields(
        d,
        n,
        path,
        &[
            "AllowOrigins",
            "AllowHeaders",
            "AllowMethods",
            "AllowCredentials",
            "ExposeHeaders",
            "MaxAge",
        ],
    )?;
    let list = |d: &mut Diags, k: &str| {
        cf.get(k)
            .and_then(|x| strings_or_one(d, *x, &join(path, k)))
            .unwrap_or_default()
    };
    let mut c = json!({
        "allow_origins": list(d, "AllowOrigins"),
        "allow_methods": list(d, "AllowMethods"),
        "allow_headers": list(d, "AllowHeaders"),
        "expose_headers": list(d, "ExposeHeaders"),
        "allow_credentials": false,
    });
    if let Some(x) = cf.get("AllowCredentials") {
        if let Some(b) = fields::boolean(d, *x, &join(path, "AllowCredentials")) {
            c["allow_credentials"] = json!(b);
        }
    }
    if let Some(x) = cf.get("MaxAge") {
        if let Some(v) = fields::int(d, *x, &join(path, "MaxAge"), 0, 86_400) {
            c["max_age"] = json!(v);
        }
    }
    Some(c)
}

/// An HTTP API's `Auth`: its authorizers and `DefaultAuthorizer`.
pub(crate) fn sam_auth(
    d: &mut Diags,
    n: &Node,
    path: &str,
    app: &str,
) -> (Vec<Authorizer>, Option<String>) {
    let mut out = Vec::new();
    let Some(af) = fields(
        d,
        n,
        path,
        &["Authorizers", "DefaultAuthorizer", "EnableIamAuthorizer"],
    ) else {
        return (out, None);
    };
    if let Some(x) = af.get("EnableIamAuthorizer") {
        if fields::boolean(d, *x, &join(path, "EnableIamAuthorizer")) == Some(true) {
            d.unsupported(
                x.line(),
                format!("{path}.EnableIamAuthorizer: AWS_IAM authorization is not supported by the Nimbus gateway; use a JWT or Lambda authorizer"),
            );
        }
    }
    let default = af
        .get("DefaultAuthorizer")
        .and_then(|x| fields::string(d, *x, &join(path, "DefaultAuthorizer")));
    if default.as_deref() == Some("AWS_IAM") {
        d.error(
            af["DefaultAuthorizer"].line(),
            format!("{path}.DefaultAuthorizer: AWS_IAM is not supported by the Nimbus gateway, and the routes would be open; use a JWT or Lambda authorizer"),
        );
    }
    let ap = join(path, "Authorizers");
    for (k, v) in af
        .get("Authorizers")
        .and_then(|x| x.val.as_map())
        .unwrap_or(&[])
    {
        let name = k.scalar_text().unwrap_or_default();
        let p = join(&ap, &name);
        if !check_name(d, app, &name, k.pos.line, &p) {
            continue;
        }
        let Some(f) = fields(
            d,
            v,
            &p,
            &[
                "JwtConfiguration",
                "IdentitySource",
                "AuthorizationScopes",
                "FunctionArn",
                "FunctionInvokeRole",
                "Identity",
                "AuthorizerPayloadFormatVersion",
                "EnableSimpleResponses",
                "EnableFunctionDefaultPermissions",
            ],
        ) else {
            continue;
        };
        if let Some(j) = f.get("JwtConfiguration") {
            let Some(jf) = fields(
                d,
                j.val,
                &join(&p, "JwtConfiguration"),
                &["issuer", "audience"],
            ) else {
                continue;
            };
            let issuer = jf
                .get("issuer")
                .and_then(|x| fields::string(d, *x, &join(&p, "JwtConfiguration.issuer")));
            let audiences = jf
                .get("audience")
                .and_then(|x| strings_or_one(d, *x, &join(&p, "JwtConfiguration.audience")));
            let identity_source = f
                .get("IdentitySource")
                .and_then(|x| fields::string(d, *x, &join(&p, "IdentitySource")));
            if f.contains_key("AuthorizationScopes") {
                d.warn(
                    k.pos.line,
                    format!("{p}.AuthorizationScopes: scopes are set per route (the event's Auth.AuthorizationScopes)"),
                );
            }
            match (issuer, audiences) {
                (Some(issuer), Some(audiences)) if !audiences.is_empty() => out.push(Authorizer {
                    name,
                    kind: AuthorizerKind::Jwt {
                        issuer,
                        audiences,
                        identity_source,
                    },
                    line: k.pos.line,
                }),
                _ => d.error(
                    k.pos.line,
                    format!("{p}.JwtConfiguration needs issuer and audience"),
                ),
            }
            continue;
        }
        let Some(arn) = f.get("FunctionArn") else {
            d.error(
                k.pos.line,
                format!("{p}: an authorizer needs JwtConfiguration or FunctionArn"),
            );
            continue;
        };
        let Some((function, qualifier)) = arn.val.scalar_text().and_then(|a| function_of_arn(&a))
        else {
            d.error(
                arn.line(),
                format!("{p}.FunctionArn must be a Lambda function ARN (!GetAtt Function.Arn)"),
            );
            continue;
        };
        let payload_format = match f.get("AuthorizerPayloadFormatVersion") {
            Some(x) => fields::payload_version(d, *x, &join(&p, "AuthorizerPayloadFormatVersion"))
                .unwrap_or_else(|| "2.0".into()),
            None => {
                d.error(
                    k.pos.line,
                    format!(
                        "{p}.AuthorizerPayloadFormatVersion is required for a Lambda authorizer"
                    ),
                );
                continue;
            }
        };
        let simple_responses = f
            .get("EnableSimpleResponses")
            .and_then(|x| fields::boolean(d, *x, &join(&p, "EnableSimpleResponses")))
            .unwrap_or(false);
        let mut identity_sources = Vec::new();
        let mut ttl_seconds = 0;
        if let Some(i) = f.get("Identity") {
            let ip = join(&p, "Identity");
            if let Some(idf) = fields(
                d,
                i.val,
                &ip,
                &[
                    "Headers",
                    "QueryStrings",
                    "ReauthorizeEvery",
                    "Context",
                    "StageVariables",
                ],
            ) {
                for h in idf
                    .get("Headers")
                    .and_then(|x| fields::string_list(d, *x, &join(&ip, "Headers")))
                    .unwrap_or_default()
                {
                    identity_sources.push(format!("$request.header.{h}"));
                }
                for q in idf
                    .get("QueryStrings")
                    .and_then(|x| fields::string_list(d, *x, &join(&ip, "QueryStrings")))
                    .unwrap_or_default()
                {
                    identity_sources.push(format!("$request.querystring.{q}"));
                }
                if let Some(x) = idf.get("ReauthorizeEvery") {
                    ttl_seconds = fields::int(d, *x, &join(&ip, "ReauthorizeEvery"), 0, 3600)
                        .map(u64::from)
                        .unwrap_or(0);
                }
                for key in ["Context", "StageVariables"] {
                    if let Some(x) = idf.get(key) {
                        d.unsupported(
                            x.line(),
                            format!("{ip}.{key}: identity sources from the request context or stage variables"),
                        );
                    }
                }
            }
        }
        out.push(Authorizer {
            name,
            kind: AuthorizerKind::Lambda {
                function,
                token: false,
                qualifier,
                payload_format,
                simple_responses,
                identity_sources,
                ttl_seconds,
            },
            line: k.pos.line,
        });
    }
    (out, default)
}

/// The `HttpApi` event's `Auth`: `Authorizer` (a name, `NONE`, `AWS_IAM`) and
/// `AuthorizationScopes`. `Some(None)` is an explicit `NONE`.
pub(crate) fn sam_event_auth(
    d: &mut Diags,
    f: Field,
    path: &str,
) -> (Option<Option<String>>, Vec<String>) {
    let Some(af) = fields(d, f.val, path, &["Authorizer", "AuthorizationScopes"]) else {
        return (None, Vec::new());
    };
    let scopes = af
        .get("AuthorizationScopes")
        .and_then(|x| fields::string_list(d, *x, &join(path, "AuthorizationScopes")))
        .unwrap_or_default();
    let auth = match af
        .get("Authorizer")
        .and_then(|x| fields::string(d, *x, &join(path, "Authorizer")))
    {
        None => None,
        Some(n) if n == "NONE" => Some(None),
        Some(n) if n == "AWS_IAM" => {
            d.error(
                af["Authorizer"].line(),
                format!("{path}.Authorizer: AWS_IAM (IAM-signed requests to the gateway) is not supported by the Nimbus gateway, and the route would be open; use a JWT or Lambda authorizer"),
            );
            Some(None)
        }
        Some(n) => Some(Some(n)),
    };
    (auth, scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load, Options};

    fn load_app(file: &str, manifest: &str) -> (Option<crate::App>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), manifest).unwrap();
        std::fs::write(dir.path().join("handler.py"), "def main(e, c): pass\n").unwrap();
        let l = load(&dir.path().join(file), &Options::default());
        let msgs = l
            .diagnostics
            .iter()
            .map(|d| {
                let s = d.to_string();
                s[s.find(file).unwrap()..].to_string()
            })
            .collect();
        (l.app, msgs)
    }

    const SLS: &str = "\
service: gw
provider:
  name: aws
  runtime: python3.12
  httpApi:
    cors: true
    authorizers:
      jwtAuth:
        identitySource: $request.header.Authorization
        issuerUrl: https://idp.example.com/
        audience: api
      req:
        type: request
        functionName: auth
        identitySource:
          - $request.header.X-Token
          - $request.querystring.t
        resultTtlInSeconds: 30
functions:
  api:
    handler: handler.main
    events:
      - httpApi:
          method: GET
          path: /me
          authorizer:
            name: jwtAuth
            scopes: [read]
      - httpApi:
          method: POST
          path: /me
          authorizer: req
      - httpApi: GET /open
  auth:
    handler: handler.main
";

    #[test]
    fn serverless_yml_http_api_settings() {
        let (app, msgs) = load_app("serverless.yml", SLS);
        assert!(msgs.is_empty(), "{msgs:?}");
        let app = app.unwrap();
        let c = app.gateway.cors.as_ref().unwrap();
        assert_eq!(c["allow_origins"], json!(["*"]));
        assert_eq!(c["allow_methods"], json!(["OPTIONS", "GET", "POST"]));
        assert_eq!(c["allow_headers"][2], "Authorization");
        assert_eq!(app.gateway.cors_line, 6);
        let jwt = &app.gateway.authorizers[0];
        assert_eq!(jwt.name, "jwtAuth");
        assert_eq!(
            jwt.kind,
            AuthorizerKind::Jwt {
                issuer: "https://idp.example.com/".into(),
                audiences: vec!["api".into()],
                identity_source: Some("$request.header.Authorization".into()),
            }
        );
        assert_eq!(
            app.gateway.authorizers[1].kind,
            AuthorizerKind::Lambda {
                function: "gw-dev-auth".into(),
                token: false,
                qualifier: None,
                payload_format: "2.0".into(),
                simple_responses: false,
                identity_sources: vec![
                    "$request.header.X-Token".into(),
                    "$request.querystring.t".into()
                ],
                ttl_seconds: 30,
            }
        );
        let me = &app.routes[0];
        assert_eq!(me.authorizer.as_deref(), Some("jwtAuth"));
        assert_eq!(me.authorization_scopes, vec!["read".to_string()]);
        assert_eq!(app.routes[1].authorizer.as_deref(), Some("req"));
        assert_eq!(app.routes[2].authorizer, None);
        assert_eq!(server_name(&app.name, "jwtAuth"), "gw-dev.jwtAuth");
        let body = app.gateway.authorizers[0].server_body(Some("https://idp.example.com/keys"));
        assert_eq!(body["jwt"]["jwks"], "https://idp.example.com/keys");
    }

    #[test]
    fn serverless_yml_refusals() {
        let bad = SLS
            .replace("authorizer: req", "authorizer:\n            type: aws_iam")
            .replace(
                "name: jwtAuth\n            scopes",
                "name: nope\n            scopes",
            )
            .replace("functionName: auth", "functionName: missing");
        let (app, msgs) = load_app("serverless.yml", &bad);
        assert!(app.is_none());
        let all = msgs.join("\n");
        assert!(all.contains("serverless.yml:33: error: functions.api.events[1].httpApi.authorizer.type: aws_iam"), "{all}");
        assert!(all.contains("serverless.yml:14: error: provider.httpApi.authorizers.req.functionName: no function \"missing\""), "{all}");
        assert!(
            all.contains("route GET /me: no authorizer named \"nope\""),
            "{all}"
        );
    }

    const SAM: &str = "\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  HttpApi:
    CorsConfiguration: true
    Auth:
      DefaultAuthorizer: G
      Authorizers:
        G:
          JwtConfiguration:
            issuer: https://idp.example.com
            audience: [a, b]
          IdentitySource: $request.header.Authorization
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: L
        Authorizers:
          L:
            FunctionArn: !GetAtt Fn.Arn
            AuthorizerPayloadFormatVersion: '1.0'
            Identity:
              Headers: [X-Key]
              ReauthorizeEvery: 60
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: handler.main
      CodeUri: .
      Events:
        Implicit:
          Type: HttpApi
          Properties:
            Method: GET
            Path: /i
            Auth:
              AuthorizationScopes: [s1]
        Explicit:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /e
        Open:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /o
            Auth:
              Authorizer: NONE
";

    #[test]
    fn sam_http_api_settings() {
        let (app, msgs) = load_app("template.yaml", SAM);
        assert!(msgs.is_empty(), "{msgs:?}");
        let app = app.unwrap();
        let c = app.gateway.cors.as_ref().unwrap();
        assert_eq!(c["allow_origins"], json!(["*"]));
        assert_eq!(c["allow_methods"], json!(["*"]));
        let names: Vec<&str> = app
            .gateway
            .authorizers
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, vec!["L", "G"]);
        match &app.gateway.authorizers[0].kind {
            AuthorizerKind::Lambda {
                function,
                payload_format,
                identity_sources,
                ttl_seconds,
                ..
            } => {
                assert_eq!(function, &format!("{}-Fn", app.name));
                assert_eq!(payload_format, "1.0");
                assert_eq!(identity_sources, &vec!["$request.header.X-Key".to_string()]);
                assert_eq!(*ttl_seconds, 60);
            }
            k => panic!("{k:?}"),
        }
        let by_key = |k: &str| app.routes.iter().find(|r| r.route_key == k).unwrap();
        assert_eq!(by_key("GET /i").authorizer.as_deref(), Some("G"));
        assert_eq!(
            by_key("GET /i").authorization_scopes,
            vec!["s1".to_string()]
        );
        assert_eq!(by_key("GET /e").authorizer.as_deref(), Some("L"));
        assert_eq!(by_key("GET /o").authorizer, None);
    }

    #[test]
    fn sam_refuses_iam_and_unknown_authorizers() {
        let bad = SAM
            .replace("Authorizer: NONE", "Authorizer: AWS_IAM")
            .replace("AuthorizationScopes: [s1]", "Authorizer: L");
        let (app, msgs) = load_app("template.yaml", &bad);
        assert!(app.is_none());
        let all = msgs.join("\n");
        assert!(
            all.contains("template.yaml:54: error:") && all.contains("AWS_IAM"),
            "{all}"
        );
        assert!(
            all.contains("route GET /i: its HTTP API has no authorizer named \"L\""),
            "{all}"
        );
    }

    #[test]
    fn function_names_of_arns() {
        assert_eq!(
            function_of_arn("arn:aws:lambda:us-east-1:000000000000:function:auth"),
            Some(("auth".into(), None))
        );
        assert_eq!(
            function_of_arn("arn:aws:lambda:us-east-1:000000000000:function:auth:live"),
            Some(("auth".into(), Some("live".into())))
        );
        assert_eq!(function_of_arn("plain"), Some(("plain".into(), None)));
        assert_eq!(function_of_arn("arn:aws:sqs:us-east-1:0:q"), None);
    }
}

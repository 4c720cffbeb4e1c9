//! Lambda function URLs on the gateway listener.
//!
//! A function (unqualified, or one of its aliases) can have one URL config, made and
//! changed through Lambda's `*FunctionUrlConfig` operations (the API crate) and kept
//! durably in the gateway's settings table. Each has a 32-character `url_id`, as
//! AWS's do, and is reached on the gateway listener two ways:
//!
//! * by path prefix, which every client can use:
//!   `http://127.0.0.1:8080/_url/<url-id>/any/path?x=1` — the function sees
//!   `rawPath` `/any/path`. This is the `FunctionUrl` the API returns
//!   (`http://127.0.0.1:8080/_url/<url-id>/`);
//! * by host name, as on AWS (`https://<url-id>.lambda-url.<region>.on.aws/`): any
//!   `Host` of the form `<url-id>.lambda-url.<anything>`, e.g.
//!   `curl http://<url-id>.lambda-url.localhost:8080/any/path` (curl and browsers
//!   resolve `*.localhost` to the loopback address by themselves).
//!
//! The event is payload format 2.0 as function URLs send it: `routeKey` and `stage`
//! `$default`, `requestContext.apiId` and `domainPrefix` the url id, `domainName`
//! the `Host` the client used, `accountId` `anonymous` for `NONE` URLs, and for
//! `AWS_IAM` URLs `requestContext.authorizer.iam` describing the signer. `AWS_IAM`
//! requests must carry a SigV4 signature for service `lambda` made with one of the
//! server's `--credentials`; anything else is `403 {"Message":"Forbidden"}`. The
//! response is read as 2.0 (inferred responses included). The URL's own CORS
//! configuration applies as [`crate::cors`] describes. There is no integration
//! timeout: the function's own timeout bounds a request, as on AWS.

use crate::cors::{self, CorsConfig};
use crate::event::{self, RequestInfo};
use crate::response::{self, Response};
use crate::route::PayloadFormat;
use crate::server::Gateway;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use nimbus_auth::{AuthError, Credentials, Verifier};
use nimbus_core::Trigger;
use nimbus_dispatch::{Invocation, InvokeError};
use nimbus_store::{RouteStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// The settings kind function URL configs are stored under.
const KIND: &str = "function_url";
/// The path prefix of function URLs on the gateway listener.
pub const PATH_PREFIX: &str = "/_url/";

/// `AuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthType {
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl AuthType {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthType::None => "NONE",
            AuthType::AwsIam => "AWS_IAM",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NONE" => Some(AuthType::None),
            "AWS_IAM" => Some(AuthType::AwsIam),
            _ => None,
        }
    }
}

/// `InvokeMode`. Nimbus stores `RESPONSE_STREAM` but answers buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum InvokeMode {
    #[default]
    #[serde(rename = "BUFFERED")]
    Buffered,
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
}

impl InvokeMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            InvokeMode::Buffered => "BUFFERED",
            InvokeMode::ResponseStream => "RESPONSE_STREAM",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BUFFERED" => Some(InvokeMode::Buffered),
            "RESPONSE_STREAM" => Some(InvokeMode::ResponseStream),
            _ => None,
        }
    }
}

/// One function URL as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionUrlConfig {
    pub url_id: String,
    pub function: String,
    /// An alias name; `None` for the unqualified function (`$LATEST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    pub auth_type: AuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    #[serde(default)]
    pub invoke_mode: InvokeMode,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The `created_ms` of the function the URL was made for: a function deleted and
    /// created again under the same name does not inherit the old one's URL.
    #[serde(default)]
    pub function_created_ms: i64,
}

impl FunctionUrlConfig {
    fn key(&self) -> String {
        key_of(&self.function, self.qualifier.as_deref())
    }

    /// Whether the config belongs to the function now deployed under its name,
    /// created at `function_created_ms`.
    pub fn belongs_to(&self, function_created_ms: i64) -> bool {
        self.function_created_ms == function_created_ms
    }
}

fn key_of(function: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("{function}:{q}"),
        None => function.to_string(),
    }
}

/// What a change to the URL configs may run into.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("FunctionUrlConfig exists for this Lambda function")]
    Exists,
    #[error("The resource you requested does not exist.")]
    NotFound,
    #[error("cannot store the function URL config: {0}")]
    Store(#[from] StoreError),
}

/// One access key a signed function URL request may be made with (the server's
/// `--credentials`), and the IAM user it acts as (`None`: the account root).
#[derive(Debug, Clone)]
pub struct IamKey {
    pub credentials: Credentials,
    pub user: Option<String>,
}

#[derive(Default)]
struct Maps {
    by_key: BTreeMap<String, Arc<FunctionUrlConfig>>,
    by_id: HashMap<String, Arc<FunctionUrlConfig>>,
}

/// The function URL configs: durable in the store, served from memory. Cheap to
/// clone.
#[derive(Clone)]
pub struct FunctionUrls {
    store: RouteStore,
    maps: Arc<RwLock<Maps>>,
    /// Writers hold this across the store write and the swap, so changes apply in
    /// one order in the store and in memory.
    write: Arc<tokio::sync::Mutex<()>>,
}

impl FunctionUrls {
    pub fn open(store: RouteStore) -> Result<Self, StoreError> {
        let mut maps = Maps::default();
        for (key, config) in store.list_settings(KIND)? {
            match serde_json::from_str::<FunctionUrlConfig>(&config) {
                Ok(c) => {
                    let c = Arc::new(c);
                    maps.by_id.insert(c.url_id.clone(), c.clone());
                    maps.by_key.insert(key, c);
                }
                Err(e) => tracing::warn!(
                    key = %key,
                    error = %e,
                    "skipping a stored function URL config that no longer parses"
                ),
            }
        }
        Ok(Self {
            store,
            maps: Arc::new(RwLock::new(maps)),
            write: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, function: &str, qualifier: Option<&str>) -> Option<Arc<FunctionUrlConfig>> {
        self.read()
            .by_key
            .get(&key_of(function, qualifier))
            .cloned()
    }

    pub fn by_id(&self, url_id: &str) -> Option<Arc<FunctionUrlConfig>> {
        self.read().by_id.get(url_id).cloned()
    }

    /// A function's URL configs (unqualified first, then by alias).
    pub fn list(&self, function: &str) -> Vec<Arc<FunctionUrlConfig>> {
        self.read()
            .by_key
            .values()
            .filter(|c| c.function == function)
            .cloned()
            .collect()
    }

    async fn write_through(&self, c: &FunctionUrlConfig) -> Result<(), StoreError> {
        let store = self.store.clone();
        let (key, config, at) = (
            c.key(),
            serde_json::to_string(c).expect("a function URL config serialises"),
            c.updated_ms,
        );
        tokio::task::spawn_blocking(move || store.put_setting(KIND, &key, &config, at))
            .await
            .map_err(|e| StoreError::Corrupt(format!("function URL write task failed: {e}")))?
    }

    /// Forget the URL configs of an earlier function of this name (one deleted and
    /// created again since): the function now deployed was created at
    /// `function_created_ms`.
    pub async fn prune(&self, function: &str, function_created_ms: i64) -> Result<(), UrlError> {
        let stale: Vec<Arc<FunctionUrlConfig>> = self
            .list(function)
            .into_iter()
            .filter(|c| !c.belongs_to(function_created_ms))
            .collect();
        for c in stale {
            match self.delete(&c.function, c.qualifier.as_deref()).await {
                Ok(()) | Err(UrlError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Create a function's URL config; [`UrlError::Exists`] when it has one.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        function: &str,
        function_created_ms: i64,
        qualifier: Option<&str>,
        auth_type: AuthType,
        cors: Option<CorsConfig>,
        invoke_mode: InvokeMode,
    ) -> Result<Arc<FunctionUrlConfig>, UrlError> {
        let _w = self.write.lock().await;
        if self.get(function, qualifier).is_some() {
            return Err(UrlError::Exists);
        }
        let now = nimbus_core::now_ms();
        let mut url_id = new_url_id();
        while self.by_id(&url_id).is_some() {
            url_id = new_url_id();
        }
        let c = FunctionUrlConfig {
            url_id,
            function: function.to_string(),
            qualifier: qualifier.map(str::to_string),
            auth_type,
            cors,
            invoke_mode,
            created_ms: now,
            updated_ms: now,
            function_created_ms,
        };
        self.write_through(&c).await?;
        let c = Arc::new(c);
        let mut m = self.maps.write().unwrap_or_else(|p| p.into_inner());
        m.by_id.insert(c.url_id.clone(), c.clone());
        m.by_key.insert(c.key(), c.clone());
        Ok(c)
    }

    /// Change what is given; the url id and creation time stay.
    pub async fn update(
        &self,
        function: &str,
        qualifier: Option<&str>,
        auth_type: Option<AuthType>,
        cors: Option<CorsConfig>,
        invoke_mode: Option<InvokeMode>,
    ) -> Result<Arc<FunctionUrlConfig>, UrlError> {
        let _w = self.write.lock().await;
        let Some(prev) = self.get(function, qualifier) else {
            return Err(UrlError::NotFound);
        };
        let mut c = (*prev).clone();
        if let Some(a) = auth_type {
            c.auth_type = a;
        }
        if let Some(cors) = cors {
            c.cors = Some(cors);
        }
        if let Some(m) = invoke_mode {
            c.invoke_mode = m;
        }
        c.updated_ms = nimbus_core::now_ms().max(prev.updated_ms);
        self.write_through(&c).await?;
        let c = Arc::new(c);
        let mut m = self.maps.write().unwrap_or_else(|p| p.into_inner());
        m.by_id.insert(c.url_id.clone(), c.clone());
        m.by_key.insert(c.key(), c.clone());
        Ok(c)
    }

    pub async fn delete(&self, function: &str, qualifier: Option<&str>) -> Result<(), UrlError> {
        let _w = self.write.lock().await;
        let Some(prev) = self.get(function, qualifier) else {
            return Err(UrlError::NotFound);
        };
        let store = self.store.clone();
        let key = prev.key();
        tokio::task::spawn_blocking(move || store.delete_setting(KIND, &key))
            .await
            .map_err(|e| StoreError::Corrupt(format!("function URL delete task failed: {e}")))??;
        let mut m = self.maps.write().unwrap_or_else(|p| p.into_inner());
        m.by_id.remove(&prev.url_id);
        m.by_key.remove(&prev.key());
        Ok(())
    }

    /// The URL clients call: `<gateway>/_url/<url-id>/`.
    pub fn url_of(public_url: &str, c: &FunctionUrlConfig) -> String {
        format!(
            "{}{PATH_PREFIX}{}/",
            public_url.trim_end_matches('/'),
            c.url_id
        )
    }
}

/// 32 characters of `[a-z0-9]`, like AWS's url ids.
fn new_url_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    for byte in a.as_bytes().iter().chain(b.as_bytes()) {
        out.push(ALPHABET[(*byte as usize) % ALPHABET.len()] as char);
    }
    out
}

/// Where a request goes.
enum Target {
    /// A function URL, and the path the function sees.
    Url(Arc<FunctionUrlConfig>, String),
    /// Addressed to a function URL that does not exist.
    Unknown,
}

/// The url id of a `Host` like `<url-id>.lambda-url.localhost:8080`.
fn host_url_id(host: &str) -> Option<&str> {
    let (id, rest) = host.split_once('.')?;
    rest.starts_with("lambda-url.").then_some(id)
}

fn target(routes: &crate::RouteTable, parts: &http::request::Parts) -> Option<Target> {
    let urls = routes.function_urls();
    // A config whose function is gone (or was created again since) does not answer.
    let live = |c: Arc<FunctionUrlConfig>| {
        routes
            .dispatch()
            .function(&c.function)
            .is_some_and(|f| c.belongs_to(f.created_ms))
            .then_some(c)
    };
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    if let Some(id) = host.and_then(host_url_id) {
        return Some(match urls.by_id(id).and_then(live) {
            Some(c) => Target::Url(c, parts.uri.path().to_string()),
            None => Target::Unknown,
        });
    }
    let rest = parts.uri.path().strip_prefix(PATH_PREFIX)?;
    let (id, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some(match urls.by_id(id).and_then(live) {
        Some(c) => Target::Url(c, path.to_string()),
        None => Target::Unknown,
    })
}

/// The front of the gateway: a function URL's request goes to its function; every
/// other request to the routes (with the API's CORS).
pub(crate) async fn front(
    gw: &Gateway,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    request_id: &str,
    log: &mut crate::server::Access,
) -> Response {
    let (parts, body) = req.into_parts();
    match target(gw.routes(), &parts) {
        None => {
            cors::serve_routes(
                gw,
                http::Request::from_parts(parts, body),
                peer,
                request_id,
                log,
            )
            .await
        }
        Some(Target::Unknown) => {
            log.method = parts.method.to_string();
            log.path = parts.uri.path().to_string();
            response::not_found()
        }
        Some(Target::Url(c, path)) => {
            log.method = parts.method.to_string();
            log.path = parts.uri.path().to_string();
            log.route = format!("function URL {}", c.key());
            if let Some(cors) = &c.cors {
                if cors::is_preflight(&parts.method, &parts.headers) {
                    return cors.preflight(&parts.headers);
                }
            }
            let origin = parts.headers.get(ORIGIN).cloned();
            let mut resp = serve(gw, &c, &path, parts, body, peer, request_id, log).await;
            if let Some(cors) = &c.cors {
                cors.apply(origin.as_ref(), &mut resp);
            }
            resp
        }
    }
}

/// Lambda's answer to a refused `AWS_IAM` request.
fn forbidden() -> Response {
    let mut r = http::Response::new(response::Body::new(Bytes::from_static(
        br#"{"Message":"Forbidden"}"#,
    )));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static("AccessDeniedException"),
    );
    r
}

fn too_large() -> Response {
    response::message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
}

/// Who signed an `AWS_IAM` request.
struct Caller {
    access_key: String,
    user: Option<String>,
}

/// Check an `AWS_IAM` request's signature (service `lambda`).
fn authenticate(
    keys: &[IamKey],
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Caller, String> {
    let mut headers = parts.headers.clone();
    if !headers.contains_key(HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(HOST, v);
        }
    }
    if keys.is_empty() {
        // No server credentials: nothing to check a signature against. A signed
        // request is taken at its word, as the API listener does; an unsigned one
        // is refused.
        let scope = nimbus_auth::parse_scope_unverified(&headers, parts.uri.query().unwrap_or(""))
            .ok_or("the request is not signed")?;
        if scope.service != "lambda" {
            return Err(format!(
                "signed for service {:?}, not lambda",
                scope.service
            ));
        }
        return Ok(Caller {
            access_key: scope.access_key_id,
            user: None,
        });
    }
    let verifier = Verifier::new(keys.iter().map(|k| k.credentials.clone()));
    let req = nimbus_auth::Request::new(parts.method.as_str(), &parts.uri, &headers, Some(body));
    let verified = verifier.verify(&req).map_err(|e| match e {
        AuthError::SignatureMismatch(_) => "the signature does not match".to_string(),
        other => other.to_string(),
    })?;
    if verified.scope.service != "lambda" {
        return Err(format!(
            "signed for service {:?}, not lambda",
            verified.scope.service
        ));
    }
    let user = keys
        .iter()
        .find(|k| k.credentials.access_key_id == verified.scope.access_key_id)
        .and_then(|k| k.user.clone());
    Ok(Caller {
        access_key: verified.scope.access_key_id,
        user,
    })
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    gw: &Gateway,
    c: &FunctionUrlConfig,
    path: &str,
    parts: http::request::Parts,
    body: Incoming,
    peer: SocketAddr,
    request_id: &str,
    log: &mut crate::server::Access,
) -> Response {
    let time_ms = nimbus_core::now_ms();
    let settings = gw.settings();

    // The body, within the limit.
    let limit = settings.body_limit;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body: Bytes = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            return response::message(StatusCode::BAD_REQUEST, "Bad Request");
        }
    };

    let caller = match c.auth_type {
        AuthType::None => None,
        AuthType::AwsIam => match authenticate(&settings.iam_keys, &parts, &body) {
            Ok(caller) => Some(caller),
            Err(why) => {
                tracing::info!(
                    url = %c.key(),
                    method = %parts.method,
                    path = parts.uri.path(),
                    "function URL request refused: {why}"
                );
                return forbidden();
            }
        },
    };

    // Headers as the event carries them, plus what Lambda adds.
    let source_ip = peer.ip().to_string();
    let trace_id = crate::server::request_trace(&parts.headers, log);
    let headers = crate::server::event_headers(&parts, &source_ip, &trace_id, gw.port());

    let info = RequestInfo {
        method: parts.method.as_str(),
        raw_path: path,
        raw_query: parts.uri.query().unwrap_or(""),
        protocol: crate::server::protocol(parts.version),
        headers: &headers,
        http1: parts.version < http::Version::HTTP_2,
        source_ip: &source_ip,
        request_id,
        time_ms,
        body: &body,
        route_key: "$default",
        resource: "$default",
        params: &[],
        api_id: &c.url_id,
        account_id: if caller.is_some() {
            nimbus_core::ACCOUNT_ID
        } else {
            "anonymous"
        },
        stage: "$default",
        binary_media_types: None,
    };
    let payload = url_event(event::v2(&info), c, caller.as_ref());
    drop(headers);

    let inv = Invocation {
        function: c.function.clone(),
        qualifier: c.qualifier.clone(),
        payload: Bytes::from(payload),
        trigger: Trigger::Http,
        client_context: None,
        trace_id: Some(trace_id),
    };
    let t0 = std::time::Instant::now();
    let result = gw.routes().dispatch().invoke(inv).await;
    log.integration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(res) => {
            log.function_request_id = res.request_id.clone();
            if res.function_error {
                return response::bad_gateway();
            }
            match response::from_function(PayloadFormat::V2, &res.payload) {
                Ok(r) => r,
                Err(why) => {
                    tracing::warn!(
                        url = %c.key(),
                        function_request_id = %res.request_id,
                        "malformed function URL response: {why}"
                    );
                    response::bad_gateway()
                }
            }
        }
        Err(InvokeError::Throttled(_)) => {
            response::message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
        }
        Err(InvokeError::TooLarge { .. }) => too_large(),
        Err(InvokeError::NotFound(_) | InvokeError::Missing { .. }) => response::not_found(),
        Err(e) => {
            tracing::error!(url = %c.key(), error = %e, "function URL invocation failed");
            response::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// The 2.0 event with what function URLs put in `requestContext`.
fn url_event(v2: Vec<u8>, c: &FunctionUrlConfig, caller: Option<&Caller>) -> Vec<u8> {
    let Ok(mut e) = serde_json::from_slice::<Value>(&v2) else {
        return v2;
    };
    let ctx = &mut e["requestContext"];
    ctx["domainPrefix"] = c.url_id.clone().into();
    if let Some(caller) = caller {
        let account = nimbus_core::ACCOUNT_ID;
        let (user_arn, user_id) = match &caller.user {
            Some(u) => (
                format!("arn:aws:iam::{account}:user/{u}"),
                format!("AIDA{}", id_of(u)),
            ),
            None => (format!("arn:aws:iam::{account}:root"), account.to_string()),
        };
        ctx["authorizer"] = json!({
            "iam": {
                "accessKey": caller.access_key,
                "accountId": account,
                "callerId": user_id,
                "cognitoIdentity": null,
                "principalOrgId": null,
                "userArn": user_arn,
                "userId": user_id,
            }
        });
    }
    serde_json::to_vec(&e).unwrap_or(v2)
}

/// A stable upper-case id for an IAM user name (AWS's look like `AIDA…`).
fn id_of(user: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.hash(&mut h);
    format!("{:016X}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ids_look_like_aws() {
        let id = new_url_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(id, new_url_id());
    }

    #[test]
    fn hosts_name_url_ids() {
        assert_eq!(host_url_id("abc.lambda-url.localhost:8080"), Some("abc"));
        assert_eq!(host_url_id("abc.lambda-url.us-east-1.on.aws"), Some("abc"));
        assert_eq!(host_url_id("127.0.0.1:8080"), None);
        assert_eq!(host_url_id("localhost"), None);
    }

    #[tokio::test]
    async fn configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nimbus.db");
        let urls = FunctionUrls::open(RouteStore::open(&path).unwrap()).unwrap();
        let a = urls
            .create("f", 1, None, AuthType::None, None, InvokeMode::Buffered)
            .await
            .unwrap();
        assert!(matches!(
            urls.create("f", 1, None, AuthType::None, None, InvokeMode::Buffered)
                .await,
            Err(UrlError::Exists)
        ));
        let b = urls
            .create(
                "f",
                1,
                Some("live"),
                AuthType::AwsIam,
                None,
                InvokeMode::Buffered,
            )
            .await
            .unwrap();
        let a2 = urls
            .update("f", None, Some(AuthType::AwsIam), None, None)
            .await
            .unwrap();
        assert_eq!(a2.url_id, a.url_id);
        assert_eq!(a2.created_ms, a.created_ms);
        urls.delete("f", Some("live")).await.unwrap();
        assert!(matches!(
            urls.delete("f", Some("live")).await,
            Err(UrlError::NotFound)
        ));
        drop(urls);
        let urls = FunctionUrls::open(RouteStore::open(&path).unwrap()).unwrap();
        assert_eq!(urls.list("f").len(), 1);
        assert_eq!(urls.by_id(&a.url_id).unwrap().auth_type, AuthType::AwsIam);
        assert!(urls.by_id(&b.url_id).is_none());
        assert_eq!(
            FunctionUrls::url_of("http://127.0.0.1:8080", &a),
            format!("http://127.0.0.1:8080/_url/{}/", a.url_id)
        );
        // A function of the same name created again does not inherit the URL.
        urls.prune("f", 1).await.unwrap();
        assert_eq!(urls.list("f").len(), 1);
        urls.prune("f", 2).await.unwrap();
        assert!(urls.list("f").is_empty());
        assert!(urls.by_id(&a.url_id).is_none());
    }
}

//! Which operation a request names, in each protocol, and the protocol's own answer
//! when it names none of the API's operations.

use crate::Operation;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use nimbus_protocol::{error_response, AwsError, EdgeContext, Protocol, ServiceMeta};

/// The most an awsQuery form body may hold: the `Action` is in it, so it is read
/// before the operation is known. SES `SendRawEmail` (10 MB of base64 message,
/// form-encoded) is the largest awsQuery request of the services Nimbus serves.
pub const QUERY_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The operation of an `X-Amz-Target` (`<targetPrefix>.<Operation>`), if the prefix
/// is `O`'s API's and the name one of its operations.
pub fn from_target<O: Operation>(target: &str) -> Option<O> {
    let prefix = O::meta().target_prefix?;
    let name = target.strip_prefix(prefix)?.strip_prefix('.')?;
    O::from_name(name)
}

/// What the protocol a request speaks is, for a service that may accept several:
/// the edge's verdict ([`EdgeContext::protocol`]) when the service speaks it, else
/// detected — `X-Amz-Target` means awsJson, otherwise awsQuery if the service takes
/// it, otherwise the service's own protocol.
pub fn protocol_of(meta: &ServiceMeta, parts: &Parts) -> Protocol {
    if let Some(ctx) = parts.extensions.get::<EdgeContext>() {
        if meta.protocols.contains(&ctx.protocol) {
            return ctx.protocol;
        }
    }
    if meta.protocols.len() <= 1 {
        return meta.protocol;
    }
    let json = meta
        .protocols
        .iter()
        .copied()
        .find(|p| matches!(p, Protocol::AwsJson10 | Protocol::AwsJson11));
    if let Some(json) = json {
        if parts.headers.contains_key("x-amz-target") {
            return json;
        }
    }
    if meta.protocols.contains(&Protocol::AwsQuery) {
        return Protocol::AwsQuery;
    }
    meta.protocol
}

/// How a request's method and path match an API's REST bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestMatch<O> {
    /// The operation it addresses.
    Op(O),
    /// Some binding has this path (and query markers), none this method.
    WrongMethod,
    /// No binding has this path.
    NoMatch,
}

/// One segment of a `requestUri` path template.
#[derive(Debug, PartialEq, Eq)]
enum Seg<'a> {
    Literal(&'a str),
    /// `{Label}`: one non-empty segment.
    Label,
    /// `{Label+}`: the rest of the path, non-empty.
    Greedy,
}

fn template(uri: &str) -> (Vec<Seg<'_>>, Vec<(&str, Option<&str>)>) {
    let (path, markers) = uri.split_once('?').unwrap_or((uri, ""));
    let segs = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with("+}") {
                Seg::Greedy
            } else if s.starts_with('{') && s.ends_with('}') {
                Seg::Label
            } else {
                Seg::Literal(s)
            }
        })
        .collect();
    let markers = markers
        .split('&')
        .filter(|m| !m.is_empty())
        .map(|m| match m.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (m, None),
        })
        // `x-id=<Operation>` (newer S3 models) is informative, not a requirement:
        // botocore does not send it.
        .filter(|(k, _)| *k != "x-id")
        .collect();
    (segs, markers)
}

fn segs_match(t: &[Seg<'_>], p: &[&str]) -> bool {
    match (t.first(), p.first()) {
        (None, None) => true,
        (Some(Seg::Greedy), Some(_)) => t.len() == 1 && p.iter().any(|s| !s.is_empty()),
        (Some(Seg::Label), Some(s)) => !s.is_empty() && segs_match(&t[1..], &p[1..]),
        (Some(Seg::Literal(l)), Some(s)) => l == s && segs_match(&t[1..], &p[1..]),
        _ => false,
    }
}

/// Whether a path matches a template's segments; a trailing `/` may be dropped
/// (`/bucket/` is the bucket, and the models write some paths both ways).
fn path_matches(t: &[Seg<'_>], path: &str) -> bool {
    let p: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    if segs_match(t, &p) {
        return true;
    }
    p.len() > 1 && p.last() == Some(&"") && segs_match(t, &p[..p.len() - 1])
}

/// Recognise a REST request: among the bindings whose method, path and required
/// query markers match, the one with the most literal path segments and then the
/// most required query members and headers present (S3 `UploadPartCopy` over
/// `UploadPart` over `PutObject`); ties go to the first in the model. Bindings
/// shadowed by an identical one are skipped.
pub fn recognise_rest<O: Operation>(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> RestMatch<O> {
    let params: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let has = |k: &str, v: Option<&str>| {
        params
            .iter()
            .any(|(pk, pv)| pk == k && v.is_none_or(|v| v == pv))
    };
    let mut best: Option<(O, (usize, usize))> = None;
    let mut path_seen = false;
    for &op in O::all() {
        let Some(b) = op.rest_binding() else { continue };
        if b.shadowed_by.is_some() {
            continue;
        }
        let (segs, markers) = template(b.uri);
        if !path_matches(&segs, path) || !markers.iter().all(|(k, v)| has(k, *v)) {
            continue;
        }
        path_seen = true;
        if b.method != method.as_str()
            || !b.query.iter().all(|k| has(k, None))
            || !b.headers.iter().all(|h| headers.contains_key(*h))
        {
            continue;
        }
        let literals = segs.iter().filter(|s| matches!(s, Seg::Literal(_))).count();
        let score = (literals, markers.len() + b.query.len() + b.headers.len());
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((op, score));
        }
    }
    match best {
        Some((op, _)) => RestMatch::Op(op),
        None if path_seen => RestMatch::WrongMethod,
        None => RestMatch::NoMatch,
    }
}

/// A request decoded to one operation of `O`'s API, ready for its handler.
#[derive(Debug)]
pub struct Call<O> {
    /// The operation.
    pub op: O,
    /// The protocol the request speaks, and so the one the answer must use.
    pub protocol: Protocol,
    /// The request id every answer carries (the edge's, else a fresh one).
    pub request_id: String,
    /// Method, URI, headers and extensions (the [`EdgeContext`] among them).
    pub parts: Parts,
    /// The body not yet read (awsJson, REST); empty for awsQuery, whose form was
    /// read into [`Call::params`].
    pub body: Body,
    /// awsQuery parameters: the query string's, then the form body's.
    pub params: Vec<(String, String)>,
}

impl<O: Operation> Call<O> {
    /// Decode which operation of `O`'s API a request names, or answer it with the
    /// protocol's own error for a request that names none.
    pub async fn decode(req: Request) -> Result<Self, Response> {
        let meta = O::meta();
        let (parts, body) = req.into_parts();
        let protocol = protocol_of(meta, &parts);
        let request_id = parts
            .extensions
            .get::<EdgeContext>()
            .map(|c| c.request_id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let fail = |err: AwsError| error_response(protocol, meta, &err, &request_id);
        match protocol {
            Protocol::AwsJson10 | Protocol::AwsJson11 => {
                let target = parts
                    .headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok());
                match target.and_then(from_target::<O>) {
                    Some(op) => Ok(Self::new(op, protocol, request_id, parts, body, vec![])),
                    None => Err(fail(unknown_operation(meta, target))),
                }
            }
            Protocol::AwsQuery => {
                let mut params: Vec<(String, String)> = parts
                    .uri
                    .query()
                    .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                    .unwrap_or_default();
                let form = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| {
                        ct.trim_start()
                            .to_ascii_lowercase()
                            .starts_with("application/x-www-form-urlencoded")
                    });
                if form {
                    match axum::body::to_bytes(body, QUERY_BODY_LIMIT).await {
                        Ok(bytes) => {
                            params.extend(form_urlencoded::parse(&bytes).into_owned());
                        }
                        Err(_) => {
                            return Err(fail(AwsError::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "RequestEntityTooLarge",
                                format!(
                                    "The request body could not be read or exceeds \
                                     {QUERY_BODY_LIMIT} bytes."
                                ),
                            )))
                        }
                    }
                }
                let action = params
                    .iter()
                    .find(|(k, _)| k == "Action")
                    .map(|(_, v)| v.clone());
                let Some(action) = action else {
                    return Err(fail(AwsError::new(
                        StatusCode::BAD_REQUEST,
                        "MissingAction",
                        "The request must contain the parameter Action.",
                    )));
                };
                match O::from_name(&action) {
                    Some(op) => Ok(Self::new(
                        op,
                        protocol,
                        request_id,
                        parts,
                        Body::empty(),
                        params,
                    )),
                    None => Err(fail(AwsError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidAction",
                        format!("The action {action} is not valid for this web service."),
                    ))),
                }
            }
            Protocol::RestXml | Protocol::RestJson1 => {
                let path = parts.uri.path();
                match recognise_rest::<O>(&parts.method, path, parts.uri.query(), &parts.headers) {
                    RestMatch::Op(op) => {
                        Ok(Self::new(op, protocol, request_id, parts, body, vec![]))
                    }
                    m => Err(fail(unknown_rest(meta, protocol, &parts.method, path, m))),
                }
            }
        }
    }

    fn new(
        op: O,
        protocol: Protocol,
        request_id: String,
        parts: Parts,
        body: Body,
        params: Vec<(String, String)>,
    ) -> Self {
        Self {
            op,
            protocol,
            request_id,
            parts,
            body,
            params,
        }
    }

    /// The edge's context of the request, if it came through the edge.
    pub fn context(&self) -> Option<&EdgeContext> {
        self.parts.extensions.get::<EdgeContext>()
    }

    /// Answer with `err` in the request's protocol, with its request id.
    pub fn error(&self, err: &AwsError) -> Response {
        error_response(self.protocol, O::meta(), err, &self.request_id)
    }

    /// The answer for an operation Nimbus does not implement yet: `501
    /// NotImplemented` naming the service and the operation, in the request's
    /// protocol.
    pub fn not_implemented(&self) -> Response {
        let meta = O::meta();
        tracing::debug!(
            service = meta.name,
            operation = self.op.name(),
            protocol = ?self.protocol,
            request_id = %self.request_id,
            "operation not implemented"
        );
        self.error(&AwsError::not_implemented(meta.name, self.op.name()))
    }
}

/// awsJson's answer to a target that is not one of the API's operations.
fn unknown_operation(meta: &ServiceMeta, target: Option<&str>) -> AwsError {
    let message = match target {
        Some(t) => format!(
            "Nimbus's {} does not recognise the operation in X-Amz-Target: {t} \
             (expected {}.<Operation>).",
            meta.name,
            meta.target_prefix.unwrap_or("<prefix>")
        ),
        None => format!(
            "The request has no X-Amz-Target header naming a {} operation.",
            meta.name
        ),
    };
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "UnknownOperationException",
        message,
    )
}

/// A REST request no binding claims. restXml (S3): `405 MethodNotAllowed` with the
/// method and the resource type, as S3 answers a method a resource does not take.
/// restJson1: `405 MethodNotAllowedException` when the path exists with other
/// methods, else `404 UnknownOperationException`.
fn unknown_rest<O>(
    meta: &ServiceMeta,
    protocol: Protocol,
    method: &Method,
    path: &str,
    m: RestMatch<O>,
) -> AwsError {
    if protocol == Protocol::RestXml {
        let segments = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .count();
        let resource = match segments {
            0 => "SERVICE",
            1 => "BUCKET",
            _ => "OBJECT",
        };
        return AwsError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        )
        .with_field("Method", method.as_str())
        .with_field("ResourceType", resource);
    }
    match m {
        RestMatch::WrongMethod => AwsError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            format!("No {} operation takes {method} on {path}.", meta.name),
        ),
        _ => AwsError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!(
                "Nimbus's {} has no operation at {method} {path}.",
                meta.name
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod rpc {
        use nimbus_protocol::{Protocol, ServiceMeta};
        pub const META: ServiceMeta = ServiceMeta {
            name: "queues",
            signing_name: "queues",
            endpoint_prefix: "queues",
            api_version: "2020-01-01",
            protocol: Protocol::AwsJson10,
            protocols: &[Protocol::AwsJson10, Protocol::AwsQuery],
            target_prefix: Some("Queues_2020"),
            xml_namespace: Some("urn:queues"),
            query_compatible: false,
        };
        crate::define_ops! {
            json query META;
            Send => false,
            Receive => false,
        }
    }

    mod rest {
        use nimbus_protocol::{Protocol, ServiceMeta};
        pub const META: ServiceMeta = ServiceMeta {
            name: "things",
            signing_name: "things",
            endpoint_prefix: "things",
            api_version: "2020-01-01",
            protocol: Protocol::RestJson1,
            protocols: &[Protocol::RestJson1],
            target_prefix: None,
            xml_namespace: None,
            query_compatible: false,
        };
        crate::define_ops! {
            rest META;
            ListThings: GET "/things" => false,
            GetThing: GET "/things/{Id}" => false,
            GetPart: GET "/things/{Id}/{Path+}" => false,
            FindThing: GET "/things/find" => false,
            GetThingVersions: GET "/things/{Id}?versions" => false,
            GetThingVersion: GET "/things/{Id}?versions" query("v") => false,
            GetThingOld: GET "/things/{Id}?versions" query("v") shadowed_by(GetThingVersion) => false,
            PutThing: PUT "/things/{Id}" => false,
            CopyThing: PUT "/things/{Id}" header("x-copy-from") => false,
        }
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn rec(method: &str, uri: &str, headers: &[(&str, &str)]) -> RestMatch<rest::Op> {
        let p = parts(method, uri, headers);
        recognise_rest(&p.method, p.uri.path(), p.uri.query(), &p.headers)
    }

    #[test]
    fn targets_need_the_services_prefix() {
        assert_eq!(
            rpc::Op::from_target("Queues_2020.Send"),
            Some(rpc::Op::Send)
        );
        assert_eq!(rpc::Op::from_target("Queues_2020Send"), None);
        assert_eq!(rpc::Op::from_target("Other_2020.Send"), None);
        assert_eq!(rpc::Op::from_target("Queues_2020.send"), None);
        assert_eq!(rpc::Op::from_action("Receive"), Some(rpc::Op::Receive));
    }

    #[test]
    fn protocol_follows_the_edge_else_the_request() {
        use nimbus_protocol::EdgeContext;
        let json = parts("POST", "/", &[("x-amz-target", "Queues_2020.Send")]);
        assert_eq!(protocol_of(&rpc::META, &json), Protocol::AwsJson10);
        let form = parts(
            "POST",
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
        );
        assert_eq!(protocol_of(&rpc::META, &form), Protocol::AwsQuery);
        // The edge's verdict wins when the service speaks it…
        let mut p = parts("POST", "/", &[("x-amz-target", "Queues_2020.Send")]);
        p.extensions.insert(EdgeContext {
            request_id: "r".into(),
            region: "us-east-1".into(),
            principal: nimbus_core::Principal::Root,
            protocol: Protocol::AwsQuery,
        });
        assert_eq!(protocol_of(&rpc::META, &p), Protocol::AwsQuery);
        // …and is ignored when it does not.
        p.extensions.get_mut::<EdgeContext>().unwrap().protocol = Protocol::RestXml;
        assert_eq!(protocol_of(&rpc::META, &p), Protocol::AwsJson10);
        assert_eq!(protocol_of(&rest::META, &form), Protocol::RestJson1);
    }

    #[test]
    fn rest_paths_labels_and_greedy_labels() {
        use rest::Op::*;
        assert_eq!(rec("GET", "/things", &[]), RestMatch::Op(ListThings));
        assert_eq!(rec("GET", "/things/", &[]), RestMatch::Op(ListThings));
        assert_eq!(rec("GET", "/things/a", &[]), RestMatch::Op(GetThing));
        // A literal segment beats a label.
        assert_eq!(rec("GET", "/things/find", &[]), RestMatch::Op(FindThing));
        assert_eq!(rec("GET", "/things/a/b", &[]), RestMatch::Op(GetPart));
        assert_eq!(rec("GET", "/things/a/b/c/", &[]), RestMatch::Op(GetPart));
        assert_eq!(rec("GET", "/things//b", &[]), RestMatch::NoMatch);
        assert_eq!(rec("GET", "/other", &[]), RestMatch::NoMatch);
        assert_eq!(rec("DELETE", "/things/a", &[]), RestMatch::WrongMethod);
    }

    #[test]
    fn rest_query_markers_required_members_and_shadowing() {
        use rest::Op::*;
        assert_eq!(
            rec("GET", "/things/a?versions", &[]),
            RestMatch::Op(GetThingVersions)
        );
        assert_eq!(
            rec("GET", "/things/a?versions=", &[]),
            RestMatch::Op(GetThingVersions)
        );
        assert_eq!(
            rec("GET", "/things/a?v=3&versions", &[]),
            RestMatch::Op(GetThingVersion)
        );
        // A required member alone is not the marker.
        assert_eq!(rec("GET", "/things/a?v=3", &[]), RestMatch::Op(GetThing));
        assert_eq!(rec("PUT", "/things/a", &[]), RestMatch::Op(PutThing));
        assert_eq!(
            rec("PUT", "/things/a", &[("X-Copy-From", "b")]),
            RestMatch::Op(CopyThing)
        );
        assert_eq!(
            rest::Op::recognise(&Method::GET, "/things/a", None, &HeaderMap::new()),
            Some(GetThing)
        );
        assert_eq!(GetThingOld.rest().shadowed_by, Some("GetThingVersion"));
        assert_eq!(GetThingOld.binding().1, "/things/{Id}?versions");
    }

    async fn decode(req: http::Request<Body>) -> Result<Call<rpc::Op>, Response> {
        Call::<rpc::Op>::decode(req).await
    }

    #[tokio::test]
    async fn query_actions_come_from_the_query_string_or_the_form() {
        let req = http::Request::builder()
            .uri("/?Action=Send&Version=2020-01-01")
            .body(Body::empty())
            .unwrap();
        let call = decode(req).await.unwrap();
        assert_eq!(
            (call.op, call.protocol),
            (rpc::Op::Send, Protocol::AwsQuery)
        );
        let req = http::Request::builder()
            .method("POST")
            .uri("/queue/path?Version=2020-01-01")
            .header(
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            )
            .body(Body::from("Action=Receive&MaxNumberOfMessages=10"))
            .unwrap();
        let call = decode(req).await.unwrap();
        assert_eq!(call.op, rpc::Op::Receive);
        assert_eq!(
            call.params,
            [
                ("Version".to_string(), "2020-01-01".to_string()),
                ("Action".to_string(), "Receive".to_string()),
                ("MaxNumberOfMessages".to_string(), "10".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn a_request_naming_nothing_gets_the_protocols_error() {
        // A form body that is not a form is not read: no Action.
        let req = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", "text/plain")
            .body(Body::from("Action=Send"))
            .unwrap();
        let resp = decode(req).await.unwrap_err();
        assert_eq!(resp.status(), 400);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("<Code>MissingAction</Code>"), "{body}");
        assert!(body.contains("xmlns=\"urn:queues\""), "{body}");

        let req = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("x-amz-target", "Queues_2020.Nope")
            .body(Body::from("{}"))
            .unwrap();
        let resp = decode(req).await.unwrap_err();
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.headers()["x-amzn-errortype"],
            "UnknownOperationException"
        );
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["__type"],
            "com.amazonaws.queues#UnknownOperationException"
        );
        assert!(v["message"].as_str().unwrap().contains("Queues_2020.Nope"));
    }

    #[tokio::test]
    async fn an_oversized_query_form_is_refused() {
        let big = format!("Action=Send&Blob={}", "x".repeat(QUERY_BODY_LIMIT));
        let req = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(big))
            .unwrap();
        let resp = decode(req).await.unwrap_err();
        assert_eq!(resp.status(), 413);
    }
}

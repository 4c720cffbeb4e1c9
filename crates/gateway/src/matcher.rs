//! The in-memory route matcher: a segment trie built once per route change and
//! shared read-only by every request.
//!
//! Selection follows API Gateway's HTTP API rules:
//! 1. a full match of path and method, where at each segment a literal beats a
//!    `{param}` (so `/users/me` beats `/users/{id}`), and at the same path an exact
//!    method beats `ANY`;
//! 2. else a match through a greedy `{proxy+}` variable, the longest prefix first
//!    (`/pets/{proxy+}` before `/{proxy+}`);
//! 3. else the `$default` route.
//!
//! A request no route takes is 404 — unless some route's path matched and only the
//! method did not, which is 405 with an `Allow` header (see docs/compat/apigateway.md).

use crate::http_util::percent_decode;
use crate::route::{Method, Route, RouteKey, Segment};
use std::collections::HashMap;
use std::sync::Arc;

/// The routes ending at one trie position, by method.
#[derive(Default)]
struct Endpoints {
    methods: Vec<(Method, Arc<Route>)>,
}

impl Endpoints {
    fn pick(&self, m: Option<Method>) -> Option<&Arc<Route>> {
        let mut any = None;
        for (rm, r) in &self.methods {
            if Some(*rm) == m {
                return Some(r);
            }
            if *rm == Method::Any {
                any = Some(r);
            }
        }
        any
    }

    fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    fn allow(&self) -> String {
        let mut v: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        v.sort_unstable();
        v.join(", ")
    }
}

#[derive(Default)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Routes whose greedy variable starts at this position.
    greedy: Endpoints,
    /// Routes whose path ends here.
    end: Endpoints,
}

/// The outcome of matching one request.
pub enum Match<'a> {
    Found {
        route: &'a Arc<Route>,
        /// Path variables, decoded, in template order.
        params: Vec<(&'a str, String)>,
    },
    /// A route's path matched, its method did not; the value lists the methods.
    MethodNotAllowed(String),
    NotFound,
}

/// Every route, compiled for lookup.
#[derive(Default)]
pub struct Matcher {
    root: Node,
    default: Option<Arc<Route>>,
    len: usize,
}

impl Matcher {
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a Arc<Route>>) -> Self {
        let mut m = Matcher::default();
        for r in routes {
            m.insert(r.clone());
        }
        m
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn insert(&mut self, route: Arc<Route>) {
        self.len += 1;
        let (method, path) = match &route.route_key {
            RouteKey::Default => {
                self.default = Some(route);
                return;
            }
            RouteKey::Path { method, path } => (*method, path.clone()),
        };
        let mut node = &mut self.root;
        for seg in path.segments() {
            match seg {
                Segment::Literal(l) => {
                    node = node.literal.entry(l.as_str().into()).or_default();
                }
                Segment::Param(_) => {
                    node = node.param.get_or_insert_with(Box::default);
                }
                Segment::Greedy(_) => {
                    replace(&mut node.greedy, method, route);
                    return;
                }
            }
        }
        replace(&mut node.end, method, route);
    }

    /// Find the route for a request `path` (the raw, still percent-encoded path).
    pub fn find(&self, method: &http::Method, path: &str) -> Match<'_> {
        let m = Method::of_request(method);
        // Segments after the leading `/`; `/` itself has none.
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut segs: Vec<&str> = Vec::new();
        if !rest.is_empty() {
            segs.extend(rest.split('/'));
        }
        let mut allow: Option<&Endpoints> = None;
        if let Some(r) = full(&self.root, &segs, m, &mut allow) {
            return found(r, &segs);
        }
        if let Some(r) = greedy(&self.root, &segs, m, &mut allow) {
            return found(r, &segs);
        }
        if let Some(r) = &self.default {
            return Match::Found {
                route: r,
                params: Vec::new(),
            };
        }
        match allow {
            Some(e) => Match::MethodNotAllowed(e.allow()),
            None => Match::NotFound,
        }
    }
}

fn replace(e: &mut Endpoints, method: Method, route: Arc<Route>) {
    if let Some(slot) = e.methods.iter_mut().find(|(m, _)| *m == method) {
        slot.1 = route;
    } else {
        e.methods.push((method, route));
    }
}

/// A literal segment of a request, compared decoded.
fn literal_child<'n>(node: &'n Node, seg: &str) -> Option<&'n Node> {
    if node.literal.is_empty() {
        return None;
    }
    node.literal.get(percent_decode(seg).as_ref())
}

/// Depth-first search for a full (non-greedy) match: literal before param.
fn full<'n>(
    node: &'n Node,
    segs: &[&str],
    m: Option<Method>,
    allow: &mut Option<&'n Endpoints>,
) -> Option<&'n Arc<Route>> {
    let Some((seg, rest)) = segs.split_first() else {
        if let Some(r) = node.end.pick(m) {
            return Some(r);
        }
        if !node.end.is_empty() && allow.is_none() {
            *allow = Some(&node.end);
        }
        return None;
    };
    if let Some(child) = literal_child(node, seg) {
        if let Some(r) = full(child, rest, m, allow) {
            return Some(r);
        }
    }
    if !seg.is_empty() {
        if let Some(child) = &node.param {
            if let Some(r) = full(child, rest, m, allow) {
                return Some(r);
            }
        }
    }
    None
}

/// Depth-first search for a greedy match: the deepest greedy variable wins.
fn greedy<'n>(
    node: &'n Node,
    segs: &[&str],
    m: Option<Method>,
    allow: &mut Option<&'n Endpoints>,
) -> Option<&'n Arc<Route>> {
    let (seg, rest) = segs.split_first()?;
    if let Some(child) = literal_child(node, seg) {
        if let Some(r) = greedy(child, rest, m, allow) {
            return Some(r);
        }
    }
    if !seg.is_empty() {
        if let Some(child) = &node.param {
            if let Some(r) = greedy(child, rest, m, allow) {
                return Some(r);
            }
        }
    }
    // A greedy variable takes one segment or more, the first non-empty.
    if !node.greedy.is_empty() && !seg.is_empty() {
        if let Some(r) = node.greedy.pick(m) {
            return Some(r);
        }
        if allow.is_none() {
            *allow = Some(&node.greedy);
        }
    }
    None
}

/// The path variables of `route` for the request's segments.
fn found<'a>(route: &'a Arc<Route>, segs: &[&str]) -> Match<'a> {
    let mut params = Vec::new();
    if let RouteKey::Path { path, .. } = &route.route_key {
        for (i, seg) in path.segments().iter().enumerate() {
            match seg {
                Segment::Literal(_) => {}
                Segment::Param(name) => {
                    params.push((name.as_str(), percent_decode(segs[i]).into_owned()));
                }
                Segment::Greedy(name) => {
                    let rest = segs[i..].join("/");
                    params.push((name.as_str(), percent_decode(&rest).into_owned()));
                }
            }
        }
    }
    Match::Found { route, params }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str, f: &str) -> Arc<Route> {
        Arc::new(Route {
            route_key: RouteKey::parse(key).unwrap(),
            function: f.into(),
            qualifier: None,
            payload_format: Default::default(),
            api_type: Default::default(),
            binary_media_types: Vec::new(),
            timeout_ms: 29_000,
            validation: Default::default(),
            authorizer: None,
            authorization_scopes: Vec::new(),
            api_key_required: false,
            throttle: None,
            created_ms: 0,
            updated_ms: 0,
        })
    }

    fn pick(m: &Matcher, method: &str, path: &str) -> String {
        match m.find(&method.parse().unwrap(), path) {
            Match::Found { route, params } => {
                let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if p.is_empty() {
                    route.function.clone()
                } else {
                    format!("{} {}", route.function, p.join(","))
                }
            }
            Match::MethodNotAllowed(a) => format!("405 {a}"),
            Match::NotFound => "404".into(),
        }
    }

    #[test]
    fn aws_documented_example() {
        // The routing example of the HTTP API developer guide.
        let routes = [
            route("GET /pets/dog/1", "exact"),
            route("GET /pets/dog/{id}", "param"),
            route("GET /pets/{proxy+}", "pets-greedy"),
            route("ANY /{proxy+}", "any-greedy"),
            route("$default", "default"),
        ];
        let m = Matcher::new(&routes);
        assert_eq!(pick(&m, "GET", "/pets/dog/1"), "exact");
        assert_eq!(pick(&m, "GET", "/pets/dog/2"), "param id=2");
        assert_eq!(pick(&m, "GET", "/pets/cat/1"), "pets-greedy proxy=cat/1");
        assert_eq!(
            pick(&m, "POST", "/pets/dog/1"),
            "any-greedy proxy=pets/dog/1"
        );
        assert_eq!(pick(&m, "GET", "/"), "default");
    }

    #[test]
    fn full_match_beats_shallower_greedy() {
        let routes = [
            route("GET /a/{proxy+}", "greedy"),
            route("GET /{x}/b", "param"),
        ];
        let m = Matcher::new(&routes);
        assert_eq!(pick(&m, "GET", "/a/b"), "param x=a");
        assert_eq!(pick(&m, "GET", "/a/c"), "greedy proxy=c");
    }

    #[test]
    fn literal_beats_param_and_method_beats_any() {
        let routes = [
            route("GET /users/me", "me"),
            route("GET /users/{id}", "get"),
            route("ANY /users/{id}", "any"),
            route("DELETE /users/{userId}", "del"),
        ];
        let m = Matcher::new(&routes);
        assert_eq!(pick(&m, "GET", "/users/me"), "me");
        assert_eq!(pick(&m, "GET", "/users/7"), "get id=7");
        assert_eq!(pick(&m, "PATCH", "/users/7"), "any id=7");
        assert_eq!(pick(&m, "DELETE", "/users/7"), "del userId=7");
        // `/users/me` exists only for GET, so PUT falls through to the param route.
        assert_eq!(pick(&m, "PUT", "/users/me"), "any id=me");
    }

    #[test]
    fn not_found_and_method_not_allowed() {
        let routes = [route("GET /users", "list"), route("POST /users", "create")];
        let m = Matcher::new(&routes);
        assert_eq!(pick(&m, "DELETE", "/users"), "405 GET, POST");
        assert_eq!(pick(&m, "GET", "/nope"), "404");
        assert_eq!(pick(&m, "GET", "/users/"), "404");
        assert_eq!(pick(&m, "GET", "/"), "404");
    }

    #[test]
    fn greedy_needs_a_segment_and_params_are_decoded() {
        let routes = [
            route("GET /files/{path+}", "files"),
            route("GET /tags/{tag}", "tag"),
        ];
        let m = Matcher::new(&routes);
        assert_eq!(pick(&m, "GET", "/files"), "404");
        assert_eq!(pick(&m, "GET", "/files/a%20b/c"), "files path=a b/c");
        assert_eq!(pick(&m, "GET", "/tags/caf%C3%A9"), "tag tag=café");
        assert_eq!(pick(&m, "GET", "/tags/a/b"), "404");
        let routes = [route("GET /caf%C3%A9", "cafe")];
        let m = Matcher::new(&routes);
        assert_eq!(pick(&m, "GET", "/café"), "cafe");
        assert_eq!(pick(&m, "GET", "/caf%c3%a9"), "cafe");
    }

    #[test]
    fn root_and_unknown_methods() {
        let routes = [route("GET /", "root"), route("ANY /x", "x")];
        let m = Matcher::new(&routes);
        assert_eq!(pick(&m, "GET", "/"), "root");
        assert_eq!(pick(&m, "PROPFIND", "/x"), "x");
        assert_eq!(pick(&m, "PROPFIND", "/"), "405 GET");
    }
}

//! The Nimbus HTTP gateway (DESIGN.md "HTTP gateway"): user routes in front of
//! functions, behaving like Amazon API Gateway's HTTP APIs.
//!
//! * [`route`]: what a route is — `METHOD /path` (templates `/users/{id}`, greedy
//!   `/{proxy+}`, `ANY`) or `$default`, the target function with an optional
//!   version/alias, the payload format (1.0 or 2.0) and the integration timeout.
//! * [`RouteTable`]: routes stored durably in SQLite ([`nimbus_store::RouteStore`])
//!   and served from an in-memory [`matcher::Matcher`] (a segment trie with API
//!   Gateway's precedence: literal > `{param}` > `{greedy+}` > `$default`), swapped
//!   whole on each change, so a request never touches SQLite.
//! * [`event`]: the proxy events, payload formats 1.0 and 2.0, field for field;
//!   [`response`]: the function's answer back to HTTP (status, headers,
//!   `multiValueHeaders`, `cookies`, base64 bodies, 2.0's inferred responses).
//! * [`validate`]: per-route request validation (required query parameters and
//!   headers, a JSON Schema for the body) → 400 without invoking;
//!   [`cors`]: the API's CORS (gateway-answered preflights, headers on every
//!   response); [`function_url`]: Lambda function URLs served on the same listener.
//! * [`Gateway`]: the listener — hyper's auto builder (HTTP/1.1 keep-alive and h2c),
//!   a 10 MB body limit (413), a header-read timeout against slowloris, graceful
//!   shutdown, one `nimbus::gateway::access` log line per request.
//!
//! Errors follow API Gateway: no route → 404 `{"message":"Not Found"}`; the path
//! exists but not for this method → 405 `{"message":"Method Not Allowed"}`; function
//! error or malformed response → 502 `{"message":"Internal server error"}`;
//! integration timeout → 504 `{"message":"Endpoint request timed out"}`; throttled →
//! 429 `{"message":"Too Many Requests"}`; the route's function deleted → 500.

pub mod auth;
pub mod cors;
pub mod event;
pub mod function_url;
mod http_util;
pub mod matcher;
pub mod response;
pub mod route;
mod server;
mod table;
pub mod throttle;
pub mod validate;

pub use cors::CorsConfig;
pub use function_url::{FunctionUrlConfig, FunctionUrls, IamKey};
pub use route::{ApiType, PayloadFormat, Route, RouteError, RouteKey};
pub use server::{Gateway, GatewaySettings, BODY_LIMIT};
pub use table::{RouteTable, TableError, DEFAULT_API};
pub use validate::{BodySchema, Validation};

//! What every AWS service front-end shares, so the per-protocol decoding is
//! written once and not twelve times:
//!
//! * [`define_ops!`], the macro each service's generated `ops.rs` calls
//!   (`scripts/gen-ops.py` writes the call from the AWS API model), and the
//!   [`Operation`] trait it implements: the exhaustive `Op` enum, its names, its
//!   HTTP bindings (REST protocols) and which operations Nimbus implements;
//! * [`decode`]: which operation a request names, in each protocol — the
//!   `X-Amz-Target` of awsJson, the `Action` of awsQuery (query string or form body),
//!   the HTTP binding of restXml/restJson1 — and which protocol it speaks (SQS takes
//!   both awsJson 1.0 and awsQuery, and answers in the one the request used);
//! * [`Call`], a decoded request, and the answers a front-end gives before it does
//!   any work: the protocol's own unknown-operation error and the not-implemented
//!   error naming the operation;
//! * [`PendingFrontend`], the front-end of a service whose operations are not built
//!   yet: it decodes every request and answers each known operation with its
//!   protocol's not-implemented error.
//!
//! * [`ServiceContext`], what the server hands each service's `start`, and
//!   [`Service`]/[`ServiceAdmin`], what a started service hands back;
//!   [`admin`]: [`admin::JsonAdmin`], a `ServiceAdmin` of JSON routes, and
//!   [`admin::Metrics`], the `/metrics` text (counters named `_total`);
//! * [`tags`]: tag limits, merging, and the opaque `NextToken` pagination the
//!   JSON services share.
//!
//! The wire shapes themselves (error bodies, headers) belong to `nimbus-protocol`.

pub mod admin;
mod context;
pub mod decode;
mod frontend;
mod ops;
pub mod tags;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::{MappingSources, Service, ServiceAdmin, ServiceContext, StartError};
pub use decode::{Call, RestMatch};
pub use frontend::PendingFrontend;
pub use ops::{Operation, RestBinding};

#[doc(hidden)]
pub use http as __http;
#[doc(hidden)]
pub use nimbus_protocol as __protocol;

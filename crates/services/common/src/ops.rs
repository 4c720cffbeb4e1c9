//! The operation-table trait and the [`define_ops!`](crate::define_ops) macro the
//! generated `ops.rs` of every service crate calls.

use nimbus_protocol::ServiceMeta;
use std::fmt::Debug;
use std::hash::Hash;

/// One operation of one AWS API: the `Op` enum `define_ops!` generates implements it.
pub trait Operation: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// The API the operation belongs to.
    fn meta() -> &'static ServiceMeta;
    /// Every operation of the API, in the model's order.
    fn all() -> &'static [Self];
    /// The operation's AWS name (`SendMessage`).
    fn name(self) -> &'static str;
    /// Whether Nimbus serves it; the others answer `501 NotImplemented`.
    fn implemented(self) -> bool;
    /// The operation of that exact AWS name.
    fn from_name(name: &str) -> Option<Self>;
    /// The HTTP binding of a REST-protocol operation; `None` for awsJson/awsQuery.
    fn rest_binding(self) -> Option<&'static RestBinding>;
}

/// How a REST-protocol (restXml, restJson1) operation is addressed, from the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestBinding {
    /// The HTTP method (`GET`, `PUT`…).
    pub method: &'static str,
    /// The model's `requestUri`: `{Label}` is one path segment, `{Label+}` the rest
    /// of the path; a `?marker` or `?key=value` suffix must be in the query string.
    pub uri: &'static str,
    /// Required query-string members (S3 `UploadPart`'s `partNumber`, `uploadId`):
    /// what tells apart operations on the same method and path.
    pub query: &'static [&'static str],
    /// Required header members, lower-case (S3 `CopyObject`'s `x-amz-copy-source`).
    pub headers: &'static [&'static str],
    /// Another operation with exactly the same binding that requests are
    /// recognised as (S3's deprecated `GetBucketLifecycle` loses to
    /// `GetBucketLifecycleConfiguration`).
    pub shadowed_by: Option<&'static str>,
}

/// Declare a service's exhaustive operation enum `Op` from its API model. The calls
/// are written by `scripts/gen-ops.py`; see any `crates/services/*/src/ops.rs`.
///
/// * `json META; Name => implemented, …` (awsJson): adds `Op::from_target`.
/// * `query META; …` (awsQuery): adds `Op::from_action`.
/// * `json query META; …` (SQS, which speaks both): adds both.
/// * `rest META; Name: METHOD "uri" [query("k", …)] [header("h", …)]
///   [shadowed_by(Other)] => implemented, …` (restXml, restJson1): adds
///   `Op::binding`, `Op::rest` and `Op::recognise`.
#[macro_export]
macro_rules! define_ops {
    (json $meta:ident; $($op:ident => $imp:literal,)*) => {
        $crate::define_ops!(@enum $meta; $($op => $imp, None;)*);
        $crate::define_ops!(@json);
    };
    (query $meta:ident; $($op:ident => $imp:literal,)*) => {
        $crate::define_ops!(@enum $meta; $($op => $imp, None;)*);
        $crate::define_ops!(@query);
    };
    (json query $meta:ident; $($op:ident => $imp:literal,)*) => {
        $crate::define_ops!(@enum $meta; $($op => $imp, None;)*);
        $crate::define_ops!(@json);
        $crate::define_ops!(@query);
    };
    (rest $meta:ident; $(
        $op:ident: $method:ident $uri:literal
        $(query($($q:literal),*))?
        $(header($($h:literal),*))?
        $(shadowed_by($by:ident))?
        => $imp:literal,
    )*) => {
        $crate::define_ops!(@enum $meta; $($op => $imp, Some(&$crate::RestBinding {
            method: stringify!($method),
            uri: $uri,
            query: &[$($($q),*)?],
            headers: &[$($($h),*)?],
            shadowed_by: $crate::define_ops!(@by $($by)?),
        });)*);

        impl Op {
            /// The operation's HTTP binding.
            pub fn rest(self) -> &'static $crate::RestBinding {
                match <Op as $crate::Operation>::rest_binding(self) {
                    Some(b) => b,
                    None => unreachable!("every operation of a REST API has a binding"),
                }
            }

            /// HTTP method and `requestUri` template, as in the model.
            pub fn binding(self) -> ($crate::__http::Method, &'static str) {
                match self {
                    $(Op::$op => ($crate::__http::Method::$method, $uri),)*
                }
            }

            /// The operation a request addresses by method, path (path-style; the
            /// raw, still percent-encoded path), query string and headers, if any.
            pub fn recognise(
                method: &$crate::__http::Method,
                path: &str,
                query: Option<&str>,
                headers: &$crate::__http::HeaderMap,
            ) -> Option<Op> {
                match $crate::decode::recognise_rest::<Op>(method, path, query, headers) {
                    $crate::RestMatch::Op(op) => Some(op),
                    _ => None,
                }
            }
        }
    };
    (@by) => { None };
    (@by $by:ident) => { Some(stringify!($by)) };
    (@enum $meta:ident; $($op:ident => $imp:literal, $rest:expr;)*) => {
        /// One operation of this API (every operation of the model).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op {
            $(
                #[doc = concat!("`", stringify!($op), "`")]
                $op,
            )*
        }

        impl Op {
            /// Every operation, in the model's order.
            pub const ALL: &'static [Op] = &[$(Op::$op,)*];

            /// The operation's AWS name.
            pub fn name(self) -> &'static str {
                match self { $(Op::$op => stringify!($op),)* }
            }

            /// Whether Nimbus implements the operation yet.
            pub fn implemented(self) -> bool {
                match self { $(Op::$op => $imp,)* }
            }

            /// The operation of that exact AWS name.
            #[allow(clippy::should_implement_trait)]
            pub fn from_name(name: &str) -> Option<Op> {
                match name {
                    $(stringify!($op) => Some(Op::$op),)*
                    _ => None,
                }
            }
        }

        impl $crate::Operation for Op {
            fn meta() -> &'static $crate::__protocol::ServiceMeta {
                &$meta
            }
            fn all() -> &'static [Op] {
                Op::ALL
            }
            fn name(self) -> &'static str {
                Op::name(self)
            }
            fn implemented(self) -> bool {
                Op::implemented(self)
            }
            fn from_name(name: &str) -> Option<Op> {
                Op::from_name(name)
            }
            fn rest_binding(self) -> Option<&'static $crate::RestBinding> {
                match self { $(Op::$op => $rest,)* }
            }
        }
    };
    (@json) => {
        impl Op {
            /// The operation an `X-Amz-Target` header (`<targetPrefix>.<Operation>`)
            /// names, if it is this API's.
            pub fn from_target(target: &str) -> Option<Op> {
                $crate::decode::from_target::<Op>(target)
            }
        }
    };
    (@query) => {
        impl Op {
            /// The operation an awsQuery `Action` parameter names.
            pub fn from_action(action: &str) -> Option<Op> {
                Op::from_name(action)
            }
        }
    };
}

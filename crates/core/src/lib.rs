//! Nimbus core types shared by every other crate: a function's configuration
//! ([`FunctionConfig`]), the runtime identifiers Nimbus understands ([`Runtime`]),
//! the Lambda-shaped error body a caller sees ([`FunctionError`]), the per-invocation
//! record ([`InvocationRecord`]) and the limits Lambda enforces ([`limits`]).
//!
//! This crate owns no I/O: it is the vocabulary the store, the runtime, the invoker and
//! the API front-ends agree on.

pub mod async_config;
pub mod error;
pub mod function;
pub mod invocation;
pub mod limits;
pub mod principal;
pub mod runtime;

pub use async_config::EventInvokeConfig;
pub use error::{CoreError, FunctionError};
pub use function::{FunctionConfig, FunctionSpec, LayerRef, ValidationError};
pub use invocation::{InvocationRecord, Outcome, Trigger};
pub use principal::Principal;
pub use runtime::Runtime;

/// Account id used in every ARN Nimbus produces, as LocalStack and friends do.
pub const ACCOUNT_ID: &str = "123456789012";
/// Default region when a request does not name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`
pub fn function_arn(region: &str, name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}:{q}"),
        None => format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"),
    }
}

/// Milliseconds since the Unix epoch, the unit of every timestamp Nimbus stores.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A millisecond timestamp as `YYYY-MM-DDTHH:MM:SS.mmm` followed by `zone` (`Z` for
/// RFC 3339, `+0000` for Lambda's `LastModified`).
pub fn format_ms(ms: i64, zone: &str) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{zone}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A fresh request id as Lambda makes them: a random (version 4) UUID.
///
/// Apps rely on that randomness — an order id built from `aws_request_id[:8]` must
/// not repeat — so the id a function and a client see is never time-ordered (a
/// UUIDv7's first 8 characters repeat for about a minute).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_random_uuids() {
        let ids: Vec<String> = (0..200).map(|_| new_request_id()).collect();
        let prefixes: std::collections::HashSet<&str> = ids.iter().map(|i| &i[..8]).collect();
        // 200 random 32-bit prefixes collide with probability ~5e-6.
        assert_eq!(prefixes.len(), 200);
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{id}");
        }
    }

    #[test]
    fn arn_shapes() {
        assert_eq!(
            function_arn("eu-west-1", "f", None),
            "arn:aws:lambda:eu-west-1:123456789012:function:f"
        );
        assert_eq!(
            function_arn("us-east-1", "f", Some("$LATEST")),
            "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST"
        );
    }
}

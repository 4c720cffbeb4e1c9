//! IAM policies for Nimbus.
//!
//! * [`document`]: the policy grammar, parsed into a [`Policy`] and validated
//!   with the `MalformedPolicyDocument` messages IAM answers ([`Malformed`]);
//!   identity policies may not name a `Principal`, resource and trust policies
//!   must.
//! * [`eval`]: AWS's evaluation logic within one account — an explicit `Deny`
//!   in any policy wins, else an `Allow` in an identity policy or in a resource
//!   policy naming the caller allows (session policies limit identity allows),
//!   else the request is implicitly denied. `Action`/`NotAction` match
//!   case-insensitively with `*`/`?`, `Resource`/`NotResource` case-sensitively
//!   per ARN part, `Principal`/`NotPrincipal` by account, ARN or (for role
//!   sessions) the role's ARN.
//! * [`condition`]: every condition operator (`String*`, `Numeric*`, `Date*`,
//!   `Bool`, `BinaryEquals`, `IpAddress`/`NotIpAddress`, `Arn*`, `Null`), their
//!   `…IfExists` forms and the `ForAnyValue:`/`ForAllValues:` set operators, over
//!   a request [`Context`]; policy variables (`${aws:username}`, defaults,
//!   `${*}`) in resources and string/ARN condition values.
//! * [`authz`]: what each Nimbus API operation is authorised as — its IAM
//!   action(s), resource ARN(s) and service condition keys, from the IAM Service
//!   Authorization Reference — derived from the request the edge received.
//!
//! The evaluator is pure: it knows no store. `nimbus-svc-iam` keeps the
//! policies and calls it on every request.

pub mod authz;
pub mod condition;
pub mod context;
pub mod document;
pub mod eval;
pub mod wildcard;

pub use context::Context;
pub use document::{counted_size, Effect, Kind, Malformed, Policy, Statement};
pub use eval::{
    evaluate, evaluate_bounded, Caller, Deciding, Decision, Named, Outcome, Request, Source,
};

#[cfg(test)]
mod tests;

//! The authorisation hook: after a request is authenticated and routed, and
//! before its front-end runs, an [`Authorizer`] (IAM's, from
//! `nimbus-svc-iam`) may refuse it with the service's own `AccessDenied`.
//!
//! The edge knows nothing of policies: it hands the authoriser what it learned
//! (the front-end, the principal, the access key, the body when read) and
//! answers a refusal in the route's protocol. Bodies of JSON and query APIs
//! are read for the authoriser when it wants the request and they were not
//! read for the signature already (the front-end then gets the same bytes).

use http::request::Parts;
use nimbus_core::Principal;
use nimbus_protocol::{AwsError, Protocol};
use std::net::SocketAddr;

/// The address of the client a request came from (a request extension the
/// listener adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// What the authoriser is told about a request.
#[derive(Debug)]
pub struct AuthzRequest<'a> {
    /// The front-end's name (`ServiceMeta::name`).
    pub service: &'static str,
    pub protocol: Protocol,
    pub parts: &'a Parts,
    /// The body, when it was read (always for JSON and query APIs).
    pub body: Option<&'a [u8]>,
    pub principal: &'a Principal,
    /// The access key the request was signed with.
    pub access_key_id: Option<&'a str>,
    /// The signature was checked (authentication is on).
    pub verified: bool,
    /// The request's region.
    pub region: &'a str,
    pub peer: Option<SocketAddr>,
    pub request_id: &'a str,
}

/// The authoriser's answer, later (it may read resource policies).
pub type AuthzFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AwsError>> + Send + 'a>>;

/// Decides whether an authenticated request may proceed.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether this request is looked at at all (false: it proceeds, and no
    /// body is read for it).
    fn wants(&self, principal: &Principal, verified: bool) -> bool;
    /// `Err` refuses the request with that error, in the route's protocol.
    fn authorize<'a>(&'a self, req: AuthzRequest<'a>) -> AuthzFuture<'a>;
}

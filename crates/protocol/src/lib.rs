//! The AWS wire protocols Nimbus's service front-ends speak, in one place:
//! awsJson 1.0 and 1.1 (`X-Amz-Target` + JSON), awsQuery (form `Action=` in, XML
//! out), restXml (S3) and restJson1 (Lambda, SES v2).
//!
//! This crate owns what is the same for every service of a protocol: which protocol
//! a service speaks and how it is addressed ([`ServiceMeta`], generated per service
//! from the AWS API model), how an error is written on the wire ([`AwsError`] and
//! [`error_response`], including SQS-JSON's `x-amzn-query-error` header), and the
//! not-implemented answer every front-end gives for an operation Nimbus does not do
//! yet ([`AwsError::not_implemented`]). It knows nothing of any one service's
//! operations: those live in the service crates.
//!
//! The building blocks a front-end decodes requests and encodes answers with:
//!
//! | protocol | request in | answer out |
//! |---|---|---|
//! | awsJson 1.0/1.1 | [`decode_json`] (`SerializationException`, empty body = `{}`) | [`encode_json`] ([`JsonOptions::dynamodb`] adds `x-amz-crc32`) |
//! | restJson1 | [`decode_json_as`] (the service's bad-request code) | [`encode_json`] |
//! | awsQuery | [`QueryParams`] + a [`Shape`] → `serde_json::Value` → the service's type | [`query_response`], [`query_response_value`] |
//! | restXml | [`decode_xml`] (`MalformedXML`) | [`XmlWriter`], [`xml_document`], [`to_xml`], [`xml_response`] |
//!
//! Timestamps in each protocol's format: [`timestamp`].
//!
//! Bodies: [`read_body`] reads one under the operation's [`BodyLimit`];
//! [`decode_aws_chunked`] decodes an `aws-chunked` upload as a stream, checking
//! chunk signatures (with the [`ChunkSigner`] from
//! `nimbus_auth::Verifier::chunk_signer`), the trailer signature, the trailing
//! checksum and the decoded length; [`verify_body_checksums`] checks the
//! `x-amz-checksum-*` / `Content-MD5` headers of a plain body as it streams. A
//! body stream's failure is an [`AwsError`] again through [`body_error`].

// `AwsError` (status, code, message, extra fields and headers) is the one error
// every front-end returns and renders once; it is moved, not copied, and boxing
// it would only add an allocation to every error path.
#![allow(clippy::result_large_err)]

mod body;
mod checksum;
mod chunked;
mod error;
mod json;
mod query;
mod shape;
pub mod timestamp;
mod xml;

pub use body::{body_error, declared_length, read_at_most, read_body, BodyLimit, DRAIN_MAX};
pub use checksum::{verify_body_checksums, ChecksumAlgorithm, DeclaredChecksums, Hasher};
pub use chunked::{
    decode_aws_chunked, decode_aws_chunked_request, is_aws_chunked, strip_chunked_headers,
    ChunkDecoder, StreamingMode, TrailingChecksum,
};
pub use error::{error_response, AwsError};
pub use json::{decode_json, decode_json_as, encode_json, json_content_type, JsonOptions};
pub use nimbus_auth::ChunkSigner;
/// What [`decode_aws_chunked`] checks chunk signatures with: the chain
/// `nimbus_auth::Verifier::chunk_signer` derives from a verified seed signature.
pub type ChunkSigning = ChunkSigner;
pub use query::{query_response, query_response_value, QueryParams};
pub use shape::{Member, Shape};
pub use xml::{
    decode_xml, malformed_xml, to_xml, xml_document, xml_response, XmlWriter, S3_NAMESPACE,
};

/// An AWS wire protocol (the `metadata.protocol` of an API model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `awsJson1_0`: `POST /`, `X-Amz-Target: <prefix>.<Op>`, `application/x-amz-json-1.0`.
    AwsJson10,
    /// `awsJson1_1`: as 1.0 with `application/x-amz-json-1.1`.
    AwsJson11,
    /// `query`: form-encoded `Action=<Op>&Version=<v>` in, XML out.
    AwsQuery,
    /// `rest-xml`: HTTP bindings, XML bodies (S3).
    RestXml,
    /// `rest-json`: HTTP bindings, JSON bodies (Lambda, SES v2).
    RestJson1,
}

impl Protocol {
    /// The name the API models use in `metadata.protocol`.
    pub fn model_name(self) -> &'static str {
        match self {
            Protocol::AwsJson10 | Protocol::AwsJson11 => "json",
            Protocol::AwsQuery => "query",
            Protocol::RestXml => "rest-xml",
            Protocol::RestJson1 => "rest-json",
        }
    }

    /// Whether the protocol's bodies (and so its errors) are JSON.
    pub fn is_json(self) -> bool {
        matches!(
            self,
            Protocol::AwsJson10 | Protocol::AwsJson11 | Protocol::RestJson1
        )
    }
}

/// What the wire needs to know about one AWS API, generated from its model
/// (`metadata` of botocore's `service-2.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceMeta {
    /// Nimbus's name for the service (`sqs`, `dynamodb`, `sesv2`…).
    pub name: &'static str,
    /// The SigV4 signing name (`metadata.signingName`, else `endpointPrefix`).
    pub signing_name: &'static str,
    /// The endpoint prefix (`sqs`, `email`, `streams.dynamodb`…).
    pub endpoint_prefix: &'static str,
    /// `metadata.apiVersion`, the `Version=` of awsQuery requests.
    pub api_version: &'static str,
    /// The protocol Nimbus answers in by default (the model's `protocol`).
    pub protocol: Protocol,
    /// Every protocol the service accepts (`metadata.protocols`: SQS takes
    /// awsJson 1.0 and awsQuery).
    pub protocols: &'static [Protocol],
    /// `metadata.targetPrefix` of the JSON protocols (`AmazonSQS`, `DynamoDB_20120810`).
    pub target_prefix: Option<&'static str>,
    /// `metadata.xmlNamespace` of awsQuery/restXml answers.
    pub xml_namespace: Option<&'static str>,
    /// `metadata.awsQueryCompatible`: JSON errors also carry the query error code in
    /// `x-amzn-query-error` (SQS).
    pub query_compatible: bool,
}

/// The boxed future a [`Frontend`] answers with.
pub type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>;

/// One AWS API served on the edge listener. The edge classifies a request (by
/// SigV4 scope, `X-Amz-Target`, `Action`, `Host`, path) to exactly one front-end
/// and calls it; the front-end decodes the operation from its own [`ServiceMeta`]
/// and operation table, and answers every error through [`error_response`].
pub trait Frontend: Send + Sync + 'static {
    /// What the wire needs to know about this API (also what the edge's routing
    /// table is built from).
    fn meta(&self) -> &'static ServiceMeta;
    /// Serve one request the edge classified as this API's. The edge has already
    /// authenticated it and put an [`EdgeContext`] in its extensions.
    fn call(&self, req: axum::extract::Request) -> ResponseFuture;
    /// The largest body the edge buffers for this request (to check a signature
    /// over it, or to read a form's `Action`), per operation; larger is refused
    /// with [`Frontend::body_too_large`] before the front-end runs.
    fn body_limit(&self, _parts: &http::request::Parts) -> usize {
        DEFAULT_BODY_LIMIT
    }
    /// The error a body over [`Frontend::body_limit`] gets.
    fn body_too_large(&self, _parts: &http::request::Parts, max: usize) -> AwsError {
        AwsError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request must be smaller than {max} bytes"),
        )
    }
}

/// [`Frontend::body_limit`] unless a front-end says otherwise (awsQuery's and the
/// JSON protocols' largest common requests fit).
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How a front-end checks the signature of a browser `POST` upload (S3's POST
/// Object), whose credentials are form fields rather than headers: the edge,
/// which holds the access keys, puts one in the request's extensions when
/// authentication is on and lets the unsigned `POST` through; the front-end
/// calls it with the form's `x-amz-credential`, `policy`, `x-amz-signature` and
/// `x-amz-security-token`. The error is the protocol's (S3's) own.
pub trait PolicySignatureCheck: Send + Sync {
    /// Whom a valid signature acts as.
    fn check(
        &self,
        credential: &str,
        policy: &str,
        signature: &str,
        security_token: Option<&str>,
    ) -> Result<nimbus_core::Principal, AwsError>;
}

/// The request extension carrying a [`PolicySignatureCheck`].
#[derive(Clone)]
pub struct PostPolicyVerifier(pub std::sync::Arc<dyn PolicySignatureCheck>);

impl std::fmt::Debug for PostPolicyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostPolicyVerifier")
    }
}

/// What the edge learned about a request before handing it to a front-end; a
/// request extension.
#[derive(Debug, Clone)]
pub struct EdgeContext {
    /// The request id every answer (and error) carries.
    pub request_id: String,
    /// The region of the request's credential scope, else the server's.
    pub region: String,
    /// Whom the request acts as.
    pub principal: nimbus_core::Principal,
    /// The protocol the edge recognised the request as speaking (an SQS request
    /// may be awsJson 1.0 or awsQuery; answers use the same one).
    pub protocol: Protocol,
}

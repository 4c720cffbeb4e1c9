//! Why a request failed authentication, and how each AWS protocol spells it.

use http::StatusCode;
use std::borrow::Cow;

/// The wire protocol of the front-end answering the request: the same failure has
/// a different error code (and sometimes message) per protocol family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// JSON protocols (`awsJson1_0`/`awsJson1_1`, `restJson1`): Lambda, DynamoDB, SQS (JSON), …
    Json,
    /// The AWS query protocol (`Action=…` form bodies, XML answers): STS, IAM, SNS, …
    Query,
    /// S3's REST-XML dialect, which has its own codes.
    S3,
}

/// What the verifier found wrong with the signed request.
///
/// `Display` is the message AWS's JSON and query services send;
/// [`AuthError::code`] and [`AuthError::status`] are the JSON-protocol code and
/// status, and [`AuthError::code_for`], [`AuthError::status_for`] and
/// [`AuthError::message_for`] give them for the other protocols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor `X-Amz-*` query parameters.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,

    /// Authentication is present but malformed or incomplete.
    #[error("{message}")]
    IncompleteSignature {
        message: String,
        /// The problem is in the presigned query parameters (not the header).
        presigned: bool,
    },

    /// The access key id is not one the verifier accepts.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient { access_key_id: String },

    /// A temporary (session) access key without its session token, or with
    /// another one.
    #[error("The security token included in the request is invalid.")]
    InvalidToken { access_key_id: String },

    /// Temporary credentials (an STS session) used after they expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken { access_key_id: String },

    /// The signature does not match the one we computed.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. \
         Consult the service documentation for details."
    )]
    SignatureMismatch(Box<SignatureMismatch>),

    /// Header auth signed more than 15 minutes before the server's clock.
    #[error("Signature expired: {signed} is now earlier than {earliest} ({now} - 15 min.)")]
    SignatureExpired {
        signed: String,
        earliest: String,
        now: String,
    },

    /// Signed more than 15 minutes after the server's clock.
    #[error("Signature not yet current: {signed} is still later than {latest} ({now} + 15 min.)")]
    SignatureNotYetCurrent {
        signed: String,
        latest: String,
        now: String,
    },

    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`.
    #[error("Request has expired")]
    RequestExpired {
        signed: String,
        expires_s: u64,
        now: String,
    },

    /// The credential scope's date is not the day of `X-Amz-Date`.
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
         '{scope_date}' != '{date}', from '{amz_date}'."
    )]
    CredentialDateMismatch {
        scope_date: String,
        date: String,
        amz_date: String,
    },

    /// `x-amz-content-sha256` names a hash the body does not have.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch { claimed: String, computed: String },

    /// `x-amz-content-sha256` is neither a SHA-256 nor a known payload mode.
    #[error(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, \
         STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER \
         or a valid sha256 value; got '{value}'."
    )]
    InvalidContentSha256 { value: String },

    /// The signature covers the hash of a body the caller did not pass (and the
    /// request declares no `x-amz-content-sha256`): not the client's fault, but
    /// the caller's cue to buffer the body and verify again with it. Only reaches
    /// a client through a caller bug, hence the 500.
    #[error("The request body is needed to check the signature but was not provided.")]
    BodyNotProvided,
}

/// What we computed when the signature did not match: S3 echoes these in its
/// `SignatureDoesNotMatch` error so clients can debug their signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureMismatch {
    pub access_key_id: String,
    pub signature_provided: String,
    /// The canonical request for the service's own path rule (the first candidate).
    pub canonical_request: String,
    pub string_to_sign: String,
}

impl AuthError {
    pub(crate) fn incomplete(message: impl Into<String>) -> Self {
        AuthError::IncompleteSignature {
            message: message.into(),
            presigned: false,
        }
    }

    pub(crate) fn incomplete_query(message: impl Into<String>) -> Self {
        AuthError::IncompleteSignature {
            message: message.into(),
            presigned: true,
        }
    }

    /// The JSON-protocol error code, e.g. `InvalidSignatureException`.
    pub fn code(&self) -> &'static str {
        self.code_for(Protocol::Json)
    }

    /// The JSON-protocol HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status_for(Protocol::Json)
    }

    /// The error code this protocol family uses for the failure.
    pub fn code_for(&self, protocol: Protocol) -> &'static str {
        use AuthError::*;
        use Protocol::*;
        match (self, protocol) {
            (MissingAuthenticationToken, Json) => "MissingAuthenticationTokenException",
            (MissingAuthenticationToken, Query) => "MissingAuthenticationToken",
            (MissingAuthenticationToken, S3) => "AccessDenied",
            (IncompleteSignature { .. }, Json) => "IncompleteSignatureException",
            (IncompleteSignature { .. }, Query) => "IncompleteSignature",
            (
                IncompleteSignature {
                    presigned: true, ..
                },
                S3,
            ) => "AuthorizationQueryParametersError",
            (IncompleteSignature { .. }, S3) => "AuthorizationHeaderMalformed",
            (UnrecognizedClient { .. }, Json) => "UnrecognizedClientException",
            (UnrecognizedClient { .. }, Query) => "InvalidClientTokenId",
            (UnrecognizedClient { .. }, S3) => "InvalidAccessKeyId",
            (InvalidToken { .. }, Json) => "UnrecognizedClientException",
            (InvalidToken { .. }, Query) => "InvalidClientTokenId",
            (InvalidToken { .. }, S3) => "InvalidToken",
            (ExpiredToken { .. }, Json) => "ExpiredTokenException",
            (ExpiredToken { .. }, Query | S3) => "ExpiredToken",
            (SignatureExpired { .. } | SignatureNotYetCurrent { .. }, S3) => "RequestTimeTooSkewed",
            (RequestExpired { .. }, S3) => "AccessDenied",
            (CredentialDateMismatch { .. }, S3) => "AuthorizationHeaderMalformed",
            (ContentSha256Mismatch { .. }, S3) => "XAmzContentSHA256Mismatch",
            (InvalidContentSha256 { .. }, S3) => "InvalidArgument",
            (InvalidContentSha256 { .. }, Json) => "IncompleteSignatureException",
            (InvalidContentSha256 { .. }, Query) => "IncompleteSignature",
            (
                SignatureMismatch(_)
                | SignatureExpired { .. }
                | SignatureNotYetCurrent { .. }
                | RequestExpired { .. }
                | CredentialDateMismatch { .. }
                | ContentSha256Mismatch { .. },
                Json,
            ) => "InvalidSignatureException",
            (
                SignatureMismatch(_)
                | SignatureExpired { .. }
                | SignatureNotYetCurrent { .. }
                | RequestExpired { .. }
                | CredentialDateMismatch { .. }
                | ContentSha256Mismatch { .. },
                Query,
            ) => "SignatureDoesNotMatch",
            (SignatureMismatch(_), S3) => "SignatureDoesNotMatch",
            (BodyNotProvided, S3) => "InternalError",
            (BodyNotProvided, Json | Query) => "InternalFailure",
        }
    }

    /// The HTTP status this protocol family uses for the failure.
    pub fn status_for(&self, protocol: Protocol) -> StatusCode {
        use AuthError::*;
        match (self, protocol) {
            (IncompleteSignature { .. } | InvalidContentSha256 { .. }, _) => {
                StatusCode::BAD_REQUEST
            }
            (CredentialDateMismatch { .. } | ContentSha256Mismatch { .. }, Protocol::S3) => {
                StatusCode::BAD_REQUEST
            }
            (InvalidToken { .. } | ExpiredToken { .. }, Protocol::S3) => StatusCode::BAD_REQUEST,
            (ExpiredToken { .. }, _) => StatusCode::BAD_REQUEST,
            (BodyNotProvided, _) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The message this protocol family uses (S3 words several failures differently).
    pub fn message_for(&self, protocol: Protocol) -> Cow<'static, str> {
        use AuthError::*;
        match (self, protocol) {
            (MissingAuthenticationToken, Protocol::Query) => {
                "Request is missing Authentication Token".into()
            }
            (MissingAuthenticationToken, Protocol::S3) => "Access Denied".into(),
            (InvalidToken { .. }, Protocol::S3) => {
                "The provided token is malformed or otherwise invalid.".into()
            }
            (ExpiredToken { .. }, Protocol::S3) => "The provided token has expired.".into(),
            (UnrecognizedClient { .. }, Protocol::S3) => {
                "The AWS Access Key Id you provided does not exist in our records.".into()
            }
            (SignatureMismatch(_), Protocol::S3) => {
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method."
                    .into()
            }
            (SignatureExpired { .. } | SignatureNotYetCurrent { .. }, Protocol::S3) => {
                "The difference between the request time and the current time is too large.".into()
            }
            _ => self.to_string().into(),
        }
    }
}

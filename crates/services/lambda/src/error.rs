//! Lambda's one error type, written in restJson1's error shape by
//! [`nimbus_protocol::error_response`] with Lambda's `Type` and `Reason` fields.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nimbus_invoker::InvokeError;

/// An error as the wire sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// AWS error code, e.g. `ResourceNotFoundException`; sent as `x-amzn-ErrorType`.
    pub code: &'static str,
    pub message: String,
    /// `User` or `Service`, Lambda's `Type` field.
    pub kind: &'static str,
    /// Throttles carry a `Reason` and a `Retry-After`.
    pub reason: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            kind: "User",
            reason: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    }

    /// AWS's request validation (a body that does not parse, a required member
    /// missing): not in any operation's model error list, answered for all.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    pub fn invalid_content(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            message,
        )
    }

    pub fn service(message: impl Into<String>) -> Self {
        Self {
            kind: "Service",
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                message,
            )
        }
    }
}

/// Lambda ARNs in a message carry the request's region (its SigV4 scope's),
/// not the server's: the engine writes its own region into the messages it makes.
fn in_request_region(message: String) -> String {
    const PREFIX: &str = "arn:aws:lambda:";
    let Ok(region) = crate::REQUEST.try_with(|c| c.region.clone()) else {
        return message;
    };
    if region.is_empty() || !message.contains(PREFIX) {
        return message;
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at + PREFIX.len()]);
        rest = &rest[at + PREFIX.len()..];
        match rest.find(':') {
            Some(end) => {
                out.push_str(&region);
                rest = &rest[end..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        let mut err = Self::from_engine(e);
        err.message = in_request_region(std::mem::take(&mut err.message));
        err
    }
}

impl ApiError {
    fn from_engine(e: InvokeError) -> Self {
        match e {
            InvokeError::NotFound(_) => ApiError::not_found(e.to_string()),
            InvokeError::Missing { code, message } => {
                // The one "Missing" that is a refusal of the request, not a lookup.
                let status = if code == "PolicyLengthExceededException" {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::NOT_FOUND
                };
                ApiError::new(status, code, message)
            }
            InvokeError::InvalidParameter(m) => ApiError::invalid_parameter(m),
            InvokeError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "ResourceConflictException", m),
            InvokeError::PreconditionFailed(m) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailedException", m)
            }
            InvokeError::Throttled(reason) => ApiError {
                reason: Some(reason.as_str()),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate Exceeded.")
            },
            InvokeError::TooLarge { size, max, kind } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                format!("{size} byte payload is too large for the {kind} invocation type (limit {max} bytes)"),
            ),
            InvokeError::Service(m) => ApiError::service(m),
        }
    }
}

impl From<ApiError> for nimbus_protocol::AwsError {
    fn from(e: ApiError) -> Self {
        let mut err =
            nimbus_protocol::AwsError::new(e.status, e.code, e.message).with_field("Type", e.kind);
        if let Some(r) = e.reason {
            err = err.with_field("Reason", r);
            err.headers
                .push((http::header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        nimbus_protocol::error_response(
            nimbus_protocol::Protocol::RestJson1,
            &crate::META,
            &self.into(),
            &crate::request_id(),
        )
    }
}

/// Anything no route matched: a Lambda operation Nimbus does not implement is named
/// as such; anything else is an operation AWS would not know either.
pub async fn unknown_operation(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    use crate::lambda::ops::{not_implemented, LambdaOp};
    if let Some(op) = LambdaOp::recognise(&method, uri.path(), uri.query()) {
        if !op.implemented() {
            return not_implemented(op);
        }
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!("Nimbus does not implement {method} {}", uri.path()),
    )
}

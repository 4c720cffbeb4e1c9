//! The control API's error: Lambda's REST-JSON error (status, `x-amzn-ErrorType`,
//! `{"Type", "message"}`), which the CLI reads, with the control API's own
//! conversions from the engine's and the gateway's errors.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use nimbus_invoker::InvokeError;

/// An error as the CLI sees it.
#[derive(Debug, Clone)]
pub struct ApiError(nimbus_svc_lambda::ApiError);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(nimbus_svc_lambda::ApiError::new(status, code, message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self(nimbus_svc_lambda::ApiError::not_found(message))
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self(nimbus_svc_lambda::ApiError::invalid_parameter(message))
    }

    pub fn invalid_content(message: impl Into<String>) -> Self {
        Self(nimbus_svc_lambda::ApiError::invalid_content(message))
    }

    pub fn service(message: impl Into<String>) -> Self {
        Self(nimbus_svc_lambda::ApiError::service(message))
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        Self(e.into())
    }
}

impl From<nimbus_svc_lambda::ApiError> for ApiError {
    fn from(e: nimbus_svc_lambda::ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

//! S3's errors, as the API model and S3's documentation name them.

use http::StatusCode;
use nimbus_protocol::AwsError;

/// An S3 error: the wire error it is answered with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct S3Error(pub Box<AwsError>);

impl From<AwsError> for S3Error {
    fn from(e: AwsError) -> Self {
        S3Error(Box::new(e))
    }
}

/// An internal failure (storage, a task): logged, answered `InternalError`.
pub fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "s3: internal error");
    S3Error::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "We encountered an internal error. Please try again.",
    )
}

impl S3Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        S3Error::from(AwsError::new(status, code, message))
    }

    pub fn field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.fields.push((name.into(), value.into()));
        self
    }

    pub fn no_such_bucket(bucket: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        )
        .field("BucketName", bucket)
    }

    pub fn no_such_key(key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
        .field("Key", key)
    }

    pub fn no_such_upload(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload \
             may have been aborted or completed.",
        )
        .field("UploadId", id)
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    pub fn precondition_failed(condition: &str) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
        .field("Condition", condition)
    }

    pub fn entity_too_large(max: u64) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        )
        .field("MaxSizeAllowed", max.to_string())
    }

    pub fn invalid_bucket_name(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidBucketName",
            "The specified bucket is not valid.",
        )
        .field("BucketName", name)
    }

    pub fn not_modified() -> Self {
        Self::new(StatusCode::NOT_MODIFIED, "NotModified", "Not Modified")
    }
}

//! Kinesis's errors, and how each goes on the wire.

use http::StatusCode;
use nimbus_protocol::AwsError;

/// Everything a Kinesis operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    ExpiredIterator(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Internal(String),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

impl KinesisError {
    /// The AWS error a client sees.
    pub fn to_aws(&self) -> AwsError {
        let (status, code) = match self {
            KinesisError::NotFound(_) => (StatusCode::BAD_REQUEST, "ResourceNotFoundException"),
            KinesisError::InUse(_) => (StatusCode::BAD_REQUEST, "ResourceInUseException"),
            KinesisError::InvalidArgument(_) => {
                (StatusCode::BAD_REQUEST, "InvalidArgumentException")
            }
            KinesisError::Validation(_) => (StatusCode::BAD_REQUEST, "ValidationException"),
            KinesisError::ExpiredIterator(_) => {
                (StatusCode::BAD_REQUEST, "ExpiredIteratorException")
            }
            KinesisError::LimitExceeded(_) => (StatusCode::BAD_REQUEST, "LimitExceededException"),
            KinesisError::Internal(_) | KinesisError::Db(_) => {
                tracing::error!(error = %self, "kinesis internal error");
                return AwsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    "The request failed because of an internal error.",
                );
            }
        };
        AwsError::new(status, code, self.to_string())
    }
}

//! The queue service's errors, mapped once to SQS's wire codes: the JSON
//! `__type` (the model's shape name) and the awsQuery code SQS also sends in
//! `x-amzn-query-error` (which the SDKs of both protocols report).

use http::StatusCode;
use nimbus_protocol::AwsError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqsError {
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist,
    #[error("{0}")]
    QueueNameExists(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidAttributeName(String),
    #[error("{0}")]
    InvalidAttributeValue(String),
    #[error("{0}")]
    InvalidMessageContents(String),
    #[error("The input receipt handle \"{0}\" is not a valid receipt handle.")]
    ReceiptHandleIsInvalid(String),
    #[error("Message does not exist or is not available for visibility timeout change.")]
    MessageNotInflight,
    #[error("Only one PurgeQueue operation on {0} is allowed every 60 seconds.")]
    PurgeQueueInProgress(String),
    #[error("Maximum number of entries per request are 10. You have sent {0}.")]
    TooManyEntriesInBatchRequest(usize),
    #[error("There should be at least one SendMessageBatchRequestEntry in the request.")]
    EmptyBatchRequest,
    #[error("Id {0} repeated.")]
    BatchEntryIdsNotDistinct(String),
    #[error("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")]
    InvalidBatchEntryId,
    #[error("Batch requests cannot be longer than {0} bytes. You have sent {1} bytes.")]
    BatchRequestTooLong(u32, usize),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    OverLimit(String),
    #[error("{0}")]
    Internal(String),
}

impl SqsError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        SqsError::InvalidParameterValue(msg.into())
    }

    /// `(JSON shape name, awsQuery code)`.
    pub fn codes(&self) -> (&'static str, &'static str) {
        use SqsError::*;
        match self {
            QueueDoesNotExist => (
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
            QueueNameExists(_) => ("QueueNameExists", "QueueAlreadyExists"),
            InvalidParameterValue(_) => ("InvalidParameterValueException", "InvalidParameterValue"),
            MissingParameter(_) => ("MissingParameter", "MissingParameter"),
            InvalidAttributeName(_) => ("InvalidAttributeName", "InvalidAttributeName"),
            InvalidAttributeValue(_) => ("InvalidAttributeValue", "InvalidAttributeValue"),
            InvalidMessageContents(_) => ("InvalidMessageContents", "InvalidMessageContents"),
            ReceiptHandleIsInvalid(_) => ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
            MessageNotInflight => (
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
            ),
            PurgeQueueInProgress(_) => (
                "PurgeQueueInProgress",
                "AWS.SimpleQueueService.PurgeQueueInProgress",
            ),
            TooManyEntriesInBatchRequest(_) => (
                "TooManyEntriesInBatchRequest",
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            ),
            EmptyBatchRequest => (
                "EmptyBatchRequest",
                "AWS.SimpleQueueService.EmptyBatchRequest",
            ),
            BatchEntryIdsNotDistinct(_) => (
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            ),
            InvalidBatchEntryId => (
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
            ),
            BatchRequestTooLong(..) => (
                "BatchRequestTooLong",
                "AWS.SimpleQueueService.BatchRequestTooLong",
            ),
            UnsupportedOperation(_) => (
                "UnsupportedOperation",
                "AWS.SimpleQueueService.UnsupportedOperation",
            ),
            ResourceNotFound(_) => ("ResourceNotFoundException", "ResourceNotFoundException"),
            OverLimit(_) => ("OverLimit", "OverLimit"),
            Internal(_) => ("InternalError", "InternalError"),
        }
    }

    pub fn sender_fault(&self) -> bool {
        !matches!(self, SqsError::Internal(_))
    }

    pub fn to_aws(&self) -> AwsError {
        let (code, query) = self.codes();
        let status = if self.sender_fault() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        AwsError::new(status, code, self.to_string()).with_query_code(query)
    }
}

impl From<SqsError> for AwsError {
    fn from(e: SqsError) -> Self {
        e.to_aws()
    }
}

/// What storage reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("queue storage: {0}")]
    Backend(String),
    #[error("the queue writer stopped")]
    Stopped,
}

impl From<StoreError> for SqsError {
    fn from(e: StoreError) -> Self {
        SqsError::Internal(e.to_string())
    }
}

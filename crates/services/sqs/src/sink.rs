//! The queue sink: how SNS, EventBridge, S3 notifications and Lambda destinations
//! send into a queue (by ARN), through the same core as `SendMessage`.

use crate::core::{name_of_arn, SendInput, Sqs};
use crate::error::SqsError;
use crate::model::MsgAttr;
use nimbus_triggers::sinks::{QueueMessage, QueueSink, SentMessage, SinkError, SinkResult};
use nimbus_triggers::BoxFuture;
use std::sync::Arc;

pub struct QueueSinkImpl {
    sqs: Arc<Sqs>,
}

impl QueueSinkImpl {
    pub fn new(sqs: Arc<Sqs>) -> Self {
        Self { sqs }
    }

    fn name<'a>(&self, arn: &'a str) -> Option<&'a str> {
        name_of_arn(arn).filter(|n| self.sqs.queue_exists(n))
    }
}

fn sink_error(e: SqsError) -> SinkError {
    match e {
        SqsError::QueueDoesNotExist => {
            SinkError::NotFound("The specified queue does not exist.".into())
        }
        SqsError::Internal(m) => SinkError::Transient(m),
        other => SinkError::Rejected {
            code: other.codes().1.to_string(),
            message: other.to_string(),
        },
    }
}

impl QueueSink for QueueSinkImpl {
    fn queue_exists(&self, queue_arn: &str) -> bool {
        self.name(queue_arn).is_some()
    }

    fn queue_is_fifo(&self, queue_arn: &str) -> Option<bool> {
        self.sqs.is_fifo(name_of_arn(queue_arn)?)
    }

    fn send(&self, queue_arn: &str, msg: QueueMessage) -> BoxFuture<'_, SinkResult<SentMessage>> {
        let name = name_of_arn(queue_arn).map(str::to_string);
        Box::pin(async move {
            let name = name.ok_or_else(|| SinkError::NotFound("not an SQS queue ARN".into()))?;
            let attrs = msg
                .attributes
                .into_iter()
                .map(|(k, a)| {
                    (
                        k,
                        MsgAttr {
                            data_type: a.data_type,
                            string_value: a.string_value,
                            binary_value: a.binary_value.map(|b| b.to_vec()),
                        },
                    )
                })
                .collect();
            let input = SendInput {
                body: msg.body,
                attrs,
                trace_header: msg.trace_header,
                delay_seconds: msg.delay_seconds,
                group_id: msg.group_id,
                dedup_id: msg.deduplication_id,
                sender_id: msg.sender_id.unwrap_or_else(|| self.sqs.account.clone()),
            };
            let mut r = self
                .sqs
                .send(&name, vec![input])
                .await
                .map_err(sink_error)?;
            let out = r
                .pop()
                .ok_or_else(|| SinkError::Transient("no result".into()))?
                .map_err(sink_error)?;
            Ok(SentMessage {
                message_id: out.message_id,
                sequence_number: out.sequence_number,
            })
        })
    }
}

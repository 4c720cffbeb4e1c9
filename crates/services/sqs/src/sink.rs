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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{attrs, open};
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn other_services_send_through_the_same_checks() {
        let dir = tempfile::tempdir().unwrap();
        let sqs = open(dir.path());
        sqs.create_queue(
            "t.fifo",
            &attrs(&[("FifoQueue", "true"), ("ContentBasedDeduplication", "true")]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        let sink = QueueSinkImpl::new(sqs.clone());
        let arn = sqs.arn("t.fifo");
        assert!(sink.queue_exists(&arn));
        assert_eq!(sink.queue_is_fifo(&arn), Some(true));
        assert_eq!(sink.queue_is_fifo(&sqs.arn("nope")), None);
        let msg = |group: Option<&str>| QueueMessage {
            body: "{\"from\":\"sns\"}".into(),
            group_id: group.map(str::to_string),
            ..Default::default()
        };
        let first = sink.send(&arn, msg(Some("g"))).await.unwrap();
        assert!(first.sequence_number.is_some());
        // Content-based deduplication applies to deliveries too.
        let again = sink.send(&arn, msg(Some("g"))).await.unwrap();
        assert_eq!(again.message_id, first.message_id);
        assert!(matches!(
            sink.send(&arn, msg(None)).await,
            Err(SinkError::Rejected { ref code, .. }) if code == "MissingParameter"
        ));
        assert!(matches!(
            sink.send(&sqs.arn("nope"), msg(None)).await,
            Err(SinkError::NotFound(_))
        ));
        let got = sqs.try_receive("t.fifo", 10, None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].system["SenderId"], "123456789012");
    }
}

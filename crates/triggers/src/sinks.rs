//! Where one service delivers into another (DESIGN.md, "Backend services and event
//! sources"): an SNS topic into an SQS queue, an EventBridge rule into a topic, a
//! queue or a Kinesis stream, an S3 notification into any of them, a Lambda
//! destination into a queue, a topic or a bus, an SNS email subscription into the
//! mail outbox.
//!
//! Each service registers the sink it implements in the server's one [`Sinks`] at
//! start; a deliverer names its target by ARN ([`Sinks::deliver`]) and never the
//! concrete service. Registration is late-bound ([`OnceLock`]) because the services
//! point at each other (SNS → SQS, EventBridge → SNS): a delivery to a service that
//! is not registered (yet, or at all) is a [`SinkError::Transient`] the outbox
//! retries, never a panic.
//!
//! Functions are not a sink here: deliveries to `arn:aws:lambda:…` go through
//! [`nimbus_dispatch::Dispatch::enqueue`] (async invoke semantics), which
//! [`Sinks::deliver`] does for [`Delivery::Function`].

use crate::BoxFuture;
use bytes::Bytes;
use nimbus_dispatch::{Dispatch, Invocation};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Why a delivery failed. Outboxes retry [`SinkError::Transient`] with their
/// service's backoff and give [`SinkError::Permanent`] up (to a dead-letter
/// target where the sender has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The target does not exist (a deleted queue, an unknown topic).
    #[error("{0}")]
    NotFound(String),
    /// The target refused this message and always will (too large, wrong FIFO
    /// parameters, KMS…): the AWS error code and message.
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    /// Try again later (the service is starting, its storage is busy).
    #[error("{0}")]
    Transient(String),
}

impl SinkError {
    /// Whether retrying could help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

pub type SinkResult<T> = Result<T, SinkError>;

/// A typed message attribute, as SQS and SNS both carry them (`DataType` is
/// `String`, `Number`, `Binary` or `String.Array`, optionally with a `.custom`
/// suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<Bytes>,
}

/// A message for an SQS queue.
#[derive(Debug, Clone, Default)]
pub struct QueueMessage {
    pub body: String,
    pub attributes: BTreeMap<String, MessageAttribute>,
    /// FIFO queues: required there, refused on standard queues.
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    pub delay_seconds: Option<u32>,
    /// `AWSTraceHeader` system attribute.
    pub trace_header: Option<String>,
    /// `SenderId` as the queue reports it (the sending service's principal).
    pub sender_id: Option<String>,
}

/// What a queue answers for an accepted message.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub message_id: String,
    pub sequence_number: Option<String>,
}

/// A message for an SNS topic (a `Publish`).
#[derive(Debug, Clone, Default)]
pub struct TopicMessage {
    pub message: String,
    pub subject: Option<String>,
    /// `MessageStructure: json` — `message` is a JSON object of per-protocol bodies.
    pub structure_json: bool,
    pub attributes: BTreeMap<String, MessageAttribute>,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

/// One event for an EventBridge bus (a `PutEvents` entry).
#[derive(Debug, Clone, Default)]
pub struct BusEvent {
    pub source: String,
    pub detail_type: String,
    /// The detail as JSON text (an object).
    pub detail: String,
    pub resources: Vec<String>,
    /// Milliseconds since the epoch; now when `None`.
    pub time_ms: Option<i64>,
    pub trace_header: Option<String>,
}

/// One record for a Kinesis stream (a `PutRecord`).
#[derive(Debug, Clone, Default)]
pub struct StreamPut {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
}

/// One mail for the outbox (SNS `email`/`email-json` subscriptions, SES event
/// notifications are the senders; SES itself writes its own outbox).
#[derive(Debug, Clone, Default)]
pub struct OutgoingMail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    /// Who sent it, for the outbox record (`sns`, …).
    pub origin: String,
}

/// SQS, as other services deliver into it.
pub trait QueueSink: Send + Sync + 'static {
    /// Whether a queue with this ARN exists.
    fn queue_exists(&self, queue_arn: &str) -> bool;
    /// Whether the queue is FIFO (`None`: no such queue).
    fn queue_is_fifo(&self, queue_arn: &str) -> Option<bool>;
    /// Send one message; returns once it is durable.
    fn send(&self, queue_arn: &str, msg: QueueMessage) -> BoxFuture<'_, SinkResult<SentMessage>>;
}

/// SNS, as other services deliver into it.
pub trait TopicSink: Send + Sync + 'static {
    fn topic_exists(&self, topic_arn: &str) -> bool;
    /// Publish one message; returns its message id once it is durable.
    fn publish(&self, topic_arn: &str, msg: TopicMessage) -> BoxFuture<'_, SinkResult<String>>;
}

/// EventBridge, as other services deliver into it.
pub trait BusSink: Send + Sync + 'static {
    fn bus_exists(&self, bus_arn: &str) -> bool;
    /// Put one event on a bus; returns its event id once it is durable.
    fn put_event(&self, bus_arn: &str, event: BusEvent) -> BoxFuture<'_, SinkResult<String>>;
}

/// Kinesis, as other services deliver into it.
pub trait StreamSink: Send + Sync + 'static {
    fn stream_exists(&self, stream_arn: &str) -> bool;
    /// Put one record; returns its sequence number once it is durable.
    fn put_record(&self, stream_arn: &str, rec: StreamPut) -> BoxFuture<'_, SinkResult<String>>;
}

/// S3, as other services read from it (Lambda's `Code.S3Bucket`/`S3Key`).
pub trait ObjectSource: Send + Sync + 'static {
    /// The object's bytes (the current version, or `version_id`'s), refused
    /// beyond `max` bytes. `NotFound` carries S3's error code and message
    /// (`NoSuchBucket`, `NoSuchKey`, `NoSuchVersion`) as `"<Code>: <Message>"`.
    fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        max: usize,
    ) -> BoxFuture<'_, SinkResult<Bytes>>;
}

/// The mail outbox (SES), as other services deliver into it.
pub trait MailSink: Send + Sync + 'static {
    /// Record one mail; returns its message id once it is durable.
    fn send_mail(&self, mail: OutgoingMail) -> BoxFuture<'_, SinkResult<String>>;
}

/// Which AWS service invokes a function, on behalf of which resource: what a
/// Lambda function policy's `Principal` (`s3.amazonaws.com`) and its
/// `aws:SourceArn` / `aws:SourceAccount` conditions are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeSource {
    /// The service principal, e.g. `s3.amazonaws.com`, `sns.amazonaws.com`.
    pub service: String,
    /// The resource the invocation is for (a bucket, topic or rule ARN).
    pub source_arn: String,
    /// The account owning it.
    pub source_account: String,
}

/// Whether a service may invoke a function (its resource policy, evaluated
/// by IAM), registered by the server when IAM evaluates (`--iam audit|enforce`).
pub trait InvokeCheck: Send + Sync + 'static {
    /// `Err(SinkError::Rejected)` when the function's policy does not let
    /// `source` invoke `function_arn`.
    fn check<'a>(
        &'a self,
        function_arn: &'a str,
        source: &'a InvokeSource,
    ) -> BoxFuture<'a, SinkResult<()>>;
}

/// A payload for [`Sinks::deliver`]: what a generic deliverer (a Lambda
/// destination, an EventBridge target, an S3 notification) hands to whatever its
/// target ARN names. Each variant is converted into the target's own message type
/// with the AWS defaults for that pairing.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A JSON document (an event record, a destination record): SQS body, SNS
    /// message, EventBridge detail, Kinesis data, or a function's payload.
    Json {
        body: String,
        /// For a bus target: the event's `source` and `detail-type`.
        source: String,
        detail_type: String,
        /// FIFO targets: the group (and dedup id) the sender chose.
        group_id: Option<String>,
        deduplication_id: Option<String>,
        /// Kinesis targets: the partition key (a random one when `None`).
        partition_key: Option<String>,
        trace_header: Option<String>,
        /// For a bus target: the event's `resources` (Lambda's destination events
        /// name the bus and the function version).
        resources: Vec<String>,
    },
}

/// What kind of resource an ARN names, for routing a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Queue,
    Topic,
    Bus,
    Stream,
    Function,
}

impl TargetKind {
    /// `arn:aws:<service>:<region>:<account>:<resource>` → the kind, by service
    /// (and, for EventBridge, the `event-bus/` resource).
    pub fn of(arn: &str) -> Option<TargetKind> {
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some(service), Some(_), Some(_), Some(resource)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        match service {
            "sqs" => Some(TargetKind::Queue),
            "sns" => Some(TargetKind::Topic),
            "events" if resource.starts_with("event-bus/") => Some(TargetKind::Bus),
            "kinesis" if resource.starts_with("stream/") => Some(TargetKind::Stream),
            "lambda" if resource.starts_with("function:") => Some(TargetKind::Function),
            _ => None,
        }
    }
}

/// The server's registry of sinks, shared by every service.
pub struct Sinks {
    dispatch: Arc<dyn Dispatch>,
    queues: OnceLock<Arc<dyn QueueSink>>,
    topics: OnceLock<Arc<dyn TopicSink>>,
    buses: OnceLock<Arc<dyn BusSink>>,
    streams: OnceLock<Arc<dyn StreamSink>>,
    mail: OnceLock<Arc<dyn MailSink>>,
    objects: OnceLock<Arc<dyn ObjectSource>>,
    invoke_check: OnceLock<Arc<dyn InvokeCheck>>,
}

fn unavailable(what: &str) -> SinkError {
    SinkError::Transient(format!("the {what} service is not running"))
}

impl Sinks {
    pub fn new(dispatch: Arc<dyn Dispatch>) -> Self {
        Self {
            dispatch,
            queues: OnceLock::new(),
            topics: OnceLock::new(),
            buses: OnceLock::new(),
            streams: OnceLock::new(),
            mail: OnceLock::new(),
            objects: OnceLock::new(),
            invoke_check: OnceLock::new(),
        }
    }

    /// The function dispatcher (Lambda targets).
    pub fn dispatch(&self) -> &Arc<dyn Dispatch> {
        &self.dispatch
    }

    pub fn register_queues(&self, s: Arc<dyn QueueSink>) {
        let _ = self.queues.set(s);
    }
    pub fn register_topics(&self, s: Arc<dyn TopicSink>) {
        let _ = self.topics.set(s);
    }
    pub fn register_buses(&self, s: Arc<dyn BusSink>) {
        let _ = self.buses.set(s);
    }
    pub fn register_streams(&self, s: Arc<dyn StreamSink>) {
        let _ = self.streams.set(s);
    }
    pub fn register_mail(&self, s: Arc<dyn MailSink>) {
        let _ = self.mail.set(s);
    }
    pub fn register_objects(&self, s: Arc<dyn ObjectSource>) {
        let _ = self.objects.set(s);
    }
    /// Check service-to-function deliveries ([`Sinks::deliver_from`]) against
    /// the functions' policies.
    pub fn register_invoke_check(&self, c: Arc<dyn InvokeCheck>) {
        let _ = self.invoke_check.set(c);
    }

    pub fn queues(&self) -> SinkResult<&Arc<dyn QueueSink>> {
        self.queues.get().ok_or_else(|| unavailable("SQS"))
    }
    pub fn topics(&self) -> SinkResult<&Arc<dyn TopicSink>> {
        self.topics.get().ok_or_else(|| unavailable("SNS"))
    }
    pub fn buses(&self) -> SinkResult<&Arc<dyn BusSink>> {
        self.buses.get().ok_or_else(|| unavailable("EventBridge"))
    }
    pub fn streams(&self) -> SinkResult<&Arc<dyn StreamSink>> {
        self.streams.get().ok_or_else(|| unavailable("Kinesis"))
    }
    pub fn mail(&self) -> SinkResult<&Arc<dyn MailSink>> {
        self.mail.get().ok_or_else(|| unavailable("SES"))
    }
    pub fn objects(&self) -> SinkResult<&Arc<dyn ObjectSource>> {
        self.objects.get().ok_or_else(|| unavailable("S3"))
    }

    /// Whether `arn` names a target that exists now (for validating a
    /// destination, a target or a notification configuration).
    pub fn target_exists(&self, arn: &str) -> bool {
        match TargetKind::of(arn) {
            Some(TargetKind::Queue) => self.queues().is_ok_and(|s| s.queue_exists(arn)),
            Some(TargetKind::Topic) => self.topics().is_ok_and(|s| s.topic_exists(arn)),
            Some(TargetKind::Bus) => self.buses().is_ok_and(|s| s.bus_exists(arn)),
            Some(TargetKind::Stream) => self.streams().is_ok_and(|s| s.stream_exists(arn)),
            Some(TargetKind::Function) => {
                let (name, qualifier) = function_of(arn);
                self.dispatch.qualifier_exists(name, qualifier)
            }
            None => false,
        }
    }

    /// Deliver `payload` to whatever `arn` names; returns the id the target
    /// assigned (message id, event id, sequence number, request id).
    pub async fn deliver(&self, arn: &str, payload: Delivery) -> SinkResult<String> {
        self.deliver_from(arn, payload, None).await
    }

    /// [`Sinks::deliver`] on behalf of a service's resource (an S3 bucket's
    /// notification, an SNS subscription, an EventBridge rule): a function
    /// target is first checked against its policy (when a check is registered).
    pub async fn deliver_from(
        &self,
        arn: &str,
        payload: Delivery,
        source: Option<&InvokeSource>,
    ) -> SinkResult<String> {
        if let (Some(TargetKind::Function), Some(source), Some(check)) =
            (TargetKind::of(arn), source, self.invoke_check.get())
        {
            check.check(arn, source).await?;
        }
        let Delivery::Json {
            body,
            source,
            detail_type,
            group_id,
            deduplication_id,
            partition_key,
            trace_header,
            resources,
        } = payload;
        match TargetKind::of(arn) {
            Some(TargetKind::Queue) => {
                let msg = QueueMessage {
                    body,
                    group_id,
                    deduplication_id,
                    trace_header,
                    ..Default::default()
                };
                Ok(self.queues()?.send(arn, msg).await?.message_id)
            }
            Some(TargetKind::Topic) => {
                let msg = TopicMessage {
                    message: body,
                    group_id,
                    deduplication_id,
                    ..Default::default()
                };
                self.topics()?.publish(arn, msg).await
            }
            Some(TargetKind::Bus) => {
                let ev = BusEvent {
                    source,
                    detail_type,
                    detail: body,
                    trace_header,
                    resources,
                    ..Default::default()
                };
                self.buses()?.put_event(arn, ev).await
            }
            Some(TargetKind::Stream) => {
                let rec = StreamPut {
                    partition_key: partition_key
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                    explicit_hash_key: None,
                    data: Bytes::from(body),
                };
                self.streams()?.put_record(arn, rec).await
            }
            Some(TargetKind::Function) => {
                let (name, qualifier) = function_of(arn);
                let inv = Invocation {
                    function: name.to_string(),
                    qualifier: qualifier.map(str::to_string),
                    payload: Bytes::from(body),
                    trigger: nimbus_core::Trigger::Api,
                    client_context: None,
                    trace_id: trace_header,
                };
                self.dispatch.enqueue(inv, "delivery").await.map_err(|e| {
                    match crate::SubmitError::from(e) {
                        crate::SubmitError::Transient(m) => SinkError::Transient(m),
                        crate::SubmitError::Permanent(m) => SinkError::NotFound(m),
                    }
                })
            }
            None => Err(SinkError::NotFound(format!(
                "{arn} is not a queue, topic, event bus, stream or function ARN"
            ))),
        }
    }
}

/// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` → name and
/// qualifier.
pub fn function_of(arn: &str) -> (&str, Option<&str>) {
    let rest = arn.splitn(7, ':').nth(6).unwrap_or(arn);
    match rest.split_once(':') {
        Some((name, q)) => (name, Some(q)),
        None => (rest, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_route_by_service() {
        use TargetKind::*;
        for (arn, kind) in [
            ("arn:aws:sqs:us-east-1:123456789012:q", Some(Queue)),
            ("arn:aws:sns:us-east-1:123456789012:t", Some(Topic)),
            (
                "arn:aws:events:us-east-1:123456789012:event-bus/default",
                Some(Bus),
            ),
            ("arn:aws:events:us-east-1:123456789012:rule/r", None),
            (
                "arn:aws:kinesis:us-east-1:123456789012:stream/s",
                Some(Stream),
            ),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:f:live",
                Some(Function),
            ),
            ("arn:aws:s3:::bucket", None),
            ("not-an-arn", None),
        ] {
            assert_eq!(TargetKind::of(arn), kind, "{arn}");
        }
        assert_eq!(
            function_of("arn:aws:lambda:us-east-1:123456789012:function:f:live"),
            ("f", Some("live"))
        );
        assert_eq!(
            function_of("arn:aws:lambda:us-east-1:123456789012:function:f"),
            ("f", None)
        );
    }
}

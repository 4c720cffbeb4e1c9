//! SQS on the wire: the front-end the edge calls. A request is decoded with
//! [`Call::decode`] (awsJson 1.0 or awsQuery), its input read into one serde type
//! per operation (awsQuery through a [`Shape`] giving SQS's legacy wire names:
//! `Attribute.N.Name`, `MessageAttribute.N.Value.StringValue`,
//! `SendMessageBatchRequestEntry.N.…`), run on the [`Sqs`] core, and answered in
//! the request's protocol — JSON, or XML wrapped in `<OpResponse>`.

// `AwsError` is the one error every front-end renders; it is moved once to the
// wire, and boxing it would add an allocation to every error path (as in
// nimbus-protocol).
#![allow(clippy::result_large_err)]

use crate::core::{name_of_arn, ReceiveInput, Received, SendInput, Sqs};
use crate::error::SqsError;
use crate::model::MsgAttr;
use crate::ops::{Op, META};
use axum::response::Response;
use base64::Engine as _;
use nimbus_protocol::{
    decode_json, encode_json, query_response, query_response_value, AwsError, Frontend,
    JsonOptions, Member, Protocol, QueryParams, ResponseFuture, ServiceMeta, Shape,
};
use nimbus_svc_common::Call;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// ---- awsQuery input shapes (SQS's legacy wire names) ----------------------------

static STR: Shape = Shape::String;
static INT: Shape = Shape::Integer;
static ATTRS_IN: Shape = Shape::flat_map("Name", "Value", &STR);
static TAGS_IN: Shape = Shape::flat_map("Key", "Value", &STR);
static MAV: Shape = Shape::structure(&[
    Member::new("StringValue", &STR),
    Member::new("BinaryValue", &STR),
    Member::new("DataType", &STR),
    Member::new("StringListValues", &STRS).wire("StringListValue"),
    Member::new("BinaryListValues", &STRS).wire("BinaryListValue"),
]);
static STRS: Shape = Shape::flat_list(&STR);
static MSG_ATTRS_IN: Shape = Shape::flat_map("Name", "Value", &MAV);
static CREATE_QUEUE: Shape = Shape::structure(&[
    Member::new("Attributes", &ATTRS_IN).wire("Attribute"),
    Member::new("tags", &TAGS_IN).wire("Tag"),
]);
static SET_ATTRS: Shape =
    Shape::structure(&[Member::new("Attributes", &ATTRS_IN).wire("Attribute")]);
static GET_ATTRS: Shape =
    Shape::structure(&[Member::new("AttributeNames", &STRS).wire("AttributeName")]);
static MAX_RESULTS: Shape = Shape::structure(&[Member::new("MaxResults", &INT)]);
static SEND_FIELDS: &[Member] = &[
    Member::new("Id", &STR),
    Member::new("QueueUrl", &STR),
    Member::new("MessageBody", &STR),
    Member::new("DelaySeconds", &INT),
    Member::new("MessageAttributes", &MSG_ATTRS_IN).wire("MessageAttribute"),
    Member::new("MessageSystemAttributes", &MSG_ATTRS_IN).wire("MessageSystemAttribute"),
    Member::new("MessageDeduplicationId", &STR),
    Member::new("MessageGroupId", &STR),
];
static SEND: Shape = Shape::Structure(SEND_FIELDS);
static SEND_ENTRY: Shape = Shape::Structure(SEND_FIELDS);
static SEND_BATCH: Shape =
    Shape::structure(&[
        Member::new("Entries", &Shape::flat_list(&SEND_ENTRY)).wire("SendMessageBatchRequestEntry")
    ]);
static RECEIVE: Shape = Shape::structure(&[
    Member::new("AttributeNames", &STRS).wire("AttributeName"),
    Member::new("MessageSystemAttributeNames", &STRS).wire("MessageSystemAttributeName"),
    Member::new("MessageAttributeNames", &STRS).wire("MessageAttributeName"),
    Member::new("MaxNumberOfMessages", &INT),
    Member::new("VisibilityTimeout", &INT),
    Member::new("WaitTimeSeconds", &INT),
]);
static DELETE_ENTRY: Shape =
    Shape::structure(&[Member::new("Id", &STR), Member::new("ReceiptHandle", &STR)]);
static DELETE_BATCH: Shape =
    Shape::structure(&[Member::new("Entries", &Shape::flat_list(&DELETE_ENTRY))
        .wire("DeleteMessageBatchRequestEntry")]);
static VIS: Shape = Shape::structure(&[Member::new("VisibilityTimeout", &INT)]);
static VIS_ENTRY: Shape = Shape::structure(&[
    Member::new("Id", &STR),
    Member::new("ReceiptHandle", &STR),
    Member::new("VisibilityTimeout", &INT),
]);
static VIS_BATCH: Shape =
    Shape::structure(&[Member::new("Entries", &Shape::flat_list(&VIS_ENTRY))
        .wire("ChangeMessageVisibilityBatchRequestEntry")]);
static TAG: Shape = Shape::structure(&[Member::new("Tags", &TAGS_IN).wire("Tag")]);
static UNTAG: Shape = Shape::structure(&[Member::new("TagKeys", &STRS).wire("TagKey")]);
static ADD_PERMISSION: Shape = Shape::structure(&[
    Member::new("AWSAccountIds", &STRS).wire("AWSAccountId"),
    Member::new("Actions", &STRS).wire("ActionName"),
]);
static START_MOVE: Shape = Shape::structure(&[Member::new("MaxNumberOfMessagesPerSecond", &INT)]);
static NONE: Shape = Shape::structure(&[]);

// ---- awsQuery output shapes ------------------------------------------------------

static ATTRS_OUT: Shape = Shape::flat_map("Name", "Value", &STR);
static GET_ATTRS_OUT: Shape =
    Shape::structure(&[Member::new("Attributes", &ATTRS_OUT).wire("Attribute")]);
static LIST_QUEUES_OUT: Shape =
    Shape::structure(&[Member::new("QueueUrls", &STRS).wire("QueueUrl")]);
static DLQ_SOURCES_OUT: Shape =
    Shape::structure(&[Member::new("queueUrls", &STRS).wire("QueueUrl")]);
static MESSAGE_OUT: Shape = Shape::structure(&[
    Member::new("Attributes", &ATTRS_OUT).wire("Attribute"),
    Member::new("MessageAttributes", &MSG_ATTRS_IN).wire("MessageAttribute"),
]);
static RECEIVE_OUT: Shape =
    Shape::structure(&[Member::new("Messages", &Shape::flat_list(&MESSAGE_OUT)).wire("Message")]);
static ANY: Shape = Shape::structure(&[]);
static FAILED: Shape = Shape::flat_list(&ANY);
static SEND_BATCH_OUT: Shape = Shape::structure(&[
    Member::new("Successful", &FAILED).wire("SendMessageBatchResultEntry"),
    Member::new("Failed", &FAILED).wire("BatchResultErrorEntry"),
]);
static DELETE_BATCH_OUT: Shape = Shape::structure(&[
    Member::new("Successful", &FAILED).wire("DeleteMessageBatchResultEntry"),
    Member::new("Failed", &FAILED).wire("BatchResultErrorEntry"),
]);
static VIS_BATCH_OUT: Shape = Shape::structure(&[
    Member::new("Successful", &FAILED).wire("ChangeMessageVisibilityBatchResultEntry"),
    Member::new("Failed", &FAILED).wire("BatchResultErrorEntry"),
]);
static TAGS_OUT: Shape = Shape::structure(&[Member::new("Tags", &TAGS_IN).wire("Tag")]);
static MOVES_OUT: Shape =
    Shape::structure(&[Member::new("Results", &FAILED).wire("ListMessageMoveTasksResultEntry")]);

// ---- inputs ----------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct QueueIn {
    queue_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateQueueIn {
    queue_name: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default, rename = "tags")]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrlIn {
    queue_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListQueuesIn {
    queue_name_prefix: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListDlqIn {
    queue_url: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct GetAttrsIn {
    queue_url: Option<String>,
    attribute_names: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SetAttrsIn {
    queue_url: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TagIn {
    queue_url: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UntagIn {
    queue_url: Option<String>,
    tag_keys: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase", default)]
struct MavIn {
    string_value: Option<String>,
    binary_value: Option<String>,
    data_type: Option<String>,
    string_list_values: Vec<String>,
    binary_list_values: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SendIn {
    id: Option<String>,
    queue_url: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<i64>,
    message_attributes: BTreeMap<String, MavIn>,
    message_system_attributes: BTreeMap<String, MavIn>,
    message_deduplication_id: Option<String>,
    message_group_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SendBatchIn {
    queue_url: Option<String>,
    entries: Option<Vec<SendIn>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ReceiveIn {
    queue_url: Option<String>,
    attribute_names: Vec<String>,
    message_system_attribute_names: Vec<String>,
    message_attribute_names: Vec<String>,
    max_number_of_messages: Option<i64>,
    visibility_timeout: Option<i64>,
    wait_time_seconds: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HandleIn {
    id: Option<String>,
    queue_url: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HandleBatchIn {
    queue_url: Option<String>,
    entries: Option<Vec<HandleIn>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PermissionIn {
    queue_url: Option<String>,
    label: Option<String>,
    #[serde(rename = "AWSAccountIds")]
    aws_account_ids: Vec<String>,
    actions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct MoveIn {
    source_arn: Option<String>,
    destination_arn: Option<String>,
    max_number_of_messages_per_second: Option<i64>,
    task_handle: Option<String>,
    max_results: Option<i64>,
}

// ---- the front-end ---------------------------------------------------------------

/// SQS's edge front-end.
pub struct SqsFrontend {
    pub(crate) sqs: Arc<Sqs>,
    /// Base URL for queue URLs when a request has no `Host`.
    pub(crate) endpoint: String,
}

impl Frontend for SqsFrontend {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: axum::extract::Request) -> ResponseFuture {
        let sqs = self.sqs.clone();
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            let mut call = match Call::<Op>::decode(req).await {
                Ok(c) => c,
                Err(resp) => return resp,
            };
            let body = if call.protocol == Protocol::AwsQuery {
                Vec::new()
            } else {
                let b = std::mem::replace(&mut call.body, axum::body::Body::empty());
                match axum::body::to_bytes(b, nimbus_protocol::DEFAULT_BODY_LIMIT).await {
                    Ok(b) => b.to_vec(),
                    Err(_) => {
                        return call.error(&AwsError::new(
                            http::StatusCode::PAYLOAD_TOO_LARGE,
                            "RequestEntityTooLarge",
                            "The request body could not be read.",
                        ))
                    }
                }
            };
            let base = base_url(&call, &endpoint);
            let ctx = Ctx {
                op: call.op,
                protocol: call.protocol,
                request_id: call.request_id.clone(),
                params: std::mem::take(&mut call.params),
                path: call.parts.uri.path().to_string(),
                principal: call.context().map(|c| c.principal.clone()),
                body,
                sqs: &sqs,
                base,
            };
            let result = ctx.run().await;
            match result {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::debug!(operation = call.op.name(), error = %e, "sqs: request refused");
                    call.error(&e)
                }
            }
        })
    }
}

/// `http://<Host>` of the request, else the server's endpoint.
fn base_url(call: &Call<Op>, endpoint: &str) -> String {
    match call
        .parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        Some(host) if !host.is_empty() => format!("http://{host}"),
        _ => endpoint.trim_end_matches('/').to_string(),
    }
}

/// The queue name a `QueueUrl` names, in any form SDKs send: a full URL
/// (`http://host:port/<account>/<name>`, `https://sqs.<region>.amazonaws.com/…`),
/// a path, or the bare name.
pub fn queue_name_of_url(url: &str) -> Option<String> {
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j..],
                None => "",
            }
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/').rfind(|s| !s.is_empty()).map(str::to_string)
}

struct Ctx<'a> {
    op: Op,
    protocol: Protocol,
    request_id: String,
    params: Vec<(String, String)>,
    path: String,
    principal: Option<nimbus_core::Principal>,
    body: Vec<u8>,
    sqs: &'a Arc<Sqs>,
    base: String,
}

fn missing(name: &str) -> AwsError {
    SqsError::MissingParameter(format!("The request must contain the parameter {name}.")).into()
}

fn int_param(name: &str, v: Option<i64>, lo: i64, hi: i64) -> Result<Option<u32>, AwsError> {
    match v {
        None => Ok(None),
        Some(n) if (lo..=hi).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(SqsError::invalid(format!(
            "Value {n} for parameter {name} is invalid. Reason: Must be between {lo} and {hi}, \
             if provided."
        ))
        .into()),
    }
}

impl Ctx<'_> {
    fn input<T: DeserializeOwned>(&self, shape: &Shape) -> Result<T, AwsError> {
        if self.protocol == Protocol::AwsQuery {
            let p = QueryParams::parse(form_pairs(&self.params).as_bytes());
            p.deserialize(shape)
        } else {
            decode_json(&self.body)
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.base, self.sqs.account)
    }

    /// The queue a request addresses: its `QueueUrl`, else (awsQuery) the path it
    /// was posted to.
    fn queue(&self, url: Option<&str>) -> Result<String, AwsError> {
        let name = match url {
            Some(u) if !u.is_empty() => queue_name_of_url(u),
            _ => {
                let path = self.path.as_str();
                if path.trim_matches('/').is_empty() {
                    return Err(missing("QueueUrl"));
                }
                queue_name_of_url(path)
            }
        };
        name.ok_or_else(|| SqsError::QueueDoesNotExist.into())
    }

    fn ok(&self, value: Value, shape: &Shape) -> Response {
        if self.protocol == Protocol::AwsQuery {
            if value.as_object().is_some_and(Map::is_empty) && std::ptr::eq(shape, &NONE) {
                return query_response(&META, self.op.name(), &self.request_id, None);
            }
            query_response_value(&META, self.op.name(), &self.request_id, &value, shape)
        } else {
            encode_json(
                self.protocol,
                &self.request_id,
                &value,
                JsonOptions::default(),
            )
        }
    }

    fn sender_id(&self) -> String {
        match self.principal.as_ref() {
            Some(nimbus_core::Principal::User(n)) => n.clone(),
            Some(nimbus_core::Principal::AssumedRole { role, session }) => {
                format!("{role}:{session}")
            }
            _ => self.sqs.account.clone(),
        }
    }

    async fn run(&self) -> Result<Response, AwsError> {
        let sqs = self.sqs;
        match self.op {
            Op::CreateQueue => {
                let i: CreateQueueIn = self.input(&CREATE_QUEUE)?;
                sqs.create_queue(&i.queue_name, &i.attributes, &i.tags)
                    .await?;
                Ok(self.ok(json!({"QueueUrl": self.url(&i.queue_name)}), &NONE))
            }
            Op::GetQueueUrl => {
                let i: GetQueueUrlIn = self.input(&NONE)?;
                if !sqs.queue_exists(&i.queue_name) {
                    return Err(SqsError::QueueDoesNotExist.into());
                }
                Ok(self.ok(json!({"QueueUrl": self.url(&i.queue_name)}), &NONE))
            }
            Op::ListQueues => {
                let i: ListQueuesIn = self.input(&MAX_RESULTS)?;
                let max = int_param("MaxResults", i.max_results, 1, 1000)?;
                let names = sqs.list_queues(i.queue_name_prefix.as_deref());
                let (page, next) = paginate(names, i.next_token.as_deref(), max)?;
                let mut out = Map::new();
                if !page.is_empty() {
                    out.insert(
                        "QueueUrls".into(),
                        page.iter().map(|n| self.url(n)).collect::<Vec<_>>().into(),
                    );
                }
                if let Some(t) = next {
                    out.insert("NextToken".into(), t.into());
                }
                Ok(self.ok(Value::Object(out), &LIST_QUEUES_OUT))
            }
            Op::DeleteQueue => {
                let i: QueueIn = self.input(&NONE)?;
                sqs.delete_queue(&self.queue(i.queue_url.as_deref())?)
                    .await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::PurgeQueue => {
                let i: QueueIn = self.input(&NONE)?;
                sqs.purge(&self.queue(i.queue_url.as_deref())?).await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::GetQueueAttributes => {
                let i: GetAttrsIn = self.input(&GET_ATTRS)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let attrs = sqs.get_attributes(&name, &i.attribute_names)?;
                let mut out = Map::new();
                if !attrs.is_empty() {
                    out.insert("Attributes".into(), json!(attrs));
                }
                Ok(self.ok(Value::Object(out), &GET_ATTRS_OUT))
            }
            Op::SetQueueAttributes => {
                let i: SetAttrsIn = self.input(&SET_ATTRS)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let attrs = i.attributes.ok_or_else(|| missing("Attributes"))?;
                sqs.set_attributes(&name, &attrs).await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::ListQueueTags => {
                let i: QueueIn = self.input(&NONE)?;
                let tags = sqs.tags(&self.queue(i.queue_url.as_deref())?)?;
                let mut out = Map::new();
                if !tags.is_empty() {
                    out.insert("Tags".into(), json!(tags));
                }
                Ok(self.ok(Value::Object(out), &TAGS_OUT))
            }
            Op::TagQueue => {
                let i: TagIn = self.input(&TAG)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let tags = i.tags.ok_or_else(|| missing("Tags"))?;
                sqs.tag(&name, &tags, &[]).await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::UntagQueue => {
                let i: UntagIn = self.input(&UNTAG)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let keys = i.tag_keys.ok_or_else(|| missing("TagKeys"))?;
                sqs.tag(&name, &BTreeMap::new(), &keys).await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::ListDeadLetterSourceQueues => {
                let i: ListDlqIn = self.input(&MAX_RESULTS)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let max = int_param("MaxResults", i.max_results, 1, 1000)?;
                let names = sqs.dead_letter_sources(&name)?;
                let (page, next) = paginate(names, i.next_token.as_deref(), max)?;
                let mut out = Map::new();
                out.insert(
                    "queueUrls".into(),
                    page.iter().map(|n| self.url(n)).collect::<Vec<_>>().into(),
                );
                if let Some(t) = next {
                    out.insert("NextToken".into(), t.into());
                }
                Ok(self.ok(Value::Object(out), &DLQ_SOURCES_OUT))
            }
            Op::SendMessage => {
                let i: SendIn = self.input(&SEND)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let input = self.send_input(i)?;
                let mut r = sqs.send(&name, vec![input]).await?;
                let out = r.pop().expect("one result per input")?;
                let mut v = Map::new();
                v.insert("MD5OfMessageBody".into(), out.md5_body.into());
                if let Some(m) = out.md5_attrs {
                    v.insert("MD5OfMessageAttributes".into(), m.into());
                }
                if let Some(m) = out.md5_system {
                    v.insert("MD5OfMessageSystemAttributes".into(), m.into());
                }
                v.insert("MessageId".into(), out.message_id.into());
                if let Some(s) = out.sequence_number {
                    v.insert("SequenceNumber".into(), s.into());
                }
                Ok(self.ok(Value::Object(v), &NONE))
            }
            Op::SendMessageBatch => {
                let i: SendBatchIn = self.input(&SEND_BATCH)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let entries = i.entries.unwrap_or_default();
                check_batch(entries.iter().map(|e| e.id.as_deref()))?;
                let limit = sqs
                    .get_attributes(&name, &["MaximumMessageSize".into()])?
                    .get("MaximumMessageSize")
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(crate::model::DEFAULT_MAX_MESSAGE_SIZE);
                let total: usize = entries
                    .iter()
                    .map(|e| {
                        e.message_body.as_ref().map_or(0, String::len)
                            + e.message_attributes
                                .iter()
                                .map(|(k, a)| {
                                    k.len()
                                        + a.data_type.as_ref().map_or(0, String::len)
                                        + a.string_value.as_ref().map_or(0, String::len)
                                        + a.binary_value.as_ref().map_or(0, |b| b.len() * 3 / 4)
                                })
                                .sum::<usize>()
                    })
                    .sum();
                if total > limit as usize {
                    return Err(SqsError::BatchRequestTooLong(limit, total).into());
                }
                let mut ids = Vec::new();
                let mut inputs = Vec::new();
                let mut failed = Vec::new();
                for e in entries {
                    let id = e.id.clone().unwrap_or_default();
                    match self.send_input(e) {
                        Ok(inp) => {
                            ids.push(id);
                            inputs.push(inp);
                        }
                        Err(err) => failed.push(batch_error(&id, &err.into())),
                    }
                }
                let results = sqs.send(&name, inputs).await?;
                let mut ok = Vec::new();
                for (id, r) in ids.into_iter().zip(results) {
                    match r {
                        Ok(out) => {
                            let mut v = Map::new();
                            v.insert("Id".into(), id.into());
                            v.insert("MessageId".into(), out.message_id.into());
                            v.insert("MD5OfMessageBody".into(), out.md5_body.into());
                            if let Some(m) = out.md5_attrs {
                                v.insert("MD5OfMessageAttributes".into(), m.into());
                            }
                            if let Some(m) = out.md5_system {
                                v.insert("MD5OfMessageSystemAttributes".into(), m.into());
                            }
                            if let Some(s) = out.sequence_number {
                                v.insert("SequenceNumber".into(), s.into());
                            }
                            ok.push(Value::Object(v));
                        }
                        Err(e) => failed.push(batch_error(&id, &e.into())),
                    }
                }
                Ok(self.ok(json!({"Successful": ok, "Failed": failed}), &SEND_BATCH_OUT))
            }
            Op::ReceiveMessage => {
                let i: ReceiveIn = self.input(&RECEIVE)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let max =
                    int_param("MaxNumberOfMessages", i.max_number_of_messages, 1, 10)?.unwrap_or(1);
                let vt = int_param("VisibilityTimeout", i.visibility_timeout, 0, 43_200)?;
                let wait = int_param("WaitTimeSeconds", i.wait_time_seconds, 0, 20)?;
                let got = sqs
                    .receive(
                        &name,
                        ReceiveInput {
                            max: max as usize,
                            visibility_timeout: vt,
                            wait_seconds: wait,
                        },
                    )
                    .await?;
                let mut system_names: BTreeSet<String> = BTreeSet::new();
                system_names.extend(i.attribute_names.iter().cloned());
                system_names.extend(i.message_system_attribute_names.iter().cloned());
                let msgs: Vec<Value> = got
                    .into_iter()
                    .map(|m| message_json(m, &system_names, &i.message_attribute_names))
                    .collect();
                let mut out = Map::new();
                if !msgs.is_empty() {
                    out.insert("Messages".into(), msgs.into());
                }
                Ok(self.ok(Value::Object(out), &RECEIVE_OUT))
            }
            Op::DeleteMessage => {
                let i: HandleIn = self.input(&NONE)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let h = i.receipt_handle.ok_or_else(|| missing("ReceiptHandle"))?;
                sqs.delete_message(&name, &h).await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::ChangeMessageVisibility => {
                let i: HandleIn = self.input(&VIS)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let h = i.receipt_handle.ok_or_else(|| missing("ReceiptHandle"))?;
                let t = i
                    .visibility_timeout
                    .ok_or_else(|| missing("VisibilityTimeout"))?;
                sqs.change_visibility(&name, &h, t).await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::DeleteMessageBatch | Op::ChangeMessageVisibilityBatch => {
                let visibility = self.op == Op::ChangeMessageVisibilityBatch;
                let i: HandleBatchIn = self.input(if visibility {
                    &VIS_BATCH
                } else {
                    &DELETE_BATCH
                })?;
                let name = self.queue(i.queue_url.as_deref())?;
                let entries = i.entries.unwrap_or_default();
                check_batch(entries.iter().map(|e| e.id.as_deref()))?;
                if !sqs.queue_exists(&name) {
                    return Err(SqsError::QueueDoesNotExist.into());
                }
                let mut ok = Vec::new();
                let mut failed = Vec::new();
                for e in entries {
                    let id = e.id.clone().unwrap_or_default();
                    let r = match (&e.receipt_handle, visibility) {
                        (None, _) => Err(SqsError::MissingParameter(
                            "The request must contain the parameter ReceiptHandle.".into(),
                        )),
                        (Some(h), false) => sqs.delete_message(&name, h).await,
                        (Some(h), true) => {
                            sqs.change_visibility(&name, h, e.visibility_timeout.unwrap_or(0))
                                .await
                        }
                    };
                    match r {
                        Ok(()) => ok.push(json!({"Id": id})),
                        Err(err) => failed.push(batch_error(&id, &err.into())),
                    }
                }
                let shape = if visibility {
                    &VIS_BATCH_OUT
                } else {
                    &DELETE_BATCH_OUT
                };
                Ok(self.ok(json!({"Successful": ok, "Failed": failed}), shape))
            }
            Op::AddPermission | Op::RemovePermission => {
                let i: PermissionIn = self.input(&ADD_PERMISSION)?;
                let name = self.queue(i.queue_url.as_deref())?;
                let label = i.label.clone().ok_or_else(|| missing("Label"))?;
                let attrs = sqs.get_attributes(&name, &["Policy".into()])?;
                let arn = sqs.arn(&name);
                let mut policy: Value = attrs
                    .get("Policy")
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or_else(|| {
                        json!({"Version": "2012-10-17", "Id": format!("{arn}/SQSDefaultPolicy"), "Statement": []})
                    });
                let statements = policy
                    .get_mut("Statement")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| SqsError::invalid("The queue's policy has no statements."))?;
                let exists = statements.iter().any(|s| s["Sid"] == label.as_str());
                if self.op == Op::AddPermission {
                    if exists {
                        return Err(SqsError::invalid(format!(
                            "Value {label} for parameter Label is invalid. Reason: Already exists."
                        ))
                        .into());
                    }
                    if i.aws_account_ids.is_empty() {
                        return Err(missing("AWSAccountIds"));
                    }
                    if i.actions.is_empty() {
                        return Err(missing("Actions"));
                    }
                    let principals: Vec<String> = i
                        .aws_account_ids
                        .iter()
                        .map(|a| format!("arn:aws:iam::{a}:root"))
                        .collect();
                    let actions: Vec<String> =
                        i.actions.iter().map(|a| format!("SQS:{a}")).collect();
                    statements.push(json!({
                        "Sid": label,
                        "Effect": "Allow",
                        "Principal": {"AWS": principals},
                        "Action": actions,
                        "Resource": arn,
                    }));
                } else {
                    if !exists {
                        return Err(SqsError::invalid(format!(
                            "Value {label} for parameter Label is invalid. Reason: can't find label."
                        ))
                        .into());
                    }
                    statements.retain(|s| s["Sid"] != label.as_str());
                }
                let empty = statements.is_empty();
                let text = if empty {
                    String::new()
                } else {
                    policy.to_string()
                };
                sqs.set_attributes(&name, &BTreeMap::from([("Policy".to_string(), text)]))
                    .await?;
                Ok(self.ok(json!({}), &NONE))
            }
            Op::StartMessageMoveTask => {
                let i: MoveIn = self.input(&START_MOVE)?;
                let source = i.source_arn.ok_or_else(|| missing("SourceArn"))?;
                let rate = int_param(
                    "MaxNumberOfMessagesPerSecond",
                    i.max_number_of_messages_per_second,
                    1,
                    500,
                )?;
                let handle = sqs
                    .start_move(&source, i.destination_arn.as_deref(), rate)
                    .await?;
                Ok(self.ok(json!({"TaskHandle": handle}), &NONE))
            }
            Op::CancelMessageMoveTask => {
                let i: MoveIn = self.input(&NONE)?;
                let handle = i.task_handle.ok_or_else(|| missing("TaskHandle"))?;
                let moved = sqs.cancel_move(&handle).await?;
                Ok(self.ok(json!({"ApproximateNumberOfMessagesMoved": moved}), &NONE))
            }
            Op::ListMessageMoveTasks => {
                let i: MoveIn = self.input(&MAX_RESULTS)?;
                let source = i.source_arn.ok_or_else(|| missing("SourceArn"))?;
                let max = int_param("MaxResults", i.max_results, 1, 10)?.unwrap_or(1);
                let tasks = sqs.list_moves(&source, max as usize)?;
                let results: Vec<Value> = tasks
                    .into_iter()
                    .map(|t| {
                        let mut v = Map::new();
                        if t.status == "RUNNING" {
                            v.insert("TaskHandle".into(), t.handle.into());
                        }
                        v.insert("Status".into(), t.status.into());
                        v.insert("SourceArn".into(), t.source_arn.into());
                        if let Some(d) = t.destination_arn {
                            v.insert("DestinationArn".into(), d.into());
                        }
                        if let Some(r) = t.max_per_second {
                            v.insert("MaxNumberOfMessagesPerSecond".into(), r.into());
                        }
                        v.insert("ApproximateNumberOfMessagesMoved".into(), t.moved.into());
                        v.insert("ApproximateNumberOfMessagesToMove".into(), t.to_move.into());
                        if let Some(f) = t.failure_reason {
                            v.insert("FailureReason".into(), f.into());
                        }
                        v.insert("StartedTimestamp".into(), t.started_ms.into());
                        Value::Object(v)
                    })
                    .collect();
                Ok(self.ok(json!({"Results": results}), &MOVES_OUT))
            }
        }
    }

    fn send_input(&self, i: SendIn) -> Result<SendInput, SqsError> {
        let body = i.message_body.ok_or_else(|| {
            SqsError::MissingParameter("The request must contain the parameter MessageBody.".into())
        })?;
        let delay = match i.delay_seconds {
            None => None,
            Some(d) if (0..=900).contains(&d) => Some(d as u32),
            Some(d) => {
                return Err(SqsError::invalid(format!(
                    "Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must \
                     be >= 0 and <= 900."
                )))
            }
        };
        let attrs = attrs_of(i.message_attributes)?;
        let mut trace_header = None;
        for (k, v) in i.message_system_attributes {
            if k != "AWSTraceHeader" {
                return Err(SqsError::invalid(format!(
                    "Message system attribute name '{k}' is invalid."
                )));
            }
            if v.data_type.as_deref() != Some("String") || v.string_value.is_none() {
                return Err(SqsError::invalid(
                    "Message system attribute AWSTraceHeader must be a String with a value.",
                ));
            }
            trace_header = v.string_value;
        }
        Ok(SendInput {
            body,
            attrs,
            trace_header,
            delay_seconds: delay,
            group_id: i.message_group_id,
            dedup_id: i.message_deduplication_id,
            sender_id: self.sender_id(),
        })
    }
}

/// Re-encode awsQuery params as a form (the decoded pairs from [`Call`]).
fn form_pairs(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn attrs_of(given: BTreeMap<String, MavIn>) -> Result<BTreeMap<String, MsgAttr>, SqsError> {
    let mut out = BTreeMap::new();
    for (k, v) in given {
        let data_type = v.data_type.clone().ok_or_else(|| {
            SqsError::invalid(format!(
                "The message attribute '{k}' must contain non-empty message attribute type."
            ))
        })?;
        if !v.string_list_values.is_empty() || !v.binary_list_values.is_empty() {
            return Err(SqsError::invalid(format!(
                "Message attribute list values in '{k}' are not supported."
            )));
        }
        let binary_value = match v.binary_value {
            Some(b) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|_| {
                        SqsError::invalid(format!(
                            "The message attribute '{k}' has an invalid binary value."
                        ))
                    })?,
            ),
            None => None,
        };
        out.insert(
            k,
            MsgAttr {
                data_type,
                string_value: v.string_value,
                binary_value,
            },
        );
    }
    Ok(out)
}

fn check_batch<'a>(ids: impl Iterator<Item = Option<&'a str>>) -> Result<(), AwsError> {
    let ids: Vec<Option<&str>> = ids.collect();
    if ids.is_empty() {
        return Err(SqsError::EmptyBatchRequest.into());
    }
    if ids.len() > 10 {
        return Err(SqsError::TooManyEntriesInBatchRequest(ids.len()).into());
    }
    let mut seen = BTreeSet::new();
    for id in ids {
        let id = id.ok_or_else(|| missing("Id"))?;
        let ok = !id.is_empty()
            && id.len() <= 80
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(SqsError::InvalidBatchEntryId.into());
        }
        if !seen.insert(id) {
            return Err(SqsError::BatchEntryIdsNotDistinct(id.to_string()).into());
        }
    }
    Ok(())
}

fn batch_error(id: &str, e: &AwsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": !e.status.is_server_error(),
        "Code": e.query_code.as_deref().unwrap_or(&e.code),
        "Message": e.message,
    })
}

/// Page sorted names: `NextToken` is the last name of the page, base64.
fn paginate(
    names: Vec<String>,
    token: Option<&str>,
    max: Option<u32>,
) -> Result<(Vec<String>, Option<String>), AwsError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let after = match token {
        Some(t) if !t.is_empty() => Some(
            b64.decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SqsError::invalid("Invalid NextToken value."))?,
        ),
        _ => None,
    };
    let rest: Vec<String> = names
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let Some(max) = max else {
        return Ok((rest.into_iter().take(1000).collect(), None));
    };
    let more = rest.len() > max as usize;
    let page: Vec<String> = rest.into_iter().take(max as usize).collect();
    let next = if more {
        page.last().map(|l| b64.encode(l))
    } else {
        None
    };
    Ok((page, next))
}

/// Whether a message attribute name is selected by `MessageAttributeNames`
/// (`All`, `.*`, `prefix.*`, or the exact name).
fn selected(name: &str, wanted: &[String]) -> bool {
    wanted.iter().any(|w| {
        w == "All"
            || w == ".*"
            || w == name
            || w.strip_suffix(".*")
                .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
    })
}

/// The wire form of a message attribute value.
pub fn attr_json(a: &MsgAttr) -> Value {
    let mut v = Map::new();
    if let Some(s) = &a.string_value {
        v.insert("StringValue".into(), s.clone().into());
    }
    if let Some(b) = &a.binary_value {
        v.insert(
            "BinaryValue".into(),
            base64::engine::general_purpose::STANDARD.encode(b).into(),
        );
    }
    v.insert("DataType".into(), a.data_type.clone().into());
    Value::Object(v)
}

fn message_json(m: Received, system_names: &BTreeSet<String>, attr_names: &[String]) -> Value {
    let mut v = Map::new();
    v.insert("MessageId".into(), m.message_id.into());
    v.insert("ReceiptHandle".into(), m.receipt_handle.into());
    v.insert("MD5OfBody".into(), m.md5_body.into());
    v.insert("Body".into(), m.body.into());
    let all = system_names.contains("All");
    let sys: BTreeMap<String, String> = m
        .system
        .into_iter()
        .filter(|(k, _)| all || system_names.contains(k))
        .collect();
    if !sys.is_empty() {
        v.insert("Attributes".into(), json!(sys));
    }
    let attrs: BTreeMap<String, MsgAttr> = m
        .attrs
        .into_iter()
        .filter(|(k, _)| selected(k, attr_names))
        .collect();
    if let Some(md5) = crate::model::md5_of_attributes(&attrs) {
        v.insert("MD5OfMessageAttributes".into(), md5.into());
        let map: Map<String, Value> = attrs
            .iter()
            .map(|(k, a)| (k.clone(), attr_json(a)))
            .collect();
        v.insert("MessageAttributes".into(), Value::Object(map));
    }
    Value::Object(v)
}

/// The name of the queue an SQS ARN names, if it exists.
pub fn existing_queue(sqs: &Sqs, arn: &str) -> Option<String> {
    name_of_arn(arn)
        .filter(|n| sqs.queue_exists(n))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_in_every_form() {
        for u in [
            "http://127.0.0.1:4566/123456789012/orders",
            "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
            "http://sqs.us-east-1.localhost:4566/123456789012/orders/",
            "/123456789012/orders",
            "orders",
        ] {
            assert_eq!(queue_name_of_url(u).as_deref(), Some("orders"), "{u}");
        }
        assert_eq!(queue_name_of_url("http://host:1"), None);
    }

    #[test]
    fn attribute_name_selection() {
        let w = vec!["foo.*".to_string(), "bar".to_string()];
        assert!(selected("foo.x", &w));
        assert!(!selected("foox", &w));
        assert!(selected("bar", &w));
        assert!(!selected("baz", &w));
        assert!(selected("baz", &["All".to_string()]));
        assert!(!selected("baz", &[]));
    }

    #[test]
    fn pages_by_name() {
        let names: Vec<String> = (0..5).map(|i| format!("q{i}")).collect();
        let (p, t) = paginate(names.clone(), None, Some(2)).unwrap();
        assert_eq!(p, ["q0", "q1"]);
        let (p, t) = paginate(names.clone(), t.as_deref(), Some(2)).unwrap();
        assert_eq!(p, ["q2", "q3"]);
        let (p, t) = paginate(names, t.as_deref(), Some(2)).unwrap();
        assert_eq!(p, ["q4"]);
        assert!(t.is_none());
    }
}

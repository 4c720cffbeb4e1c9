//! awsQuery: form parameters in (`Action=SendMessage&Version=2012-11-05&…`,
//! the body of a form POST or the query string of a GET), XML out.
//!
//! Parameters are flat keys; a [`Shape`] says how they nest:
//! `Tags.member.1.Key` (a list of structures), `AttributeNames.member.1` (a list
//! of strings), `Attribute.1.Name`/`Attribute.1.Value` (a flattened map with its
//! own key/value names), `Attributes.entry.1.key` (a map),
//! `MessageAttribute.1.Value.StringValue` (a map of structures).
//! [`QueryParams::decode`] turns them into a `serde_json::Value` keyed by the
//! model's member names, which the service reads with its own serde type
//! ([`QueryParams::deserialize`]). List items come in index order; an empty
//! list is sent as the bare key with an empty value (`AttributeNames=`).
//!
//! Answers are `<OpResponse xmlns="ns"><OpResult>…</OpResult>
//! <ResponseMetadata><RequestId>…</RequestId></ResponseMetadata></OpResponse>`
//! ([`query_response`], [`query_response_value`]).

use crate::xml::XmlWriter;
use crate::{AwsError, ServiceMeta, Shape};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The decoded parameters of an awsQuery request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams {
    params: BTreeMap<String, String>,
}

fn invalid(message: String) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "InvalidParameterValue", message)
}

impl QueryParams {
    /// Parse `application/x-www-form-urlencoded` text (a body or a query
    /// string). A key given twice keeps its last value.
    pub fn parse(form: &[u8]) -> Self {
        Self {
            params: form_urlencoded::parse(form).into_owned().collect(),
        }
    }

    /// The parameters of a request: the body of a POST (awsQuery clients send
    /// `application/x-www-form-urlencoded`), merged over the query string (which
    /// a GET carries them in).
    pub fn from_request(
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let mut params = Self::parse(uri.query().unwrap_or("").as_bytes());
        let form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if *method != Method::GET && (form || !body.is_empty()) {
            params.params.extend(Self::parse(body).params);
        }
        params
    }

    /// `Action`.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// `Version`.
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Every parameter, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The parameters as a JSON object keyed by member name, nested by `shape`
    /// (a structure). Plain `Key=value` parameters the shape does not list are
    /// kept as strings; `Action`, `Version` and unlisted dotted keys are not.
    /// A number or boolean member that does not parse is `InvalidParameterValue`.
    pub fn decode(&self, shape: &Shape) -> Result<Value, AwsError> {
        let mut obj = match self.value("", shape)? {
            Some(Value::Object(obj)) => obj,
            _ => Map::new(),
        };
        for (k, v) in &self.params {
            if k.contains('.') || k == "Action" || k == "Version" {
                continue;
            }
            if shape.member(k).is_none() && !obj.contains_key(k) {
                let listed =
                    matches!(shape, Shape::Structure(ms) if ms.iter().any(|m| m.wire == k));
                if !listed {
                    obj.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
        Ok(Value::Object(obj))
    }

    /// [`Self::decode`], then into the operation's serde type. A required member
    /// missing is `MissingParameter`, another mismatch `InvalidParameterValue`.
    pub fn deserialize<T: DeserializeOwned>(&self, shape: &Shape) -> Result<T, AwsError> {
        let value = self.decode(shape)?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if let Some(field) = inner
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                let name = if path == "." {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
                AwsError::new(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    format!("The request must contain the parameter {name}."),
                )
            } else {
                invalid(format!("Invalid value for the parameter {path}: {inner}."))
            }
        })
    }

    fn key(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    }

    /// The 1-based indices `N` of the keys `prefix.N` and `prefix.N.…`.
    fn indices(&self, prefix: &str) -> BTreeSet<u32> {
        let start = format!("{prefix}.");
        self.params
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .filter_map(|(k, _)| {
                let rest = &k[start.len()..];
                let n = rest.split('.').next().unwrap_or("");
                n.parse::<u32>().ok().filter(|&n| n > 0)
            })
            .collect()
    }

    fn value(&self, key: &str, shape: &Shape) -> Result<Option<Value>, AwsError> {
        let scalar = |parse: fn(&str) -> Option<Value>, what: &str| match self.get(key) {
            None => Ok(None),
            Some(raw) => parse(raw.trim()).map(Some).ok_or_else(|| {
                invalid(format!(
                    "Value {raw} for parameter {key} is invalid. Reason: must be {what}."
                ))
            }),
        };
        match shape {
            Shape::String => Ok(self.get(key).map(|v| Value::String(v.to_owned()))),
            Shape::Integer => scalar(|s| s.parse::<i64>().ok().map(Value::from), "an integer"),
            Shape::Float => scalar(
                |s| {
                    s.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                },
                "a number",
            ),
            Shape::Boolean => scalar(
                |s| match s.to_ascii_lowercase().as_str() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    _ => None,
                },
                "true or false",
            ),
            Shape::Structure(members) => {
                let mut obj = Map::new();
                for m in members.iter() {
                    if let Some(v) = self.value(&Self::key(key, m.wire), m.shape)? {
                        obj.insert(m.name.to_owned(), v);
                    }
                }
                Ok((!obj.is_empty() || key.is_empty()).then_some(Value::Object(obj)))
            }
            Shape::List {
                member,
                member_name,
                flattened,
            } => {
                let items = if *flattened {
                    key.to_owned()
                } else {
                    Self::key(key, member_name)
                };
                let indices = self.indices(&items);
                if indices.is_empty() {
                    return Ok((self.get(key) == Some("")).then(|| Value::Array(Vec::new())));
                }
                let mut out = Vec::with_capacity(indices.len());
                for n in indices {
                    if let Some(v) = self.value(&format!("{items}.{n}"), member)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Shape::Map {
                key: key_name,
                value: value_name,
                value_shape,
                flattened,
            } => {
                let entries = if *flattened {
                    key.to_owned()
                } else {
                    Self::key(key, "entry")
                };
                let indices = self.indices(&entries);
                if indices.is_empty() {
                    return Ok((self.get(key) == Some("")).then(|| Value::Object(Map::new())));
                }
                let mut out = Map::new();
                for n in indices {
                    let entry = format!("{entries}.{n}");
                    let Some(k) = self.get(&format!("{entry}.{key_name}")) else {
                        return Err(AwsError::new(
                            StatusCode::BAD_REQUEST,
                            "MissingParameter",
                            format!("The request must contain the parameter {entry}.{key_name}."),
                        ));
                    };
                    let v = self
                        .value(&format!("{entry}.{value_name}"), value_shape)?
                        .unwrap_or(Value::Null);
                    out.insert(k.to_owned(), v);
                }
                Ok(Some(Value::Object(out)))
            }
        }
    }
}

/// An awsQuery answer: `<{action}Response xmlns="{ns}"><{action}Result>…
/// </{action}Result><ResponseMetadata><RequestId>…</RequestId>
/// </ResponseMetadata></{action}Response>`, the result's content written by
/// `result` (`None`: an operation without output, no `Result` element).
pub fn query_response(
    meta: &ServiceMeta,
    action: &str,
    request_id: &str,
    result: Option<&dyn Fn(&mut XmlWriter)>,
) -> Response {
    let mut w = XmlWriter::new();
    let root = format!("{action}Response");
    match meta.xml_namespace {
        Some(ns) => w.start_ns(&root, ns),
        None => w.start(&root),
    };
    if let Some(result) = result {
        let name = format!("{action}Result");
        w.start(&name);
        result(&mut w);
        w.end(&name);
    }
    w.nested("ResponseMetadata", |w| {
        w.element("RequestId", request_id);
    });
    w.end(&root);
    let mut resp = (StatusCode::OK, w.finish()).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// [`query_response`] with the result's members from a serde value, written by
/// `shape` (see [`XmlWriter::value`]); timestamps should already be ISO 8601
/// strings ([`crate::timestamp::iso8601`]).
pub fn query_response_value<T: Serialize + ?Sized>(
    meta: &ServiceMeta,
    action: &str,
    request_id: &str,
    value: &T,
    shape: &Shape,
) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => query_response(
            meta,
            action,
            request_id,
            Some(&|w: &mut XmlWriter| {
                w.members(&v, Some(shape));
            }),
        ),
        Err(e) => {
            tracing::error!(error = %e, action, "query result not serializable");
            let err = AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "The response could not be written.",
            );
            crate::error_response(crate::Protocol::AwsQuery, meta, &err, request_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Member, Protocol};
    use serde::Deserialize;

    static MESSAGE_ATTRIBUTE_VALUE: Shape = Shape::structure(&[
        Member::new("StringValue", &Shape::String),
        Member::new("DataType", &Shape::String),
        Member::new("StringListValues", &Shape::flat_list(&Shape::String)).wire("StringListValue"),
    ]);
    static SEND_MESSAGE: Shape = Shape::structure(&[
        Member::new("DelaySeconds", &Shape::Integer),
        Member::new(
            "MessageAttributes",
            &Shape::flat_map("Name", "Value", &MESSAGE_ATTRIBUTE_VALUE),
        )
        .wire("MessageAttribute"),
    ]);

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "PascalCase")]
    struct SendMessage {
        queue_url: String,
        message_body: String,
        delay_seconds: Option<i64>,
        #[serde(default)]
        message_attributes: BTreeMap<String, MessageAttributeValue>,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct MessageAttributeValue {
        data_type: String,
        string_value: Option<String>,
        #[serde(default)]
        string_list_values: Vec<String>,
    }

    /// As botocore's query serializer writes SQS SendMessage.
    #[test]
    fn sqs_send_message_with_attributes() {
        let body = b"Action=SendMessage&Version=2012-11-05&QueueUrl=http%3A%2F%2Flocalhost%2F1%2Fq\
            &MessageBody=hi+there%26&DelaySeconds=5\
            &MessageAttribute.1.Name=color&MessageAttribute.1.Value.StringValue=blue\
            &MessageAttribute.1.Value.DataType=String\
            &MessageAttribute.2.Name=n&MessageAttribute.2.Value.DataType=Number\
            &MessageAttribute.2.Value.StringValue=7";
        let p = QueryParams::parse(body);
        assert_eq!(
            (p.action(), p.version()),
            (Some("SendMessage"), Some("2012-11-05"))
        );
        let m: SendMessage = p.deserialize(&SEND_MESSAGE).unwrap();
        assert_eq!(m.queue_url, "http://localhost/1/q");
        assert_eq!(m.message_body, "hi there&");
        assert_eq!(m.delay_seconds, Some(5));
        assert_eq!(m.message_attributes.len(), 2);
        assert_eq!(
            m.message_attributes["color"].string_value.as_deref(),
            Some("blue")
        );
        assert_eq!(m.message_attributes["n"].data_type, "Number");

        let bad = QueryParams::parse(b"QueueUrl=q&MessageBody=b&DelaySeconds=soon");
        let e = bad.deserialize::<SendMessage>(&SEND_MESSAGE).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(e.message.contains("DelaySeconds"), "{}", e.message);
        let e = QueryParams::parse(b"QueueUrl=q")
            .deserialize::<SendMessage>(&SEND_MESSAGE)
            .unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.message.as_str()),
            (
                "MissingParameter",
                "The request must contain the parameter MessageBody."
            )
        );
    }

    static TAG: Shape = Shape::structure(&[
        Member::new("Key", &Shape::String),
        Member::new("Value", &Shape::String),
    ]);
    static CREATE_TOPIC: Shape = Shape::structure(&[
        Member::new("Attributes", &Shape::map(&Shape::String)),
        Member::new("Tags", &Shape::list(&TAG)),
        Member::new("AttributeNames", &Shape::list(&Shape::String)),
        Member::new("Fifo", &Shape::Boolean),
        Member::new("Ratio", &Shape::Float),
    ]);

    #[test]
    fn members_entries_and_order() {
        // Indices out of order and past 9 (sorted numerically, not as text).
        let p = QueryParams::parse(
            b"Action=CreateTopic&Name=t\
              &Attributes.entry.1.key=DisplayName&Attributes.entry.1.value=Hi\
              &Tags.member.10.Key=k10&Tags.member.10.Value=v10\
              &Tags.member.2.Key=k2&Tags.member.2.Value=v2\
              &AttributeNames=&Fifo=TRUE&Ratio=0.5&Unlisted.1.Thing=x",
        );
        let v = p.decode(&CREATE_TOPIC).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "Name": "t",
                "Attributes": {"DisplayName": "Hi"},
                "Tags": [{"Key": "k2", "Value": "v2"}, {"Key": "k10", "Value": "v10"}],
                "AttributeNames": [],
                "Fifo": true,
                "Ratio": 0.5,
            })
        );
        let e = QueryParams::parse(b"Fifo=yes")
            .decode(&CREATE_TOPIC)
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        let e = QueryParams::parse(b"Attributes.entry.1.value=x")
            .decode(&CREATE_TOPIC)
            .unwrap_err();
        assert_eq!(e.code, "MissingParameter");
    }

    #[test]
    fn get_requests_read_the_query_string_and_posts_the_body() {
        let uri: http::Uri = "/?Action=ListQueues&Version=2012-11-05".parse().unwrap();
        let p = QueryParams::from_request(&Method::GET, &uri, &HeaderMap::new(), b"");
        assert_eq!(p.action(), Some("ListQueues"));
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        let p =
            QueryParams::from_request(&Method::POST, &"/".parse().unwrap(), &h, b"Action=GetUser");
        assert_eq!(p.action(), Some("GetUser"));
        assert_eq!(p.iter().count(), 1);
    }

    const SQS: ServiceMeta = ServiceMeta {
        name: "sqs",
        signing_name: "sqs",
        endpoint_prefix: "sqs",
        api_version: "2012-11-05",
        protocol: Protocol::AwsJson10,
        protocols: &[Protocol::AwsJson10, Protocol::AwsQuery],
        target_prefix: Some("AmazonSQS"),
        xml_namespace: Some("http://queue.amazonaws.com/doc/2012-11-05/"),
        query_compatible: true,
    };

    static RECEIVE_RESULT: Shape =
        Shape::structure(&[Member::new("Messages", &Shape::flat_list(&MESSAGE)).wire("Message")]);
    static MESSAGE: Shape = Shape::structure(&[Member::new(
        "Attributes",
        &Shape::flat_map("Name", "Value", &Shape::String),
    )
    .wire("Attribute")]);

    async fn body(r: Response) -> String {
        String::from_utf8(
            axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn responses_wrap_result_and_request_id() {
        let v = serde_json::json!({"Messages": [
            {"MessageId": "m1", "Body": "<b>", "Attributes": {"SenderId": "s"}},
        ]});
        let r = query_response_value(&SQS, "ReceiveMessage", "rid-9", &v, &RECEIVE_RESULT);
        assert_eq!(r.headers()["content-type"], "text/xml");
        assert_eq!(
            body(r).await,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ReceiveMessageResponse \
             xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><ReceiveMessageResult>\
             <Message><Attribute><Name>SenderId</Name><Value>s</Value></Attribute>\
             <Body>&lt;b&gt;</Body><MessageId>m1</MessageId></Message></ReceiveMessageResult>\
             <ResponseMetadata><RequestId>rid-9</RequestId></ResponseMetadata>\
             </ReceiveMessageResponse>"
        );
        let r = query_response(&SQS, "DeleteQueue", "rid-1", None);
        assert_eq!(
            body(r).await,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteQueueResponse \
             xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><ResponseMetadata>\
             <RequestId>rid-1</RequestId></ResponseMetadata></DeleteQueueResponse>"
        );
    }
}

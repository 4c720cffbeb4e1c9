//! The queue's data model, independent of wire and storage: queue attributes with
//! SQS's names, defaults and limits, messages and their typed attributes, and the
//! MD5 digests SQS answers with.

use crate::error::SqsError;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most a message may hold when the queue does not say less (SQS's
/// `MaximumMessageSize` default, 256 KiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 262_144;
/// The largest `MaximumMessageSize` a queue may set (SQS raised it to 1 MiB).
pub const MAX_MESSAGE_SIZE_LIMIT: u32 = 1_048_576;
/// FIFO deduplication interval.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A typed message attribute (`DataType` `String`, `Number`, `Binary`, with an
/// optional `.custom` suffix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgAttr {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// Raw bytes of a `Binary` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<Vec<u8>>,
}

impl MsgAttr {
    pub fn is_binary(&self) -> bool {
        self.data_type.starts_with("Binary")
    }

    /// Bytes the attribute counts against the message size limit.
    pub fn size(&self, name: &str) -> usize {
        name.len()
            + self.data_type.len()
            + self.string_value.as_ref().map_or(0, String::len)
            + self.binary_value.as_ref().map_or(0, Vec::len)
    }
}

/// `MD5OfMessageBody`.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// `MD5OfMessageAttributes` (and `MD5OfMessageSystemAttributes`), as SQS computes
/// it: for each attribute by name, the name, the data type (each as a 4-byte
/// big-endian length then UTF-8), a transport byte (1 string, 2 binary) and the
/// value (length-prefixed). `None` when there are no attributes.
pub fn md5_of_attributes(attrs: &BTreeMap<String, MsgAttr>) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    fn put(h: &mut Md5, b: &[u8]) {
        h.update((b.len() as u32).to_be_bytes());
        h.update(b);
    }
    let mut h = Md5::new();
    for (name, a) in attrs {
        put(&mut h, name.as_bytes());
        put(&mut h, a.data_type.as_bytes());
        if a.is_binary() {
            h.update([2u8]);
            let v = a.binary_value.as_deref().unwrap_or_default();
            h.update((v.len() as u32).to_be_bytes());
            h.update(v);
        } else {
            h.update([1u8]);
            let v = a.string_value.as_deref().unwrap_or_default().as_bytes();
            h.update((v.len() as u32).to_be_bytes());
            h.update(v);
        }
    }
    Some(hex::encode(h.finalize()))
}

/// Whether text holds only the characters SQS accepts in a message:
/// `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`.
pub fn valid_message_text(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

/// Check the message attributes of a send: at most 10, valid names, a known data
/// type, a value that fits the type.
pub fn validate_attributes(attrs: &BTreeMap<String, MsgAttr>) -> Result<(), SqsError> {
    if attrs.len() > 10 {
        return Err(SqsError::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [10].",
            attrs.len()
        )));
    }
    for (name, a) in attrs {
        let name_ok = !name.is_empty()
            && name.len() <= 256
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !name.to_ascii_lowercase().starts_with("aws.")
            && !name.to_ascii_lowercase().starts_with("amazon.");
        if !name_ok {
            return Err(SqsError::invalid(format!(
                "Message (user) attribute '{name}' must contain a non-empty attribute name, \
                 and can contain only alphanumerics, hyphens, underscores and periods."
            )));
        }
        let base = a.data_type.split('.').next().unwrap_or("");
        if !matches!(base, "String" | "Number" | "Binary") || a.data_type.len() > 256 {
            return Err(SqsError::invalid(format!(
                "The type of message (user) attribute '{name}' is invalid. You must use only \
                 the following supported type prefixes: Binary, Number, String."
            )));
        }
        let has_value = if base == "Binary" {
            a.binary_value.as_ref().is_some_and(|v| !v.is_empty())
        } else {
            a.string_value.as_ref().is_some_and(|v| !v.is_empty())
        };
        if !has_value {
            return Err(SqsError::invalid(format!(
                "Message (user) attribute '{name}' must contain a non-empty message attribute \
                 value for message attribute type '{base}'."
            )));
        }
        if base == "Number" {
            let v = a.string_value.as_deref().unwrap_or("");
            if v.parse::<f64>().is_err() {
                return Err(SqsError::invalid(format!(
                    "Can't cast the value of message (user) attribute '{name}' to a number."
                )));
            }
        }
        if let Some(v) = &a.string_value {
            if !valid_message_text(v) {
                return Err(SqsError::InvalidMessageContents(
                    "Invalid binary character in message attribute value".into(),
                ));
            }
        }
    }
    Ok(())
}

/// A queue's settable attributes, parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueAttrs {
    pub delay_seconds: u32,
    pub maximum_message_size: u32,
    pub message_retention_period: u32,
    pub receive_message_wait_time_seconds: u32,
    pub visibility_timeout: u32,
    /// Kept as given (`{"deadLetterTargetArn": …, "maxReceiveCount": …}`).
    pub redrive_policy: Option<String>,
    pub redrive_allow_policy: Option<String>,
    pub policy: Option<String>,
    pub kms_master_key_id: Option<String>,
    pub kms_data_key_reuse_period_seconds: Option<u32>,
    pub sqs_managed_sse_enabled: bool,
    pub fifo_queue: bool,
    pub content_based_deduplication: bool,
    /// `messageGroup` or `queue`.
    pub deduplication_scope: Option<String>,
    /// `perQueue` or `perMessageGroupId`.
    pub fifo_throughput_limit: Option<String>,
}

impl Default for QueueAttrs {
    fn default() -> Self {
        Self {
            delay_seconds: 0,
            maximum_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            message_retention_period: 345_600,
            receive_message_wait_time_seconds: 0,
            visibility_timeout: 30,
            redrive_policy: None,
            redrive_allow_policy: None,
            policy: None,
            kms_master_key_id: None,
            kms_data_key_reuse_period_seconds: None,
            sqs_managed_sse_enabled: true,
            fifo_queue: false,
            content_based_deduplication: false,
            deduplication_scope: None,
            fifo_throughput_limit: None,
        }
    }
}

/// A queue's parsed `RedrivePolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub dead_letter_target_arn: String,
    pub max_receive_count: u32,
}

/// The attribute names `GetQueueAttributes` knows.
pub const QUEUE_ATTRIBUTE_NAMES: &[&str] = &[
    "Policy",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "ApproximateNumberOfMessagesDelayed",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "RedriveAllowPolicy",
    "SqsManagedSseEnabled",
];

fn int_in(name: &str, v: &str, lo: u32, hi: u32) -> Result<u32, SqsError> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| {
            SqsError::InvalidAttributeValue(format!("Invalid value for the parameter {name}."))
        })
}

fn boolean(name: &str, v: &str) -> Result<bool, SqsError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(SqsError::InvalidAttributeValue(format!(
            "Invalid value for the parameter {name}."
        ))),
    }
}

impl QueueAttrs {
    /// Apply `CreateQueue`/`SetQueueAttributes` attributes. `creating` allows
    /// `FifoQueue` (which cannot change afterwards).
    pub fn apply(
        &mut self,
        given: &BTreeMap<String, String>,
        creating: bool,
    ) -> Result<(), SqsError> {
        for (k, v) in given {
            match k.as_str() {
                "DelaySeconds" => self.delay_seconds = int_in(k, v, 0, 900)?,
                "MaximumMessageSize" => {
                    self.maximum_message_size = int_in(k, v, 1024, MAX_MESSAGE_SIZE_LIMIT)?
                }
                "MessageRetentionPeriod" => {
                    self.message_retention_period = int_in(k, v, 60, 1_209_600)?
                }
                "ReceiveMessageWaitTimeSeconds" => {
                    self.receive_message_wait_time_seconds = int_in(k, v, 0, 20)?
                }
                "VisibilityTimeout" => self.visibility_timeout = int_in(k, v, 0, 43_200)?,
                "RedrivePolicy" => {
                    self.redrive_policy = if v.is_empty() {
                        None
                    } else {
                        parse_redrive(v)?;
                        Some(v.clone())
                    }
                }
                "RedriveAllowPolicy" => {
                    self.redrive_allow_policy = if v.is_empty() {
                        None
                    } else {
                        parse_redrive_allow(v)?;
                        Some(v.clone())
                    }
                }
                "Policy" => {
                    if !v.is_empty() && serde_json::from_str::<serde_json::Value>(v).is_err() {
                        return Err(SqsError::InvalidAttributeValue(
                            "Invalid value for the parameter Policy.".into(),
                        ));
                    }
                    self.policy = (!v.is_empty()).then(|| v.clone());
                }
                "KmsMasterKeyId" => self.kms_master_key_id = (!v.is_empty()).then(|| v.clone()),
                "KmsDataKeyReusePeriodSeconds" => {
                    self.kms_data_key_reuse_period_seconds = Some(int_in(k, v, 60, 86_400)?)
                }
                "SqsManagedSseEnabled" => self.sqs_managed_sse_enabled = boolean(k, v)?,
                "FifoQueue" => {
                    let fifo = boolean(k, v)?;
                    if !creating {
                        if fifo != self.fifo_queue {
                            return Err(SqsError::InvalidAttributeName(
                                "Unknown Attribute FifoQueue.".into(),
                            ));
                        }
                    } else {
                        self.fifo_queue = fifo;
                    }
                }
                "ContentBasedDeduplication" => self.content_based_deduplication = boolean(k, v)?,
                "DeduplicationScope" => {
                    if !matches!(v.as_str(), "messageGroup" | "queue") {
                        return Err(SqsError::InvalidAttributeValue(format!(
                            "Invalid value for the parameter {k}."
                        )));
                    }
                    self.deduplication_scope = Some(v.clone());
                }
                "FifoThroughputLimit" => {
                    if !matches!(v.as_str(), "perQueue" | "perMessageGroupId") {
                        return Err(SqsError::InvalidAttributeValue(format!(
                            "Invalid value for the parameter {k}."
                        )));
                    }
                    self.fifo_throughput_limit = Some(v.clone());
                }
                _ => {
                    return Err(SqsError::InvalidAttributeName(format!(
                        "Unknown Attribute {k}."
                    )))
                }
            }
        }
        let fifo_only = [
            "ContentBasedDeduplication",
            "DeduplicationScope",
            "FifoThroughputLimit",
        ];
        if !self.fifo_queue {
            if let Some(k) = fifo_only.iter().find(|k| given.contains_key(**k)) {
                return Err(SqsError::InvalidAttributeName(format!(
                    "Unknown Attribute {k}."
                )));
            }
        }
        Ok(())
    }

    pub fn redrive(&self) -> Option<Redrive> {
        self.redrive_policy
            .as_deref()
            .and_then(|p| parse_redrive(p).ok())
    }

    /// The settable attributes' values as `GetQueueAttributes` shows them.
    pub fn settable(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert("DelaySeconds", self.delay_seconds.to_string());
        m.insert("MaximumMessageSize", self.maximum_message_size.to_string());
        m.insert(
            "MessageRetentionPeriod",
            self.message_retention_period.to_string(),
        );
        m.insert(
            "ReceiveMessageWaitTimeSeconds",
            self.receive_message_wait_time_seconds.to_string(),
        );
        m.insert("VisibilityTimeout", self.visibility_timeout.to_string());
        m.insert(
            "SqsManagedSseEnabled",
            self.sqs_managed_sse_enabled.to_string(),
        );
        if let Some(v) = &self.redrive_policy {
            m.insert("RedrivePolicy", v.clone());
        }
        if let Some(v) = &self.redrive_allow_policy {
            m.insert("RedriveAllowPolicy", v.clone());
        }
        if let Some(v) = &self.policy {
            m.insert("Policy", v.clone());
        }
        if let Some(v) = &self.kms_master_key_id {
            m.insert("KmsMasterKeyId", v.clone());
            m.insert(
                "KmsDataKeyReusePeriodSeconds",
                self.kms_data_key_reuse_period_seconds
                    .unwrap_or(300)
                    .to_string(),
            );
        }
        if self.fifo_queue {
            m.insert("FifoQueue", "true".into());
            m.insert(
                "ContentBasedDeduplication",
                self.content_based_deduplication.to_string(),
            );
            m.insert(
                "DeduplicationScope",
                self.deduplication_scope
                    .clone()
                    .unwrap_or_else(|| "queue".into()),
            );
            m.insert(
                "FifoThroughputLimit",
                self.fifo_throughput_limit
                    .clone()
                    .unwrap_or_else(|| "perQueue".into()),
            );
        }
        m
    }
}

/// Parse a `RedrivePolicy` (SQS accepts `maxReceiveCount` as a number or a string).
pub fn parse_redrive(v: &str) -> Result<Redrive, SqsError> {
    let bad = || {
        SqsError::InvalidAttributeValue(format!(
            "Value {v} for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a \
             valid JSON map with deadLetterTargetArn and maxReceiveCount."
        ))
    };
    let j: serde_json::Value = serde_json::from_str(v).map_err(|_| bad())?;
    let arn = j
        .get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .ok_or_else(bad)?;
    let n = match j.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    }
    .filter(|n| (1..=1000).contains(n))
    .ok_or_else(|| {
        SqsError::InvalidAttributeValue(format!(
            "Value {v} for parameter RedrivePolicy is invalid. Reason: Invalid value for \
             maxReceiveCount: must be an integer from 1 to 1000."
        ))
    })?;
    Ok(Redrive {
        dead_letter_target_arn: arn.to_string(),
        max_receive_count: n as u32,
    })
}

/// A parsed `RedriveAllowPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveAllow {
    AllowAll,
    DenyAll,
    ByQueue(Vec<String>),
}

pub fn parse_redrive_allow(v: &str) -> Result<RedriveAllow, SqsError> {
    let bad = |why: &str| {
        SqsError::InvalidAttributeValue(format!(
            "Value {v} for parameter RedriveAllowPolicy is invalid. Reason: {why}"
        ))
    };
    let j: serde_json::Value = serde_json::from_str(v).map_err(|_| bad("Invalid JSON."))?;
    let perm = j
        .get("redrivePermission")
        .and_then(|p| p.as_str())
        .ok_or_else(|| bad("redrivePermission is required."))?;
    let arns: Vec<String> = j
        .get("sourceQueueArns")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match perm {
        "allowAll" => Ok(RedriveAllow::AllowAll),
        "denyAll" => Ok(RedriveAllow::DenyAll),
        "byQueue" => {
            if arns.is_empty() || arns.len() > 10 {
                return Err(bad(
                    "sourceQueueArns must list 1 to 10 queue ARNs when redrivePermission is byQueue.",
                ));
            }
            Ok(RedriveAllow::ByQueue(arns))
        }
        _ => Err(bad(
            "redrivePermission must be allowAll, denyAll or byQueue.",
        )),
    }
}

/// Whether a queue name is valid (1–80 alphanumerics, `-`, `_`; a FIFO queue's
/// name ends in `.fifo`, counted in the 80).
pub fn valid_queue_name(name: &str, fifo: bool) -> bool {
    let base = if fifo {
        match name.strip_suffix(".fifo") {
            Some(b) => b,
            None => return false,
        }
    } else {
        name
    };
    !base.is_empty()
        && name.len() <= 80
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_attributes_matches_aws() {
        // Computed with botocore's algorithm (the one the SDKs check against).
        let mut attrs = BTreeMap::new();
        attrs.insert(
            "color".to_string(),
            MsgAttr {
                data_type: "String".into(),
                string_value: Some("blue".into()),
                binary_value: None,
            },
        );
        let mut expected = Md5::new();
        for part in [&b"color"[..], b"String"] {
            expected.update((part.len() as u32).to_be_bytes());
            expected.update(part);
        }
        expected.update([1u8]);
        expected.update(4u32.to_be_bytes());
        expected.update(b"blue");
        assert_eq!(
            md5_of_attributes(&attrs).unwrap(),
            hex::encode(expected.finalize())
        );
        assert_eq!(md5_of_attributes(&BTreeMap::new()), None);
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attributes_are_checked() {
        let mut q = QueueAttrs::default();
        let given = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(q.apply(&given("VisibilityTimeout", "60"), false).is_ok());
        assert_eq!(q.visibility_timeout, 60);
        assert!(matches!(
            q.apply(&given("VisibilityTimeout", "99999"), false),
            Err(SqsError::InvalidAttributeValue(_))
        ));
        assert!(matches!(
            q.apply(&given("Bogus", "1"), false),
            Err(SqsError::InvalidAttributeName(_))
        ));
        assert!(q
            .apply(&given("ContentBasedDeduplication", "true"), false)
            .is_err());
        let r =
            parse_redrive(r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:d","maxReceiveCount":"3"}"#)
                .unwrap();
        assert_eq!(r.max_receive_count, 3);
        assert!(parse_redrive(r#"{"maxReceiveCount":3}"#).is_err());
        assert!(valid_queue_name("orders-1_a", false));
        assert!(!valid_queue_name("orders.fifo", false));
        assert!(valid_queue_name("orders.fifo", true));
        assert!(!valid_queue_name(&"a".repeat(81), false));
        assert!(!valid_message_text("bad\u{1}"));
    }
}

//! Topics, subscriptions, message attributes and filter policies, with SNS's
//! validation rules and error messages.

use base64::Engine;
use http::StatusCode;
use nimbus_patterns::Pattern;
use nimbus_protocol::AwsError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most a message (body, subject excluded, plus attribute names, types and
/// values) may weigh.
pub const MAX_MESSAGE_BYTES: usize = 262_144;

pub fn invalid_parameter(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

pub fn invalid_value(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ParameterValueInvalid", message)
}

pub fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::NOT_FOUND, "NotFound", message)
}

pub fn internal(e: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %e, "sns storage failure");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "The request processing has failed because of an unknown error, exception or failure.",
    )
}

/// A topic.
#[derive(Debug, Clone)]
pub struct Topic {
    pub arn: String,
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

impl Topic {
    pub fn fifo(&self) -> bool {
        self.attrs.get("FifoTopic").is_some_and(|v| v == "true")
    }
    pub fn content_dedup(&self) -> bool {
        self.attrs
            .get("ContentBasedDeduplication")
            .is_some_and(|v| v == "true")
    }
    pub fn signature_version(&self) -> &str {
        self.attrs
            .get("SignatureVersion")
            .map(String::as_str)
            .unwrap_or("1")
    }
}

/// A subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub arn: String,
    pub topic_arn: String,
    pub protocol: String,
    pub endpoint: String,
    pub owner: String,
    pub attrs: BTreeMap<String, String>,
    pub confirmed: bool,
    pub token: Option<String>,
    /// The compiled `FilterPolicy`.
    pub filter: Option<Arc<Pattern>>,
}

impl Subscription {
    pub fn raw(&self) -> bool {
        self.attrs
            .get("RawMessageDelivery")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
    pub fn body_scope(&self) -> bool {
        self.attrs
            .get("FilterPolicyScope")
            .is_some_and(|v| v == "MessageBody")
    }
    /// The `deadLetterTargetArn` of the `RedrivePolicy`.
    pub fn dead_letter_arn(&self) -> Option<String> {
        let rp: Value = serde_json::from_str(self.attrs.get("RedrivePolicy")?).ok()?;
        rp.get("deadLetterTargetArn")?.as_str().map(str::to_string)
    }
    /// Whether a message with these attributes and body passes the filter policy.
    pub fn accepts(&self, msg: &StoredMessage) -> bool {
        let Some(f) = &self.filter else { return true };
        if self.body_scope() {
            match serde_json::from_str::<Value>(&msg.message) {
                Ok(v @ Value::Object(_)) => f.matches(&v),
                _ => false,
            }
        } else {
            f.matches(&attributes_as_event(&msg.attributes))
        }
    }
}

/// A message attribute as stored (binary values base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

impl Attr {
    /// The value as the envelope's `MessageAttributes` carry it.
    pub fn value(&self) -> &str {
        self.string_value
            .as_deref()
            .or(self.binary_value.as_deref())
            .unwrap_or("")
    }
    /// The base type (`String`, `Number`, `Binary`, `String.Array`).
    pub fn base_type(&self) -> &str {
        base_type(&self.data_type)
    }
}

fn base_type(t: &str) -> &str {
    for b in ["String.Array", "String", "Number", "Binary"] {
        if t == b || t.strip_prefix(b).is_some_and(|r| r.starts_with('.')) {
            return b;
        }
    }
    t
}

/// A message as the outbox keeps it until every delivery is done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub topic_arn: String,
    /// `Notification` or `SubscriptionConfirmation`.
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub structure_json: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, Attr>,
    pub timestamp: String,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub dedup_id: Option<String>,
    #[serde(default)]
    pub sequence_number: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub signature_version: String,
}

impl StoredMessage {
    /// The body for a protocol: with `MessageStructure: json`, the protocol's
    /// entry or `default`.
    pub fn body_for(&self, protocol: &str) -> String {
        if !self.structure_json {
            return self.message.clone();
        }
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&self.message) else {
            return self.message.clone();
        };
        let pick = m.get(protocol).or_else(|| m.get("default"));
        match pick {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }
    }
}

/// Message attributes as the event a `MessageAttributes`-scoped filter policy
/// matches: strings, numbers, and `String.Array`s as arrays; binary attributes
/// are not matched (SNS ignores them).
pub fn attributes_as_event(attrs: &BTreeMap<String, Attr>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, a) in attrs {
        let v = match a.base_type() {
            "String" => Value::String(a.value().to_string()),
            "Number" => match a.value().parse::<f64>() {
                Ok(n) => serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                Err(_) => continue,
            },
            "String.Array" => match serde_json::from_str::<Value>(a.value()) {
                Ok(v @ Value::Array(_)) => v,
                _ => continue,
            },
            _ => continue,
        };
        m.insert(k.clone(), v);
    }
    Value::Object(m)
}

fn valid_attr_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 256
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !n.starts_with('.')
        && !n.ends_with('.')
        && !n.contains("..")
        && !n.to_ascii_lowercase().starts_with("aws.")
        && !n.to_ascii_lowercase().starts_with("amazon.")
}

/// Validate message attributes as SNS does.
pub fn validate_attributes(attrs: &BTreeMap<String, Attr>) -> Result<(), AwsError> {
    if attrs.len() > 10 {
        return Err(invalid_value(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [10].",
            attrs.len()
        )));
    }
    for (name, a) in attrs {
        if !valid_attr_name(name) {
            return Err(invalid_value(format!(
                "The message attribute name '{name}' is invalid. Attribute name can contain \
                 A-Z, a-z, 0-9, underscore(_), hyphen(-), and period (.) characters."
            )));
        }
        let base = a.base_type();
        if !matches!(base, "String" | "Number" | "Binary" | "String.Array") {
            return Err(invalid_value(format!(
                "The message attribute '{name}' has an invalid message attribute type, the set \
                 of supported type prefixes is Binary, Number, and String."
            )));
        }
        let empty = match base {
            "Binary" => a.binary_value.as_deref().is_none_or(str::is_empty),
            _ => a.string_value.as_deref().is_none_or(str::is_empty),
        };
        if empty {
            return Err(invalid_value(format!(
                "The message attribute '{name}' must contain non-empty message attribute value \
                 for message attribute type '{base}'."
            )));
        }
        match base {
            "Number" => {
                let v = a.value();
                let ok = v.parse::<f64>().is_ok_and(|n| n.is_finite());
                if !ok {
                    return Err(invalid_value(format!(
                        "Could not cast message attribute '{name}' value to number."
                    )));
                }
                let n: f64 = v.parse().unwrap_or(0.0);
                if n.abs() > 1e9 {
                    return Err(invalid_value(format!(
                        "Value {v} for parameter MessageAttributes is invalid. Reason: The \
                         message attribute '{name}' with type 'Number' has a value that is \
                         out of range. The value must be between -1.0E9 and 1.0E9."
                    )));
                }
            }
            "String.Array" => {
                let ok = matches!(
                    serde_json::from_str::<Value>(a.value()),
                    Ok(Value::Array(items)) if items.iter().all(|i| !matches!(i, Value::Array(_) | Value::Object(_)))
                );
                if !ok {
                    return Err(invalid_parameter(format!(
                        "Invalid parameter: MessageAttributes Reason: The message attribute \
                         '{name}' with type 'String.Array' has an invalid value: {}",
                        a.value()
                    )));
                }
            }
            "Binary"
                if base64::engine::general_purpose::STANDARD
                    .decode(a.value())
                    .is_err() =>
            {
                return Err(invalid_value(format!(
                    "The message attribute '{name}' has an invalid binary value."
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The size SNS counts against the 256 KiB limit.
pub fn message_size(message: &str, attrs: &BTreeMap<String, Attr>) -> usize {
    message.len()
        + attrs
            .iter()
            .map(|(k, a)| k.len() + a.data_type.len() + a.value().len())
            .sum::<usize>()
}

/// Validate and compile a `FilterPolicy`: SNS's limits and errors are the
/// pattern engine's ([`Pattern::parse_filter_policy`]: 5 keys, 150
/// combinations); the `MessageAttributes` scope also refuses nested objects.
pub fn compile_filter_policy(text: &str, body_scope: bool) -> Result<Pattern, AwsError> {
    fn flat(o: &serde_json::Map<String, Value>) -> bool {
        o.iter().all(|(k, v)| match (k.as_str(), v) {
            ("$or", Value::Array(alts)) => alts.iter().all(|a| match a {
                Value::Object(inner) => flat(inner),
                _ => true,
            }),
            (_, Value::Object(_)) => false,
            _ => true,
        })
    }
    if !body_scope {
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text) {
            if !flat(&o) {
                return Err(invalid_parameter(
                    "Invalid parameter: FilterPolicy: Filter policy scope MessageAttributes does \
                     not support nested filter policy",
                ));
            }
        }
    }
    Pattern::parse_filter_policy(text).map_err(|e| invalid_parameter(e.to_string()))
}

/// Topic names: 1–256 of `A-Za-z0-9_-`, and `.fifo` at the end of a FIFO topic's.
pub fn valid_topic_name(name: &str, fifo: bool) -> bool {
    let stem = if fifo {
        match name.strip_suffix(".fifo") {
            Some(s) => s,
            None => return false,
        }
    } else {
        name
    };
    !stem.is_empty()
        && name.len() <= 256
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The delivery policy's HTTP retry schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub num_retries: u32,
    pub no_delay: u32,
    pub min_delay_retries: u32,
    pub max_delay_retries: u32,
    pub min_delay: u32,
    pub max_delay: u32,
    pub backoff: Backoff,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    Linear,
    Arithmetic,
    Geometric,
    Exponential,
}

impl Default for RetryPolicy {
    /// SNS's default HTTP policy: 3 retries, 20 s apart.
    fn default() -> Self {
        RetryPolicy {
            num_retries: 3,
            no_delay: 0,
            min_delay_retries: 0,
            max_delay_retries: 0,
            min_delay: 20,
            max_delay: 20,
            backoff: Backoff::Linear,
        }
    }
}

impl RetryPolicy {
    /// AWS-managed endpoints (SQS, Lambda), as SNS documents it: 3 immediate
    /// retries, 2 a second apart, 10 backing off exponentially from 1 to 20 s, then
    /// 100,000 20 s apart (100,015 retries over about 23 days).
    pub const AWS_MANAGED: RetryPolicy = RetryPolicy {
        num_retries: 100_015,
        no_delay: 3,
        min_delay_retries: 2,
        max_delay_retries: 100_000,
        min_delay: 1,
        max_delay: 20,
        backoff: Backoff::Exponential,
    };

    /// Customer-managed endpoints that take no delivery policy (email, SMS, mobile
    /// push): no immediate retry, 2 ten seconds apart, 10 backing off
    /// exponentially from 10 to 600 s, then 38 ten minutes apart (50 over 6 hours).
    pub const CUSTOMER_MANAGED: RetryPolicy = RetryPolicy {
        num_retries: 50,
        no_delay: 0,
        min_delay_retries: 2,
        max_delay_retries: 38,
        min_delay: 10,
        max_delay: 600,
        backoff: Backoff::Exponential,
    };

    /// The schedule of a protocol without a delivery policy of its own.
    pub fn managed(protocol: &str) -> RetryPolicy {
        match protocol {
            "sqs" | "lambda" | "firehose" => Self::AWS_MANAGED,
            _ => Self::CUSTOMER_MANAGED,
        }
    }

    /// The retry policy of an HTTP/S subscription ([`HttpPolicy::effective`]).
    pub fn from_policies(sub: Option<&str>, topic: Option<&str>) -> RetryPolicy {
        HttpPolicy::effective(sub, topic).retry
    }

    fn from_json(p: &Value) -> RetryPolicy {
        let d = RetryPolicy::default();
        let n = |k: &str, dflt: u32| {
            p.get(k)
                .and_then(Value::as_u64)
                .map(|v| v.min(100) as u32)
                .unwrap_or(dflt)
        };
        RetryPolicy {
            num_retries: n("numRetries", d.num_retries),
            no_delay: n("numNoDelayRetries", 0),
            min_delay_retries: n("numMinDelayRetries", 0),
            max_delay_retries: n("numMaxDelayRetries", 0),
            min_delay: n("minDelayTarget", d.min_delay),
            max_delay: n("maxDelayTarget", d.max_delay),
            backoff: match p.get("backoffFunction").and_then(Value::as_str) {
                Some("arithmetic") => Backoff::Arithmetic,
                Some("geometric") => Backoff::Geometric,
                Some("exponential") => Backoff::Exponential,
                _ => Backoff::Linear,
            },
        }
    }

    /// Seconds to wait before retry `n` (1-based); `None` once retries are spent.
    pub fn delay(&self, n: u32) -> Option<u32> {
        if n > self.num_retries {
            return None;
        }
        if n <= self.no_delay {
            return Some(0);
        }
        if n <= self.no_delay + self.min_delay_retries {
            return Some(self.min_delay);
        }
        let backoff_n = self
            .num_retries
            .saturating_sub(self.no_delay + self.min_delay_retries + self.max_delay_retries);
        let k = n - self.no_delay - self.min_delay_retries;
        if k > backoff_n || backoff_n == 0 {
            return Some(self.max_delay);
        }
        let (lo, hi) = (
            self.min_delay as f64,
            self.max_delay.max(self.min_delay) as f64,
        );
        let frac = k as f64 / backoff_n as f64;
        let d = match self.backoff {
            Backoff::Linear => lo + (hi - lo) * frac,
            Backoff::Arithmetic => lo + (hi - lo) * frac * frac,
            Backoff::Geometric => lo + (hi - lo) * frac.powi(3),
            Backoff::Exponential => lo * (hi / lo.max(1.0)).powf(frac),
        };
        Some(d.round().clamp(lo, hi) as u32)
    }
}

/// The content type SNS posts with when no `requestPolicy` names one.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";

/// What governs deliveries to an HTTP/S subscription: its `DeliveryPolicy` over
/// the topic's `http` section (`defaultHealthyRetryPolicy`,
/// `defaultThrottlePolicy`, `defaultRequestPolicy`), each part falling back to
/// the topic's and then to SNS's default — unless the topic sets
/// `disableSubscriptionOverrides`, when the topic's parts win.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPolicy {
    pub retry: RetryPolicy,
    /// `throttlePolicy.maxReceivesPerSecond`: deliveries per second at most.
    pub max_per_second: Option<u32>,
    /// `requestPolicy.headerContentType`.
    pub content_type: String,
}

impl HttpPolicy {
    pub fn effective(sub: Option<&str>, topic: Option<&str>) -> HttpPolicy {
        let parse = |t: Option<&str>| t.and_then(|t| serde_json::from_str::<Value>(t).ok());
        let topic = parse(topic).and_then(|v| v.get("http").cloned());
        let sub = parse(sub);
        let overrides = !topic
            .as_ref()
            .and_then(|t| t.get("disableSubscriptionOverrides"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // One part: the subscription's (if it may override), else the topic's.
        let part = |sub_key: &str, topic_keys: &[&str]| -> Option<Value> {
            let own = sub
                .as_ref()
                .filter(|_| overrides)
                .and_then(|s| s.get(sub_key))
                .filter(|v| !v.is_null());
            own.cloned().or_else(|| {
                topic_keys.iter().find_map(|k| {
                    topic
                        .as_ref()
                        .and_then(|t| t.get(*k))
                        .filter(|v| !v.is_null())
                        .cloned()
                })
            })
        };
        let retry = part(
            "healthyRetryPolicy",
            &["defaultHealthyRetryPolicy", "healthyRetryPolicy"],
        )
        .map(|p| RetryPolicy::from_json(&p))
        .unwrap_or_default();
        let max_per_second = part(
            "throttlePolicy",
            &["defaultThrottlePolicy", "throttlePolicy"],
        )
        .and_then(|p| p.get("maxReceivesPerSecond").and_then(Value::as_u64))
        .filter(|n| *n >= 1)
        .map(|n| n.min(u64::from(u32::MAX)) as u32);
        let content_type = part("requestPolicy", &["defaultRequestPolicy", "requestPolicy"])
            .and_then(|p| {
                p.get("headerContentType")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string());
        HttpPolicy {
            retry,
            max_per_second,
            content_type,
        }
    }

    /// `EffectiveDeliveryPolicy` of a subscription, as SNS shows it.
    pub fn to_subscription_json(&self) -> Value {
        let p = &self.retry;
        serde_json::json!({
            "healthyRetryPolicy": {
                "minDelayTarget": p.min_delay, "maxDelayTarget": p.max_delay,
                "numRetries": p.num_retries, "numMaxDelayRetries": p.max_delay_retries,
                "numNoDelayRetries": p.no_delay, "numMinDelayRetries": p.min_delay_retries,
                "backoffFunction": format!("{:?}", p.backoff).to_lowercase()
            },
            "sicklyRetryPolicy": null,
            "throttlePolicy": self.max_per_second.map(|n| serde_json::json!({"maxReceivesPerSecond": n})),
            "requestPolicy": {"headerContentType": self.content_type},
            "guaranteed": false
        })
    }
}

/// The content types SNS accepts in `headerContentType`.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/xml",
    "text/plain",
    "text/html",
    "text/xml",
    "application/x-www-form-urlencoded",
    "text/css",
    "text/csv",
    "text/javascript",
    "application/javascript",
    "application/octet-stream",
    "application/soap+xml",
    "application/ecmascript",
    "application/EDI-X12",
    "application/EDIFACT",
    "application/font-woff",
    "application/ld+json",
    "application/ogg",
    "application/pdf",
    "application/xhtml+xml",
    "application/zip",
    "application/gzip",
    "text/plain; charset=UTF-8",
];

/// Validate a `DeliveryPolicy` attribute (JSON with SNS's bounds).
pub fn validate_delivery_policy(text: &str) -> Result<(), AwsError> {
    let fail = |r: &str| invalid_parameter(format!("Invalid parameter: DeliveryPolicy: {r}"));
    let v: Value = serde_json::from_str(text).map_err(|_| fail("failed to parse JSON"))?;
    if !v.is_object() {
        return Err(fail("must be a JSON object"));
    }
    let http = v.get("http");
    let part = |sub_key: &str, topic_key: &str| {
        v.get(sub_key)
            .or_else(|| http.and_then(|h| h.get(topic_key).or_else(|| h.get(sub_key))))
            .filter(|p| !p.is_null())
    };
    if let Some(t) = part("throttlePolicy", "defaultThrottlePolicy") {
        match t.get("maxReceivesPerSecond") {
            None | Some(Value::Null) => {}
            Some(n) if n.as_u64().is_some_and(|n| n >= 1) => {}
            Some(_) => {
                return Err(fail(
                    "maxReceivesPerSecond must be an integer of at least 1",
                ))
            }
        }
    }
    if let Some(r) = part("requestPolicy", "defaultRequestPolicy") {
        if let Some(ct) = r.get("headerContentType") {
            let ok = ct
                .as_str()
                .is_some_and(|c| CONTENT_TYPES.iter().any(|k| k.eq_ignore_ascii_case(c)));
            if !ok {
                return Err(fail("headerContentType is not a supported content type"));
            }
        }
    }
    let p = part("healthyRetryPolicy", "defaultHealthyRetryPolicy");
    if let Some(p) = p {
        let get = |k: &str| p.get(k).and_then(Value::as_i64);
        if get("numRetries").is_some_and(|n| !(0..=100).contains(&n)) {
            return Err(fail("numRetries must be between 0 and 100"));
        }
        let (min, max) = (get("minDelayTarget"), get("maxDelayTarget"));
        if min.is_some_and(|n| !(1..=3600).contains(&n))
            || max.is_some_and(|n| !(1..=3600).contains(&n))
        {
            return Err(fail("delay targets must be between 1 and 3600"));
        }
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                return Err(fail(
                    "minDelayTarget must be less than or equal to maxDelayTarget",
                ));
            }
        }
        if let Some(b) = p.get("backoffFunction").and_then(Value::as_str) {
            if !matches!(b, "linear" | "arithmetic" | "geometric" | "exponential") {
                return Err(fail(
                    "backoffFunction must be linear, arithmetic, geometric or exponential",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_policy_parts_fall_back_part_by_part_and_the_topic_can_forbid_overrides() {
        let topic = r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":7},"defaultThrottlePolicy":{"maxReceivesPerSecond":5},"defaultRequestPolicy":{"headerContentType":"application/json"}}}"#;
        let sub = r#"{"throttlePolicy":{"maxReceivesPerSecond":2}}"#;
        let p = HttpPolicy::effective(Some(sub), Some(topic));
        assert_eq!(p.max_per_second, Some(2));
        assert_eq!(p.retry.num_retries, 7);
        assert_eq!(p.content_type, "application/json");
        let locked = topic.replace(
            r#""http":{"#,
            r#""http":{"disableSubscriptionOverrides":true,"#,
        );
        assert_eq!(
            HttpPolicy::effective(Some(sub), Some(&locked)).max_per_second,
            Some(5)
        );
        let none = HttpPolicy::effective(None, None);
        assert_eq!(
            (none.max_per_second, none.content_type.as_str()),
            (None, DEFAULT_CONTENT_TYPE)
        );
        assert!(
            validate_delivery_policy(r#"{"throttlePolicy":{"maxReceivesPerSecond":0}}"#).is_err()
        );
        assert!(
            validate_delivery_policy(r#"{"requestPolicy":{"headerContentType":"image/png"}}"#)
                .is_err()
        );
        assert!(validate_delivery_policy(
            r#"{"requestPolicy":{"headerContentType":"application/xml"}}"#
        )
        .is_ok());
    }

    fn attr(t: &str, v: &str) -> Attr {
        Attr {
            data_type: t.into(),
            string_value: Some(v.into()),
            binary_value: None,
        }
    }

    #[test]
    fn attributes_validate_like_sns() {
        let mut m = BTreeMap::new();
        m.insert("price".to_string(), attr("Number", "12.5"));
        m.insert(
            "tags".to_string(),
            attr("String.Array", r#"["a", 1, true]"#),
        );
        m.insert("kind".to_string(), attr("String.custom", "x"));
        validate_attributes(&m).unwrap();
        let mut bad = m.clone();
        bad.insert("n".into(), attr("Number", "abc"));
        assert_eq!(
            validate_attributes(&bad).unwrap_err().message,
            "Could not cast message attribute 'n' value to number."
        );
        let mut bad = m.clone();
        bad.insert("t".into(), attr("Integer", "1"));
        assert!(validate_attributes(&bad)
            .unwrap_err()
            .message
            .contains("invalid message attribute type"));
        let mut bad = m.clone();
        bad.insert("e".into(), attr("String", ""));
        assert!(validate_attributes(&bad)
            .unwrap_err()
            .message
            .contains("non-empty"));
        let mut bad = m.clone();
        bad.insert("a".into(), attr("String.Array", "[[1]]"));
        assert_eq!(
            validate_attributes(&bad).unwrap_err().code,
            "InvalidParameter"
        );
        let many: BTreeMap<_, _> = (0..11)
            .map(|i| (format!("a{i}"), attr("String", "v")))
            .collect();
        assert!(validate_attributes(&many)
            .unwrap_err()
            .message
            .contains("[11]"));
    }

    #[test]
    fn filter_policies_on_attributes_and_body() {
        let p = compile_filter_policy(
            r#"{"store":["example_corp"],"kind":[{"prefix":"ord"}]}"#,
            false,
        )
        .unwrap();
        let mut m = BTreeMap::new();
        m.insert("store".to_string(), attr("String", "example_corp"));
        m.insert("kind".to_string(), attr("String", "order"));
        assert!(p.matches(&attributes_as_event(&m)));
        m.insert("store".to_string(), attr("String", "other"));
        assert!(!p.matches(&attributes_as_event(&m)));
        let arr = attributes_as_event(&BTreeMap::from([
            (
                "store".to_string(),
                attr("String.Array", r#"["x","example_corp"]"#),
            ),
            ("kind".to_string(), attr("String", "orders")),
        ]));
        assert!(p.matches(&arr));
        let err = compile_filter_policy(r#"{"a":{"b":["c"]}}"#, false).unwrap_err();
        assert!(err.message.contains("nested"), "{}", err.message);
        compile_filter_policy(r#"{"a":{"b":["c"]}}"#, true).unwrap();
        let six = r#"{"a":["1"],"b":["1"],"c":["1"],"d":["1"],"e":["1"],"f":["1"]}"#;
        assert!(compile_filter_policy(six, false)
            .unwrap_err()
            .message
            .contains("5 keys"));
        assert!(compile_filter_policy("[1]", false).is_err());
        assert!(compile_filter_policy("{not json", false).is_err());
    }

    #[test]
    fn managed_schedules_are_snss_documented_phases() {
        let m = RetryPolicy::AWS_MANAGED;
        let first: Vec<u32> = (1..=16).map(|n| m.delay(n).unwrap()).collect();
        assert_eq!(first, [0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 6, 8, 11, 15, 20, 20]);
        assert_eq!(m.delay(100_015), Some(20));
        assert_eq!(m.delay(100_016), None);
        let c = RetryPolicy::CUSTOMER_MANAGED;
        assert_eq!(c.delay(1), Some(10));
        assert_eq!(c.delay(2), Some(10));
        assert_eq!(c.delay(12), Some(600));
        assert_eq!(c.delay(50), Some(600));
        assert_eq!(c.delay(51), None);
        // 50 retries in about 6 hours, as documented.
        let total: u32 = (1..=50).map(|n| c.delay(n).unwrap()).sum();
        assert!((5 * 3600..7 * 3600).contains(&total), "{total}");
        assert_eq!(RetryPolicy::managed("lambda"), m);
        assert_eq!(RetryPolicy::managed("email"), c);
    }

    #[test]
    fn retry_policy_schedules() {
        let d = RetryPolicy::default();
        assert_eq!(
            (d.delay(1), d.delay(3), d.delay(4)),
            (Some(20), Some(20), None)
        );
        let p = RetryPolicy::from_policies(
            Some(
                r#"{"healthyRetryPolicy":{"numRetries":4,"numNoDelayRetries":1,"minDelayTarget":1,"maxDelayTarget":9,"backoffFunction":"linear"}}"#,
            ),
            None,
        );
        assert_eq!(p.delay(1), Some(0));
        assert_eq!(p.delay(4), Some(9));
        assert_eq!(p.delay(5), None);
        let t = RetryPolicy::from_policies(
            None,
            Some(
                r#"{"http":{"healthyRetryPolicy":{"numRetries":1,"minDelayTarget":2,"maxDelayTarget":2}}}"#,
            ),
        );
        assert_eq!((t.delay(1), t.delay(2)), (Some(2), None));
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("orders-1_a", false));
        assert!(!valid_topic_name("orders.fifo", false));
        assert!(valid_topic_name("orders.fifo", true));
        assert!(!valid_topic_name("orders", true));
        assert!(!valid_topic_name("", false));
        assert!(!valid_topic_name(&"a".repeat(257), false));
    }
}

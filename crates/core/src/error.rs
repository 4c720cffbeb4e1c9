//! The error body a Lambda caller sees and the core crate's own error type.

use serde::{Deserialize, Serialize};

/// `{"errorMessage", "errorType", "stackTrace"}`: what Lambda returns with
/// `X-Amz-Function-Error: Unhandled`, both for the function's own exceptions and for
/// platform-detected failures (`Sandbox.Timedout`, `Runtime.ExitError`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionError {
    #[serde(rename = "errorMessage", default)]
    pub error_message: String,
    #[serde(rename = "errorType", default)]
    pub error_type: String,
    #[serde(rename = "stackTrace", default, skip_serializing_if = "Vec::is_empty")]
    pub stack_trace: Vec<String>,
    /// Any other fields the runtime reported (Node's `trace`, Python's `requestId`,
    /// a custom runtime's own): Lambda hands the runtime's body back verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_message: message.into(),
            error_type: error_type.into(),
            stack_trace: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// What Lambda reports when the function runs past its timeout.
    pub fn timeout(timeout_s: u32) -> Self {
        Self::new(
            "Sandbox.Timedout",
            format!("Task timed out after {timeout_s}.00 seconds"),
        )
    }

    pub fn out_of_memory() -> Self {
        Self::new(
            "Runtime.OutOfMemory",
            "Runtime exited with error: signal: killed (memory limit exceeded)",
        )
    }

    /// The process died mid-request (or during init) without reporting an error.
    pub fn exit_error(detail: &str) -> Self {
        Self::new(
            "Runtime.ExitError",
            format!("Runtime exited with error: {detail}"),
        )
    }

    /// Parse a body a runtime posted to `/error`; a body that is not the JSON shape
    /// is wrapped as the message (as Lambda does), typed by the header when given.
    pub fn from_runtime_body(body: &[u8], type_header: Option<&str>) -> Self {
        match serde_json::from_slice::<FunctionError>(body) {
            Ok(mut e) => {
                if e.error_type.is_empty() {
                    e.error_type = type_header.unwrap_or("Unhandled").to_string();
                }
                e
            }
            Err(_) => {
                match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) {
                    // A JSON object whose fields have unexpected types (a stack trace given
                    // as one string, say): keep every field as reported.
                    Ok(mut map) => {
                        let text = |v: Option<serde_json::Value>| match v {
                            Some(serde_json::Value::String(s)) => Some(s),
                            Some(other) => Some(other.to_string()),
                            None => None,
                        };
                        let message = text(map.remove("errorMessage")).unwrap_or_default();
                        let ty = text(map.remove("errorType"))
                            .filter(|t| !t.is_empty())
                            .unwrap_or_else(|| type_header.unwrap_or("Unhandled").to_string());
                        Self {
                            error_message: message,
                            error_type: ty,
                            stack_trace: Vec::new(),
                            extra: map,
                        }
                    }
                    Err(_) => Self::new(
                        type_header.unwrap_or("Unhandled"),
                        String::from_utf8_lossy(body).into_owned(),
                    ),
                }
            }
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("FunctionError serialises")
    }
}

/// Errors from core validation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Validation(#[from] crate::function::ValidationError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::UnknownRuntime),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_message_matches_lambda() {
        let e = FunctionError::timeout(3);
        assert_eq!(e.error_message, "Task timed out after 3.00 seconds");
        let json: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(json["errorType"], "Sandbox.Timedout");
        assert!(json.get("stackTrace").is_none());
    }

    #[test]
    fn runtime_bodies() {
        let e = FunctionError::from_runtime_body(
            br#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":["a"]}"#,
            None,
        );
        assert_eq!(e.error_type, "ValueError");
        assert_eq!(e.stack_trace, vec!["a"]);
        let e = FunctionError::from_runtime_body(
            br#"{"errorMessage":"m","errorType":"T","stackTrace":"one string","trace":["a"]}"#,
            None,
        );
        assert_eq!(
            (e.error_type.as_str(), e.error_message.as_str()),
            ("T", "m")
        );
        assert_eq!(e.extra["stackTrace"], "one string");
        assert_eq!(e.extra["trace"][0], "a");
        let e = FunctionError::from_runtime_body(
            br#"{"errorMessage":"m","errorType":"T","requestId":"r1"}"#,
            None,
        );
        assert_eq!(e.extra["requestId"], "r1");
        let e = FunctionError::from_runtime_body(b"not json", Some("Runtime.Custom"));
        assert_eq!(e.error_type, "Runtime.Custom");
        assert_eq!(e.error_message, "not json");
    }
}

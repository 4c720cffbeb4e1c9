//! One record per invocation (DESIGN.md decision 8).

use serde::{Deserialize, Serialize};

/// What an invocation ended as. Also the `outcome` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The handler raised/returned an error (`X-Amz-Function-Error: Unhandled`).
    FunctionError,
    Timeout,
    OutOfMemory,
    /// The runtime process died or the runtime misbehaved.
    RuntimeError,
    /// Init failed (import error, missing handler, syntax error).
    InitError,
    Throttled,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::FunctionError => "function_error",
            Outcome::Timeout => "timeout",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::RuntimeError => "runtime_error",
            Outcome::InitError => "init_error",
            Outcome::Throttled => "throttled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Outcome::Success,
            "function_error" => Outcome::FunctionError,
            "timeout" => Outcome::Timeout,
            "out_of_memory" => Outcome::OutOfMemory,
            "runtime_error" => Outcome::RuntimeError,
            "init_error" => Outcome::InitError,
            "throttled" => Outcome::Throttled,
            _ => return None,
        })
    }
}

/// What started an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A synchronous API call (`Invoke` with `RequestResponse`, `nimbus invoke`).
    Api,
    /// An asynchronous event (`InvocationType=Event`).
    Event,
    /// An HTTP route on the gateway.
    Http,
    Schedule,
    /// An SQS event-source mapping's poller.
    Sqs,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Event => "event",
            Trigger::Http => "http",
            Trigger::Schedule => "schedule",
            Trigger::Sqs => "sqs",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "api" => Trigger::Api,
            "event" => Trigger::Event,
            "http" => Trigger::Http,
            "schedule" => Trigger::Schedule,
            "sqs" => Trigger::Sqs,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub request_id: String,
    pub function: String,
    pub version: String,
    pub revision: u64,
    pub trigger: Trigger,
    /// Start time, ms since the epoch.
    pub start_ms: i64,
    pub cold: bool,
    pub init_ms: Option<f64>,
    pub duration_ms: f64,
    /// Lambda rounds up to the next millisecond.
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub max_memory_used_mb: u32,
    pub outcome: Outcome,
    pub error_type: Option<String>,
    pub trace_id: Option<String>,
}

/// Lambda's billing: duration rounded up to the next whole millisecond, at least 1.
pub fn billed_ms(duration_ms: f64) -> u64 {
    (duration_ms.ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_up() {
        assert_eq!(billed_ms(0.2), 1);
        assert_eq!(billed_ms(1.0), 1);
        assert_eq!(billed_ms(1.01), 2);
        assert_eq!(billed_ms(102.5), 103);
    }

    #[test]
    fn outcome_round_trip() {
        for o in [
            Outcome::Success,
            Outcome::FunctionError,
            Outcome::Timeout,
            Outcome::OutOfMemory,
            Outcome::RuntimeError,
            Outcome::InitError,
            Outcome::Throttled,
        ] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
    }
}

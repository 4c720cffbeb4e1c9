//! Asynchronous invocation settings (Lambda's `FunctionEventInvokeConfig`).

use serde::{Deserialize, Serialize};

/// Lambda's defaults and bounds.
pub const DEFAULT_MAX_RETRY_ATTEMPTS: u32 = 2;
pub const MAX_RETRY_ATTEMPTS: u32 = 2;
pub const DEFAULT_MAX_EVENT_AGE_S: u32 = 21_600;
pub const MIN_EVENT_AGE_S: u32 = 60;

/// Retry and destination settings for async invocations of one function/qualifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_s: Option<u32>,
    /// Destination ARN for successful invocations.
    pub on_success: Option<String>,
    /// Destination ARN for events that failed every attempt or grew too old.
    pub on_failure: Option<String>,
    pub last_modified_ms: i64,
}

impl EventInvokeConfig {
    pub fn retries(&self) -> u32 {
        self.maximum_retry_attempts
            .unwrap_or(DEFAULT_MAX_RETRY_ATTEMPTS)
    }

    pub fn max_age_ms(&self) -> i64 {
        self.maximum_event_age_s.unwrap_or(DEFAULT_MAX_EVENT_AGE_S) as i64 * 1000
    }

    /// Lambda's bounds, worded as Lambda words them.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(r) = self.maximum_retry_attempts {
            if r > MAX_RETRY_ATTEMPTS {
                return Err(format!("1 validation error detected: Value '{r}' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 2"));
            }
        }
        if let Some(a) = self.maximum_event_age_s {
            if !(MIN_EVENT_AGE_S..=DEFAULT_MAX_EVENT_AGE_S).contains(&a) {
                return Err(format!("1 validation error detected: Value '{a}' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between 60 and 21600"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let c = EventInvokeConfig::default();
        assert_eq!(c.retries(), 2);
        assert_eq!(c.max_age_ms(), 21_600_000);
        assert!(EventInvokeConfig {
            maximum_retry_attempts: Some(3),
            ..c.clone()
        }
        .validate()
        .is_err());
        assert!(EventInvokeConfig {
            maximum_event_age_s: Some(59),
            ..c.clone()
        }
        .validate()
        .is_err());
        assert!(EventInvokeConfig {
            maximum_retry_attempts: Some(0),
            maximum_event_age_s: Some(60),
            ..c
        }
        .validate()
        .is_ok());
    }
}

//! Token buckets: API Gateway's throttling model. A bucket holds up to `burst`
//! tokens and refills at `rate` tokens a second; each request takes one, and a
//! request that finds the bucket empty is refused with 429 before anything runs.
//!
//! [`Throttles`] keeps one bucket per name (a route key, an API key id), created on
//! first use and replaced when its settings change.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Steady-state rate and burst, as a route's or a usage plan's throttle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThrottleSettings {
    /// Requests per second, sustained.
    pub rate: f64,
    /// The most requests let through at once.
    pub burst: u32,
}

// Validated settings are finite, so equality is reflexive.
impl Eq for ThrottleSettings {}

impl ThrottleSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !self.rate.is_finite() || self.rate <= 0.0 || self.rate > 1_000_000.0 {
            return Err(format!(
                "Invalid throttle rate {}: must be a number of requests per second above 0",
                self.rate
            ));
        }
        if self.burst == 0 {
            return Err("Invalid throttle burst 0: must be at least 1".into());
        }
        Ok(())
    }

    /// `RATE:BURST`, as the CLI takes it (`10:20`, `0.5:1`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (r, b) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid throttle {s:?}: expected RATE:BURST, like 10:20"))?;
        let t = ThrottleSettings {
            rate: r
                .trim()
                .parse()
                .map_err(|_| format!("invalid throttle rate {r:?}"))?,
            burst: b
                .trim()
                .parse()
                .map_err(|_| format!("invalid throttle burst {b:?}"))?,
        };
        t.validate()?;
        Ok(t)
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    settings: ThrottleSettings,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(settings: ThrottleSettings, now: Instant) -> Self {
        Self {
            settings,
            tokens: settings.burst as f64,
            last: now,
        }
    }

    /// Take a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.settings.rate).min(self.settings.burst as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets by name.
#[derive(Default)]
pub struct Throttles {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttles {
    /// Take a token from the bucket `name`, (re)creating it full when it is new or
    /// its settings changed. `false`: throttled.
    pub fn allow(&self, name: &str, settings: ThrottleSettings) -> bool {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match b.get_mut(name) {
            Some(bucket) if bucket.settings == settings => bucket.try_take(now),
            _ => {
                let mut bucket = Bucket::new(settings, now);
                let ok = bucket.try_take(now);
                b.insert(name.to_string(), bucket);
                ok
            }
        }
    }

    /// Forget a bucket (its route or key is gone).
    pub fn forget(&self, name: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let s = ThrottleSettings {
            rate: 2.0,
            burst: 3,
        };
        let t0 = Instant::now();
        let mut b = Bucket::new(s, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        // Half a second at 2/s refills one token.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t1));
        // Never more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_take(t2));
        }
        assert!(!b.try_take(t2));
    }

    #[test]
    fn parse_and_validate() {
        assert_eq!(
            ThrottleSettings::parse("10:20").unwrap(),
            ThrottleSettings {
                rate: 10.0,
                burst: 20
            }
        );
        assert!(ThrottleSettings::parse("0.5:1").is_ok());
        for bad in ["10", "0:1", "-1:2", "1:0", "x:1", "1:y", "inf:1"] {
            assert!(ThrottleSettings::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_change_resets_the_bucket() {
        let t = Throttles::default();
        let s1 = ThrottleSettings {
            rate: 0.001,
            burst: 1,
        };
        assert!(t.allow("r", s1));
        assert!(!t.allow("r", s1));
        let s2 = ThrottleSettings {
            rate: 0.001,
            burst: 2,
        };
        assert!(t.allow("r", s2));
        assert!(t.allow("r", s2));
        assert!(!t.allow("r", s2));
        assert!(t.allow("other", s1));
    }
}

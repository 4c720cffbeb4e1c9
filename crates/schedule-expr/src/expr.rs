//! Schedule expressions: `rate(N unit)` and `cron(six fields)`, plus the time zone
//! they are evaluated in.

use crate::cron::Cron;
use crate::ExprError;
use chrono::{TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// `rate(N minutes|hours|days)`: every `period_ms`, counted from the schedule's
    /// anchor (when it was created, changed or re-enabled). Days are 24-hour
    /// durations, as on EventBridge Scheduler, whatever the zone's DST does.
    Rate { period_ms: i64 },
    /// `cron(...)`, in wall-clock time of the schedule's zone.
    Cron(Box<Cron>),
}

impl Expression {
    /// Parse `rate(5 minutes)` or `cron(0 12 * * ? *)`.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let t = text.trim();
        if let Some(inner) = t.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            return parse_rate(inner).map(|period_ms| Expression::Rate { period_ms });
        }
        if let Some(inner) = t.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return Cron::parse(inner).map(|c| Expression::Cron(Box::new(c)));
        }
        Err(ExprError::Syntax(text.to_string()))
    }

    /// The first fire time strictly after `after_ms`. `anchor_ms` is where a rate
    /// counts from (`after_ms >= anchor_ms`). `None`: never fires again.
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64, tz: Tz) -> Option<i64> {
        match self {
            Expression::Rate { period_ms } => {
                let k = (after_ms - anchor_ms).max(0) / period_ms + 1;
                Some(anchor_ms + k * period_ms)
            }
            Expression::Cron(c) => {
                let after = Utc.timestamp_millis_opt(after_ms).single()?;
                c.next_after(after, tz).map(|t| t.timestamp_millis())
            }
        }
    }

    /// The last fire time in `(after_ms, now_ms]`, if any: what a scheduler that was
    /// not running during that span owes (it fires it once).
    pub fn latest_in(&self, after_ms: i64, now_ms: i64, anchor_ms: i64, tz: Tz) -> Option<i64> {
        let first = self.next_after(after_ms, anchor_ms, tz)?;
        if first > now_ms {
            return None;
        }
        if let Expression::Rate { period_ms } = self {
            return Some(anchor_ms + (now_ms - anchor_ms) / period_ms * period_ms);
        }
        // Widen a window back from `now` until it holds a fire time, then walk it.
        let mut window = 60_000i64;
        loop {
            let from = (now_ms - window).max(after_ms);
            if let Some(mut t) = self
                .next_after(from, anchor_ms, tz)
                .filter(|t| *t <= now_ms)
            {
                while let Some(n) = self.next_after(t, anchor_ms, tz).filter(|n| *n <= now_ms) {
                    t = n;
                }
                return Some(t);
            }
            if from == after_ms {
                return Some(first);
            }
            window = window.saturating_mul(2);
        }
    }
}

fn parse_rate(inner: &str) -> Result<i64, ExprError> {
    let bad = |why: &str| ExprError::Rate(format!("rate({inner}): {why}"));
    let mut parts = inner.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected rate(value unit), e.g. rate(5 minutes)"));
    };
    let value: i64 = n
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(&format!("'{n}' is not a positive whole number")))?;
    let (unit_ms, singular) = match unit {
        "minute" => (60_000, true),
        "minutes" => (60_000, false),
        "hour" => (3_600_000, true),
        "hours" => (3_600_000, false),
        "day" => (86_400_000, true),
        "days" => (86_400_000, false),
        other => {
            return Err(bad(&format!(
                "unit '{other}' is not one of minute, minutes, hour, hours, day, days"
            )))
        }
    };
    if singular != (value == 1) {
        return Err(bad(if value == 1 {
            "a value of 1 takes a singular unit (minute, hour, day)"
        } else {
            "a value above 1 takes a plural unit (minutes, hours, days)"
        }));
    }
    value
        .checked_mul(unit_ms)
        .ok_or_else(|| bad("the period is too long"))
}

/// An IANA zone name (`Europe/Paris`), or `UTC`; empty means UTC.
pub fn parse_timezone(name: &str) -> Result<Tz, ExprError> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| ExprError::TimeZone(name.to_string()))
}

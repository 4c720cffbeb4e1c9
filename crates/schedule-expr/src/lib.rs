//! AWS schedule expressions, pure: parsing and evaluating `rate(N unit)` and AWS's
//! six-field `cron(...)` in UTC or an IANA time zone. No engine, no I/O, no async:
//! the manifest loaders validate `schedule:` entries with it without pulling in the
//! invoker, and the scheduler (`nimbus-scheduler`, which re-exports everything here)
//! evaluates them.
//!
//! * [`Expression`]: `rate(N minute|minutes|hour|hours|day|days)` and `cron(...)`
//!   ([`cron`]: `?`, `L`, `W`, `#`, ranges, steps, lists, names), parsed by hand
//!   (generic cron crates do not speak AWS's dialect), evaluated with `chrono-tz`.
//! * [`ExprError`]: parse errors, each naming the bad field.

pub mod cron;
pub mod expr;

pub use expr::{parse_timezone, Expression};

/// A schedule expression or time zone that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("Schedule expression '{0}' is invalid: use rate(value unit) or cron(minutes hours day-of-month month day-of-week year)")]
    Syntax(String),
    #[error("Invalid rate expression {0}")]
    Rate(String),
    #[error("Invalid cron expression: it needs 6 fields (minutes hours day-of-month month day-of-week year), found {0}")]
    CronFieldCount(usize),
    #[error("Invalid cron expression: field {position} ({field}) '{value}': {reason}")]
    CronField {
        field: &'static str,
        position: usize,
        value: String,
        reason: String,
    },
    #[error("Invalid cron expression: one of day-of-month (field 3) and day-of-week (field 5) must be '?', and not both")]
    CronDays,
    #[error("Unknown time zone '{0}': use an IANA name such as Europe/Paris, or UTC")]
    TimeZone(String),
}

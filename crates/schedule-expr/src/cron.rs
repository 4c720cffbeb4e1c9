//! AWS's six-field cron: `cron(minutes hours day-of-month month day-of-week year)`.
//!
//! The dialect of EventBridge (and of Quartz, which it follows): day-of-week runs
//! `1`=SUN … `7`=SAT; exactly one of day-of-month and day-of-week is `?`; `L`, `W`
//! and `#` are understood; names `JAN`–`DEC` and `SUN`–`SAT` stand for numbers.
//! Every field takes `*`, lists (`1,15`), ranges (`MON-FRI`, wrapping ranges such as
//! `22-2` too), steps (`0/15`, `*/5`, `8-18/2`). Special forms:
//!
//! * day-of-month `L` (last day), `LW` (last weekday), `15W` (the weekday nearest the
//!   15th, never crossing into another month);
//! * day-of-week `L` (= `7`, Saturday), `5L` / `THUL` (the month's last Thursday),
//!   `3#2` / `TUE#2` (its second Tuesday).
//!
//! Times are wall-clock times in the schedule's zone. As on EventBridge Scheduler, a
//! time that does not exist (the hour skipped when clocks go forward) is skipped, and
//! a time that happens twice (when clocks go back) fires once, at its first occurrence.

use crate::ExprError;
use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

const FIELDS: [&str; 6] = [
    "minutes",
    "hours",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
/// EventBridge's year range.
pub const YEAR_MIN: u32 = 1970;
pub const YEAR_MAX: u32 = 2199;

/// A parsed cron expression (the part between `cron(` and `)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    dom: DomSpec,
    months: u16,
    dow: DowSpec,
    /// Bit `y - 1970`.
    years: [u64; 4],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DomSpec {
    /// `?`
    Any,
    Days {
        /// Bit `d` for day `d` (1..=31).
        days: u32,
        /// `L`
        last: bool,
        /// `LW`
        last_weekday: bool,
        /// Bit `d` for `dW`.
        nearest_weekday: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DowSpec {
    /// `?`
    Any,
    Days {
        /// Bit `w` for weekday `w` (1=SUN..=7=SAT).
        days: u8,
        /// Bit `w` for `wL` (the month's last such weekday).
        last_of: u8,
        /// `(w, n)` for `w#n`.
        nth: Vec<(u32, u32)>,
    },
}

struct Field {
    index: usize,
    text: String,
}

impl Field {
    fn err(&self, reason: impl Into<String>) -> ExprError {
        ExprError::CronField {
            field: FIELDS[self.index],
            position: self.index + 1,
            value: self.text.clone(),
            reason: reason.into(),
        }
    }
}

/// Range and names of each field.
fn bounds(index: usize) -> (u32, u32) {
    match index {
        0 => (0, 59),
        1 => (0, 23),
        2 => (1, 31),
        3 => (1, 12),
        4 => (1, 7),
        _ => (YEAR_MIN, YEAR_MAX),
    }
}

fn value(f: &Field, s: &str) -> Result<u32, ExprError> {
    let (lo, hi) = bounds(f.index);
    let upper = s.to_ascii_uppercase();
    let named = match f.index {
        3 => MONTHS
            .iter()
            .position(|m| *m == upper)
            .map(|i| i as u32 + 1),
        4 => DAYS.iter().position(|d| *d == upper).map(|i| i as u32 + 1),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                let hint = match f.index {
                    3 => " (use 1-12 or JAN-DEC)",
                    4 => " (use 1-7 or SUN-SAT)",
                    _ => "",
                };
                return Err(f.err(format!("'{s}' is not a valid value{hint}")));
            }
            s.parse::<u32>()
                .map_err(|_| f.err(format!("'{s}' is too large")))?
        }
    };
    if v < lo || v > hi {
        let extra = if f.index == 4 {
            " (1=SUN ... 7=SAT)"
        } else {
            ""
        };
        return Err(f.err(format!("{v} is out of range {lo}-{hi}{extra}")));
    }
    Ok(v)
}

/// The values of a plain field item: `*`, `a`, `a-b`, each optionally `/step`.
fn item_values(f: &Field, item: &str) -> Result<Vec<u32>, ExprError> {
    let (lo, hi) = bounds(f.index);
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s
                .parse()
                .map_err(|_| f.err(format!("step '{s}' is not a number")))?;
            if step == 0 {
                return Err(f.err("a step must be at least 1"));
            }
            (r, Some(step))
        }
        None => (item, None),
    };
    let (start, end) = if range == "*" {
        (lo, hi)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(f, a)?, value(f, b)?)
    } else {
        let v = value(f, range)?;
        // `a/step` runs from a to the end of the field's range.
        (v, if step.is_some() { hi } else { v })
    };
    let step = step.unwrap_or(1);
    let span = hi - lo + 1;
    let len = if end >= start {
        end - start + 1
    } else {
        if f.index == 5 {
            return Err(f.err(format!("range {start}-{end} runs backwards")));
        }
        // A wrapping range such as 22-2 or FRI-MON.
        span - start + end + 1
    };
    Ok((0..len)
        .step_by(step as usize)
        .map(|i| lo + (start - lo + i) % span)
        .collect())
}

fn bits<T>(f: &Field, zero: T, set: impl Fn(T, u32) -> T) -> Result<T, ExprError> {
    let mut acc = zero;
    for item in f.text.split(',') {
        if item.is_empty() {
            return Err(f.err("empty list item"));
        }
        for v in item_values(f, item)? {
            acc = set(acc, v);
        }
    }
    Ok(acc)
}

fn parse_dom(f: &Field) -> Result<DomSpec, ExprError> {
    if f.text == "?" {
        return Ok(DomSpec::Any);
    }
    let (mut days, mut last, mut last_weekday, mut nearest) = (0u32, false, false, 0u32);
    for item in f.text.split(',') {
        let up = item.to_ascii_uppercase();
        if up == "L" {
            last = true;
        } else if up == "LW" {
            last_weekday = true;
        } else if let Some(n) = up.strip_suffix('W') {
            let d = value(f, n)?;
            nearest |= 1 << d;
        } else if item.is_empty() {
            return Err(f.err("empty list item"));
        } else if up.contains('L') || up.contains('#') {
            return Err(f.err(format!(
                "'{item}' is not valid here (day-of-month takes L, LW and nW)"
            )));
        } else {
            for v in item_values(f, item)? {
                days |= 1 << v;
            }
        }
    }
    Ok(DomSpec::Days {
        days,
        last,
        last_weekday,
        nearest_weekday: nearest,
    })
}

fn parse_dow(f: &Field) -> Result<DowSpec, ExprError> {
    if f.text == "?" {
        return Ok(DowSpec::Any);
    }
    let (mut days, mut last_of, mut nth) = (0u8, 0u8, Vec::new());
    for item in f.text.split(',') {
        let up = item.to_ascii_uppercase();
        if up == "L" {
            days |= 1 << 7;
        } else if let Some((w, n)) = up.split_once('#') {
            let w = value(f, w)?;
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| f.err(format!("'#{n}' must be #1 to #5")))?;
            nth.push((w, n));
        } else if let Some(w) = up.strip_suffix('L').filter(|w| !w.is_empty()) {
            last_of |= 1 << value(f, w)?;
        } else if item.is_empty() {
            return Err(f.err("empty list item"));
        } else {
            for v in item_values(f, item)? {
                days |= 1 << v;
            }
        }
    }
    Ok(DowSpec::Days { days, last_of, nth })
}

impl Cron {
    /// Parse the six fields (`0 12 * * ? *`).
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 6 {
            return Err(ExprError::CronFieldCount(parts.len()));
        }
        let field = |i: usize| Field {
            index: i,
            text: parts[i].to_string(),
        };
        let q = |i: usize| -> Result<(), ExprError> {
            if parts[i].contains('?') {
                Err(field(i).err("'?' is only allowed in day-of-month or day-of-week"))
            } else {
                Ok(())
            }
        };
        for i in [0, 1, 3, 5] {
            q(i)?;
        }
        let minutes = bits(&field(0), 0u64, |a, v| a | 1 << v)?;
        let hours = bits(&field(1), 0u32, |a, v| a | 1 << v)?;
        let dom = parse_dom(&field(2))?;
        let months = bits(&field(3), 0u16, |a, v| a | 1 << v)?;
        let dow = parse_dow(&field(4))?;
        let years = bits(&field(5), [0u64; 4], |mut a, v| {
            let i = (v - YEAR_MIN) as usize;
            a[i / 64] |= 1 << (i % 64);
            a
        })?;
        match (&dom, &dow) {
            (DomSpec::Any, DowSpec::Any) | (DomSpec::Days { .. }, DowSpec::Days { .. }) => {
                return Err(ExprError::CronDays)
            }
            _ => {}
        }
        Ok(Cron {
            minutes,
            hours,
            dom,
            months,
            dow,
            years,
        })
    }

    fn has_year(&self, y: i32) -> bool {
        if y < YEAR_MIN as i32 || y > YEAR_MAX as i32 {
            return false;
        }
        let i = (y as u32 - YEAR_MIN) as usize;
        self.years[i / 64] & (1 << (i % 64)) != 0
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let last = last_day(d.year(), d.month());
        match (&self.dom, &self.dow) {
            (
                DomSpec::Days {
                    days,
                    last: l,
                    last_weekday,
                    nearest_weekday,
                },
                _,
            ) => {
                let day = d.day();
                days & (1 << day) != 0
                    || (*l && day == last)
                    || (*last_weekday && day == last_weekday_of(d.year(), d.month()))
                    || (1..=31u32).any(|n| {
                        nearest_weekday & (1 << n) != 0
                            && nearest_weekday_to(d.year(), d.month(), n) == Some(day)
                    })
            }
            (DomSpec::Any, DowSpec::Days { days, last_of, nth }) => {
                let w = d.weekday().number_from_sunday();
                let day = d.day();
                days & (1 << w) != 0
                    || (last_of & (1 << w) != 0 && day + 7 > last)
                    || nth.iter().any(|&(nw, n)| nw == w && (day - 1) / 7 + 1 == n)
            }
            (DomSpec::Any, DowSpec::Any) => false,
        }
    }

    /// The first fire time strictly after `after`, evaluated in `tz`; `None` when the
    /// expression never fires again (its years are past, or no date matches).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        let start = local.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut date = start.date();
        loop {
            let y = date.year();
            if y > YEAR_MAX as i32 {
                return None;
            }
            if !self.has_year(y) {
                let next = (y + 1..=YEAR_MAX as i32).find(|&y| self.has_year(y))?;
                date = NaiveDate::from_ymd_opt(next, 1, 1)?;
                continue;
            }
            if self.months & (1 << date.month()) == 0 {
                date = first_of_next_month(date)?;
                continue;
            }
            if self.day_matches(date) {
                let first_day = date == start.date();
                for h in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                    if first_day && h < start.hour() {
                        continue;
                    }
                    for m in (0..60).filter(|m| self.minutes & (1u64 << m) != 0) {
                        if first_day && h == start.hour() && m < start.minute() {
                            continue;
                        }
                        let naive = date.and_hms_opt(h, m, 0)?;
                        let t = match tz.from_local_datetime(&naive) {
                            LocalResult::Single(t) => t,
                            // Clocks went back: the first occurrence only.
                            LocalResult::Ambiguous(first, _) => first,
                            // Clocks went forward: this wall-clock time does not exist.
                            LocalResult::None => continue,
                        };
                        let t = t.with_timezone(&Utc);
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
    }
}

fn first_of_next_month(d: NaiveDate) -> Option<NaiveDate> {
    if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
    }
}

fn last_day(y: i32, m: u32) -> u32 {
    let first = NaiveDate::from_ymd_opt(y, m, 1).expect("valid month");
    first_of_next_month(first)
        .and_then(|n| n.pred_opt())
        .map_or(31, |d| d.day())
}

fn weekday(y: i32, m: u32, d: u32) -> u32 {
    NaiveDate::from_ymd_opt(y, m, d)
        .expect("valid date")
        .weekday()
        .number_from_sunday()
}

fn last_weekday_of(y: i32, m: u32) -> u32 {
    let last = last_day(y, m);
    match weekday(y, m, last) {
        7 => last - 1,
        1 => last - 2,
        _ => last,
    }
}

/// `nW`: the weekday nearest day `n` within the month (none when the month is shorter).
fn nearest_weekday_to(y: i32, m: u32, n: u32) -> Option<u32> {
    let last = last_day(y, m);
    if n > last {
        return None;
    }
    Some(match weekday(y, m, n) {
        7 if n == 1 => 3,
        7 => n - 1,
        1 if n == last => n - 2,
        1 => n + 1,
        _ => n,
    })
}

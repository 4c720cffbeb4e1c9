//! Condition operators: parsing `[ForAnyValue:|ForAllValues:]<Base>[IfExists]`
//! and testing one condition against the request context.

use crate::context::Context;
use crate::eval::substitute;
use crate::wildcard::{arn_like, glob};
use std::net::IpAddr;
use time::OffsetDateTime;

/// The operator families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

const BASES: [(&str, Base); 27] = [
    ("StringEquals", Base::StringEquals),
    ("StringNotEquals", Base::StringNotEquals),
    ("StringEqualsIgnoreCase", Base::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Base::StringNotEqualsIgnoreCase),
    ("StringLike", Base::StringLike),
    ("StringNotLike", Base::StringNotLike),
    ("NumericEquals", Base::NumericEquals),
    ("NumericNotEquals", Base::NumericNotEquals),
    ("NumericLessThan", Base::NumericLessThan),
    ("NumericLessThanEquals", Base::NumericLessThanEquals),
    ("NumericGreaterThan", Base::NumericGreaterThan),
    ("NumericGreaterThanEquals", Base::NumericGreaterThanEquals),
    ("DateEquals", Base::DateEquals),
    ("DateNotEquals", Base::DateNotEquals),
    ("DateLessThan", Base::DateLessThan),
    ("DateLessThanEquals", Base::DateLessThanEquals),
    ("DateGreaterThan", Base::DateGreaterThan),
    ("DateGreaterThanEquals", Base::DateGreaterThanEquals),
    ("Bool", Base::Bool),
    ("BinaryEquals", Base::BinaryEquals),
    ("IpAddress", Base::IpAddress),
    ("NotIpAddress", Base::NotIpAddress),
    ("ArnEquals", Base::ArnEquals),
    ("ArnLike", Base::ArnLike),
    ("ArnNotEquals", Base::ArnNotEquals),
    ("ArnNotLike", Base::ArnNotLike),
    ("Null", Base::Null),
];

/// Set operators over multivalued keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// Plain: a single-valued test (any context value may match).
    Single,
    ForAnyValue,
    ForAllValues,
}

/// A parsed condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator {
    pub base: Base,
    pub set: SetOp,
    pub if_exists: bool,
}

impl Operator {
    /// `None` for an operator IAM does not know (operator names are case-sensitive).
    pub fn parse(s: &str) -> Option<Operator> {
        let (set, rest) = if let Some(r) = s.strip_prefix("ForAnyValue:") {
            (SetOp::ForAnyValue, r)
        } else if let Some(r) = s.strip_prefix("ForAllValues:") {
            (SetOp::ForAllValues, r)
        } else {
            (SetOp::Single, s)
        };
        let (rest, if_exists) = match rest.strip_suffix("IfExists") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let base = BASES.iter().find(|(n, _)| *n == rest)?.1;
        if base == Base::Null && if_exists {
            return None;
        }
        Some(Operator {
            base,
            set,
            if_exists,
        })
    }

    /// The negated operators, true when no value matches.
    fn negated(self) -> bool {
        matches!(
            self.base,
            Base::StringNotEquals
                | Base::StringNotEqualsIgnoreCase
                | Base::StringNotLike
                | Base::NumericNotEquals
                | Base::DateNotEquals
                | Base::NotIpAddress
                | Base::ArnNotEquals
                | Base::ArnNotLike
        )
    }
}

/// Whether a condition holds for the request.
pub fn holds(c: &crate::document::Condition, ctx: &Context, version_2012: bool) -> bool {
    let op = c.op;
    let present = ctx.get(&c.key);
    if op.base == Base::Null {
        let absent = present.is_none_or(|v| v.is_empty());
        return c
            .values
            .iter()
            .any(|v| v.eq_ignore_ascii_case("true") == absent);
    }
    // Policy variables in the values (String and Arn operators).
    let subst = |v: &String| -> Option<String> {
        if version_2012
            && matches!(
                op.base,
                Base::StringEquals
                    | Base::StringNotEquals
                    | Base::StringEqualsIgnoreCase
                    | Base::StringNotEqualsIgnoreCase
                    | Base::StringLike
                    | Base::StringNotLike
                    | Base::ArnEquals
                    | Base::ArnLike
                    | Base::ArnNotEquals
                    | Base::ArnNotLike
            )
        {
            substitute(v, ctx)
        } else {
            Some(v.clone())
        }
    };
    let values: Vec<String> = c.values.iter().filter_map(subst).collect();
    let negated = op.negated();
    let Some(actual) = present.filter(|v| !v.is_empty()) else {
        return match op.set {
            // An absent key: ForAllValues is vacuously true, ForAnyValue false.
            SetOp::ForAllValues => true,
            SetOp::ForAnyValue => false,
            // IfExists: true when the key is absent; negated operators: true.
            SetOp::Single => op.if_exists || negated,
        };
    };
    // Does one context value match one of the (positive) policy values?
    let matches_any = |a: &str| values.iter().any(|v| positive(op.base, a, v));
    match op.set {
        SetOp::Single | SetOp::ForAnyValue => {
            if negated {
                if op.set == SetOp::Single {
                    // Every value of the key matches none of the policy's.
                    actual.iter().all(|a| !matches_any(a))
                } else {
                    actual.iter().any(|a| !matches_any(a))
                }
            } else {
                actual.iter().any(|a| matches_any(a))
            }
        }
        SetOp::ForAllValues => {
            if negated {
                actual.iter().all(|a| !matches_any(a))
            } else {
                actual.iter().all(|a| matches_any(a))
            }
        }
    }
}

/// The positive form of a base operator: does context value `a` match policy
/// value `v`? (Negated operators use their positive twin.)
fn positive(base: Base, a: &str, v: &str) -> bool {
    use Base::*;
    match base {
        StringEquals | StringNotEquals => a == v,
        StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => a.to_lowercase() == v.to_lowercase(),
        StringLike | StringNotLike => glob(v, a, true),
        NumericEquals | NumericNotEquals => num(a, v, |x, y| x == y),
        NumericLessThan => num(a, v, |x, y| x < y),
        NumericLessThanEquals => num(a, v, |x, y| x <= y),
        NumericGreaterThan => num(a, v, |x, y| x > y),
        NumericGreaterThanEquals => num(a, v, |x, y| x >= y),
        DateEquals | DateNotEquals => date(a, v, |x, y| x == y),
        DateLessThan => date(a, v, |x, y| x < y),
        DateLessThanEquals => date(a, v, |x, y| x <= y),
        DateGreaterThan => date(a, v, |x, y| x > y),
        DateGreaterThanEquals => date(a, v, |x, y| x >= y),
        Bool => a.eq_ignore_ascii_case(v),
        BinaryEquals => a == v,
        IpAddress | NotIpAddress => ip_in(a, v),
        ArnEquals | ArnNotEquals | ArnLike | ArnNotLike => arn_like(v, a),
        Null => false,
    }
}

fn num(a: &str, v: &str, f: impl Fn(f64, f64) -> bool) -> bool {
    match (a.trim().parse::<f64>(), v.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => f(x, y),
        _ => false,
    }
}

/// A date as IAM reads them: ISO 8601 (`2026-01-01`, `2026-01-01T00:00:00Z`,
/// with fractions or offsets) or epoch seconds.
pub fn parse_date(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return OffsetDateTime::from_unix_timestamp(s.parse().ok()?).ok();
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t);
    }
    // A bare date: midnight UTC.
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc())
}

fn date(a: &str, v: &str, f: impl Fn(OffsetDateTime, OffsetDateTime) -> bool) -> bool {
    match (parse_date(a), parse_date(v)) {
        (Some(x), Some(y)) => f(x, y),
        _ => false,
    }
}

/// Is address `a` inside CIDR (or single address) `v`?
pub fn ip_in(a: &str, v: &str) -> bool {
    let Ok(addr) = a.trim().parse::<IpAddr>() else {
        return false;
    };
    let (net, bits) = match v.trim().split_once('/') {
        Some((n, b)) => match b.parse::<u32>() {
            Ok(b) => (n, Some(b)),
            Err(_) => return false,
        },
        None => (v.trim(), None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let b = bits.unwrap_or(32).min(32);
            let mask = if b == 0 { 0 } else { u32::MAX << (32 - b) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let b = bits.unwrap_or(128).min(128);
            let mask = if b == 0 { 0 } else { u128::MAX << (128 - b) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => match a.to_ipv4_mapped() {
            Some(a4) => ip_in(&a4.to_string(), v),
            None => false,
        },
        _ => false,
    }
}

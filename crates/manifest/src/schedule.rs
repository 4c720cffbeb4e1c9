//! Schedule expressions and time zones, checked before anything is deployed so that
//! a typo fails the whole deploy up front: a quick shape check with messages that
//! say what to write, then the scheduler's own parser (field ranges, names,
//! `L`/`W`/`#`), so that what passes here is what the scheduler accepts.

/// `Err` names what is wrong with `rate(N unit)` / `cron(6 fields)` / `at(…)`.
pub fn check(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
        let mut parts = inner.split_whitespace();
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{expr:?}: rate needs a value and a unit, as in rate(5 minutes)"
            ));
        };
        let n: u64 = n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{expr:?}: the rate value must be a positive integer"))?;
        let singular = matches!(unit, "minute" | "hour" | "day");
        let plural = matches!(unit, "minutes" | "hours" | "days");
        if !singular && !plural {
            return Err(format!(
                "{expr:?}: the rate unit must be minute(s), hour(s) or day(s)"
            ));
        }
        if (n == 1) != singular {
            return Err(format!(
                "{expr:?}: write rate(1 {}) or rate({n} {}s) (AWS requires the unit to agree)",
                unit.trim_end_matches('s'),
                unit.trim_end_matches('s')
            ));
        }
        return full(expr);
    }
    if let Some(inner) = expr.strip_prefix("cron(").and_then(|s| s.strip_suffix(')')) {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!(
                "{expr:?}: cron needs 6 fields (minutes hours day-of-month month day-of-week year), found {}",
                fields.len()
            ));
        }
        if (fields[2] == "?") == (fields[4] == "?") {
            return Err(format!(
                "{expr:?}: exactly one of day-of-month and day-of-week must be '?'"
            ));
        }
        return full(expr);
    }
    Err(format!(
        "{expr:?} is not a schedule expression: use rate(N unit) or cron(min hour dom month dow year)"
    ))
}

fn full(expr: &str) -> Result<(), String> {
    nimbus_schedule_expr::Expression::parse(expr)
        .map(|_| ())
        .map_err(|e| format!("{expr:?}: {e}"))
}

/// An IANA time zone name (`Europe/Paris`); empty is UTC.
pub fn check_timezone(tz: &str) -> Result<(), String> {
    nimbus_schedule_expr::parse_timezone(tz)
        .map(|_| ())
        .map_err(|e| format!("{tz:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::{check, check_timezone};

    #[test]
    fn table() {
        for ok in [
            "rate(5 minutes)",
            "rate(1 minute)",
            "rate(2 days)",
            "cron(0 2 * * ? *)",
            "cron(0/15 8-17 ? * MON-FRI *)",
            "cron(0 10 L * ? 2030)",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("rate(5 minute)", "agree"),
            ("rate(1 minutes)", "agree"),
            ("rate(0 minutes)", "positive"),
            ("rate(5 weeks)", "unit"),
            ("rate(5)", "value and a unit"),
            ("cron(0 2 * * *)", "6 fields"),
            ("cron(0 2 * * * *)", "exactly one"),
            ("cron(0 2 ? * ? *)", "exactly one"),
            ("every 5 minutes", "not a schedule expression"),
            ("cron(99 2 * * ? *)", "cron(99 2 * * ? *)"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(check_timezone("Europe/Paris"), Ok(()));
        assert!(check_timezone("Mars/Olympus").is_err());
    }
}

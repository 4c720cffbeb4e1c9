//! Table tests: AWS cron and rate expressions against known next-fire times,
//! including L/W/#, leap years and DST transitions, and the parse errors.

use chrono::{DateTime, Utc};
use nimbus_schedule_expr::{parse_timezone, ExprError, Expression};

fn ms(t: &str) -> i64 {
    DateTime::parse_from_rfc3339(t).unwrap().timestamp_millis()
}

fn fmt(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn next(expr: &str, tz: &str, after: &str) -> Option<String> {
    let e = Expression::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let tz = parse_timezone(tz).unwrap();
    e.next_after(ms(after), 0, tz).map(fmt)
}

#[test]
fn next_fire_times() {
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // (expression, zone, after, expected next fire)
        (
            "cron(0 12 * * ? *)",
            "UTC",
            "2024-03-10T11:59:00Z",
            Some("2024-03-10T12:00:00Z"),
        ),
        (
            "cron(0 12 * * ? *)",
            "UTC",
            "2024-03-10T12:00:00Z",
            Some("2024-03-11T12:00:00Z"),
        ),
        (
            "cron(0 12 * * ? *)",
            "UTC",
            "2024-03-10T11:59:59.999Z",
            Some("2024-03-10T12:00:00Z"),
        ),
        (
            "cron(0/15 * * * ? *)",
            "UTC",
            "2024-01-01T00:07:30Z",
            Some("2024-01-01T00:15:00Z"),
        ),
        (
            "cron(0/15 * * * ? *)",
            "UTC",
            "2024-01-01T00:45:00Z",
            Some("2024-01-01T01:00:00Z"),
        ),
        (
            "cron(*/5 * * * ? *)",
            "UTC",
            "2024-01-01T00:59:00Z",
            Some("2024-01-01T01:00:00Z"),
        ),
        (
            "cron(5,35 8-10 * * ? *)",
            "UTC",
            "2024-01-01T10:35:00Z",
            Some("2024-01-02T08:05:00Z"),
        ),
        (
            "cron(0 8-18/4 * * ? *)",
            "UTC",
            "2024-01-01T12:00:00Z",
            Some("2024-01-01T16:00:00Z"),
        ),
        // Wrapping range: 22, 23, 0, 1, 2.
        (
            "cron(0 22-2 * * ? *)",
            "UTC",
            "2024-01-01T02:30:00Z",
            Some("2024-01-01T22:00:00Z"),
        ),
        (
            "cron(0 22-2 * * ? *)",
            "UTC",
            "2024-01-01T23:00:00Z",
            Some("2024-01-02T00:00:00Z"),
        ),
        // Every day of the year at 02:00 (the nightly cleanup of the examples).
        (
            "cron(0 2 * * ? *)",
            "UTC",
            "2024-12-31T02:00:00Z",
            Some("2025-01-01T02:00:00Z"),
        ),
        // Names, weekday ranges (2024-05-03 is a Friday).
        (
            "cron(0 9 ? * MON-FRI *)",
            "UTC",
            "2024-05-03T10:00:00Z",
            Some("2024-05-06T09:00:00Z"),
        ),
        (
            "cron(0 9 ? * 2-6 *)",
            "UTC",
            "2024-05-03T10:00:00Z",
            Some("2024-05-06T09:00:00Z"),
        ),
        (
            "cron(0 9 ? * SAT,SUN *)",
            "UTC",
            "2024-05-03T10:00:00Z",
            Some("2024-05-04T09:00:00Z"),
        ),
        (
            "cron(0 9 ? * 1 *)",
            "UTC",
            "2024-05-03T10:00:00Z",
            Some("2024-05-05T09:00:00Z"),
        ),
        (
            "cron(0 8 1 JAN,JUL ? *)",
            "UTC",
            "2024-01-01T08:00:00Z",
            Some("2024-07-01T08:00:00Z"),
        ),
        (
            "cron(0 8 1 jan,jul ? *)",
            "UTC",
            "2024-07-01T08:00:00Z",
            Some("2025-01-01T08:00:00Z"),
        ),
        // L: last day of the month, leap and common February.
        (
            "cron(0 0 L * ? *)",
            "UTC",
            "2024-02-01T00:00:00Z",
            Some("2024-02-29T00:00:00Z"),
        ),
        (
            "cron(0 0 L * ? *)",
            "UTC",
            "2023-02-01T00:00:00Z",
            Some("2023-02-28T00:00:00Z"),
        ),
        (
            "cron(0 0 L * ? *)",
            "UTC",
            "2024-04-30T00:00:00Z",
            Some("2024-05-31T00:00:00Z"),
        ),
        // Feb 29 only exists in leap years.
        (
            "cron(0 0 29 2 ? *)",
            "UTC",
            "2024-03-01T00:00:00Z",
            Some("2028-02-29T00:00:00Z"),
        ),
        // LW: 2024-03-31 is a Sunday, 2024-08-31 a Saturday.
        (
            "cron(0 0 LW * ? *)",
            "UTC",
            "2024-03-01T00:00:00Z",
            Some("2024-03-29T00:00:00Z"),
        ),
        (
            "cron(0 0 LW * ? *)",
            "UTC",
            "2024-08-01T00:00:00Z",
            Some("2024-08-30T00:00:00Z"),
        ),
        (
            "cron(0 0 LW * ? *)",
            "UTC",
            "2024-05-01T00:00:00Z",
            Some("2024-05-31T00:00:00Z"),
        ),
        // nW: nearest weekday, never leaving the month.
        (
            "cron(0 0 15W * ? *)",
            "UTC",
            "2024-06-01T00:00:00Z",
            Some("2024-06-14T00:00:00Z"),
        ),
        (
            "cron(0 0 15W * ? *)",
            "UTC",
            "2024-09-01T00:00:00Z",
            Some("2024-09-16T00:00:00Z"),
        ),
        (
            "cron(0 0 15W * ? *)",
            "UTC",
            "2024-05-01T00:00:00Z",
            Some("2024-05-15T00:00:00Z"),
        ),
        (
            "cron(0 0 1W * ? *)",
            "UTC",
            "2024-05-15T00:00:00Z",
            Some("2024-06-03T00:00:00Z"),
        ),
        (
            "cron(0 0 31W * ? *)",
            "UTC",
            "2024-03-01T00:00:00Z",
            Some("2024-03-29T00:00:00Z"),
        ),
        (
            "cron(0 0 31W * ? *)",
            "UTC",
            "2024-04-01T00:00:00Z",
            Some("2024-05-31T00:00:00Z"),
        ),
        // #: the second Tuesday; the fifth Friday exists only in some months.
        (
            "cron(0 10 ? * 3#2 *)",
            "UTC",
            "2024-05-01T00:00:00Z",
            Some("2024-05-14T10:00:00Z"),
        ),
        (
            "cron(0 10 ? * TUE#2 *)",
            "UTC",
            "2024-05-14T10:00:00Z",
            Some("2024-06-11T10:00:00Z"),
        ),
        (
            "cron(0 10 ? * 6#5 *)",
            "UTC",
            "2024-06-01T00:00:00Z",
            Some("2024-08-30T10:00:00Z"),
        ),
        // nL: the last Friday; L alone is Saturday.
        (
            "cron(0 10 ? * 6L *)",
            "UTC",
            "2024-05-01T00:00:00Z",
            Some("2024-05-31T10:00:00Z"),
        ),
        (
            "cron(0 10 ? * FRIL *)",
            "UTC",
            "2024-06-01T00:00:00Z",
            Some("2024-06-28T10:00:00Z"),
        ),
        (
            "cron(0 10 ? * L *)",
            "UTC",
            "2024-05-01T00:00:00Z",
            Some("2024-05-04T10:00:00Z"),
        ),
        // Years.
        (
            "cron(0 0 1 1 ? 2030)",
            "UTC",
            "2024-06-01T00:00:00Z",
            Some("2030-01-01T00:00:00Z"),
        ),
        ("cron(0 0 1 1 ? 2030)", "UTC", "2030-01-01T00:00:00Z", None),
        (
            "cron(0 0 1 1 ? 2026-2028/2)",
            "UTC",
            "2026-01-01T00:00:00Z",
            Some("2028-01-01T00:00:00Z"),
        ),
        ("cron(0 0 30 2 ? *)", "UTC", "2024-01-01T00:00:00Z", None),
        // Zones: noon in Paris is 11:00Z in winter, 10:00Z in summer.
        (
            "cron(0 12 * * ? *)",
            "Europe/Paris",
            "2024-01-15T00:00:00Z",
            Some("2024-01-15T11:00:00Z"),
        ),
        (
            "cron(0 12 * * ? *)",
            "Europe/Paris",
            "2024-07-15T00:00:00Z",
            Some("2024-07-15T10:00:00Z"),
        ),
        // Spring forward (Paris 2024-03-31 02:00 -> 03:00): 02:30 does not exist that
        // day and is skipped, as on EventBridge Scheduler.
        (
            "cron(30 2 * * ? *)",
            "Europe/Paris",
            "2024-03-30T12:00:00Z",
            Some("2024-04-01T00:30:00Z"),
        ),
        (
            "cron(0 2 * * ? *)",
            "America/New_York",
            "2024-03-09T12:00:00Z",
            Some("2024-03-11T06:00:00Z"),
        ),
        (
            "cron(0 * * * ? *)",
            "Europe/Paris",
            "2024-03-31T00:30:00Z",
            Some("2024-03-31T01:00:00Z"),
        ),
        // Fall back (Paris 2024-10-27 03:00 -> 02:00): 02:30 happens twice and fires
        // once, at the first; an hourly schedule does not repeat the hour.
        (
            "cron(30 2 * * ? *)",
            "Europe/Paris",
            "2024-10-26T12:00:00Z",
            Some("2024-10-27T00:30:00Z"),
        ),
        (
            "cron(30 2 * * ? *)",
            "Europe/Paris",
            "2024-10-27T00:30:00Z",
            Some("2024-10-28T01:30:00Z"),
        ),
        (
            "cron(0 * * * ? *)",
            "Europe/Paris",
            "2024-10-27T00:30:00Z",
            Some("2024-10-27T02:00:00Z"),
        ),
        // Rates count from the anchor (0 here).
        (
            "rate(5 minutes)",
            "UTC",
            "1970-01-01T00:07:00Z",
            Some("1970-01-01T00:10:00Z"),
        ),
        (
            "rate(1 minute)",
            "UTC",
            "1970-01-01T00:01:00Z",
            Some("1970-01-01T00:02:00Z"),
        ),
        (
            "rate(2 hours)",
            "UTC",
            "1970-01-01T00:00:00Z",
            Some("1970-01-01T02:00:00Z"),
        ),
        (
            "rate(1 day)",
            "Europe/Paris",
            "1970-01-01T00:00:00Z",
            Some("1970-01-02T00:00:00Z"),
        ),
    ];
    let mut failures = Vec::new();
    for (expr, tz, after, want) in cases {
        let got = next(expr, tz, after);
        if got.as_deref() != *want {
            failures.push(format!(
                "{expr} [{tz}] after {after}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn successive_fires_walk_the_calendar() {
    // The last Friday of each month through a year, leap-day February included.
    let e = Expression::parse("cron(0 10 ? * 6L *)").unwrap();
    let mut t = ms("2024-01-01T00:00:00Z");
    let mut got = Vec::new();
    for _ in 0..4 {
        t = e.next_after(t, 0, chrono_tz::UTC).unwrap();
        got.push(fmt(t));
    }
    assert_eq!(
        got,
        [
            "2024-01-26T10:00:00Z",
            "2024-02-23T10:00:00Z",
            "2024-03-29T10:00:00Z",
            "2024-04-26T10:00:00Z"
        ]
    );
}

#[test]
fn latest_missed_fire() {
    let utc = chrono_tz::UTC;
    let hourly = Expression::parse("cron(0 * * * ? *)").unwrap();
    let latest = hourly.latest_in(
        ms("2024-01-01T00:00:00Z"),
        ms("2024-01-01T05:30:00Z"),
        0,
        utc,
    );
    assert_eq!(latest.map(fmt).as_deref(), Some("2024-01-01T05:00:00Z"));
    assert_eq!(
        hourly.latest_in(
            ms("2024-01-01T05:00:00Z"),
            ms("2024-01-01T05:30:00Z"),
            0,
            utc
        ),
        None
    );
    let yearly = Expression::parse("cron(0 0 1 1 ? *)").unwrap();
    let latest = yearly.latest_in(
        ms("2020-06-01T00:00:00Z"),
        ms("2024-06-01T00:00:00Z"),
        0,
        utc,
    );
    assert_eq!(latest.map(fmt).as_deref(), Some("2024-01-01T00:00:00Z"));
    let rate = Expression::parse("rate(5 minutes)").unwrap();
    let anchor = ms("2024-01-01T00:00:00Z");
    let latest = rate.latest_in(anchor, ms("2024-01-01T00:23:00Z"), anchor, utc);
    assert_eq!(latest.map(fmt).as_deref(), Some("2024-01-01T00:20:00Z"));
}

#[test]
fn parse_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "cron(0 25 * * ? *)",
            "field 2 (hours) '25': 25 is out of range 0-23",
        ),
        (
            "cron(60 * * * ? *)",
            "field 1 (minutes) '60': 60 is out of range 0-59",
        ),
        (
            "cron(0 12 32 * ? *)",
            "field 3 (day-of-month) '32': 32 is out of range 1-31",
        ),
        (
            "cron(0 12 * FOO ? *)",
            "field 4 (month) 'FOO': 'FOO' is not a valid value (use 1-12 or JAN-DEC)",
        ),
        (
            "cron(0 12 ? * 8 *)",
            "field 5 (day-of-week) '8': 8 is out of range 1-7 (1=SUN ... 7=SAT)",
        ),
        (
            "cron(0 12 ? * 0 *)",
            "field 5 (day-of-week) '0': 0 is out of range 1-7",
        ),
        (
            "cron(0 12 ? * 3#6 *)",
            "field 5 (day-of-week) '3#6': '#6' must be #1 to #5",
        ),
        (
            "cron(0 12 * * ? 1969)",
            "field 6 (year) '1969': 1969 is out of range 1970-2199",
        ),
        (
            "cron(0 12 * * ? 2030-2025)",
            "field 6 (year) '2030-2025': range 2030-2025 runs backwards",
        ),
        (
            "cron(0/0 * * * ? *)",
            "field 1 (minutes) '0/0': a step must be at least 1",
        ),
        (
            "cron(0 ? * * ? *)",
            "field 2 (hours) '?': '?' is only allowed in day-of-month or day-of-week",
        ),
        ("cron(0 12 5X * ? *)", "field 3 (day-of-month) '5X'"),
        (
            "cron(0 12 1,,2 * ? *)",
            "field 3 (day-of-month) '1,,2': empty list item",
        ),
        (
            "cron(0 12 * * * *)",
            "one of day-of-month (field 3) and day-of-week (field 5) must be '?'",
        ),
        (
            "cron(0 12 ? * ? *)",
            "one of day-of-month (field 3) and day-of-week (field 5) must be '?'",
        ),
        (
            "cron(0 12 * * ?)",
            "it needs 6 fields (minutes hours day-of-month month day-of-week year), found 5",
        ),
        ("cron(0 12 * * ? * *)", "found 7"),
        ("rate(1 minutes)", "a value of 1 takes a singular unit"),
        ("rate(5 minute)", "a value above 1 takes a plural unit"),
        ("rate(0 minutes)", "'0' is not a positive whole number"),
        ("rate(-1 minutes)", "'-1' is not a positive whole number"),
        (
            "rate(5 weeks)",
            "unit 'weeks' is not one of minute, minutes, hour, hours, day, days",
        ),
        ("rate(5)", "expected rate(value unit)"),
        ("every 5 minutes", "use rate(value unit) or cron("),
    ];
    let mut failures = Vec::new();
    for (expr, want) in cases {
        match Expression::parse(expr) {
            Ok(_) => failures.push(format!("{expr}: parsed, want error containing {want:?}")),
            Err(e) if e.to_string().contains(want) => {}
            Err(e) => failures.push(format!("{expr}: {e}\n    want it to contain {want:?}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn time_zones() {
    assert!(parse_timezone("Europe/Paris").is_ok());
    assert!(parse_timezone("UTC").is_ok());
    assert!(parse_timezone("").is_ok());
    let e = parse_timezone("Mars/Olympus").unwrap_err();
    assert_eq!(e, ExprError::TimeZone("Mars/Olympus".into()));
    assert!(e.to_string().contains("IANA"), "{e}");
}

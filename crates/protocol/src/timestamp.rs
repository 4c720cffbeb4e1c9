//! Timestamps in each protocol's default format, as `serde` field helpers over
//! [`time::OffsetDateTime`]:
//!
//! * awsJson and restJson1 bodies: epoch seconds, a JSON number
//!   ([`epoch_seconds`]: `1700000000` or `1700000000.123`);
//! * awsQuery and restXml bodies: ISO 8601 in UTC with milliseconds
//!   ([`iso8601`]: `2023-11-14T22:13:20.000Z`);
//! * HTTP headers (`Last-Modified`, `Expires`): the IMF-fixdate of RFC 7231
//!   ([`format_http_date`]: `Tue, 14 Nov 2023 22:13:20 GMT`).
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Queue {
//!     #[serde(with = "nimbus_protocol::timestamp::epoch_seconds")]
//!     created: time::OffsetDateTime,
//!     #[serde(with = "nimbus_protocol::timestamp::iso8601::option", default)]
//!     modified: Option<time::OffsetDateTime>,
//! }
//! ```

use crate::Protocol;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// How a protocol writes a timestamp in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    EpochSeconds,
    Iso8601,
    HttpDate,
}

impl TimestampFormat {
    /// A protocol's default format for body members.
    pub fn of(protocol: Protocol) -> Self {
        if protocol.is_json() {
            TimestampFormat::EpochSeconds
        } else {
            TimestampFormat::Iso8601
        }
    }

    /// The timestamp as text in this format (epoch seconds as a decimal).
    pub fn format(self, t: OffsetDateTime) -> String {
        match self {
            TimestampFormat::EpochSeconds => epoch_number(t).to_string(),
            TimestampFormat::Iso8601 => format_iso8601(t),
            TimestampFormat::HttpDate => format_http_date(t),
        }
    }
}

/// `2023-11-14T22:13:20.000Z` (UTC, milliseconds), as AWS's XML writes it.
pub fn format_iso8601(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

/// `Tue, 14 Nov 2023 22:13:20 GMT` (RFC 7231 IMF-fixdate).
pub fn format_http_date(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

/// Parse an ISO 8601 / RFC 3339 timestamp (`2023-11-14T22:13:20Z`, with or
/// without fractional seconds, any offset).
pub fn parse_iso8601(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Epoch seconds as a JSON number: an integer when whole, else with
/// milliseconds.
pub fn epoch_number(t: OffsetDateTime) -> serde_json::Number {
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    if ms % 1000 == 0 {
        serde_json::Number::from(ms / 1000)
    } else {
        serde_json::Number::from_f64(ms as f64 / 1000.0).unwrap_or_else(|| (ms / 1000).into())
    }
}

/// The timestamp of epoch seconds (fractions kept to the nanosecond the f64
/// holds).
pub fn from_epoch_seconds(secs: f64) -> Option<OffsetDateTime> {
    if !secs.is_finite() {
        return None;
    }
    let nanos = (secs * 1e9).round() as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// `#[serde(with = "…::epoch_seconds")]`: a JSON number of seconds. Reads an
/// integer, a float, or a numeric string (some SDKs send those).
pub mod epoch_seconds {
    use super::*;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&epoch_number(*t), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        let secs = match Raw::deserialize(d)? {
            Raw::Num(n) => n,
            Raw::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| de::Error::custom(format!("{s:?} is not a timestamp")))?,
        };
        from_epoch_seconds(secs).ok_or_else(|| de::Error::custom("timestamp out of range"))
    }

    /// The same for `Option<OffsetDateTime>` (with `#[serde(default)]`).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            #[derive(Deserialize)]
            struct W(#[serde(with = "super")] OffsetDateTime);
            Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// `#[serde(with = "…::iso8601")]`: an ISO 8601 string, written in UTC with
/// milliseconds.
pub mod iso8601 {
    use super::*;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_iso8601(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse_iso8601(&s)
            .ok_or_else(|| de::Error::custom(format!("{s:?} is not an ISO 8601 timestamp")))
    }

    /// The same for `Option<OffsetDateTime>` (with `#[serde(default)]`).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            #[derive(Deserialize)]
            struct W(#[serde(with = "super")] OffsetDateTime);
            Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_per_protocol() {
        let t = datetime!(2023-11-14 22:13:20 UTC);
        assert_eq!(
            TimestampFormat::of(Protocol::AwsJson10).format(t),
            "1700000000"
        );
        assert_eq!(
            TimestampFormat::of(Protocol::AwsQuery).format(t),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            TimestampFormat::of(Protocol::RestXml).format(t + time::Duration::milliseconds(5)),
            "2023-11-14T22:13:20.005Z"
        );
        assert_eq!(format_http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(
            epoch_number(t + time::Duration::milliseconds(250)).to_string(),
            "1700000000.25"
        );
        // Other offsets are written in UTC.
        let plus2 = datetime!(2023-11-15 00:13:20 +2);
        assert_eq!(format_iso8601(plus2), "2023-11-14T22:13:20.000Z");
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(with = "epoch_seconds")]
        a: OffsetDateTime,
        #[serde(with = "iso8601")]
        b: OffsetDateTime,
        #[serde(with = "epoch_seconds::option", default)]
        c: Option<OffsetDateTime>,
    }

    #[test]
    fn serde_helpers_round_trip() {
        let t = datetime!(2023-11-14 22:13:20.5 UTC);
        let v = T {
            a: t,
            b: t,
            c: None,
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a": 1700000000.5, "b": "2023-11-14T22:13:20.500Z", "c": null})
        );
        assert_eq!(serde_json::from_value::<T>(json).unwrap(), v);
        let read: T = serde_json::from_str(
            r#"{"a": "1700000000", "b": "2023-11-14T22:13:20Z", "c": 1700000000}"#,
        )
        .unwrap();
        assert_eq!(read.a, datetime!(2023-11-14 22:13:20 UTC));
        assert_eq!(read.c, Some(read.a));
        assert!(serde_json::from_str::<T>(r#"{"a": "soon", "b": "x"}"#).is_err());
    }
}

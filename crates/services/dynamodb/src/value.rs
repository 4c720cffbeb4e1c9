//! DynamoDB's attribute values: the wire JSON (`{"S": "x"}`), validation with
//! DynamoDB's messages, exact numbers (38 significant digits, never `f64`), item
//! sizes, and the order-preserving byte encoding of key values that makes a
//! `Query` an index range scan in SQLite.

use base64::Engine as _;
use bigdecimal::BigDecimal;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::str::FromStr;

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    S(String),
    /// The canonical decimal text (no exponent, no leading/trailing zeros).
    N(String),
    B(Vec<u8>),
    Bool(bool),
    Null,
    L(Vec<AttrValue>),
    M(BTreeMap<String, AttrValue>),
    SS(Vec<String>),
    NS(Vec<String>),
    BS(Vec<Vec<u8>>),
}

/// An item: attribute name → value.
pub type Item = BTreeMap<String, AttrValue>;

/// A validation failure: the `ValidationException` message.
pub type VResult<T> = Result<T, String>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A parsed number: `0.digits × 10^exp`, `digits` without leading/trailing zeros
/// (empty for zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Num {
    pub neg: bool,
    pub digits: Vec<u8>,
    pub exp: i64,
}

impl Num {
    /// Parse and check DynamoDB's limits.
    pub fn parse(s: &str) -> VResult<Num> {
        let t = s.trim();
        let bad = || format!("The parameter cannot be converted to a numeric value: {s}");
        if t.is_empty()
            || t != s
            || !t
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        {
            return Err(bad());
        }
        let d = BigDecimal::from_str(t).map_err(|_| bad())?;
        Self::from_big(&d)
    }

    pub fn from_big(d: &BigDecimal) -> VResult<Num> {
        let (int, scale) = d.as_bigint_and_exponent();
        let neg = int.sign() == bigdecimal::num_bigint::Sign::Minus;
        let mut digits = int.magnitude().to_string().into_bytes();
        let mut scale = scale;
        if digits == b"0" {
            return Ok(Num {
                neg: false,
                digits: vec![],
                exp: 0,
            });
        }
        while digits.last() == Some(&b'0') {
            digits.pop();
            scale -= 1;
        }
        let exp = digits.len() as i64 - scale;
        if digits.len() > 38 {
            return Err("Attempting to store more than 38 significant digits in a Number".into());
        }
        if exp > 126 {
            return Err(
                "Number overflow. Attempting to store a number with magnitude larger than supported range"
                    .into(),
            );
        }
        if exp < -129 {
            return Err(
                "Number underflow. Attempting to store a number with magnitude smaller than supported range"
                    .into(),
            );
        }
        Ok(Num { neg, digits, exp })
    }

    pub fn to_big(&self) -> BigDecimal {
        BigDecimal::from_str(&self.canonical()).unwrap_or_default()
    }

    /// Plain decimal text.
    pub fn canonical(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        let d = std::str::from_utf8(&self.digits).unwrap_or("0");
        let mut s = String::new();
        if self.neg {
            s.push('-');
        }
        let len = d.len() as i64;
        if self.exp <= 0 {
            s.push_str("0.");
            for _ in 0..(-self.exp) {
                s.push('0');
            }
            s.push_str(d);
        } else if self.exp >= len {
            s.push_str(d);
            for _ in 0..(self.exp - len) {
                s.push('0');
            }
        } else {
            s.push_str(&d[..self.exp as usize]);
            s.push('.');
            s.push_str(&d[self.exp as usize..]);
        }
        s
    }

    /// Bytes that sort (memcmp) as the numbers do.
    pub fn sort_key(&self) -> Vec<u8> {
        if self.digits.is_empty() {
            return vec![0x80];
        }
        let e = (self.exp + 1000) as u16;
        let mut out = Vec::with_capacity(self.digits.len() + 4);
        if self.neg {
            out.push(0x40);
            out.extend_from_slice(&(u16::MAX - e).to_be_bytes());
            out.extend(self.digits.iter().map(|d| b'9' - d + b'0'));
            out.push(0xFF);
        } else {
            out.push(0xC0);
            out.extend_from_slice(&e.to_be_bytes());
            out.extend_from_slice(&self.digits);
        }
        out
    }
}

/// Canonical text of a number, validated.
pub fn canonical_number(s: &str) -> VResult<String> {
    Num::parse(s).map(|n| n.canonical())
}

/// Compare two canonical numbers.
pub fn cmp_numbers(a: &str, b: &str) -> Ordering {
    match (Num::parse(a), Num::parse(b)) {
        (Ok(a), Ok(b)) => a.sort_key().cmp(&b.sort_key()),
        _ => a.cmp(b),
    }
}

/// Exact `a + b` (or `a - b`), checked against the limits.
pub fn add_numbers(a: &str, b: &str, subtract: bool) -> VResult<String> {
    let a = BigDecimal::from_str(a).map_err(|e| e.to_string())?;
    let b = BigDecimal::from_str(b).map_err(|e| e.to_string())?;
    let r = if subtract { a - b } else { a + b };
    Num::from_big(&r).map(|n| n.canonical())
}

impl AttrValue {
    /// The type descriptor (`S`, `N`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::S(_) => "S",
            AttrValue::N(_) => "N",
            AttrValue::B(_) => "B",
            AttrValue::Bool(_) => "BOOL",
            AttrValue::Null => "NULL",
            AttrValue::L(_) => "L",
            AttrValue::M(_) => "M",
            AttrValue::SS(_) => "SS",
            AttrValue::NS(_) => "NS",
            AttrValue::BS(_) => "BS",
        }
    }

    /// Parse the wire form, validating as DynamoDB does.
    pub fn from_json(v: &Value) -> VResult<AttrValue> {
        let obj = v.as_object().ok_or_else(|| {
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
                .to_string()
        })?;
        let set: Vec<(&String, &Value)> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
        if set.is_empty() {
            return Err("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes".into());
        }
        if set.len() > 1 {
            return Err("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes".into());
        }
        let (k, v) = set[0];
        let str_of = |v: &Value| -> VResult<String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err("Start of structure or map found where not expected".into()),
            }
        };
        let bin_of = |v: &Value| -> VResult<Vec<u8>> {
            let s = v
                .as_str()
                .ok_or_else(|| "Start of structure or map found where not expected".to_string())?;
            B64.decode(s)
                .map_err(|_| "Invalid Base64 data for a binary attribute value".to_string())
        };
        let list_of = |v: &Value| -> VResult<Vec<Value>> {
            v.as_array()
                .cloned()
                .ok_or_else(|| "Start of list found where not expected".to_string())
        };
        Ok(match k.as_str() {
            "S" => AttrValue::S(str_of(v)?),
            "N" => AttrValue::N(canonical_number(&str_of(v)?)?),
            "B" => AttrValue::B(bin_of(v)?),
            "BOOL" => AttrValue::Bool(
                v.as_bool()
                    .ok_or_else(|| "Unexpected value for BOOL".to_string())?,
            ),
            "NULL" => {
                if v.as_bool() != Some(true) {
                    return Err("One or more parameter values were invalid: Null attribute value types must have the value of true".into());
                }
                AttrValue::Null
            }
            "L" => AttrValue::L(
                list_of(v)?
                    .iter()
                    .map(AttrValue::from_json)
                    .collect::<VResult<_>>()?,
            ),
            "M" => {
                let m = v
                    .as_object()
                    .ok_or_else(|| "Start of list found where not expected".to_string())?;
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    out.insert(k.clone(), AttrValue::from_json(v)?);
                }
                AttrValue::M(out)
            }
            "SS" => {
                let items: Vec<String> = list_of(v)?.iter().map(str_of).collect::<VResult<_>>()?;
                check_set("string", &items, |a, b| a == b, |s| s.clone())?;
                AttrValue::SS(items)
            }
            "NS" => {
                let items: Vec<String> = list_of(v)?
                    .iter()
                    .map(|x| str_of(x).and_then(|s| canonical_number(&s)))
                    .collect::<VResult<_>>()?;
                check_set("number", &items, |a, b| a == b, |s| s.clone())?;
                AttrValue::NS(items)
            }
            "BS" => {
                let items: Vec<Vec<u8>> = list_of(v)?.iter().map(bin_of).collect::<VResult<_>>()?;
                check_set("binary", &items, |a, b| a == b, |b| B64.encode(b))?;
                AttrValue::BS(items)
            }
            other => {
                return Err(format!(
                    "Supplied AttributeValue has an unknown datatype: {other}"
                ))
            }
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let (k, v) = match self {
            AttrValue::S(s) => ("S", Value::String(s.clone())),
            AttrValue::N(n) => ("N", Value::String(n.clone())),
            AttrValue::B(b) => ("B", Value::String(B64.encode(b))),
            AttrValue::Bool(b) => ("BOOL", Value::Bool(*b)),
            AttrValue::Null => ("NULL", Value::Bool(true)),
            AttrValue::L(l) => ("L", Value::Array(l.iter().map(|v| v.to_json()).collect())),
            AttrValue::M(m) => ("M", item_to_json(m)),
            AttrValue::SS(s) => ("SS", s.iter().map(|s| Value::String(s.clone())).collect()),
            AttrValue::NS(s) => ("NS", s.iter().map(|s| Value::String(s.clone())).collect()),
            AttrValue::BS(s) => (
                "BS",
                s.iter().map(|b| Value::String(B64.encode(b))).collect(),
            ),
        };
        m.insert(k.into(), v);
        Value::Object(m)
    }

    /// DynamoDB's size accounting of a value.
    pub fn size(&self) -> usize {
        match self {
            AttrValue::S(s) => s.len(),
            AttrValue::N(n) => n.trim_start_matches('-').replace('.', "").len().div_ceil(2) + 1,
            AttrValue::B(b) => b.len(),
            AttrValue::Bool(_) | AttrValue::Null => 1,
            AttrValue::L(l) => 3 + l.iter().map(|v| v.size() + 1).sum::<usize>(),
            AttrValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + v.size() + 1).sum::<usize>(),
            AttrValue::SS(s) => s.iter().map(|s| s.len()).sum(),
            AttrValue::NS(s) => s.iter().map(|n| AttrValue::N(n.clone()).size()).sum(),
            AttrValue::BS(s) => s.iter().map(|b| b.len()).sum(),
        }
    }

    /// Bytes that sort as DynamoDB orders key values of this type.
    pub fn key_bytes(&self) -> Vec<u8> {
        match self {
            AttrValue::S(s) => s.as_bytes().to_vec(),
            AttrValue::B(b) => b.clone(),
            AttrValue::N(n) => Num::parse(n).map(|n| n.sort_key()).unwrap_or_default(),
            other => other.to_json().to_string().into_bytes(),
        }
    }

    /// Ordering of two scalars of the same type (`S`, `N`, `B`); `None` otherwise.
    pub fn compare(&self, other: &AttrValue) -> Option<Ordering> {
        match (self, other) {
            (AttrValue::S(a), AttrValue::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (AttrValue::N(a), AttrValue::N(b)) => Some(cmp_numbers(a, b)),
            (AttrValue::B(a), AttrValue::B(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Equality as DynamoDB compares (sets ignore order).
    pub fn equals(&self, other: &AttrValue) -> bool {
        match (self, other) {
            (AttrValue::SS(a), AttrValue::SS(b)) | (AttrValue::NS(a), AttrValue::NS(b)) => {
                a.len() == b.len() && a.iter().all(|x| b.contains(x))
            }
            (AttrValue::BS(a), AttrValue::BS(b)) => {
                a.len() == b.len() && a.iter().all(|x| b.contains(x))
            }
            (AttrValue::N(a), AttrValue::N(b)) => cmp_numbers(a, b) == Ordering::Equal,
            (AttrValue::L(a), AttrValue::L(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (AttrValue::M(a), AttrValue::M(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.equals(w)))
            }
            _ => self == other,
        }
    }
}

fn check_set<T>(
    kind: &str,
    items: &[T],
    eq: impl Fn(&T, &T) -> bool,
    show: impl Fn(&T) -> String,
) -> VResult<()> {
    if items.is_empty() {
        return Err(format!(
            "One or more parameter values were invalid: An {kind} set  may not be empty"
        ));
    }
    for (i, a) in items.iter().enumerate() {
        if items[..i].iter().any(|b| eq(a, b)) {
            let all: Vec<String> = items.iter().map(&show).collect();
            return Err(format!(
                "One or more parameter values were invalid: Input collection [{}] contains duplicates.",
                all.join(", ")
            ));
        }
    }
    Ok(())
}

/// Parse an item (`{"name": {"S": …}, …}`).
pub fn item_from_json(v: &Value) -> VResult<Item> {
    let Some(obj) = v.as_object() else {
        return Err("Start of list found where not expected".into());
    };
    let mut out = Item::new();
    for (k, v) in obj {
        out.insert(k.clone(), AttrValue::from_json(v)?);
    }
    Ok(out)
}

pub fn item_to_json(item: &Item) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// DynamoDB's item size: names plus values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.size()).sum()
}

/// The 400 KB item limit.
pub const MAX_ITEM_SIZE: usize = 400 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_canonical_and_exact() {
        assert_eq!(canonical_number("1.50").unwrap(), "1.5");
        assert_eq!(canonical_number("-0.00").unwrap(), "0");
        assert_eq!(canonical_number("1e3").unwrap(), "1000");
        assert_eq!(canonical_number("0.001").unwrap(), "0.001");
        assert_eq!(
            add_numbers("12345678901234567890123456789012345678", "0.1", false).unwrap_err(),
            "Attempting to store more than 38 significant digits in a Number"
        );
        assert_eq!(add_numbers("0.1", "0.2", false).unwrap(), "0.3");
        assert!(canonical_number("abc").is_err());
        assert!(canonical_number("1e126").is_err());
        assert!(canonical_number("9.9e125").is_ok());
        assert!(canonical_number("1e-131").is_err());
    }

    #[test]
    fn number_sort_keys_order_numerically() {
        let xs = [
            "-1000", "-99.5", "-10", "-1.25", "-1.2", "-1", "-0.5", "0", "0.001", "0.5", "1",
            "1.2", "1.25", "9", "10", "99.5", "1000",
        ];
        for w in xs.windows(2) {
            let a = Num::parse(w[0]).unwrap().sort_key();
            let b = Num::parse(w[1]).unwrap().sort_key();
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn sets_reject_empty_and_duplicates() {
        let e = AttrValue::from_json(&serde_json::json!({"SS": []})).unwrap_err();
        assert!(e.contains("string set  may not be empty"), "{e}");
        let e = AttrValue::from_json(&serde_json::json!({"NS": ["1", "1.0"]})).unwrap_err();
        assert!(e.contains("contains duplicates"), "{e}");
    }
}

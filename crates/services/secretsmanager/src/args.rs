//! Reading an awsJson request body as a JSON object, member by member, with the
//! service's errors for a member of the wrong type (shared with the SSM crate,
//! which passes its own error code).

use http::StatusCode;
use nimbus_protocol::AwsError;
use serde_json::{Map, Value};

/// A request's members.
pub struct Args {
    map: Map<String, Value>,
    /// The code of a type error (`SerializationException`).
    code: &'static str,
}

impl Args {
    /// Parse a body (empty = `{}`); not an object = `SerializationException`.
    pub fn parse(body: &[u8]) -> Result<Self, AwsError> {
        let v: Value = nimbus_protocol::decode_json(body)?;
        match v {
            Value::Object(map) => Ok(Self {
                map,
                code: "SerializationException",
            }),
            _ => Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "The request body must be a JSON object.",
            )),
        }
    }

    fn bad(&self, name: &str, want: &str) -> AwsError {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            self.code,
            format!("Could not read the member '{name}' of the request: expected {want}."),
        )
    }

    /// The raw member.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<&str>, AwsError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(name, "a string")),
        }
    }

    /// A required string: `missing` builds the service's error when absent.
    pub fn req_str(
        &self,
        name: &str,
        missing: impl FnOnce(&str) -> AwsError,
    ) -> Result<&str, AwsError> {
        self.str(name)?.ok_or_else(|| missing(name))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, AwsError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(name, "a boolean")),
        }
    }

    pub fn i64(&self, name: &str) -> Result<Option<i64>, AwsError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.bad(name, "an integer")),
            Some(_) => Err(self.bad(name, "an integer")),
        }
    }

    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>, AwsError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.bad(name, "a list of strings")),
            Some(_) => Err(self.bad(name, "a list of strings")),
        }
    }

    pub fn array(&self, name: &str) -> Result<Option<&Vec<Value>>, AwsError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.bad(name, "a list")),
        }
    }

    pub fn object(&self, name: &str) -> Result<Option<&Map<String, Value>>, AwsError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.bad(name, "a structure")),
        }
    }

    /// `[{"Key","Value"}]` tags.
    pub fn tags(&self, name: &str) -> Result<Option<Vec<(String, String)>>, AwsError> {
        let Some(a) = self.array(name)? else {
            return Ok(None);
        };
        a.iter()
            .map(|t| {
                let k = t.get("Key").and_then(Value::as_str);
                let v = t.get("Value").and_then(Value::as_str).unwrap_or("");
                k.map(|k| (k.to_string(), v.to_string()))
            })
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| self.bad(name, "a list of {Key, Value} tags"))
    }
}

//! The request context: the keys conditions and policy variables read.

use std::collections::BTreeMap;

/// Context keys (case-insensitive names) and their values; a multivalued key
/// (`dynamodb:LeadingKeys`, `aws:TagKeys`) has several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    keys: BTreeMap<String, Vec<String>>,
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a single-valued key.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.keys
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
        self
    }

    /// Set a multivalued key.
    pub fn set_many(&mut self, key: &str, values: Vec<String>) -> &mut Self {
        self.keys.insert(key.to_ascii_lowercase(), values);
        self
    }

    /// Add the keys of `other` (its values win).
    pub fn extend(&mut self, other: &Context) {
        for (k, v) in &other.keys {
            self.keys.insert(k.clone(), v.clone());
        }
    }

    /// The values of a key, if present.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.keys.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// The first value of a key.
    pub fn first(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    /// Every key and its values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

//! Resource tags and list pagination as the AWS JSON services share them:
//! tag limits (`TagResource`: at most 50 tags, keys of 1–128 characters,
//! values of at most 256, `aws:` reserved), merging and removing tags, and
//! Nimbus's opaque offset `NextToken`s.

use serde_json::{json, Value};

/// The most tags a resource has.
pub const MAX_TAGS: usize = 50;
/// The longest tag key, in characters.
pub const MAX_KEY: usize = 128;
/// The longest tag value, in characters.
pub const MAX_VALUE: usize = 256;

/// Why tags were refused; each service words and codes it in its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("Tag keys must be 1-128 characters and values at most 256 characters.")]
    Size,
    #[error("Tag keys can't start with the reserved prefix aws:.")]
    Reserved,
    #[error("A resource can have at most 50 tags.")]
    TooMany,
}

/// Check tags about to be set: sizes, and the `aws:` prefix when `reserve_aws`.
pub fn check(tags: &[(String, String)], reserve_aws: bool) -> Result<(), TagError> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_KEY || v.chars().count() > MAX_VALUE {
            return Err(TagError::Size);
        }
        if reserve_aws && k.starts_with("aws:") {
            return Err(TagError::Reserved);
        }
    }
    Ok(())
}

/// Add `new` to `tags` (a key already there takes the new value); refused,
/// leaving `tags` as it was, if the result would have more than [`MAX_TAGS`].
pub fn merge(tags: &mut Vec<(String, String)>, new: Vec<(String, String)>) -> Result<(), TagError> {
    let mut out = tags.clone();
    for (k, v) in new {
        match out.iter_mut().find(|(x, _)| *x == k) {
            Some(t) => t.1 = v,
            None => out.push((k, v)),
        }
    }
    if out.len() > MAX_TAGS {
        return Err(TagError::TooMany);
    }
    *tags = out;
    Ok(())
}

/// Remove the tags with these keys (absent keys are ignored, as AWS does).
pub fn remove(tags: &mut Vec<(String, String)>, keys: &[String]) {
    tags.retain(|(k, _)| !keys.contains(k));
}

/// Tags as the API writes them: `[{"Key": …, "Value": …}]`, or with KMS's
/// member names (`TagKey`, `TagValue`).
pub fn to_json(tags: &[(String, String)], key: &str, value: &str) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({key: k, value: v}))
            .collect(),
    )
}

/// A `NextToken` that does not name a place in the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the NextToken is not valid")]
pub struct BadToken;

/// The token of the page starting at `offset`.
pub fn encode_token(offset: usize) -> String {
    format!("nimbus-{offset}")
}

/// The offset a token names, if it is one of ours within a list of `len` items.
pub fn decode_token(token: &str, len: usize) -> Result<usize, BadToken> {
    token
        .strip_prefix("nimbus-")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= len)
        .ok_or(BadToken)
}

/// One page of at most `max` items from `token` on, and the next page's
/// token when items remain.
pub fn page<T: Clone>(
    items: &[T],
    token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), BadToken> {
    let start = match token {
        None => 0,
        Some(t) => decode_token(t, items.len())?,
    };
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| encode_token(end));
    Ok((items[start..end].to_vec(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn limits_merge_and_remove() {
        assert_eq!(check(&[t("a", "b")], true), Ok(()));
        assert_eq!(check(&[t("", "b")], true), Err(TagError::Size));
        assert_eq!(check(&[t(&"k".repeat(129), "")], true), Err(TagError::Size));
        assert_eq!(check(&[t("k", &"é".repeat(256))], true), Ok(()));
        assert_eq!(
            check(&[t("k", &"v".repeat(257))], true),
            Err(TagError::Size)
        );
        assert_eq!(check(&[t("aws:x", "")], true), Err(TagError::Reserved));
        assert_eq!(check(&[t("aws:x", "")], false), Ok(()));
        let mut tags = vec![t("a", "1")];
        merge(&mut tags, vec![t("a", "2"), t("b", "3")]).unwrap();
        assert_eq!(tags, vec![t("a", "2"), t("b", "3")]);
        let many: Vec<_> = (0..49).map(|i| t(&format!("k{i}"), "")).collect();
        assert_eq!(merge(&mut tags, many), Err(TagError::TooMany));
        assert_eq!(tags.len(), 2, "a refused merge changes nothing");
        remove(&mut tags, &["a".to_string(), "zz".to_string()]);
        assert_eq!(tags, vec![t("b", "3")]);
        assert_eq!(
            to_json(&tags, "TagKey", "TagValue"),
            json!([{"TagKey": "b", "TagValue": "3"}])
        );
    }

    #[test]
    fn pages_and_tokens() {
        let items: Vec<u32> = (0..5).collect();
        let (p, next) = page(&items, None, 2).unwrap();
        assert_eq!((p, next.as_deref()), (vec![0, 1], Some("nimbus-2")));
        let (p, next) = page(&items, Some("nimbus-4"), 2).unwrap();
        assert_eq!((p, next), (vec![4], None));
        assert_eq!(page(&items, Some("nimbus-6"), 2), Err(BadToken));
        assert_eq!(page(&items, Some("garbage"), 2), Err(BadToken));
        let (p, next) = page(&items, Some("nimbus-5"), 2).unwrap();
        assert_eq!((p, next), (Vec::<u32>::new(), None));
    }
}

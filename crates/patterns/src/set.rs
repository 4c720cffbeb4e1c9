//! Matching one event against many patterns (a bus with its rules).
//!
//! Most rules require an exact string somewhere (`"source": ["my.app"]`,
//! `"detail-type": ["OrderPlaced"]`). The set indexes each pattern on one such
//! field — the one, among those it requires, whose values are the most diverse
//! across the whole set, so buckets stay small — and an event is only fully matched
//! against the patterns whose indexed value it carries, plus the patterns that
//! require no exact string at all.

use crate::Pattern;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};

/// One indexed path: its value → the entries indexed there.
type PathIndex = (Vec<String>, HashMap<String, Vec<usize>>);

/// An immutable set of patterns, each with its caller's key. Build it once per
/// change of the rules; [`PatternSet::matching`] is read-only and cheap.
#[derive(Debug, Clone)]
pub struct PatternSet<T> {
    entries: Vec<(T, Pattern)>,
    /// Path → value → entries indexed there.
    index: Vec<PathIndex>,
    /// Entries with no exact string to index on.
    rest: Vec<usize>,
}

impl<T> PatternSet<T> {
    /// Index `entries`; [`PatternSet::matching`] answers in this order.
    pub fn new(entries: Vec<(T, Pattern)>) -> Self {
        let required: Vec<_> = entries.iter().map(|(_, p)| p.required_strings()).collect();
        // How many distinct values each path takes across the set.
        let mut diversity: HashMap<&Vec<String>, HashSet<&String>> = HashMap::new();
        for req in &required {
            for (path, values) in req {
                diversity.entry(path).or_default().extend(values.iter());
            }
        }
        let mut by_path: HashMap<Vec<String>, HashMap<String, Vec<usize>>> = HashMap::new();
        let mut rest = Vec::new();
        for (i, req) in required.iter().enumerate() {
            let best = req
                .iter()
                .max_by_key(|(path, values)| (diversity[path].len(), usize::MAX - values.len()));
            match best {
                Some((path, values)) => {
                    let bucket = by_path.entry(path.clone()).or_default();
                    for v in values.iter().collect::<BTreeSet<_>>() {
                        bucket.entry(v.clone()).or_default().push(i);
                    }
                }
                None => rest.push(i),
            }
        }
        PatternSet {
            entries,
            index: by_path.into_iter().collect(),
            rest,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in insertion order.
    pub fn entries(&self) -> impl Iterator<Item = &(T, Pattern)> {
        self.entries.iter()
    }

    /// The keys of the patterns `event` matches, in insertion order.
    pub fn matching(&self, event: &Value) -> Vec<&T> {
        let mut candidates: Vec<usize> = self.rest.clone();
        let mut found = Vec::new();
        for (path, buckets) in &self.index {
            found.clear();
            strings_at(event, path, &mut found);
            for s in &found {
                if let Some(ids) = buckets.get(*s) {
                    candidates.extend_from_slice(ids);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter(|&i| self.entries[i].1.matches(event))
            .map(|i| &self.entries[i].0)
            .collect()
    }
}

/// Every string leaf of `v` at `path`, through arrays.
fn strings_at<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a str>) {
    match v {
        Value::Array(items) => {
            for i in items {
                strings_at(i, path, out);
            }
        }
        Value::Object(o) => {
            if let Some((first, rest)) = path.split_first() {
                if let Some(next) = o.get(first) {
                    strings_at(next, rest, out);
                }
            }
        }
        Value::String(s) if path.is_empty() => out.push(s),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_set_answers_what_each_pattern_answers() {
        let patterns = [
            json!({"source": ["a"]}),
            json!({"source": ["b"], "detail-type": ["x", "y"]}),
            json!({"detail": {"n": [{"numeric": [">", 3]}]}}),
            json!({"source": ["a", "b"], "detail": {"tags": ["t1"]}}),
            json!({"$or": [{"source": ["a"]}, {"source": ["c"]}]}),
            json!({"detail": {"missing": [{"exists": false}]}, "source": ["c"]}),
        ];
        let set = PatternSet::new(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i, Pattern::from_value(p).unwrap()))
                .collect(),
        );
        let events = [
            json!({"source": "a", "detail": {}}),
            json!({"source": "b", "detail-type": "y", "detail": {"n": 4}}),
            json!({"source": "c", "detail": {"tags": ["t0", "t1"]}}),
            json!({"source": ["a", "b"], "detail": {"tags": ["t1"], "n": 1}}),
            json!({"source": 7, "detail-type": "x"}),
            json!([{"source": "a"}]),
        ];
        for ev in &events {
            let want: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| Pattern::from_value(p).unwrap().matches(ev))
                .map(|(i, _)| i)
                .collect();
            let got: Vec<usize> = set.matching(ev).into_iter().copied().collect();
            assert_eq!(got, want, "{ev}");
        }
    }

    #[test]
    fn a_thousand_rules_only_fully_match_their_bucket() {
        let set = PatternSet::new(
            (0..1000)
                .map(|i| {
                    let p = json!({"source": ["app"], "detail-type": [format!("type-{i}")], "detail": {"n": [{"numeric": [">=", i]}]}});
                    (i, Pattern::from_value(&p).unwrap())
                })
                .collect(),
        );
        assert!(set.rest.is_empty());
        // Indexed on the diverse field, not on the shared `source`.
        assert_eq!(set.index.len(), 1);
        assert_eq!(set.index[0].0, vec!["detail-type".to_string()]);
        let ev = json!({"source": "app", "detail-type": "type-500", "detail": {"n": 600}});
        assert_eq!(set.matching(&ev), vec![&500]);
    }
}

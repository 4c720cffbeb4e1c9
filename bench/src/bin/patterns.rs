//! The event-pattern micro-benchmark (issue 14: "matching one event against 1,000
//! rules on a bus costs ≤ 50 µs p50"): no server, only `nimbus-patterns`.
//!
//! Builds a bus of `--rules` rules shaped like real ones (a `source`, a
//! `detail-type`, and detail conditions using every operator family), then matches
//! a stream of events — some matching one rule, some matching none — through
//! `PatternSet` (what EventBridge does per event) and, for comparison, through every
//! pattern in turn. Prints p50/p99 per event for both.
//!
//! ```sh
//! cargo run --release -p nimbus-bench --bin patterns-bench -- [--rules 1000] [--events 20000]
//! ```
//! Results, side by side with the other service benchmarks, are in docs/BENCHMARKS.md.

use nimbus_patterns::{Pattern, PatternSet};
use serde_json::{json, Value};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rule(i: usize) -> Value {
    let source = format!("com.app{}", i % 20);
    let kind = format!("Event{i}");
    match i % 5 {
        0 => json!({"source": [source], "detail-type": [kind]}),
        1 => json!({"source": [source], "detail-type": [kind],
                     "detail": {"total": [{"numeric": [">", 100, "<=", 5000]}]}}),
        2 => json!({"source": [source], "detail-type": [kind],
                     "detail": {"region": [{"prefix": "eu-"}], "state": [{"anything-but": ["CANCELLED", "FAILED"]}]}}),
        3 => json!({"source": [source], "detail-type": [kind],
                     "detail": {"ip": [{"cidr": "10.0.0.0/8"}], "file": [{"wildcard": "uploads/*.png"}]}}),
        _ => json!({"source": [source], "$or": [
                     {"detail-type": [kind]},
                     {"detail": {"customer": {"tier": [{"equals-ignore-case": format!("gold{i}")}]}}}]}),
    }
}

fn event(i: usize, hit: bool) -> Value {
    let kind = if hit {
        format!("Event{i}")
    } else {
        format!("Other{i}")
    };
    json!({
        "version": "0", "id": format!("id-{i}"), "detail-type": kind,
        "source": format!("com.app{}", i % 20), "account": "123456789012",
        "time": "2024-01-01T00:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": {"total": 250, "region": "eu-west-1", "state": "PAID", "ip": "10.1.2.3",
                   "file": "uploads/a.png", "customer": {"tier": "silver", "id": i},
                   "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}
    })
}

fn percentiles(mut ns: Vec<u128>) -> (f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

fn main() {
    let rules = arg("--rules", 1000);
    let events = arg("--events", 20_000);
    let patterns: Vec<Pattern> = (0..rules)
        .map(|i| Pattern::from_value(&rule(i)).expect("valid rule"))
        .collect();
    let set = PatternSet::new(patterns.iter().cloned().enumerate().collect());
    let stream: Vec<Value> = (0..events).map(|i| event(i % rules, i % 4 != 0)).collect();
    let mut indexed = Vec::with_capacity(events);
    let mut linear = Vec::with_capacity(events);
    let mut matched = 0usize;
    for ev in &stream {
        let t = Instant::now();
        let k = set.matching(ev).len();
        indexed.push(t.elapsed().as_nanos());
        matched += k;
        let t = Instant::now();
        let n = patterns.iter().filter(|p| p.matches(ev)).count();
        linear.push(t.elapsed().as_nanos());
        assert_eq!(k, n, "the index and the plain scan disagree on {ev}");
    }
    let (p50, p99) = percentiles(indexed);
    let (l50, l99) = percentiles(linear);
    println!("| matcher | rules | events | matches | p50 µs/event | p99 µs/event |");
    println!("|---|---|---|---|---|---|");
    println!("| PatternSet (indexed) | {rules} | {events} | {matched} | {p50:.2} | {p99:.2} |");
    println!("| every pattern in turn | {rules} | {events} | {matched} | {l50:.2} | {l99:.2} |");
}

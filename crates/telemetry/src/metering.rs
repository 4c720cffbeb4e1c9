//! Metering and the cost report (`nimbus cost`).
//!
//! The telemetry writer folds every invocation record into an hourly rollup
//! (`metering_hourly` in the store: function, hour, memory size → requests, billed
//! milliseconds, maximum memory used) in the same transaction that stores the record,
//! so usage outlives the records that retention prunes. This module prices that usage
//! as AWS Lambda would and flags over-provisioned memory.

use nimbus_store::MeterRow;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// AWS Lambda's public on-demand prices that [`report`] uses.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PriceTable {
    /// When these prices were taken from `source`.
    pub as_of: &'static str,
    pub source: &'static str,
    pub region: &'static str,
    /// Dollars per one million requests.
    pub per_million_requests: f64,
    /// Dollars per GB-second, x86_64, first tier (the first 6 billion GB-s a month).
    pub x86_per_gb_second: f64,
    /// Dollars per GB-second, arm64, first tier (the first 7.5 billion GB-s a month).
    pub arm64_per_gb_second: f64,
}

/// us-east-1 list prices. They have not changed since arm64 pricing was introduced
/// (September 2021); the free tier and the cheaper higher-volume tiers are ignored, so
/// the report is what the usage would cost an account past its free tier.
pub const LAMBDA_PRICES: PriceTable = PriceTable {
    as_of: "2025-01-01",
    source: "https://aws.amazon.com/lambda/pricing/",
    region: "us-east-1",
    per_million_requests: 0.20,
    x86_per_gb_second: 0.000_016_666_7,
    arm64_per_gb_second: 0.000_013_333_4,
};

/// Lambda's memory sizes: 128 MB to 10,240 MB in 1 MB steps.
pub const MEMORY_MIN_MB: u32 = 128;
pub const MEMORY_MAX_MB: u32 = 10_240;
/// Suggested sizes leave this much room above the peak seen (peak × 1.5) ...
const HEADROOM: f64 = 1.5;
/// ... and are rounded up to a multiple of this, so suggestions are round numbers.
const SUGGEST_STEP_MB: u32 = 64;

/// Lambda's compute unit: billed seconds times memory in GB (1 GB = 1024 MB).
pub fn gb_seconds(billed_ms: u64, memory_mb: u32) -> f64 {
    (billed_ms as f64 / 1000.0) * (memory_mb as f64 / 1024.0)
}

/// Cost of some usage on one architecture.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Dollars {
    pub requests: f64,
    pub compute: f64,
    pub total: f64,
}

impl Dollars {
    fn of(requests: u64, gb_s: f64, per_gb_s: f64, prices: &PriceTable) -> Self {
        let requests = requests as f64 / 1e6 * prices.per_million_requests;
        let compute = gb_s * per_gb_s;
        Self {
            requests,
            compute,
            total: requests + compute,
        }
    }

    fn add(&mut self, o: &Dollars) {
        self.requests += o.requests;
        self.compute += o.compute;
        self.total += o.total;
    }
}

/// A smaller memory size for a function whose peak use stays under half its size.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemorySuggestion {
    pub memory_mb: u32,
    /// What the same invocations would have saved at that size (same durations).
    pub saving_x86: f64,
    pub saving_arm64: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionCost {
    pub function: String,
    pub requests: u64,
    pub billed_ms: u64,
    pub gb_seconds: f64,
    /// The function's memory size now (or the last one metered, when it is gone).
    pub memory_mb: u32,
    /// Peak memory used by invocations at that size in the window (0: unknown).
    pub max_memory_used_mb: u32,
    pub x86: Dollars,
    pub arm64: Dollars,
    pub over_provisioned: Option<MemorySuggestion>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CostTotals {
    pub requests: u64,
    pub gb_seconds: f64,
    pub x86: Dollars,
    pub arm64: Dollars,
    pub saving_x86: f64,
    pub saving_arm64: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    /// Start of the first hour counted (hours are counted whole), ms since the epoch.
    pub since_ms: i64,
    pub prices: PriceTable,
    pub functions: Vec<FunctionCost>,
    pub totals: CostTotals,
}

/// The smallest Lambda-valid size with headroom over `peak_mb`.
pub fn suggested_memory(peak_mb: u32) -> u32 {
    let want = (peak_mb as f64 * HEADROOM).ceil() as u32;
    want.div_ceil(SUGGEST_STEP_MB)
        .saturating_mul(SUGGEST_STEP_MB)
        .clamp(MEMORY_MIN_MB, MEMORY_MAX_MB)
}

/// Price `rows` (the hourly rollup since `since_ms`). `current_memory` is each
/// existing function's memory size now.
pub fn report(
    rows: &[MeterRow],
    current_memory: &HashMap<String, u32>,
    since_ms: i64,
) -> CostReport {
    let p = &LAMBDA_PRICES;
    let mut by_fn: BTreeMap<&str, Vec<&MeterRow>> = BTreeMap::new();
    for r in rows {
        by_fn.entry(r.function.as_str()).or_default().push(r);
    }
    let mut functions = Vec::new();
    let mut totals = CostTotals {
        requests: 0,
        gb_seconds: 0.0,
        x86: Dollars::default(),
        arm64: Dollars::default(),
        saving_x86: 0.0,
        saving_arm64: 0.0,
    };
    for (name, rows) in by_fn {
        let requests: u64 = rows.iter().map(|r| r.requests).sum();
        let billed_ms: u64 = rows.iter().map(|r| r.billed_ms).sum();
        // Exact MB-milliseconds, divided once.
        let mb_ms: u128 = rows
            .iter()
            .map(|r| r.billed_ms as u128 * r.memory_mb as u128)
            .sum();
        let gb_s = mb_ms as f64 / 1024.0 / 1000.0;
        let memory_mb = current_memory.get(name).copied().unwrap_or_else(|| {
            rows.iter()
                .max_by_key(|r| r.hour_ms)
                .map_or(0, |r| r.memory_mb)
        });
        let at_size: Vec<&&MeterRow> = rows.iter().filter(|r| r.memory_mb == memory_mb).collect();
        let max_used = at_size
            .iter()
            .map(|r| r.max_memory_used_mb)
            .max()
            .unwrap_or(0);
        let x86 = Dollars::of(requests, gb_s, p.x86_per_gb_second, p);
        let arm64 = Dollars::of(requests, gb_s, p.arm64_per_gb_second, p);
        let over_provisioned = (max_used > 0 && max_used * 2 < memory_mb)
            .then(|| suggested_memory(max_used))
            .filter(|&s| s < memory_mb)
            .map(|s| {
                let size_mb_ms: u128 = at_size
                    .iter()
                    .map(|r| r.billed_ms as u128 * r.memory_mb as u128)
                    .sum();
                let size_gb_s = size_mb_ms as f64 / 1024.0 / 1000.0;
                let saved_gb_s = size_gb_s * (1.0 - s as f64 / memory_mb as f64);
                MemorySuggestion {
                    memory_mb: s,
                    saving_x86: saved_gb_s * p.x86_per_gb_second,
                    saving_arm64: saved_gb_s * p.arm64_per_gb_second,
                }
            });
        totals.requests += requests;
        totals.gb_seconds += gb_s;
        totals.x86.add(&x86);
        totals.arm64.add(&arm64);
        if let Some(s) = &over_provisioned {
            totals.saving_x86 += s.saving_x86;
            totals.saving_arm64 += s.saving_arm64;
        }
        functions.push(FunctionCost {
            function: name.to_string(),
            requests,
            billed_ms,
            gb_seconds: gb_s,
            memory_mb,
            max_memory_used_mb: max_used,
            x86,
            arm64,
            over_provisioned,
        });
    }
    CostReport {
        since_ms,
        prices: *p,
        functions,
        totals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        function: &str,
        hour: i64,
        memory_mb: u32,
        requests: u64,
        billed_ms: u64,
        max: u32,
    ) -> MeterRow {
        MeterRow {
            function: function.into(),
            hour_ms: hour * 3_600_000,
            memory_mb,
            requests,
            billed_ms,
            max_memory_used_mb: max,
        }
    }

    #[test]
    fn prices_match_hand_computation() {
        // 1M requests of 100 ms at 1024 MB: 100,000 GB-s.
        let rows = [
            row("f", 0, 1024, 600_000, 60_000_000, 900),
            row("f", 1, 1024, 400_000, 40_000_000, 1000),
        ];
        let r = report(&rows, &HashMap::new(), 0);
        let f = &r.functions[0];
        assert_eq!(f.requests, 1_000_000);
        assert!((f.gb_seconds - 100_000.0).abs() < 1e-9);
        assert!((f.x86.requests - 0.20).abs() < 1e-12);
        assert!((f.x86.compute - 1.66667).abs() < 1e-9);
        assert!((f.arm64.total - (0.20 + 1.33334)).abs() < 1e-9);
        assert_eq!(f.over_provisioned, None, "peak 1000 of 1024 MB");
        assert!((r.totals.x86.total - 1.86667).abs() < 1e-9);
    }

    #[test]
    fn over_provisioned_memory_is_flagged_with_a_smaller_size() {
        assert_eq!(suggested_memory(30), 128);
        assert_eq!(suggested_memory(100), 192);
        assert_eq!(suggested_memory(9000), 10_240);
        let rows = [
            row("big", 0, 2048, 1000, 1_000_000, 300),
            // An earlier size is billed but does not decide the suggestion.
            row("big", 0, 512, 10, 1000, 500),
        ];
        let current = HashMap::from([("big".to_string(), 2048)]);
        let r = report(&rows, &current, 0);
        let f = &r.functions[0];
        assert_eq!(f.max_memory_used_mb, 300);
        let s = f.over_provisioned.as_ref().unwrap();
        // 300 × 1.5 = 450, rounded up to 512.
        assert_eq!(s.memory_mb, 512);
        // 2000 GB-s at 2048 MB → 500 GB-s at 512 MB.
        let saved = 2000.0 * (1.0 - 512.0 / 2048.0);
        assert!((s.saving_x86 - saved * 0.000_016_666_7).abs() < 1e-12);
        assert!((r.totals.saving_x86 - s.saving_x86).abs() < 1e-12);
        // Unknown peak (0) flags nothing.
        let r = report(&[row("g", 0, 2048, 1, 1, 0)], &HashMap::new(), 0);
        assert_eq!(r.functions[0].over_provisioned, None);
    }
}

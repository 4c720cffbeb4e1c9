//! The platform's own log lines, worded exactly as Lambda writes them.

/// `START RequestId: <id> Version: <version>`
pub fn start(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}")
}

/// `END RequestId: <id>`
pub fn end(request_id: &str) -> String {
    format!("END RequestId: {request_id}")
}

/// Figures for a `REPORT` line.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub request_id: &'a str,
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub max_memory_used_mb: u32,
    pub init_ms: Option<f64>,
}

/// `REPORT RequestId: <id>\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 120.50 ms`
pub fn report(r: &Report<'_>) -> String {
    let mut s = format!(
        "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        r.request_id, r.duration_ms, r.billed_ms, r.memory_mb, r.max_memory_used_mb
    );
    if let Some(init) = r.init_ms {
        s.push_str(&format!("\tInit Duration: {init:.2} ms"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_wording() {
        assert_eq!(
            start("abc", "$LATEST"),
            "START RequestId: abc Version: $LATEST"
        );
        assert_eq!(end("abc"), "END RequestId: abc");
        let r = report(&Report {
            request_id: "abc",
            duration_ms: 1.234,
            billed_ms: 2,
            memory_mb: 128,
            max_memory_used_mb: 40,
            init_ms: Some(120.5),
        });
        assert_eq!(
            r,
            "REPORT RequestId: abc\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 120.50 ms"
        );
    }
}

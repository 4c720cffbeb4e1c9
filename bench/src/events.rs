//! Section 3: durable async acceptance. Closed-loop `Invoke` with
//! `X-Amz-Invocation-Type: Event` at several concurrencies: how many events per
//! second the server accepts, each written to its event store and fsynced before
//! its 202 (the queue group-commits, so one fsync covers every event that arrived
//! meanwhile). The peer is the latency of one `fdatasync` in the same data dir:
//! without group commit, `1 / fsync` would be the ceiling.
//!
//! The events then run (on a no-op `provided` function) while later ones are being
//! accepted, as they would in production; after each level the benchmark waits for
//! the backlog to drain before the next, and reports how long that took.

use crate::server::{now_ms, Server};
use crate::stats::{round3, summarize, Summary};
use crate::warm::{load, Until};
use anyhow::Result;
use hyper::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub struct EventResult {
    pub concurrency: usize,
    pub accepted: usize,
    pub errors: usize,
    pub accept_rate: f64,
    pub client: Summary,
    /// Seconds from the end of the load until every accepted event had run.
    pub drain_s: f64,
    pub drained: bool,
    /// Events run per second, from the first acceptance to the end of the drain.
    pub run_rate: f64,
}

impl EventResult {
    pub fn to_json(&self) -> Value {
        json!({
            "concurrency": self.concurrency,
            "accepted": self.accepted,
            "errors": self.errors,
            "accepted_per_s": round3(self.accept_rate),
            "client_ms": self.client.to_json(),
            "drain_s_after_load": round3(self.drain_s),
            "drained": self.drained,
            "run_per_s": round3(self.run_rate),
        })
    }
}

const EVENT: &[(&str, &str)] = &[("x-amz-invocation-type", "Event")];

pub async fn run(
    server: &Server,
    function: &str,
    levels: &[usize],
    dur: Duration,
) -> Result<Vec<EventResult>> {
    let path = Server::invoke_path(function);
    let mut out = Vec::new();
    for &c in levels {
        let since = now_ms();
        let t0 = Instant::now();
        let r = load(
            server.api,
            Method::POST,
            &path,
            EVENT,
            c,
            Until::Deadline(Instant::now() + dur),
        )
        .await?;
        let loaded = Instant::now();
        // Wait for the backlog: every accepted event has an invocation record.
        let deadline = loaded + Duration::from_secs(180);
        let mut drained = false;
        loop {
            let done = server.records(function, since).await?.len();
            if done >= r.ok {
                drained = true;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let drain_s = loaded.elapsed().as_secs_f64();
        eprintln!(
            "  async c={c}: {} accepted ({:.0}/s), {} errors, drained in {drain_s:.1} s",
            r.ok,
            r.ok as f64 / r.elapsed_s,
            r.errors
        );
        out.push(EventResult {
            concurrency: c,
            accepted: r.ok,
            errors: r.errors,
            accept_rate: r.ok as f64 / r.elapsed_s,
            client: summarize(&r.latencies),
            drain_s,
            drained,
            run_rate: r.ok as f64 / t0.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

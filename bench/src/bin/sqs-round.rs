//! `sqs-round`: the issue-13 SQS measure as a fast closed-loop load generator.
//!
//! One round per client = `SendMessage` → `ReceiveMessage` (`MaxNumberOfMessages` 1–10,
//! `WaitTimeSeconds` 1) → `DeleteMessage` (one message) or `DeleteMessageBatch` (more)
//! with the receipt handles from the answer. Every request is awsJson 1.0 exactly as
//! boto3 sends it (`X-Amz-Target`, `Content-Type: application/x-amz-json-1.0`,
//! `x-amzn-query-mode`, `X-Amz-Date`, a SigV4-shaped `Authorization` no server under
//! test verifies), one keep-alive connection per client, on a single-threaded tokio
//! runtime so the generator's CPU cost stays small and is reported (`cpu_share`: its
//! user+system CPU seconds / wall seconds, from `/proc/self/stat`).
//!
//! Every received body is checked byte for byte (it is rebuilt from the client and
//! sequence number at its head) and every message id is counted once: duplicates and
//! mismatches are reported, never hidden. Prints one JSON line.
//!
//! ```sh
//! target/release/sqs-round --endpoint http://127.0.0.1:4700 \
//!     --queue-url http://127.0.0.1:4700/000000000000/q --clients 16 --duration 3
//! ```

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Server base URL, e.g. http://127.0.0.1:4700.
    #[arg(long)]
    endpoint: String,
    /// The queue's URL as CreateQueue returned it.
    #[arg(long)]
    queue_url: String,
    /// Concurrent clients (one connection each).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// ReceiveMessage's MaxNumberOfMessages (1–10).
    #[arg(long, default_value_t = 1)]
    max_messages: u32,
    /// Message body size in bytes (≥ 32).
    #[arg(long, default_value_t = 256)]
    body_size: usize,
}

#[derive(Default)]
struct Stats {
    rounds: u64,
    sends: u64,
    receives: u64,
    received: u64,
    empty: u64,
    deleted: u64,
    errors: u64,
    mismatched: u64,
    duplicates: u64,
    round_us: Vec<u32>,
    send_us: Vec<u32>,
    recv_us: Vec<u32>,
    del_us: Vec<u32>,
    first_error: Option<String>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.rounds += o.rounds;
        self.sends += o.sends;
        self.receives += o.receives;
        self.received += o.received;
        self.empty += o.empty;
        self.deleted += o.deleted;
        self.errors += o.errors;
        self.mismatched += o.mismatched;
        self.duplicates += o.duplicates;
        self.round_us.extend(o.round_us);
        self.send_us.extend(o.send_us);
        self.recv_us.extend(o.recv_us);
        self.del_us.extend(o.del_us);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// The body of message `seq` of `client`: a header, then filler derived from both, so a
/// received body can be rebuilt from its head and compared byte for byte.
fn body(client: usize, seq: u64, size: usize) -> String {
    let mut s = format!("{client:04}-{seq:012}-");
    let seed = (client as u64).wrapping_mul(1_000_003).wrapping_add(seq);
    let mut i = 0u64;
    while s.len() < size {
        s.push((b'a' + ((seed.wrapping_add(i * 7)) % 26) as u8) as char);
        i += 1;
    }
    s
}

fn check_body(b: &str, size: usize) -> bool {
    let (Some(c), Some(q)) = (b.get(0..4), b.get(5..17)) else {
        return false;
    };
    match (c.parse::<usize>(), q.parse::<u64>()) {
        (Ok(c), Ok(q)) => b == body(c, q, size),
        _ => false,
    }
}

/// Headers as boto3 1.35 sends them for an SQS JSON call.
fn headers(target: &'static str) -> [(&'static str, String); 7] {
    let date = "20261206T000000Z";
    [
        ("Content-Type", "application/x-amz-json-1.0".into()),
        ("X-Amz-Target", format!("AmazonSQS.{target}")),
        ("x-amzn-query-mode", "true".into()),
        ("User-Agent", "Boto3/1.35.99 md/Botocore#1.35.99 ua/2.0 os/linux lang/python#3.11.7 cfg/retry-mode#legacy Botocore/1.35.99".into()),
        ("X-Amz-Date", date.into()),
        ("amz-sdk-request", "attempt=1; max=1".into()),
        ("Authorization", format!("AWS4-HMAC-SHA256 Credential=test/20261206/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target;x-amzn-query-mode, Signature={}", "0".repeat(64))),
    ]
}

async fn call(conn: &mut Conn, target: &'static str, payload: &Value) -> Result<Value> {
    let h = headers(target);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if conn.closing || conn.sender.is_closed() {
        // The server closed the connection after its last answer (moto does, after
        // every one): open a new one, as an HTTP client pool would.
        *conn = Conn::connect(conn.addr).await?;
    }
    conn.sender.ready().await?;
    let mut req = Request::builder()
        .method("POST")
        .uri("/")
        .header(hyper::header::HOST, conn.host.as_str());
    for (k, v) in h {
        req = req.header(k, v);
    }
    let resp = conn
        .sender
        .send_request(req.body(Full::new(Bytes::from(serde_json::to_vec(payload)?)))?)
        .await?;
    let (parts, body) = resp.into_parts();
    conn.closing = parts.version < hyper::Version::HTTP_11
        || parts
            .headers
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let body = body.collect().await?.to_bytes();
    if !parts.status.is_success() {
        bail!(
            "{target}: HTTP {}: {}",
            parts.status,
            String::from_utf8_lossy(&body)
        );
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).with_context(|| format!("{target}: answer not JSON"))
}

/// One keep-alive HTTP/1.1 connection, `TCP_NODELAY` on.
struct Conn {
    addr: SocketAddr,
    /// The last answer said `Connection: close`.
    closing: bool,
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            addr,
            closing: false,
            host: addr.to_string(),
            sender,
        })
    }
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

async fn client(
    id: usize,
    addr: SocketAddr,
    args: Arc<Args>,
    stop: Instant,
    seen: Arc<Mutex<HashSet<String>>>,
) -> Stats {
    let mut st = Stats::default();
    let mut conn = match Conn::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            st.errors += 1;
            st.first_error = Some(format!("{e:#}"));
            return st;
        }
    };
    let mut seq = 0u64;
    while Instant::now() < stop {
        let t0 = Instant::now();
        let r: Result<()> = async {
            seq += 1;
            call(
                &mut conn,
                "SendMessage",
                &json!({"QueueUrl": args.queue_url, "MessageBody": body(id, seq, args.body_size)}),
            )
            .await?;
            st.sends += 1;
            let t1 = Instant::now();
            st.send_us.push(us(t1 - t0));
            let got = call(
                &mut conn,
                "ReceiveMessage",
                &json!({"QueueUrl": args.queue_url, "MaxNumberOfMessages": args.max_messages,
                        "WaitTimeSeconds": 1}),
            )
            .await?;
            st.receives += 1;
            let t2 = Instant::now();
            st.recv_us.push(us(t2 - t1));
            let msgs = got
                .get("Messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if msgs.is_empty() {
                st.empty += 1;
                return Ok(());
            }
            st.received += msgs.len() as u64;
            let mut handles = Vec::with_capacity(msgs.len());
            for m in &msgs {
                let b = m.get("Body").and_then(Value::as_str).unwrap_or("");
                if !check_body(b, args.body_size) {
                    st.mismatched += 1;
                }
                let id = m.get("MessageId").and_then(Value::as_str).unwrap_or("");
                if !seen.lock().unwrap().insert(id.to_owned()) {
                    st.duplicates += 1;
                }
                handles.push(
                    m.get("ReceiptHandle")
                        .and_then(Value::as_str)
                        .context("no ReceiptHandle")?
                        .to_owned(),
                );
            }
            if handles.len() == 1 {
                call(
                    &mut conn,
                    "DeleteMessage",
                    &json!({"QueueUrl": args.queue_url, "ReceiptHandle": handles[0]}),
                )
                .await?;
                st.deleted += 1;
            } else {
                let entries: Vec<Value> = handles
                    .iter()
                    .enumerate()
                    .map(|(i, h)| json!({"Id": i.to_string(), "ReceiptHandle": h}))
                    .collect();
                let out = call(
                    &mut conn,
                    "DeleteMessageBatch",
                    &json!({"QueueUrl": args.queue_url, "Entries": entries}),
                )
                .await?;
                let ok = out
                    .get("Successful")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                st.deleted += ok as u64;
                if ok != handles.len() {
                    bail!(
                        "DeleteMessageBatch: {ok} of {} deleted: {out}",
                        handles.len()
                    );
                }
            }
            st.del_us.push(us(t2.elapsed()));
            Ok(())
        }
        .await;
        match r {
            Ok(()) => {
                st.rounds += 1;
                st.round_us.push(us(t0.elapsed()));
            }
            Err(e) => {
                st.errors += 1;
                if st.first_error.is_none() {
                    st.first_error = Some(format!("{e:#}"));
                }
                // A broken connection is replaced; the round is counted as an error.
                if let Ok(c) = Conn::connect(addr).await {
                    conn = c;
                }
            }
        }
    }
    st
}

fn pct(xs: &mut [u32], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_unstable();
    xs[((q * xs.len() as f64) as usize).min(xs.len() - 1)] as f64 / 1000.0
}

/// This process's user + system CPU seconds (Linux `/proc/self/stat`, clock ticks of 100 Hz).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // After ")": state=0, …, utime=11, stime=12.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(
        (1..=10).contains(&args.max_messages),
        "--max-messages must be 1–10"
    );
    anyhow::ensure!(args.body_size >= 32, "--body-size must be ≥ 32");
    let hostport = args
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()?
        .next()
        .context("endpoint address")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let stop = t0 + Duration::from_secs_f64(args.duration);
    let total = rt.block_on(async {
        let tasks: Vec<_> = (0..args.clients)
            .map(|i| tokio::spawn(client(i, addr, args.clone(), stop, seen.clone())))
            .collect();
        let mut total = Stats::default();
        for t in tasks {
            total.merge(t.await.expect("client task"));
        }
        total
    });
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let mut t = total;
    let out = json!({
        "clients": args.clients,
        "max_messages": args.max_messages,
        "wall_s": wall,
        "rounds": t.rounds,
        "rounds_per_s": t.rounds as f64 / wall,
        "sends": t.sends,
        "receives": t.receives,
        "received": t.received,
        "empty_receives": t.empty,
        "deleted": t.deleted,
        "errors": t.errors,
        "mismatched_bodies": t.mismatched,
        "duplicate_ids": t.duplicates,
        "round_p50_ms": pct(&mut t.round_us, 0.5),
        "round_p99_ms": pct(&mut t.round_us, 0.99),
        "send_p50_ms": pct(&mut t.send_us, 0.5),
        "receive_p50_ms": pct(&mut t.recv_us, 0.5),
        "delete_p50_ms": pct(&mut t.del_us, 0.5),
        "cpu_share": cpu / wall,
        "first_error": t.first_error,
    });
    println!("{out}");
    Ok(())
}

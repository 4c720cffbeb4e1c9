//! `nimbus queues`: the server's SQS queues with their depth; `nimbus queues peek
//! <name>` shows messages without receiving them; `nimbus queues redrive <dlq>`
//! moves a dead-letter queue's messages back to their source queues.

use crate::client::Client;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Show up to --max messages of a queue, oldest first (nothing is received).
    Peek {
        name: String,
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
    /// Move a dead-letter queue's messages back to the queues they came from.
    Redrive { name: String },
}

/// A queue name as one path segment (percent-encoded past SQS's own characters).
fn seg(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    match args.cmd {
        None => {
            let v = client.get_json("/_nimbus/services/sqs/queues").await?;
            let qs = v["Queues"].as_array().cloned().unwrap_or_default();
            if qs.is_empty() {
                println!("no queues");
                return Ok(0);
            }
            println!(
                "{:<40} {:>9} {:>10} {:>8} {:>11} {:>8} {:>9} {:>8}  DEAD-LETTER TARGET",
                "QUEUE",
                "VISIBLE",
                "IN FLIGHT",
                "DELAYED",
                "OLDEST AGE",
                "SENT",
                "RECEIVED",
                "DELETED"
            );
            for q in qs {
                println!(
                    "{:<40} {:>9} {:>10} {:>8} {:>10.0}s {:>8} {:>9} {:>8}  {}",
                    q["name"].as_str().unwrap_or(""),
                    q["visible"],
                    q["in_flight"],
                    q["delayed"],
                    q["oldest_age_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                    q["sends"],
                    q["receives"],
                    q["deletes"],
                    q["dead_letter_target"].as_str().unwrap_or("-"),
                );
            }
            Ok(0)
        }
        Some(Cmd::Peek { name, max }) => {
            let v = client
                .get_json(&format!(
                    "/_nimbus/services/sqs/queues/{}/messages?max={max}",
                    seg(&name)
                ))
                .await?;
            for m in v["Messages"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{}  {:<9} receives={}  {}",
                    m["message_id"].as_str().unwrap_or(""),
                    m["state"].as_str().unwrap_or(""),
                    m["receive_count"],
                    m["body"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        Some(Cmd::Redrive { name }) => {
            let url = client.url(&format!(
                "/_nimbus/services/sqs/queues/{}/redrive",
                seg(&name)
            ));
            let resp = client.send(client.http.post(url)).await?;
            let v: serde_json::Value = resp.json().await?;
            println!(
                "redrive of {name} started (task {})",
                v["TaskHandle"].as_str().unwrap_or("")
            );
            Ok(0)
        }
    }
}

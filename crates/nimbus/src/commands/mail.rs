//! `nimbus mail ls|show ID`: the SES outbox (every message SES accepted and
//! every mail another service sent, e.g. SNS email subscriptions).

use crate::client::Client;
use anyhow::{bail, Result};
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List the outbox, newest first.
    Ls {
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one message: headers, text, HTML, attachments, relay outcome.
    Show {
        /// The message id (`nimbus mail ls` lists them).
        id: String,
        /// Print the server's JSON (attachments included, base64).
        #[arg(long)]
        json: bool,
        /// Print the raw MIME message.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Ls { limit, json } => {
            let v = client
                .get_json(&format!("/_nimbus/services/mail/messages?limit={limit}"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            let msgs = v["Messages"].as_array().cloned().unwrap_or_default();
            if msgs.is_empty() {
                println!("no mail");
                return Ok(0);
            }
            println!(
                "{:<62} {:<24} {:<8} {:<10} {:<28} SUBJECT",
                "ID", "TIME", "ORIGIN", "RELAY", "TO"
            );
            for m in msgs {
                let to: Vec<&str> = m["Destinations"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default();
                println!(
                    "{:<62} {:<24} {:<8} {:<10} {:<28} {}",
                    s(&m["MessageId"]),
                    s(&m["Timestamp"]),
                    s(&m["Origin"]),
                    s(&m["Relay"]["Status"]),
                    to.join(","),
                    s(&m["Subject"])
                );
            }
            Ok(0)
        }
        Cmd::Show { id, json, raw } => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                bail!("{id:?} is not a message id");
            }
            if raw {
                let text = client
                    .get_text(&format!("/_nimbus/services/mail/messages/{id}/raw"))
                    .await?;
                print!("{text}");
                return Ok(0);
            }
            let m = client
                .get_json(&format!("/_nimbus/services/mail/messages/{id}"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
                return Ok(0);
            }
            println!("Message-Id: {}", s(&m["MessageId"]));
            println!("Accepted:   {} ({})", s(&m["Timestamp"]), s(&m["Origin"]));
            println!("Status:     {}", s(&m["Status"]));
            if let Some(e) = m["Error"].as_str() {
                println!("Error:      {e}");
            }
            println!(
                "Relay:      {}{}",
                s(&m["Relay"]["Status"]),
                m["Relay"]["Error"]
                    .as_str()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
            println!();
            for h in m["Headers"].as_array().cloned().unwrap_or_default() {
                println!("{}: {}", s(&h["Name"]), s(&h["Value"]));
            }
            if let Some(t) = m["Text"].as_str() {
                println!("\n--- text ---\n{t}");
            }
            if let Some(h) = m["Html"].as_str() {
                println!("\n--- html ---\n{h}");
            }
            let atts = m["Attachments"].as_array().cloned().unwrap_or_default();
            if !atts.is_empty() {
                println!("\n--- attachments ---");
                for a in atts {
                    println!(
                        "{}  {}  {}",
                        a["Filename"].as_str().unwrap_or("(unnamed)"),
                        s(&a["ContentType"]),
                        super::human_bytes(a["Size"].as_u64().unwrap_or(0))
                    );
                }
            }
            Ok(0)
        }
    }
}

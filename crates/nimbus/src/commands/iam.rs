//! `nimbus iam simulate --principal ROLE_ARN --action A --resource R [--context k=v]`:
//! may this principal do this? Answered by the server's IAM
//! (`GET /_nimbus/services/iam/simulate`) with the deciding statement. Exit 0 when
//! allowed, 1 when denied.

use crate::client::Client;
use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Evaluate one action on one resource for a role, user or session ARN.
    Simulate(SimArgs),
}

#[derive(clap::Args)]
pub struct SimArgs {
    /// A role ARN (simulated as a session of it), a user ARN, an assumed-role ARN.
    #[arg(long)]
    principal: String,
    /// The IAM action, e.g. dynamodb:PutItem.
    #[arg(long)]
    action: String,
    /// The resource ARN (default `*`).
    #[arg(long, default_value = "*")]
    resource: String,
    /// A condition context key and value (repeatable), e.g. aws:SourceIp=10.0.0.1.
    #[arg(long, value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    let Cmd::Simulate(a) = cmd;
    let mut q = vec![
        format!("principal={}", enc(&a.principal)),
        format!("action={}", enc(&a.action)),
        format!("resource={}", enc(&a.resource)),
    ];
    for c in &a.context {
        if !c.contains('=') {
            anyhow::bail!("--context {c:?}: expected KEY=VALUE");
        }
        q.push(format!("context={}", enc(c)));
    }
    let v = client
        .get_json(&format!("/_nimbus/services/iam/simulate?{}", q.join("&")))
        .await?;
    let decision = v["Decision"].as_str().unwrap_or("");
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let verdict = if decision == "allowed" {
            "ALLOWED"
        } else {
            "DENIED"
        };
        println!(
            "{verdict} ({decision}): {} {} on {}",
            a.principal, a.action, a.resource
        );
        if v["Admin"].as_bool() == Some(true) {
            println!("  the principal is an admin (account root or a configured key's user)");
        }
        if let Some(s) = v["Statement"].as_object() {
            println!(
                "  deciding statement: {} in {}",
                s["Statement"].as_str().unwrap_or(""),
                s["Policy"].as_str().unwrap_or("")
            );
        }
        if let Some(m) = v["Message"].as_str().filter(|m| !m.is_empty()) {
            println!("  {m}");
        }
    }
    Ok(if decision == "allowed" { 0 } else { 1 })
}

/// Percent-encode a query value (RFC 3986 unreserved characters kept).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

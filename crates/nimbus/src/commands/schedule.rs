//! `nimbus schedule add|ls|rm`: schedules that invoke a function on a clock.

use crate::client::Client;
use anyhow::{Context, Result};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create or update a schedule:
    /// `nimbus schedule add nightly 'cron(0 2 * * ? *)' cleanup`,
    /// `nimbus schedule add warm 'rate(5 minutes)' api:live --input '{"source":"warmup"}'`.
    Add(AddArgs),
    /// List schedules with their last and next fire times.
    Ls,
    /// Remove a schedule.
    Rm(RmArgs),
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// Schedule name: 1 to 64 letters, digits, '.', '-' or '_'.
    name: String,
    /// `rate(N minute|minutes|hour|hours|day|days)` or
    /// `cron(minutes hours day-of-month month day-of-week year)` (AWS syntax).
    expression: String,
    /// FUNCTION or FUNCTION:QUALIFIER to invoke asynchronously.
    function: String,
    /// JSON payload for each run (default: EventBridge's "Scheduled Event").
    #[arg(long)]
    input: Option<String>,
    /// IANA time zone the cron expression is read in (default UTC).
    #[arg(long = "tz", value_name = "ZONE")]
    timezone: Option<String>,
    /// Create it disabled (it keeps its definition but does not fire).
    #[arg(long)]
    disabled: bool,
}

#[derive(clap::Args)]
pub struct RmArgs {
    name: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    match args.cmd {
        Some(Cmd::Add(a)) => add(client, a).await,
        None | Some(Cmd::Ls) => ls(client).await,
        Some(Cmd::Rm(a)) => rm(client, a).await,
    }
}

async fn add(client: &Client, a: AddArgs) -> Result<i32> {
    let (function, qualifier) = match a.function.split_once(':') {
        Some((f, q)) => (f, Some(q)),
        None => (a.function.as_str(), None),
    };
    let input: Option<Value> = a
        .input
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--input is not valid JSON")?;
    let mut body = json!({
        "expression": a.expression,
        "function": function,
        "qualifier": qualifier,
        "input": input,
        "timezone": a.timezone,
    });
    if a.disabled {
        body["enabled"] = false.into();
    }
    let resp = client
        .send(
            client
                .http
                .put(client.url(&format!("/_nimbus/schedules/{}", a.name)))
                .json(&body),
        )
        .await?;
    let created = resp.status() == reqwest::StatusCode::CREATED;
    let s: Value = resp.json().await?;
    println!(
        "{} {} {} [{}] -> {}  next {}",
        if created { "Added" } else { "Updated" },
        a.name,
        s["expression"].as_str().unwrap_or(""),
        s["timezone"].as_str().unwrap_or("UTC"),
        target(&s),
        when(s["next_fire_ms"].as_i64(), s["enabled"].as_bool()),
    );
    Ok(0)
}

fn target(s: &Value) -> String {
    match s["qualifier"].as_str() {
        Some(q) => format!("{}:{q}", s["function"].as_str().unwrap_or("")),
        None => s["function"].as_str().unwrap_or("").to_string(),
    }
}

/// `2024-01-01 12:00:00Z (in 4m)`, `never`, `disabled`.
fn when(ms: Option<i64>, enabled: Option<bool>) -> String {
    if enabled == Some(false) {
        return "disabled".into();
    }
    let Some(ms) = ms else {
        return "never".into();
    };
    let text = nimbus_core::format_ms(ms, "Z").replace('T', " ");
    let text = text
        .rsplit_once('.')
        .map_or(text.clone(), |(t, _)| format!("{t}Z"));
    let delta = (ms - nimbus_core::now_ms()) / 1000;
    if delta < 0 {
        return text;
    }
    let rel = match delta {
        0..=59 => format!("{delta}s"),
        60..=3599 => format!("{}m", delta / 60),
        3600..=86_399 => format!("{}h{:02}m", delta / 3600, delta % 3600 / 60),
        _ => format!("{}d{}h", delta / 86_400, delta % 86_400 / 3600),
    };
    format!("{text} (in {rel})")
}

async fn ls(client: &Client) -> Result<i32> {
    let v = client.get_json("/_nimbus/schedules").await?;
    let all = v["schedules"].as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        println!("no schedules");
        return Ok(0);
    }
    println!(
        "{:<24} {:<28} {:<16} {:<24} {:<21} NEXT FIRE",
        "NAME", "EXPRESSION", "TIMEZONE", "FUNCTION", "LAST FIRED"
    );
    for s in all {
        let last = match s["last_fired_ms"].as_i64() {
            Some(ms) => when(Some(ms), None)
                .split(" (")
                .next()
                .unwrap_or("")
                .to_string(),
            None => "-".into(),
        };
        println!(
            "{:<24} {:<28} {:<16} {:<24} {:<21} {}",
            s["name"].as_str().unwrap_or(""),
            s["expression"].as_str().unwrap_or(""),
            s["timezone"].as_str().unwrap_or(""),
            target(&s),
            last,
            when(s["next_fire_ms"].as_i64(), s["enabled"].as_bool()),
        );
    }
    Ok(0)
}

async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    client
        .send(
            client
                .http
                .delete(client.url(&format!("/_nimbus/schedules/{}", a.name))),
        )
        .await?;
    println!("Removed {}", a.name);
    Ok(0)
}

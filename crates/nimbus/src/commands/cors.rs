//! `nimbus cors set|show|clear`: the gateway API's CORS configuration.

use crate::client::Client;
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Turn CORS on (or replace its configuration): preflights are answered by the
    /// gateway and CORS headers added to every response for an allowed origin.
    /// `nimbus cors set --origin https://app.example.com --method GET --method POST
    /// --header content-type --max-age 300`
    Set(SetArgs),
    /// Print the configuration.
    Show,
    /// Turn CORS off.
    Clear,
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// An allowed origin (scheme://host[:port]) or * (repeatable, or comma-separated).
    #[arg(
        long = "origin",
        value_name = "ORIGIN",
        required = true,
        value_delimiter = ','
    )]
    origins: Vec<String>,
    /// An allowed method, or * (repeatable, or comma-separated).
    #[arg(long = "method", value_name = "METHOD", value_delimiter = ',')]
    methods: Vec<String>,
    /// A request header a preflight may ask for, or * (repeatable, or comma-separated).
    #[arg(long = "header", value_name = "NAME", value_delimiter = ',')]
    headers: Vec<String>,
    /// A response header scripts may read (repeatable, or comma-separated).
    #[arg(long = "expose-header", value_name = "NAME", value_delimiter = ',')]
    expose_headers: Vec<String>,
    /// Send access-control-allow-credentials: true (not with the * origin).
    #[arg(long)]
    credentials: bool,
    /// Seconds a browser may cache a preflight's answer (0 to 86400).
    #[arg(long, value_name = "SECONDS")]
    max_age: Option<u32>,
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Set(a) => {
            let mut body = json!({
                "allow_origins": a.origins,
                "allow_methods": a.methods,
                "allow_headers": a.headers,
                "expose_headers": a.expose_headers,
                "allow_credentials": a.credentials,
            });
            if let Some(m) = a.max_age {
                body["max_age"] = json!(m);
            }
            let resp = client
                .send(client.http.put(client.url("/_nimbus/cors")).json(&body))
                .await?;
            let v: Value = resp.json().await?;
            println!("CORS on");
            print(&v["cors"]);
        }
        Cmd::Show => {
            let v = client.get_json("/_nimbus/cors").await?;
            if v["cors"].is_null() {
                println!("CORS off");
            } else {
                print(&v["cors"]);
            }
        }
        Cmd::Clear => {
            client
                .send(client.http.delete(client.url("/_nimbus/cors")))
                .await?;
            println!("CORS off");
        }
    }
    Ok(0)
}

fn print(c: &Value) {
    let list = |k: &str| {
        let items: Vec<&str> = c[k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    println!("origins          {}", list("allow_origins"));
    println!("methods          {}", list("allow_methods"));
    println!("headers          {}", list("allow_headers"));
    println!("expose headers   {}", list("expose_headers"));
    println!(
        "credentials      {}",
        c["allow_credentials"].as_bool().unwrap_or(false)
    );
    match c["max_age"].as_u64() {
        Some(m) => println!("max age          {m}s"),
        None => println!("max age          -"),
    }
}

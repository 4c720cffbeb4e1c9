//! `nimbus get NAME`

use crate::client::Client;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    name: String,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let v = client
        .get_json(&format!("/_nimbus/functions/{}", a.name))
        .await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

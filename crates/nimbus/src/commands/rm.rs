//! `nimbus rm NAME`

use crate::client::Client;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    name: String,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    client
        .send(
            client
                .http
                .delete(client.url(&format!("/_nimbus/functions/{}", a.name))),
        )
        .await?;
    println!("Deleted {}", a.name);
    Ok(0)
}

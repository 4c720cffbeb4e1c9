//! `nimbus keys ls|rotate`: the data dir's encryption-at-rest keyring (Secrets
//! Manager values, SSM `SecureString`s).
//!
//! * Against the running server (the default): `rotate` asks it to add a key,
//!   make it current and re-encrypt every stored value under it before answering
//!   (`POST /_nimbus/services/secrets/keys/rotate`).
//! * With `--data-dir DIR` (the server stopped, or not reachable): the keyring
//!   file is changed directly; old keys stay, so everything still decrypts, and
//!   the services re-encrypt their values under the new key when the server
//!   next starts. A server running on that dir meanwhile keeps sealing under
//!   its previous key until then (it reloads the file for keys it does not know).

use crate::client::Client;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List the keys (ids and ages, never material) and which one is current.
    Ls(Target),
    /// Add a new key, make it current and re-encrypt existing values under it.
    Rotate(Target),
}

#[derive(clap::Args)]
pub struct Target {
    /// Work on this data dir's keyring file directly instead of the running server.
    #[arg(long, env = "NIMBUS_KEYS_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

fn print_keys(keys: &[nimbus_keyring::KeyInfo]) {
    for k in keys {
        println!(
            "{}{}  created {}",
            k.key_id,
            if k.current { " (current)" } else { "" },
            super::ls::rfc3339(k.created_ms)
        );
    }
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Ls(Target { data_dir: Some(d) }) => {
            let k = open(&d)?;
            print_keys(&k.keys());
        }
        Cmd::Rotate(Target { data_dir: Some(d) }) => {
            let k = open(&d)?;
            let previous = k.current_key_id();
            let id = k.rotate().context("cannot rotate the keyring")?;
            println!("rotated: {previous} -> {id} (values are re-encrypted when the server next starts on {})", d.display());
        }
        Cmd::Ls(Target { data_dir: None }) => {
            let v = client.get_json("/_nimbus/services/secrets/keys").await?;
            let keys: Vec<nimbus_keyring::KeyInfo> = v["Keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| nimbus_keyring::KeyInfo {
                    key_id: k["KeyId"].as_str().unwrap_or("").to_string(),
                    created_ms: k["CreatedMs"].as_i64().unwrap_or(0),
                    current: k["Current"].as_bool().unwrap_or(false),
                })
                .collect();
            print_keys(&keys);
        }
        Cmd::Rotate(Target { data_dir: None }) => {
            let resp = client
                .send(
                    client
                        .http
                        .post(client.url("/_nimbus/services/secrets/keys/rotate")),
                )
                .await?;
            let v: Value = resp.json().await.context("server sent invalid JSON")?;
            println!(
                "rotated: {} -> {}",
                v["PreviousKeyId"].as_str().unwrap_or("?"),
                v["KeyId"].as_str().unwrap_or("?")
            );
            for r in v["Reencrypted"].as_array().into_iter().flatten() {
                println!(
                    "  re-encrypted {} value(s) in {}",
                    r[1],
                    r[0].as_str().unwrap_or("?")
                );
            }
            let failed = v["Failed"].as_array().cloned().unwrap_or_default();
            for f in &failed {
                eprintln!(
                    "  {} failed: {} (its values still decrypt under the old key)",
                    f[0].as_str().unwrap_or("?"),
                    f[1].as_str().unwrap_or("?")
                );
            }
            if !failed.is_empty() {
                return Ok(1);
            }
        }
    }
    Ok(0)
}

fn open(dir: &std::path::Path) -> Result<std::sync::Arc<nimbus_keyring::Keyring>> {
    if !nimbus_keyring::keyring_path(dir).exists() {
        anyhow::bail!(
            "no keyring in {} (it is created when the server first starts on that data dir)",
            dir.display()
        );
    }
    nimbus_keyring::Keyring::open(dir).context("cannot open the keyring")
}

//! The layers an app declares (sls `layers:`, SAM `AWS::Serverless::LayerVersion`):
//! zipped and published through the Lambda API before the functions deploy, and
//! only when their content or settings changed — the latest version is reused
//! otherwise, as CloudFormation keeps a layer version whose properties did not
//! change.

use crate::client::Client;
use crate::package;
use anyhow::{bail, Context, Result};
use base64::Engine;
use nimbus_manifest::{App, Layer, LayerUse};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What [`publish`] did: each app layer's version ARN by logical id, and the
/// versions it published (deleted again if the deploy rolls back).
#[derive(Debug, Default)]
pub struct Published {
    pub arns: BTreeMap<String, String>,
    pub new_versions: Vec<(String, u64)>,
}

impl Published {
    /// A function's layer version ARNs, in order.
    pub fn resolve(&self, uses: &[LayerUse]) -> Result<Vec<String>> {
        uses.iter()
            .map(|u| match u {
                LayerUse::Arn(a) => Ok(a.clone()),
                LayerUse::App(id) => self
                    .arns
                    .get(id)
                    .cloned()
                    .with_context(|| format!("layer {id} was not published")),
            })
            .collect()
    }
}

fn versions_path(name: &str) -> String {
    format!(
        "/2018-10-31/layers/{}/versions",
        super::app_deploy::path_seg(name)
    )
}

/// The body PublishLayerVersion would get for `l` (without its content).
fn settings(l: &Layer) -> Value {
    let mut v = json!({ "Description": l.description });
    if !l.compatible_runtimes.is_empty() {
        v["CompatibleRuntimes"] = json!(l.compatible_runtimes);
    }
    if !l.compatible_architectures.is_empty() {
        v["CompatibleArchitectures"] = json!(l.compatible_architectures);
    }
    if let Some(li) = &l.license_info {
        v["LicenseInfo"] = json!(li);
    }
    v
}

/// Whether the published version `cur` (GetLayerVersion's answer) already is `l`
/// with content `sha_b64`.
fn same(cur: &Value, l: &Layer, sha_b64: &str) -> bool {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    cur["Content"]["CodeSha256"].as_str() == Some(sha_b64)
        && cur["Description"].as_str().unwrap_or("") == l.description
        && list(&cur["CompatibleRuntimes"]) == l.compatible_runtimes
        && list(&cur["CompatibleArchitectures"]) == l.compatible_architectures
        && cur["LicenseInfo"].as_str() == l.license_info.as_deref()
}

/// The newest version of layer `name`, as GetLayerVersion answers, if any.
async fn latest(client: &Client, name: &str) -> Result<Option<Value>> {
    let Some(list) = super::app_deploy::get_optional(client, &versions_path(name)).await? else {
        return Ok(None);
    };
    let newest = list["LayerVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["Version"].as_u64())
        .max();
    match newest {
        Some(n) => {
            super::app_deploy::get_optional(client, &format!("{}/{n}", versions_path(name))).await
        }
        None => Ok(None),
    }
}

async fn zip(l: &Layer) -> Result<(Vec<u8>, String)> {
    let dir = l.content.clone();
    let zip = tokio::task::spawn_blocking(move || package::bundle(&dir)).await??;
    let sha_b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&zip).as_slice());
    Ok((zip, sha_b64))
}

/// What `--dry-run` shows: `(publish|keep, layer name)` per layer.
pub async fn plan(client: &Client, app: &App) -> Result<Vec<(&'static str, String)>> {
    let mut rows = Vec::new();
    for l in &app.layers {
        let (_, sha_b64) = zip(l).await?;
        let keep = latest(client, &l.name)
            .await?
            .is_some_and(|cur| same(&cur, l, &sha_b64));
        rows.push((if keep { "keep" } else { "publish" }, l.name.clone()));
    }
    Ok(rows)
}

/// Publish every layer of `app` whose content or settings changed, recording in
/// `out` as it goes (so a failure half-way can still be undone).
pub async fn publish(client: &Client, app: &App, out: &mut Published) -> Result<()> {
    for l in &app.layers {
        let (zip, sha_b64) = zip(l).await?;
        if let Some(cur) = latest(client, &l.name).await? {
            if same(&cur, l, &sha_b64) {
                let arn = cur["LayerVersionArn"]
                    .as_str()
                    .context("GetLayerVersion answer lacks LayerVersionArn")?;
                eprintln!("  layer {} unchanged ({arn})", l.name);
                out.arns.insert(l.logical_id.clone(), arn.to_string());
                continue;
            }
        }
        let size = zip.len() as u64;
        let mut body = settings(l);
        body["Content"] =
            json!({ "ZipFile": base64::engine::general_purpose::STANDARD.encode(&zip) });
        let v: Value = client
            .send(
                client
                    .http
                    .post(client.url(&versions_path(&l.name)))
                    .json(&body),
            )
            .await
            .with_context(|| format!("publishing layer {}", l.name))?
            .json()
            .await?;
        let (Some(arn), Some(version)) = (v["LayerVersionArn"].as_str(), v["Version"].as_u64())
        else {
            bail!("PublishLayerVersion answer lacks LayerVersionArn/Version: {v}");
        };
        eprintln!(
            "  layer {} published ({}, {arn})",
            l.name,
            super::human_bytes(size)
        );
        out.arns.insert(l.logical_id.clone(), arn.to_string());
        out.new_versions.push((l.name.clone(), version));
    }
    Ok(())
}

/// Delete the versions [`publish`] created (a rolled-back deploy).
pub async fn unpublish(client: &Client, p: &Published) {
    for (name, version) in &p.new_versions {
        let r = client
            .send(
                client
                    .http
                    .delete(client.url(&format!("{}/{version}", versions_path(name)))),
            )
            .await;
        if let Err(e) = r {
            eprintln!("  could not delete layer {name} version {version}: {e:#}");
        }
    }
}

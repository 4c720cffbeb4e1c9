//! `nimbus app ls|show|rm`: the apps the server's app engine knows
//! (`/_nimbus/apps`), their resources with physical ids, outputs and exports.
//! `rm` removes the app's resources (reverse dependency order, `DeletionPolicy:
//! Retain` kept), then its functions, routes and schedules.

use crate::client::Client;
use anyhow::Result;
use nimbus_manifest::APP_TAG;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List apps.
    Ls,
    /// Show an app: its resources (logical id, type, physical id), outputs,
    /// exports, functions and its last changes.
    Show { name: String },
    /// Remove an app: its resources, functions, routes and schedules.
    Rm { name: String },
}

fn seg(s: &str) -> String {
    super::mappings::enc(s)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The functions tagged as the app's.
async fn functions_of(client: &Client, app: &str) -> Result<Vec<String>> {
    let fns = client.get_json("/_nimbus/functions").await?;
    Ok(fns["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["function"]["tags"][APP_TAG] == app)
        .filter_map(|f| f["function"]["name"].as_str().map(str::to_string))
        .collect())
}

pub async fn run(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Ls => {
            let v = client.get_json("/_nimbus/apps").await?;
            let apps = v["Apps"].as_array().cloned().unwrap_or_default();
            if apps.is_empty() {
                println!("no apps");
                return Ok(0);
            }
            let w = apps
                .iter()
                .map(|a| text(&a["Name"]).len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!("{:<w$}  {:<20}  RESOURCES", "NAME", "STATUS");
            for a in apps {
                println!(
                    "{:<w$}  {:<20}  {}",
                    text(&a["Name"]),
                    text(&a["Status"]),
                    text(&a["Resources"])
                );
            }
            Ok(0)
        }
        Cmd::Show { name } => {
            let v = client
                .get_json(&format!("/_nimbus/apps/{}", seg(&name)))
                .await?;
            println!("App:    {}", text(&v["Name"]));
            println!("Status: {}", text(&v["Status"]));
            let fns = functions_of(client, &name).await?;
            if !fns.is_empty() {
                println!("Functions:");
                for f in fns {
                    println!("  {f}");
                }
            }
            let res = v["Resources"].as_array().cloned().unwrap_or_default();
            if !res.is_empty() {
                let w0 = res
                    .iter()
                    .map(|r| text(&r["LogicalResourceId"]).len())
                    .max()
                    .unwrap_or(0);
                let w1 = res
                    .iter()
                    .map(|r| text(&r["ResourceType"]).len())
                    .max()
                    .unwrap_or(0);
                println!("Resources:");
                for r in &res {
                    println!(
                        "  {:<w0$}  {:<w1$}  {}{}",
                        text(&r["LogicalResourceId"]),
                        text(&r["ResourceType"]),
                        text(&r["PhysicalResourceId"]),
                        if r["DeletionPolicy"] == "Retain" {
                            "  (retain)"
                        } else {
                            ""
                        }
                    );
                }
            }
            if let Some(o) = v["Outputs"].as_object().filter(|o| !o.is_empty()) {
                println!("Outputs:");
                for (k, val) in o {
                    println!("  {k}: {}", text(val));
                }
            }
            for e in v["Exports"].as_array().into_iter().flatten() {
                println!("Export: {} = {}", text(&e["Name"]), text(&e["Value"]));
            }
            let gw = &v["Gateway"];
            let auths: Vec<String> = gw["Authorizers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            if !auths.is_empty() {
                println!("Authorizers: {}", auths.join(", "));
            }
            if let Some(o) = gw["Cors"]["allow_origins"].as_array() {
                let o: Vec<String> = o.iter().map(text).collect();
                println!(
                    "CORS: the gateway's configuration (origins {})",
                    o.join(", ")
                );
            }
            if let Some(c) = v["Changes"].as_array().and_then(|c| c.first()) {
                println!(
                    "Last change: #{} {} {}{}",
                    text(&c["Id"]),
                    text(&c["Kind"]),
                    text(&c["State"]),
                    c["Error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            Ok(0)
        }
        Cmd::Rm { name } => {
            let fns = functions_of(client, &name).await?;
            // What the app set on the gateway, before its record goes.
            let recorded = match client
                .get_json(&format!("/_nimbus/apps/{}", seg(&name)))
                .await
            {
                Ok(v) => v["Gateway"].clone(),
                Err(_) => Value::Null,
            };
            match client
                .send(
                    client
                        .http
                        .delete(client.url(&format!("/_nimbus/apps/{}", seg(&name)))),
                )
                .await
            {
                Ok(resp) => {
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    for p in v["plan"].as_array().into_iter().flatten() {
                        println!(
                            "{} {} ({})",
                            if p["detail"].is_string() {
                                "Retained"
                            } else {
                                "Deleted"
                            },
                            text(&p["logical_id"]),
                            text(&p["physical_id"]),
                        );
                    }
                }
                // An app deployed before the engine, or functions only: nothing there.
                Err(e)
                    if e.to_string().contains("ResourceNotFoundException") && !fns.is_empty() => {}
                Err(e) => return Err(e),
            }
            // Routes and schedules of the app, then its functions.
            let routes = client.get_json("/_nimbus/routes").await?;
            for r in routes["routes"].as_array().into_iter().flatten() {
                let f = r["function"].as_str().unwrap_or("");
                if fns.iter().any(|n| n == f) {
                    let key = text(&r["route_key"]);
                    client
                        .send(client.http.delete(
                            client.url(&format!("/_nimbus/routes?route_key={}", seg(&key))),
                        ))
                        .await?;
                    println!("Deleted route {key}");
                }
            }
            // Its authorizers (no route uses them now) and CORS configuration.
            super::app_gateway::remove(client, &name, &recorded).await?;
            if let Ok(s) = client.get_json("/_nimbus/schedules").await {
                for sch in s["schedules"].as_array().into_iter().flatten() {
                    if sch["app"] == name.as_str() {
                        let n = text(&sch["name"]);
                        client
                            .send(
                                client
                                    .http
                                    .delete(client.url(&format!("/_nimbus/schedules/{}", seg(&n)))),
                            )
                            .await?;
                        println!("Deleted schedule {n}");
                    }
                }
            }
            for f in &fns {
                client
                    .send(
                        client
                            .http
                            .delete(client.url(&format!("/_nimbus/functions/{}", seg(f)))),
                    )
                    .await?;
                println!("Deleted function {f}");
            }
            println!("Removed app {name}");
            Ok(0)
        }
    }
}

//! The gateway settings of an app (`nimbus deploy`, `nimbus app rm`): its HTTP
//! API's CORS configuration and its authorizers, applied through the gateway's
//! own control API (`/_nimbus/cors`, `/_nimbus/authorizers`) — what `nimbus cors`
//! and `nimbus authorizer` do by hand.
//!
//! Ownership: an app's authorizers are named `<app>.<name>` on the server; the
//! CORS configuration (one for the whole gateway) belongs to the app whose last
//! deploy recorded it (the `Gateway` the engine keeps with the app's template). A
//! deploy refuses to replace a CORS configuration set outside the app.
//!
//! A JWT authorizer's keys are found as API Gateway finds them: the issuer's
//! OpenID discovery document (`<issuerUrl>/.well-known/openid-configuration`)
//! names its `jwks_uri`, which the gateway then fetches (and refetches on a new
//! key id).

use super::app_deploy::{get_optional, path_seg};
use crate::client::Client;
use anyhow::{anyhow, bail, Context, Result};
use nimbus_manifest::gateway::{server_name, AuthorizerKind};
use nimbus_manifest::App;
use serde_json::{json, Value};
use std::time::Duration;

/// What the gateway holds now.
pub(crate) struct Current {
    /// The gateway's CORS configuration (`null`: off).
    pub cors: Value,
    /// The app's own authorizers (`<app>.*`), as `GET /_nimbus/authorizers` shows them.
    pub authorizers: Vec<Value>,
    /// The app's last recorded gateway settings (`{"Cors", "Authorizers"}` or null).
    pub recorded: Value,
}

impl Current {
    /// The gateway's CORS configuration now (`null`: off).
    pub(crate) async fn cors_now(client: &Client) -> Result<Value> {
        Ok(client.get_json("/_nimbus/cors").await?["cors"].clone())
    }
}

/// The prefix of the app's authorizer names.
fn prefix(app: &str) -> String {
    format!("{app}.")
}

pub(crate) async fn read(client: &Client, app: &str) -> Result<Current> {
    let cors = client.get_json("/_nimbus/cors").await?["cors"].clone();
    let all = client.get_json("/_nimbus/authorizers").await?;
    let p = prefix(app);
    let authorizers = all["authorizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"].as_str().is_some_and(|n| n.starts_with(&p)))
        .cloned()
        .collect();
    let recorded = match get_optional(client, &format!("/_nimbus/apps/{}", path_seg(app))).await {
        Ok(Some(v)) => v["Gateway"].clone(),
        Ok(None) => Value::Null,
        // An app that never deployed resources: nothing recorded.
        Err(e) if format!("{e:#}").contains("no app named") => Value::Null,
        Err(e) => return Err(e),
    };
    Ok(Current {
        cors,
        authorizers,
        recorded,
    })
}

/// What a deploy changes on the gateway.
#[derive(Default)]
pub(crate) struct Plan {
    /// The CORS configuration to set (normalised as the gateway stores it).
    pub cors: Option<Value>,
    /// Turn CORS off: the app set it before and declares none now.
    pub clear_cors: bool,
    /// `(server name, PUT body, previous or none)`.
    pub put: Vec<(String, Value, Option<Value>)>,
    /// Authorizers of the app no longer declared (their current view).
    pub delete: Vec<Value>,
    /// What the engine records with the template.
    pub record: Value,
}

/// The JWKS URL of an OpenID issuer, from its discovery document.
async fn discover_jwks(client: &Client, issuer: &str) -> Result<String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    // Not through `client.send`: the issuer is not the Nimbus server, and
    // gets no signature.
    let resp = client
        .http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: HTTP {}", resp.status().as_u16());
    }
    let doc: Value = resp
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    if let Some(iss) = doc["issuer"].as_str() {
        if iss != issuer {
            bail!("GET {url}: the document's issuer is {iss:?}, not {issuer:?}");
        }
    }
    doc["jwks_uri"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("GET {url}: no jwks_uri in the discovery document"))
}

/// Check the manifest's settings as the gateway will, find the JWT authorizers'
/// keys, and refuse to take over a CORS configuration set outside the app.
/// Nothing is changed.
pub(crate) async fn plan(client: &Client, app: &App, cur: &Current) -> Result<Plan> {
    let gw = &app.gateway;
    let file = app.manifest.display();
    let mut plan = Plan::default();
    let mut problems = Vec::new();
    if let Some(c) = &gw.cors {
        let parsed: Result<nimbus_gateway::CorsConfig, String> =
            serde_json::from_value(c.clone()).map_err(|e| e.to_string());
        match parsed.and_then(|c| c.normalize().map_err(|e| e.to_string())) {
            Ok(n) => plan.cors = Some(serde_json::to_value(n).expect("json")),
            Err(e) => problems.push(format!("{file}:{}: error: CORS: {e}", gw.cors_line)),
        }
    }
    let owned_cors = !cur.recorded["Cors"].is_null();
    if let Some(want) = &plan.cors {
        if !cur.cors.is_null() && cur.cors != *want && !owned_cors {
            problems.push(format!(
                "the gateway's CORS configuration was set outside app {} (`nimbus cors` or another app): \
                 clear it with `nimbus cors clear` to let the app's manifest set it",
                app.name
            ));
        }
    } else if owned_cors && !cur.cors.is_null() {
        plan.clear_cors = cur.cors == cur.recorded["Cors"];
    }
    let mut names = Vec::new();
    for a in &gw.authorizers {
        let name = server_name(&app.name, &a.name);
        let jwks = match &a.kind {
            AuthorizerKind::Jwt { issuer, .. } => match discover_jwks(client, issuer).await {
                Ok(u) => Some(u),
                Err(e) => {
                    problems.push(format!(
                        "{file}:{}: error: authorizer {}: cannot find the issuer's keys: {e:#}",
                        a.line, a.name
                    ));
                    continue;
                }
            },
            AuthorizerKind::Lambda { .. } => None,
        };
        let mut body = a.server_body(jwks.as_deref());
        body["name"] = json!(name);
        let checked: Result<nimbus_gateway::auth::Authorizer, String> =
            serde_json::from_value(body.clone()).map_err(|e| e.to_string());
        if let Err(e) = checked.and_then(|x| x.validate()) {
            problems.push(format!(
                "{file}:{}: error: authorizer {}: {e}",
                a.line, a.name
            ));
            continue;
        }
        let prev = cur
            .authorizers
            .iter()
            .find(|x| x["name"] == name.as_str())
            .cloned();
        names.push(name.clone());
        plan.put.push((name, body, prev));
    }
    if !problems.is_empty() {
        bail!("{}\nnothing was changed", problems.join("\n"));
    }
    plan.delete = cur
        .authorizers
        .iter()
        .filter(|x| !names.iter().any(|n| x["name"] == n.as_str()))
        .cloned()
        .collect();
    plan.record = json!({
        "Cors": plan.cors.clone().unwrap_or(Value::Null),
        "Authorizers": names,
    });
    Ok(plan)
}

fn authorizer_path(name: &str) -> String {
    format!("/_nimbus/authorizers/{}", path_seg(name))
}

pub(crate) async fn put_authorizer(client: &Client, name: &str, body: &Value) -> Result<()> {
    client
        .send(
            client
                .http
                .put(client.url(&authorizer_path(name)))
                .json(body),
        )
        .await
        .with_context(|| format!("setting authorizer {name}"))?;
    Ok(())
}

pub(crate) async fn delete_authorizer(client: &Client, name: &str) -> Result<()> {
    match client
        .send(client.http.delete(client.url(&authorizer_path(name))))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if format!("{e:#}").contains("(HTTP 404") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing authorizer {name}")),
    }
}

/// The PUT body that recreates an authorizer from its view.
pub(crate) fn restore_body(view: &Value) -> Result<Value> {
    let mut b = view.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("created_ms");
        o.remove("updated_ms");
    }
    if b["jwt"]["secret"] == "(set)" {
        bail!(
            "authorizer {} has a secret the server does not show; set it again with `nimbus authorizer`",
            view["name"]
        );
    }
    Ok(b)
}

/// Set (`Some`) or clear (`null`) the gateway's CORS configuration.
pub(crate) async fn set_cors(client: &Client, cors: &Value) -> Result<()> {
    let req = if cors.is_null() {
        client.http.delete(client.url("/_nimbus/cors"))
    } else {
        client.http.put(client.url("/_nimbus/cors")).json(cors)
    };
    client
        .send(req)
        .await
        .context("setting the gateway's CORS configuration")?;
    Ok(())
}

/// `nimbus app rm`: the app's authorizers, and its CORS configuration when it
/// is still the one the app set. Call after the app's routes are gone.
pub(crate) async fn remove(client: &Client, app: &str, recorded: &Value) -> Result<()> {
    let cur = read(client, app).await?;
    for a in &cur.authorizers {
        let name = a["name"].as_str().unwrap_or("");
        delete_authorizer(client, name).await?;
        println!("Deleted authorizer {name}");
    }
    if !recorded["Cors"].is_null() && cur.cors == recorded["Cors"] {
        set_cors(client, &Value::Null).await?;
        println!("Cleared the gateway's CORS configuration");
    }
    Ok(())
}

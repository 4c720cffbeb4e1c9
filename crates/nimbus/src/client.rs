//! HTTP client for the server's API, shared by the client subcommands.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(endpoint: &str) -> Self {
        Self {
            base: endpoint.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .expect("http client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Send a request; a non-2xx answer becomes an error carrying the server's message.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the Nimbus server at {} (is `nimbus up` running?)",
                    self.base
                )
            } else {
                anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(|m| m.as_str().map(str::to_string))
            })
            .unwrap_or(body);
        if code.is_empty() {
            Err(anyhow!("{msg} (HTTP {status})"))
        } else {
            Err(anyhow!("{code}: {msg}"))
        }
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let resp = self.send(self.http.get(self.url(path))).await?;
        resp.json().await.context("server sent invalid JSON")
    }
}

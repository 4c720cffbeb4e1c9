//! HTTP client for the server's API, shared by the client subcommands. With an
//! access key it signs every request with SigV4 (nimbus-auth's [`Signer`]), as a
//! server started with `--credentials` requires.

use anyhow::{anyhow, bail, Context, Result};
use nimbus_auth::{Credentials, Signer};
use serde_json::Value;

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    /// Signers for the control API (`nimbus`) and the Lambda API (`lambda`).
    signers: Option<(Signer, Signer)>,
    /// The credentials and region, for requests to the other AWS APIs ([`Client::send_as`]).
    credentials: Option<(Credentials, String)>,
}

/// The signing credentials: `--access-key`/`--secret-key` (or `NIMBUS_ACCESS_KEY`/
/// `NIMBUS_SECRET_KEY`), else `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`; the
/// region from `AWS_REGION`/`AWS_DEFAULT_REGION`. `None`: send unsigned.
pub fn credentials(
    access_key: Option<String>,
    secret_key: Option<String>,
) -> Result<Option<Credentials>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (key, secret) = match (access_key, secret_key) {
        (Some(k), Some(s)) => (k, s),
        (Some(_), None) => bail!("--access-key needs --secret-key (or NIMBUS_SECRET_KEY)"),
        (None, Some(_)) => bail!("--secret-key needs --access-key (or NIMBUS_ACCESS_KEY)"),
        (None, None) => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => (k, s),
            (None, None) => return Ok(None),
            (Some(_), None) => bail!("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
            (None, Some(_)) => bail!("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"),
        },
    };
    Ok(Some(Credentials::new(key, secret)))
}

impl Client {
    pub fn new(endpoint: &str, credentials: Option<Credentials>) -> Self {
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| nimbus_core::DEFAULT_REGION.to_owned());
        Self {
            base: endpoint.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .expect("http client"),
            signers: credentials.clone().map(|c| {
                (
                    Signer::new(c.clone(), &region, "nimbus"),
                    Signer::new(c, &region, "lambda"),
                )
            }),
            credentials: credentials.map(|c| (c, region)),
        }
    }

    /// Sign the request when the client has credentials. A body that is a stream
    /// (code uploads) is signed as `UNSIGNED-PAYLOAD`.
    fn sign(&self, req: &mut reqwest::Request) -> Result<()> {
        let Some((control, lambda)) = &self.signers else {
            return Ok(());
        };
        let uri: http::Uri = req.url().as_str().parse().context("request URL")?;
        let signer = if uri.path().starts_with("/_nimbus/") {
            control
        } else {
            lambda
        };
        let method = req.method().as_str().to_owned();
        let body = req.body().map(|b| b.as_bytes().map(<[u8]>::to_vec));
        let body = match body {
            // A streamed body is not known up front.
            Some(None) => None,
            Some(Some(bytes)) => Some(bytes),
            None => Some(Vec::new()),
        };
        signer.sign(&method, &uri, req.headers_mut(), body.as_deref());
        Ok(())
    }

    /// Whether requests are signed (the client has credentials).
    pub fn signs(&self) -> bool {
        self.credentials.is_some()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Send a request; a non-2xx answer becomes an error carrying the server's message.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let mut req = req.build().context("cannot build the request")?;
        self.sign(&mut req)?;
        self.execute(req).await
    }

    /// Send a request to another AWS API on the edge (`sns`, `events`, `s3`, …),
    /// signed for that service when the client has credentials; a non-2xx
    /// answer becomes an error with the service's code and message.
    pub async fn send_as(
        &self,
        service: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut req = req.build().context("cannot build the request")?;
        if let Some((c, region)) = &self.credentials {
            let uri: http::Uri = req.url().as_str().parse().context("request URL")?;
            let method = req.method().as_str().to_owned();
            let body = req
                .body()
                .and_then(|b| b.as_bytes())
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            Signer::new(c.clone(), region, service).sign(
                &method,
                &uri,
                req.headers_mut(),
                Some(&body),
            );
        }
        self.execute(req).await
    }

    async fn execute(&self, req: reqwest::Request) -> Result<reqwest::Response> {
        let resp = self.http.execute(req).await.map_err(|e| {
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
        // An XML error (awsQuery, S3): `<Code>` and `<Message>`.
        let xml = |tag: &str| {
            let open = format!("<{tag}>");
            let start = body.find(&open)? + open.len();
            let end = body[start..].find("</")?;
            Some(body[start..start + end].to_string())
        };
        let code = if code.is_empty() {
            xml("Code").unwrap_or_default()
        } else {
            code
        };
        let msg = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(|m| m.as_str().map(str::to_string))
            })
            .or_else(|| xml("Message"))
            .unwrap_or(body);
        match (code.as_str(), &self.signers) {
            ("MissingAuthenticationTokenException", None) => Err(anyhow!(
                "the server at {} requires signed requests: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or --access-key and --secret-key) to one of its \
                 --credentials",
                self.base
            )),
            ("UnrecognizedClientException" | "InvalidSignatureException", Some((signer, _))) => {
                Err(anyhow!(
                    "{code}: {msg} (signed with access key {}; check --access-key/--secret-key \
                 or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
                    signer.access_key_id()
                ))
            }
            ("", _) => Err(anyhow!("{msg} (HTTP {status})")),
            _ => Err(anyhow!("{code}: {msg}")),
        }
    }

    pub async fn get_text(&self, path: &str) -> Result<String> {
        let resp = self.send(self.http.get(self.url(path))).await?;
        resp.text().await.context("cannot read the server's answer")
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let resp = self.send(self.http.get(self.url(path))).await?;
        resp.json().await.context("server sent invalid JSON")
    }
}

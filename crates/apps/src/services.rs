//! Calling the AWS services in process, through their public operations.
//!
//! A provider never writes a service's database: it builds the request an SDK
//! would send (awsJson with `X-Amz-Target`, an awsQuery form, a REST path) and
//! hands it to that service's [`Frontend`] with an [`EdgeContext`] naming the
//! account root — the edge's job for a signed request, done here for the
//! platform. So a resource the engine creates is exactly what a client creating
//! it through the API would get, with the same validation and errors.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use nimbus_protocol::{EdgeContext, Frontend, Protocol};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// An AWS error answer of a service call, or a transport problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {operation}: {code}: {message}")]
pub struct CallError {
    pub service: String,
    pub operation: String,
    pub status: u16,
    /// The AWS error code (`QueueDoesNotExist`, `ResourceNotFoundException`, …).
    pub code: String,
    pub message: String,
}

impl CallError {
    /// Whether the service said the thing addressed does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
            || self.code.contains("NotFound")
            || self.code.contains("NonExistent")
            || self.code.contains("DoesNotExist")
            || self.code == "NoSuchBucket"
            || self.code == "ParameterNotFound"
            || self.code == "NoSuchEntity"
    }
}

/// The service front-ends, by their API name (`sqs`, `sns`, `lambda`, …).
#[derive(Clone, Default)]
pub struct Services {
    frontends: Arc<HashMap<&'static str, Arc<dyn Frontend>>>,
    pub region: String,
    pub account_id: String,
}

impl Services {
    pub fn new(frontends: &[Arc<dyn Frontend>], region: &str, account_id: &str) -> Self {
        Self {
            frontends: Arc::new(
                frontends
                    .iter()
                    .map(|f| (f.meta().name, f.clone()))
                    .collect(),
            ),
            region: region.to_string(),
            account_id: account_id.to_string(),
        }
    }

    /// Whether a service of that name is served.
    pub fn has(&self, service: &str) -> bool {
        self.frontends.contains_key(service)
    }

    async fn send(
        &self,
        service: &str,
        operation: &str,
        protocol: Protocol,
        mut req: http::Request<Body>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), CallError> {
        let err = |code: &str, message: String| CallError {
            service: service.to_string(),
            operation: operation.to_string(),
            status: 500,
            code: code.to_string(),
            message,
        };
        let fe = self
            .frontends
            .get(service)
            .ok_or_else(|| err("ServiceUnavailable", format!("no service {service}")))?;
        req.extensions_mut().insert(EdgeContext {
            request_id: nimbus_core::new_request_id(),
            region: self.region.clone(),
            principal: nimbus_core::Principal::Root,
            protocol,
        });
        let resp = fe.call(req).await;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| err("InternalFailure", format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// An awsJson operation (`target` without its prefix: `CreateQueue`).
    pub async fn json(
        &self,
        service: &str,
        operation: &str,
        body: Value,
    ) -> Result<Value, CallError> {
        let fe = self.frontends.get(service).cloned();
        let meta = fe.as_ref().map(|f| f.meta());
        let protocol = meta
            .and_then(|m| {
                m.protocols
                    .iter()
                    .copied()
                    .find(|p| matches!(p, Protocol::AwsJson10 | Protocol::AwsJson11))
            })
            .unwrap_or(Protocol::AwsJson11);
        let prefix = meta.and_then(|m| m.target_prefix).unwrap_or("");
        let req = http::Request::builder()
            .method(Method::POST)
            .uri("/")
            .header("x-amz-target", format!("{prefix}.{operation}"))
            .header(
                "content-type",
                if protocol == Protocol::AwsJson10 {
                    "application/x-amz-json-1.0"
                } else {
                    "application/x-amz-json-1.1"
                },
            )
            .body(Body::from(body.to_string()))
            .expect("a valid request");
        let (status, _, bytes) = self.send(service, operation, protocol, req).await?;
        let v: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(v);
        }
        let code = v["__type"]
            .as_str()
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
            .unwrap_or_default();
        let message = v["message"]
            .as_str()
            .or(v["Message"].as_str())
            .unwrap_or_default()
            .to_string();
        Err(CallError {
            service: service.into(),
            operation: operation.into(),
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// An awsQuery operation; the XML answer's text.
    pub async fn query(
        &self,
        service: &str,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, CallError> {
        let version = self
            .frontends
            .get(service)
            .map(|f| f.meta().api_version)
            .unwrap_or("");
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action);
            form.append_pair("Version", version);
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let req = http::Request::builder()
            .method(Method::POST)
            .uri("/")
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(Body::from(body))
            .expect("a valid request");
        let (status, _, bytes) = self.send(service, action, Protocol::AwsQuery, req).await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status.is_success() {
            return Ok(text);
        }
        Err(CallError {
            service: service.into(),
            operation: action.into(),
            status: status.as_u16(),
            code: xml_text(&text, "Code").unwrap_or_default(),
            message: xml_text(&text, "Message").unwrap_or_default(),
        })
    }

    /// A REST operation (restXml or restJson1, the service's own); the answer's
    /// headers and body. `operation` only names the call in errors.
    pub async fn rest(
        &self,
        service: &str,
        operation: &str,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(HeaderMap, Bytes), CallError> {
        let protocol = self
            .frontends
            .get(service)
            .map(|f| f.meta().protocol)
            .unwrap_or(Protocol::RestJson1);
        let mut b = http::Request::builder().method(method).uri(path_and_query);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if service == "s3" {
            b = b.header("host", "s3.amazonaws.com");
        }
        let req = b.body(Body::from(body)).map_err(|e| CallError {
            service: service.into(),
            operation: operation.into(),
            status: 400,
            code: "ValidationError".into(),
            message: format!("invalid request: {e}"),
        })?;
        let (status, headers, bytes) = self.send(service, operation, protocol, req).await?;
        if status.is_success() {
            return Ok((headers, bytes));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (code, message) = if protocol == Protocol::RestXml {
            (
                xml_text(&text, "Code").unwrap_or_default(),
                xml_text(&text, "Message").unwrap_or_default(),
            )
        } else {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(':').next().unwrap_or(s).to_string())
                .or_else(|| v["Type"].as_str().map(str::to_string))
                .unwrap_or_default();
            let message = v["message"]
                .as_str()
                .or(v["Message"].as_str())
                .unwrap_or(&text)
                .to_string();
            (code, message)
        };
        Err(CallError {
            service: service.into(),
            operation: operation.into(),
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// The text of the first `<tag>` element of an XML document (unescaped).
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

/// The texts of every `<tag>` element, in document order.
pub fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut inside = false;
    let mut cur = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == tag.as_bytes() => {
                inside = true;
                cur.clear();
            }
            Ok(Event::Text(t)) if inside => {
                if let Ok(s) = t.decode() {
                    cur.push_str(&quick_xml::escape::unescape(&s).unwrap_or(s.clone()));
                }
            }
            Ok(Event::GeneralRef(r)) if inside => {
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                let s = match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                };
                cur.push_str(s);
            }
            Ok(Event::End(e)) if inside && e.local_name().as_ref() == tag.as_bytes() => {
                inside = false;
                out.push(std::mem::take(&mut cur));
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xml_texts() {
        let x = "<R><TopicArn>arn:a&amp;b</TopicArn><Code>X</Code><TopicArn>t2</TopicArn></R>";
        assert_eq!(xml_text(x, "Code").as_deref(), Some("X"));
        assert_eq!(xml_all(x, "TopicArn"), vec!["arn:a&b", "t2"]);
    }
}

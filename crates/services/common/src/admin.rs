//! The admin surface most services need, written once: [`JsonAdmin`], a
//! [`ServiceAdmin`] of JSON routes (`GET`/`POST` on a path under
//! `/_nimbus/services/<name>`), with the control API's `{"Type","Message"}`
//! errors, and [`Metrics`], Prometheus text with counters named `…_total`.

use crate::ServiceAdmin;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use nimbus_protocol::ResponseFuture;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// An admin route's failure: the status and the control API's error body.
#[derive(Debug, Clone)]
pub struct AdminError {
    pub status: http::StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl AdminError {
    pub fn new(status: http::StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// `500 InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            message,
        )
    }
}

/// What a route handler gets: the query parameters of the request.
#[derive(Debug, Clone, Default)]
pub struct AdminRequest {
    pub query: Vec<(String, String)>,
}

impl AdminRequest {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<Value, AdminError>> + Send>>;
type Handler = Arc<dyn Fn(AdminRequest) -> Reply + Send + Sync>;

/// A [`ServiceAdmin`] answering JSON routes; anything else is `404 NotFound`.
pub struct JsonAdmin {
    name: &'static str,
    routes: Vec<(http::Method, &'static str, Handler)>,
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl JsonAdmin {
    /// An admin surface mounted at `/_nimbus/services/<name>`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            routes: Vec::new(),
            metrics: None,
        }
    }

    fn route<F, Fut>(mut self, method: http::Method, path: &'static str, f: F) -> Self
    where
        F: Fn(AdminRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, AdminError>> + Send + 'static,
    {
        self.routes
            .push((method, path, Arc::new(move |r| Box::pin(f(r)) as Reply)));
        self
    }

    /// Answer `GET /_nimbus/services/<name><path>` (`""` is the root).
    pub fn get<F, Fut>(self, path: &'static str, f: F) -> Self
    where
        F: Fn(AdminRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, AdminError>> + Send + 'static,
    {
        self.route(http::Method::GET, path, f)
    }

    /// Answer `POST /_nimbus/services/<name><path>`.
    pub fn post<F, Fut>(self, path: &'static str, f: F) -> Self
    where
        F: Fn(AdminRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, AdminError>> + Send + 'static,
    {
        self.route(http::Method::POST, path, f)
    }

    /// The service's `/metrics` lines, read at scrape time.
    pub fn metrics(mut self, f: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(f));
        self
    }
}

/// A JSON answer.
pub fn json_response(status: http::StatusCode, v: &Value) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

impl ServiceAdmin for JsonAdmin {
    fn name(&self) -> &'static str {
        self.name
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let prefix = format!("/_nimbus/services/{}", self.name);
        let path = req.uri().path();
        let rest = path
            .split_once(prefix.as_str())
            .map(|(_, r)| r.trim_end_matches('/'))
            .unwrap_or("")
            .to_string();
        let query = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let method = req.method().clone();
        let handler = self
            .routes
            .iter()
            .find(|(m, p, _)| *m == method && *p == rest)
            .map(|(_, _, h)| h.clone());
        let name = self.name;
        Box::pin(async move {
            let out = match handler {
                Some(h) => h(AdminRequest { query }).await,
                None => Err(AdminError::new(
                    http::StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("no such {name} admin resource: {method} {rest}"),
                )),
            };
            match out {
                Ok(v) => json_response(http::StatusCode::OK, &v),
                Err(e) => json_response(e.status, &json!({"Type": e.kind, "Message": e.message})),
            }
        })
    }

    fn metrics(&self) -> String {
        self.metrics.as_ref().map(|f| f()).unwrap_or_default()
    }
}

/// Prometheus text-format lines, each metric with its `# HELP` and `# TYPE`.
#[derive(Debug, Default)]
pub struct Metrics {
    out: String,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn head(&mut self, name: &str, help: &str, kind: &str) {
        self.out
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, v: u64) -> &mut Self {
        self.head(name, help, "gauge");
        self.out.push_str(&format!("{name} {v}\n"));
        self
    }

    /// A gauge with one sample per value of one label.
    pub fn gauge_by<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> &mut Self {
        self.head(name, help, "gauge");
        for (l, v) in samples {
            self.out
                .push_str(&format!("{name}{{{label}=\"{l}\"}} {v}\n"));
        }
        self
    }

    /// A counter; its name gets Prometheus's `_total` suffix if it lacks it.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) -> &mut Self {
        let name = if name.ends_with("_total") {
            name.to_string()
        } else {
            format!("{name}_total")
        };
        self.head(&name, help, "counter");
        self.out.push_str(&format!("{name} {v}\n"));
        self
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_names_counters_total() {
        let text = Metrics::new()
            .gauge("nimbus_x_items", "Items.", 3)
            .gauge_by("nimbus_x_by", "By kind.", "kind", [("a", 1), ("b", 2)])
            .counter("nimbus_x_reads", "Reads.", 7)
            .counter("nimbus_x_writes_total", "Writes.", 1)
            .finish();
        assert_eq!(
            text,
            "# HELP nimbus_x_items Items.\n# TYPE nimbus_x_items gauge\nnimbus_x_items 3\n\
             # HELP nimbus_x_by By kind.\n# TYPE nimbus_x_by gauge\nnimbus_x_by{kind=\"a\"} 1\nnimbus_x_by{kind=\"b\"} 2\n\
             # HELP nimbus_x_reads_total Reads.\n# TYPE nimbus_x_reads_total counter\nnimbus_x_reads_total 7\n\
             # HELP nimbus_x_writes_total Writes.\n# TYPE nimbus_x_writes_total counter\nnimbus_x_writes_total 1\n"
        );
    }

    #[tokio::test]
    async fn routes_answer_json_and_unknown_ones_404() {
        let admin = JsonAdmin::new("thing")
            .get("", |_| async { Ok(json!({"Count": 1})) })
            .post("/run", |r| {
                let now = r.param("now").map(str::to_string);
                async move { Ok(json!({"Now": now})) }
            })
            .post("/fail", |_| async { Err(AdminError::internal("boom")) });
        let call = |method: &str, uri: &str| {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            admin.call(req)
        };
        let body = |r: Response| async move {
            let status = r.status().as_u16();
            let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<Value>(&b).unwrap())
        };
        assert_eq!(
            body(call("GET", "/_nimbus/services/thing/").await).await,
            (200, json!({"Count": 1}))
        );
        assert_eq!(
            body(call("POST", "/_nimbus/services/thing/run?now=5").await).await,
            (200, json!({"Now": "5"}))
        );
        assert_eq!(
            body(call("POST", "/_nimbus/services/thing/fail").await).await,
            (500, json!({"Type": "InternalError", "Message": "boom"}))
        );
        let (status, v) = body(call("GET", "/_nimbus/services/thing/run").await).await;
        assert_eq!((status, v["Type"].as_str()), (404, Some("NotFound")));
    }
}

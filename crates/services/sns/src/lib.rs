//! Nimbus's Amazon SNS: topics (standard and FIFO), subscriptions with filter
//! policies, and signed deliveries to SQS, Lambda, HTTP(S), email and recorded
//! SMS/mobile/Firehose endpoints, wire-compatible with the awsQuery API.
//!
//! * [`ops`]: the API's operation table, generated from the AWS model.
//! * [`api`]: the operations, parameters in and XML out.
//! * [`state`]: topics and subscriptions in memory over `<data>/sns.db`; every
//!   change is one SQLite transaction before the answer. A publish commits its
//!   message and one outbox row per matching subscription together.
//! * [`deliver`]: the outbox drain, at least once per subscription across
//!   restarts and `kill -9`, with each protocol's retries and the subscription's
//!   `RedrivePolicy`.
//! * [`mobile`]: platform applications and endpoints, SMS account attributes,
//!   opt-outs and the SMS sandbox, topics' data-protection policies.
//! * [`sign`]: the signing key and the certificate served at `SigningCertURL`.
//!
//! The admin surface (`/_nimbus/services/sns/…`) lists topics, subscriptions
//! (with pending confirmation tokens), recorded `sms`/`application` deliveries
//! and the outbox backlog, and `POST sms/opt-out?phoneNumber=…` opts a number
//! out as an SMS "STOP" reply does in AWS; its `public/` paths (the certificate, the
//! `SubscribeURL` and `UnsubscribeURL` targets) are the only ones the edge
//! serves without a signature, as AWS serves them.

// Operations answer `AwsError` (the wire's error, as nimbus-protocol does).
#![allow(clippy::result_large_err)]

pub mod api;
pub mod deliver;
pub mod mobile;
pub mod model;
pub mod ops;
pub mod sign;
pub mod state;
pub mod store;

pub use ops::{Op, META};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use nimbus_protocol::{query_response, Frontend, ResponseFuture};
use nimbus_svc_common::{Call, Service, ServiceAdmin, ServiceContext, StartError};
use nimbus_triggers::sinks::{SinkError, SinkResult, TopicMessage, TopicSink};
use nimbus_triggers::BoxFuture;
use serde_json::json;
use state::{PublishInput, Sns};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The front-end the edge registers for this API.
pub struct SnsFrontend {
    sns: Arc<Sns>,
}

impl Frontend for SnsFrontend {
    fn meta(&self) -> &'static nimbus_protocol::ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let sns = self.sns.clone();
        Box::pin(async move {
            let call = match Call::<Op>::decode(req).await {
                Ok(c) => c,
                Err(resp) => return resp,
            };
            let rid = call.request_id.clone();
            match tokio::task::spawn_blocking(move || api::handle(&sns, &call)).await {
                Ok(r) => r,
                Err(e) => nimbus_protocol::error_response(
                    nimbus_protocol::Protocol::AwsQuery,
                    &META,
                    &model::internal(e),
                    &rid,
                ),
            }
        })
    }
}

/// Open `<data>/sns.db` and the signing key, and build the service (no tasks).
pub fn open(ctx: &ServiceContext) -> Result<Arc<Sns>, StartError> {
    let fail = |e: &dyn std::fmt::Display| StartError::new("sns", e);
    let conn = nimbus_store::open_migrated(&ctx.data_dir.join("sns.db"), &store::SCHEMA)
        .map_err(|e| fail(&e))?;
    let inner = Sns::load(conn).map_err(|e| fail(&e))?;
    let signer = sign::Signer::load_or_create(&ctx.data_dir.join("sns")).map_err(|e| fail(&e))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| fail(&e))?;
    Ok(Arc::new(Sns {
        region: ctx.region.clone(),
        account: ctx.account_id.clone(),
        endpoint: ctx.endpoint.trim_end_matches('/').to_string(),
        inner: Mutex::new(inner),
        notify: Default::default(),
        sinks: ctx.sinks.clone(),
        signer,
        metrics: Default::default(),
        http,
        pacing: Default::default(),
    }))
}

/// Start the service: what the server calls once at start.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let sns = open(ctx)?;
    tokio::spawn(deliver::run(sns.clone()));
    ctx.sinks.register_topics(Arc::new(Sink(sns.clone())));
    Ok(Service {
        frontend: Arc::new(SnsFrontend { sns: sns.clone() }),
        admin: Some(Arc::new(Admin(sns))),
    })
}

/// SNS as other services publish into it.
struct Sink(Arc<Sns>);

impl TopicSink for Sink {
    fn topic_exists(&self, topic_arn: &str) -> bool {
        self.0.topic_snapshot(topic_arn).is_some()
    }

    fn publish(&self, topic_arn: &str, msg: TopicMessage) -> BoxFuture<'_, SinkResult<String>> {
        let sns = self.0.clone();
        let arn = topic_arn.to_string();
        Box::pin(async move {
            let input = PublishInput {
                message: msg.message,
                subject: msg.subject,
                structure_json: msg.structure_json,
                attributes: msg
                    .attributes
                    .into_iter()
                    .map(|(k, a)| {
                        use base64::Engine;
                        (
                            k,
                            model::Attr {
                                data_type: a.data_type,
                                string_value: a.string_value,
                                binary_value: a
                                    .binary_value
                                    .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                            },
                        )
                    })
                    .collect(),
                group_id: msg.group_id,
                dedup_id: msg.deduplication_id,
            };
            let r = tokio::task::spawn_blocking(move || sns.publish(&arn, input))
                .await
                .map_err(|e| SinkError::Transient(e.to_string()))?;
            match r {
                Ok((id, _)) => Ok(id),
                Err(e) if e.code == "NotFound" => Err(SinkError::NotFound(e.message)),
                Err(e) if e.status.is_server_error() => Err(SinkError::Transient(e.message)),
                Err(e) => Err(SinkError::Rejected {
                    code: e.code.to_string(),
                    message: e.message,
                }),
            }
        })
    }
}

/// `/_nimbus/services/sns/…`.
struct Admin(Arc<Sns>);

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn admin_error(status: StatusCode, ty: &str, message: &str) -> Response {
    json_response(status, json!({"Type": ty, "Message": message}))
}

impl ServiceAdmin for Admin {
    fn name(&self) -> &'static str {
        "sns"
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let sns = self.0.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let query: BTreeMap<String, String> = req
                .uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            let rest = path
                .strip_prefix("/_nimbus/services/sns")
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string();
            if req.method() == http::Method::POST && rest == "sms/opt-out" {
                // What a "STOP" reply does in AWS: opt the number out.
                let Some(phone) = query.get("phoneNumber").cloned() else {
                    return admin_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameter",
                        "phoneNumber is required",
                    );
                };
                let s = sns.clone();
                return match tokio::task::spawn_blocking(move || s.set_opted_out(&phone, true))
                    .await
                {
                    Ok(Ok(())) => json_response(StatusCode::OK, json!({"OptedOut": true})),
                    Ok(Err(e)) => admin_error(e.status, &e.code, &e.message),
                    Err(e) => admin_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        &e.to_string(),
                    ),
                };
            }
            if req.method() != http::Method::GET {
                return admin_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "GET only (and POST sms/opt-out)",
                );
            }
            let s = sns.clone();
            tokio::task::spawn_blocking(move || admin_get(&s, &rest, &query))
                .await
                .unwrap_or_else(|e| {
                    admin_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        &e.to_string(),
                    )
                })
        })
    }

    fn metrics(&self) -> String {
        let m = &self.0.metrics;
        let (topics, subs, apps, endpoints) = {
            let inner = self.0.lock();
            let count = |table: &str| -> i64 {
                inner
                    .conn
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                    .unwrap_or(0)
            };
            (
                inner.topics.len(),
                inner.subs.len(),
                count("platform_apps"),
                count("endpoints"),
            )
        };
        let backlog = deliver::backlog(&self.0);
        format!(
            "# HELP nimbus_sns_published_total Messages accepted by Publish and PublishBatch.\n\
             # TYPE nimbus_sns_published_total counter\n\
             nimbus_sns_published_total {}\n\
             # HELP nimbus_sns_deliveries_total Deliveries to subscriptions by result.\n\
             # TYPE nimbus_sns_deliveries_total counter\n\
             nimbus_sns_deliveries_total{{result=\"delivered\"}} {}\n\
             nimbus_sns_deliveries_total{{result=\"retried\"}} {}\n\
             nimbus_sns_deliveries_total{{result=\"dead_lettered\"}} {}\n\
             nimbus_sns_deliveries_total{{result=\"dropped\"}} {}\n\
             nimbus_sns_deliveries_total{{result=\"throttled\"}} {}\n\
             # HELP nimbus_sns_outbox_backlog Deliveries waiting in the outbox.\n\
             # TYPE nimbus_sns_outbox_backlog gauge\n\
             nimbus_sns_outbox_backlog {backlog}\n\
             # HELP nimbus_sns_topics Topics.\n\
             # TYPE nimbus_sns_topics gauge\n\
             nimbus_sns_topics {topics}\n\
             # HELP nimbus_sns_subscriptions Subscriptions, confirmed or pending.\n\
             # TYPE nimbus_sns_subscriptions gauge\n\
             nimbus_sns_subscriptions {subs}\n\
             # HELP nimbus_sns_platform_applications Platform applications (mobile push).\n\
             # TYPE nimbus_sns_platform_applications gauge\n\
             nimbus_sns_platform_applications {apps}\n\
             # HELP nimbus_sns_platform_endpoints Platform endpoints (mobile push).\n\
             # TYPE nimbus_sns_platform_endpoints gauge\n\
             nimbus_sns_platform_endpoints {endpoints}\n",
            m.published.load(Ordering::Relaxed),
            m.delivered.load(Ordering::Relaxed),
            m.retried.load(Ordering::Relaxed),
            m.dead_lettered.load(Ordering::Relaxed),
            m.dropped.load(Ordering::Relaxed),
            m.throttled.load(Ordering::Relaxed),
        )
    }
}

fn admin_get(sns: &Arc<Sns>, rest: &str, q: &BTreeMap<String, String>) -> Response {
    let rid = uuid::Uuid::new_v4().to_string();
    match rest {
        "public/SimpleNotificationService-nimbus.pem" => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/x-x509-ca-cert")],
            sns.signer.cert_pem().to_string(),
        )
            .into_response(),
        "public/confirm" => {
            let (Some(topic), Some(token)) = (q.get("TopicArn"), q.get("Token")) else {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    "TopicArn and Token are required",
                );
            };
            match sns.confirm(topic, token) {
                Ok(arn) => query_response(
                    &META,
                    "ConfirmSubscription",
                    &rid,
                    Some(&|w: &mut nimbus_protocol::XmlWriter| {
                        w.element("SubscriptionArn", &arn);
                    }),
                ),
                Err(e) => nimbus_protocol::error_response(
                    nimbus_protocol::Protocol::AwsQuery,
                    &META,
                    &e,
                    &rid,
                ),
            }
        }
        "public/unsubscribe" => {
            let Some(arn) = q.get("SubscriptionArn") else {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    "SubscriptionArn is required",
                );
            };
            match sns.unsubscribe(arn) {
                Ok(()) => query_response(&META, "Unsubscribe", &rid, None),
                Err(e) => nimbus_protocol::error_response(
                    nimbus_protocol::Protocol::AwsQuery,
                    &META,
                    &e,
                    &rid,
                ),
            }
        }
        "topics" => {
            let inner = sns.lock();
            let topics: Vec<_> = inner
                .topics
                .values()
                .map(|t| json!({"TopicArn": t.arn, "Name": t.name, "Attributes": t.attrs, "Tags": t.tags}))
                .collect();
            json_response(StatusCode::OK, json!({"Topics": topics}))
        }
        "subscriptions" => {
            let inner = sns.lock();
            let subs: Vec<_> = inner
                .subs
                .values()
                .filter(|s| q.get("TopicArn").is_none_or(|t| *t == s.topic_arn))
                .map(|s| {
                    json!({
                        "SubscriptionArn": s.arn, "TopicArn": s.topic_arn, "Protocol": s.protocol,
                        "Endpoint": s.endpoint, "Attributes": s.attrs,
                        "PendingConfirmation": !s.confirmed, "Token": s.token,
                    })
                })
                .collect();
            json_response(StatusCode::OK, json!({"Subscriptions": subs}))
        }
        "deliveries" => {
            let inner = sns.lock();
            let proto = q.get("protocol").cloned().unwrap_or_default();
            let rows = inner
                .conn
                .prepare(
                    "SELECT protocol, endpoint, sub_arn, topic_arn, message_id, body, at_ms FROM recorded
                     WHERE ?1 = '' OR protocol = ?1 ORDER BY id",
                )
                .and_then(|mut st| {
                    st.query_map([&proto], |r| {
                        Ok(json!({
                            "Protocol": r.get::<_, String>(0)?, "Endpoint": r.get::<_, String>(1)?,
                            "SubscriptionArn": r.get::<_, String>(2)?, "TopicArn": r.get::<_, String>(3)?,
                            "MessageId": r.get::<_, String>(4)?, "Message": r.get::<_, String>(5)?,
                            "TimestampMs": r.get::<_, i64>(6)?,
                        }))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                });
            match rows {
                Ok(rows) => json_response(StatusCode::OK, json!({"Deliveries": rows})),
                Err(e) => admin_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    &e.to_string(),
                ),
            }
        }
        "outbox" => json_response(StatusCode::OK, json!({"Backlog": deliver::backlog(sns)})),
        _ => admin_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "unknown SNS admin path (topics, subscriptions, deliveries, outbox, public/…)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real requests captured from botocore and the JS SDK v3.
    #[tokio::test]
    async fn captured_sdk_requests_decode_to_their_operation() {
        nimbus_svc_common::testing::assert_captured_requests_decode(
            &nimbus_svc_common::PendingFrontend::<Op>::new(),
            &[],
        )
        .await;
    }
}

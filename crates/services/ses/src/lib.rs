//! Nimbus's Amazon SES: the v1 API (awsQuery, [`v1`]) and the mail engine the
//! SES v2 crate shares ([`mail`], [`store`]), one store `<data>/ses.db`.
//!
//! * Identities (email addresses, domains) are verified at once, as in the
//!   sandbox with its mailbox simulator; sending from an address that is not a
//!   verified identity (nor in a verified domain) is `MessageRejected`.
//! * Every accepted message (and every mail another service sends through the
//!   [`MailSink`], SNS email subscriptions) lands in a durable outbox with its raw
//!   MIME, read back by `/_nimbus/services/mail/messages[/ID]` and `nimbus mail`.
//! * With `nimbus up --smtp-relay smtp://…` a task relays the outbox through that
//!   server (lettre: STARTTLS, TLS, AUTH), recording failures per message.
//! * Configuration sets' event destinations (SNS topics, EventBridge buses) get
//!   SES's event records (send, delivery, bounce, complaint, rendering failure)
//!   from an event outbox committed with the message and drained by a task.

pub mod mail;
pub mod ops;
pub mod store;
pub mod v1;

pub use ops::{Op, META};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use mail::Mail;
use nimbus_protocol::{AwsError, ResponseFuture};
use nimbus_svc_common::{Service, ServiceAdmin, ServiceContext, StartError};
use nimbus_triggers::sinks::{MailSink, OutgoingMail, SinkError, SinkResult};
use nimbus_triggers::BoxFuture;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use store::Kind;

/// The option key of the SMTP relay URL in [`ServiceContext::options`].
pub const SMTP_RELAY_OPTION: &str = "smtp_relay";

/// Everything SES can fail with; [`SesError::v1`] and [`SesError::v2`] say how
/// each API writes it.
#[derive(Debug, thiserror::Error)]
pub enum SesError {
    #[error("{kind} {name} does not exist.", kind = mail::kind_name(*.0), name = .1)]
    NotFound(Kind, String),
    #[error("{kind} {name} already exists.", kind = mail::kind_name(*.0), name = .1)]
    AlreadyExists(Kind, String),
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Invalid(String),
    #[error("Email sending is disabled for your entire Amazon SES account.")]
    Paused,
    #[error("{0}")]
    MissingAttribute(String),
    #[error("{0}")]
    InvalidRenderingParameter(String),
    #[error("{0}")]
    InvalidTemplate(String),
    #[error("{0}")]
    Internal(String),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

fn internal(e: &SesError) -> AwsError {
    tracing::error!(error = %e, "ses internal error");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailure",
        "The request failed because of an internal error.",
    )
}

impl SesError {
    /// The error as SES v1 (awsQuery) answers it.
    pub fn v1(&self) -> AwsError {
        let code = match self {
            SesError::NotFound(Kind::Template, _) => "TemplateDoesNotExist",
            SesError::NotFound(Kind::ConfigSet, _) => "ConfigurationSetDoesNotExist",
            SesError::NotFound(Kind::EventDestination, _) => "EventDestinationDoesNotExist",
            SesError::NotFound(Kind::Identity, _) => "InvalidParameterValue",
            SesError::AlreadyExists(Kind::ConfigSet, _) => "ConfigurationSetAlreadyExists",
            SesError::AlreadyExists(Kind::EventDestination, _) => "EventDestinationAlreadyExists",
            SesError::AlreadyExists(_, _) => "AlreadyExists",
            SesError::Rejected(_) => "MessageRejected",
            SesError::Invalid(_) => "InvalidParameterValue",
            SesError::Paused => "AccountSendingPausedException",
            SesError::MissingAttribute(_) => "MissingRenderingAttribute",
            SesError::InvalidRenderingParameter(_) => "InvalidRenderingParameter",
            SesError::InvalidTemplate(_) => "InvalidTemplate",
            SesError::Internal(_) | SesError::Db(_) => return internal(self),
        };
        AwsError::new(StatusCode::BAD_REQUEST, code, self.to_string())
    }

    /// The error as SES v2 (restJson1) answers it.
    pub fn v2(&self) -> AwsError {
        let (status, code) = match self {
            SesError::NotFound(..) => (StatusCode::NOT_FOUND, "NotFoundException"),
            SesError::AlreadyExists(..) => (StatusCode::BAD_REQUEST, "AlreadyExistsException"),
            SesError::Rejected(_) => (StatusCode::BAD_REQUEST, "MessageRejected"),
            SesError::Paused => (StatusCode::BAD_REQUEST, "SendingPausedException"),
            SesError::Invalid(_)
            | SesError::MissingAttribute(_)
            | SesError::InvalidRenderingParameter(_)
            | SesError::InvalidTemplate(_) => (StatusCode::BAD_REQUEST, "BadRequestException"),
            SesError::Internal(_) | SesError::Db(_) => return internal(self),
        };
        AwsError::new(status, code, self.to_string())
    }
}

/// One engine per data dir, shared by the v1 and v2 front-ends (both `start`s
/// call [`engine`]); its tasks start once.
static ENGINES: Mutex<Option<HashMap<PathBuf, Weak<Mail>>>> = Mutex::new(None);

/// The mail engine of `ctx`'s data dir, opened (and its tasks started, its mail
/// sink registered) by the first caller.
pub fn engine(ctx: &ServiceContext) -> Result<Arc<Mail>, StartError> {
    let mut g = ENGINES.lock().unwrap_or_else(|p| p.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(m) = map.get(&ctx.data_dir).and_then(Weak::upgrade) {
        return Ok(m);
    }
    let store =
        store::Store::open(&ctx.data_dir.join("ses.db")).map_err(|e| StartError::new("ses", e))?;
    let relay = ctx
        .options
        .get(SMTP_RELAY_OPTION)
        .cloned()
        .filter(|s| !s.is_empty());
    if let Some(url) = &relay {
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| StartError::new("ses", format!("--smtp-relay {url}: {e}")))?;
    }
    let m = Arc::new(Mail::new(
        store,
        ctx.region.clone(),
        ctx.account_id.clone(),
        ctx.sinks.clone(),
        relay,
    ));
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        h.spawn(m.clone().run_events());
        if m.relay.is_some() {
            h.spawn(m.clone().run_relay());
        }
    }
    ctx.sinks.register_mail(Arc::new(Outbox(m.clone())));
    map.insert(ctx.data_dir.clone(), Arc::downgrade(&m));
    Ok(m)
}

/// The outbox as other services deliver into it.
struct Outbox(Arc<Mail>);

impl MailSink for Outbox {
    fn send_mail(&self, mail: OutgoingMail) -> BoxFuture<'_, SinkResult<String>> {
        let m = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let raw = mail::build_mime(
                    "email.amazonses.com",
                    &mail.from,
                    &mail.to,
                    &[],
                    &[],
                    &mail.subject,
                    Some(&mail.text),
                    None,
                )
                .map_err(|e| SinkError::Rejected {
                    code: "InvalidParameterValue".into(),
                    message: e.to_string(),
                })?;
                let origin = if mail.origin.is_empty() {
                    "sink"
                } else {
                    &mail.origin
                };
                m.record(
                    origin,
                    &mail.from,
                    &mail.to,
                    &mail.subject,
                    raw,
                    nimbus_core::now_ms(),
                )
                .map_err(|e| SinkError::Transient(e.to_string()))
            })
            .await
            .map_err(|e| SinkError::Transient(e.to_string()))?
        })
    }
}

/// `/_nimbus/services/mail/…`: the outbox.
struct Admin(Arc<Mail>);

fn admin_error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"Type": kind, "Message": message})),
    )
        .into_response()
}

impl ServiceAdmin for Admin {
    fn name(&self) -> &'static str {
        "mail"
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let m = self.0.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let rest = path
                .strip_prefix("/_nimbus/services/mail")
                .unwrap_or("")
                .trim_matches('/')
                .to_string();
            if req.method() != http::Method::GET {
                return admin_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{} {path}", req.method()),
                );
            }
            let parts: Vec<String> = rest.split('/').map(str::to_string).collect();
            let limit: usize = form_limit(&query).unwrap_or(100);
            let store = m.store.clone();
            let out = tokio::task::spawn_blocking(move || -> Result<Response, SesError> {
                match parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["messages"] => {
                        let list: Vec<_> = store
                            .messages(limit)?
                            .iter()
                            .map(|r| mail::message_view(r, false))
                            .collect();
                        Ok(axum::Json(json!({"Messages": list})).into_response())
                    }
                    ["events"] => {
                        let list: Vec<_> = store
                            .events(limit)?
                            .into_iter()
                            .map(|(id, target, kind, payload, attempts, done, error)| {
                                let status = match (done, &error) {
                                    (false, _) => "pending",
                                    (true, None) => "delivered",
                                    (true, Some(_)) => "failed",
                                };
                                json!({
                                    "Id": id,
                                    "Target": target,
                                    "EventType": kind,
                                    "Event": serde_json::from_str::<serde_json::Value>(&payload).unwrap_or_default(),
                                    "Attempts": attempts,
                                    "Status": status,
                                    "LastError": error,
                                })
                            })
                            .collect();
                        Ok(axum::Json(json!({"Events": list})).into_response())
                    }
                    ["messages", id] => match store.message(id)? {
                        Some(r) => Ok(axum::Json(mail::message_view(&r, true)).into_response()),
                        None => Ok(admin_error(StatusCode::NOT_FOUND, "NotFound", format!("no message {id}"))),
                    },
                    ["messages", id, "raw"] => match store.message(id)? {
                        Some(r) => Ok(([(http::header::CONTENT_TYPE, "message/rfc822")], r.raw).into_response()),
                        None => Ok(admin_error(StatusCode::NOT_FOUND, "NotFound", format!("no message {id}"))),
                    },
                    _ => Ok(admin_error(StatusCode::NOT_FOUND, "NotFound", format!("no such resource: /{}", parts.join("/")))),
                }
            })
            .await;
            match out {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => admin_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    e.to_string(),
                ),
                Err(e) => admin_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    e.to_string(),
                ),
            }
        })
    }

    fn metrics(&self) -> String {
        let (pending, failed) = self.0.store.event_counts().unwrap_or((0, 0));
        let m = &self.0;
        format!(
            "# HELP nimbus_ses_messages_accepted Messages SES accepted into the outbox.\n\
             # TYPE nimbus_ses_messages_accepted counter\n\
             nimbus_ses_messages_accepted_total {}\n\
             # HELP nimbus_ses_messages_rejected Sends SES refused with MessageRejected.\n\
             # TYPE nimbus_ses_messages_rejected counter\n\
             nimbus_ses_messages_rejected_total {}\n\
             # HELP nimbus_ses_relay_sent Messages relayed to the SMTP server.\n\
             # TYPE nimbus_ses_relay_sent counter\n\
             nimbus_ses_relay_sent_total {}\n\
             # HELP nimbus_ses_relay_failures Failed SMTP relay attempts.\n\
             # TYPE nimbus_ses_relay_failures counter\n\
             nimbus_ses_relay_failures_total {}\n\
             # HELP nimbus_ses_events_pending Event notifications not yet delivered.\n\
             # TYPE nimbus_ses_events_pending gauge\n\
             nimbus_ses_events_pending {pending}\n\
             # HELP nimbus_ses_events_failed Event notifications given up.\n\
             # TYPE nimbus_ses_events_failed gauge\n\
             nimbus_ses_events_failed {failed}\n",
            m.sent.load(Ordering::Relaxed),
            m.rejected.load(Ordering::Relaxed),
            m.relayed.load(Ordering::Relaxed),
            m.relay_failures.load(Ordering::Relaxed),
        )
    }
}

fn form_limit(query: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse().ok())
        .map(|n: usize| n.clamp(1, 10_000))
}

/// Start SES v1: the shared engine, its front-end, and the `mail` admin surface.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let m = engine(ctx)?;
    Ok(Service {
        frontend: v1::frontend(m.clone()),
        admin: Some(Arc::new(Admin(m))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_dispatch::{Dispatch, FunctionLookup, Invocation, InvokeError, InvokeResult};
    use nimbus_triggers::sinks::{Sinks, TopicMessage, TopicSink};

    /// No functions: the sinks need a dispatcher, these tests never invoke one.
    struct NoFunctions;

    impl FunctionLookup for NoFunctions {
        fn function(&self, _: &str) -> Option<Arc<nimbus_core::FunctionConfig>> {
            None
        }
        fn qualifier_exists(&self, _: &str, _: Option<&str>) -> bool {
            false
        }
        fn region(&self) -> &str {
            "us-east-1"
        }
    }

    impl Dispatch for NoFunctions {
        fn invoke(&self, inv: Invocation) -> BoxFuture<'_, nimbus_dispatch::Result<InvokeResult>> {
            Box::pin(async move { Err(InvokeError::NotFound(inv.function)) })
        }
        fn enqueue(
            &self,
            inv: Invocation,
            _: &'static str,
        ) -> BoxFuture<'_, nimbus_dispatch::Result<String>> {
            Box::pin(async move { Err(InvokeError::NotFound(inv.function)) })
        }
    }

    /// A topic that is unavailable once, then records what it is given.
    #[derive(Default)]
    struct Topic {
        calls: Mutex<u32>,
        got: Mutex<Vec<String>>,
        wake: tokio::sync::Notify,
    }

    impl TopicSink for Topic {
        fn topic_exists(&self, _: &str) -> bool {
            true
        }
        fn publish(&self, _: &str, msg: TopicMessage) -> BoxFuture<'_, SinkResult<String>> {
            Box::pin(async move {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                if *calls == 1 {
                    return Err(SinkError::Transient("starting".into()));
                }
                self.got.lock().unwrap().push(msg.message);
                self.wake.notify_one();
                Ok("id".into())
            })
        }
    }

    #[tokio::test]
    async fn events_reach_sns_at_least_once_and_sns_mail_lands_in_the_outbox() {
        let d = tempfile::tempdir().unwrap();
        let store = store::Store::open(&d.path().join("ses.db")).unwrap();
        let sinks = Arc::new(Sinks::new(Arc::new(NoFunctions)));
        let topic = Arc::new(Topic::default());
        sinks.register_topics(topic.clone());
        let m = Arc::new(Mail::new(
            store,
            "us-east-1".into(),
            "123456789012".into(),
            sinks,
            None,
        ));
        let drain = tokio::spawn(m.clone().run_events());
        m.store
            .put_identity("me@example.com", "EmailAddress", 0)
            .unwrap();
        m.store.create_config_set("cs", 0).unwrap();
        m.store
            .put_destination(
                "cs",
                &store::EventDest {
                    name: "d".into(),
                    enabled: true,
                    types: vec!["SEND".into(), "BOUNCE".into()],
                    sns_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:t".into()),
                    event_bus_arn: None,
                },
                true,
            )
            .unwrap();
        let raw = mail::build_mime(
            "x",
            "me@example.com",
            &["bounce@simulator.amazonses.com".into()],
            &[],
            &[],
            "s",
            Some("t"),
            None,
        )
        .unwrap();
        let id = m
            .send(
                mail::Outgoing {
                    source: "me@example.com".into(),
                    destinations: vec!["bounce@simulator.amazonses.com".into()],
                    subject: "s".into(),
                    raw,
                    config_set: Some("cs".into()),
                    tags: vec![],
                    rendering_error: None,
                    max_size: mail::MAX_MESSAGE_V1,
                },
                nimbus_core::now_ms(),
            )
            .unwrap();
        // The first delivery fails (transient); both events still arrive, once each.
        tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while topic.got.lock().unwrap().len() < 2 {
                topic.wake.notified().await;
            }
        })
        .await
        .expect("both events delivered");
        let got: Vec<serde_json::Value> = topic
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        let mut types: Vec<&str> = got
            .iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(types, ["Bounce", "Send"]);
        assert!(got.iter().all(|e| e["mail"]["messageId"] == id.as_str()));
        // The drain records each delivery after the sink answers.
        for _ in 0..1200 {
            if m.store.event_counts().unwrap() == (0, 0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(m.store.event_counts().unwrap(), (0, 0));
        assert_eq!(topic.got.lock().unwrap().len(), 2, "each event once");
        drain.abort();

        // Mail another service sends lands in the same outbox.
        let sink = Outbox(m.clone());
        let mid = sink
            .send_mail(OutgoingMail {
                from: "no-reply@sns.amazonaws.com".into(),
                to: vec!["ops@example.org".into()],
                subject: "AWS Notification Message".into(),
                text: "hello from a topic".into(),
                origin: "sns".into(),
            })
            .await
            .unwrap();
        let row = m.store.message(&mid).unwrap().unwrap();
        assert_eq!(row.origin, "sns");
        let view = mail::message_view(&row, true);
        assert_eq!(view["Text"].as_str().unwrap().trim(), "hello from a topic");
    }
}

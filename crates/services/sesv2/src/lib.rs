//! Nimbus's Amazon SES v2 (email, restJson1 under `/v2/email/`): identities,
//! the account, sending (simple, raw and templated content), templates and
//! configuration sets with SNS and EventBridge event destinations — over the
//! mail engine and store (`<data>/ses.db`) it shares with SES v1
//! ([`nimbus_svc_ses::engine`]).
//!
//! [`ops`] is the API's exhaustive operation table, generated from the AWS API
//! model by `scripts/gen-ops.py`; the operations Nimbus leaves out answer `501
//! NotImplemented`. The JS SDK v3's newer model addresses two list operations
//! differently from botocore's (`POST /v2/email/list-identities`, `POST
//! /v2/email/list-configuration-sets`); both spellings are served.

// `AwsError` is the wire error, built once per failed request: its size does not matter.
#![allow(clippy::result_large_err)]

pub mod ops;

pub use ops::{Op, META};

use axum::extract::Request;
use base64::Engine as _;
use nimbus_protocol::{
    decode_json_as, encode_json, AwsError, Frontend, JsonOptions, Protocol, ResponseFuture,
    ServiceMeta,
};
use nimbus_svc_common::{Call, Service, ServiceContext, StartError};
use nimbus_svc_ses::mail::{self, Mail, Outgoing, MAX_24H_SEND, MAX_MESSAGE_V2, MAX_SEND_RATE};
use nimbus_svc_ses::store::{EventDest, Template};
use nimbus_svc_ses::SesError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

const BODY_MAX: usize = 64 * 1024 * 1024;

struct V2(Arc<Mail>);

/// Start SES v2 over the engine SES v1 opened (or opens) for this data dir.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let m = nimbus_svc_ses::engine(ctx)?;
    Ok(Service::frontend_only(Arc::new(V2(m))))
}

impl Frontend for V2 {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let m = self.0.clone();
        Box::pin(async move {
            let alias = match (req.method().as_str(), req.uri().path()) {
                ("POST", "/v2/email/list-identities") => Some(Op::ListEmailIdentities),
                ("POST", "/v2/email/list-configuration-sets") => Some(Op::ListConfigurationSets),
                _ => None,
            };
            let mut call = match alias {
                Some(op) => {
                    let (parts, body) = req.into_parts();
                    let request_id = parts
                        .extensions
                        .get::<nimbus_protocol::EdgeContext>()
                        .map(|c| c.request_id.clone())
                        .unwrap_or_default();
                    Call {
                        op,
                        protocol: Protocol::RestJson1,
                        request_id,
                        parts,
                        body,
                        params: vec![],
                    }
                }
                None => match Call::<Op>::decode(req).await {
                    Ok(c) => c,
                    Err(r) => return r,
                },
            };
            if !call.op.implemented() {
                return call.not_implemented();
            }
            let body = std::mem::replace(&mut call.body, axum::body::Body::empty());
            let bytes = match axum::body::to_bytes(body, BODY_MAX).await {
                Ok(b) => b,
                Err(e) => return call.error(&nimbus_protocol::body_error(e)),
            };
            let template = if alias.is_some() {
                call.parts.uri.path().to_string()
            } else {
                call.op.rest().uri.to_string()
            };
            let labels = labels(&template, call.parts.uri.path());
            let query: Vec<(String, String)> = call
                .parts
                .uri
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            let op = call.op;
            let out =
                tokio::task::spawn_blocking(move || handle(&m, op, &labels, &query, &bytes)).await;
            match out {
                Ok(Ok(v)) => encode_json(
                    Protocol::RestJson1,
                    &call.request_id,
                    &v,
                    JsonOptions::default(),
                ),
                Ok(Err(e)) => call.error(&e),
                Err(e) => call.error(&SesError::Internal(e.to_string()).v2()),
            }
        })
    }

    fn body_limit(&self, _parts: &http::request::Parts) -> usize {
        BODY_MAX
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The values of a path's `{Label}` segments, in order, percent-decoded.
fn labels(template: &str, path: &str) -> Vec<String> {
    let t = template.split('?').next().unwrap_or(template);
    t.split('/')
        .zip(path.split('/'))
        .filter(|(t, _)| t.starts_with('{'))
        .map(|(_, p)| percent_decode(p))
        .collect()
}

fn bad(msg: impl Into<String>) -> AwsError {
    SesError::Invalid(msg.into()).v2()
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    decode_json_as(body, "BadRequestException")
}

fn e2(e: SesError) -> AwsError {
    e.v2()
}

fn page<T: Clone>(
    all: &[T],
    query: &[(String, String)],
    body: &Value,
    max: usize,
) -> (Vec<T>, Option<String>) {
    let get = |k: &str| {
        query
            .iter()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                body.get(k).and_then(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .or(v.as_u64().map(|n| n.to_string()))
                })
            })
    };
    let start: usize = get("NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let size: usize = get("PageSize")
        .and_then(|t| t.parse().ok())
        .unwrap_or(max)
        .clamp(1, max);
    let items: Vec<T> = all.iter().skip(start).take(size).cloned().collect();
    let next = (start + size < all.len()).then(|| (start + size).to_string());
    (items, next)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Destination {
    to_addresses: Vec<String>,
    cc_addresses: Vec<String>,
    bcc_addresses: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Content {
    data: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Body {
    text: Option<Content>,
    html: Option<Content>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Simple {
    subject: Content,
    body: Body,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    data: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase", default)]
struct TemplateContent {
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemplateRef {
    template_name: Option<String>,
    template_arn: Option<String>,
    template_data: Option<String>,
    template_content: Option<TemplateContent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EmailContent {
    simple: Option<Simple>,
    raw: Option<Raw>,
    template: Option<TemplateRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEmail {
    from_email_address: Option<String>,
    #[serde(default)]
    destination: Destination,
    #[serde(default)]
    reply_to_addresses: Vec<String>,
    content: EmailContent,
    #[serde(default)]
    email_tags: Vec<Tag>,
    configuration_set_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EventDestIn {
    enabled: bool,
    matching_event_types: Vec<String>,
    sns_destination: Option<SnsDest>,
    event_bridge_destination: Option<BusDest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsDest {
    topic_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BusDest {
    event_bus_arn: String,
}

fn dkim() -> Value {
    json!({"SigningEnabled": false, "Status": "NOT_STARTED", "Tokens": [], "SigningAttributesOrigin": "AWS_SES"})
}

fn identity_type(kind: &str) -> &'static str {
    if kind == "Domain" {
        "DOMAIN"
    } else {
        "EMAIL_ADDRESS"
    }
}

fn event_dest(name: String, d: EventDestIn) -> Result<EventDest, AwsError> {
    let mut types = vec![];
    for t in &d.matching_event_types {
        match nimbus_svc_ses::v1::v2_type(t) {
            Some(v) if v == *t => types.push(v),
            _ => return Err(bad(format!("Invalid event type {t}."))),
        }
    }
    if d.sns_destination.is_none() && d.event_bridge_destination.is_none() {
        return Err(bad(
            "Nimbus delivers SES events to SNS topics (SnsDestination) and EventBridge buses \
             (EventBridgeDestination) only.",
        ));
    }
    Ok(EventDest {
        name,
        enabled: d.enabled,
        types,
        sns_topic_arn: d.sns_destination.map(|s| s.topic_arn),
        event_bus_arn: d.event_bridge_destination.map(|b| b.event_bus_arn),
    })
}

fn handle(
    m: &Mail,
    op: Op,
    labels: &[String],
    query: &[(String, String)],
    body: &[u8],
) -> Result<Value, AwsError> {
    let now = nimbus_core::now_ms();
    let label = |i: usize| labels.get(i).cloned().unwrap_or_default();
    match op {
        Op::CreateEmailIdentity => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                email_identity: String,
            }
            let i: In = decode(body)?;
            let id = i.email_identity.trim().to_string();
            if id.is_empty() {
                return Err(bad("EmailIdentity must not be empty."));
            }
            let kind = if id.contains('@') {
                "EmailAddress"
            } else {
                "Domain"
            };
            let id = if kind == "Domain" {
                id.to_ascii_lowercase()
            } else {
                id
            };
            if m.store.identity(&id).map_err(e2)?.is_some() {
                return Err(e2(SesError::AlreadyExists(
                    nimbus_svc_ses::store::Kind::Identity,
                    id,
                )));
            }
            m.store.put_identity(&id, kind, now).map_err(e2)?;
            Ok(
                json!({"IdentityType": identity_type(kind), "VerifiedForSendingStatus": true, "DkimAttributes": dkim()}),
            )
        }
        Op::GetEmailIdentity => {
            let name = label(0);
            let x = m.store.identity(&name).map_err(e2)?.ok_or_else(|| {
                e2(SesError::NotFound(
                    nimbus_svc_ses::store::Kind::Identity,
                    name.clone(),
                ))
            })?;
            Ok(json!({
                "IdentityType": identity_type(&x.kind),
                "FeedbackForwardingStatus": true,
                "VerifiedForSendingStatus": true,
                "VerificationStatus": "SUCCESS",
                "DkimAttributes": dkim(),
                "MailFromAttributes": {"MailFromDomain": "", "MailFromDomainStatus": "SUCCESS", "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
                "Policies": {},
                "Tags": [],
            }))
        }
        Op::ListEmailIdentities => {
            let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let all: Vec<Value> = m
                .store
                .identities()
                .map_err(e2)?
                .iter()
                .map(|i| json!({"IdentityType": identity_type(&i.kind), "IdentityName": i.identity, "SendingEnabled": true, "VerificationStatus": "SUCCESS"}))
                .collect();
            let (items, next) = page(&all, query, &b, 1000);
            let mut out = json!({"EmailIdentities": items});
            if let Some(n) = next {
                out["NextToken"] = json!(n);
            }
            Ok(out)
        }
        Op::DeleteEmailIdentity => {
            let name = label(0);
            if !m.store.delete_identity(&name).map_err(e2)? {
                return Err(e2(SesError::NotFound(
                    nimbus_svc_ses::store::Kind::Identity,
                    name,
                )));
            }
            Ok(json!({}))
        }
        Op::GetAccount => {
            let sent = m.store.sent_since(now - 86_400_000).map_err(e2)?;
            let n: usize = sent.iter().map(|(_, _, d)| d.len()).sum();
            Ok(json!({
                "DedicatedIpAutoWarmupEnabled": false,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": false,
                "SendingEnabled": m.store.sending_enabled().map_err(e2)?,
                "SendQuota": {"Max24HourSend": MAX_24H_SEND, "MaxSendRate": MAX_SEND_RATE, "SentLast24Hours": n as f64},
            }))
        }
        Op::PutAccountSendingAttributes => {
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase", default)]
            struct In {
                sending_enabled: Option<bool>,
            }
            let i: In = decode(body)?;
            if let Some(e) = i.sending_enabled {
                m.store.set_sending_enabled(e).map_err(e2)?;
            }
            Ok(json!({}))
        }
        Op::SendEmail => {
            let i: SendEmail = decode(body)?;
            let mut destinations = i.destination.to_addresses.clone();
            destinations.extend(i.destination.cc_addresses.iter().cloned());
            destinations.extend(i.destination.bcc_addresses.iter().cloned());
            let tags: Vec<(String, String)> = i
                .email_tags
                .iter()
                .map(|t| (t.name.clone(), t.value.clone()))
                .collect();
            let c = &i.content;
            let n = [c.simple.is_some(), c.raw.is_some(), c.template.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if n != 1 {
                return Err(bad(
                    "Content must hold exactly one of Simple, Raw or Template.",
                ));
            }
            let simple = |from: &str, subject: &str, text: Option<&str>, html: Option<&str>| {
                mail::build_mime(
                    "email.amazonses.com",
                    from,
                    &i.destination.to_addresses,
                    &i.destination.cc_addresses,
                    &i.reply_to_addresses,
                    subject,
                    text,
                    html,
                )
            };
            let (source, subject, raw, err, dests) = if let Some(s) = &c.simple {
                let from = i
                    .from_email_address
                    .clone()
                    .ok_or_else(|| bad("FromEmailAddress is required."))?;
                let raw = simple(
                    &from,
                    &s.subject.data,
                    s.body.text.as_ref().map(|x| x.data.as_str()),
                    s.body.html.as_ref().map(|x| x.data.as_str()),
                )
                .map_err(e2)?;
                (from, s.subject.data.clone(), raw, None, destinations)
            } else if let Some(r) = &c.raw {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(r.data.trim())
                    .map_err(|_| bad("Content.Raw.Data is not valid base64."))?;
                let info = mail::raw_info(&raw).map_err(e2)?;
                let from = i
                    .from_email_address
                    .clone()
                    .or(info.from.clone())
                    .ok_or_else(|| bad("Missing required header 'From'."))?;
                let dests = if destinations.is_empty() {
                    info.recipients.clone()
                } else {
                    destinations
                };
                (from, info.subject, raw, None, dests)
            } else {
                let t = c.template.as_ref().expect("one content kind");
                let from = i
                    .from_email_address
                    .clone()
                    .ok_or_else(|| bad("FromEmailAddress is required."))?;
                let tpl = match (&t.template_content, &t.template_name, &t.template_arn) {
                    (Some(tc), _, _) => Template {
                        name: "inline".into(),
                        subject: tc.subject.clone(),
                        text: tc.text.clone(),
                        html: tc.html.clone(),
                        created_ms: now,
                    },
                    (None, Some(n), _) => m.store.template(n).map_err(e2)?,
                    (None, None, Some(arn)) => m
                        .store
                        .template(arn.rsplit('/').next().unwrap_or(arn))
                        .map_err(e2)?,
                    _ => {
                        return Err(bad(
                            "Template needs TemplateName, TemplateArn or TemplateContent.",
                        ))
                    }
                };
                let data = t.template_data.clone().unwrap_or_else(|| "{}".into());
                match m.render(&tpl, &data) {
                    Ok((subject, text, html)) => {
                        let raw = simple(&from, &subject, text.as_deref(), html.as_deref())
                            .map_err(e2)?;
                        (from, subject, raw, None, destinations)
                    }
                    Err(SesError::MissingAttribute(msg) | SesError::InvalidTemplate(msg)) => {
                        (from, tpl.name.clone(), vec![], Some(msg), destinations)
                    }
                    Err(e) => return Err(e2(e)),
                }
            };
            let id = m
                .send(
                    Outgoing {
                        source,
                        destinations: dests,
                        subject,
                        raw,
                        config_set: i.configuration_set_name.clone(),
                        tags,
                        rendering_error: err,
                        max_size: MAX_MESSAGE_V2,
                    },
                    now,
                )
                .map_err(e2)?;
            Ok(json!({"MessageId": id}))
        }
        Op::SendBulkEmail => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct DefaultContent {
                template: TemplateRef,
            }
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase", default)]
            struct ReplacementTemplate {
                replacement_template_data: Option<String>,
            }
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase", default)]
            struct ReplacementContent {
                replacement_template: Option<ReplacementTemplate>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Entry {
                destination: Destination,
                #[serde(default)]
                replacement_tags: Vec<Tag>,
                replacement_email_content: Option<ReplacementContent>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                from_email_address: String,
                #[serde(default)]
                reply_to_addresses: Vec<String>,
                default_content: DefaultContent,
                bulk_email_entries: Vec<Entry>,
                #[serde(default)]
                default_email_tags: Vec<Tag>,
                configuration_set_name: Option<String>,
            }
            let i: In = decode(body)?;
            if i.bulk_email_entries.is_empty() || i.bulk_email_entries.len() > 50 {
                return Err(bad("BulkEmailEntries must hold 1 to 50 entries."));
            }
            let t = &i.default_content.template;
            let tpl = match (&t.template_content, &t.template_name, &t.template_arn) {
                (Some(tc), _, _) => Template {
                    name: "inline".into(),
                    subject: tc.subject.clone(),
                    text: tc.text.clone(),
                    html: tc.html.clone(),
                    created_ms: now,
                },
                (None, Some(n), _) => m.store.template(n).map_err(e2)?,
                (None, None, Some(arn)) => m
                    .store
                    .template(arn.rsplit('/').next().unwrap_or(arn))
                    .map_err(e2)?,
                _ => return Err(bad(
                    "DefaultContent.Template needs TemplateName, TemplateArn or TemplateContent.",
                )),
            };
            let mut results = vec![];
            for e in &i.bulk_email_entries {
                let data = e
                    .replacement_email_content
                    .as_ref()
                    .and_then(|c| c.replacement_template.as_ref())
                    .and_then(|r| r.replacement_template_data.clone())
                    .or(t.template_data.clone())
                    .unwrap_or_else(|| "{}".into());
                let mut dests = e.destination.to_addresses.clone();
                dests.extend(e.destination.cc_addresses.iter().cloned());
                dests.extend(e.destination.bcc_addresses.iter().cloned());
                let mut tags: Vec<(String, String)> = i
                    .default_email_tags
                    .iter()
                    .map(|t| (t.name.clone(), t.value.clone()))
                    .collect();
                tags.extend(
                    e.replacement_tags
                        .iter()
                        .map(|t| (t.name.clone(), t.value.clone())),
                );
                let rendered = match m.render(&tpl, &data) {
                    Ok((subject, text, html)) => mail::build_mime(
                        "email.amazonses.com",
                        &i.from_email_address,
                        &e.destination.to_addresses,
                        &e.destination.cc_addresses,
                        &i.reply_to_addresses,
                        &subject,
                        text.as_deref(),
                        html.as_deref(),
                    )
                    .map(|raw| (subject, raw, None)),
                    Err(SesError::MissingAttribute(msg) | SesError::InvalidTemplate(msg)) => {
                        Ok((tpl.name.clone(), vec![], Some(msg)))
                    }
                    Err(e) => Err(e),
                };
                let r = rendered.and_then(|(subject, raw, err)| {
                    m.send(
                        Outgoing {
                            source: i.from_email_address.clone(),
                            destinations: dests,
                            subject,
                            raw,
                            config_set: i.configuration_set_name.clone(),
                            tags,
                            rendering_error: err,
                            max_size: MAX_MESSAGE_V2,
                        },
                        now,
                    )
                });
                results.push(match r {
                    Ok(id) => json!({"Status": "SUCCESS", "MessageId": id}),
                    Err(
                        e @ (SesError::NotFound(..)
                        | SesError::Paused
                        | SesError::Db(_)
                        | SesError::Internal(_)),
                    ) => return Err(e2(e)),
                    Err(SesError::Rejected(msg)) => {
                        json!({"Status": "MESSAGE_REJECTED", "Error": msg})
                    }
                    Err(e) => json!({"Status": "FAILED", "Error": e.to_string()}),
                });
            }
            Ok(json!({"BulkEmailEntryResults": results}))
        }
        Op::CreateEmailTemplate | Op::UpdateEmailTemplate => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                template_name: Option<String>,
                template_content: TemplateContent,
            }
            let i: In = decode(body)?;
            let name = if op == Op::CreateEmailTemplate {
                i.template_name
                    .clone()
                    .ok_or_else(|| bad("TemplateName is required."))?
            } else {
                label(0)
            };
            if name.is_empty() || name.len() > 64 {
                return Err(bad("TemplateName must be 1 to 64 characters."));
            }
            m.store
                .put_template(
                    &Template {
                        name,
                        subject: i.template_content.subject,
                        text: i.template_content.text,
                        html: i.template_content.html,
                        created_ms: now,
                    },
                    op == Op::CreateEmailTemplate,
                )
                .map_err(e2)?;
            Ok(json!({}))
        }
        Op::GetEmailTemplate => {
            let t = m.store.template(&label(0)).map_err(e2)?;
            Ok(
                json!({"TemplateName": t.name, "TemplateContent": {"Subject": t.subject, "Text": t.text, "Html": t.html}}),
            )
        }
        Op::ListEmailTemplates => {
            let all: Vec<Value> = m
                .store
                .templates()
                .map_err(e2)?
                .iter()
                .map(|t| json!({"TemplateName": t.name, "CreatedTimestamp": t.created_ms as f64 / 1000.0}))
                .collect();
            let (items, next) = page(&all, query, &Value::Null, 100);
            let mut out = json!({"TemplatesMetadata": items});
            if let Some(n) = next {
                out["NextToken"] = json!(n);
            }
            Ok(out)
        }
        Op::DeleteEmailTemplate => {
            let name = label(0);
            if !m.store.delete_template(&name).map_err(e2)? {
                return Err(e2(SesError::NotFound(
                    nimbus_svc_ses::store::Kind::Template,
                    name,
                )));
            }
            Ok(json!({}))
        }
        Op::TestRenderEmailTemplate => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                template_data: String,
            }
            let i: In = decode(body)?;
            let t = m.store.template(&label(0)).map_err(e2)?;
            let (subject, text, html) = m.render(&t, &i.template_data).map_err(e2)?;
            let raw = mail::build_mime(
                "email.amazonses.com",
                "sender@example.com",
                &["recipient@example.com".to_string()],
                &[],
                &[],
                &subject,
                text.as_deref(),
                html.as_deref(),
            )
            .map_err(e2)?;
            Ok(json!({"RenderedTemplate": String::from_utf8_lossy(&raw)}))
        }
        Op::CreateConfigurationSet => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                configuration_set_name: String,
            }
            let i: In = decode(body)?;
            if i.configuration_set_name.is_empty() || i.configuration_set_name.len() > 64 {
                return Err(bad("ConfigurationSetName must be 1 to 64 characters."));
            }
            m.store
                .create_config_set(&i.configuration_set_name, now)
                .map_err(e2)?;
            Ok(json!({}))
        }
        Op::GetConfigurationSet => {
            let name = label(0);
            m.store.destinations(&name).map_err(e2)?;
            Ok(
                json!({"ConfigurationSetName": name, "SendingOptions": {"SendingEnabled": true}, "Tags": []}),
            )
        }
        Op::ListConfigurationSets => {
            let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let all: Vec<String> = m
                .store
                .config_sets()
                .map_err(e2)?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let (items, next) = page(&all, query, &b, 1000);
            let mut out = json!({"ConfigurationSets": items});
            if let Some(n) = next {
                out["NextToken"] = json!(n);
            }
            Ok(out)
        }
        Op::DeleteConfigurationSet => {
            m.store.delete_config_set(&label(0)).map_err(e2)?;
            Ok(json!({}))
        }
        Op::CreateConfigurationSetEventDestination => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                event_destination_name: String,
                event_destination: EventDestIn,
            }
            let i: In = decode(body)?;
            let d = event_dest(i.event_destination_name, i.event_destination)?;
            m.store.put_destination(&label(0), &d, true).map_err(e2)?;
            Ok(json!({}))
        }
        Op::UpdateConfigurationSetEventDestination => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                event_destination: EventDestIn,
            }
            let i: In = decode(body)?;
            let d = event_dest(label(1), i.event_destination)?;
            m.store.put_destination(&label(0), &d, false).map_err(e2)?;
            Ok(json!({}))
        }
        Op::GetConfigurationSetEventDestinations => {
            let dests = m.store.destinations(&label(0)).map_err(e2)?;
            let list: Vec<Value> = dests
                .iter()
                .map(|d| {
                    let mut v = json!({"Name": d.name, "Enabled": d.enabled, "MatchingEventTypes": d.types});
                    if let Some(t) = &d.sns_topic_arn {
                        v["SnsDestination"] = json!({"TopicArn": t});
                    }
                    if let Some(b) = &d.event_bus_arn {
                        v["EventBridgeDestination"] = json!({"EventBusArn": b});
                    }
                    v
                })
                .collect();
            Ok(json!({"EventDestinations": list}))
        }
        Op::DeleteConfigurationSetEventDestination => {
            m.store
                .delete_destination(&label(0), &label(1))
                .map_err(e2)?;
            Ok(json!({}))
        }
        _ => Err(AwsError::not_implemented("sesv2", op.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    #[test]
    fn every_operation_is_recognised_by_its_own_binding() {
        for op in Op::ALL {
            let (method, uri) = op.binding();
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            let path: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let mut query = query.to_string();
            for q in op.rest().query {
                query.push_str(&format!("&{q}=1"));
            }
            let got = Op::recognise(&method, &path, Some(&query), &HeaderMap::new());
            assert_eq!(got, Some(*op), "{method} {path}?{query}");
        }
        assert_eq!(Method::POST, Op::SendEmail.binding().0);
    }

    #[test]
    fn path_labels_are_percent_decoded() {
        assert_eq!(
            labels(
                "/v2/email/identities/{EmailIdentity}",
                "/v2/email/identities/a%40b.com"
            ),
            vec!["a@b.com"]
        );
        assert_eq!(
            labels(
                "/v2/email/configuration-sets/{ConfigurationSetName}/event-destinations/{EventDestinationName}",
                "/v2/email/configuration-sets/cs/event-destinations/d%2B1"
            ),
            vec!["cs", "d+1"]
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}

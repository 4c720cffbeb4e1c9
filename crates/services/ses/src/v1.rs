//! SES v1 on the wire (awsQuery: form parameters in, XML out in the
//! `http://ses.amazonaws.com/doc/2010-12-01/` namespace).

// `AwsError` is the wire error, built once per failed request: its size does not matter.
#![allow(clippy::result_large_err)]

use crate::mail::{self, Mail, Outgoing, MAX_24H_SEND, MAX_MESSAGE_V1, MAX_SEND_RATE};
use crate::store::{EventDest, Template};
use crate::SesError;
pub use crate::{Op, META};
use axum::extract::Request;
use axum::response::Response;
use base64::Engine as _;
use nimbus_protocol::{
    query_response, AwsError, Frontend, Member, QueryParams, ResponseFuture, ServiceMeta, Shape,
    XmlWriter,
};
use nimbus_svc_common::Call;
use serde::Deserialize;
use std::sync::Arc;

static STR: Shape = Shape::String;
static STRLIST: Shape = Shape::list(&STR);
static DESTINATION: Shape = Shape::structure(&[
    Member::new("ToAddresses", &STRLIST),
    Member::new("CcAddresses", &STRLIST),
    Member::new("BccAddresses", &STRLIST),
]);
static CONTENT: Shape =
    Shape::structure(&[Member::new("Data", &STR), Member::new("Charset", &STR)]);
static BODY: Shape =
    Shape::structure(&[Member::new("Text", &CONTENT), Member::new("Html", &CONTENT)]);
static MESSAGE: Shape =
    Shape::structure(&[Member::new("Subject", &CONTENT), Member::new("Body", &BODY)]);
static TAG: Shape = Shape::structure(&[Member::new("Name", &STR), Member::new("Value", &STR)]);
static TAGS: Shape = Shape::list(&TAG);
static SEND_EMAIL: Shape = Shape::structure(&[
    Member::new("Destination", &DESTINATION),
    Member::new("Message", &MESSAGE),
    Member::new("ReplyToAddresses", &STRLIST),
    Member::new("Tags", &TAGS),
]);
static RAW: Shape = Shape::structure(&[Member::new("Data", &STR)]);
static SEND_RAW: Shape = Shape::structure(&[
    Member::new("Destinations", &STRLIST),
    Member::new("RawMessage", &RAW),
    Member::new("Tags", &TAGS),
]);
static SEND_TEMPLATED: Shape = Shape::structure(&[
    Member::new("Destination", &DESTINATION),
    Member::new("ReplyToAddresses", &STRLIST),
    Member::new("Tags", &TAGS),
]);
static BULK_DEST: Shape = Shape::structure(&[
    Member::new("Destination", &DESTINATION),
    Member::new("ReplacementTags", &TAGS),
    Member::new("ReplacementTemplateData", &STR),
]);
static BULK_DESTS: Shape = Shape::list(&BULK_DEST);
static SEND_BULK: Shape = Shape::structure(&[
    Member::new("ReplyToAddresses", &STRLIST),
    Member::new("DefaultTags", &TAGS),
    Member::new("Destinations", &BULK_DESTS),
]);
static TEMPLATE: Shape = Shape::structure(&[
    Member::new("TemplateName", &STR),
    Member::new("SubjectPart", &STR),
    Member::new("TextPart", &STR),
    Member::new("HtmlPart", &STR),
]);
static TEMPLATE_IN: Shape = Shape::structure(&[Member::new("Template", &TEMPLATE)]);
static PAGED: Shape = Shape::structure(&[Member::new("MaxItems", &Shape::Integer)]);
static IDENTITIES: Shape = Shape::structure(&[Member::new("Identities", &STRLIST)]);
static CS_NAME: Shape = Shape::structure(&[Member::new("Name", &STR)]);
static CS_IN: Shape = Shape::structure(&[Member::new("ConfigurationSet", &CS_NAME)]);
static SNS_DEST: Shape = Shape::structure(&[Member::new("TopicARN", &STR)]);
static EVENT_DEST: Shape = Shape::structure(&[
    Member::new("Name", &STR),
    Member::new("Enabled", &Shape::Boolean),
    Member::new("MatchingEventTypes", &STRLIST),
    Member::new("SNSDestination", &SNS_DEST),
]);
static CSED_IN: Shape = Shape::structure(&[Member::new("EventDestination", &EVENT_DEST)]);
static DESCRIBE_CS: Shape =
    Shape::structure(&[Member::new("ConfigurationSetAttributeNames", &STRLIST)]);
static ENABLED: Shape = Shape::structure(&[Member::new("Enabled", &Shape::Boolean)]);
static PLAIN: Shape = Shape::structure(&[]);

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Destination {
    to_addresses: Vec<String>,
    cc_addresses: Vec<String>,
    bcc_addresses: Vec<String>,
}

impl Destination {
    fn all(&self) -> Vec<String> {
        let mut v = self.to_addresses.clone();
        v.extend(self.cc_addresses.iter().cloned());
        v.extend(self.bcc_addresses.iter().cloned());
        v
    }
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
struct Message {
    subject: Content,
    body: Body,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEmail {
    source: String,
    destination: Destination,
    message: Message,
    #[serde(default)]
    reply_to_addresses: Vec<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    configuration_set_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawMessage {
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendRawEmail {
    source: Option<String>,
    #[serde(default)]
    destinations: Vec<String>,
    raw_message: RawMessage,
    #[serde(default)]
    tags: Vec<Tag>,
    configuration_set_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendTemplatedEmail {
    source: String,
    destination: Destination,
    #[serde(default)]
    reply_to_addresses: Vec<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    configuration_set_name: Option<String>,
    template: String,
    template_data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BulkDest {
    destination: Destination,
    #[serde(default)]
    replacement_tags: Vec<Tag>,
    replacement_template_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendBulk {
    source: String,
    #[serde(default)]
    reply_to_addresses: Vec<String>,
    configuration_set_name: Option<String>,
    #[serde(default)]
    default_tags: Vec<Tag>,
    template: String,
    default_template_data: Option<String>,
    destinations: Vec<BulkDest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemplateIn {
    template_name: String,
    subject_part: Option<String>,
    text_part: Option<String>,
    html_part: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemplateWrap {
    template: TemplateIn,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Paged {
    identity_type: Option<String>,
    next_token: Option<String>,
    max_items: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventDestIn {
    name: String,
    #[serde(default)]
    enabled: bool,
    matching_event_types: Vec<String>,
    #[serde(rename = "SNSDestination")]
    sns_destination: Option<SnsDest>,
}

#[derive(Deserialize)]
struct SnsDest {
    #[serde(rename = "TopicARN")]
    topic_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CsedIn {
    configuration_set_name: String,
    event_destination: EventDestIn,
}

fn s<'a>(p: &'a QueryParams, k: &str) -> Result<&'a str, AwsError> {
    p.get(k).ok_or_else(|| {
        AwsError::new(
            http::StatusCode::BAD_REQUEST,
            "MissingParameter",
            format!("The request must contain the parameter {k}."),
        )
    })
}

struct V1(Arc<Mail>);

/// The SES v1 front-end over the shared engine.
pub fn frontend(m: Arc<Mail>) -> Arc<dyn Frontend> {
    Arc::new(V1(m))
}

impl Frontend for V1 {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }

    fn call(&self, req: Request) -> ResponseFuture {
        let m = self.0.clone();
        Box::pin(async move {
            let call = match Call::<Op>::decode(req).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            if !call.op.implemented() {
                return call.not_implemented();
            }
            let form = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(call.params.iter())
                .finish();
            let params = QueryParams::parse(form.as_bytes());
            let op = call.op;
            let rid = call.request_id.clone();
            let out = tokio::task::spawn_blocking(move || handle(&m, op, &params, &rid)).await;
            match out {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => call.error(&e),
                Err(e) => call.error(&SesError::Internal(e.to_string()).v1()),
            }
        })
    }

    fn body_limit(&self, _parts: &http::request::Parts) -> usize {
        nimbus_svc_common::decode::QUERY_BODY_LIMIT
    }
}

fn tags(t: &[Tag]) -> Vec<(String, String)> {
    t.iter()
        .map(|t| (t.name.clone(), t.value.clone()))
        .collect()
}

fn ok(op: Op, rid: &str, f: Option<&dyn Fn(&mut XmlWriter)>) -> Response {
    query_response(&META, op.name(), rid, f)
}

fn e1(e: SesError) -> AwsError {
    e.v1()
}

/// Render a template and build its MIME; a rendering failure is kept as the
/// message's error (SES accepts the send and reports the failure as an event).
fn templated(
    m: &Mail,
    template: &str,
    data: &str,
    source: &str,
    dest: &Destination,
    reply_to: &[String],
) -> Result<(String, Vec<u8>, Option<String>), SesError> {
    let t = m.store.template(template)?;
    match m.render(&t, data) {
        Ok((subject, text, html)) => {
            let raw = mail::build_mime(
                "email.amazonses.com",
                source,
                &dest.to_addresses,
                &dest.cc_addresses,
                reply_to,
                &subject,
                text.as_deref(),
                html.as_deref(),
            )?;
            Ok((subject, raw, None))
        }
        Err(SesError::MissingAttribute(msg) | SesError::InvalidTemplate(msg)) => {
            Ok((template.to_string(), vec![], Some(msg)))
        }
        Err(e) => Err(e),
    }
}

fn handle(m: &Mail, op: Op, p: &QueryParams, rid: &str) -> Result<Response, AwsError> {
    let now = nimbus_core::now_ms();
    match op {
        Op::VerifyEmailIdentity | Op::VerifyEmailAddress => {
            let a = s(p, "EmailAddress")?;
            if !a.contains('@') {
                return Err(SesError::Invalid(format!("Invalid email address<{a}>.")).v1());
            }
            m.store.put_identity(a, "EmailAddress", now).map_err(e1)?;
            Ok(ok(
                op,
                rid,
                if op == Op::VerifyEmailIdentity {
                    Some(&|_: &mut XmlWriter| {})
                } else {
                    None
                },
            ))
        }
        Op::VerifyDomainIdentity => {
            let d = s(p, "Domain")?.to_ascii_lowercase();
            if d.is_empty() || d.contains('@') {
                return Err(SesError::Invalid(format!("Invalid domain name {d}.")).v1());
            }
            let id = m.store.put_identity(&d, "Domain", now).map_err(e1)?;
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.element("VerificationToken", &id.token);
                }),
            ))
        }
        Op::ListIdentities | Op::ListVerifiedEmailAddresses => {
            let q: Paged = p.deserialize(&PAGED)?;
            let kind = q.identity_type.clone();
            if let Some(k) = &kind {
                if k != "EmailAddress" && k != "Domain" {
                    return Err(SesError::Invalid(format!("Invalid IdentityType {k}.")).v1());
                }
            }
            let all: Vec<String> = m
                .store
                .identities()
                .map_err(e1)?
                .into_iter()
                .filter(|i| match (op, &kind) {
                    (Op::ListVerifiedEmailAddresses, _) => i.kind == "EmailAddress",
                    (_, Some(k)) => &i.kind == k,
                    _ => true,
                })
                .map(|i| i.identity)
                .collect();
            if op == Op::ListVerifiedEmailAddresses {
                return Ok(ok(
                    op,
                    rid,
                    Some(&|w: &mut XmlWriter| {
                        w.nested("VerifiedEmailAddresses", |w| {
                            for a in &all {
                                w.element("member", a);
                            }
                        });
                    }),
                ));
            }
            let start: usize = q
                .next_token
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let max = q.max_items.unwrap_or(1000).clamp(1, 1000) as usize;
            let page: Vec<&String> = all.iter().skip(start).take(max).collect();
            let next = (start + max < all.len()).then(|| (start + max).to_string());
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("Identities", |w| {
                        for a in &page {
                            w.element("member", a);
                        }
                    });
                    w.element_opt("NextToken", next.as_deref());
                }),
            ))
        }
        Op::DeleteIdentity | Op::DeleteVerifiedEmailAddress => {
            let key = if op == Op::DeleteIdentity {
                "Identity"
            } else {
                "EmailAddress"
            };
            m.store.delete_identity(s(p, key)?).map_err(e1)?;
            Ok(ok(
                op,
                rid,
                if op == Op::DeleteIdentity {
                    Some(&|_: &mut XmlWriter| {})
                } else {
                    None
                },
            ))
        }
        Op::GetIdentityVerificationAttributes => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                identities: Vec<String>,
            }
            let i: In = p.deserialize(&IDENTITIES)?;
            let mut found = vec![];
            for id in &i.identities {
                if let Some(x) = m.store.identity(id).map_err(e1)? {
                    found.push((id.clone(), x));
                }
            }
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("VerificationAttributes", |w| {
                        for (name, x) in &found {
                            w.nested("entry", |w| {
                                w.element("key", name);
                                w.nested("value", |w| {
                                    w.element("VerificationStatus", "Success");
                                    if x.kind == "Domain" {
                                        w.element("VerificationToken", &x.token);
                                    }
                                });
                            });
                        }
                    });
                }),
            ))
        }
        Op::SetIdentityNotificationTopic => {
            let identity = s(p, "Identity")?;
            let kind = s(p, "NotificationType")?;
            if !matches!(kind, "Bounce" | "Complaint" | "Delivery") {
                return Err(SesError::Invalid(format!("Invalid NotificationType {kind}.")).v1());
            }
            if m.store.identity(identity).map_err(e1)?.is_none() {
                return Err(
                    SesError::Invalid(format!("Identity <{identity}> does not exist.")).v1(),
                );
            }
            let topic = p.get("SnsTopic").filter(|t| !t.is_empty());
            if let Some(t) = topic {
                if !t.starts_with("arn:aws:sns:") {
                    return Err(SesError::Invalid(format!("Invalid SNS topic <{t}>.")).v1());
                }
            }
            m.store
                .set_identity_topic(identity, kind, topic)
                .map_err(e1)?;
            Ok(ok(op, rid, Some(&|_: &mut XmlWriter| {})))
        }
        Op::GetIdentityNotificationAttributes => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                identities: Vec<String>,
            }
            let i: In = p.deserialize(&IDENTITIES)?;
            let mut found = vec![];
            for id in &i.identities {
                if m.store.identity(id).map_err(e1)?.is_some() {
                    found.push((id.clone(), m.store.identity_topics(id).map_err(e1)?));
                }
            }
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("NotificationAttributes", |w| {
                        for (name, topics) in &found {
                            w.nested("entry", |w| {
                                w.element("key", name);
                                w.nested("value", |w| {
                                    for (kind, topic) in topics {
                                        w.element(&format!("{kind}Topic"), topic);
                                    }
                                    w.element("ForwardingEnabled", "true");
                                    w.element("HeadersInBounceNotificationsEnabled", "false");
                                    w.element("HeadersInComplaintNotificationsEnabled", "false");
                                    w.element("HeadersInDeliveryNotificationsEnabled", "false");
                                });
                            });
                        }
                    });
                }),
            ))
        }
        Op::GetSendQuota => {
            let sent = m.store.sent_since(now - 86_400_000).map_err(e1)?;
            let n: usize = sent.iter().map(|(_, _, d)| d.len()).sum();
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.element("Max24HourSend", &format!("{MAX_24H_SEND:.1}"));
                    w.element("MaxSendRate", &format!("{MAX_SEND_RATE:.1}"));
                    w.element("SentLast24Hours", &format!("{:.1}", n as f64));
                }),
            ))
        }
        Op::GetSendStatistics => {
            let sent = m.store.sent_since(now - 14 * 86_400_000).map_err(e1)?;
            // One data point per 15 minutes with sends, as SES reports.
            let mut buckets: std::collections::BTreeMap<i64, (usize, usize, usize)> =
                Default::default();
            for (t, _, dests) in &sent {
                let b = buckets.entry(t / 900_000 * 900_000).or_default();
                b.0 += dests.len();
                b.1 += dests
                    .iter()
                    .filter(|d| {
                        mail::bare_address(d).eq_ignore_ascii_case("bounce@simulator.amazonses.com")
                    })
                    .count();
                b.2 += dests
                    .iter()
                    .filter(|d| {
                        mail::bare_address(d)
                            .eq_ignore_ascii_case("complaint@simulator.amazonses.com")
                    })
                    .count();
            }
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("SendDataPoints", |w| {
                        for (t, (attempts, bounces, complaints)) in &buckets {
                            w.nested("member", |w| {
                                w.element("Timestamp", &mail::iso(*t));
                                w.element("DeliveryAttempts", &attempts.to_string());
                                w.element("Bounces", &bounces.to_string());
                                w.element("Complaints", &complaints.to_string());
                                w.element("Rejects", "0");
                            });
                        }
                    });
                }),
            ))
        }
        Op::GetAccountSendingEnabled => {
            let on = m.store.sending_enabled().map_err(e1)?;
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.element("Enabled", if on { "true" } else { "false" });
                }),
            ))
        }
        Op::UpdateAccountSendingEnabled => {
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase", default)]
            struct In {
                enabled: bool,
            }
            let i: In = p.deserialize(&ENABLED)?;
            m.store.set_sending_enabled(i.enabled).map_err(e1)?;
            Ok(ok(op, rid, None))
        }
        Op::SendEmail => {
            let i: SendEmail = p.deserialize(&SEND_EMAIL)?;
            let raw = mail::build_mime(
                "email.amazonses.com",
                &i.source,
                &i.destination.to_addresses,
                &i.destination.cc_addresses,
                &i.reply_to_addresses,
                &i.message.subject.data,
                i.message.body.text.as_ref().map(|c| c.data.as_str()),
                i.message.body.html.as_ref().map(|c| c.data.as_str()),
            )
            .map_err(e1)?;
            let id = m
                .send(
                    Outgoing {
                        source: i.source.clone(),
                        destinations: i.destination.all(),
                        subject: i.message.subject.data.clone(),
                        raw,
                        config_set: i.configuration_set_name.clone(),
                        tags: tags(&i.tags),
                        rendering_error: None,
                        max_size: MAX_MESSAGE_V1,
                    },
                    now,
                )
                .map_err(e1)?;
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.element("MessageId", &id);
                }),
            ))
        }
        Op::SendRawEmail => {
            let i: SendRawEmail = p.deserialize(&SEND_RAW)?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(i.raw_message.data.trim())
                .map_err(|_| {
                    SesError::Invalid("RawMessage.Data is not valid base64.".into()).v1()
                })?;
            let info = mail::raw_info(&raw).map_err(e1)?;
            let source = match i.source.clone().or(info.from.clone()) {
                Some(s) => s,
                None => {
                    return Err(SesError::Invalid("Missing required header 'From'.".into()).v1())
                }
            };
            let destinations = if i.destinations.is_empty() {
                info.recipients.clone()
            } else {
                i.destinations.clone()
            };
            let id = m
                .send(
                    Outgoing {
                        source,
                        destinations,
                        subject: info.subject.clone(),
                        raw,
                        config_set: i.configuration_set_name.clone(),
                        tags: tags(&i.tags),
                        rendering_error: None,
                        max_size: MAX_MESSAGE_V1,
                    },
                    now,
                )
                .map_err(e1)?;
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.element("MessageId", &id);
                }),
            ))
        }
        Op::SendTemplatedEmail => {
            let i: SendTemplatedEmail = p.deserialize(&SEND_TEMPLATED)?;
            let (subject, raw, err) = templated(
                m,
                &i.template,
                &i.template_data,
                &i.source,
                &i.destination,
                &i.reply_to_addresses,
            )
            .map_err(e1)?;
            let id = m
                .send(
                    Outgoing {
                        source: i.source.clone(),
                        destinations: i.destination.all(),
                        subject,
                        raw,
                        config_set: i.configuration_set_name.clone(),
                        tags: tags(&i.tags),
                        rendering_error: err,
                        max_size: MAX_MESSAGE_V1,
                    },
                    now,
                )
                .map_err(e1)?;
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.element("MessageId", &id);
                }),
            ))
        }
        Op::SendBulkTemplatedEmail => {
            let i: SendBulk = p.deserialize(&SEND_BULK)?;
            if i.destinations.is_empty() || i.destinations.len() > 50 {
                return Err(
                    SesError::Invalid("Destinations must hold 1 to 50 entries.".into()).v1(),
                );
            }
            let mut results = vec![];
            for d in &i.destinations {
                let data = d
                    .replacement_template_data
                    .clone()
                    .or(i.default_template_data.clone())
                    .unwrap_or_else(|| "{}".into());
                let mut t = tags(&i.default_tags);
                t.extend(tags(&d.replacement_tags));
                let r = templated(
                    m,
                    &i.template,
                    &data,
                    &i.source,
                    &d.destination,
                    &i.reply_to_addresses,
                )
                .and_then(|(subject, raw, err)| {
                    m.send(
                        Outgoing {
                            source: i.source.clone(),
                            destinations: d.destination.all(),
                            subject,
                            raw,
                            config_set: i.configuration_set_name.clone(),
                            tags: t,
                            rendering_error: err,
                            max_size: MAX_MESSAGE_V1,
                        },
                        now,
                    )
                });
                match r {
                    Ok(id) => results.push(("Success", Some(id), None)),
                    // Whole-request problems fail the request, as SES does.
                    Err(
                        e @ (SesError::NotFound(..)
                        | SesError::Paused
                        | SesError::Db(_)
                        | SesError::Internal(_)),
                    ) => return Err(e.v1()),
                    Err(SesError::Rejected(msg)) => {
                        results.push(("MessageRejected", None, Some(msg)))
                    }
                    Err(e) => results.push(("Failed", None, Some(e.to_string()))),
                }
            }
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("Status", |w| {
                        for (status, id, err) in &results {
                            w.nested("member", |w| {
                                w.element("Status", status);
                                w.element_opt("Error", err.as_deref());
                                w.element_opt("MessageId", id.as_deref());
                            });
                        }
                    });
                }),
            ))
        }
        Op::CreateTemplate | Op::UpdateTemplate => {
            let i: TemplateWrap = p.deserialize(&TEMPLATE_IN)?;
            let t = i.template;
            if t.template_name.is_empty() || t.template_name.len() > 64 {
                return Err(
                    SesError::Invalid("Template name must be 1 to 64 characters.".into()).v1(),
                );
            }
            m.store
                .put_template(
                    &Template {
                        name: t.template_name,
                        subject: t.subject_part,
                        html: t.html_part,
                        text: t.text_part,
                        created_ms: now,
                    },
                    op == Op::CreateTemplate,
                )
                .map_err(e1)?;
            Ok(ok(op, rid, Some(&|_: &mut XmlWriter| {})))
        }
        Op::GetTemplate => {
            let t = m.store.template(s(p, "TemplateName")?).map_err(e1)?;
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("Template", |w| {
                        w.element("TemplateName", &t.name);
                        w.element_opt("SubjectPart", t.subject.as_deref());
                        w.element_opt("TextPart", t.text.as_deref());
                        w.element_opt("HtmlPart", t.html.as_deref());
                    });
                }),
            ))
        }
        Op::ListTemplates => {
            let q: Paged = p.deserialize(&PAGED)?;
            let all = m.store.templates().map_err(e1)?;
            let start: usize = q
                .next_token
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let max = q.max_items.unwrap_or(100).clamp(1, 100) as usize;
            let next = (start + max < all.len()).then(|| (start + max).to_string());
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("TemplatesMetadata", |w| {
                        for t in all.iter().skip(start).take(max) {
                            w.nested("member", |w| {
                                w.element("Name", &t.name);
                                w.element("CreatedTimestamp", &mail::iso(t.created_ms));
                            });
                        }
                    });
                    w.element_opt("NextToken", next.as_deref());
                }),
            ))
        }
        Op::DeleteTemplate => {
            m.store.delete_template(s(p, "TemplateName")?).map_err(e1)?;
            Ok(ok(op, rid, Some(&|_: &mut XmlWriter| {})))
        }
        Op::TestRenderTemplate => {
            let _ = p.deserialize::<serde_json::Value>(&PLAIN)?;
            let t = m.store.template(s(p, "TemplateName")?).map_err(e1)?;
            let (subject, text, html) = m.render(&t, s(p, "TemplateData")?).map_err(e1)?;
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
            .map_err(e1)?;
            let rendered = String::from_utf8_lossy(&raw).into_owned();
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.element("RenderedTemplate", &rendered);
                }),
            ))
        }
        Op::CreateConfigurationSet => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Cs {
                name: String,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                configuration_set: Cs,
            }
            let i: In = p.deserialize(&CS_IN)?;
            check_cs_name(&i.configuration_set.name).map_err(e1)?;
            m.store
                .create_config_set(&i.configuration_set.name, now)
                .map_err(e1)?;
            Ok(ok(op, rid, Some(&|_: &mut XmlWriter| {})))
        }
        Op::DeleteConfigurationSet => {
            m.store
                .delete_config_set(s(p, "ConfigurationSetName")?)
                .map_err(e1)?;
            Ok(ok(op, rid, Some(&|_: &mut XmlWriter| {})))
        }
        Op::ListConfigurationSets => {
            let q: Paged = p.deserialize(&PAGED)?;
            let all = m.store.config_sets().map_err(e1)?;
            let start: usize = q
                .next_token
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let max = q.max_items.unwrap_or(1000).clamp(1, 1000) as usize;
            let next = (start + max < all.len()).then(|| (start + max).to_string());
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("ConfigurationSets", |w| {
                        for (n, _) in all.iter().skip(start).take(max) {
                            w.nested("member", |w| {
                                w.element("Name", n);
                            });
                        }
                    });
                    w.element_opt("NextToken", next.as_deref());
                }),
            ))
        }
        Op::DescribeConfigurationSet => {
            let _ = p.deserialize::<serde_json::Value>(&DESCRIBE_CS)?;
            let name = s(p, "ConfigurationSetName")?;
            let dests = m.store.destinations(name).map_err(e1)?;
            Ok(ok(
                op,
                rid,
                Some(&|w: &mut XmlWriter| {
                    w.nested("ConfigurationSet", |w| {
                        w.element("Name", name);
                    });
                    w.nested("EventDestinations", |w| {
                        for d in &dests {
                            w.nested("member", |w| {
                                w.element("Name", &d.name);
                                w.element("Enabled", if d.enabled { "true" } else { "false" });
                                w.nested("MatchingEventTypes", |w| {
                                    for t in &d.types {
                                        w.element("member", &v1_type(t));
                                    }
                                });
                                if let Some(t) = &d.sns_topic_arn {
                                    w.nested("SNSDestination", |w| {
                                        w.element("TopicARN", t);
                                    });
                                }
                            });
                        }
                    });
                }),
            ))
        }
        Op::CreateConfigurationSetEventDestination | Op::UpdateConfigurationSetEventDestination => {
            let i: CsedIn = p.deserialize(&CSED_IN)?;
            let d = i.event_destination;
            let mut types = vec![];
            for t in &d.matching_event_types {
                types.push(
                    v2_type(t).ok_or_else(|| {
                        SesError::Invalid(format!("Invalid event type {t}.")).v1()
                    })?,
                );
            }
            let Some(sns) = d.sns_destination else {
                return Err(SesError::Invalid(
                    "Nimbus delivers SES events to SNS topics (SNSDestination) only; CloudWatch and Kinesis Firehose destinations are not supported.".into(),
                )
                .v1());
            };
            if !sns.topic_arn.starts_with("arn:aws:sns:") {
                return Err(AwsError::new(
                    http::StatusCode::BAD_REQUEST,
                    "InvalidSNSDestination",
                    format!("SNS topic <{}> is invalid.", sns.topic_arn),
                ));
            }
            let dest = EventDest {
                name: d.name,
                enabled: d.enabled,
                types,
                sns_topic_arn: Some(sns.topic_arn),
                event_bus_arn: None,
            };
            m.store
                .put_destination(
                    &i.configuration_set_name,
                    &dest,
                    op == Op::CreateConfigurationSetEventDestination,
                )
                .map_err(e1)?;
            Ok(ok(op, rid, Some(&|_: &mut XmlWriter| {})))
        }
        Op::DeleteConfigurationSetEventDestination => {
            m.store
                .delete_destination(s(p, "ConfigurationSetName")?, s(p, "EventDestinationName")?)
                .map_err(e1)?;
            Ok(ok(op, rid, Some(&|_: &mut XmlWriter| {})))
        }
        _ => Err(AwsError::not_implemented("ses", op.name())),
    }
}

pub(crate) fn check_cs_name(n: &str) -> Result<(), SesError> {
    if n.is_empty()
        || n.len() > 64
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(SesError::Invalid(format!(
            "Configuration set name <{n}> is invalid: use 1 to 64 ASCII letters, numbers, underscores or dashes."
        )));
    }
    Ok(())
}

/// v1 event type names (`send`, `renderingFailure`) → the stored v2 names.
pub fn v2_type(t: &str) -> Option<String> {
    let v = match t {
        "send" | "SEND" => "SEND",
        "reject" | "REJECT" => "REJECT",
        "bounce" | "BOUNCE" => "BOUNCE",
        "complaint" | "COMPLAINT" => "COMPLAINT",
        "delivery" | "DELIVERY" => "DELIVERY",
        "open" | "OPEN" => "OPEN",
        "click" | "CLICK" => "CLICK",
        "renderingFailure" | "RENDERING_FAILURE" => "RENDERING_FAILURE",
        "DELIVERY_DELAY" => "DELIVERY_DELAY",
        "SUBSCRIPTION" => "SUBSCRIPTION",
        _ => return None,
    };
    Some(v.to_string())
}

fn v1_type(t: &str) -> String {
    match t {
        "RENDERING_FAILURE" => "renderingFailure".into(),
        other => other.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;

    #[test]
    fn event_types_map_between_versions() {
        assert_eq!(
            v2_type("renderingFailure").as_deref(),
            Some("RENDERING_FAILURE")
        );
        assert_eq!(v1_type("RENDERING_FAILURE"), "renderingFailure");
        assert_eq!(v1_type("SEND"), "send");
        assert_eq!(v2_type("nope"), None);
    }

    #[test]
    fn kind_is_used_in_messages() {
        assert_eq!(
            SesError::NotFound(Kind::Template, "t".into()).v1().message,
            "Template t does not exist."
        );
        assert_eq!(
            SesError::NotFound(Kind::Template, "t".into()).v1().code,
            "TemplateDoesNotExist"
        );
        assert_eq!(SesError::Rejected("x".into()).v2().code, "MessageRejected");
    }
}

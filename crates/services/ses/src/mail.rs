//! The mail engine SES v1 and v2 share: what sending checks, how a message and
//! the events it causes are committed to the outbox, template rendering, MIME
//! building and reading, and the two drains (events to SNS/EventBridge, mail to
//! the SMTP relay).

use crate::store::{EventDest, Kind, MessageRow, NewMessage, Store, Template};
use crate::SesError;
use base64::Engine as _;
use nimbus_triggers::sinks::{BusEvent, SinkError, Sinks, TargetKind, TopicMessage};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

type Result<T> = std::result::Result<T, SesError>;

/// The most recipients (To, Cc and Bcc together) of one message.
pub const MAX_RECIPIENTS: usize = 50;
/// The largest message SES v1 takes (raw MIME, 10 MB).
pub const MAX_MESSAGE_V1: usize = 10 * 1024 * 1024;
/// SES v2 takes 40 MB.
pub const MAX_MESSAGE_V2: usize = 40 * 1024 * 1024;
/// The sandbox quota SES reports.
pub const MAX_24H_SEND: f64 = 200.0;
pub const MAX_SEND_RATE: f64 = 1.0;
const SIMULATOR: &str = "@simulator.amazonses.com";
/// Relay attempts before a message is given up.
const RELAY_ATTEMPTS: i64 = 5;
/// Event delivery attempts before an event is given up.
const EVENT_ATTEMPTS: i64 = 10;

/// A message SES is asked to send, once its MIME exists.
pub struct Outgoing {
    /// The envelope sender (`Source`, or the `From` of a raw message).
    pub source: String,
    /// Every recipient (To, Cc, Bcc, or a raw message's `Destinations`).
    pub destinations: Vec<String>,
    pub subject: String,
    pub raw: Vec<u8>,
    pub config_set: Option<String>,
    pub tags: Vec<(String, String)>,
    /// `Err` when a template did not render (SES accepts the message and reports
    /// a rendering failure).
    pub rendering_error: Option<String>,
    pub max_size: usize,
}

/// The engine.
pub struct Mail {
    pub store: Store,
    pub region: String,
    pub account: String,
    pub sinks: Arc<Sinks>,
    pub relay: Option<String>,
    events_wake: Notify,
    relay_wake: Notify,
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub relayed: AtomicU64,
    pub relay_failures: AtomicU64,
}

/// `local@domain` → `domain`, lower-cased.
fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
}

/// The bare address of `Name <a@b>` or `a@b`.
pub fn bare_address(s: &str) -> String {
    let s = s.trim();
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].trim().to_string(),
        _ => s.to_string(),
    }
}

fn message_id(now_ms: i64) -> String {
    format!("{now_ms:016x}-{}-000000", uuid::Uuid::new_v4())
}

impl Mail {
    pub fn new(
        store: Store,
        region: String,
        account: String,
        sinks: Arc<Sinks>,
        relay: Option<String>,
    ) -> Self {
        Self {
            store,
            region,
            account,
            sinks,
            relay,
            events_wake: Notify::new(),
            relay_wake: Notify::new(),
            sent: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            relay_failures: AtomicU64::new(0),
        }
    }

    /// Whether `address` may send: itself or its domain is a verified identity.
    pub fn verified(&self, address: &str) -> Result<bool> {
        Ok(self.identity_of(address)?.is_some())
    }

    /// The verified identity `address` sends as: itself, else its domain.
    pub fn identity_of(&self, address: &str) -> Result<Option<String>> {
        let a = bare_address(address);
        if let Some(i) = self.store.identity(&a)? {
            return Ok(Some(i.identity));
        }
        match domain_of(&a) {
            Some(d) => Ok(self.store.identity(&d)?.map(|i| i.identity)),
            None => Ok(None),
        }
    }

    /// Check and commit a message SES was asked to send; returns its id.
    pub fn send(&self, m: Outgoing, now_ms: i64) -> Result<String> {
        let r = self.send_checked(m, now_ms);
        if matches!(r, Err(SesError::Rejected(_))) {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn send_checked(&self, m: Outgoing, now_ms: i64) -> Result<String> {
        if !self.store.sending_enabled()? {
            return Err(SesError::Paused);
        }
        if m.destinations.is_empty() {
            return Err(SesError::Invalid("Missing final '@domain'".into()));
        }
        if m.destinations.len() > MAX_RECIPIENTS {
            return Err(SesError::Invalid(format!(
                "Recipient count exceeds {MAX_RECIPIENTS}."
            )));
        }
        for d in &m.destinations {
            let a = bare_address(d);
            if !a.contains('@') || a.starts_with('@') || a.ends_with('@') {
                return Err(SesError::Invalid(format!("Missing final '@domain' in {d}")));
            }
        }
        if m.raw.len() > m.max_size {
            return Err(SesError::Rejected(format!(
                "Message length is more than {} bytes long: '{}'.",
                m.max_size,
                m.raw.len()
            )));
        }
        let dests = match &m.config_set {
            Some(cs) => self.store.destinations(cs)?,
            None => vec![],
        };
        let Some(identity) = self.identity_of(&m.source)? else {
            return Err(SesError::Rejected(format!(
                "Email address is not verified. The following identities failed the check in region {}: {}",
                self.region.to_ascii_uppercase(),
                bare_address(&m.source)
            )));
        };
        let topics = self.store.identity_topics(&identity)?;
        let id = message_id(now_ms);
        let events = self.events_for(&id, &m, &dests, &topics, now_ms);
        let deliverable = m
            .destinations
            .iter()
            .any(|d| !bare_address(d).to_ascii_lowercase().ends_with(SIMULATOR));
        let row = NewMessage {
            id: id.clone(),
            origin: "ses".into(),
            source: m.source.clone(),
            destinations: m.destinations.clone(),
            subject: m.subject.clone(),
            config_set: m.config_set.clone(),
            raw: m.raw,
            status: if m.rendering_error.is_some() {
                "RenderingFailure".into()
            } else {
                "Accepted".into()
            },
            error: m.rendering_error.clone(),
            relay: self.relay.is_some() && deliverable && m.rendering_error.is_none(),
            events,
        };
        self.store.insert_message(&row, now_ms)?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        tracing::info!(message_id = %id, recipients = row.destinations.len(), "ses message accepted");
        self.events_wake.notify_one();
        if row.relay {
            self.relay_wake.notify_one();
        }
        Ok(id)
    }

    /// Record mail another service sends (SNS email subscriptions): no identity
    /// check, no events.
    pub fn record(
        &self,
        origin: &str,
        from: &str,
        to: &[String],
        subject: &str,
        raw: Vec<u8>,
        now_ms: i64,
    ) -> Result<String> {
        let id = message_id(now_ms);
        let row = NewMessage {
            id: id.clone(),
            origin: origin.to_string(),
            source: from.to_string(),
            destinations: to.to_vec(),
            subject: subject.to_string(),
            config_set: None,
            raw,
            status: "Accepted".into(),
            error: None,
            relay: self.relay.is_some()
                && to
                    .iter()
                    .any(|d| !bare_address(d).to_ascii_lowercase().ends_with(SIMULATOR)),
            events: vec![],
        };
        self.store.insert_message(&row, now_ms)?;
        if row.relay {
            self.relay_wake.notify_one();
        }
        Ok(id)
    }

    /// The event notifications a message causes, per destination: Send always;
    /// Delivery for recipients other than the simulator's bounce address; Bounce
    /// and Complaint for the simulator's addresses; RenderingFailure instead of
    /// all of them when a template did not render.
    fn events_for(
        &self,
        id: &str,
        m: &Outgoing,
        dests: &[EventDest],
        identity_topics: &[(String, String)],
        now_ms: i64,
    ) -> Vec<(String, String, String)> {
        let ts = iso(now_ms);
        let parsed = mail_parser::MessageParser::default().parse(&m.raw);
        let mut headers = vec![];
        if let Some(p) = &parsed {
            for (name, value) in p.headers_raw() {
                headers.push(json!({"name": name, "value": value.trim()}));
            }
        }
        let common = json!({
            "from": [m.source],
            "to": m.destinations,
            "subject": m.subject,
            "messageId": id,
        });
        let mut tags = Map::new();
        tags.insert("ses:operation".into(), json!(["SendEmail"]));
        tags.insert("ses:source-ip".into(), json!(["127.0.0.1"]));
        if let Some(cs) = &m.config_set {
            tags.insert("ses:configuration-set".into(), json!([cs]));
        }
        for (k, v) in &m.tags {
            tags.insert(k.clone(), json!([v]));
        }
        let mail = json!({
            "timestamp": ts,
            "source": m.source,
            "sourceArn": format!("arn:aws:ses:{}:{}:identity/{}", self.region, self.account, bare_address(&m.source)),
            "sendingAccountId": self.account,
            "messageId": id,
            "destination": m.destinations,
            "headersTruncated": false,
            "headers": headers,
            "commonHeaders": common,
            "tags": tags,
        });
        let lower: Vec<String> = m
            .destinations
            .iter()
            .map(|d| bare_address(d).to_ascii_lowercase())
            .collect();
        let bounced: Vec<&String> = lower
            .iter()
            .filter(|d| d.as_str() == format!("bounce{SIMULATOR}"))
            .collect();
        let complained: Vec<&String> = lower
            .iter()
            .filter(|d| d.as_str() == format!("complaint{SIMULATOR}"))
            .collect();
        let delivered: Vec<&String> = lower
            .iter()
            .filter(|d| d.as_str() != format!("bounce{SIMULATOR}"))
            .collect();
        let mut kinds: Vec<(&str, &str, Value)> = vec![];
        if let Some(err) = &m.rendering_error {
            kinds.push((
                "RENDERING_FAILURE",
                "Rendering Failure",
                json!({"failure": {"errorMessage": err, "templateName": m.subject}}),
            ));
        } else {
            kinds.push(("SEND", "Send", json!({"send": {}})));
            if !delivered.is_empty() {
                kinds.push((
                    "DELIVERY",
                    "Delivery",
                    json!({"delivery": {
                        "timestamp": ts,
                        "processingTimeMillis": 0,
                        "recipients": delivered,
                        "smtpResponse": "250 2.6.0 Message received",
                        "reportingMTA": "nimbus.local",
                    }}),
                ));
            }
            if !bounced.is_empty() {
                kinds.push((
                    "BOUNCE",
                    "Bounce",
                    json!({"bounce": {
                        "bounceType": "Permanent",
                        "bounceSubType": "General",
                        "bouncedRecipients": bounced.iter().map(|a| json!({
                            "emailAddress": a,
                            "action": "failed",
                            "status": "5.1.1",
                            "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                        })).collect::<Vec<_>>(),
                        "timestamp": ts,
                        "feedbackId": format!("{id}-bounce"),
                        "reportingMTA": "dns; nimbus.local",
                    }}),
                ));
            }
            if !complained.is_empty() {
                kinds.push((
                    "COMPLAINT",
                    "Complaint",
                    json!({"complaint": {
                        "complainedRecipients": complained.iter().map(|a| json!({"emailAddress": a})).collect::<Vec<_>>(),
                        "timestamp": ts,
                        "feedbackId": format!("{id}-complaint"),
                        "complaintFeedbackType": "abuse",
                    }}),
                ));
            }
        }
        let mut out = vec![];
        for d in dests.iter().filter(|d| d.enabled) {
            for (kind, event_type, extra) in &kinds {
                if !d.types.iter().any(|t| t == kind) {
                    continue;
                }
                let mut ev = json!({"eventType": event_type, "mail": mail});
                if let (Some(o), Some(x)) = (ev.as_object_mut(), extra.as_object()) {
                    for (k, v) in x {
                        o.insert(k.clone(), v.clone());
                    }
                }
                let payload = ev.to_string();
                if let Some(t) = &d.sns_topic_arn {
                    out.push((t.clone(), event_type.to_string(), payload.clone()));
                }
                if let Some(b) = &d.event_bus_arn {
                    out.push((b.clone(), event_type.to_string(), payload.clone()));
                }
            }
        }
        // The identity's own notification topics (SetIdentityNotificationTopic):
        // the older notification format, for bounces, complaints and deliveries.
        for (_, event_type, extra) in &kinds {
            for (_, topic) in identity_topics.iter().filter(|(k, _)| k == event_type) {
                let mut n = json!({"notificationType": event_type, "mail": mail});
                if let Some(o) = n["mail"].as_object_mut() {
                    o.remove("tags");
                }
                if let (Some(o), Some(x)) = (n.as_object_mut(), extra.as_object()) {
                    for (k, v) in x {
                        o.insert(k.clone(), v.clone());
                    }
                }
                out.push((topic.clone(), event_type.to_string(), n.to_string()));
            }
        }
        out
    }

    /// Deliver owed events until the task is dropped.
    pub async fn run_events(self: Arc<Self>) {
        loop {
            let store = self.store.clone();
            let now = nimbus_core::now_ms();
            let due = tokio::task::spawn_blocking(move || store.events_due(now, 50)).await;
            let (batch, next) = match due {
                Ok(Ok(x)) => x,
                other => {
                    tracing::warn!(error = ?other.err(), "ses event outbox read failed");
                    (vec![], Some(now + 1000))
                }
            };
            if batch.is_empty() {
                let wait = next.map(|n| (n - now).max(1) as u64).unwrap_or(3_600_000);
                tokio::select! {
                    _ = self.events_wake.notified() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                }
                continue;
            }
            for ev in batch {
                let result = self
                    .deliver_event(&ev.target, &ev.detail_type, &ev.payload)
                    .await;
                let now = nimbus_core::now_ms();
                let (done, error, next_ms) = match result {
                    Ok(_) => (true, None, now),
                    Err(e) if e.is_transient() && ev.attempts + 1 < EVENT_ATTEMPTS => {
                        let backoff = 1000i64 << ev.attempts.min(8);
                        (false, Some(e.to_string()), now + backoff)
                    }
                    Err(e) => {
                        tracing::warn!(target = %ev.target, error = %e, "ses event given up");
                        (true, Some(e.to_string()), now)
                    }
                };
                let store = self.store.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    store.event_result(ev.id, done, error.as_deref(), next_ms)
                })
                .await;
            }
        }
    }

    async fn deliver_event(
        &self,
        target: &str,
        detail_type: &str,
        payload: &str,
    ) -> std::result::Result<String, SinkError> {
        match TargetKind::of(target) {
            Some(TargetKind::Topic) => {
                self.sinks
                    .topics()?
                    .publish(
                        target,
                        TopicMessage {
                            message: payload.to_string(),
                            ..Default::default()
                        },
                    )
                    .await
            }
            Some(TargetKind::Bus) => {
                let dt = match detail_type {
                    "Send" => "Email Sent",
                    "Delivery" => "Email Delivered",
                    "Bounce" => "Email Bounced",
                    "Complaint" => "Email Complaint Received",
                    "Reject" => "Email Rejected",
                    _ => "Email Rendering Failed",
                };
                self.sinks
                    .buses()?
                    .put_event(
                        target,
                        BusEvent {
                            source: "aws.ses".into(),
                            detail_type: dt.into(),
                            detail: payload.to_string(),
                            resources: vec![],
                            time_ms: None,
                            trace_header: None,
                        },
                    )
                    .await
            }
            _ => Err(SinkError::NotFound(format!(
                "{target} is not an SNS topic or an EventBridge bus"
            ))),
        }
    }

    /// Relay accepted mail through the operator's SMTP server until the task is
    /// dropped (only started with `--smtp-relay`).
    pub async fn run_relay(self: Arc<Self>) {
        let Some(url) = self.relay.clone() else {
            return;
        };
        use lettre::AsyncTransport;
        let transport = match lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url) {
            Ok(b) => b.build(),
            Err(e) => {
                tracing::error!(error = %e, "the --smtp-relay URL is not usable; mail is kept in the outbox only");
                return;
            }
        };
        loop {
            let store = self.store.clone();
            let now = nimbus_core::now_ms();
            let (batch, next) =
                match tokio::task::spawn_blocking(move || store.relay_due(now, 20)).await {
                    Ok(Ok(x)) => x,
                    other => {
                        tracing::warn!(error = ?other.err(), "ses relay queue read failed");
                        (vec![], Some(now + 1000))
                    }
                };
            if batch.is_empty() {
                let wait = next.map(|n| (n - now).max(1) as u64).unwrap_or(3_600_000);
                tokio::select! {
                    _ = self.relay_wake.notified() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                }
                continue;
            }
            for m in batch {
                let result = match envelope(&m) {
                    Ok(env) => transport
                        .send_raw(&env, &m.raw)
                        .await
                        .map(|_| ())
                        .map_err(|e| (e.is_permanent(), e.to_string())),
                    Err(e) => Err((true, e)),
                };
                let now = nimbus_core::now_ms();
                let (status, error, next_ms) = match result {
                    Ok(()) => {
                        self.relayed.fetch_add(1, Ordering::Relaxed);
                        ("sent", None, now)
                    }
                    Err((permanent, e)) => {
                        self.relay_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(message_id = %m.id, error = %e, "smtp relay failed");
                        if permanent || m.relay_attempts + 1 >= RELAY_ATTEMPTS {
                            ("failed", Some(e), now)
                        } else {
                            (
                                "retrying",
                                Some(e),
                                now + (2000i64 << m.relay_attempts.min(8)),
                            )
                        }
                    }
                };
                let store = self.store.clone();
                let id = m.id.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    store.relay_result(&id, status, error.as_deref(), next_ms)
                })
                .await;
            }
        }
    }

    // ---- templates ------------------------------------------------------------

    /// Render a template with `data` (a JSON object): subject, text, HTML.
    pub fn render(
        &self,
        t: &Template,
        data: &str,
    ) -> Result<(String, Option<String>, Option<String>)> {
        let data: Value = serde_json::from_str(data).map_err(|e| {
            SesError::InvalidRenderingParameter(format!("Template data is not valid JSON: {e}"))
        })?;
        let subject = render(t.subject.as_deref().unwrap_or(""), &data, false)?;
        let text = t
            .text
            .as_deref()
            .map(|s| render(s, &data, false))
            .transpose()?;
        let html = t
            .html
            .as_deref()
            .map(|s| render(s, &data, true))
            .transpose()?;
        Ok((subject, text, html))
    }
}

fn envelope(m: &MessageRow) -> std::result::Result<lettre::address::Envelope, String> {
    let from: lettre::Address = bare_address(&m.source)
        .parse()
        .map_err(|e| format!("bad sender {}: {e}", m.source))?;
    let to: Vec<lettre::Address> = m
        .destinations
        .iter()
        .filter(|d| !bare_address(d).to_ascii_lowercase().ends_with(SIMULATOR))
        .map(|d| {
            bare_address(d)
                .parse()
                .map_err(|e| format!("bad recipient {d}: {e}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    lettre::address::Envelope::new(Some(from), to).map_err(|e| e.to_string())
}

pub fn iso(ms: i64) -> String {
    nimbus_protocol::timestamp::from_epoch_seconds(ms as f64 / 1000.0)
        .map(nimbus_protocol::timestamp::format_iso8601)
        .unwrap_or_default()
}

/// A registry rendering as SES does: strict (a variable missing from the data
/// is a rendering failure), escaping HTML (as Handlebars.js: `& < > " ' ` =`)
/// only in the HTML part; no partials.
fn handlebars(html: bool) -> handlebars::Handlebars<'static> {
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    if html {
        hb.register_escape_fn(handlebars::html_escape);
    } else {
        hb.register_escape_fn(handlebars::no_escape);
    }
    hb
}

/// Check a template part's Handlebars syntax (`CreateTemplate`,
/// `UpdateTemplate`: SES's `InvalidTemplate`).
pub fn validate_template(part: &str, text: &str) -> Result<()> {
    handlebars::Template::compile(text)
        .map(|_| ())
        .map_err(|e| SesError::InvalidTemplate(format!("Invalid {part}: {}", e.reason())))
}

/// Render a template part with Handlebars, as SES does: `{{name}}`, `{{a.b}}`
/// (escaped in HTML), `{{{name}}}` (never escaped), `{{#if}}`/`{{else}}`,
/// `{{#unless}}`, `{{#each}}` (with `{{this}}`, `{{@index}}`), `{{#with}}`.
/// A variable missing from the data is SES's rendering failure
/// (`MissingRenderingAttribute`); `{{#if}}` on a missing one is false.
pub fn render(template: &str, data: &Value, html: bool) -> Result<String> {
    use handlebars::RenderErrorReason as R;
    handlebars(html)
        .render_template(template, data)
        .map_err(|e| match e.reason() {
            R::MissingVariable(path) => SesError::MissingAttribute(format!(
                "Attribute '{}' is not present in the rendering data.",
                path.as_deref().unwrap_or("")
            )),
            R::TemplateError(t) => {
                SesError::InvalidTemplate(format!("Invalid template: {}", t.reason()))
            }
            other => {
                SesError::InvalidTemplate(format!("The template could not be rendered: {other}"))
            }
        })
}

/// Build the MIME message of a simple send (text and/or HTML).
#[allow(clippy::too_many_arguments)]
pub fn build_mime(
    id_domain: &str,
    from: &str,
    to: &[String],
    cc: &[String],
    reply_to: &[String],
    subject: &str,
    text: Option<&str>,
    html: Option<&str>,
) -> Result<Vec<u8>> {
    use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
    let bad = |what: &str, v: &str, e: &dyn std::fmt::Display| {
        SesError::Invalid(format!("Illegal address in {what}: {v} ({e})"))
    };
    let mut b = lettre::Message::builder()
        .from(
            from.parse::<Mailbox>()
                .map_err(|e| bad("Source", from, &e))?,
        )
        .subject(subject)
        .message_id(Some(format!("<{}@{id_domain}>", uuid::Uuid::new_v4())));
    for t in to {
        b = b.to(t.parse::<Mailbox>().map_err(|e| bad("To", t, &e))?);
    }
    for c in cc {
        b = b.cc(c.parse::<Mailbox>().map_err(|e| bad("Cc", c, &e))?);
    }
    for r in reply_to {
        b = b.reply_to(r.parse::<Mailbox>().map_err(|e| bad("ReplyTo", r, &e))?);
    }
    let text_part = |t: &str| {
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(t.to_string())
    };
    let html_part = |h: &str| {
        SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(h.to_string())
    };
    let msg = match (text, html) {
        (Some(t), Some(h)) => b.multipart(
            MultiPart::alternative()
                .singlepart(text_part(t))
                .singlepart(html_part(h)),
        ),
        (None, Some(h)) => b.singlepart(html_part(h)),
        (Some(t), None) => b.singlepart(text_part(t)),
        (None, None) => b.singlepart(text_part("")),
    }
    .map_err(|e| SesError::Invalid(format!("The message could not be built: {e}")))?;
    Ok(msg.formatted())
}

/// What a raw message says about itself: sender, recipients, subject.
pub struct RawInfo {
    pub from: Option<String>,
    pub recipients: Vec<String>,
    pub subject: String,
}

/// Parse a raw MIME message's envelope-relevant headers.
pub fn raw_info(raw: &[u8]) -> Result<RawInfo> {
    let m = mail_parser::MessageParser::default()
        .parse(raw)
        .ok_or_else(|| SesError::Invalid("The raw message is not a MIME message.".into()))?;
    let addrs = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    };
    let mut recipients = addrs(m.to());
    recipients.extend(addrs(m.cc()));
    recipients.extend(addrs(m.bcc()));
    Ok(RawInfo {
        from: addrs(m.from()).into_iter().next(),
        recipients,
        subject: m.subject().unwrap_or("").to_string(),
    })
}

/// The outbox's view of a message: headers, text, HTML, attachments.
pub fn message_view(m: &MessageRow, full: bool) -> Value {
    let mut v = json!({
        "MessageId": m.id,
        "Timestamp": iso(m.created_ms),
        "Origin": m.origin,
        "Source": m.source,
        "Destinations": m.destinations,
        "Subject": m.subject,
        "ConfigurationSetName": m.config_set,
        "Status": m.status,
        "Error": m.error,
        "Size": m.raw.len(),
        "Relay": {
            "Status": m.relay_status,
            "Error": m.relay_error,
            "Attempts": m.relay_attempts,
        },
    });
    if !full {
        return v;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(p) = mail_parser::MessageParser::default().parse(&m.raw) {
        use mail_parser::MimeHeaders;
        v["Headers"] = json!(p
            .headers_raw()
            .map(|(n, val)| json!({"Name": n, "Value": val.trim()}))
            .collect::<Vec<_>>());
        v["Text"] = json!(p.body_text(0));
        v["Html"] = json!(p.body_html(0));
        v["Attachments"] = json!(p
            .attachments()
            .map(|a| {
                let ct = a
                    .content_type()
                    .map(|c| match c.subtype() {
                        Some(s) => format!("{}/{s}", c.ctype()),
                        None => c.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".into());
                json!({
                    "Filename": a.attachment_name(),
                    "ContentType": ct,
                    "Size": a.contents().len(),
                    "ContentBase64": b64.encode(a.contents()),
                })
            })
            .collect::<Vec<_>>());
    }
    v
}

/// The names an error about a `Kind` uses.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Template => "Template",
        Kind::ConfigSet => "Configuration set",
        Kind::EventDestination => "Event destination",
        Kind::Identity => "Identity",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_ses() {
        let data = json!({"name": "Ann <a>", "order": {"id": 7}});
        assert_eq!(
            render("Hi {{name}}, #{{ order.id }}", &data, false).unwrap(),
            "Hi Ann <a>, #7"
        );
        assert_eq!(
            render("<b>{{name}}</b>", &data, true).unwrap(),
            "<b>Ann &lt;a&gt;</b>"
        );
        assert_eq!(render("{{{name}}}", &data, true).unwrap(), "Ann <a>");
        assert!(matches!(
            render("{{missing}}", &data, false),
            Err(SesError::MissingAttribute(_))
        ));
    }

    #[test]
    fn handlebars_blocks_render_like_ses() {
        let data = json!({
            "name": "Ann", "vip": true, "empty": [],
            "items": [{"sku": "a1", "qty": 2}, {"sku": "<b2>", "qty": 1}],
            "address": {"city": "Oslo", "zip": null}
        });
        let t = "{{#if vip}}Dear VIP {{name}}{{else}}Hello {{name}}{{/if}}: \
                 {{#each items}}{{@index}}={{sku}}x{{qty}};{{/each}} \
                 {{#each empty}}x{{else}}none{{/each}} \
                 {{#with address}}{{city}}{{/with}} \
                 {{#unless nothere}}no-flag{{/unless}}";
        assert_eq!(
            render(t, &data, false).unwrap(),
            "Dear VIP Ann: 0=a1x2;1=<b2>x1; none Oslo no-flag"
        );
        assert_eq!(
            render("{{#each items}}<i>{{sku}}</i>{{/each}}", &data, true).unwrap(),
            "<i>a1</i><i>&lt;b2&gt;</i>"
        );
        assert_eq!(render("{{address.zip}}|", &data, true).unwrap(), "|");
        let e = render("{{#each items}}{{price}}{{/each}}", &data, false).unwrap_err();
        assert!(
            matches!(&e, SesError::MissingAttribute(m) if m.contains("price")),
            "{e:?}"
        );
        let e = render("{{#if vip}}unclosed", &data, false).unwrap_err();
        assert!(matches!(e, SesError::InvalidTemplate(_)), "{e:?}");
        assert!(validate_template("HtmlPart", "{{#each x}}{{/if}}").is_err());
        assert!(validate_template("HtmlPart", "{{#each x}}{{this}}{{/each}}").is_ok());
    }

    #[test]
    fn simple_mail_round_trips_through_mime() {
        let raw = build_mime(
            "email.amazonses.com",
            "Me <me@example.com>",
            &["you@example.com".into()],
            &[],
            &[],
            "Hello",
            Some("plain"),
            Some("<p>html</p>"),
        )
        .unwrap();
        let info = raw_info(&raw).unwrap();
        assert_eq!(info.from.as_deref(), Some("me@example.com"));
        assert_eq!(info.recipients, vec!["you@example.com"]);
        assert_eq!(info.subject, "Hello");
        let row = MessageRow {
            id: "x".into(),
            created_ms: 0,
            origin: "ses".into(),
            source: "me@example.com".into(),
            destinations: vec![],
            subject: "Hello".into(),
            config_set: None,
            raw,
            status: "Accepted".into(),
            error: None,
            relay_status: "none".into(),
            relay_error: None,
            relay_attempts: 0,
        };
        let v = message_view(&row, true);
        assert_eq!(v["Text"].as_str().unwrap().trim(), "plain");
        assert_eq!(v["Html"], "<p>html</p>");
    }

    #[test]
    fn addresses_are_bare() {
        assert_eq!(bare_address("Ann <ann@x.org>"), "ann@x.org");
        assert_eq!(bare_address(" ann@x.org "), "ann@x.org");
        assert_eq!(domain_of("ann@X.org").as_deref(), Some("x.org"));
    }
}

//! Delivery: planning a (rule, target) delivery of an event, draining the outbox
//! at least once into the targets, the schedule rules' timer, replays, and the
//! [`BusSink`] other services put events through.

use crate::api::{commit, iso, new_delivery, Routed};
use crate::state::{Archive, State, K_REPLAY, K_RULE};
use crate::store::{NewDelivery, OutboxRow};
use crate::transform::{apply_template, Context, JsonPath};
use crate::{now_ms, Inner};
use nimbus_triggers::sinks::{
    BusEvent, BusSink, Delivery, MessageAttribute, QueueMessage, SinkError, SinkResult, TargetKind,
};
use nimbus_triggers::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How one outbox row is delivered (stored with it as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spec {
    /// `arn` (through `ctx.sinks.deliver`), `bus` (the whole event onto a bus),
    /// `api` (an API destination over HTTP).
    pub kind: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub detail_type: String,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub dedup_id: Option<String>,
    #[serde(default)]
    pub partition_key: Option<String>,
    /// `RetryPolicy.MaximumRetryAttempts` (185 by default).
    pub max_retries: u32,
    /// `RetryPolicy.MaximumEventAgeInSeconds` (86,400 by default).
    pub max_age_s: i64,
    #[serde(default)]
    pub dlq: Option<String>,
    /// The original event, for the dead-letter queue.
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub http: Option<Value>,
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// What target `t` of rule `rule_arn` receives for `event`.
pub(crate) fn plan(
    _st: &State,
    t: &Value,
    event: &Value,
    rule_name: &str,
    rule_arn: &str,
    ingestion: &str,
) -> NewDelivery {
    let arn = str_of(t, "Arn").unwrap_or_default();
    let kind = match TargetKind::of(arn) {
        Some(TargetKind::Bus) => "bus",
        None if arn.contains(":api-destination/") => "api",
        _ => "arn",
    };
    let payload = if kind == "bus" {
        event.to_string()
    } else if let Some(input) = str_of(t, "Input") {
        input.to_string()
    } else if let Some(path) = str_of(t, "InputPath") {
        JsonPath::parse(path)
            .and_then(|p| p.select(event).cloned())
            .unwrap_or(Value::Null)
            .to_string()
    } else if let Some(tr) = t.get("InputTransformer") {
        let empty = serde_json::Map::new();
        let paths = tr
            .get("InputPathsMap")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let ctx = Context {
            rule_arn,
            rule_name,
            ingestion_time: ingestion,
        };
        apply_template(
            paths,
            str_of(tr, "InputTemplate").unwrap_or(""),
            event,
            &ctx,
        )
    } else {
        event.to_string()
    };
    let event_id = str_of(event, "id").unwrap_or_default().to_string();
    let group_id = t
        .get("SqsParameters")
        .and_then(|p| str_of(p, "MessageGroupId"))
        .map(str::to_string);
    let partition_key = t
        .get("KinesisParameters")
        .and_then(|p| str_of(p, "PartitionKeyPath"))
        .and_then(JsonPath::parse)
        .and_then(|p| p.select(event).cloned())
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .or_else(|| (TargetKind::of(arn) == Some(TargetKind::Stream)).then(|| event_id.clone()));
    let retry = t.get("RetryPolicy");
    let dlq = t
        .get("DeadLetterConfig")
        .and_then(|d| str_of(d, "Arn"))
        .map(str::to_string);
    let spec = Spec {
        kind: kind.to_string(),
        source: str_of(event, "source").unwrap_or_default().to_string(),
        detail_type: str_of(event, "detail-type").unwrap_or_default().to_string(),
        dedup_id: group_id.as_ref().map(|_| event_id.clone()),
        group_id,
        partition_key,
        max_retries: retry
            .and_then(|r| r.get("MaximumRetryAttempts"))
            .and_then(Value::as_u64)
            .map_or(185, |n| n as u32),
        max_age_s: retry
            .and_then(|r| r.get("MaximumEventAgeInSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(86_400),
        event: dlq.as_ref().map(|_| event.to_string()),
        dlq,
        http: t.get("HttpParameters").cloned(),
    };
    new_delivery(event, rule_arn, t, payload, &spec)
}

/// Start the outbox drain and the schedule timer.
pub(crate) fn spawn(inner: Arc<Inner>) {
    tokio::spawn(drain(inner.clone()));
    tokio::spawn(schedules(inner));
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, nimbus_store::StoreError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "eventbridge outbox storage failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "eventbridge outbox task failed");
            None
        }
    }
}

/// Wait for `notify`, or until `at_ms` when given.
async fn wait(notify: &tokio::sync::Notify, at_ms: Option<i64>) {
    match at_ms {
        Some(at) => {
            let ms = (at - now_ms()).clamp(0, 3_600_000) as u64;
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(ms)) => {}
            }
        }
        None => notify.notified().await,
    }
}

async fn drain(inner: Arc<Inner>) {
    loop {
        let store = inner.store.clone();
        let now = now_ms();
        let Some(rows) = blocking(move || store.due(now, 32)).await else {
            wait(&inner.outbox, Some(now_ms() + 1000)).await;
            continue;
        };
        if rows.is_empty() {
            let store = inner.store.clone();
            let next = blocking(move || store.next_due()).await.flatten();
            wait(&inner.outbox, next).await;
            continue;
        }
        futures_util::future::join_all(rows.into_iter().map(|r| attempt(&inner, r))).await;
    }
}

/// Backoff before retry `n` (1-based): 1 s doubling, at most a minute.
fn backoff_ms(n: u32) -> i64 {
    1000i64.saturating_mul(1 << n.saturating_sub(1).min(6))
}

async fn attempt(inner: &Arc<Inner>, row: OutboxRow) {
    let spec: Spec = serde_json::from_str(&row.spec).unwrap_or_default();
    let result = match spec.kind.as_str() {
        "bus" => to_bus(inner, &row).await,
        "api" => to_api(inner, &row, &spec).await,
        _ => {
            // A function's policy decides whether this rule may invoke it.
            let source = nimbus_triggers::sinks::InvokeSource {
                service: "events.amazonaws.com".into(),
                source_arn: row.rule_arn.clone(),
                source_account: inner.ctx.account_id.clone(),
            };
            inner
                .ctx
                .sinks
                .deliver_from(
                    &row.target_arn,
                    Delivery::Json {
                        body: row.payload.clone(),
                        source: spec.source.clone(),
                        detail_type: spec.detail_type.clone(),
                        group_id: spec.group_id.clone(),
                        deduplication_id: spec.dedup_id.clone(),
                        partition_key: spec.partition_key.clone(),
                        trace_header: None,
                        resources: Vec::new(),
                    },
                    Some(&source),
                )
                .await
        }
    };
    let now = now_ms();
    let store = inner.store.clone();
    let id = row.id;
    match result {
        Ok(_) => {
            inner.metrics.delivered.fetch_add(1, Ordering::Relaxed);
            record(inner, &row, "delivered", None);
            blocking(move || store.done(id)).await;
        }
        Err(e) => {
            let attempts = row.attempts + 1;
            let young = now - row.created_ms < spec.max_age_s.saturating_mul(1000);
            if e.is_transient() && attempts <= spec.max_retries && young {
                tracing::debug!(target_arn = %row.target_arn, error = %e, attempts, "eventbridge delivery will be retried");
                inner.metrics.retried.fetch_add(1, Ordering::Relaxed);
                let next = now + backoff_ms(attempts);
                blocking(move || store.retry_at(id, attempts, next)).await;
                return;
            }
            tracing::warn!(target_arn = %row.target_arn, rule_arn = %row.rule_arn, error = %e, attempts, "eventbridge delivery failed");
            match &spec.dlq {
                Some(dlq) => match dead_letter(inner, &row, &spec, dlq, &e).await {
                    Ok(()) => {
                        inner.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        record(inner, &row, "dead-lettered", Some(e.to_string()));
                        blocking(move || store.done(id)).await;
                    }
                    Err(dlq_err) => {
                        tracing::warn!(dlq = %dlq, error = %dlq_err, "eventbridge dead-letter queue refused the event; retrying");
                        let next = now + backoff_ms(attempts);
                        blocking(move || store.retry_at(id, attempts, next)).await;
                    }
                },
                None => {
                    inner.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                    record(inner, &row, "failed", Some(e.to_string()));
                    blocking(move || store.done(id)).await;
                }
            }
        }
    }
}

fn record(inner: &Inner, row: &OutboxRow, outcome: &str, error: Option<String>) {
    let mut recent = inner.recent.lock().unwrap_or_else(|p| p.into_inner());
    if recent.len() >= 100 {
        recent.pop_front();
    }
    recent.push_back(json!({
        "time": iso(now_ms()),
        "eventId": row.event_id,
        "ruleArn": row.rule_arn,
        "targetId": row.target_id,
        "targetArn": row.target_arn,
        "attempts": row.attempts + 1,
        "outcome": outcome,
        "error": error,
    }));
}

/// The event to the target's SQS dead-letter queue, with the attributes AWS adds.
async fn dead_letter(
    inner: &Inner,
    row: &OutboxRow,
    spec: &Spec,
    dlq: &str,
    e: &SinkError,
) -> SinkResult<()> {
    let attr = |s: &str| MessageAttribute {
        data_type: "String".into(),
        string_value: Some(s.to_string()),
        binary_value: None,
    };
    let code = match e {
        SinkError::NotFound(_) => "ResourceNotFoundException",
        SinkError::Rejected { code, .. } => code.as_str(),
        SinkError::Transient(_) => "RetriesExhausted",
    };
    let mut attributes = BTreeMap::new();
    attributes.insert("RULE_ARN".to_string(), attr(&row.rule_arn));
    attributes.insert("TARGET_ARN".to_string(), attr(&row.target_arn));
    attributes.insert("ERROR_CODE".to_string(), attr(code));
    attributes.insert("ERROR_MESSAGE".to_string(), attr(&e.to_string()));
    let msg = QueueMessage {
        body: spec.event.clone().unwrap_or_else(|| row.payload.clone()),
        attributes,
        ..Default::default()
    };
    inner.ctx.sinks.queues()?.send(dlq, msg).await.map(|_| ())
}

/// The whole event onto another bus (AWS keeps source, detail-type, detail,
/// resources and time).
async fn to_bus(inner: &Inner, row: &OutboxRow) -> SinkResult<String> {
    let ev: Value = serde_json::from_str(&row.payload).unwrap_or_default();
    let time_ms = str_of(&ev, "time")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    let bus_event = BusEvent {
        source: str_of(&ev, "source").unwrap_or_default().to_string(),
        detail_type: str_of(&ev, "detail-type").unwrap_or_default().to_string(),
        detail: ev
            .get("detail")
            .map(Value::to_string)
            .unwrap_or_else(|| "{}".into()),
        resources: ev
            .get("resources")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        time_ms,
        trace_header: None,
    };
    inner
        .ctx
        .sinks
        .buses()?
        .put_event(&row.target_arn, bus_event)
        .await
}

fn kv_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|p| {
                Some((
                    str_of(p, "Key")?.to_string(),
                    str_of(p, "Value")?.to_string(),
                ))
            })
            .collect(),
        _ => vec![],
    }
}

/// An API destination: the connection's authorization and parameters, the
/// target's `HttpParameters`, the payload as the body.
async fn to_api(inner: &Inner, row: &OutboxRow, spec: &Spec) -> SinkResult<String> {
    let name = row
        .target_arn
        .split(":api-destination/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_string();
    let (dest, conn) = {
        let st = inner.lock();
        let dest = st.destinations.get(&name).cloned().ok_or_else(|| {
            SinkError::NotFound(format!("Api destination {name} does not exist."))
        })?;
        let conn = st
            .connections
            .values()
            .find(|c| c.arn == dest.connection_arn)
            .cloned()
            .ok_or_else(|| {
                SinkError::NotFound(format!(
                    "Connection {} does not exist.",
                    dest.connection_arn
                ))
            })?;
        (dest, conn)
    };
    let http = spec.http.clone().unwrap_or(Value::Null);
    let mut url = dest.endpoint.clone();
    if let Some(values) = http.get("PathParameterValues").and_then(Value::as_array) {
        for v in values.iter().filter_map(Value::as_str) {
            url = url.replacen('*', v, 1);
        }
    }
    let method =
        reqwest::Method::from_bytes(dest.method.as_bytes()).map_err(|e| SinkError::Rejected {
            code: "ValidationException".into(),
            message: e.to_string(),
        })?;
    let mut req = inner
        .http
        .request(method, &url)
        .header("content-type", "application/json; charset=utf-8")
        .header("user-agent", "Amazon/EventBridge/ApiDestinations");
    let conn_params = conn.auth.get("InvocationHttpParameters");
    let mut query = kv_pairs(conn_params.and_then(|p| p.get("QueryStringParameters")));
    query.extend(kv_pairs(http.get("QueryStringParameters")));
    if !query.is_empty() {
        req = req.query(&query);
    }
    for (k, v) in kv_pairs(conn_params.and_then(|p| p.get("HeaderParameters")))
        .into_iter()
        .chain(kv_pairs(http.get("HeaderParameters")))
    {
        req = req.header(k, v);
    }
    match conn.authorization_type.as_str() {
        "BASIC" => {
            let b = conn
                .auth
                .get("BasicAuthParameters")
                .cloned()
                .unwrap_or_default();
            req = req.basic_auth(
                str_of(&b, "Username").unwrap_or_default(),
                Some(str_of(&b, "Password").unwrap_or_default()),
            );
        }
        "API_KEY" => {
            let k = conn
                .auth
                .get("ApiKeyAuthParameters")
                .cloned()
                .unwrap_or_default();
            req = req.header(
                str_of(&k, "ApiKeyName").unwrap_or("x-api-key"),
                str_of(&k, "ApiKeyValue").unwrap_or_default(),
            );
        }
        "OAUTH_CLIENT_CREDENTIALS" => {
            let token = oauth_token(inner, &conn.auth).await?;
            req = req.bearer_auth(token);
        }
        _ => {}
    }
    let resp = req
        .body(row.payload.clone())
        .send()
        .await
        .map_err(|e| SinkError::Transient(format!("{url}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        Ok(row.event_id.clone())
    } else if status.is_server_error() || [401, 407, 409, 429].contains(&status.as_u16()) {
        Err(SinkError::Transient(format!("{url} answered {status}")))
    } else {
        Err(SinkError::Rejected {
            code: status.as_u16().to_string(),
            message: format!("{url} answered {status}"),
        })
    }
}

/// A client-credentials token from the connection's authorization endpoint.
async fn oauth_token(inner: &Inner, auth: &Value) -> SinkResult<String> {
    let o = auth.get("OAuthParameters").cloned().unwrap_or_default();
    let endpoint = str_of(&o, "AuthorizationEndpoint").unwrap_or_default();
    let method = str_of(&o, "HttpMethod").unwrap_or("POST");
    let client = o.get("ClientParameters").cloned().unwrap_or_default();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let params = o.get("OAuthHttpParameters");
    let mut req = inner.http.request(method, endpoint).basic_auth(
        str_of(&client, "ClientID").unwrap_or_default(),
        Some(str_of(&client, "ClientSecret").unwrap_or_default()),
    );
    for (k, v) in kv_pairs(params.and_then(|p| p.get("HeaderParameters"))) {
        req = req.header(k, v);
    }
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    form.extend(kv_pairs(params.and_then(|p| p.get("BodyParameters"))));
    let query = kv_pairs(params.and_then(|p| p.get("QueryStringParameters")));
    if !query.is_empty() {
        req = req.query(&query);
    }
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let resp = req
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| SinkError::Transient(format!("OAuth endpoint {endpoint}: {e}")))?;
    if !resp.status().is_success() {
        return Err(SinkError::Transient(format!(
            "OAuth endpoint {endpoint} answered {}",
            resp.status()
        )));
    }
    let v: Value = resp
        .json()
        .await
        .map_err(|e| SinkError::Transient(format!("OAuth endpoint {endpoint}: {e}")))?;
    str_of(&v, "access_token")
        .map(str::to_string)
        .ok_or_else(|| {
            SinkError::Transient(format!("OAuth endpoint {endpoint} gave no access_token"))
        })
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- schedules ----

/// The schedule rules due at `now` (each with the fire time it owes: the latest
/// in the span since its last fire, so a long outage fires once), and when the next
/// one falls due.
pub(crate) fn due_schedules(st: &State, now: i64) -> (Vec<(crate::state::Rule, i64)>, Option<i64>) {
    let mut due = Vec::new();
    let mut next: Option<i64> = None;
    for r in st.rules.values().filter(|r| r.enabled()) {
        let Some(expr) = r
            .schedule
            .as_deref()
            .and_then(|s| nimbus_schedule_expr::Expression::parse(s).ok())
        else {
            continue;
        };
        let from = r.last_fired_ms.unwrap_or(r.anchor_ms).max(r.anchor_ms);
        let tz = chrono_tz::UTC;
        match expr.latest_in(from, now, r.anchor_ms, tz) {
            Some(t) => due.push((r.clone(), t)),
            None => {
                if let Some(t) = expr.next_after(from, r.anchor_ms, tz) {
                    next = Some(next.map_or(t, |n: i64| n.min(t)));
                }
            }
        }
    }
    (due, next)
}

async fn schedules(inner: Arc<Inner>) {
    loop {
        let (due, next) = due_schedules(&inner.lock(), now_ms());
        if due.is_empty() {
            wait(&inner.schedules, next).await;
            continue;
        }
        for (rule, at) in due {
            fire(&inner, rule, at).await;
        }
    }
}

/// Deliver a schedule rule's "Scheduled Event" to its targets.
async fn fire(inner: &Arc<Inner>, mut rule: crate::state::Rule, at: i64) {
    let event = json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": inner.ctx.account_id,
        "time": iso(at),
        "region": inner.ctx.region,
        "resources": [rule.arn],
        "detail": {},
    });
    let deliveries: Vec<NewDelivery> = {
        let st = inner.lock();
        rule.targets
            .iter()
            .map(|t| plan(&st, t, &event, &rule.name, &rule.arn, &iso(now_ms())))
            .collect()
    };
    rule.last_fired_ms = Some(at);
    let store = inner.store.clone();
    let now = now_ms();
    let n = deliveries.len();
    let ok = blocking(move || store.commit_events(now, &deliveries, &[])).await;
    if ok.is_none() {
        return;
    }
    inner.metrics.matched.fetch_add(1, Ordering::Relaxed);
    if n > 0 {
        inner.outbox.notify_one();
    }
    let mut st = inner.lock();
    let key = (rule.bus.clone(), rule.name.clone());
    // The rule may have changed meanwhile: only the fire time is ours to write.
    if let Some(current) = st.rules.get_mut(&key) {
        current.last_fired_ms = Some(at);
        if let Ok(doc) = serde_json::to_string(&*current) {
            let _ = inner
                .store
                .put_doc(K_RULE, &crate::state::rule_key(&key.0, &key.1), &doc);
        }
    }
}

// ---- replays ----

fn set_replay(
    inner: &Inner,
    name: &str,
    f: impl FnOnce(&mut crate::state::Replay),
) -> Option<String> {
    let mut st = inner.lock();
    let r = st.replays.get_mut(name)?;
    f(r);
    if let Ok(doc) = serde_json::to_string(&*r) {
        let _ = inner.store.put_doc(K_REPLAY, name, &doc);
    }
    Some(r.state.clone())
}

/// Re-send an archive's window to its bus's rules, each event with `replay-name`.
pub(crate) async fn run_replay(inner: Arc<Inner>, name: String, archive: Archive) {
    let Some((start, end, filter)) = ({
        let st = inner.lock();
        st.replays.get(&name).map(|r| {
            let filter: Vec<String> = r
                .destination
                .get("FilterArns")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            (r.event_start_ms, r.event_end_ms, filter)
        })
    }) else {
        return;
    };
    set_replay(&inner, &name, |r| r.state = "RUNNING".into());
    let bus = archive
        .source_arn
        .split(":event-bus/")
        .nth(1)
        .unwrap_or("default")
        .to_string();
    let store = inner.store.clone();
    let archive_name = archive.name.clone();
    let events = blocking(move || store.archived(&archive_name, start, end))
        .await
        .unwrap_or_default();
    let mut last = None;
    for chunk in events.chunks(100) {
        if set_replay(&inner, &name, |_| {}).as_deref() == Some("CANCELLING") {
            set_replay(&inner, &name, |r| {
                r.state = "CANCELLED".into();
                r.replay_end_ms = Some(now_ms());
            });
            return;
        }
        let routed: Vec<Routed> = chunk
            .iter()
            .filter_map(|(time_ms, text)| {
                let mut event: Value = serde_json::from_str(text).ok()?;
                event["replay-name"] = Value::String(name.clone());
                Some(Routed {
                    bus: bus.clone(),
                    event,
                    time_ms: *time_ms,
                })
            })
            .collect();
        if let Err(e) = commit(&inner, routed, Some((&name, &filter))).await {
            set_replay(&inner, &name, |r| {
                r.state = "FAILED".into();
                r.state_reason = Some(e.message.clone());
                r.replay_end_ms = Some(now_ms());
            });
            return;
        }
        last = chunk.last().map(|(t, _)| *t);
    }
    set_replay(&inner, &name, |r| {
        r.state = "COMPLETED".into();
        r.last_replayed_ms = last;
        r.replay_end_ms = Some(now_ms());
    });
}

// ---- the bus sink ----

/// EventBridge as other services (and its own bus targets) deliver into it.
pub(crate) struct Sink(pub Arc<Inner>);

impl BusSink for Sink {
    fn bus_exists(&self, bus_arn: &str) -> bool {
        self.0.lock().buses.values().any(|b| b.arn == bus_arn)
    }

    fn put_event(&self, bus_arn: &str, event: BusEvent) -> BoxFuture<'_, SinkResult<String>> {
        let bus_arn = bus_arn.to_string();
        Box::pin(async move {
            let inner = &self.0;
            let bus = {
                let st = inner.lock();
                st.buses
                    .values()
                    .find(|b| b.arn == bus_arn)
                    .map(|b| b.name.clone())
                    .ok_or_else(|| {
                        SinkError::NotFound(format!("Event bus {bus_arn} does not exist."))
                    })?
            };
            let detail: Value = serde_json::from_str(&event.detail)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| SinkError::Rejected {
                    code: "MalformedDetail".into(),
                    message: "Detail is malformed.".into(),
                })?;
            let time_ms = event.time_ms.unwrap_or_else(now_ms);
            let id = uuid::Uuid::new_v4().to_string();
            let envelope = json!({
                "version": "0",
                "id": id,
                "detail-type": event.detail_type,
                "source": event.source,
                "account": inner.ctx.account_id,
                "time": iso(time_ms),
                "region": inner.ctx.region,
                "resources": event.resources,
                "detail": detail,
            });
            inner.metrics.events_put.fetch_add(1, Ordering::Relaxed);
            commit(
                inner,
                vec![Routed {
                    bus,
                    event: envelope,
                    time_ms,
                }],
                None,
            )
            .await
            .map_err(|e| SinkError::Transient(e.message))?;
            Ok(id)
        })
    }
}

//! The operations: decode the awsJson body, act on [`State`] (writing through to
//! the store), answer in AWS's shapes and with AWS's errors.

use crate::deliver::{self, Spec};
use crate::state::{
    rule_key, ApiDestination, Archive, Bus, Connection, Replay, Rule, State, K_ARCHIVE, K_BUS,
    K_CONNECTION, K_DESTINATION, K_REPLAY, K_RULE,
};
use crate::store::NewDelivery;
use crate::{now_ms, Inner, Op};
use axum::response::Response;
use http::StatusCode;
use nimbus_patterns::Pattern;
use nimbus_protocol::AwsError;
use nimbus_protocol::{decode_json, encode_json, JsonOptions};
use nimbus_svc_common::Call;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type R = Result<Value, AwsError>;

fn err(code: &'static str, msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn validation(msg: impl Into<String>) -> AwsError {
    err("ValidationException", msg)
}

fn not_found(msg: impl Into<String>) -> AwsError {
    err("ResourceNotFoundException", msg)
}

fn internal(e: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %e, "eventbridge storage failed");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalException",
        format!("Internal error: {e}"),
    )
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn required<'a>(v: &'a Value, k: &str, member: &str) -> Result<&'a str, AwsError> {
    str_of(v, k).ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// A name of `[\.\-_A-Za-z0-9]+` (`slash`: also `/`) of at most `max` characters.
fn check_name(name: &str, member: &str, max: usize, slash: bool) -> Result<(), AwsError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c) || (slash && c == '/');
    let pattern = if slash {
        "[/\\.\\-_A-Za-z0-9]+"
    } else {
        "[\\.\\-_A-Za-z0-9]+"
    };
    if name.is_empty() || name.chars().count() > max {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    if !name.chars().all(ok_char) {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
        )));
    }
    Ok(())
}

/// Epoch seconds, as the JSON protocols write timestamps.
fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A timestamp member (epoch seconds, or an ISO 8601 string) in ms.
fn ts_in(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0) as i64),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis())
            .or_else(|| s.parse::<f64>().ok().map(|x| (x * 1000.0) as i64)),
        _ => None,
    }
}

pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A bus named by name or ARN.
fn bus_name(v: &Value, k: &str) -> String {
    match str_of(v, k) {
        None => "default".to_string(),
        Some(s) => match s.split_once(":event-bus/") {
            Some((_, name)) if s.starts_with("arn:") => name.to_string(),
            _ => s.to_string(),
        },
    }
}

fn tags_in(v: &Value) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    if let Some(list) = v.get("Tags").and_then(Value::as_array) {
        for t in list {
            let k = required(t, "Key", "tags.member.key")?;
            let val = str_of(t, "Value").unwrap_or_default();
            out.insert(k.to_string(), val.to_string());
        }
    }
    Ok(out)
}

fn tags_out(t: &BTreeMap<String, String>) -> Value {
    Value::Array(
        t.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

fn persist<T: serde::Serialize>(
    inner: &Inner,
    kind: &str,
    key: &str,
    doc: &T,
) -> Result<(), AwsError> {
    let text = serde_json::to_string(doc).map_err(internal)?;
    inner.store.put_doc(kind, key, &text).map_err(internal)
}

fn no_bus(name: &str) -> AwsError {
    not_found(format!("Event bus {name} does not exist."))
}

fn no_rule(name: &str, bus: &str) -> AwsError {
    not_found(format!("Rule {name} does not exist on EventBus {bus}."))
}

fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

pub(crate) async fn handle(inner: Arc<Inner>, call: Call<Op>) -> Response {
    let Call {
        op,
        protocol,
        request_id,
        body,
        ..
    } = call;
    let request_id = &request_id;
    let body = match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return nimbus_protocol::error_response(
                protocol,
                &crate::META,
                &validation(format!("The request body could not be read: {e}")),
                request_id,
            )
        }
    };
    let input: Result<Value, AwsError> = decode_json(&body);
    let result = match input {
        Err(e) => Err(e),
        Ok(v) if !v.is_object() => Err(err(
            "SerializationException",
            "The request body must be a JSON object.",
        )),
        Ok(v) => run(&inner, op, v).await,
    };
    match result {
        Ok(Value::Null) => nimbus_protocol::error_response(
            protocol,
            &crate::META,
            &AwsError::not_implemented(crate::META.name, op_name(op)),
            request_id,
        ),
        Ok(v) => encode_json(protocol, request_id, &drop_nulls(v), JsonOptions::default()),
        Err(e) => nimbus_protocol::error_response(protocol, &crate::META, &e, request_id),
    }
}

fn op_name(op: Op) -> &'static str {
    op.name()
}

/// Run one operation; `Ok(Null)` is "not implemented".
async fn run(inner: &Arc<Inner>, op: Op, v: Value) -> R {
    match op {
        Op::CreateEventBus => create_event_bus(inner, &v),
        Op::DeleteEventBus => delete_event_bus(inner, &v),
        Op::DescribeEventBus => describe_event_bus(inner, &v),
        Op::ListEventBuses => list_event_buses(inner, &v),
        Op::UpdateEventBus => update_event_bus(inner, &v),
        Op::PutPermission => put_permission(inner, &v),
        Op::RemovePermission => remove_permission(inner, &v),
        Op::PutRule => put_rule(inner, &v),
        Op::DescribeRule => describe_rule(inner, &v),
        Op::DeleteRule => delete_rule(inner, &v),
        Op::ListRules => list_rules(inner, &v),
        Op::EnableRule => set_rule_state(inner, &v, "ENABLED"),
        Op::DisableRule => set_rule_state(inner, &v, "DISABLED"),
        Op::PutTargets => put_targets(inner, &v),
        Op::RemoveTargets => remove_targets(inner, &v),
        Op::ListTargetsByRule => list_targets(inner, &v),
        Op::ListRuleNamesByTarget => list_rule_names_by_target(inner, &v),
        Op::TestEventPattern => test_event_pattern(&v),
        Op::PutEvents => put_events(inner, &v).await,
        Op::TagResource => tag_resource(inner, &v),
        Op::UntagResource => untag_resource(inner, &v),
        Op::ListTagsForResource => list_tags(inner, &v),
        Op::CreateArchive => create_archive(inner, &v),
        Op::DescribeArchive => describe_archive(inner, &v),
        Op::UpdateArchive => update_archive(inner, &v),
        Op::DeleteArchive => delete_archive(inner, &v),
        Op::ListArchives => list_archives(inner, &v),
        Op::StartReplay => start_replay(inner, &v),
        Op::DescribeReplay => describe_replay(inner, &v),
        Op::ListReplays => list_replays(inner, &v),
        Op::CancelReplay => cancel_replay(inner, &v),
        Op::CreateConnection => create_connection(inner, &v),
        Op::DescribeConnection => describe_connection(inner, &v),
        Op::ListConnections => list_connections(inner, &v),
        Op::DeleteConnection => delete_connection(inner, &v),
        Op::UpdateConnection => update_connection(inner, &v),
        Op::DeauthorizeConnection => deauthorize_connection(inner, &v),
        Op::UpdateApiDestination => update_destination(inner, &v),
        Op::CreateApiDestination => create_destination(inner, &v),
        Op::DescribeApiDestination => describe_destination(inner, &v),
        Op::ListApiDestinations => list_destinations(inner, &v),
        Op::DeleteApiDestination => delete_destination(inner, &v),
        _ => Ok(Value::Null),
    }
}

/// `Limit` + `NextToken` over a list (the token is the index to resume at).
fn page(items: Vec<Value>, v: &Value, key: &str) -> R {
    let start: usize = str_of(v, "NextToken")
        .map(|t| {
            t.parse()
                .map_err(|_| validation("The NextToken is not valid."))
        })
        .transpose()?
        .unwrap_or(0);
    let limit = v
        .get("Limit")
        .and_then(Value::as_u64)
        .map(|l| l as usize)
        .unwrap_or(100)
        .clamp(1, 100);
    let end = (start + limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    let slice = items.get(start..end).unwrap_or_default().to_vec();
    let mut out = Map::new();
    out.insert(key.to_string(), Value::Array(slice));
    if let Some(n) = next {
        out.insert("NextToken".into(), Value::String(n));
    }
    Ok(Value::Object(out))
}

// ---- buses ----

fn create_event_bus(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    check_name(name, "name", 256, true)?;
    if name == "default" || name.contains('/') && !name.starts_with("aws.partner/") {
        return Err(validation(format!("Event bus name {name} is not valid.")));
    }
    if v.get("EventSourceName").is_some() {
        return Err(validation(
            "Partner event sources are not supported by Nimbus.",
        ));
    }
    let tags = tags_in(v)?;
    let mut st = inner.lock();
    if st.buses.contains_key(name) {
        return Err(err(
            "ResourceAlreadyExistsException",
            format!("Event bus {name} already exists."),
        ));
    }
    let now = now_ms();
    let bus = Bus {
        name: name.to_string(),
        arn: inner.arn(&format!("event-bus/{name}")),
        description: str_of(v, "Description").map(str::to_string),
        policy: None,
        created_ms: now,
        modified_ms: now,
        tags,
    };
    persist(inner, K_BUS, name, &bus)?;
    let arn = bus.arn.clone();
    st.buses.insert(name.to_string(), bus);
    Ok(json!({"EventBusArn": arn, "Description": str_of(v, "Description")}))
}

fn delete_event_bus(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    if name == "default" {
        return Err(validation("Cannot delete event bus default."));
    }
    let mut st = inner.lock();
    if !st.buses.contains_key(name) {
        return Ok(json!({}));
    }
    let rules: Vec<_> = st
        .rules
        .keys()
        .filter(|(b, _)| b == name)
        .cloned()
        .collect();
    for (b, r) in &rules {
        inner
            .store
            .delete_doc(K_RULE, &rule_key(b, r))
            .map_err(internal)?;
        st.rules.remove(&(b.clone(), r.clone()));
    }
    inner.store.delete_doc(K_BUS, name).map_err(internal)?;
    st.buses.remove(name);
    st.invalidate(name);
    inner.schedules.notify_one();
    Ok(json!({}))
}

fn bus_json(b: &Bus) -> Value {
    json!({
        "Name": b.name,
        "Arn": b.arn,
        "Description": b.description,
        "Policy": b.policy.as_ref().map(|p| p.to_string()),
        "CreationTime": ts(b.created_ms),
        "LastModifiedTime": ts(b.modified_ms.max(b.created_ms)),
    })
}

fn describe_event_bus(inner: &Inner, v: &Value) -> R {
    let name = bus_name(v, "Name");
    let st = inner.lock();
    st.buses
        .get(&name)
        .map(bus_json)
        .ok_or_else(|| no_bus(&name))
}

fn list_event_buses(inner: &Inner, v: &Value) -> R {
    let prefix = str_of(v, "NamePrefix").unwrap_or("");
    let st = inner.lock();
    let items = st
        .buses
        .values()
        .filter(|b| b.name.starts_with(prefix))
        .map(bus_json)
        .collect();
    page(items, v, "EventBuses")
}

fn update_event_bus(inner: &Inner, v: &Value) -> R {
    let name = bus_name(v, "Name");
    let mut st = inner.lock();
    let mut bus = st.buses.get(&name).cloned().ok_or_else(|| no_bus(&name))?;
    if let Some(d) = str_of(v, "Description") {
        bus.description = Some(d.to_string());
    }
    bus.modified_ms = now_ms();
    persist(inner, K_BUS, &name, &bus)?;
    let out = json!({"Arn": bus.arn, "Name": bus.name, "Description": bus.description});
    st.buses.insert(name, bus);
    Ok(out)
}

fn put_permission(inner: &Inner, v: &Value) -> R {
    let name = bus_name(v, "EventBusName");
    let mut st = inner.lock();
    let mut bus = st.buses.get(&name).cloned().ok_or_else(|| no_bus(&name))?;
    if let Some(p) = str_of(v, "Policy") {
        let policy: Value =
            serde_json::from_str(p).map_err(|_| validation("The policy is not valid JSON."))?;
        bus.policy = Some(policy);
    } else {
        let sid = required(v, "StatementId", "statementId")?;
        let action = str_of(v, "Action").unwrap_or("events:PutEvents");
        let principal = required(v, "Principal", "principal")?;
        let mut stmt = json!({
            "Sid": sid,
            "Effect": "Allow",
            "Principal": if principal == "*" { json!("*") } else { json!({"AWS": format!("arn:aws:iam::{principal}:root")}) },
            "Action": action,
            "Resource": bus.arn,
        });
        if let Some(c) = v.get("Condition") {
            stmt["Condition"] = json!({"StringEquals": {str_of(c, "Key").unwrap_or("aws:PrincipalOrgID"): str_of(c, "Value")}});
        }
        let mut policy = bus
            .policy
            .take()
            .unwrap_or_else(|| json!({"Version": "2012-10-17", "Statement": []}));
        if let Some(list) = policy["Statement"].as_array_mut() {
            list.retain(|s| s["Sid"] != sid);
            list.push(stmt);
        }
        bus.policy = Some(policy);
    }
    bus.modified_ms = now_ms();
    persist(inner, K_BUS, &name, &bus)?;
    st.buses.insert(name, bus);
    Ok(json!({}))
}

fn remove_permission(inner: &Inner, v: &Value) -> R {
    let name = bus_name(v, "EventBusName");
    let mut st = inner.lock();
    let mut bus = st.buses.get(&name).cloned().ok_or_else(|| no_bus(&name))?;
    if v.get("RemoveAllPermissions").and_then(Value::as_bool) == Some(true) {
        bus.policy = None;
    } else {
        let sid = required(v, "StatementId", "statementId")?;
        let list = bus
            .policy
            .as_mut()
            .and_then(|p| p["Statement"].as_array_mut());
        let Some(list) = list.filter(|l| l.iter().any(|s| s["Sid"] == sid)) else {
            return Err(not_found(format!(
                "Statement with the provided id does not exist: {sid}"
            )));
        };
        list.retain(|s| s["Sid"] != sid);
    }
    bus.modified_ms = now_ms();
    persist(inner, K_BUS, &name, &bus)?;
    st.buses.insert(name, bus);
    Ok(json!({}))
}

// ---- rules ----

fn invalid_pattern(e: nimbus_patterns::PatternError) -> AwsError {
    err("InvalidEventPatternException", e.to_string())
}

fn put_rule(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    check_name(name, "name", 64, false)?;
    let bus = bus_name(v, "EventBusName");
    let pattern = str_of(v, "EventPattern");
    let schedule = str_of(v, "ScheduleExpression");
    if pattern.is_none() && schedule.is_none() {
        return Err(validation(
            "Parameter(s) EventPattern or ScheduleExpression must be specified.",
        ));
    }
    if let Some(p) = pattern {
        if p.len() > 4096 {
            return Err(validation(
                "1 validation error detected: Value at 'eventPattern' failed to satisfy constraint: Member must have length less than or equal to 4096",
            ));
        }
        Pattern::parse(p).map_err(invalid_pattern)?;
    }
    if let Some(s) = schedule {
        if bus != "default" {
            return Err(validation(
                "ScheduleExpression is supported only on the default event bus.",
            ));
        }
        nimbus_schedule_expr::Expression::parse(s)
            .map_err(|_| validation("Parameter ScheduleExpression is not valid."))?;
    }
    let state = match str_of(v, "State") {
        None => None,
        Some(s @ ("ENABLED" | "DISABLED")) => Some(s.to_string()),
        Some(other) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"
            )))
        }
    };
    let tags = tags_in(v)?;
    let mut st = inner.lock();
    if !st.buses.contains_key(&bus) {
        return Err(no_bus(&bus));
    }
    let key = (bus.clone(), name.to_string());
    let now = now_ms();
    let arn = if bus == "default" {
        inner.arn(&format!("rule/{name}"))
    } else {
        inner.arn(&format!("rule/{bus}/{name}"))
    };
    let rule = match st.rules.get(&key).cloned() {
        Some(mut r) => {
            r.event_pattern = pattern.map(str::to_string);
            if r.schedule.as_deref() != schedule {
                r.anchor_ms = now;
                r.last_fired_ms = None;
            }
            r.schedule = schedule.map(str::to_string);
            r.state = state.unwrap_or_else(|| "ENABLED".into());
            r.description = str_of(v, "Description").map(str::to_string);
            r.role_arn = str_of(v, "RoleArn").map(str::to_string);
            r.tags.extend(tags);
            r
        }
        None => Rule {
            name: name.to_string(),
            bus: bus.clone(),
            arn,
            event_pattern: pattern.map(str::to_string),
            schedule: schedule.map(str::to_string),
            state: state.unwrap_or_else(|| "ENABLED".into()),
            description: str_of(v, "Description").map(str::to_string),
            role_arn: str_of(v, "RoleArn").map(str::to_string),
            managed_by: None,
            tags,
            targets: Vec::new(),
            anchor_ms: now,
            last_fired_ms: None,
        },
    };
    persist(inner, K_RULE, &rule_key(&bus, name), &rule)?;
    let arn = rule.arn.clone();
    st.rules.insert(key, rule);
    st.invalidate(&bus);
    inner.schedules.notify_one();
    Ok(json!({"RuleArn": arn}))
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "Name": r.name,
        "Arn": r.arn,
        "EventPattern": r.event_pattern,
        "ScheduleExpression": r.schedule,
        "State": r.state,
        "Description": r.description,
        "RoleArn": r.role_arn,
        "ManagedBy": r.managed_by,
        "EventBusName": r.bus,
    })
}

fn describe_rule(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let bus = bus_name(v, "EventBusName");
    let st = inner.lock();
    let r = st
        .rules
        .get(&(bus.clone(), name.to_string()))
        .ok_or_else(|| no_rule(name, &bus))?;
    let mut out = rule_json(r);
    out["CreatedBy"] = json!(inner.ctx.account_id);
    Ok(out)
}

fn delete_rule(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let bus = bus_name(v, "EventBusName");
    let mut st = inner.lock();
    let key = (bus.clone(), name.to_string());
    let Some(r) = st.rules.get(&key) else {
        return Ok(json!({}));
    };
    if !r.targets.is_empty() {
        return Err(validation("Rule can't be deleted since it has targets."));
    }
    inner
        .store
        .delete_doc(K_RULE, &rule_key(&bus, name))
        .map_err(internal)?;
    st.rules.remove(&key);
    st.invalidate(&bus);
    inner.schedules.notify_one();
    Ok(json!({}))
}

fn list_rules(inner: &Inner, v: &Value) -> R {
    let prefix = str_of(v, "NamePrefix").unwrap_or("");
    let bus = bus_name(v, "EventBusName");
    let st = inner.lock();
    if !st.buses.contains_key(&bus) {
        return Err(no_bus(&bus));
    }
    let items = st
        .rules
        .values()
        .filter(|r| r.bus == bus && r.name.starts_with(prefix))
        .map(rule_json)
        .collect();
    page(items, v, "Rules")
}

fn set_rule_state(inner: &Inner, v: &Value, state: &str) -> R {
    let name = required(v, "Name", "name")?;
    let bus = bus_name(v, "EventBusName");
    let mut st = inner.lock();
    let key = (bus.clone(), name.to_string());
    let mut r = st
        .rules
        .get(&key)
        .cloned()
        .ok_or_else(|| no_rule(name, &bus))?;
    if r.state != state && state == "ENABLED" {
        r.anchor_ms = now_ms();
        r.last_fired_ms = None;
    }
    r.state = state.to_string();
    persist(inner, K_RULE, &rule_key(&bus, name), &r)?;
    st.rules.insert(key, r);
    st.invalidate(&bus);
    inner.schedules.notify_one();
    Ok(json!({}))
}

// ---- targets ----

/// Why a target is refused (`PutTargets`' per-entry error), if it is.
fn check_target(st: &State, t: &Value) -> Option<(&'static str, String)> {
    let arn = str_of(t, "Arn").unwrap_or("");
    let bad = |m: String| Some(("ValidationException", m));
    if t.get("Input").is_some() as u8
        + t.get("InputPath").is_some() as u8
        + t.get("InputTransformer").is_some() as u8
        > 1
    {
        return bad("Only one of Input, InputPath, or InputTransformer must be provided.".into());
    }
    if let Some(i) = str_of(t, "Input") {
        if serde_json::from_str::<Value>(i).is_err() {
            return bad("Input is not valid JSON text.".into());
        }
    }
    if let Some(p) = str_of(t, "InputPath") {
        if crate::transform::JsonPath::parse(p).is_none() {
            return bad(format!("InputPath {p} is not a valid JSONPath."));
        }
    }
    if let Some(tr) = t.get("InputTransformer") {
        if str_of(tr, "InputTemplate").is_none() {
            return bad("InputTemplate is required in InputTransformer.".into());
        }
        if let Some(m) = tr.get("InputPathsMap").and_then(Value::as_object) {
            if m.len() > 100 {
                return bad("InputPathsMap has more than 100 entries.".into());
            }
            for (k, p) in m {
                if k.is_empty()
                    || !k
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    || k.starts_with("aws.")
                {
                    return bad(format!("InputPathsMap key {k} is not valid."));
                }
                if p.as_str()
                    .and_then(crate::transform::JsonPath::parse)
                    .is_none()
                {
                    return bad(format!("InputPath for key {k} is not a valid JSONPath."));
                }
            }
        }
    }
    match nimbus_triggers::sinks::TargetKind::of(arn) {
        Some(_) => None,
        None if arn.contains(":api-destination/") => {
            let name = arn.split(":api-destination/").nth(1).unwrap_or("");
            let name = name.split('/').next().unwrap_or("");
            if st.destinations.contains_key(name) {
                None
            } else {
                bad(format!("Api destination {name} does not exist."))
            }
        }
        None => bad(format!(
            "Parameter {arn} is not valid. Reason: Nimbus delivers to Lambda functions, SQS queues, SNS topics, event buses, Kinesis streams and API destinations."
        )),
    }
}

fn put_targets(inner: &Inner, v: &Value) -> R {
    let rule = required(v, "Rule", "rule")?;
    let bus = bus_name(v, "EventBusName");
    let targets = v
        .get("Targets")
        .and_then(Value::as_array)
        .ok_or_else(|| validation("1 validation error detected: Value null at 'targets' failed to satisfy constraint: Member must not be null"))?;
    if targets.is_empty() || targets.len() > 100 {
        return Err(validation(format!(
            "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length {}",
            if targets.is_empty() { "greater than or equal to 1" } else { "less than or equal to 100" }
        )));
    }
    for t in targets {
        let id = required(t, "Id", "targets.member.id")?;
        check_name(id, "targets.member.id", 64, false)?;
        required(t, "Arn", "targets.member.arn")?;
    }
    let mut st = inner.lock();
    let key = (bus.clone(), rule.to_string());
    let mut r = st
        .rules
        .get(&key)
        .cloned()
        .ok_or_else(|| no_rule(rule, &bus))?;
    let mut failed = Vec::new();
    for t in targets {
        let id = str_of(t, "Id").unwrap_or_default();
        if let Some((code, msg)) = check_target(&st, t) {
            failed.push(json!({"TargetId": id, "ErrorCode": code, "ErrorMessage": msg}));
            continue;
        }
        match r.targets.iter_mut().find(|x| str_of(x, "Id") == Some(id)) {
            Some(existing) => *existing = t.clone(),
            None => {
                if r.targets.len() >= 5 {
                    return Err(err(
                        "LimitExceededException",
                        format!("The requested resource exceeds the maximum number allowed. A rule can have at most 5 targets: {rule} has {}.", r.targets.len()),
                    ));
                }
                r.targets.push(t.clone())
            }
        }
    }
    persist(inner, K_RULE, &rule_key(&bus, rule), &r)?;
    st.rules.insert(key, r);
    st.invalidate(&bus);
    Ok(json!({"FailedEntryCount": failed.len(), "FailedEntries": failed}))
}

fn remove_targets(inner: &Inner, v: &Value) -> R {
    let rule = required(v, "Rule", "rule")?;
    let bus = bus_name(v, "EventBusName");
    let ids: Vec<&str> = v
        .get("Ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(validation("1 validation error detected: Value null at 'ids' failed to satisfy constraint: Member must not be null"));
    }
    let mut st = inner.lock();
    let key = (bus.clone(), rule.to_string());
    let mut r = st
        .rules
        .get(&key)
        .cloned()
        .ok_or_else(|| no_rule(rule, &bus))?;
    r.targets
        .retain(|t| !ids.contains(&str_of(t, "Id").unwrap_or("")));
    persist(inner, K_RULE, &rule_key(&bus, rule), &r)?;
    st.rules.insert(key, r);
    st.invalidate(&bus);
    Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
}

fn list_targets(inner: &Inner, v: &Value) -> R {
    let rule = required(v, "Rule", "rule")?;
    let bus = bus_name(v, "EventBusName");
    let st = inner.lock();
    let r = st
        .rules
        .get(&(bus.clone(), rule.to_string()))
        .ok_or_else(|| no_rule(rule, &bus))?;
    page(r.targets.clone(), v, "Targets")
}

fn list_rule_names_by_target(inner: &Inner, v: &Value) -> R {
    let arn = required(v, "TargetArn", "targetArn")?;
    let bus = bus_name(v, "EventBusName");
    let st = inner.lock();
    let items = st
        .rules
        .values()
        .filter(|r| r.bus == bus && r.targets.iter().any(|t| str_of(t, "Arn") == Some(arn)))
        .map(|r| json!(r.name))
        .collect();
    page(items, v, "RuleNames")
}

// ---- events ----

fn test_event_pattern(v: &Value) -> R {
    let pattern = required(v, "EventPattern", "eventPattern")?;
    let event = required(v, "Event", "event")?;
    let p = Pattern::parse(pattern).map_err(invalid_pattern)?;
    let ev: Value =
        serde_json::from_str(event).map_err(|_| validation("Parameter Event is not valid."))?;
    let Some(o) = ev.as_object() else {
        return Err(validation("Parameter Event is not valid."));
    };
    for field in ["id", "account", "source", "time", "region"] {
        if !o.get(field).is_some_and(Value::is_string) {
            return Err(validation(format!(
                "Parameter Event is not valid. Reason: Provided Event is missing required field {field}."
            )));
        }
    }
    if !o.get("detail-type").is_some_and(Value::is_string) {
        return Err(validation(
            "Parameter Event is not valid. Reason: Provided Event is missing required field detail-type.",
        ));
    }
    Ok(json!({"Result": p.matches(&ev)}))
}

/// AWS's size of an entry: time (14 bytes when set), source, detail-type,
/// detail and resources in UTF-8.
fn entry_size(e: &Value) -> usize {
    let mut n = 0;
    if e.get("Time").is_some() {
        n += 14;
    }
    for k in ["Source", "DetailType", "Detail"] {
        n += str_of(e, k).map_or(0, str::len);
    }
    if let Some(r) = e.get("Resources").and_then(Value::as_array) {
        n += r
            .iter()
            .filter_map(Value::as_str)
            .map(str::len)
            .sum::<usize>();
    }
    n
}

/// One event to route: its envelope and bus.
pub(crate) struct Routed {
    pub bus: String,
    pub event: Value,
    pub time_ms: i64,
}

/// Build the envelope of a `PutEvents` entry (validated) or the entry's error.
fn envelope(inner: &Inner, e: &Value, now: i64) -> Result<Routed, (&'static str, String)> {
    let arg = |k: &str, name: &str| -> Result<String, (&'static str, String)> {
        match str_of(e, k) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err((
                "InvalidArgument",
                format!("Parameter {name} is not valid. Reason: {name} is a required argument."),
            )),
        }
    };
    let source = arg("Source", "Source")?;
    let detail_type = arg("DetailType", "DetailType")?;
    let detail_text = arg("Detail", "Detail")?;
    let detail: Value = match serde_json::from_str(&detail_text) {
        Ok(d @ Value::Object(_)) => d,
        _ => return Err(("MalformedDetail", "Detail is malformed.".to_string())),
    };
    if source.starts_with("aws.") {
        return Err((
            "NotAuthorizedForSourceException",
            "Not authorized for the source.".to_string(),
        ));
    }
    let resources: Vec<Value> = match e.get("Resources") {
        None => vec![],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.clone(),
        Some(_) => {
            return Err((
                "InvalidArgument",
                "Parameter Resources is not valid.".to_string(),
            ))
        }
    };
    let time_ms = e.get("Time").and_then(ts_in).unwrap_or(now);
    let bus = bus_name(e, "EventBusName");
    Ok(Routed {
        bus,
        time_ms,
        event: json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": detail_type,
            "source": source,
            "account": inner.ctx.account_id,
            "time": iso(time_ms),
            "region": inner.ctx.region,
            "resources": resources,
            "detail": detail,
        }),
    })
}

async fn put_events(inner: &Arc<Inner>, v: &Value) -> R {
    let entries = v
        .get("Entries")
        .and_then(Value::as_array)
        .ok_or_else(|| validation("1 validation error detected: Value null at 'entries' failed to satisfy constraint: Member must not be null"))?;
    if entries.is_empty() || entries.len() > 10 {
        return Err(validation(format!(
            "1 validation error detected: Value '[...]' at 'entries' failed to satisfy constraint: Member must have length {}",
            if entries.is_empty() { "greater than or equal to 1" } else { "less than or equal to 10" }
        )));
    }
    if entries.iter().map(entry_size).sum::<usize>() > 256 * 1024 {
        return Err(validation(
            "Total size of the entries in the request is over the limit.",
        ));
    }
    let now = now_ms();
    let mut results = Vec::with_capacity(entries.len());
    let mut routed = Vec::new();
    {
        let st = inner.lock();
        for e in entries {
            match envelope(inner, e, now) {
                Ok(r) if !st.buses.contains_key(&r.bus) => results.push(json!({
                    "ErrorCode": "ResourceNotFoundException",
                    "ErrorMessage": format!("Event bus {} does not exist.", r.bus),
                })),
                Ok(r) => {
                    results.push(json!({"EventId": r.event["id"]}));
                    routed.push(r);
                }
                Err((code, msg)) => results.push(json!({"ErrorCode": code, "ErrorMessage": msg})),
            }
        }
    }
    let failed = results
        .iter()
        .filter(|r| r.get("ErrorCode").is_some())
        .count();
    inner
        .metrics
        .events_put
        .fetch_add(routed.len() as u64, Ordering::Relaxed);
    inner
        .metrics
        .events_failed
        .fetch_add(failed as u64, Ordering::Relaxed);
    commit(inner, routed, None).await?;
    Ok(json!({"FailedEntryCount": failed, "Entries": results}))
}

/// Match `events` against their buses' rules (and archives, unless replaying) and
/// commit the deliveries; wake the drain.
pub(crate) async fn commit(
    inner: &Arc<Inner>,
    events: Vec<Routed>,
    replay: Option<(&str, &[String])>,
) -> Result<usize, AwsError> {
    if events.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let mut deliveries = Vec::new();
    let mut archived = Vec::new();
    {
        let mut st = inner.lock();
        for r in &events {
            let rules = st.bus_rules(&r.bus);
            let ingestion = iso(now);
            for &i in rules.set.matching(&r.event) {
                let (name, arn, targets) = &rules.rules[i];
                if let Some((_, filter)) = replay {
                    if !filter.is_empty() && !filter.contains(arn) {
                        continue;
                    }
                }
                inner.metrics.matched.fetch_add(1, Ordering::Relaxed);
                for t in targets {
                    deliveries.push(deliver::plan(&st, t, &r.event, name, arn, &ingestion));
                }
            }
            if replay.is_none() {
                let bus_arn = st
                    .buses
                    .get(&r.bus)
                    .map(|b| b.arn.clone())
                    .unwrap_or_default();
                for (archive, pattern) in st.bus_archives(&bus_arn).iter() {
                    if pattern.as_ref().is_none_or(|p| p.matches(&r.event)) {
                        archived.push((archive.clone(), r.time_ms, r.event.to_string()));
                    }
                }
            }
        }
    }
    let count = deliveries.len();
    let store = inner.store.clone();
    tokio::task::spawn_blocking(move || store.commit_events(now, &deliveries, &archived))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    if count > 0 {
        inner.outbox.notify_one();
    }
    Ok(count)
}

/// Deliveries for one target of one rule (used by [`commit`] and the schedule
/// timer).
pub(crate) fn new_delivery(
    event: &Value,
    rule_arn: &str,
    target: &Value,
    payload: String,
    spec: &Spec,
) -> NewDelivery {
    NewDelivery {
        event_id: str_of(event, "id").unwrap_or_default().to_string(),
        rule_arn: rule_arn.to_string(),
        target_id: str_of(target, "Id").unwrap_or_default().to_string(),
        target_arn: str_of(target, "Arn").unwrap_or_default().to_string(),
        payload,
        spec: serde_json::to_string(spec).unwrap_or_default(),
    }
}

// ---- tags ----

enum Tagged {
    Bus(String),
    Rule(String, String),
}

fn find_tagged(st: &State, arn: &str) -> Option<Tagged> {
    if let Some(b) = st.buses.values().find(|b| b.arn == arn) {
        return Some(Tagged::Bus(b.name.clone()));
    }
    st.rules
        .values()
        .find(|r| r.arn == arn)
        .map(|r| Tagged::Rule(r.bus.clone(), r.name.clone()))
}

fn with_tags(
    inner: &Inner,
    v: &Value,
    f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), AwsError>,
) -> R {
    let arn = required(v, "ResourceARN", "resourceARN")?;
    let mut st = inner.lock();
    match find_tagged(&st, arn) {
        Some(Tagged::Bus(name)) => {
            let mut b = st.buses[&name].clone();
            f(&mut b.tags)?;
            persist(inner, K_BUS, &name, &b)?;
            st.buses.insert(name, b);
        }
        Some(Tagged::Rule(bus, name)) => {
            let key = (bus.clone(), name.clone());
            let mut r = st.rules[&key].clone();
            f(&mut r.tags)?;
            persist(inner, K_RULE, &rule_key(&bus, &name), &r)?;
            st.rules.insert(key, r);
        }
        None => return Err(not_found(format!("Resource {arn} does not exist."))),
    }
    Ok(json!({}))
}

fn tag_resource(inner: &Inner, v: &Value) -> R {
    let tags = tags_in(v)?;
    with_tags(inner, v, |t| {
        t.extend(tags);
        if t.len() > 50 {
            return Err(err(
                "LimitExceededException",
                "The requested resource exceeds the maximum number allowed.",
            ));
        }
        Ok(())
    })
}

fn untag_resource(inner: &Inner, v: &Value) -> R {
    let keys: Vec<String> = v
        .get("TagKeys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    with_tags(inner, v, |t| {
        for k in &keys {
            t.remove(k);
        }
        Ok(())
    })
}

fn list_tags(inner: &Inner, v: &Value) -> R {
    let arn = required(v, "ResourceARN", "resourceARN")?;
    let st = inner.lock();
    let tags = match find_tagged(&st, arn) {
        Some(Tagged::Bus(name)) => tags_out(&st.buses[&name].tags),
        Some(Tagged::Rule(bus, name)) => tags_out(&st.rules[&(bus, name)].tags),
        None => return Err(not_found(format!("Resource {arn} does not exist."))),
    };
    Ok(json!({"Tags": tags}))
}

// ---- archives and replays ----

fn archive_json(inner: &Inner, a: &Archive) -> Value {
    let (count, size) = inner.store.archive_stats(&a.name).unwrap_or((0, 0));
    json!({
        "ArchiveArn": a.arn,
        "ArchiveName": a.name,
        "EventSourceArn": a.source_arn,
        "Description": a.description,
        "EventPattern": a.event_pattern,
        "State": "ENABLED",
        "RetentionDays": a.retention_days,
        "SizeBytes": size,
        "EventCount": count,
        "CreationTime": ts(a.created_ms),
    })
}

fn create_archive(inner: &Inner, v: &Value) -> R {
    let name = required(v, "ArchiveName", "archiveName")?;
    check_name(name, "archiveName", 48, false)?;
    let source = required(v, "EventSourceArn", "eventSourceArn")?;
    if let Some(p) = str_of(v, "EventPattern") {
        Pattern::parse(p).map_err(invalid_pattern)?;
    }
    let mut st = inner.lock();
    if !st.buses.values().any(|b| b.arn == source) {
        return Err(not_found(format!("Event bus {source} does not exist.")));
    }
    if st.archives.contains_key(name) {
        return Err(err(
            "ResourceAlreadyExistsException",
            format!("Archive {name} already exists."),
        ));
    }
    let a = Archive {
        name: name.to_string(),
        arn: inner.arn(&format!("archive/{name}")),
        source_arn: source.to_string(),
        description: str_of(v, "Description").map(str::to_string),
        event_pattern: str_of(v, "EventPattern").map(str::to_string),
        retention_days: v.get("RetentionDays").and_then(Value::as_i64).unwrap_or(0),
        created_ms: now_ms(),
    };
    persist(inner, K_ARCHIVE, name, &a)?;
    let out = json!({"ArchiveArn": a.arn, "State": "ENABLED", "CreationTime": ts(a.created_ms)});
    st.archives.insert(name.to_string(), a);
    st.invalidate_archives();
    Ok(out)
}

fn no_archive(name: &str) -> AwsError {
    not_found(format!("Archive {name} does not exist."))
}

fn describe_archive(inner: &Inner, v: &Value) -> R {
    let name = required(v, "ArchiveName", "archiveName")?;
    let st = inner.lock();
    let a = st.archives.get(name).ok_or_else(|| no_archive(name))?;
    Ok(archive_json(inner, a))
}

fn update_archive(inner: &Inner, v: &Value) -> R {
    let name = required(v, "ArchiveName", "archiveName")?;
    if let Some(p) = str_of(v, "EventPattern") {
        Pattern::parse(p).map_err(invalid_pattern)?;
    }
    let mut st = inner.lock();
    let mut a = st
        .archives
        .get(name)
        .cloned()
        .ok_or_else(|| no_archive(name))?;
    if let Some(d) = str_of(v, "Description") {
        a.description = Some(d.to_string());
    }
    if let Some(p) = str_of(v, "EventPattern") {
        a.event_pattern = Some(p.to_string());
    }
    if let Some(r) = v.get("RetentionDays").and_then(Value::as_i64) {
        a.retention_days = r;
    }
    persist(inner, K_ARCHIVE, name, &a)?;
    let out = json!({"ArchiveArn": a.arn, "State": "ENABLED", "CreationTime": ts(a.created_ms)});
    st.archives.insert(name.to_string(), a);
    st.invalidate_archives();
    Ok(out)
}

fn delete_archive(inner: &Inner, v: &Value) -> R {
    let name = required(v, "ArchiveName", "archiveName")?;
    let mut st = inner.lock();
    if st.archives.remove(name).is_none() {
        return Err(no_archive(name));
    }
    inner.store.delete_doc(K_ARCHIVE, name).map_err(internal)?;
    inner.store.drop_archive(name).map_err(internal)?;
    st.invalidate_archives();
    Ok(json!({}))
}

fn list_archives(inner: &Inner, v: &Value) -> R {
    let prefix = str_of(v, "NamePrefix").unwrap_or("");
    let source = str_of(v, "EventSourceArn");
    let st = inner.lock();
    let items = st
        .archives
        .values()
        .filter(|a| a.name.starts_with(prefix) && source.is_none_or(|s| s == a.source_arn))
        .map(|a| {
            let mut j = archive_json(inner, a);
            if let Some(o) = j.as_object_mut() {
                o.remove("ArchiveArn");
                o.remove("Description");
                o.remove("EventPattern");
            }
            j
        })
        .collect();
    page(items, v, "Archives")
}

fn replay_json(r: &Replay) -> Value {
    json!({
        "ReplayName": r.name,
        "ReplayArn": r.arn,
        "Description": r.description,
        "State": r.state,
        "StateReason": r.state_reason,
        "EventSourceArn": r.archive_arn,
        "Destination": r.destination,
        "EventStartTime": ts(r.event_start_ms),
        "EventEndTime": ts(r.event_end_ms),
        "EventLastReplayedTime": r.last_replayed_ms.map(ts),
        "ReplayStartTime": ts(r.replay_start_ms),
        "ReplayEndTime": r.replay_end_ms.map(ts),
    })
}

fn start_replay(inner: &Arc<Inner>, v: &Value) -> R {
    let name = required(v, "ReplayName", "replayName")?;
    check_name(name, "replayName", 64, false)?;
    let source = required(v, "EventSourceArn", "eventSourceArn")?;
    let start = v
        .get("EventStartTime")
        .and_then(ts_in)
        .ok_or_else(|| validation("1 validation error detected: Value null at 'eventStartTime' failed to satisfy constraint: Member must not be null"))?;
    let end = v
        .get("EventEndTime")
        .and_then(ts_in)
        .ok_or_else(|| validation("1 validation error detected: Value null at 'eventEndTime' failed to satisfy constraint: Member must not be null"))?;
    let dest = v
        .get("Destination")
        .filter(|d| str_of(d, "Arn").is_some())
        .ok_or_else(|| validation("1 validation error detected: Value null at 'destination' failed to satisfy constraint: Member must not be null"))?;
    if start >= end {
        return Err(validation(
            "Parameter EventEndTime is not valid. Reason: EventStartTime must be before EventEndTime.",
        ));
    }
    if end > now_ms() {
        return Err(validation(
            "Parameter EventEndTime is not valid. Reason: EventEndTime must not be in the future.",
        ));
    }
    let mut st = inner.lock();
    let archive = st
        .archives
        .values()
        .find(|a| a.arn == source)
        .cloned()
        .ok_or_else(|| not_found(format!("Archive {source} does not exist.")))?;
    let dest_arn = str_of(dest, "Arn").unwrap_or_default();
    if dest_arn != archive.source_arn {
        return Err(validation(
            "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not permitted.",
        ));
    }
    if st.replays.contains_key(name) {
        return Err(err(
            "ResourceAlreadyExistsException",
            format!("Replay {name} already exists."),
        ));
    }
    let replay = Replay {
        name: name.to_string(),
        arn: inner.arn(&format!("replay/{name}")),
        archive_arn: source.to_string(),
        description: str_of(v, "Description").map(str::to_string),
        event_start_ms: start,
        event_end_ms: end,
        destination: dest.clone(),
        state: "STARTING".into(),
        state_reason: None,
        replay_start_ms: now_ms(),
        replay_end_ms: None,
        last_replayed_ms: None,
    };
    persist(inner, K_REPLAY, name, &replay)?;
    let out = json!({"ReplayArn": replay.arn, "State": "STARTING", "ReplayStartTime": ts(replay.replay_start_ms)});
    st.replays.insert(name.to_string(), replay);
    drop(st);
    tokio::spawn(deliver::run_replay(
        inner.clone(),
        name.to_string(),
        archive,
    ));
    Ok(out)
}

fn no_replay(name: &str) -> AwsError {
    not_found(format!("Replay {name} does not exist."))
}

fn describe_replay(inner: &Inner, v: &Value) -> R {
    let name = required(v, "ReplayName", "replayName")?;
    let st = inner.lock();
    st.replays
        .get(name)
        .map(replay_json)
        .ok_or_else(|| no_replay(name))
}

fn list_replays(inner: &Inner, v: &Value) -> R {
    let prefix = str_of(v, "NamePrefix").unwrap_or("");
    let state = str_of(v, "State");
    let source = str_of(v, "EventSourceArn");
    let st = inner.lock();
    let items = st
        .replays
        .values()
        .filter(|r| {
            r.name.starts_with(prefix)
                && state.is_none_or(|s| s == r.state)
                && source.is_none_or(|s| s == r.archive_arn)
        })
        .map(|r| {
            let mut j = replay_json(r);
            if let Some(o) = j.as_object_mut() {
                o.remove("ReplayArn");
                o.remove("Description");
                o.remove("Destination");
            }
            j
        })
        .collect();
    page(items, v, "Replays")
}

fn cancel_replay(inner: &Inner, v: &Value) -> R {
    let name = required(v, "ReplayName", "replayName")?;
    let mut st = inner.lock();
    let mut r = st
        .replays
        .get(name)
        .cloned()
        .ok_or_else(|| no_replay(name))?;
    if !matches!(r.state.as_str(), "STARTING" | "RUNNING") {
        return Err(err(
            "IllegalStatusException",
            format!("Replay {name} is not in a state that can be cancelled."),
        ));
    }
    r.state = "CANCELLING".into();
    persist(inner, K_REPLAY, name, &r)?;
    let out = json!({"ReplayArn": r.arn, "State": "CANCELLING"});
    st.replays.insert(name.to_string(), r);
    Ok(out)
}

// ---- connections and API destinations ----

/// `AuthParameters` without their secrets, as `DescribeConnection` answers them.
fn public_auth(auth: &Value) -> Value {
    let mut out = Map::new();
    if let Some(b) = auth.get("BasicAuthParameters") {
        out.insert(
            "BasicAuthParameters".into(),
            json!({"Username": b.get("Username")}),
        );
    }
    if let Some(k) = auth.get("ApiKeyAuthParameters") {
        out.insert(
            "ApiKeyAuthParameters".into(),
            json!({"ApiKeyName": k.get("ApiKeyName")}),
        );
    }
    if let Some(o) = auth.get("OAuthParameters") {
        out.insert(
            "OAuthParameters".into(),
            json!({
                "ClientParameters": {"ClientID": o.get("ClientParameters").and_then(|c| c.get("ClientID"))},
                "AuthorizationEndpoint": o.get("AuthorizationEndpoint"),
                "HttpMethod": o.get("HttpMethod"),
                "OAuthHttpParameters": o.get("OAuthHttpParameters"),
            }),
        );
    }
    if let Some(p) = auth.get("InvocationHttpParameters") {
        out.insert("InvocationHttpParameters".into(), p.clone());
    }
    Value::Object(out)
}

fn create_connection(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    check_name(name, "name", 64, false)?;
    let kind = required(v, "AuthorizationType", "authorizationType")?;
    let auth = v
        .get("AuthParameters")
        .cloned()
        .ok_or_else(|| validation("1 validation error detected: Value null at 'authParameters' failed to satisfy constraint: Member must not be null"))?;
    let needed = match kind {
        "BASIC" => "BasicAuthParameters",
        "API_KEY" => "ApiKeyAuthParameters",
        "OAUTH_CLIENT_CREDENTIALS" => "OAuthParameters",
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'authorizationType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]"
            )))
        }
    };
    if auth.get(needed).is_none() {
        return Err(validation(format!(
            "Parameter AuthParameters is not valid. Reason: {needed} is required for authorization type {kind}."
        )));
    }
    let mut st = inner.lock();
    if st.connections.contains_key(name) {
        return Err(err(
            "ResourceAlreadyExistsException",
            format!("Connection {name} already exists."),
        ));
    }
    let now = now_ms();
    let c = Connection {
        name: name.to_string(),
        arn: inner.arn(&format!("connection/{name}/{}", uuid::Uuid::new_v4())),
        description: str_of(v, "Description").map(str::to_string),
        authorization_type: kind.to_string(),
        auth,
        deauthorized: false,
        created_ms: now,
        modified_ms: now,
    };
    persist(inner, K_CONNECTION, name, &c)?;
    let out = json!({"ConnectionArn": c.arn, "ConnectionState": "AUTHORIZED", "CreationTime": ts(now), "LastModifiedTime": ts(now)});
    st.connections.insert(name.to_string(), c);
    Ok(out)
}

fn connection_json(inner: &Inner, c: &Connection) -> Value {
    json!({
        "ConnectionArn": c.arn,
        "Name": c.name,
        "Description": c.description,
        "ConnectionState": if c.deauthorized { "DEAUTHORIZED" } else { "AUTHORIZED" },
        "AuthorizationType": c.authorization_type,
        "SecretArn": format!("arn:aws:secretsmanager:{}:{}:secret:events!connection/{}", inner.ctx.region, inner.ctx.account_id, c.name),
        "AuthParameters": public_auth(&c.auth),
        "CreationTime": ts(c.created_ms),
        "LastModifiedTime": ts(c.modified_ms),
        "LastAuthorizedTime": ts(c.modified_ms),
    })
}

fn describe_connection(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let st = inner.lock();
    st.connections
        .get(name)
        .map(|c| connection_json(inner, c))
        .ok_or_else(|| {
            not_found(format!(
                "Failed to describe the connection(s). Connection '{name}' does not exist."
            ))
        })
}

fn list_connections(inner: &Inner, v: &Value) -> R {
    let prefix = str_of(v, "NamePrefix").unwrap_or("");
    let st = inner.lock();
    let items = st
        .connections
        .values()
        .filter(|c| c.name.starts_with(prefix))
        .map(|c| {
            let mut j = connection_json(inner, c);
            if let Some(o) = j.as_object_mut() {
                o.remove("AuthParameters");
                o.remove("SecretArn");
                o.remove("Description");
            }
            j
        })
        .collect();
    page(items, v, "Connections")
}

fn delete_connection(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let mut st = inner.lock();
    let c = st.connections.remove(name).ok_or_else(|| {
        not_found(format!(
            "Failed to describe the connection(s). Connection '{name}' does not exist."
        ))
    })?;
    inner
        .store
        .delete_doc(K_CONNECTION, name)
        .map_err(internal)?;
    Ok(
        json!({"ConnectionArn": c.arn, "ConnectionState": "DELETING", "CreationTime": ts(c.created_ms), "LastModifiedTime": ts(now_ms())}),
    )
}

/// Merge `patch` into `base` (objects recursively; anything else replaces).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn no_connection(name: &str) -> AwsError {
    not_found(format!(
        "Failed to describe the connection(s). Connection '{name}' does not exist."
    ))
}

fn update_connection(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let mut st = inner.lock();
    let mut c = st
        .connections
        .get(name)
        .cloned()
        .ok_or_else(|| no_connection(name))?;
    if let Some(d) = str_of(v, "Description") {
        c.description = Some(d.to_string());
    }
    if let Some(kind) = str_of(v, "AuthorizationType") {
        if !["BASIC", "API_KEY", "OAUTH_CLIENT_CREDENTIALS"].contains(&kind) {
            return Err(validation(format!(
                "1 validation error detected: Value '{kind}' at 'authorizationType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]"
            )));
        }
        c.authorization_type = kind.to_string();
    }
    if let Some(a) = v.get("AuthParameters") {
        merge(&mut c.auth, a);
        c.deauthorized = false;
    }
    c.modified_ms = now_ms();
    persist(inner, K_CONNECTION, name, &c)?;
    let out = json!({"ConnectionArn": c.arn, "ConnectionState": "AUTHORIZED", "CreationTime": ts(c.created_ms), "LastModifiedTime": ts(c.modified_ms), "LastAuthorizedTime": ts(c.modified_ms)});
    st.connections.insert(name.to_string(), c);
    Ok(out)
}

fn deauthorize_connection(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let mut st = inner.lock();
    let mut c = st
        .connections
        .get(name)
        .cloned()
        .ok_or_else(|| no_connection(name))?;
    // The secrets go; the connection stays until it is updated with new ones.
    c.auth = public_auth(&c.auth);
    c.deauthorized = true;
    c.modified_ms = now_ms();
    persist(inner, K_CONNECTION, name, &c)?;
    let out = json!({"ConnectionArn": c.arn, "ConnectionState": "DEAUTHORIZED", "CreationTime": ts(c.created_ms), "LastModifiedTime": ts(c.modified_ms)});
    st.connections.insert(name.to_string(), c);
    Ok(out)
}

fn update_destination(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let mut st = inner.lock();
    let mut d = st.destinations.get(name).cloned().ok_or_else(|| {
        not_found(format!(
            "Failed to describe the api-destination(s). An api-destination '{name}' does not exist."
        ))
    })?;
    if let Some(x) = str_of(v, "Description") {
        d.description = Some(x.to_string());
    }
    if let Some(c) = str_of(v, "ConnectionArn") {
        if !st.connections.values().any(|x| x.arn == c) {
            return Err(not_found(format!("Connection '{c}' does not exist.")));
        }
        d.connection_arn = c.to_string();
    }
    if let Some(e) = str_of(v, "InvocationEndpoint") {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            return Err(validation(
                "Parameter InvocationEndpoint is not valid. Reason: the endpoint must be an HTTP(S) URL.",
            ));
        }
        d.endpoint = e.to_string();
    }
    if let Some(m) = str_of(v, "HttpMethod") {
        if !["POST", "GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"].contains(&m) {
            return Err(validation(format!(
                "1 validation error detected: Value '{m}' at 'httpMethod' failed to satisfy constraint: Member must satisfy enum value set: [POST, GET, HEAD, OPTIONS, PUT, PATCH, DELETE]"
            )));
        }
        d.method = m.to_string();
    }
    if let Some(r) = v
        .get("InvocationRateLimitPerSecond")
        .and_then(Value::as_i64)
    {
        d.rate_limit = Some(r);
    }
    d.modified_ms = now_ms();
    persist(inner, K_DESTINATION, name, &d)?;
    let out = json!({"ApiDestinationArn": d.arn, "ApiDestinationState": "ACTIVE", "CreationTime": ts(d.created_ms), "LastModifiedTime": ts(d.modified_ms)});
    st.destinations.insert(name.to_string(), d);
    Ok(out)
}

fn create_destination(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    check_name(name, "name", 64, false)?;
    let conn = required(v, "ConnectionArn", "connectionArn")?;
    let endpoint = required(v, "InvocationEndpoint", "invocationEndpoint")?;
    let method = required(v, "HttpMethod", "httpMethod")?;
    if !["POST", "GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"].contains(&method) {
        return Err(validation(format!(
            "1 validation error detected: Value '{method}' at 'httpMethod' failed to satisfy constraint: Member must satisfy enum value set: [POST, GET, HEAD, OPTIONS, PUT, PATCH, DELETE]"
        )));
    }
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(validation(
            "Parameter InvocationEndpoint is not valid. Reason: the endpoint must be an HTTP(S) URL.",
        ));
    }
    let mut st = inner.lock();
    if !st.connections.values().any(|c| c.arn == conn) {
        return Err(not_found(format!("Connection '{conn}' does not exist.")));
    }
    if st.destinations.contains_key(name) {
        return Err(err(
            "ResourceAlreadyExistsException",
            format!("An api-destination '{name}' already exists."),
        ));
    }
    let now = now_ms();
    let d = ApiDestination {
        name: name.to_string(),
        arn: inner.arn(&format!("api-destination/{name}/{}", uuid::Uuid::new_v4())),
        description: str_of(v, "Description").map(str::to_string),
        connection_arn: conn.to_string(),
        endpoint: endpoint.to_string(),
        method: method.to_string(),
        rate_limit: v
            .get("InvocationRateLimitPerSecond")
            .and_then(Value::as_i64),
        created_ms: now,
        modified_ms: now,
    };
    persist(inner, K_DESTINATION, name, &d)?;
    let out = json!({"ApiDestinationArn": d.arn, "ApiDestinationState": "ACTIVE", "CreationTime": ts(now), "LastModifiedTime": ts(now)});
    st.destinations.insert(name.to_string(), d);
    Ok(out)
}

fn destination_json(d: &ApiDestination) -> Value {
    json!({
        "ApiDestinationArn": d.arn,
        "Name": d.name,
        "Description": d.description,
        "ApiDestinationState": "ACTIVE",
        "ConnectionArn": d.connection_arn,
        "InvocationEndpoint": d.endpoint,
        "HttpMethod": d.method,
        "InvocationRateLimitPerSecond": d.rate_limit.unwrap_or(300),
        "CreationTime": ts(d.created_ms),
        "LastModifiedTime": ts(d.modified_ms),
    })
}

fn describe_destination(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let st = inner.lock();
    st.destinations
        .get(name)
        .map(destination_json)
        .ok_or_else(|| not_found(format!("Failed to describe the api-destination(s). An api-destination '{name}' does not exist.")))
}

fn list_destinations(inner: &Inner, v: &Value) -> R {
    let prefix = str_of(v, "NamePrefix").unwrap_or("");
    let conn = str_of(v, "ConnectionArn");
    let st = inner.lock();
    let items = st
        .destinations
        .values()
        .filter(|d| d.name.starts_with(prefix) && conn.is_none_or(|c| c == d.connection_arn))
        .map(destination_json)
        .collect();
    page(items, v, "ApiDestinations")
}

fn delete_destination(inner: &Inner, v: &Value) -> R {
    let name = required(v, "Name", "name")?;
    let mut st = inner.lock();
    if st.destinations.remove(name).is_none() {
        return Err(not_found(format!(
            "Failed to describe the api-destination(s). An api-destination '{name}' does not exist."
        )));
    }
    inner
        .store
        .delete_doc(K_DESTINATION, name)
        .map_err(internal)?;
    Ok(json!({}))
}

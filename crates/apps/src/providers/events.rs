//! `AWS::Events::EventBus` and `AWS::Events::Rule`, through EventBridge's
//! awsJson API. A rule's `Targets` are put with it (`PutTargets`, input
//! transforms as they are) and the targets a new template drops are removed.

use super::{attrs, invalid, s, tag_map, Cx, Made, ProviderError, R};
use crate::model::ResourceRow;
use serde_json::{json, Value};

fn tag_list(props: &Value) -> Vec<Value> {
    tag_map(&props["Tags"])
        .into_iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect()
}

async fn bus_exists(cx: &Cx<'_>, name: &str) -> R<bool> {
    match cx
        .services
        .json("events", "DescribeEventBus", json!({"Name": name}))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn bus_made(name: &str, arn: &Value) -> Made {
    Made {
        physical_id: name.to_string(),
        ref_value: name.into(),
        attributes: attrs(&[("Arn", arn.clone()), ("Name", name.into())]),
    }
}

pub async fn create_bus(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "Name") else {
        return invalid("AWS::Events::EventBus needs a Name");
    };
    if bus_exists(cx, name).await? {
        return super::exists(format!("event bus {name} already exists"));
    }
    let mut body = json!({"Name": name});
    for k in [
        "EventSourceName",
        "Description",
        "KmsKeyIdentifier",
        "DeadLetterConfig",
    ] {
        if let Some(v) = props.get(k) {
            body[k] = v.clone();
        }
    }
    let tags = tag_list(props);
    if !tags.is_empty() {
        body["Tags"] = tags.into();
    }
    let r = cx.services.json("events", "CreateEventBus", body).await?;
    Ok(bus_made(name, &r["EventBusArn"]))
}

pub async fn update_bus(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let name = row.physical_id.as_str();
    let d = cx
        .services
        .json("events", "DescribeEventBus", json!({"Name": name}))
        .await?;
    let arn = d["Arn"].clone();
    let mut body = json!({"Name": name});
    let mut any = false;
    for k in ["Description", "KmsKeyIdentifier", "DeadLetterConfig"] {
        if row.properties.get(k) != props.get(k) {
            any = true;
            body[k] = props.get(k).cloned().unwrap_or(match k {
                "DeadLetterConfig" => json!({}),
                _ => json!(""),
            });
        }
    }
    if any {
        cx.services.json("events", "UpdateEventBus", body).await?;
    }
    retag(cx, &arn, &row.properties, props).await?;
    Ok(bus_made(name, &arn))
}

async fn retag(cx: &Cx<'_>, arn: &Value, old: &Value, new: &Value) -> R<()> {
    let (ot, nt) = (tag_map(&old["Tags"]), tag_map(&new["Tags"]));
    if ot == nt {
        return Ok(());
    }
    let gone: Vec<&String> = ot.keys().filter(|k| !nt.contains_key(*k)).collect();
    if !gone.is_empty() {
        cx.services
            .json(
                "events",
                "UntagResource",
                json!({"ResourceARN": arn, "TagKeys": gone}),
            )
            .await?;
    }
    if !nt.is_empty() {
        cx.services
            .json(
                "events",
                "TagResource",
                json!({"ResourceARN": arn, "Tags": tag_list(new)}),
            )
            .await?;
    }
    Ok(())
}

pub async fn delete_bus(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .json("events", "DeleteEventBus", json!({"Name": row.physical_id}))
        .await?;
    Ok(())
}

/// A rule's bus: a name or ARN in the template, a name for the API (which
/// takes both), `default` when none is given.
fn bus_of(props: &Value) -> String {
    let b = s(props, "EventBusName").unwrap_or("default");
    b.rsplit_once(":event-bus/")
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| b.to_string())
}

/// The rule's physical id, which is also what `Ref` returns: the name on the
/// default bus, `<bus>|<name>` on another (as CloudFormation's).
fn rule_id(bus: &str, name: &str) -> String {
    if bus == "default" {
        name.to_string()
    } else {
        format!("{bus}|{name}")
    }
}

fn split_id(row: &ResourceRow) -> (String, String) {
    match row.physical_id.split_once('|') {
        Some((b, n)) => (b.to_string(), n.to_string()),
        None => ("default".into(), row.physical_id.clone()),
    }
}

async fn rule_exists(cx: &Cx<'_>, bus: &str, name: &str) -> R<bool> {
    match cx
        .services
        .json(
            "events",
            "DescribeRule",
            json!({"Name": name, "EventBusName": bus}),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// PutRule with the template's definition; the rule's ARN.
async fn put_rule(cx: &Cx<'_>, bus: &str, name: &str, props: &Value) -> R<Value> {
    let mut body = json!({"Name": name, "EventBusName": bus});
    if let Some(p) = props.get("EventPattern") {
        body["EventPattern"] = super::policy_text(p).into();
    }
    for k in ["ScheduleExpression", "Description", "RoleArn"] {
        if let Some(v) = props.get(k) {
            body[k] = v.clone();
        }
    }
    body["State"] = props.get("State").cloned().unwrap_or("ENABLED".into());
    let tags = tag_list(props);
    if !tags.is_empty() {
        body["Tags"] = tags.into();
    }
    let r = cx.services.json("events", "PutRule", body).await?;
    Ok(r["RuleArn"].clone())
}

/// A CloudFormation target → the API's: the same fields, except that a JSON
/// `Input` or `InputPathsMap` may be given as an object.
fn target(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(i @ (Value::Object(_) | Value::Array(_))) = t.get("Input").cloned() {
        t["Input"] = i.to_string().into();
    }
    t
}

async fn put_targets(cx: &Cx<'_>, bus: &str, name: &str, targets: &[Value]) -> R<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let r = cx
        .services
        .json(
            "events",
            "PutTargets",
            json!({"Rule": name, "EventBusName": bus,
                   "Targets": targets.iter().map(target).collect::<Vec<_>>()}),
        )
        .await?;
    if r["FailedEntryCount"].as_u64().unwrap_or(0) > 0 {
        return invalid(format!(
            "rule {name}: targets refused: {}",
            r["FailedEntries"]
        ));
    }
    Ok(())
}

async fn remove_targets(cx: &Cx<'_>, bus: &str, name: &str, ids: &[String]) -> R<()> {
    if ids.is_empty() {
        return Ok(());
    }
    cx.services
        .json(
            "events",
            "RemoveTargets",
            json!({"Rule": name, "EventBusName": bus, "Ids": ids, "Force": true}),
        )
        .await?;
    Ok(())
}

fn targets(props: &Value) -> Vec<Value> {
    props
        .get("Targets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn rule_made(bus: &str, name: &str, arn: Value) -> Made {
    let id = rule_id(bus, name);
    Made {
        physical_id: id.clone(),
        ref_value: id.into(),
        attributes: attrs(&[("Arn", arn)]),
    }
}

pub async fn create_rule(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "Name") else {
        return invalid("AWS::Events::Rule needs a Name");
    };
    if props.get("EventPattern").is_none() && props.get("ScheduleExpression").is_none() {
        return invalid(format!(
            "rule {name}: EventPattern or ScheduleExpression is required"
        ));
    }
    let bus = bus_of(props);
    if rule_exists(cx, &bus, name).await? {
        return super::exists(format!("rule {name} already exists on bus {bus}"));
    }
    let arn = put_rule(cx, &bus, name, props).await?;
    put_targets(cx, &bus, name, &targets(props)).await?;
    Ok(rule_made(&bus, name, arn))
}

pub async fn update_rule(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let (bus, name) = split_id(row);
    let arn = put_rule(cx, &bus, &name, props).await?;
    let new = targets(props);
    let gone: Vec<String> = targets(&row.properties)
        .iter()
        .filter_map(|t| s(t, "Id"))
        .filter(|id| !new.iter().any(|n| s(n, "Id") == Some(*id)))
        .map(str::to_string)
        .collect();
    remove_targets(cx, &bus, &name, &gone).await?;
    put_targets(cx, &bus, &name, &new).await?;
    Ok(rule_made(&bus, &name, arn))
}

pub async fn delete_rule(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let (bus, name) = split_id(row);
    // Every target goes first (EventBridge refuses to delete a rule with targets).
    let listed = match cx
        .services
        .json(
            "events",
            "ListTargetsByRule",
            json!({"Rule": name, "EventBusName": bus}),
        )
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let ids: Vec<String> = listed["Targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["Id"].as_str().map(str::to_string))
        .collect();
    remove_targets(cx, &bus, &name, &ids).await?;
    cx.services
        .json(
            "events",
            "DeleteRule",
            json!({"Name": name, "EventBusName": bus, "Force": true}),
        )
        .await?;
    Ok(())
}

/// A create a crash interrupted: the planned rule, if it exists.
pub async fn delete_planned_rule(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(name) = s(&planned.properties, "Name") else {
        return Ok(());
    };
    let bus = bus_of(&planned.properties);
    let row = ResourceRow {
        physical_id: rule_id(&bus, name),
        ..planned.clone()
    };
    match delete_rule(cx, &row).await {
        Err(ProviderError::Call(e)) if e.is_not_found() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_and_buses_follow_cloudformation() {
        assert_eq!(rule_id("default", "r"), "r");
        assert_eq!(rule_id("orders", "r"), "orders|r");
        assert_eq!(
            bus_of(
                &json!({"EventBusName": "arn:aws:events:us-east-1:000000000000:event-bus/orders"})
            ),
            "orders"
        );
        assert_eq!(bus_of(&json!({})), "default");
        let t = target(&json!({"Id": "a", "Arn": "arn:q", "Input": {"k": 1}}));
        assert_eq!(t["Input"], "{\"k\":1}");
    }
}

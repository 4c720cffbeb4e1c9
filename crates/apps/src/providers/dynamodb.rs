//! `AWS::DynamoDB::Table` (and SAM's `SimpleTable`, which the manifests lower
//! to it), through DynamoDB's awsJson API.
//!
//! Updates in place as CloudFormation does: billing and throughput, global
//! secondary indexes added or removed (one `UpdateTable` each), the stream
//! turned on, off or to another view type (off, then on: a new `StreamArn`), the
//! TTL attribute, tags. Key schema and local indexes replace the table
//! ([`super::replaces`]).

use super::{attrs, invalid, s, tag_map, Cx, Made, R};
use crate::model::ResourceRow;
use serde_json::{json, Value};

/// The `CreateTable` fields a CloudFormation table carries under the same name.
const CREATE_FIELDS: &[&str] = &[
    "AttributeDefinitions",
    "KeySchema",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "TableClass",
    "DeletionProtectionEnabled",
];

fn made(name: &str, d: &Value) -> Made {
    let mut a = attrs(&[("Arn", d["TableArn"].clone())]);
    if let Some(sa) = d["LatestStreamArn"].as_str() {
        a.insert("StreamArn".into(), sa.into());
    }
    Made {
        physical_id: name.to_string(),
        ref_value: name.into(),
        attributes: a,
    }
}

async fn describe(cx: &Cx<'_>, name: &str) -> R<Value> {
    let v = cx
        .services
        .json("dynamodb", "DescribeTable", json!({"TableName": name}))
        .await?;
    Ok(v["Table"].clone())
}

async fn exists(cx: &Cx<'_>, name: &str) -> R<bool> {
    match describe(cx, name).await {
        Ok(_) => Ok(true),
        Err(super::ProviderError::Call(e)) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// A CloudFormation GSI → the API's (the same shape; `ContributorInsightsSpecification`
/// is CloudFormation's own).
fn gsi(v: &Value) -> Value {
    let mut g = v.clone();
    if let Some(m) = g.as_object_mut() {
        m.remove("ContributorInsightsSpecification");
    }
    g
}

fn stream_view(props: &Value) -> Option<&str> {
    props
        .get("StreamSpecification")
        .and_then(|s| s.get("StreamViewType"))
        .and_then(Value::as_str)
}

fn api_tags(props: &Value) -> Vec<Value> {
    tag_map(&props["Tags"])
        .into_iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect()
}

async fn set_ttl(cx: &Cx<'_>, name: &str, new: Option<&Value>, old: Option<&Value>) -> R<()> {
    let enabled = |v: Option<&Value>| {
        v.filter(|t| t.get("Enabled").and_then(super::scalar).as_deref() == Some("true"))
            .and_then(|t| s(t, "AttributeName"))
            .map(str::to_string)
    };
    let (new, old) = (enabled(new), enabled(old));
    if new == old {
        return Ok(());
    }
    if let Some(a) = &old {
        cx.services
            .json(
                "dynamodb",
                "UpdateTimeToLive",
                json!({"TableName": name,
                       "TimeToLiveSpecification": {"AttributeName": a, "Enabled": false}}),
            )
            .await?;
    }
    if let Some(a) = &new {
        cx.services
            .json(
                "dynamodb",
                "UpdateTimeToLive",
                json!({"TableName": name,
                       "TimeToLiveSpecification": {"AttributeName": a, "Enabled": true}}),
            )
            .await?;
    }
    Ok(())
}

pub async fn create_table(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "TableName") else {
        return invalid("AWS::DynamoDB::Table needs a TableName");
    };
    if exists(cx, name).await? {
        return super::exists(format!("table {name} already exists"));
    }
    let mut body = json!({"TableName": name});
    for k in CREATE_FIELDS {
        if let Some(v) = props.get(*k) {
            body[*k] = v.clone();
        }
    }
    if let Some(g) = props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
    {
        body["GlobalSecondaryIndexes"] = g.iter().map(gsi).collect();
    }
    // CloudFormation's default billing mode is PROVISIONED, which needs
    // throughput; a template without either is PAY_PER_REQUEST in effect.
    if body.get("BillingMode").is_none() && body.get("ProvisionedThroughput").is_none() {
        body["BillingMode"] = "PAY_PER_REQUEST".into();
    }
    if let Some(v) = stream_view(props) {
        body["StreamSpecification"] = json!({"StreamEnabled": true, "StreamViewType": v});
    }
    if let Some(sse) = props.get("SSESpecification") {
        let mut api = json!({});
        if let Some(e) = sse.get("SSEEnabled") {
            api["Enabled"] = e.clone();
        }
        for k in ["SSEType", "KMSMasterKeyId"] {
            if let Some(v) = sse.get(k) {
                api[k] = v.clone();
            }
        }
        body["SSESpecification"] = api;
    }
    let tags = api_tags(props);
    if !tags.is_empty() {
        body["Tags"] = tags.into();
    }
    let r = cx.services.json("dynamodb", "CreateTable", body).await?;
    set_ttl(cx, name, props.get("TimeToLiveSpecification"), None).await?;
    Ok(made(name, &r["TableDescription"]))
}

pub async fn update_table(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let name = row.physical_id.as_str();
    let old = &row.properties;
    let update = move |body: Value| async move {
        let mut b = body;
        b["TableName"] = name.into();
        cx.services.json("dynamodb", "UpdateTable", b).await
    };
    // Billing and throughput.
    let billing = |p: &Value| {
        p.get("BillingMode")
            .cloned()
            .unwrap_or(if p.get("ProvisionedThroughput").is_some() {
                "PROVISIONED".into()
            } else {
                "PAY_PER_REQUEST".into()
            })
    };
    if billing(old) != billing(props)
        || old.get("ProvisionedThroughput") != props.get("ProvisionedThroughput")
    {
        let mut b = json!({"BillingMode": billing(props)});
        if let Some(pt) = props.get("ProvisionedThroughput") {
            b["ProvisionedThroughput"] = pt.clone();
        }
        update(b).await?;
    }
    for k in ["TableClass", "DeletionProtectionEnabled"] {
        if old.get(k) != props.get(k) {
            if let Some(v) = props.get(k) {
                update(json!({ k: v })).await?;
            }
        }
    }
    // Global secondary indexes, by name: removed ones first, then new ones.
    let gsis = |p: &Value| -> Vec<Value> {
        p.get("GlobalSecondaryIndexes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (old_g, new_g) = (gsis(old), gsis(props));
    let named = |list: &[Value], n: &Value| list.iter().find(|g| g["IndexName"] == *n).cloned();
    for g in &old_g {
        match named(&new_g, &g["IndexName"]) {
            Some(n) if gsi(&n) == gsi(g) => {}
            _ => {
                update(json!({"GlobalSecondaryIndexUpdates": [
                    {"Delete": {"IndexName": g["IndexName"]}}]}))
                .await?;
            }
        }
    }
    for g in &new_g {
        match named(&old_g, &g["IndexName"]) {
            Some(o) if gsi(&o) == gsi(g) => {}
            _ => {
                update(json!({
                    "AttributeDefinitions": props.get("AttributeDefinitions").cloned().unwrap_or(json!([])),
                    "GlobalSecondaryIndexUpdates": [{"Create": gsi(g)}]}))
                .await?;
            }
        }
    }
    // The stream.
    let (ov, nv) = (stream_view(old), stream_view(props));
    if ov != nv {
        if ov.is_some() {
            update(json!({"StreamSpecification": {"StreamEnabled": false}})).await?;
        }
        if let Some(v) = nv {
            update(json!({"StreamSpecification": {"StreamEnabled": true, "StreamViewType": v}}))
                .await?;
        }
    }
    set_ttl(
        cx,
        name,
        props.get("TimeToLiveSpecification"),
        old.get("TimeToLiveSpecification"),
    )
    .await?;
    // Tags.
    let (ot, nt) = (tag_map(&old["Tags"]), tag_map(&props["Tags"]));
    if ot != nt {
        let d = describe(cx, name).await?;
        let arn = d["TableArn"].clone();
        let gone: Vec<&String> = ot.keys().filter(|k| !nt.contains_key(*k)).collect();
        if !gone.is_empty() {
            cx.services
                .json(
                    "dynamodb",
                    "UntagResource",
                    json!({"ResourceArn": arn, "TagKeys": gone}),
                )
                .await?;
        }
        if !nt.is_empty() {
            cx.services
                .json(
                    "dynamodb",
                    "TagResource",
                    json!({"ResourceArn": arn, "Tags": api_tags(props)}),
                )
                .await?;
        }
    }
    Ok(made(name, &describe(cx, name).await?))
}

pub async fn delete_table(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .json(
            "dynamodb",
            "DeleteTable",
            json!({"TableName": row.physical_id}),
        )
        .await?;
    Ok(())
}

/// A create a crash interrupted: the planned table, if it exists and is empty.
pub async fn delete_planned_table(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(name) = s(&planned.properties, "TableName") else {
        return Ok(());
    };
    let row = ResourceRow {
        physical_id: name.to_string(),
        ..planned.clone()
    };
    if exists(cx, name).await? && !has_items(cx, &row).await? {
        delete_table(cx, &row).await?;
    }
    Ok(())
}

pub async fn has_items(cx: &Cx<'_>, row: &ResourceRow) -> R<bool> {
    let v = cx
        .services
        .json(
            "dynamodb",
            "Scan",
            json!({"TableName": row.physical_id, "Limit": 1, "Select": "COUNT"}),
        )
        .await?;
    Ok(v["Count"].as_u64().unwrap_or(0) > 0)
}

//! `AWS::Kinesis::Stream`, through Kinesis' awsJson API.

use super::{attrs, invalid, s, scalar, tag_map, Cx, Made, ProviderError, R};
use crate::model::ResourceRow;
use serde_json::{json, Value};

fn num(props: &Value, key: &str) -> Option<u64> {
    props.get(key).and_then(scalar).and_then(|v| v.parse().ok())
}

fn mode(props: &Value) -> &str {
    props
        .get("StreamModeDetails")
        .and_then(|m| s(m, "StreamMode"))
        .unwrap_or("PROVISIONED")
}

async fn summary(cx: &Cx<'_>, name: &str) -> R<Value> {
    let v = cx
        .services
        .json(
            "kinesis",
            "DescribeStreamSummary",
            json!({"StreamName": name}),
        )
        .await?;
    Ok(v["StreamDescriptionSummary"].clone())
}

async fn exists(cx: &Cx<'_>, name: &str) -> R<bool> {
    match summary(cx, name).await {
        Ok(_) => Ok(true),
        Err(ProviderError::Call(e)) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

async fn made(cx: &Cx<'_>, name: &str) -> R<Made> {
    let d = summary(cx, name).await?;
    Ok(Made {
        physical_id: name.to_string(),
        ref_value: name.into(),
        attributes: attrs(&[("Arn", d["StreamARN"].clone())]),
    })
}

async fn set_retention(cx: &Cx<'_>, name: &str, from: u64, to: u64) -> R<()> {
    if from == to {
        return Ok(());
    }
    let op = if to > from {
        "IncreaseStreamRetentionPeriod"
    } else {
        "DecreaseStreamRetentionPeriod"
    };
    cx.services
        .json(
            "kinesis",
            op,
            json!({"StreamName": name, "RetentionPeriodHours": to}),
        )
        .await?;
    Ok(())
}

pub async fn create_stream(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "Name") else {
        return invalid("AWS::Kinesis::Stream needs a Name");
    };
    if exists(cx, name).await? {
        return super::exists(format!("stream {name} already exists"));
    }
    let mut body = json!({"StreamName": name});
    if mode(props) == "ON_DEMAND" {
        body["StreamModeDetails"] = json!({"StreamMode": "ON_DEMAND"});
    } else {
        body["ShardCount"] = num(props, "ShardCount").unwrap_or(1).into();
    }
    cx.services.json("kinesis", "CreateStream", body).await?;
    if let Some(h) = num(props, "RetentionPeriodHours") {
        set_retention(cx, name, 24, h).await?;
    }
    let tags = tag_map(&props["Tags"]);
    if !tags.is_empty() {
        cx.services
            .json(
                "kinesis",
                "AddTagsToStream",
                json!({"StreamName": name, "Tags": tags}),
            )
            .await?;
    }
    made(cx, name).await
}

pub async fn update_stream(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let name = row.physical_id.as_str();
    let old = &row.properties;
    if mode(old) != mode(props) {
        let arn = summary(cx, name).await?["StreamARN"].clone();
        cx.services
            .json(
                "kinesis",
                "UpdateStreamMode",
                json!({"StreamARN": arn, "StreamModeDetails": {"StreamMode": mode(props)}}),
            )
            .await?;
    }
    let shards = num(props, "ShardCount").unwrap_or(1);
    if mode(props) == "PROVISIONED" && num(old, "ShardCount").unwrap_or(1) != shards {
        cx.services
            .json(
                "kinesis",
                "UpdateShardCount",
                json!({"StreamName": name, "TargetShardCount": shards,
                       "ScalingType": "UNIFORM_SCALING"}),
            )
            .await?;
    }
    set_retention(
        cx,
        name,
        num(old, "RetentionPeriodHours").unwrap_or(24),
        num(props, "RetentionPeriodHours").unwrap_or(24),
    )
    .await?;
    let (ot, nt) = (tag_map(&old["Tags"]), tag_map(&props["Tags"]));
    let gone: Vec<&String> = ot.keys().filter(|k| !nt.contains_key(*k)).collect();
    if !gone.is_empty() {
        cx.services
            .json(
                "kinesis",
                "RemoveTagsFromStream",
                json!({"StreamName": name, "TagKeys": gone}),
            )
            .await?;
    }
    if !nt.is_empty() && nt != ot {
        cx.services
            .json(
                "kinesis",
                "AddTagsToStream",
                json!({"StreamName": name, "Tags": nt}),
            )
            .await?;
    }
    made(cx, name).await
}

pub async fn delete_stream(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .json(
            "kinesis",
            "DeleteStream",
            json!({"StreamName": row.physical_id, "EnforceConsumerDeletion": true}),
        )
        .await?;
    Ok(())
}

/// A create a crash interrupted: the planned stream, if it exists and holds no records.
pub async fn delete_planned_stream(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(name) = s(&planned.properties, "Name") else {
        return Ok(());
    };
    let row = ResourceRow {
        physical_id: name.to_string(),
        ..planned.clone()
    };
    if exists(cx, name).await? && !has_records(cx, &row).await? {
        delete_stream(cx, &row).await?;
    }
    Ok(())
}

/// Whether any shard holds a record (read from each shard's trim horizon).
pub async fn has_records(cx: &Cx<'_>, row: &ResourceRow) -> R<bool> {
    let shards = cx
        .services
        .json(
            "kinesis",
            "ListShards",
            json!({"StreamName": row.physical_id}),
        )
        .await?;
    for sh in shards["Shards"].as_array().into_iter().flatten() {
        let it = cx
            .services
            .json(
                "kinesis",
                "GetShardIterator",
                json!({"StreamName": row.physical_id, "ShardId": sh["ShardId"],
                       "ShardIteratorType": "TRIM_HORIZON"}),
            )
            .await?;
        let recs = cx
            .services
            .json(
                "kinesis",
                "GetRecords",
                json!({"ShardIterator": it["ShardIterator"], "Limit": 1}),
            )
            .await?;
        if recs["Records"].as_array().is_some_and(|r| !r.is_empty()) {
            return Ok(true);
        }
    }
    Ok(false)
}

//! `AWS::SQS::Queue` and `AWS::SQS::QueuePolicy`, through SQS's awsJson API.

use super::{arn_tail, attrs, invalid, policy_text, s, scalar, tag_map, Cx, Made, R};
use crate::model::ResourceRow;
use serde_json::{json, Map, Value};

/// CloudFormation property → SQS attribute, and the default a removed one returns to.
const ATTRIBUTES: &[(&str, Option<&str>)] = &[
    ("DelaySeconds", Some("0")),
    ("MaximumMessageSize", Some("262144")),
    ("MessageRetentionPeriod", Some("345600")),
    ("ReceiveMessageWaitTimeSeconds", Some("0")),
    ("VisibilityTimeout", Some("30")),
    ("RedrivePolicy", Some("")),
    ("RedriveAllowPolicy", None),
    ("KmsMasterKeyId", None),
    ("KmsDataKeyReusePeriodSeconds", None),
    ("SqsManagedSseEnabled", None),
    ("ContentBasedDeduplication", None),
    ("DeduplicationScope", None),
    ("FifoThroughputLimit", None),
];

fn attributes(props: &Value, defaults: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, default) in ATTRIBUTES {
        let v = match props.get(*k) {
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            Some(v) => scalar(v),
            None if defaults => default.map(str::to_string),
            None => None,
        };
        if let Some(v) = v {
            out.insert(k.to_string(), v.into());
        }
    }
    out
}

fn is_fifo(props: &Value) -> bool {
    matches!(props.get("FifoQueue"), Some(Value::Bool(true)))
        || s(props, "FifoQueue") == Some("true")
}

async fn made(cx: &Cx<'_>, url: &str) -> R<Made> {
    let a = cx
        .services
        .json(
            "sqs",
            "GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
        )
        .await?;
    let arn = a["Attributes"]["QueueArn"]
        .as_str()
        .unwrap_or("")
        .to_string();
    Ok(Made {
        physical_id: url.to_string(),
        ref_value: url.into(),
        attributes: attrs(&[
            ("Arn", arn.clone().into()),
            ("QueueName", arn_tail(&arn).into()),
            ("QueueUrl", url.into()),
        ]),
    })
}

async fn url_of(cx: &Cx<'_>, name: &str) -> R<Option<String>> {
    match cx
        .services
        .json("sqs", "GetQueueUrl", json!({"QueueName": name}))
        .await
    {
        Ok(v) => Ok(v["QueueUrl"].as_str().map(str::to_string)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn create_queue(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "QueueName") else {
        return invalid("AWS::SQS::Queue needs a QueueName");
    };
    if is_fifo(props) != name.ends_with(".fifo") {
        return invalid(format!(
            "queue {name}: a FIFO queue's name must end with .fifo, and only a FIFO queue's"
        ));
    }
    // CreateQueue of an existing name with the same attributes succeeds: refuse
    // it here, so an undo never deletes a queue the app did not create.
    if url_of(cx, name).await?.is_some() {
        return super::exists(format!("queue {name} already exists"));
    }
    let mut a = attributes(props, false);
    if is_fifo(props) {
        a.insert("FifoQueue".into(), "true".into());
    }
    let mut body = json!({"QueueName": name, "Attributes": a});
    let tags = tag_map(&props["Tags"]);
    if !tags.is_empty() {
        body["tags"] = Value::Object(tags);
    }
    let r = cx.services.json("sqs", "CreateQueue", body).await?;
    let url = r["QueueUrl"].as_str().unwrap_or_default().to_string();
    made(cx, &url).await
}

pub async fn update_queue(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let url = &row.physical_id;
    cx.services
        .json(
            "sqs",
            "SetQueueAttributes",
            json!({"QueueUrl": url, "Attributes": attributes(props, true)}),
        )
        .await?;
    let old = tag_map(&row.properties["Tags"]);
    let new = tag_map(&props["Tags"]);
    let gone: Vec<&String> = old.keys().filter(|k| !new.contains_key(*k)).collect();
    if !gone.is_empty() {
        cx.services
            .json(
                "sqs",
                "UntagQueue",
                json!({"QueueUrl": url, "TagKeys": gone}),
            )
            .await?;
    }
    if !new.is_empty() && new != old {
        cx.services
            .json("sqs", "TagQueue", json!({"QueueUrl": url, "Tags": new}))
            .await?;
    }
    made(cx, url).await
}

pub async fn delete_queue(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .json("sqs", "DeleteQueue", json!({"QueueUrl": row.physical_id}))
        .await?;
    Ok(())
}

/// A create interrupted by a crash: the planned name, if the queue exists.
pub async fn delete_planned_queue(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(name) = s(&planned.properties, "QueueName") else {
        return Ok(());
    };
    if let Some(url) = url_of(cx, name).await? {
        cx.services
            .json("sqs", "DeleteQueue", json!({"QueueUrl": url}))
            .await?;
    }
    Ok(())
}

pub async fn has_messages(cx: &Cx<'_>, row: &ResourceRow) -> R<bool> {
    let a = cx
        .services
        .json(
            "sqs",
            "GetQueueAttributes",
            json!({"QueueUrl": row.physical_id, "AttributeNames": [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"]}),
        )
        .await?;
    Ok(a["Attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(_, v)| v.as_str().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0))
}

/// `AWS::SQS::QueuePolicy`: the `Policy` attribute of each queue in `Queues`
/// (URLs). Its physical id is generated, as CloudFormation's is.
pub async fn put_queue_policy(
    cx: &Cx<'_>,
    logical: &str,
    props: &Value,
    old: Option<&ResourceRow>,
) -> R<Made> {
    let queues: Vec<String> = props["Queues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q.as_str().map(str::to_string))
        .collect();
    if queues.is_empty() {
        return invalid("AWS::SQS::QueuePolicy needs Queues (queue URLs)");
    }
    let doc = policy_text(&props["PolicyDocument"]);
    if let Some(old) = old {
        for q in old.properties["Queues"].as_array().into_iter().flatten() {
            if let Some(q) = q.as_str().filter(|q| !queues.iter().any(|n| n == q)) {
                set_policy(cx, q, "").await.or_else(ignore_missing)?;
            }
        }
    }
    for q in &queues {
        set_policy(cx, q, &doc).await?;
    }
    let id = old
        .map(|o| o.physical_id.clone())
        .unwrap_or_else(|| format!("{}-{logical}-{}", cx.app, crate::naming::random_suffix()));
    Ok(Made {
        physical_id: id.clone(),
        ref_value: id.into(),
        attributes: Map::new(),
    })
}

fn ignore_missing(e: super::ProviderError) -> R<()> {
    match e {
        super::ProviderError::Call(c) if c.is_not_found() => Ok(()),
        other => Err(other),
    }
}

async fn set_policy(cx: &Cx<'_>, url: &str, doc: &str) -> R<()> {
    cx.services
        .json(
            "sqs",
            "SetQueueAttributes",
            json!({"QueueUrl": url, "Attributes": {"Policy": doc}}),
        )
        .await?;
    Ok(())
}

pub async fn delete_queue_policy(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    for q in row.properties["Queues"].as_array().into_iter().flatten() {
        if let Some(q) = q.as_str() {
            set_policy(cx, q, "").await.or_else(ignore_missing)?;
        }
    }
    Ok(())
}

//! `AWS::SNS::Topic`, `AWS::SNS::Subscription` and `AWS::SNS::TopicPolicy`,
//! through SNS's awsQuery API.

use super::{arn_tail, attrs, invalid, policy_text, s, scalar, tag_map, Cx, Made, R};
use crate::model::ResourceRow;
use crate::services::{xml_all, xml_text};
use serde_json::{Map, Value};

type Params = Vec<(String, String)>;

fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// Topic properties that are `SetTopicAttributes` attributes.
const TOPIC_ATTRIBUTES: &[(&str, &str)] = &[
    ("DisplayName", ""),
    ("KmsMasterKeyId", ""),
    ("ContentBasedDeduplication", "false"),
    ("SignatureVersion", "1"),
    ("TracingConfig", "PassThrough"),
];

fn topic_made(cx: &Cx<'_>, arn: &str) -> Made {
    let _ = cx;
    Made {
        physical_id: arn.to_string(),
        ref_value: arn.into(),
        attributes: attrs(&[
            ("TopicArn", arn.into()),
            ("TopicName", arn_tail(arn).into()),
        ]),
    }
}

async fn topic_exists(cx: &Cx<'_>, arn: &str) -> R<bool> {
    match cx
        .services
        .query("sns", "GetTopicAttributes", &[p("TopicArn", arn)])
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn create_topic(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "TopicName") else {
        return invalid("AWS::SNS::Topic needs a TopicName");
    };
    let arn = cx.arn("sns", name);
    if topic_exists(cx, &arn).await? {
        return super::exists(format!("topic {name} already exists"));
    }
    let mut params: Params = vec![p("Name", name)];
    let mut i = 1;
    let mut attr = |params: &mut Params, k: &str, v: String| {
        params.push(p(&format!("Attributes.entry.{i}.key"), k));
        params.push(p(&format!("Attributes.entry.{i}.value"), v));
        i += 1;
    };
    if props.get("FifoTopic").and_then(scalar).as_deref() == Some("true") {
        attr(&mut params, "FifoTopic", "true".into());
    }
    for (k, _) in TOPIC_ATTRIBUTES {
        if let Some(v) = props.get(*k).and_then(scalar) {
            attr(&mut params, k, v);
        }
    }
    for (j, (k, v)) in tag_map(&props["Tags"]).iter().enumerate() {
        params.push(p(&format!("Tags.member.{}.Key", j + 1), k.clone()));
        params.push(p(
            &format!("Tags.member.{}.Value", j + 1),
            v.as_str().unwrap_or_default(),
        ));
    }
    let xml = cx.services.query("sns", "CreateTopic", &params).await?;
    let arn = xml_text(&xml, "TopicArn").unwrap_or(arn);
    // Inline subscriptions (`Subscription: [{Endpoint, Protocol}]`).
    for sub in props["Subscription"].as_array().into_iter().flatten() {
        let (Some(proto), Some(ep)) = (s(sub, "Protocol"), s(sub, "Endpoint")) else {
            continue;
        };
        cx.services
            .query(
                "sns",
                "Subscribe",
                &[
                    p("TopicArn", arn.as_str()),
                    p("Protocol", proto),
                    p("Endpoint", ep),
                ],
            )
            .await?;
    }
    Ok(topic_made(cx, &arn))
}

pub async fn update_topic(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let arn = &row.physical_id;
    for (k, default) in TOPIC_ATTRIBUTES {
        let new = props.get(*k).and_then(scalar);
        let old = row.properties.get(*k).and_then(scalar);
        if new == old {
            continue;
        }
        let v = new.unwrap_or_else(|| default.to_string());
        cx.services
            .query(
                "sns",
                "SetTopicAttributes",
                &[
                    p("TopicArn", arn.as_str()),
                    p("AttributeName", *k),
                    p("AttributeValue", v),
                ],
            )
            .await?;
    }
    Ok(topic_made(cx, arn))
}

pub async fn delete_topic(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .query(
            "sns",
            "DeleteTopic",
            &[p("TopicArn", row.physical_id.as_str())],
        )
        .await?;
    Ok(())
}

/// Subscription properties that are `SetSubscriptionAttributes` attributes.
const SUB_ATTRIBUTES: &[&str] = &[
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "DeliveryPolicy",
    "SubscriptionRoleArn",
];

fn sub_attr_value(v: &Value) -> Option<String> {
    match v {
        Value::Object(_) | Value::Array(_) => Some(v.to_string()),
        other => scalar(other),
    }
}

pub async fn subscribe(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let (Some(topic), Some(proto)) = (s(props, "TopicArn"), s(props, "Protocol")) else {
        return invalid("AWS::SNS::Subscription needs TopicArn and Protocol");
    };
    let mut params: Params = vec![
        p("TopicArn", topic),
        p("Protocol", proto),
        p("ReturnSubscriptionArn", "true"),
    ];
    if let Some(ep) = s(props, "Endpoint") {
        params.push(p("Endpoint", ep));
    }
    let mut i = 1;
    for k in SUB_ATTRIBUTES {
        if let Some(v) = props.get(*k).and_then(sub_attr_value) {
            params.push(p(&format!("Attributes.entry.{i}.key"), *k));
            params.push(p(&format!("Attributes.entry.{i}.value"), v));
            i += 1;
        }
    }
    let xml = cx.services.query("sns", "Subscribe", &params).await?;
    let arn = xml_text(&xml, "SubscriptionArn").unwrap_or_default();
    Ok(Made {
        physical_id: arn.clone(),
        ref_value: arn.into(),
        attributes: Map::new(),
    })
}

pub async fn update_subscription(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    for k in SUB_ATTRIBUTES {
        let new = props.get(*k).and_then(sub_attr_value);
        let old = row.properties.get(*k).and_then(sub_attr_value);
        if new == old {
            continue;
        }
        let v = new.unwrap_or_else(|| match *k {
            "RawMessageDelivery" => "false".into(),
            "FilterPolicyScope" => "MessageAttributes".into(),
            _ => String::new(),
        });
        cx.services
            .query(
                "sns",
                "SetSubscriptionAttributes",
                &[
                    p("SubscriptionArn", row.physical_id.as_str()),
                    p("AttributeName", *k),
                    p("AttributeValue", v),
                ],
            )
            .await?;
    }
    Ok(Made {
        physical_id: row.physical_id.clone(),
        ref_value: row.physical_id.clone().into(),
        attributes: Map::new(),
    })
}

pub async fn unsubscribe(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .query(
            "sns",
            "Unsubscribe",
            &[p("SubscriptionArn", row.physical_id.as_str())],
        )
        .await?;
    Ok(())
}

/// A subscribe a crash interrupted: the topic's subscription of that protocol and endpoint.
pub async fn delete_planned_subscription(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    if !planned.physical_id.is_empty() {
        return super::delete(cx, planned).await;
    }
    let (Some(topic), Some(proto)) = (
        s(&planned.properties, "TopicArn"),
        s(&planned.properties, "Protocol"),
    ) else {
        return Ok(());
    };
    let ep = s(&planned.properties, "Endpoint").unwrap_or("");
    for (arn, e, pr) in subscriptions_of(cx, topic).await? {
        if e == ep && pr == proto {
            let row = ResourceRow {
                physical_id: arn,
                ..planned.clone()
            };
            super::delete(cx, &row).await?;
        }
    }
    Ok(())
}

/// `(subscription ARN, endpoint, protocol)` of a topic's subscriptions.
pub async fn subscriptions_of(cx: &Cx<'_>, topic: &str) -> R<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![p("TopicArn", topic)];
        if let Some(t) = &token {
            params.push(p("NextToken", t.as_str()));
        }
        let xml = match cx
            .services
            .query("sns", "ListSubscriptionsByTopic", &params)
            .await
        {
            Ok(x) => x,
            Err(e) if e.is_not_found() => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let arns = xml_all(&xml, "SubscriptionArn");
        let eps = xml_all(&xml, "Endpoint");
        let protos = xml_all(&xml, "Protocol");
        for ((a, e), pr) in arns.into_iter().zip(eps).zip(protos) {
            out.push((a, e, pr));
        }
        token = xml_text(&xml, "NextToken").filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

pub async fn put_topic_policy(
    cx: &Cx<'_>,
    logical: &str,
    props: &Value,
    old: Option<&ResourceRow>,
) -> R<Made> {
    let topics: Vec<String> = props["Topics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    if topics.is_empty() {
        return invalid("AWS::SNS::TopicPolicy needs Topics (topic ARNs)");
    }
    let doc = policy_text(&props["PolicyDocument"]);
    for t in &topics {
        cx.services
            .query(
                "sns",
                "SetTopicAttributes",
                &[
                    p("TopicArn", t.as_str()),
                    p("AttributeName", "Policy"),
                    p("AttributeValue", doc.as_str()),
                ],
            )
            .await?;
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

pub async fn delete_topic_policy(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    // The topic's policy returns to the default (owner-only) policy.
    for t in row.properties["Topics"].as_array().into_iter().flatten() {
        let Some(t) = t.as_str() else { continue };
        let default = serde_json::json!({
            "Version": "2008-10-17",
            "Statement": [{"Sid": "__default_statement_ID", "Effect": "Allow",
                "Principal": {"AWS": "*"}, "Action": ["SNS:Publish", "SNS:Subscribe"],
                "Resource": t,
                "Condition": {"StringEquals": {"AWS:SourceOwner": cx.services.account_id}}}]
        });
        match cx
            .services
            .query(
                "sns",
                "SetTopicAttributes",
                &[
                    p("TopicArn", t),
                    p("AttributeName", "Policy"),
                    p("AttributeValue", default.to_string()),
                ],
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

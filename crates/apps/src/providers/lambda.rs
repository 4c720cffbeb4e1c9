//! `AWS::Lambda::EventSourceMapping`, `AWS::Lambda::Permission`,
//! `AWS::Lambda::Url`, `AWS::Lambda::EventInvokeConfig` and
//! `Nimbus::Lambda::DeadLetterConfig` (a function's `DeadLetterConfig`, which
//! SAM's `DeadLetterQueue` sets), through the Lambda REST API.

use super::{attrs, invalid, s, Cx, Made, R};
use crate::model::ResourceRow;
use bytes::Bytes;
use http::Method;
use serde_json::{json, Map, Value};

const MAPPINGS: &str = "/2015-03-31/event-source-mappings/";

/// The mapping properties Lambda's API takes as they are in the template (also
/// what [`super::property_support`] reports as applied).
pub(super) const MAPPING_FIELDS: &[&str] = &[
    "BatchSize",
    "BisectBatchOnFunctionError",
    "DestinationConfig",
    "Enabled",
    "EventSourceArn",
    "FilterCriteria",
    "FunctionName",
    "FunctionResponseTypes",
    "MaximumBatchingWindowInSeconds",
    "MaximumRecordAgeInSeconds",
    "MaximumRetryAttempts",
    "ParallelizationFactor",
    "Queues",
    "ScalingConfig",
    "StartingPosition",
    "StartingPositionTimestamp",
    "Topics",
    "TumblingWindowInSeconds",
];

/// What UpdateEventSourceMapping may change.
const MAPPING_UPDATABLE: &[&str] = &[
    "BatchSize",
    "BisectBatchOnFunctionError",
    "DestinationConfig",
    "Enabled",
    "FilterCriteria",
    "FunctionName",
    "FunctionResponseTypes",
    "MaximumBatchingWindowInSeconds",
    "MaximumRecordAgeInSeconds",
    "MaximumRetryAttempts",
    "ParallelizationFactor",
    "ScalingConfig",
    "TumblingWindowInSeconds",
];

fn pick(props: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for f in fields {
        if let Some(v) = props.get(*f) {
            out.insert(f.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

async fn call(cx: &Cx<'_>, op: &str, method: Method, path: &str, body: Option<&Value>) -> R<Value> {
    let (headers, body): (&[(&str, &str)], Bytes) = match body {
        Some(b) => (
            &[("content-type", "application/json")],
            Bytes::from(b.to_string()),
        ),
        None => (&[], Bytes::new()),
    };
    let (_, bytes) = cx
        .services
        .rest("lambda", op, method, path, headers, body)
        .await?;
    Ok(if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    })
}

fn mapping_made(v: &Value) -> Made {
    let uuid = v["UUID"].as_str().unwrap_or_default().to_string();
    let arn = v["EventSourceMappingArn"].as_str().map(str::to_string);
    let mut a = attrs(&[("EventSourceMappingId", uuid.clone().into())]);
    if let Some(arn) = arn {
        a.insert("EventSourceMappingArn".into(), arn.into());
    }
    Made {
        physical_id: uuid.clone(),
        ref_value: uuid.into(),
        attributes: a,
    }
}

pub async fn create_mapping(cx: &Cx<'_>, props: &Value) -> R<Made> {
    if s(props, "FunctionName").is_none() {
        return invalid("AWS::Lambda::EventSourceMapping needs a FunctionName");
    }
    let v = call(
        cx,
        "CreateEventSourceMapping",
        Method::POST,
        MAPPINGS,
        Some(&pick(props, MAPPING_FIELDS)),
    )
    .await?;
    Ok(mapping_made(&v))
}

pub async fn update_mapping(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let mut body = pick(props, MAPPING_UPDATABLE);
    // A property the template no longer sets returns to Lambda's default.
    if body.get("Enabled").is_none() {
        body["Enabled"] = true.into();
    }
    if body.get("FilterCriteria").is_none() && row.properties.get("FilterCriteria").is_some() {
        body["FilterCriteria"] = json!({"Filters": []});
    }
    let v = call(
        cx,
        "UpdateEventSourceMapping",
        Method::PUT,
        &format!("{MAPPINGS}{}", row.physical_id),
        Some(&body),
    )
    .await?;
    Ok(mapping_made(&v))
}

pub async fn delete_mapping(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    call(
        cx,
        "DeleteEventSourceMapping",
        Method::DELETE,
        &format!("{MAPPINGS}{}", row.physical_id),
        None,
    )
    .await?;
    Ok(())
}

/// A create a crash interrupted: the mapping of that function and source, if
/// Lambda made it (it refuses a second one of the same pair, so it is ours).
pub async fn delete_planned_mapping(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    if !planned.physical_id.is_empty() {
        return super::delete(cx, planned).await;
    }
    let (Some(f), Some(src)) = (
        s(&planned.properties, "FunctionName"),
        s(&planned.properties, "EventSourceArn"),
    ) else {
        return Ok(());
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("FunctionName", f)
        .append_pair("EventSourceArn", src)
        .finish();
    let list = match call(
        cx,
        "ListEventSourceMappings",
        Method::GET,
        &format!("{MAPPINGS}?{q}"),
        None,
    )
    .await
    {
        Ok(v) => v,
        Err(super::ProviderError::Call(e)) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    for m in list["EventSourceMappings"].as_array().into_iter().flatten() {
        if let Some(uuid) = m["UUID"].as_str() {
            let row = ResourceRow {
                physical_id: uuid.to_string(),
                ..planned.clone()
            };
            super::delete(cx, &row).await?;
        }
    }
    Ok(())
}

fn function_path(name: &str) -> String {
    // A function given by ARN (`arn:…:function:NAME[:QUALIFIER]`) is addressed by name.
    let n = name
        .strip_prefix("arn:")
        .and_then(|_| name.split(":function:").nth(1))
        .map(|rest| rest.split(':').next().unwrap_or(rest))
        .unwrap_or(name);
    n.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `AWS::Lambda::Permission`: a statement in the function's resource policy; its
/// physical id is the statement id.
pub async fn add_permission(cx: &Cx<'_>, logical: &str, props: &Value) -> R<Made> {
    let Some(function) = s(props, "FunctionName") else {
        return invalid("AWS::Lambda::Permission needs a FunctionName");
    };
    let sid = format!("{}-{logical}-{}", cx.app, crate::naming::random_suffix());
    let mut body = json!({"StatementId": sid});
    for k in [
        "Action",
        "Principal",
        "SourceArn",
        "SourceAccount",
        "EventSourceToken",
        "FunctionUrlAuthType",
        "PrincipalOrgID",
    ] {
        if let Some(v) = props.get(k) {
            body[k] = v.clone();
        }
    }
    call(
        cx,
        "AddPermission",
        Method::POST,
        &format!("/2015-03-31/functions/{}/policy", function_path(function)),
        Some(&body),
    )
    .await?;
    Ok(Made {
        physical_id: sid.clone(),
        ref_value: sid.into(),
        attributes: Map::new(),
    })
}

pub async fn remove_permission(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let Some(function) = s(&row.properties, "FunctionName") else {
        return Ok(());
    };
    call(
        cx,
        "RemovePermission",
        Method::DELETE,
        &format!(
            "/2015-03-31/functions/{}/policy/{}",
            function_path(function),
            row.physical_id
        ),
        None,
    )
    .await?;
    Ok(())
}

fn url_path(props: &Value) -> R<String> {
    let Some(f) = s(props, "TargetFunctionArn") else {
        return invalid("AWS::Lambda::Url needs a TargetFunctionArn");
    };
    let mut p = format!("/2021-10-31/functions/{}/url", function_path(f));
    if let Some(q) = s(props, "Qualifier") {
        p.push_str("?Qualifier=");
        p.push_str(&function_path(q));
    }
    Ok(p)
}

fn url_body(props: &Value) -> Value {
    let mut b = json!({"AuthType": props.get("AuthType").cloned().unwrap_or("NONE".into())});
    for k in ["Cors", "InvokeMode"] {
        if let Some(v) = props.get(k) {
            b[k] = v.clone();
        }
    }
    b
}

fn url_made(v: &Value) -> Made {
    let url = v["FunctionUrl"].as_str().unwrap_or_default().to_string();
    let arn = v["FunctionArn"].as_str().unwrap_or_default().to_string();
    Made {
        physical_id: arn.clone(),
        ref_value: arn.clone().into(),
        attributes: attrs(&[("FunctionUrl", url.into()), ("FunctionArn", arn.into())]),
    }
}

pub async fn create_url(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let v = call(
        cx,
        "CreateFunctionUrlConfig",
        Method::POST,
        &url_path(props)?,
        Some(&url_body(props)),
    )
    .await?;
    Ok(url_made(&v))
}

pub async fn update_url(cx: &Cx<'_>, _row: &ResourceRow, props: &Value) -> R<Made> {
    let mut body = url_body(props);
    if body.get("Cors").is_none() {
        body["Cors"] = json!({});
    }
    let v = call(
        cx,
        "UpdateFunctionUrlConfig",
        Method::PUT,
        &url_path(props)?,
        Some(&body),
    )
    .await?;
    Ok(url_made(&v))
}

pub async fn delete_url(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    call(
        cx,
        "DeleteFunctionUrlConfig",
        Method::DELETE,
        &url_path(&row.properties)?,
        None,
    )
    .await?;
    Ok(())
}

/// A function's environment variables now (GetFunctionConfiguration).
pub async fn environment(cx: &Cx<'_>, function: &str) -> R<Map<String, Value>> {
    let v = call(
        cx,
        "GetFunctionConfiguration",
        Method::GET,
        &format!(
            "/2015-03-31/functions/{}/configuration",
            function_path(function)
        ),
        None,
    )
    .await?;
    Ok(v["Environment"]["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default())
}

/// A function's environment variables and `Role` ARN.
pub async fn configuration(cx: &Cx<'_>, function: &str) -> R<(Map<String, Value>, Option<String>)> {
    let v = call(
        cx,
        "GetFunctionConfiguration",
        Method::GET,
        &format!(
            "/2015-03-31/functions/{}/configuration",
            function_path(function)
        ),
        None,
    )
    .await?;
    Ok((
        v["Environment"]["Variables"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
        v["Role"].as_str().map(str::to_string),
    ))
}

/// Set a function's whole environment and, when given, its `Role`.
pub async fn set_configuration(
    cx: &Cx<'_>,
    function: &str,
    vars: &Map<String, Value>,
    role: Option<&str>,
) -> R<()> {
    let mut body = json!({"Environment": {"Variables": vars}});
    if let Some(r) = role {
        body["Role"] = json!(r);
    }
    call(
        cx,
        "UpdateFunctionConfiguration",
        Method::PUT,
        &format!(
            "/2015-03-31/functions/{}/configuration",
            function_path(function)
        ),
        Some(&body),
    )
    .await?;
    Ok(())
}

/// Set a function's whole environment (UpdateFunctionConfiguration with only
/// `Environment`: the rest of its configuration stays).
pub async fn set_environment(cx: &Cx<'_>, function: &str, vars: &Map<String, Value>) -> R<()> {
    call(
        cx,
        "UpdateFunctionConfiguration",
        Method::PUT,
        &format!(
            "/2015-03-31/functions/{}/configuration",
            function_path(function)
        ),
        Some(&json!({"Environment": {"Variables": vars}})),
    )
    .await?;
    Ok(())
}

// -- AWS::Lambda::EventInvokeConfig -------------------------------------------------

fn eic_path(props: &Value) -> R<(String, String, String)> {
    let Some(f) = s(props, "FunctionName") else {
        return invalid("AWS::Lambda::EventInvokeConfig needs a FunctionName");
    };
    let q = s(props, "Qualifier").unwrap_or("$LATEST");
    Ok((
        format!(
            "/2019-09-25/functions/{}/event-invoke-config?Qualifier={}",
            function_path(f),
            function_path(q)
        ),
        function_path(f),
        q.to_string(),
    ))
}

/// Create or replace a function's async-invocation settings (retries, event
/// age, destinations), as `PutFunctionEventInvokeConfig` does: the whole
/// configuration is the template's.
pub async fn put_event_invoke(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let (path, function, qualifier) = eic_path(props)?;
    let mut body = json!({});
    for k in [
        "MaximumRetryAttempts",
        "MaximumEventAgeInSeconds",
        "DestinationConfig",
    ] {
        if let Some(v) = props.get(k) {
            body[k] = v.clone();
        }
    }
    call(
        cx,
        "PutFunctionEventInvokeConfig",
        Method::PUT,
        &path,
        Some(&body),
    )
    .await?;
    let id = format!("{function}|{qualifier}");
    Ok(Made {
        physical_id: id.clone(),
        ref_value: id.into(),
        attributes: Map::new(),
    })
}

pub async fn delete_event_invoke(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let (path, _, _) = eic_path(&row.properties)?;
    call(
        cx,
        "DeleteFunctionEventInvokeConfig",
        Method::DELETE,
        &path,
        None,
    )
    .await?;
    Ok(())
}

// -- Nimbus::Lambda::DeadLetterConfig ---------------------------------------------

fn configuration_path(function: &str) -> String {
    format!(
        "/2015-03-31/functions/{}/configuration",
        function_path(function)
    )
}

/// Set a function's dead-letter target (`UpdateFunctionConfiguration` with only
/// `DeadLetterConfig`: the rest of its configuration stays).
pub async fn put_dead_letter(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let (Some(f), Some(target)) = (s(props, "FunctionName"), s(props, "TargetArn")) else {
        return invalid("a dead-letter configuration needs FunctionName and TargetArn");
    };
    call(
        cx,
        "UpdateFunctionConfiguration",
        Method::PUT,
        &configuration_path(f),
        Some(&json!({"DeadLetterConfig": {"TargetArn": target}})),
    )
    .await?;
    Ok(Made {
        physical_id: f.to_string(),
        ref_value: f.into(),
        attributes: Map::new(),
    })
}

/// Clear it (`TargetArn` empty, as Lambda's API takes it).
pub async fn delete_dead_letter(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let Some(f) = s(&row.properties, "FunctionName") else {
        return Ok(());
    };
    call(
        cx,
        "UpdateFunctionConfiguration",
        Method::PUT,
        &configuration_path(f),
        Some(&json!({"DeadLetterConfig": {"TargetArn": ""}})),
    )
    .await?;
    Ok(())
}

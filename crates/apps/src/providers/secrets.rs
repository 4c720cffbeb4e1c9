//! `AWS::SecretsManager::Secret` (Secrets Manager's awsJson API),
//! `AWS::SSM::Parameter` (SSM's) and `AWS::SES::EmailIdentity` (SES' awsQuery
//! API) — the app's configuration and mail identities.

use super::{attrs, invalid, s, scalar, tag_map, Cx, Made, ProviderError, R};
use crate::model::ResourceRow;
use crate::services::xml_all;
use serde_json::{json, Map, Value};

// ---- Secrets Manager ------------------------------------------------------

async fn secret_arn(cx: &Cx<'_>, id: &str) -> R<Option<String>> {
    match cx
        .services
        .json("secretsmanager", "DescribeSecret", json!({"SecretId": id}))
        .await
    {
        Ok(v) => Ok(v["ARN"].as_str().map(str::to_string)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The value `GenerateSecretString` asks for: a random password
/// (`GetRandomPassword` with its options), alone or under `GenerateStringKey`
/// in the `SecretStringTemplate` JSON object.
async fn generated(cx: &Cx<'_>, g: &Value) -> R<String> {
    let mut req = Map::new();
    for k in [
        "PasswordLength",
        "ExcludeCharacters",
        "ExcludeNumbers",
        "ExcludePunctuation",
        "ExcludeUppercase",
        "ExcludeLowercase",
        "IncludeSpace",
        "RequireEachIncludedType",
    ] {
        if let Some(v) = g.get(k) {
            let v = match (k, v) {
                ("PasswordLength", v) => scalar(v)
                    .and_then(|n| n.parse::<u64>().ok())
                    .map(Value::from)
                    .unwrap_or(v.clone()),
                (_, Value::String(b)) if k != "ExcludeCharacters" => Value::Bool(b == "true"),
                _ => v.clone(),
            };
            req.insert(k.to_string(), v);
        }
    }
    let pw = cx
        .services
        .json("secretsmanager", "GetRandomPassword", Value::Object(req))
        .await?;
    let pw = pw["RandomPassword"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (s(g, "SecretStringTemplate"), s(g, "GenerateStringKey")) {
        (Some(t), Some(k)) => {
            let mut t: Value = serde_json::from_str(t).map_err(|e| {
                ProviderError::Invalid(format!("SecretStringTemplate is not JSON: {e}"))
            })?;
            if !t.is_object() {
                return invalid("SecretStringTemplate must be a JSON object");
            }
            t[k] = pw.into();
            Ok(t.to_string())
        }
        (None, None) => Ok(pw),
        _ => {
            invalid("GenerateSecretString: SecretStringTemplate and GenerateStringKey go together")
        }
    }
}

fn secret_made(arn: &str) -> Made {
    Made {
        physical_id: arn.to_string(),
        ref_value: arn.into(),
        attributes: attrs(&[("Id", arn.into())]),
    }
}

fn tag_list(props: &Value) -> Vec<Value> {
    tag_map(&props["Tags"])
        .into_iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect()
}

pub async fn create_secret(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "Name") else {
        return invalid("AWS::SecretsManager::Secret needs a Name");
    };
    if props.get("SecretString").is_some() && props.get("GenerateSecretString").is_some() {
        return invalid(format!(
            "secret {name}: SecretString and GenerateSecretString cannot both be given"
        ));
    }
    if secret_arn(cx, name).await?.is_some() {
        return super::exists(format!("secret {name} already exists"));
    }
    let mut body = json!({"Name": name});
    for k in ["Description", "KmsKeyId"] {
        if let Some(v) = props.get(k) {
            body[k] = v.clone();
        }
    }
    if let Some(v) = props.get("SecretString") {
        body["SecretString"] = super::policy_text(v).into();
    } else if let Some(g) = props.get("GenerateSecretString") {
        body["SecretString"] = generated(cx, g).await?.into();
    }
    let tags = tag_list(props);
    if !tags.is_empty() {
        body["Tags"] = tags.into();
    }
    let r = cx
        .services
        .json("secretsmanager", "CreateSecret", body)
        .await?;
    Ok(secret_made(r["ARN"].as_str().unwrap_or_default()))
}

pub async fn update_secret(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let arn = row.physical_id.as_str();
    let old = &row.properties;
    let mut body = json!({"SecretId": arn});
    let mut any = false;
    for k in ["Description", "KmsKeyId"] {
        if old.get(k) != props.get(k) {
            any = true;
            body[k] = props.get(k).cloned().unwrap_or("".into());
        }
    }
    if old.get("SecretString") != props.get("SecretString") {
        if let Some(v) = props.get("SecretString") {
            any = true;
            body["SecretString"] = super::policy_text(v).into();
        }
    } else if old.get("GenerateSecretString") != props.get("GenerateSecretString") {
        if let Some(g) = props.get("GenerateSecretString") {
            any = true;
            body["SecretString"] = generated(cx, g).await?.into();
        }
    }
    if any {
        cx.services
            .json("secretsmanager", "UpdateSecret", body)
            .await?;
    }
    let (ot, nt) = (tag_map(&old["Tags"]), tag_map(&props["Tags"]));
    if ot != nt {
        let gone: Vec<&String> = ot.keys().filter(|k| !nt.contains_key(*k)).collect();
        if !gone.is_empty() {
            cx.services
                .json(
                    "secretsmanager",
                    "UntagResource",
                    json!({"SecretId": arn, "TagKeys": gone}),
                )
                .await?;
        }
        if !nt.is_empty() {
            cx.services
                .json(
                    "secretsmanager",
                    "TagResource",
                    json!({"SecretId": arn, "Tags": tag_list(props)}),
                )
                .await?;
        }
    }
    Ok(secret_made(arn))
}

/// Deleted at once (no recovery window), so the app can be deployed again
/// under the same name.
pub async fn delete_secret(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .json(
            "secretsmanager",
            "DeleteSecret",
            json!({"SecretId": row.physical_id, "ForceDeleteWithoutRecovery": true}),
        )
        .await?;
    Ok(())
}

pub async fn delete_planned_secret(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(name) = s(&planned.properties, "Name") else {
        return Ok(());
    };
    if let Some(arn) = secret_arn(cx, name).await? {
        let row = ResourceRow {
            physical_id: arn,
            ..planned.clone()
        };
        delete_secret(cx, &row).await?;
    }
    Ok(())
}

// ---- SSM parameters -------------------------------------------------------

async fn parameter_exists(cx: &Cx<'_>, name: &str) -> R<bool> {
    match cx
        .services
        .json("ssm", "GetParameter", json!({"Name": name}))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn parameter_body(name: &str, props: &Value) -> R<Value> {
    let Some(value) = props.get("Value").and_then(scalar) else {
        return invalid(format!("parameter {name}: Value is required"));
    };
    let ty = s(props, "Type").unwrap_or("String");
    if !matches!(ty, "String" | "StringList") {
        return invalid(format!(
            "parameter {name}: Type {ty} is not one CloudFormation creates (String or StringList)"
        ));
    }
    let mut body = json!({"Name": name, "Value": value, "Type": ty});
    for k in [
        "Description",
        "AllowedPattern",
        "Tier",
        "DataType",
        "Policies",
    ] {
        if let Some(v) = props.get(k) {
            body[k] = v.clone();
        }
    }
    Ok(body)
}

fn parameter_made(name: &str, props: &Value) -> Made {
    Made {
        physical_id: name.to_string(),
        ref_value: name.into(),
        attributes: attrs(&[
            ("Type", s(props, "Type").unwrap_or("String").into()),
            (
                "Value",
                props
                    .get("Value")
                    .and_then(scalar)
                    .unwrap_or_default()
                    .into(),
            ),
        ]),
    }
}

/// SSM parameter tags are a `{key: value}` map in CloudFormation.
fn parameter_tags(props: &Value) -> Vec<Value> {
    props
        .get("Tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some(json!({"Key": k, "Value": scalar(v)?})))
        .collect()
}

pub async fn put_parameter(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "Name") else {
        return invalid("AWS::SSM::Parameter needs a Name");
    };
    if parameter_exists(cx, name).await? {
        return super::exists(format!("parameter {name} already exists"));
    }
    let mut body = parameter_body(name, props)?;
    let tags = parameter_tags(props);
    if !tags.is_empty() {
        body["Tags"] = tags.into();
    }
    cx.services.json("ssm", "PutParameter", body).await?;
    Ok(parameter_made(name, props))
}

pub async fn update_parameter(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    let name = row.physical_id.as_str();
    let mut body = parameter_body(name, props)?;
    body["Overwrite"] = true.into();
    cx.services.json("ssm", "PutParameter", body).await?;
    let (ot, nt) = (parameter_tags(&row.properties), parameter_tags(props));
    if ot != nt {
        let gone: Vec<&Value> = ot
            .iter()
            .map(|t| &t["Key"])
            .filter(|k| !nt.iter().any(|n| n["Key"] == **k))
            .collect();
        if !gone.is_empty() {
            cx.services
                .json(
                    "ssm",
                    "RemoveTagsFromResource",
                    json!({"ResourceType": "Parameter", "ResourceId": name, "TagKeys": gone}),
                )
                .await?;
        }
        if !nt.is_empty() {
            cx.services
                .json(
                    "ssm",
                    "AddTagsToResource",
                    json!({"ResourceType": "Parameter", "ResourceId": name, "Tags": nt}),
                )
                .await?;
        }
    }
    Ok(parameter_made(name, props))
}

pub async fn delete_parameter(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .json("ssm", "DeleteParameter", json!({"Name": row.physical_id}))
        .await?;
    Ok(())
}

pub async fn delete_planned_parameter(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(name) = s(&planned.properties, "Name") else {
        return Ok(());
    };
    let row = ResourceRow {
        physical_id: name.to_string(),
        ..planned.clone()
    };
    match delete_parameter(cx, &row).await {
        Err(ProviderError::Call(e)) if e.is_not_found() => Ok(()),
        other => other,
    }
}

// ---- SES identities -------------------------------------------------------

fn q(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

async fn identity_exists(cx: &Cx<'_>, identity: &str) -> R<bool> {
    let xml = cx
        .services
        .query(
            "ses",
            "GetIdentityVerificationAttributes",
            &[q("Identities.member.1", identity)],
        )
        .await?;
    Ok(xml_all(&xml, "key").iter().any(|k| k == identity))
}

/// `AWS::SES::EmailIdentity`: an address (`VerifyEmailIdentity`) or a domain
/// (`VerifyDomainIdentity`); `Ref` is the identity.
pub async fn create_identity(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(id) = s(props, "EmailIdentity") else {
        return invalid("AWS::SES::EmailIdentity needs an EmailIdentity");
    };
    if identity_exists(cx, id).await? {
        return super::exists(format!("email identity {id} already exists"));
    }
    if id.contains('@') {
        cx.services
            .query("ses", "VerifyEmailIdentity", &[q("EmailAddress", id)])
            .await?;
    } else {
        cx.services
            .query("ses", "VerifyDomainIdentity", &[q("Domain", id)])
            .await?;
    }
    Ok(Made {
        physical_id: id.to_string(),
        ref_value: id.into(),
        attributes: Map::new(),
    })
}

pub async fn update_identity(_cx: &Cx<'_>, row: &ResourceRow, _props: &Value) -> R<Made> {
    // Configuration-set, DKIM and feedback settings are not applied (see
    // docs/compat/manifests.md); the identity itself stays.
    Ok(Made {
        physical_id: row.physical_id.clone(),
        ref_value: row.physical_id.clone().into(),
        attributes: Map::new(),
    })
}

pub async fn delete_identity(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    cx.services
        .query("ses", "DeleteIdentity", &[q("Identity", &row.physical_id)])
        .await?;
    Ok(())
}

pub async fn delete_planned_identity(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(id) = s(&planned.properties, "EmailIdentity") else {
        return Ok(());
    };
    let row = ResourceRow {
        physical_id: id.to_string(),
        ..planned.clone()
    };
    delete_identity(cx, &row).await
}

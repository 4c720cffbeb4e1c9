//! Lambda versions, aliases and provisioned concurrency (REST-JSON): PublishVersion,
//! ListVersionsByFunction, CreateAlias, GetAlias, UpdateAlias, DeleteAlias,
//! ListAliases, Put/Get/Delete/ListProvisionedConcurrencyConfig(s).

use crate::error::ApiError;
use crate::lambda::split_function_name;
use crate::lambda_functions::{last_modified, version_configuration_json};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use nimbus_invoker::{AliasConfig, ProvisionedStatus, PublishRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2015-03-31/functions/{name}/versions",
            post(publish_version).get(list_versions),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            post(create_alias).get(list_aliases),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(get_alias).put(update_alias).delete(delete_alias),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            get(get_or_list_provisioned)
                .put(put_provisioned)
                .delete(delete_provisioned),
        )
}

/// These operations may be sent with no body at all: that is an empty object.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    crate::lambda_functions::parse(if body.is_empty() { b"{}" } else { body })
}

/// The function name from a path segment that may be an ARN; a qualifier in it is
/// refused where the operation takes none.
fn bare_name(raw: &str) -> Result<String, ApiError> {
    match split_function_name(raw, None) {
        (name, None) => Ok(name),
        (_, Some(_)) => Err(ApiError::invalid_parameter(
            "A qualifier is not allowed in the function name of this operation",
        )),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
    #[serde(rename = "FunctionVersion")]
    function_version: Option<String>,
}

impl PageQuery {
    pub(crate) fn marker(&self) -> Option<&str> {
        self.marker.as_deref()
    }
    pub(crate) fn max_items(&self) -> Option<usize> {
        self.max_items
    }
}

/// One page of `(sort key, item)` pairs sorted by key; the marker is the base64 of the
/// previous page's last key.
pub(crate) fn paginate(
    items: Vec<(String, Value)>,
    marker: Option<&str>,
    max_items: Option<usize>,
    default_max: usize,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let max = max_items.unwrap_or(default_max);
    if !(1..=10_000).contains(&max) {
        return Err(ApiError::invalid_parameter(format!(
            "1 validation error detected: Value '{max}' at 'maxItems' failed to satisfy constraint: Member must have value greater than or equal to 1"
        )));
    }
    let after = match marker {
        Some(m) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(m)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid_parameter("Invalid Marker"))?,
        ),
        None => None,
    };
    let mut page: Vec<(String, Value)> = items
        .into_iter()
        .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a))
        .take(max + 1)
        .collect();
    let next = if page.len() > max {
        page.truncate(max);
        page.last()
            .map(|(k, _)| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k))
    } else {
        None
    };
    Ok((page.into_iter().map(|(_, v)| v).collect(), next))
}

pub(crate) fn paged(key: &str, items: Vec<Value>, next: Option<String>) -> Json<Value> {
    let mut v = json!({ key: items });
    if let Some(n) = next {
        v["NextMarker"] = n.into();
    }
    Json(v)
}

async fn publish_version(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        code_sha256: Option<String>,
        description: Option<String>,
        revision_id: Option<String>,
    }
    let b: Body = parse(&body)?;
    let name = bare_name(&name)?;
    // Lambda's CodeSha256 is base64 of the digest; the invoker compares hex.
    let code_sha256 = b.code_sha256.filter(|s| !s.is_empty()).map(|s| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(hex::encode)
            .unwrap_or(s)
    });
    let (v, cfg) = st
        .invoker
        .publish_version(
            &name,
            PublishRequest {
                description: b.description,
                code_sha256,
                revision_id: b.revision_id,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(version_configuration_json(&st, &cfg, &v)),
    )
        .into_response())
}

async fn list_versions(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = bare_name(&name)?;
    // Sort key: `$LATEST` first, then versions in numeric order.
    let items = st
        .invoker
        .versions(&name)?
        .into_iter()
        .map(|(v, cfg)| {
            let key = match v.parse::<u32>() {
                Ok(n) => format!("v{n:010}"),
                Err(_) => String::from("$"),
            };
            let mut c = version_configuration_json(&st, &cfg, &v);
            // Listed versions carry qualified ARNs, `$LATEST`'s included.
            c["FunctionArn"] = nimbus_core::function_arn(&st.region(), &name, Some(&v)).into();
            (key, c)
        })
        .collect();
    let (page, next) = paginate(items, q.marker.as_deref(), q.max_items, 50)?;
    Ok(paged("Versions", page, next))
}

fn alias_json(st: &AppState, function: &str, a: &AliasConfig) -> Value {
    let mut v = json!({
        "AliasArn": nimbus_core::function_arn(&st.region(), function, Some(&a.name)),
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if !a.routing.is_empty() {
        v["RoutingConfig"] = json!({ "AdditionalVersionWeights": a.routing });
    }
    v
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingBody {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasBody {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingBody>,
    revision_id: Option<String>,
}

async fn create_alias(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: AliasBody = parse(&body)?;
    let function = bare_name(&name)?;
    let alias = b
        .name
        .ok_or_else(|| ApiError::invalid_parameter("Name is required"))?;
    let version = b
        .function_version
        .ok_or_else(|| ApiError::invalid_parameter("FunctionVersion is required"))?;
    let a = st
        .invoker
        .create_alias(
            &function,
            &alias,
            &version,
            b.description.unwrap_or_default(),
            b.routing_config
                .map(|r| r.additional_version_weights)
                .unwrap_or_default(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(alias_json(&st, &function, &a))).into_response())
}

async fn get_alias(
    State(st): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let function = bare_name(&name)?;
    let a = st.invoker.get_alias(&function, &alias)?;
    Ok(Json(alias_json(&st, &function, &a)))
}

async fn update_alias(
    State(st): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AliasBody = parse(&body)?;
    let function = bare_name(&name)?;
    let a = st
        .invoker
        .update_alias(
            &function,
            &alias,
            b.function_version,
            b.description,
            b.routing_config.map(|r| r.additional_version_weights),
            b.revision_id.as_deref(),
        )
        .await?;
    Ok(Json(alias_json(&st, &function, &a)))
}

async fn delete_alias(
    State(st): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let function = bare_name(&name)?;
    // The model lists no ResourceNotFoundException for DeleteAlias: deleting
    // what is not there succeeds, as Lambda's does.
    match st.invoker.delete_alias(&function, &alias).await {
        Ok(())
        | Err(nimbus_invoker::InvokeError::NotFound(_))
        | Err(nimbus_invoker::InvokeError::Missing {
            code: "ResourceNotFoundException",
            ..
        }) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e.into()),
    }
}

async fn list_aliases(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let function = bare_name(&name)?;
    let items = st
        .invoker
        .list_aliases(&function, q.function_version.as_deref())?
        .iter()
        .map(|a| (a.name.clone(), alias_json(&st, &function, a)))
        .collect();
    let (page, next) = paginate(items, q.marker.as_deref(), q.max_items, 50)?;
    Ok(paged("Aliases", page, next))
}

#[derive(Debug, Deserialize)]
struct ProvisionedQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "List")]
    list: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
}

fn provisioned_json(p: &ProvisionedStatus) -> Value {
    json!({
        "RequestedProvisionedConcurrentExecutions": p.requested,
        "AvailableProvisionedConcurrentExecutions": p.available,
        "AllocatedProvisionedConcurrentExecutions": p.available,
        "Status": p.status(),
        "LastModified": last_modified(p.last_modified_ms),
    })
}

fn required_qualifier(q: Option<String>) -> Result<String, ApiError> {
    q.filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::invalid_parameter("Qualifier is required"))
}

async fn put_provisioned(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        provisioned_concurrent_executions: u32,
    }
    let b: Body = parse(&body)?;
    let function = bare_name(&name)?;
    let qualifier = required_qualifier(q.qualifier)?;
    let p = st
        .invoker
        .put_provisioned(&function, &qualifier, b.provisioned_concurrent_executions)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(provisioned_json(&p))).into_response())
}

/// GET on this path is GetProvisionedConcurrencyConfig (`?Qualifier=`) or
/// ListProvisionedConcurrencyConfigs (`?List=ALL`).
async fn get_or_list_provisioned(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
) -> Result<Json<Value>, ApiError> {
    let function = bare_name(&name)?;
    if q.list.is_some() && q.qualifier.is_none() {
        let items = st
            .invoker
            .list_provisioned(&function)?
            .iter()
            .map(|p| {
                let mut v = provisioned_json(p);
                v["FunctionArn"] =
                    nimbus_core::function_arn(&st.region(), &function, Some(&p.qualifier)).into();
                (p.qualifier.clone(), v)
            })
            .collect();
        let (page, next) = paginate(items, q.marker.as_deref(), q.max_items, 50)?;
        return Ok(paged("ProvisionedConcurrencyConfigs", page, next));
    }
    let qualifier = required_qualifier(q.qualifier)?;
    let p = st.invoker.get_provisioned(&function, &qualifier)?;
    Ok(Json(provisioned_json(&p)))
}

async fn delete_provisioned(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
) -> Result<StatusCode, ApiError> {
    let function = bare_name(&name)?;
    let qualifier = required_qualifier(q.qualifier)?;
    st.invoker.delete_provisioned(&function, &qualifier).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_markers_to_the_end() {
        let items: Vec<(String, Value)> = (0..5).map(|i| (format!("k{i}"), json!(i))).collect();
        let (p1, m1) = paginate(items.clone(), None, Some(2), 50).unwrap();
        assert_eq!(p1, vec![json!(0), json!(1)]);
        let (p2, m2) = paginate(items.clone(), m1.as_deref(), Some(2), 50).unwrap();
        assert_eq!(p2, vec![json!(2), json!(3)]);
        let (p3, m3) = paginate(items.clone(), m2.as_deref(), Some(2), 50).unwrap();
        assert_eq!((p3, m3), (vec![json!(4)], None));
        assert!(paginate(items.clone(), Some("!!"), None, 50).is_err());
        assert!(paginate(items, None, Some(0), 50).is_err());
    }
}

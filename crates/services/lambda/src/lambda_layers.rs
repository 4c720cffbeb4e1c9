//! Lambda layers (REST-JSON, 2018-10-31): PublishLayerVersion, GetLayerVersion,
//! GetLayerVersionByArn, ListLayers, ListLayerVersions, DeleteLayerVersion; and
//! the resolution of a function's `Layers` ARNs into pinned [`LayerRef`]s.
//!
//! A version's zip is an ordinary content-addressed bundle of the blob store;
//! its row (`layer_versions`, numbered so a number is never given twice) holds
//! the JSON below. Functions pin a layer version's zip by sha, so deleting the
//! version keeps them working.

use crate::error::ApiError;
use crate::lambda_functions::{code_sha_b64, last_modified, parse, store_zip, CodeBody};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_core::LayerRef;
use nimbus_invoker::Invoker;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Mutex;

/// Most layers a function may use.
pub(crate) const MAX_LAYERS: usize = 5;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/2018-10-31/layers", get(list_layers))
        .route("/2018-10-31/layers/", get(list_layers))
        .route(
            "/2018-10-31/layers/{layer}/versions",
            get(list_layer_versions).post(publish_layer_version),
        )
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}",
            get(get_layer_version).delete(delete_layer_version),
        )
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}/policy",
            get(get_layer_policy).post(add_layer_permission),
        )
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}/policy/{sid}",
            axum::routing::delete(remove_layer_permission),
        )
}

/// What a stored version's row holds (`config` column).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredConfig {
    #[serde(default)]
    description: String,
    #[serde(default)]
    compatible_runtimes: Vec<String>,
    #[serde(default)]
    compatible_architectures: Vec<String>,
    #[serde(default)]
    license_info: Option<String>,
    created_ms: i64,
    code_sha256: String,
    code_size: u64,
    unzipped_size: u64,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 140
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `LayerName` is a name or a layer ARN (`arn:…:layer:<name>`).
fn layer_name(raw: &str) -> Result<String, ApiError> {
    let name = match raw.strip_prefix("arn:") {
        Some(rest) => rest.split_once(":layer:").map_or("", |(_, n)| n),
        None => raw,
    };
    if valid_name(name) {
        Ok(name.to_string())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!(
                "1 validation error detected: Value '{raw}' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+"
            ),
        ))
    }
}

fn version_number(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::validation(format!(
            "1 validation error detected: Value '{raw}' at 'versionNumber' failed to satisfy constraint: Member must be a number"
        )))
}

/// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>` into `(name, version)`.
pub(crate) fn parse_version_arn(arn: &str) -> Option<(String, u64)> {
    let rest = arn.strip_prefix("arn:")?;
    let (_, rest) = rest.split_once(":lambda:")?;
    let (_, rest) = rest.split_once(":layer:")?;
    let (name, version) = rest.rsplit_once(':')?;
    let account_ok = arn
        .split(':')
        .nth(4)
        .is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
    (account_ok && valid_name(name) && arn.len() <= 140)
        .then(|| version.parse().ok().map(|v| (name.to_string(), v)))
        .flatten()
}

fn layer_arn(st: &AppState, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:layer:{name}",
        st.region(),
        nimbus_core::ACCOUNT_ID
    )
}

fn load(st: &AppState, name: &str, version: u64) -> Result<Option<StoredConfig>, ApiError> {
    load_in(&st.invoker, name, version)
}

fn load_in(invoker: &Invoker, name: &str, version: u64) -> Result<Option<StoredConfig>, ApiError> {
    let row = invoker
        .db()
        .get_layer_version(name, version)
        .map_err(|e| ApiError::service(e.to_string()))?;
    row.map(|r| {
        serde_json::from_str::<StoredConfig>(&r.config)
            .map_err(|e| ApiError::service(format!("stored layer version is unreadable: {e}")))
    })
    .transpose()
}

fn not_found(st: &AppState, name: &str, version: u64) -> ApiError {
    ApiError::not_found(format!(
        "Layer version {}:{version} does not exist.",
        layer_arn(st, name)
    ))
}

/// `LayerVersionsListItem` (and the common part of `GetLayerVersionResponse`).
fn list_item(st: &AppState, name: &str, version: u64, c: &StoredConfig) -> Value {
    let mut v = json!({
        "LayerVersionArn": format!("{}:{version}", layer_arn(st, name)),
        "Version": version,
        "Description": c.description,
        "CreatedDate": last_modified(c.created_ms),
        "CompatibleRuntimes": c.compatible_runtimes,
        "CompatibleArchitectures": c.compatible_architectures,
    });
    if let Some(l) = &c.license_info {
        v["LicenseInfo"] = l.clone().into();
    }
    v
}

/// `GetLayerVersionResponse`: `Content.Location` downloads the zip from the
/// endpoint the client used.
fn full(st: &AppState, headers: &HeaderMap, name: &str, version: u64, c: &StoredConfig) -> Value {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:4566");
    let mut v = list_item(st, name, version, c);
    v["LayerArn"] = layer_arn(st, name).into();
    v["Content"] = json!({
        "Location": format!("http://{host}/_nimbus/code/{}", c.code_sha256),
        "CodeSha256": code_sha_b64(&c.code_sha256),
        "CodeSize": c.code_size,
    });
    v
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishBody {
    content: Option<CodeBody>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    compatible_runtimes: Vec<String>,
    #[serde(default)]
    compatible_architectures: Vec<String>,
    license_info: Option<String>,
}

fn validation(field: &str, value: impl std::fmt::Debug, constraint: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!("1 validation error detected: Value '{value:?}' at '{field}' failed to satisfy constraint: {constraint}"),
    )
}

async fn publish_layer_version(
    State(st): State<AppState>,
    Path(layer): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let name = layer_name(&layer)?;
    let b: PublishBody = parse(&body)?;
    if b.description.len() > 256 {
        return Err(validation(
            "description",
            &b.description,
            "Member must have length less than or equal to 256",
        ));
    }
    if b.license_info.as_ref().is_some_and(|l| l.len() > 512) {
        return Err(validation(
            "licenseInfo",
            &b.license_info,
            "Member must have length less than or equal to 512",
        ));
    }
    if b.compatible_runtimes.len() > 15 {
        return Err(validation(
            "compatibleRuntimes",
            &b.compatible_runtimes,
            "Member must have length less than or equal to 15",
        ));
    }
    if b.compatible_architectures.len() > 2
        || b.compatible_architectures
            .iter()
            .any(|a| a != "x86_64" && a != "arm64")
    {
        return Err(validation(
            "compatibleArchitectures",
            &b.compatible_architectures,
            "Member must have length less than or equal to 2, Member must satisfy enum value set: [x86_64, arm64]",
        ));
    }
    let content = b
        .content
        .ok_or_else(|| validation("content", "null", "Member must not be null"))?;
    if content.image_uri.is_some() {
        return Err(ApiError::invalid_parameter("Layers take a .zip archive"));
    }
    let bundle = store_zip(&st, Some(content)).await?;
    let blobs = st.invoker.blobs().clone();
    let sha = bundle.sha256.clone();
    let unzipped_size = tokio::task::spawn_blocking(move || blobs.unzipped_size(&sha))
        .await
        .map_err(|e| ApiError::service(e.to_string()))?
        .map_err(|e| ApiError::service(e.to_string()))?;
    let cfg = StoredConfig {
        description: b.description,
        compatible_runtimes: b.compatible_runtimes,
        compatible_architectures: b.compatible_architectures,
        license_info: b.license_info,
        created_ms: nimbus_core::now_ms(),
        code_sha256: bundle.sha256,
        code_size: bundle.size,
        unzipped_size,
    };
    let json_cfg = serde_json::to_string(&cfg).map_err(|e| ApiError::service(e.to_string()))?;
    let db = st.invoker.db().clone();
    let layer_key = name.clone();
    let (version, _) =
        tokio::task::spawn_blocking(move || db.publish_layer_version(&layer_key, |_| json_cfg))
            .await
            .map_err(|e| ApiError::service(e.to_string()))?
            .map_err(|e| ApiError::service(e.to_string()))?;
    tracing::info!(layer = %name, version, sha = %cfg.code_sha256, "layer version published");
    Ok((
        StatusCode::CREATED,
        Json(full(&st, &headers, &name, version, &cfg)),
    )
        .into_response())
}

async fn get_layer_version(
    State(st): State<AppState>,
    Path((layer, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&layer)?;
    let version = version_number(&version)?;
    let c = load(&st, &name, version)?.ok_or_else(|| not_found(&st, &name, version))?;
    Ok(Json(full(&st, &headers, &name, version, &c)))
}

async fn delete_layer_version(
    State(st): State<AppState>,
    Path((layer, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = layer_name(&layer)?;
    let version = version_number(&version)?;
    st.invoker
        .db()
        .delete_layer_version(&name, version)
        .map_err(|e| ApiError::service(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "CompatibleRuntime")]
    runtime: Option<String>,
    #[serde(rename = "CompatibleArchitecture")]
    architecture: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
    find: Option<String>,
    #[serde(rename = "Arn")]
    arn: Option<String>,
}

impl ListQuery {
    fn matches(&self, c: &StoredConfig) -> bool {
        self.runtime
            .as_ref()
            .is_none_or(|r| c.compatible_runtimes.contains(r))
            && self
                .architecture
                .as_ref()
                .is_none_or(|a| c.compatible_architectures.contains(a))
    }

    fn max_items(&self) -> Result<usize, ApiError> {
        match &self.max_items {
            None => Ok(50),
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=50).contains(&n) => Ok(n),
                _ => Err(validation(
                    "maxItems",
                    m,
                    "Member must have value less than or equal to 50, Member must have value greater than or equal to 1",
                )),
            },
        }
    }
}

fn rows(st: &AppState, layer: Option<&str>) -> Result<Vec<(String, u64, StoredConfig)>, ApiError> {
    let rows = st
        .invoker
        .db()
        .list_layer_versions(layer)
        .map_err(|e| ApiError::service(e.to_string()))?;
    rows.into_iter()
        .map(|r| {
            serde_json::from_str::<StoredConfig>(&r.config)
                .map(|c| (r.layer, r.version, c))
                .map_err(|e| ApiError::service(e.to_string()))
        })
        .collect()
}

/// `GET /2018-10-31/layers`: ListLayers, or (with `find=LayerVersion`)
/// GetLayerVersionByArn.
async fn list_layers(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if q.find.as_deref() == Some("LayerVersion") {
        let arn = q.arn.as_deref().unwrap_or_default();
        let (name, version) = parse_version_arn(arn).ok_or_else(|| {
            validation(
                "arn",
                arn,
                "Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+",
            )
        })?;
        let c = load(&st, &name, version)?.ok_or_else(|| not_found(&st, &name, version))?;
        return Ok(Json(full(&st, &headers, &name, version, &c)));
    }
    let max = q.max_items()?;
    // Rows come by name, newest first: the first matching row of each name is
    // its latest matching version.
    let mut items: Vec<(String, Value)> = Vec::new();
    for (name, version, c) in rows(&st, None)? {
        if !q.matches(&c) || items.last().is_some_and(|(n, _)| *n == name) {
            continue;
        }
        let item = json!({
            "LayerName": name,
            "LayerArn": layer_arn(&st, &name),
            "LatestMatchingVersion": list_item(&st, &name, version, &c),
        });
        items.push((name, item));
    }
    let (page, next) = crate::lambda_versions::paginate(items, q.marker.as_deref(), Some(max), 50)?;
    Ok(crate::lambda_versions::paged("Layers", page, next))
}

async fn list_layer_versions(
    State(st): State<AppState>,
    Path(layer): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&layer)?;
    let max = q.max_items()?;
    // Newest first; the page key sorts the same way.
    let items = rows(&st, Some(&name))?
        .into_iter()
        .filter(|(_, _, c)| q.matches(c))
        .map(|(n, v, c)| (format!("{:020}", u64::MAX - v), list_item(&st, &n, v, &c)))
        .collect();
    let (page, next) = crate::lambda_versions::paginate(items, q.marker.as_deref(), Some(max), 50)?;
    Ok(crate::lambda_versions::paged("LayerVersions", page, next))
}

/// A layer version's resource policy as stored (the `policy` column).
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredPolicy {
    revision_id: String,
    statements: Vec<Value>,
}

/// Serialises read-modify-write of layer policies.
static POLICY_LOCK: Mutex<()> = Mutex::new(());

fn load_policy(st: &AppState, name: &str, version: u64) -> Result<Option<StoredPolicy>, ApiError> {
    let row = st
        .invoker
        .db()
        .get_layer_version(name, version)
        .map_err(|e| ApiError::service(e.to_string()))?
        .ok_or_else(|| not_found(st, name, version))?;
    row.policy
        .map(|p| serde_json::from_str(&p).map_err(|e| ApiError::service(e.to_string())))
        .transpose()
        .map(|p: Option<StoredPolicy>| p.filter(|p| !p.statements.is_empty()))
}

fn save_policy(st: &AppState, name: &str, version: u64, p: &StoredPolicy) -> Result<(), ApiError> {
    let json =
        (!p.statements.is_empty()).then(|| serde_json::to_string(p).expect("policy serialises"));
    st.invoker
        .db()
        .set_layer_policy(name, version, json.as_deref())
        .map_err(|e| ApiError::service(e.to_string()))?;
    Ok(())
}

fn check_revision(p: &StoredPolicy, want: Option<&str>) -> Result<(), ApiError> {
    match want {
        Some(w) if w != p.revision_id => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailedException",
            "The Revision Id provided does not match the latest Revision Id. Call the GetLayerVersionPolicy API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
struct RevisionQuery {
    #[serde(rename = "RevisionId")]
    revision_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PermissionBody {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    organization_id: Option<String>,
}

fn valid_principal(p: &str) -> bool {
    let account = |a: &str| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
    p == "*"
        || account(p)
        || p.strip_prefix("arn:")
            .and_then(|r| r.split_once(":iam::"))
            .is_some_and(|(part, rest)| {
                part.starts_with("aws") && rest.strip_suffix(":root").is_some_and(account)
            })
}

/// AddLayerVersionPermission: a statement as Lambda writes it.
async fn add_layer_permission(
    State(st): State<AppState>,
    Path((layer, version)): Path<(String, String)>,
    Query(q): Query<RevisionQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let name = layer_name(&layer)?;
    let version = version_number(&version)?;
    let b: PermissionBody = parse(&body)?;
    let sid = b.statement_id.unwrap_or_default();
    if sid.is_empty()
        || sid.len() > 100
        || !sid
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(validation(
            "statementId",
            &sid,
            "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
        ));
    }
    let action = b.action.unwrap_or_default();
    if action != "lambda:GetLayerVersion" {
        return Err(validation(
            "action",
            &action,
            "Member must satisfy regular expression pattern: lambda:GetLayerVersion",
        ));
    }
    let principal = b.principal.unwrap_or_default();
    if !valid_principal(&principal) {
        return Err(validation(
            "principal",
            &principal,
            "Member must satisfy regular expression pattern: \\d{12}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{12}:root",
        ));
    }
    let principal_json = if principal == "*" {
        json!("*")
    } else if principal.starts_with("arn:") {
        json!({ "AWS": principal })
    } else {
        json!({ "AWS": format!("arn:aws:iam::{principal}:root") })
    };
    let mut statement = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal_json,
        "Action": action,
        "Resource": format!("{}:{version}", layer_arn(&st, &name)),
    });
    if let Some(org) = b.organization_id {
        statement["Condition"] = json!({ "StringEquals": { "aws:PrincipalOrgID": org } });
    }
    let _serial = POLICY_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut policy = load_policy(&st, &name, version)?.unwrap_or_default();
    check_revision(&policy, q.revision_id.as_deref())?;
    if policy.statements.iter().any(|s| s["Sid"] == sid.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ResourceConflictException",
            format!("The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."),
        ));
    }
    policy.statements.push(statement.clone());
    policy.revision_id = nimbus_core::new_request_id();
    save_policy(&st, &name, version, &policy)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Statement": statement.to_string(), "RevisionId": policy.revision_id })),
    )
        .into_response())
}

async fn get_layer_policy(
    State(st): State<AppState>,
    Path((layer, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&layer)?;
    let version = version_number(&version)?;
    let policy = load_policy(&st, &name, version)?
        .ok_or_else(|| ApiError::not_found("No policy is associated with the given resource."))?;
    let doc = json!({ "Version": "2012-10-17", "Id": "default", "Statement": policy.statements });
    Ok(Json(
        json!({ "Policy": doc.to_string(), "RevisionId": policy.revision_id }),
    ))
}

async fn remove_layer_permission(
    State(st): State<AppState>,
    Path((layer, version, sid)): Path<(String, String, String)>,
    Query(q): Query<RevisionQuery>,
) -> Result<StatusCode, ApiError> {
    let name = layer_name(&layer)?;
    let version = version_number(&version)?;
    let _serial = POLICY_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let missing =
        || ApiError::not_found(format!("Statement {sid} is not found in resource policy."));
    let mut policy = load_policy(&st, &name, version)?.ok_or_else(missing)?;
    check_revision(&policy, q.revision_id.as_deref())?;
    let before = policy.statements.len();
    policy.statements.retain(|s| s["Sid"] != sid.as_str());
    if policy.statements.len() == before {
        return Err(missing());
    }
    policy.revision_id = nimbus_core::new_request_id();
    save_policy(&st, &name, version, &policy)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A function's `Layers`: at most five layer version ARNs, each existing now,
/// pinned to its zip. The unzipped total (with the function's code) is checked
/// by [`check_total_size`].
pub(crate) fn resolve(st: &AppState, arns: &[String]) -> Result<Vec<LayerRef>, ApiError> {
    resolve_layers(&st.invoker, arns)
}

/// [`resolve`] for callers outside the Lambda API (the control API's deploy).
pub fn resolve_layers(invoker: &Invoker, arns: &[String]) -> Result<Vec<LayerRef>, ApiError> {
    if arns.len() > MAX_LAYERS {
        return Err(ApiError::invalid_parameter(format!(
            "Cannot reference more than {MAX_LAYERS} layers."
        )));
    }
    let mut out = Vec::with_capacity(arns.len());
    for arn in arns {
        let (name, version) = parse_version_arn(arn).ok_or_else(|| {
            validation(
                "layers",
                arns,
                "Member must satisfy constraint: [Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+]",
            )
        })?;
        let c = load_in(invoker, &name, version)?.ok_or_else(|| {
            ApiError::invalid_parameter(format!("Layer version {arn} does not exist."))
        })?;
        out.push(LayerRef {
            arn: arn.clone(),
            code_sha256: c.code_sha256,
            code_size: c.code_size,
            unzipped_size: c.unzipped_size,
        });
    }
    Ok(out)
}

/// Lambda's 250 MB limit on the function's code and its layers, unzipped.
pub(crate) async fn check_total_size(
    st: &AppState,
    code_sha: &str,
    layers: &[LayerRef],
) -> Result<(), ApiError> {
    check_layers_size(&st.invoker, code_sha, layers).await
}

/// [`check_total_size`] for callers outside the Lambda API.
pub async fn check_layers_size(
    invoker: &Invoker,
    code_sha: &str,
    layers: &[LayerRef],
) -> Result<(), ApiError> {
    if layers.is_empty() {
        return Ok(());
    }
    let blobs = invoker.blobs().clone();
    let sha = code_sha.to_string();
    let code = tokio::task::spawn_blocking(move || blobs.unzipped_size(&sha))
        .await
        .map_err(|e| ApiError::service(e.to_string()))?
        .map_err(|e| ApiError::service(e.to_string()))?;
    let total = code + layers.iter().map(|l| l.unzipped_size).sum::<u64>();
    let max = nimbus_core::limits::CODE_UNZIPPED_MAX;
    if total > max {
        return Err(ApiError::invalid_parameter(format!(
            "Function code combined with layers exceeds the maximum allowed size of {max} bytes. The actual size is {total} bytes."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_arns_parse_strictly() {
        assert_eq!(
            parse_version_arn("arn:aws:lambda:us-east-1:000000000000:layer:my-lib_2:7"),
            Some(("my-lib_2".into(), 7))
        );
        for bad in [
            "arn:aws:lambda:us-east-1:000000000000:layer:my-lib",
            "arn:aws:lambda:us-east-1:0000:layer:x:1",
            "arn:aws:lambda:us-east-1:000000000000:layer:../x:1",
            "arn:aws:lambda:us-east-1:000000000000:function:x:1",
            "x:1",
        ] {
            assert_eq!(parse_version_arn(bad), None, "{bad}");
        }
        assert!(layer_name("arn:aws:lambda:us-east-1:000000000000:layer:abc").is_ok());
        assert!(layer_name("a/b").is_err());
        assert!(layer_name("").is_err());
    }
}

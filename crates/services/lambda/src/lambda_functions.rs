//! Lambda function management operations (REST-JSON, 2015-03-31 and friends):
//! CreateFunction, GetFunction, GetFunctionConfiguration, ListFunctions,
//! UpdateFunctionCode, UpdateFunctionConfiguration, DeleteFunction,
//! Put/Get/DeleteFunctionConcurrency, GetAccountSettings, TagResource,
//! UntagResource, ListTags. Versions, aliases and provisioned concurrency are in
//! `lambda_versions`.

use crate::error::ApiError;
use crate::lambda::{read_limited, split_function_name};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use nimbus_core::{FunctionConfig, FunctionSpec, Runtime};
use nimbus_invoker::{DeployMode, InvokeError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Largest CreateFunction/UpdateFunctionCode body (a 50 MB zip, base64-encoded, plus JSON).
pub(crate) const CODE_BODY_MAX: usize = 70 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2015-03-31/functions",
            post(create_function).get(list_functions),
        )
        .route(
            "/2015-03-31/functions/",
            post(create_function).get(list_functions),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(get_function).delete(delete_function),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(get_configuration).put(update_configuration),
        )
        .route("/2015-03-31/functions/{name}/code", put(update_code))
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(put_concurrency).delete(delete_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(get_concurrency),
        )
        .route("/2016-08-19/account-settings", get(account_settings))
        .route("/2016-08-19/account-settings/", get(account_settings))
        .route(
            "/2017-03-31/tags/{arn}",
            get(list_tags).post(tag_resource).delete(untag_resource),
        )
}

/// Lambda's `LastModified`: `2019-09-24T18:20:35.054+0000`.
pub(crate) fn last_modified(ms: i64) -> String {
    nimbus_core::format_ms(ms, "+0000")
}

/// Lambda reports `CodeSha256` as base64 of the digest; Nimbus stores hex.
pub(crate) fn code_sha_b64(hex_sha: &str) -> String {
    hex::decode(hex_sha)
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .unwrap_or_default()
}

/// `FunctionConfiguration` of `$LATEST` as Lambda returns it.
pub(crate) fn configuration_json(st: &AppState, c: &FunctionConfig) -> Value {
    version_configuration_json(st, c, "$LATEST")
}

/// `FunctionConfiguration` of a version (`$LATEST` or a number): a published
/// version's ARN is qualified with its number.
pub(crate) fn version_configuration_json(
    st: &AppState,
    c: &FunctionConfig,
    version: &str,
) -> Value {
    let s = &c.spec;
    let region = &st.region();
    let qualifier = (version != "$LATEST").then_some(version);
    let mut v = json!({
        "FunctionName": s.name,
        "FunctionArn": nimbus_core::function_arn(region, &s.name, qualifier),
        "Runtime": s.runtime.to_string(),
        "Role": s.role.clone().unwrap_or_else(|| format!("arn:aws:iam::{}:role/nimbus-default", nimbus_core::ACCOUNT_ID)),
        "Handler": s.handler,
        "CodeSize": c.code_size,
        "Description": s.description,
        "Timeout": s.timeout_s,
        "MemorySize": s.memory_mb,
        "LastModified": last_modified(c.last_modified_ms),
        "CodeSha256": code_sha_b64(&c.code_sha256),
        "Version": version,
        "TracingConfig": { "Mode": s.tracing_mode.clone().unwrap_or_else(|| "PassThrough".into()) },
        "RevisionId": c.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": s.architectures,
        "EphemeralStorage": { "Size": s.ephemeral_storage_mb },
        "SnapStart": { "ApplyOn": "None", "OptimizationStatus": "Off" },
        "LoggingConfig": { "LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", s.name) },
    });
    if !s.environment.is_empty() {
        v["Environment"] = json!({ "Variables": s.environment });
    }
    if let Some(t) = &s.dead_letter_target {
        v["DeadLetterConfig"] = json!({ "TargetArn": t });
    }
    if !s.layers.is_empty() {
        v["Layers"] = s
            .layers
            .iter()
            .map(|l| json!({ "Arn": l.arn, "CodeSize": l.code_size }))
            .collect();
    }
    v
}

fn not_found(st: &AppState, name: &str, qualifier: Option<&str>) -> ApiError {
    ApiError::not_found(format!(
        "Function not found: {}",
        nimbus_core::function_arn(&st.region(), name, qualifier)
    ))
}

/// `$LATEST` of a function named by name or ARN.
fn lookup(
    st: &AppState,
    raw: &str,
    qualifier: Option<String>,
) -> Result<std::sync::Arc<FunctionConfig>, ApiError> {
    let (name, qualifier) = split_function_name(raw, qualifier);
    match qualifier.as_deref() {
        None | Some("$LATEST") => st
            .invoker
            .get(&name)
            .ok_or_else(|| not_found(st, &name, qualifier.as_deref())),
        Some(q) => Err(not_found(st, &name, Some(q))),
    }
}

/// A version a qualifier (`$LATEST`, a number, an alias) names, with its version string.
fn lookup_qualified(
    st: &AppState,
    raw: &str,
    qualifier: Option<String>,
) -> Result<(String, std::sync::Arc<FunctionConfig>), ApiError> {
    let (name, qualifier) = split_function_name(raw, qualifier);
    Ok(st.invoker.get_qualified(&name, qualifier.as_deref())?)
}

/// Publish `$LATEST` after a create or code update with `Publish: true`.
async fn publish_after(st: &AppState, name: &str) -> Result<Value, ApiError> {
    let (v, cfg) = st
        .invoker
        .publish_version(name, nimbus_invoker::PublishRequest::default())
        .await?;
    Ok(version_configuration_json(st, &cfg, &v))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("Could not parse request body into json: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CodeBody {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<String>,
    pub(crate) image_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvBody {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SizeBody {
    size: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetBody {
    target_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModeBody {
    mode: Option<String>,
}

/// Lambda's `RoleArn` pattern: `arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+`.
pub(crate) fn is_role_arn(r: &str) -> bool {
    let Some(rest) = r.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    let partition_ok = partition.is_empty()
        || partition
            .strip_prefix("aws")
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'));
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, rest)) = rest.split_once(':') else {
        return false;
    };
    let Some(name) = rest.strip_prefix("role") else {
        return false;
    };
    let name = name.strip_prefix('/').unwrap_or(name);
    partition_ok
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b))
}

/// Fields shared by CreateFunction and UpdateFunctionConfiguration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigBody {
    function_name: Option<String>,
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    code: Option<CodeBody>,
    description: Option<String>,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    #[serde(default)]
    publish: bool,
    environment: Option<EnvBody>,
    tags: Option<BTreeMap<String, String>>,
    architectures: Option<Vec<String>>,
    ephemeral_storage: Option<SizeBody>,
    dead_letter_config: Option<TargetBody>,
    tracing_config: Option<ModeBody>,
    package_type: Option<String>,
    layers: Option<Vec<String>>,
    revision_id: Option<String>,
}

impl ConfigBody {
    fn apply(self, spec: &mut FunctionSpec) -> Result<(), ApiError> {
        if let Some(r) = self.runtime {
            spec.runtime = r
                .parse::<Runtime>()
                .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
        }
        if let Some(h) = self.handler {
            spec.handler = h;
        }
        if let Some(r) = self.role {
            if !is_role_arn(&r) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    format!(
                        "1 validation error detected: Value '{r}' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"
                    ),
                ));
            }
            spec.role = Some(r);
        }
        if let Some(d) = self.description {
            spec.description = d;
        }
        if let Some(t) = self.timeout {
            spec.timeout_s = t;
        }
        if let Some(m) = self.memory_size {
            spec.memory_mb = m;
        }
        if let Some(e) = self.environment {
            spec.environment = e.variables;
        }
        if let Some(a) = self.architectures {
            spec.architectures = a;
        }
        if let Some(e) = self.ephemeral_storage {
            spec.ephemeral_storage_mb = e.size;
        }
        if let Some(d) = self.dead_letter_config {
            spec.dead_letter_target = d.target_arn.filter(|t| !t.is_empty());
        }
        if let Some(t) = self.tracing_config {
            spec.tracing_mode = t.mode;
        }
        Ok(())
    }
}

/// Store a base64 `ZipFile` and return its sha256.
/// A function's package from the object store (`Code.S3Bucket`/`S3Key`), with
/// Lambda's message when S3 cannot give it.
async fn code_from_s3(
    st: &AppState,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Vec<u8>, ApiError> {
    use nimbus_triggers::sinks::SinkError;
    let objects = st
        .sinks
        .objects()
        .map_err(|e| ApiError::service(e.to_string()))?;
    match objects
        .get_object(
            bucket,
            key,
            version,
            nimbus_core::limits::CODE_UNZIPPED_MAX as usize,
        )
        .await
    {
        Ok(b) => Ok(b.to_vec()),
        Err(SinkError::NotFound(m)) => {
            let (code, message) = m.split_once(": ").unwrap_or(("NoSuchKey", m.as_str()));
            Err(ApiError::invalid_parameter(format!(
                "Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {message}"
            )))
        }
        Err(SinkError::Rejected { .. }) => Err(ApiError::invalid_parameter(format!(
            "Unzipped size must be smaller than {} bytes",
            nimbus_core::limits::CODE_UNZIPPED_MAX
        ))),
        Err(e) => Err(ApiError::service(e.to_string())),
    }
}

pub(crate) async fn store_zip(
    st: &AppState,
    code: Option<CodeBody>,
) -> Result<nimbus_store::CodeBundle, ApiError> {
    let code = code.unwrap_or_default();
    if code.image_uri.is_some() {
        return Err(ApiError::invalid_parameter(
            "Container image functions are not supported by Nimbus yet; use PackageType Zip",
        ));
    }
    let bytes = match (code.s3_bucket, code.zip_file) {
        (Some(bucket), None) => {
            let key = code.s3_key.ok_or_else(|| {
                ApiError::invalid_parameter("Please provide S3Key along with S3Bucket.")
            })?;
            code_from_s3(st, &bucket, &key, code.s3_object_version.as_deref()).await?
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_parameter(
                "Please do not provide other FunctionCode parameters when providing a ZipFile.",
            ))
        }
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| {
                ApiError::invalid_parameter(
                    "Could not unzip uploaded file. Please check your file, then try to upload again.",
                )
            })?,
        (None, None) => {
            return Err(ApiError::invalid_parameter(
                "Please provide a source for function code.",
            ))
        }
    };
    let blobs = st.invoker.blobs().clone();
    let bundle = tokio::task::spawn_blocking(move || {
        blobs.put_zip(&bytes, nimbus_core::limits::CODE_UNZIPPED_MAX)
    })
    .await
    .map_err(|e| ApiError::service(e.to_string()))?
    .map_err(|e| ApiError::from(InvokeError::from(e)))?;
    Ok(bundle)
}

async fn create_function(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let body = read_limited(body, CODE_BODY_MAX).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            "Request must be smaller than 70167211 bytes for the CreateFunction operation",
        )
    })?;
    let mut b: ConfigBody = parse(&body)?;
    let name = b
        .function_name
        .take()
        .ok_or_else(|| ApiError::invalid_parameter("FunctionName is required"))?;
    let (name, _) = split_function_name(&name, None);
    if let Some(p) = b.package_type.as_deref() {
        if p != "Zip" {
            return Err(ApiError::invalid_parameter(
                "Container image functions are not supported by Nimbus yet; use PackageType Zip",
            ));
        }
    }
    let runtime = b
        .runtime
        .as_deref()
        .ok_or_else(|| {
            ApiError::invalid_parameter("Runtime is required for .zip deployment package")
        })?
        .parse::<Runtime>()
        .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
    let publish = b.publish;
    let layers = b
        .layers
        .take()
        .map(|arns| crate::lambda_layers::resolve(&st, &arns))
        .transpose()?;
    let sha = store_zip(&st, b.code.take()).await?.sha256;
    let mut spec = FunctionSpec::new(name, runtime, String::new());
    if let Some(t) = b.tags.take() {
        spec.tags = t;
    }
    b.apply(&mut spec)?;
    if let Some(l) = layers {
        crate::lambda_layers::check_total_size(&st, &sha, &l).await?;
        spec.layers = l;
    }
    let out = st
        .invoker
        .deploy_with(spec, sha, DeployMode::Create)
        .await?;
    let body = if publish {
        // The published version's configuration, under the unqualified ARN, as
        // CreateFunction answers.
        let mut v = publish_after(&st, out.config.name()).await?;
        v["FunctionArn"] = nimbus_core::function_arn(&st.region(), out.config.name(), None).into();
        v
    } else {
        configuration_json(&st, &out.config)
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

async fn get_function(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (version, c) = lookup_qualified(&st, &name, q.qualifier)?;
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:4566");
    let mut v = json!({
        "Configuration": version_configuration_json(&st, &c, &version),
        "Code": {
            "RepositoryType": "S3",
            "Location": format!("http://{host}/_nimbus/code/{}", c.code_sha256),
        },
        "Tags": c.spec.tags,
    });
    if let Some(r) = c.spec.reserved_concurrency {
        v["Concurrency"] = json!({ "ReservedConcurrentExecutions": r });
    }
    Ok(Json(v))
}

async fn get_configuration(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let (version, c) = lookup_qualified(&st, &name, q.qualifier)?;
    Ok(Json(version_configuration_json(&st, &c, &version)))
}

async fn list_functions(
    State(st): State<AppState>,
    Query(q): Query<crate::lambda_versions::PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let items = st
        .invoker
        .list()
        .iter()
        .map(|c| (c.name().to_string(), configuration_json(&st, c)))
        .collect();
    let (page, next) = crate::lambda_versions::paginate(items, q.marker(), q.max_items(), 50)?;
    Ok(crate::lambda_versions::paged("Functions", page, next))
}

async fn update_code(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_limited(body, CODE_BODY_MAX).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            "Request must be smaller than 70167211 bytes for the UpdateFunctionCode operation",
        )
    })?;
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct UpdateCode {
        zip_file: Option<String>,
        #[serde(rename = "S3Bucket")]
        s3_bucket: Option<String>,
        #[serde(rename = "S3Key")]
        s3_key: Option<String>,
        #[serde(rename = "S3ObjectVersion")]
        s3_object_version: Option<String>,
        image_uri: Option<String>,
        revision_id: Option<String>,
        architectures: Option<Vec<String>>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        publish: bool,
    }
    let b: UpdateCode = parse(&body)?;
    let current = lookup(&st, &name, None)?;
    let sha = store_zip(
        &st,
        Some(CodeBody {
            zip_file: b.zip_file,
            s3_bucket: b.s3_bucket,
            s3_key: b.s3_key,
            s3_object_version: b.s3_object_version,
            image_uri: b.image_uri,
        }),
    )
    .await?
    .sha256;
    crate::lambda_layers::check_total_size(&st, &sha, &current.spec.layers).await?;
    let mut spec = current.spec.clone();
    if let Some(a) = b.architectures {
        spec.architectures = a;
    }
    if b.dry_run {
        spec.validate()
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
        return Ok(Json(configuration_json(&st, &current)));
    }
    let out = st
        .invoker
        .deploy_with(
            spec,
            sha,
            DeployMode::Update {
                expect_revision_id: b.revision_id.as_deref(),
            },
        )
        .await?;
    if b.publish {
        return Ok(Json(publish_after(&st, out.config.name()).await?));
    }
    Ok(Json(configuration_json(&st, &out.config)))
}

async fn update_configuration(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut b: ConfigBody = parse(&body)?;
    let current = lookup(&st, &name, None)?;
    let expect = b.revision_id.take();
    let layers = b
        .layers
        .take()
        .map(|arns| crate::lambda_layers::resolve(&st, &arns))
        .transpose()?;
    let mut spec = current.spec.clone();
    b.apply(&mut spec)?;
    if let Some(l) = layers {
        crate::lambda_layers::check_total_size(&st, &current.code_sha256, &l).await?;
        spec.layers = l;
    }
    let out = st
        .invoker
        .deploy_with(
            spec,
            current.code_sha256.clone(),
            DeployMode::Update {
                expect_revision_id: expect.as_deref(),
            },
        )
        .await?;
    Ok(Json(configuration_json(&st, &out.config)))
}

async fn delete_function(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let (fname, qualifier) = split_function_name(&name, q.qualifier);
    match qualifier.as_deref() {
        Some(qual) => st.invoker.delete_version(&fname, qual).await?,
        None => st.invoker.delete(&fname).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn put_concurrency(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        reserved_concurrent_executions: u32,
    }
    let b: Body = parse(&body)?;
    let (fname, _) = split_function_name(&name, None);
    let limit = st.invoker.admission().account_limit();
    let n = b.reserved_concurrent_executions;
    if n > limit {
        return Err(ApiError::invalid_parameter(format!(
            "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [0]. Account limit is {limit}."
        )));
    }
    st.invoker
        .amend(&fname, |s| {
            s.reserved_concurrency = Some(n);
            Ok(())
        })
        .await?;
    Ok(Json(json!({ "ReservedConcurrentExecutions": n })))
}

async fn get_concurrency(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = lookup(&st, &name, None)?;
    Ok(Json(match c.spec.reserved_concurrency {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }))
}

async fn delete_concurrency(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (fname, _) = split_function_name(&name, None);
    st.invoker
        .amend(&fname, |s| {
            s.reserved_concurrency = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn account_settings(State(st): State<AppState>) -> Json<Value> {
    let fns = st.invoker.list();
    let total: u64 = fns.iter().map(|c| c.code_size).sum();
    let adm = st.invoker.admission();
    Json(json!({
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800u64,
            "CodeSizeUnzipped": nimbus_core::limits::CODE_UNZIPPED_MAX,
            "CodeSizeZipped": 52_428_800u64,
            "ConcurrentExecutions": adm.account_limit(),
            "UnreservedConcurrentExecutions": adm.unreserved_limit(),
        },
        "AccountUsage": { "TotalCodeSize": total, "FunctionCount": fns.len() },
    }))
}

fn name_from_arn(st: &AppState, arn: &str) -> Result<String, ApiError> {
    let (name, _) = split_function_name(arn, None);
    if st.invoker.get(&name).is_none() {
        return Err(not_found(st, &name, None));
    }
    Ok(name)
}

async fn list_tags(
    State(st): State<AppState>,
    Path(arn): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = name_from_arn(&st, &arn)?;
    let c = st
        .invoker
        .get(&name)
        .ok_or_else(|| not_found(&st, &name, None))?;
    Ok(Json(json!({ "Tags": c.spec.tags })))
}

async fn tag_resource(
    State(st): State<AppState>,
    Path(arn): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        tags: BTreeMap<String, String>,
    }
    let b: Body = parse(&body)?;
    let name = name_from_arn(&st, &arn)?;
    st.invoker
        .amend(&name, |s| {
            s.tags.extend(b.tags);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn untag_resource(
    State(st): State<AppState>,
    Path(arn): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let keys: Vec<String> = form_urlencoded_pairs(raw.as_deref().unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    let name = name_from_arn(&st, &arn)?;
    st.invoker
        .amend(&name, |s| {
            for k in &keys {
                s.tags.remove(k);
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Repeated query keys (`tagKeys=a&tagKeys=b`), which serde's map extractors collapse.
fn form_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod role_tests {
    #[test]
    fn role_arns_follow_lambdas_pattern() {
        for ok in [
            "arn:aws:iam::123456789012:role/r",
            "arn:aws:iam::123456789012:role/service-role/my.role@x",
            "arn:aws-cn:iam::123456789012:role/r",
        ] {
            assert!(super::is_role_arn(ok), "{ok}");
        }
        for bad in [
            "not-an-arn",
            "arn:aws:iam::123456789012:user/u",
            "arn:aws:iam::12345:role/r",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:s3:::bucket",
        ] {
            assert!(!super::is_role_arn(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_timestamp_and_sha_shapes() {
        assert_eq!(
            last_modified(1_569_349_235_054),
            "2019-09-24T18:20:35.054+0000"
        );
        let hex_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            code_sha_b64(hex_sha),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn repeated_query_keys() {
        assert_eq!(
            form_urlencoded_pairs("tagKeys=a&tagKeys=b%20c&x"),
            vec![
                ("tagKeys".into(), "a".into()),
                ("tagKeys".into(), "b c".into()),
                ("x".into(), "".into())
            ]
        );
    }
}

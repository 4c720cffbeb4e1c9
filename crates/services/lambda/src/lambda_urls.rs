//! Lambda function URLs (REST-JSON, API version 2021-10-31): CreateFunctionUrlConfig,
//! GetFunctionUrlConfig, UpdateFunctionUrlConfig, DeleteFunctionUrlConfig and
//! ListFunctionUrlConfigs.
//!
//! The configs live in the gateway's [`FunctionUrls`] (reached through the
//! `Extension<RouteTable>` the server layers on the router) and are served on the
//! gateway listener: `FunctionUrl` is `http://<gateway>/_url/<url-id>/`. A
//! `Qualifier` (query string, or `name:alias` in `FunctionName`) must name an alias,
//! as on AWS.

use crate::error::ApiError;
use crate::lambda::split_function_name;
use crate::lambda_versions::{paged, paginate, PageQuery};
use crate::AppState;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_gateway::function_url::{AuthType, InvokeMode, UrlError};
use nimbus_gateway::{CorsConfig, FunctionUrlConfig, FunctionUrls, RouteTable};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2021-10-31/functions/{name}/url",
            get(get_url)
                .post(create_url)
                .put(update_url)
                .delete(delete_url),
        )
        .route("/2021-10-31/functions/{name}/urls", get(list_urls))
}

impl From<UrlError> for ApiError {
    fn from(e: UrlError) -> Self {
        match e {
            UrlError::Exists => ApiError::new(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                e.to_string(),
            ),
            UrlError::NotFound => ApiError::not_found(e.to_string()),
            UrlError::Store(_) => ApiError::service(e.to_string()),
        }
    }
}

fn validation(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// Lambda's `Cors` shape.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Cors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expose_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age: Option<i64>,
}

impl Cors {
    fn into_config(self) -> Result<CorsConfig, ApiError> {
        let max_age = match self.max_age {
            None => None,
            Some(a) if (0..=nimbus_gateway::cors::MAX_AGE_LIMIT as i64).contains(&a) => {
                Some(a as u32)
            }
            Some(a) => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{a}' at 'cors.maxAge' failed to satisfy constraint: Member must have value less than or equal to {}",
                    nimbus_gateway::cors::MAX_AGE_LIMIT
                )))
            }
        };
        CorsConfig {
            allow_origins: self.allow_origins.unwrap_or_default(),
            allow_methods: self.allow_methods.unwrap_or_default(),
            allow_headers: self.allow_headers.unwrap_or_default(),
            expose_headers: self.expose_headers.unwrap_or_default(),
            allow_credentials: self.allow_credentials.unwrap_or(false),
            max_age,
        }
        .normalize()
        .map_err(|e| ApiError::invalid_parameter(e.to_string()))
    }

    fn of(c: &CorsConfig) -> Self {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        Cors {
            allow_credentials: Some(c.allow_credentials),
            allow_headers: some(&c.allow_headers),
            allow_methods: some(&c.allow_methods),
            allow_origins: some(&c.allow_origins),
            expose_headers: some(&c.expose_headers),
            max_age: c.max_age.map(i64::from),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlBody {
    auth_type: Option<String>,
    cors: Option<Cors>,
    invoke_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

fn parse_body(body: &[u8]) -> Result<UrlBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(UrlBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("Could not parse request body into json: {e}")))
}

fn auth_type(s: &str) -> Result<AuthType, ApiError> {
    AuthType::parse(s).ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value '{s}' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [AWS_IAM, NONE]"
        ))
    })
}

fn invoke_mode(s: &str) -> Result<InvokeMode, ApiError> {
    InvokeMode::parse(s).ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value '{s}' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]"
        ))
    })
}

/// The function and alias a request names (both must exist), and when the function
/// was created. URL configs left by an earlier function of the same name are dropped.
async fn target(
    st: &AppState,
    table: &RouteTable,
    raw: &str,
    q: QualifierQuery,
) -> Result<(String, Option<String>, i64), ApiError> {
    let (name, qualifier) = split_function_name(raw, q.qualifier);
    let qualifier = qualifier.filter(|q| !q.is_empty());
    let Some(function) = st.invoker.get(&name) else {
        return Err(ApiError::not_found(format!(
            "Function not found: {}",
            nimbus_core::function_arn(&st.region(), &name, qualifier.as_deref())
        )));
    };
    let created_ms = function.created_ms;
    table.function_urls().prune(&name, created_ms).await?;
    if let Some(q) = &qualifier {
        let alias_like = !q.is_empty()
            && !q.bytes().all(|b| b.is_ascii_digit())
            && q.len() <= 128
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !alias_like {
            return Err(validation(format!(
                "1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
            )));
        }
        st.invoker.get_alias(&name, q)?;
    }
    Ok((name, qualifier, created_ms))
}

/// The config as the Lambda API shows it; `LastModifiedTime` everywhere but on
/// create, as AWS answers.
fn view(st: &AppState, table: &RouteTable, c: &FunctionUrlConfig, modified: bool) -> Value {
    let mut v = json!({
        "FunctionUrl": FunctionUrls::url_of(table.public_url(), c),
        "FunctionArn": nimbus_core::function_arn(&st.region(), &c.function, c.qualifier.as_deref()),
        "AuthType": c.auth_type.as_str(),
        "CreationTime": nimbus_core::format_ms(c.created_ms, "Z"),
        "InvokeMode": c.invoke_mode.as_str(),
    });
    if modified {
        v["LastModifiedTime"] = nimbus_core::format_ms(c.updated_ms, "Z").into();
    }
    if let Some(cors) = &c.cors {
        v["Cors"] = serde_json::to_value(Cors::of(cors)).expect("Cors serialises");
    }
    v
}

async fn create_url(
    State(st): State<AppState>,
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b = parse_body(&body)?;
    let (name, qualifier, created_ms) = target(&st, &table, &name, q).await?;
    let Some(auth) = b.auth_type.as_deref() else {
        return Err(validation(
            "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null".into(),
        ));
    };
    let auth = auth_type(auth)?;
    let mode = b.invoke_mode.as_deref().map(invoke_mode).transpose()?;
    let cors = b.cors.map(Cors::into_config).transpose()?;
    let urls = table.function_urls();
    let c = urls
        .create(
            &name,
            created_ms,
            qualifier.as_deref(),
            auth,
            cors,
            mode.unwrap_or_default(),
        )
        .await
        .map_err(|e| match e {
            UrlError::Exists => ApiError::new(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                format!(
                    "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                    nimbus_core::function_arn(&st.region(), &name, qualifier.as_deref())
                ),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(view(&st, &table, &c, false))).into_response())
}

async fn get_url(
    State(st): State<AppState>,
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let (name, qualifier, _) = target(&st, &table, &name, q).await?;
    let c = table
        .function_urls()
        .get(&name, qualifier.as_deref())
        .ok_or(UrlError::NotFound)?;
    Ok(Json(view(&st, &table, &c, true)))
}

async fn update_url(
    State(st): State<AppState>,
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b = parse_body(&body)?;
    let (name, qualifier, _) = target(&st, &table, &name, q).await?;
    let auth = b.auth_type.as_deref().map(auth_type).transpose()?;
    let mode = b.invoke_mode.as_deref().map(invoke_mode).transpose()?;
    let cors = b.cors.map(Cors::into_config).transpose()?;
    let c = table
        .function_urls()
        .update(&name, qualifier.as_deref(), auth, cors, mode)
        .await?;
    Ok(Json(view(&st, &table, &c, true)))
}

async fn delete_url(
    State(st): State<AppState>,
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let (name, qualifier, _) = target(&st, &table, &name, q).await?;
    table
        .function_urls()
        .delete(&name, qualifier.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_urls(
    State(st): State<AppState>,
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (name, _, _) = target(&st, &table, &name, QualifierQuery { qualifier: None }).await?;
    let items: Vec<(String, Value)> = table
        .function_urls()
        .list(&name)
        .iter()
        .map(|c| {
            // The unqualified URL first, then by alias; never an empty key (the
            // marker is the last key's base64).
            let key = match &c.qualifier {
                Some(q) => format!("1:{q}"),
                None => "0".to_string(),
            };
            (key, view(&st, &table, c, true))
        })
        .collect();
    let (items, next) = paginate(items, page.marker(), page.max_items(), 50)?;
    Ok(paged("FunctionUrlConfigs", items, next))
}

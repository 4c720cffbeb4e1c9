//! The control API of the gateway's access control, used by `nimbus authorizer`,
//! `nimbus usage-plan` and `nimbus apikey`:
//!
//! * `GET /_nimbus/authorizers`, `GET|PUT|DELETE /_nimbus/authorizers/{name}`: JWT
//!   and Lambda authorizers (`{"type": "jwt", "jwt": {…}}` or `{"type": "lambda",
//!   "lambda": {…}}`); PUT → 201 new / 200 replaced; DELETE → 204, 409 while a
//!   route uses it. JWT secrets never leave the server.
//! * `GET /_nimbus/usage-plans`, `GET|PUT|DELETE /_nimbus/usage-plans/{name}`:
//!   `{"throttle": {"rate", "burst"}, "quota": {"limit", "period": DAY|WEEK|MONTH}}`;
//!   DELETE → 409 while keys belong to the plan.
//! * `GET /_nimbus/api-keys` (values only with `?include_values=true`),
//!   `POST /_nimbus/api-keys` `{"name", "plan"?, "value"?, "enabled"?}` → 201 with the
//!   value, `GET|PATCH|DELETE /_nimbus/api-keys/{id or name}`,
//!   `GET /_nimbus/api-keys/{id or name}/usage` (the quota period's count).
//!
//! Routes refer to authorizers and ask for API keys and throttling through
//! `PUT /_nimbus/routes` ([`route_access`]).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_gateway::auth::keys::KeySpec;
use nimbus_gateway::auth::{ApiKey, AuthError, Authorizer, AuthorizerKind, UsagePlan};
use nimbus_gateway::{Route, RouteTable};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_nimbus/authorizers", get(list_authorizers))
        .route(
            "/_nimbus/authorizers/{name}",
            get(get_authorizer)
                .put(put_authorizer)
                .delete(delete_authorizer),
        )
        .route("/_nimbus/usage-plans", get(list_plans))
        .route(
            "/_nimbus/usage-plans/{name}",
            get(get_plan).put(put_plan).delete(delete_plan),
        )
        .route("/_nimbus/api-keys", get(list_keys).post(create_key))
        .route(
            "/_nimbus/api-keys/{key}",
            get(get_key).patch(update_key).delete(delete_key),
        )
        .route("/_nimbus/api-keys/{key}/usage", get(key_usage))
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(m) => ApiError::invalid_parameter(m),
            AuthError::NotFound(m) => ApiError::not_found(m),
            AuthError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "ResourceConflictException", m)
            }
            AuthError::Store(_) => ApiError::service(e.to_string()),
        }
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_content(format!("Could not parse request body into json: {e}"))
    })
}

fn created_or_ok(created: bool, v: Value) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(v)).into_response()
}

/// Give a route its authorizer (`NAME`, `jwt:NAME` or `lambda:NAME`) and check its
/// access-control settings against the definitions.
pub(crate) fn route_access(
    table: &RouteTable,
    mut route: Route,
    authorizer: Option<&str>,
) -> Result<Route, ApiError> {
    let mut expected = None;
    if let Some(spec) = authorizer.map(str::trim).filter(|s| !s.is_empty()) {
        let name = match spec.split_once(':') {
            Some(("jwt", n)) => {
                expected = Some(AuthorizerKind::Jwt);
                n
            }
            Some(("lambda", n)) => {
                expected = Some(AuthorizerKind::Lambda);
                n
            }
            Some(_) => {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid authorizer {spec:?}: NAME, jwt:NAME or lambda:NAME"
                )))
            }
            None => spec,
        };
        route.authorizer = Some(name.to_string());
    }
    table.auth().check_route(&route, expected)?;
    Ok(route)
}

// -- authorizers ------------------------------------------------------------

fn authorizer_view(a: &Authorizer) -> Value {
    let mut v = serde_json::to_value(a).expect("an authorizer serialises");
    if let Some(j) = v.get_mut("jwt").and_then(Value::as_object_mut) {
        if j.contains_key("secret") {
            j.insert("secret".into(), json!("(set)"));
        }
    }
    v
}

async fn list_authorizers(Extension(table): Extension<RouteTable>) -> Json<Value> {
    let all: Vec<Value> = table
        .auth()
        .authorizers()
        .iter()
        .map(|a| authorizer_view(a))
        .collect();
    Json(json!({ "authorizers": all }))
}

async fn get_authorizer(
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = table
        .auth()
        .authorizer(&name)
        .ok_or_else(|| ApiError::not_found(format!("Authorizer not found: {name}")))?;
    Ok(Json(authorizer_view(&a)))
}

async fn put_authorizer(
    State(state): State<AppState>,
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut v: Value = parse_body(&body)?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| ApiError::invalid_content("The authorizer must be a JSON object"))?;
    match o.get("name") {
        None => {
            o.insert("name".into(), json!(name));
        }
        Some(n) if n.as_str() == Some(name.as_str()) => {}
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "The body's name differs from the URL's",
            ))
        }
    }
    let a: Authorizer = serde_json::from_value(v)
        .map_err(|e| ApiError::invalid_parameter(format!("Invalid authorizer: {e}")))?;
    let (a, created) = table.auth().put_authorizer(a, &state.invoker).await?;
    Ok(created_or_ok(created, authorizer_view(&a)))
}

async fn delete_authorizer(
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let in_use: Vec<String> = table
        .list()
        .await
        .iter()
        .filter(|r| r.authorizer.as_deref() == Some(name.as_str()))
        .map(|r| r.route_key.to_string())
        .collect();
    table.auth().delete_authorizer(&name, &in_use).await?;
    Ok(StatusCode::NO_CONTENT)
}

// -- usage plans -------------------------------------------------------------

fn plan_view(table: &RouteTable, p: &UsagePlan) -> Value {
    let mut v = serde_json::to_value(p).expect("a plan serialises");
    let keys: Vec<String> = table
        .auth()
        .keys()
        .iter()
        .filter(|k| k.plan.as_deref() == Some(p.name.as_str()))
        .map(|k| k.id.clone())
        .collect();
    v["api_keys"] = json!(keys);
    v
}

async fn list_plans(Extension(table): Extension<RouteTable>) -> Json<Value> {
    let all: Vec<Value> = table
        .auth()
        .plans()
        .iter()
        .map(|p| plan_view(&table, p))
        .collect();
    Json(json!({ "usage_plans": all }))
}

async fn get_plan(
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = table
        .auth()
        .plan(&name)
        .ok_or_else(|| ApiError::not_found(format!("Usage plan not found: {name}")))?;
    Ok(Json(plan_view(&table, &p)))
}

async fn put_plan(
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut v: Value = parse_body(&body)?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| ApiError::invalid_content("The usage plan must be a JSON object"))?;
    if o.get("name")
        .is_some_and(|n| n.as_str() != Some(name.as_str()))
    {
        return Err(ApiError::invalid_parameter(
            "The body's name differs from the URL's",
        ));
    }
    o.insert("name".into(), json!(name));
    let p: UsagePlan = serde_json::from_value(v)
        .map_err(|e| ApiError::invalid_parameter(format!("Invalid usage plan: {e}")))?;
    let (p, created) = table.auth().put_plan(p).await?;
    Ok(created_or_ok(created, plan_view(&table, &p)))
}

async fn delete_plan(
    Extension(table): Extension<RouteTable>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    table.auth().delete_plan(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// -- API keys ----------------------------------------------------------------

fn key_view(k: &ApiKey, with_value: bool) -> Value {
    let mut v = serde_json::to_value(k).expect("a key serialises");
    if !with_value {
        if let Some(o) = v.as_object_mut() {
            o.remove("value");
        }
    }
    v
}

#[derive(Debug, Deserialize)]
struct ListKeys {
    #[serde(default)]
    include_values: bool,
}

async fn list_keys(
    Extension(table): Extension<RouteTable>,
    Query(q): Query<ListKeys>,
) -> Json<Value> {
    let all: Vec<Value> = table
        .auth()
        .keys()
        .iter()
        .map(|k| key_view(k, q.include_values))
        .collect();
    Json(json!({ "api_keys": all }))
}

async fn create_key(
    Extension(table): Extension<RouteTable>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let spec: KeySpec = parse_body(&body)?;
    let k = table.auth().create_key(spec).await?;
    Ok((StatusCode::CREATED, Json(key_view(&k, true))).into_response())
}

async fn get_key(
    Extension(table): Extension<RouteTable>,
    Path(key): Path<String>,
    Query(q): Query<ListKeys>,
) -> Result<Json<Value>, ApiError> {
    let k = table.auth().key(&key)?;
    Ok(Json(key_view(&k, q.include_values)))
}

async fn update_key(
    Extension(table): Extension<RouteTable>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let spec: KeySpec = parse_body(&body)?;
    let k = table.auth().update_key(&key, spec).await?;
    Ok(Json(key_view(&k, false)))
}

async fn delete_key(
    Extension(table): Extension<RouteTable>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    table.auth().delete_key(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn key_usage(
    Extension(table): Extension<RouteTable>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let u = table.auth().key_usage(&key)?;
    Ok(Json(serde_json::to_value(u).expect("usage serialises")))
}

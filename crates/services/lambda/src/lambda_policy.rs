//! Resource-based policies of functions (REST-JSON): AddPermission, GetPolicy,
//! RemovePermission — stored and returned as Lambda does, by function and
//! qualifier (`nimbus_invoker::policy`).

use crate::error::ApiError;
use crate::lambda::split_function_name;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use nimbus_invoker::policy::Permission;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2015-03-31/functions/{name}/policy",
            post(add_permission).get(get_policy),
        )
        .route(
            "/2015-03-31/functions/{name}/policy/{sid}",
            delete(remove_permission),
        )
}

#[derive(Debug, Deserialize)]
struct PolicyQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "RevisionId")]
    revision_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddPermissionBody {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    source_arn: Option<String>,
    source_account: Option<String>,
    event_source_token: Option<String>,
    revision_id: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    principal_org_id: Option<String>,
    function_url_auth_type: Option<String>,
}

/// The function and qualifier a request names: the qualifier of a qualified ARN
/// or `name:qualifier`, else the `Qualifier` query parameter, else none (`""`).
fn target(raw: &str, query: Option<String>) -> Result<(String, String), ApiError> {
    let (name, qualifier) = split_function_name(raw, query);
    let qualifier = qualifier.unwrap_or_default();
    if qualifier == "$LATEST" {
        return Err(ApiError::invalid_parameter(
            "We currently do not support adding policies for $LATEST.",
        ));
    }
    Ok((name, qualifier))
}

fn required(v: Option<String>, member: &str) -> Result<String, ApiError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    })
}

async fn add_permission(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PolicyQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: AddPermissionBody = crate::lambda_functions::parse(&body)?;
    let (function, qualifier) = target(&name, q.qualifier)?;
    let perm = Permission {
        statement_id: required(b.statement_id, "statementId")?,
        action: required(b.action, "action")?,
        principal: required(b.principal, "principal")?,
        source_arn: b.source_arn,
        source_account: b.source_account,
        event_source_token: b.event_source_token,
        principal_org_id: b.principal_org_id,
        function_url_auth_type: b.function_url_auth_type,
    };
    if let Some(t) = &perm.function_url_auth_type {
        if t != "NONE" && t != "AWS_IAM" {
            return Err(ApiError::invalid_parameter(format!(
                "1 validation error detected: Value '{t}' at 'functionUrlAuthType' failed to satisfy constraint: Member must satisfy enum value set: [AWS_IAM, NONE]"
            )));
        }
    }
    let resource = nimbus_core::function_arn(
        &st.region(),
        &function,
        (!qualifier.is_empty()).then_some(qualifier.as_str()),
    );
    let statement = st
        .invoker
        .add_permission(
            &function,
            &qualifier,
            &resource,
            &perm,
            b.revision_id.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Statement": statement.to_string() })),
    )
        .into_response())
}

async fn get_policy(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PolicyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (function, qualifier) = target(&name, q.qualifier)?;
    let policy = st.invoker.get_policy(&function, &qualifier)?;
    Ok(Json(json!({
        "Policy": policy.document(),
        "RevisionId": policy.revision_id,
    })))
}

async fn remove_permission(
    State(st): State<AppState>,
    Path((name, sid)): Path<(String, String)>,
    Query(q): Query<PolicyQuery>,
) -> Result<StatusCode, ApiError> {
    let (function, qualifier) = target(&name, q.qualifier)?;
    st.invoker
        .remove_permission(&function, &qualifier, &sid, q.revision_id.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

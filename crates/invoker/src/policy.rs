//! Resource-based policies of functions (Lambda's `AddPermission`,
//! `RemovePermission`, `GetPolicy`): one policy document per function and
//! qualifier, stored with the function's other objects (kind `policy`) and kept in
//! memory. Stored and returned now; the least-privilege work consults them when a
//! service invokes a function.

use crate::versions::KIND_POLICY;
use crate::{InvokeError, Invoker, Result};
use nimbus_store::FunctionObject;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Lambda's limit on a function's policy document.
pub const POLICY_MAX_BYTES: usize = 20 * 1024;

/// One function's (or one qualifier's) policy document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourcePolicy {
    /// The statements, each a JSON object in IAM's policy grammar.
    pub statements: Vec<Value>,
    pub revision_id: String,
}

impl ResourcePolicy {
    /// The policy document as Lambda returns it from `GetPolicy` (a JSON text).
    pub fn document(&self) -> String {
        json!({"Version": "2012-10-17", "Id": "default", "Statement": self.statements}).to_string()
    }
}

/// What `AddPermission` asks for.
#[derive(Debug, Clone, Default)]
pub struct Permission {
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    pub event_source_token: Option<String>,
    pub principal_org_id: Option<String>,
    pub function_url_auth_type: Option<String>,
}

fn invalid(m: impl Into<String>) -> InvokeError {
    InvokeError::InvalidParameter(m.into())
}

impl Permission {
    /// The IAM statement Lambda writes for this permission on `resource_arn`.
    pub fn statement(&self, resource_arn: &str) -> Result<Value> {
        let sid_ok = !self.statement_id.is_empty()
            && self.statement_id.len() <= 100
            && self
                .statement_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !sid_ok {
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)",
                self.statement_id
            )));
        }
        let action_ok = self.action == "*"
            || self.action == "lambda:*"
            || self
                .action
                .strip_prefix("lambda:")
                .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphabetic()));
        if !action_ok {
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])",
                self.action
            )));
        }
        let p = self.principal.trim();
        let principal = if p == "*" {
            json!("*")
        } else if p.ends_with(".amazonaws.com") || p.ends_with(".amazonaws.com.cn") {
            json!({"Service": p})
        } else if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
            json!({"AWS": format!("arn:aws:iam::{p}:root")})
        } else if p.starts_with("arn:aws:iam::") || p.starts_with("arn:aws:sts::") {
            json!({"AWS": p})
        } else {
            return Err(invalid(format!(
                "The provided principal was invalid. Please check the principal and try again. ({p})"
            )));
        };
        let mut conditions: Map<String, Value> = Map::new();
        let mut add = |op: &str, key: &str, value: &Option<String>| {
            if let Some(v) = value {
                conditions
                    .entry(op.to_string())
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("an object")
                    .insert(key.to_string(), json!(v));
            }
        };
        add("StringEquals", "AWS:SourceAccount", &self.source_account);
        add(
            "StringEquals",
            "lambda:EventSourceToken",
            &self.event_source_token,
        );
        add("StringEquals", "aws:PrincipalOrgID", &self.principal_org_id);
        add(
            "StringEquals",
            "lambda:FunctionUrlAuthType",
            &self.function_url_auth_type,
        );
        add("ArnLike", "AWS:SourceArn", &self.source_arn);
        let mut st = json!({
            "Sid": self.statement_id,
            "Effect": "Allow",
            "Principal": principal,
            "Action": self.action,
            "Resource": resource_arn,
        });
        if !conditions.is_empty() {
            st["Condition"] = Value::Object(conditions);
        }
        Ok(st)
    }
}

impl Invoker {
    fn check_policy_target(&self, function: &str, qualifier: &str) -> Result<()> {
        if self.get(function).is_none() {
            return Err(InvokeError::NotFound(function.to_string()));
        }
        if !qualifier.is_empty() && !self.qualifier_exists(function, Some(qualifier)) {
            return Err(InvokeError::NotFound(format!("{function}:{qualifier}")));
        }
        Ok(())
    }

    /// The policy of a function (`qualifier` `""`) or of one version or alias.
    pub fn get_policy(&self, function: &str, qualifier: &str) -> Result<ResourcePolicy> {
        self.check_policy_target(function, qualifier)?;
        self.with_versions(function, |v| v.policies.get(qualifier).cloned())
            .filter(|p| !p.statements.is_empty())
            .ok_or_else(|| InvokeError::Missing {
                code: "ResourceNotFoundException",
                message: "The resource you requested does not exist.".into(),
            })
    }

    /// Add one statement; returns it. `revision_id`, when given, must be the
    /// policy's current one.
    pub async fn add_permission(
        &self,
        function: &str,
        qualifier: &str,
        resource_arn: &str,
        perm: &Permission,
        revision_id: Option<&str>,
    ) -> Result<Value> {
        self.check_policy_target(function, qualifier)?;
        let statement = perm.statement(resource_arn)?;
        let _guard = self.inner.deploy_lock.lock().await;
        let mut policy = self
            .with_versions(function, |v| v.policies.get(qualifier).cloned())
            .unwrap_or_default();
        if let Some(r) = revision_id {
            if !policy.revision_id.is_empty() && r != policy.revision_id {
                return Err(InvokeError::PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id".into(),
                ));
            }
        }
        if policy
            .statements
            .iter()
            .any(|s| s["Sid"] == perm.statement_id.as_str())
        {
            return Err(InvokeError::Conflict(format!(
                "The statement id ({}) provided already exists. Please provide a new statement id, or remove the existing statement.",
                perm.statement_id
            )));
        }
        policy.statements.push(statement.clone());
        if policy.document().len() > POLICY_MAX_BYTES {
            return Err(InvokeError::Missing {
                code: "PolicyLengthExceededException",
                message: "The final policy size is bigger than the limit.".into(),
            });
        }
        policy.revision_id = uuid::Uuid::new_v4().to_string();
        self.store_policy(function, qualifier, policy).await?;
        Ok(statement)
    }

    /// Remove one statement by id.
    pub async fn remove_permission(
        &self,
        function: &str,
        qualifier: &str,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<()> {
        self.check_policy_target(function, qualifier)?;
        let _guard = self.inner.deploy_lock.lock().await;
        let mut policy = self
            .with_versions(function, |v| v.policies.get(qualifier).cloned())
            .unwrap_or_default();
        if let Some(r) = revision_id {
            if r != policy.revision_id {
                return Err(InvokeError::PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id".into(),
                ));
            }
        }
        let before = policy.statements.len();
        policy.statements.retain(|s| s["Sid"] != statement_id);
        if policy.statements.len() == before {
            return Err(InvokeError::Missing {
                code: "ResourceNotFoundException",
                message: format!("Statement {statement_id} is not found in resource policy."),
            });
        }
        policy.revision_id = uuid::Uuid::new_v4().to_string();
        self.store_policy(function, qualifier, policy).await
    }

    async fn store_policy(
        &self,
        function: &str,
        qualifier: &str,
        policy: ResourcePolicy,
    ) -> Result<()> {
        let value = (!policy.statements.is_empty())
            .then(|| serde_json::to_string(&policy).expect("a policy serialises"));
        self.write(vec![FunctionObject {
            function: function.to_string(),
            kind: KIND_POLICY.to_string(),
            key: qualifier.to_string(),
            value,
        }])
        .await?;
        self.with_versions(function, |v| {
            if policy.statements.is_empty() {
                v.policies.remove(qualifier);
            } else {
                v.policies.insert(qualifier.to_string(), policy);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(principal: &str) -> Permission {
        Permission {
            statement_id: "s3-invoke".into(),
            action: "lambda:InvokeFunction".into(),
            principal: principal.into(),
            source_arn: Some("arn:aws:s3:::uploads".into()),
            source_account: Some("123456789012".into()),
            ..Default::default()
        }
    }

    #[test]
    fn statements_have_lambdas_shape() {
        let st = perm("s3.amazonaws.com")
            .statement("arn:aws:lambda:us-east-1:123456789012:function:f")
            .unwrap();
        assert_eq!(
            st,
            json!({
                "Sid": "s3-invoke", "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
                "Condition": {
                    "StringEquals": {"AWS:SourceAccount": "123456789012"},
                    "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::uploads"}
                }
            })
        );
        let st = perm("210987654321").statement("r").unwrap();
        assert_eq!(
            st["Principal"],
            json!({"AWS": "arn:aws:iam::210987654321:root"})
        );
        assert_eq!(perm("*").statement("r").unwrap()["Principal"], "*");
    }

    #[test]
    fn bad_input_is_refused_with_lambdas_messages() {
        let mut p = perm("s3.amazonaws.com");
        p.statement_id = "no spaces".into();
        assert!(p
            .statement("r")
            .unwrap_err()
            .to_string()
            .contains("statementId"));
        let mut p = perm("s3.amazonaws.com");
        p.action = "s3:GetObject".into();
        assert!(p
            .statement("r")
            .unwrap_err()
            .to_string()
            .contains("'action'"));
        assert!(perm("somebody").statement("r").is_err());
    }
}

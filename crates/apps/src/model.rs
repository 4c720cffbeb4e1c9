//! The engine's records: a resource as applied, a journaled step, a plan.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A resource as it exists (one row of `resources`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRow {
    pub logical_id: String,
    /// `AWS::SQS::Queue`, …
    pub kind: String,
    /// The service's id of it (queue URL, topic ARN, bucket name, mapping UUID…).
    pub physical_id: String,
    /// What `Ref` returns.
    pub ref_value: Value,
    /// What `Fn::GetAtt` reads.
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// The properties it was applied with, intrinsics evaluated (a generated name
    /// included under the type's name property).
    pub properties: Value,
    /// The name the engine generated (`None`: the template named it, or the type
    /// has no name).
    #[serde(default)]
    pub generated_name: Option<String>,
    #[serde(default)]
    pub deletion_policy: Option<String>,
    #[serde(default)]
    pub update_replace_policy: Option<String>,
    /// The logical ids it depends on (deletion runs in reverse).
    #[serde(default)]
    pub depends_on: Vec<String>,
}

impl ResourceRow {
    /// Whether deleting the resource (dropped from the template, or the app
    /// removed) keeps it: `Retain`, and `RetainExceptOnCreate` (a rollback of
    /// its own create deletes it: undos never consult the policy).
    pub fn retained(&self) -> bool {
        matches!(
            self.deletion_policy.as_deref(),
            Some("Retain" | "RetainExceptOnCreate")
        )
    }
}

/// One journaled step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub seq: i64,
    pub logical_id: String,
    /// `create`, `update`, `replace`, `delete`.
    pub action: String,
    /// `started`, `done`, `failed`, `undone`, `undo_failed`.
    pub state: String,
    /// The row before (none for a create).
    pub before: Option<ResourceRow>,
    /// The row intended (the planned physical name and properties; once done, the
    /// row as created).
    pub after: Option<ResourceRow>,
    pub error: Option<String>,
}

/// What a change does to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    Keep,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Keep => "keep",
        }
    }
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedChange {
    pub logical_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: Action,
    /// The current physical id, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    /// Why (which properties changed, "depends on a new value", "retained").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

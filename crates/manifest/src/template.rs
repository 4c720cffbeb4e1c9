//! The CloudFormation-shaped part of an app: every resource that is not one of the
//! app's functions (queues, topics, buckets, tables, streams, buses, rules, secrets,
//! parameters, mail identities, event-source mappings, permissions, roles…), and
//! the resources the manifests' `events:` generate, as the Serverless Framework and
//! the SAM transform generate them for CloudFormation.
//!
//! Both manifest formats compile to one [`Template`]; the server's app engine
//! (`nimbus-apps`) resolves its intrinsic functions against live physical ids and
//! attributes and applies it as one journaled change. Property values keep their
//! intrinsics unevaluated, in CloudFormation's JSON form (`{"Ref": "Queue"}`,
//! `{"Fn::GetAtt": ["Queue", "Arn"]}`, `{"Fn::Sub": "…"}`, …): attributes such as
//! `QueueUrl` or `StreamArn` exist only once a resource does.
//!
//! The template is JSON on the wire (the CLI posts it to the server), with
//! CloudFormation's own key names.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An app's resources, outputs and the facts its intrinsics need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Template {
    /// Logical id → resource.
    #[serde(default)]
    pub resources: BTreeMap<String, Resource>,
    /// Logical id → output (`Outputs`, with an optional `Export`).
    #[serde(default)]
    pub outputs: BTreeMap<String, Output>,
    /// Condition name → its expression (`Fn::Equals`, `Fn::And`, …; unevaluated).
    #[serde(default)]
    pub conditions: BTreeMap<String, serde_json::Value>,
    /// Parameter name → resolved value (defaults and `--parameter-overrides`
    /// applied); `Ref` to a parameter reads it.
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The app's functions by logical id (SAM: the resource's logical id;
    /// serverless.yml: `<Normalized>LambdaFunction`, as the Framework names them) →
    /// the deployed function name, so `Ref`/`Fn::GetAtt [X, Arn]` on a function
    /// resolve to the function the app deploys.
    #[serde(default)]
    pub functions: BTreeMap<String, String>,
    /// Environment variables of the app's functions whose values need a resource
    /// (`!Ref Table`, `!GetAtt Queue.QueueUrl`, `${Bucket}` in a `!Sub`): function
    /// logical id → variable → value, intrinsics unevaluated. The engine resolves
    /// them once the resources exist and sets them on the function with the rest
    /// of its environment (which the app's `Function` carries without them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub function_environment: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// What the app set on the gateway (`{"Cors": …, "Authorizers": [names]}`),
    /// recorded with the template so a later deploy or `app rm` knows what the
    /// app owns there. The CLI applies these settings; the engine only keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<serde_json::Value>,
    /// The execution role of the app's functions whose role the app declares
    /// (the generated `IamRoleLambdaExecution`, SAM's `<Function>Role`, a SAM
    /// `Role`): function logical id → role ARN, intrinsics unevaluated. The
    /// engine sets it on the function once the role exists, so the function's
    /// calls are authorised against exactly that role's policies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub function_roles: BTreeMap<String, serde_json::Value>,
}

/// One resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    /// `AWS::SQS::Queue`, `AWS::Lambda::EventSourceMapping`, …
    #[serde(rename = "Type")]
    pub kind: String,
    /// CloudFormation's properties, intrinsics unevaluated.
    #[serde(default)]
    pub properties: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// `Retain`, `Delete` (the default) or `Snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_replace_policy: Option<String>,
    /// The name of a condition in [`Template::conditions`] gating this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Where the manifest declares it (`serverless.yml:42`), for messages; for a
    /// resource generated from an event, the event's line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    pub value: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Export.Name`, intrinsics unevaluated; other apps read it with `Fn::ImportValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl Template {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.outputs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_cloudformation_key_names() {
        let json = serde_json::json!({
            "Resources": {
                "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 60},
                          "DeletionPolicy": "Retain"},
                "Map": {"Type": "AWS::Lambda::EventSourceMapping", "DependsOn": ["Queue"],
                        "Properties": {"EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]},
                                       "FunctionName": {"Ref": "WorkerLambdaFunction"}}}
            },
            "Outputs": {"QueueUrl": {"Value": {"Ref": "Queue"}, "Export": {"Name": "q-url"}}},
            "Functions": {"WorkerLambdaFunction": "app-dev-worker"}
        });
        let t: Template = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(t.resources["Queue"].kind, "AWS::SQS::Queue");
        assert_eq!(
            t.resources["Queue"].deletion_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(t.resources["Map"].depends_on, vec!["Queue".to_string()]);
        assert_eq!(t.functions["WorkerLambdaFunction"], "app-dev-worker");
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(
            back["Resources"]["Map"]["Properties"],
            json["Resources"]["Map"]["Properties"]
        );
        assert_eq!(
            back["Outputs"]["QueueUrl"]["Export"],
            json["Outputs"]["QueueUrl"]["Export"]
        );
    }
}

//! Resource providers, one module per service: each creates, updates and deletes
//! its CloudFormation types through the service's public operations
//! ([`crate::services::Services`]) and says what `Ref` and `Fn::GetAtt` return.
//!
//! Every delete treats "not found" as done, and every create of a named resource
//! refuses a name that already exists, so the journal can replay an undo or a
//! cleanup after a crash and never deletes what the app did not create.

mod dynamodb;
mod events;
mod iam;
mod kinesis;
mod lambda;
mod s3;
mod secrets;
mod sns;
mod sqs;

use crate::model::ResourceRow;
use crate::services::{CallError, Services};
use serde_json::{Map, Value};

/// Why a provider could not do its part.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{0}")]
    Invalid(String),
    /// A named create refused because the name is taken: nothing was made, so
    /// a rollback must not delete what has that name.
    #[error("{0}")]
    Exists(String),
}

pub type R<T> = Result<T, ProviderError>;

pub(crate) fn invalid<T>(m: impl Into<String>) -> R<T> {
    Err(ProviderError::Invalid(m.into()))
}

pub(crate) fn exists<T>(m: impl Into<String>) -> R<T> {
    Err(ProviderError::Exists(m.into()))
}

/// What a create or update leaves.
#[derive(Debug, Clone, Default)]
pub struct Made {
    pub physical_id: String,
    pub ref_value: Value,
    pub attributes: Map<String, Value>,
}

/// What providers work with.
pub struct Cx<'a> {
    pub services: &'a Services,
    pub app: &'a str,
    /// The app engine's store.
    pub store: &'a crate::store::Store,
}

impl Cx<'_> {
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.services.region, self.services.account_id
        )
    }
}

/// The types the engine applies.
pub const SUPPORTED: &[&str] = &[
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Topic",
    "AWS::SNS::Subscription",
    "AWS::SNS::TopicPolicy",
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "Custom::S3",
    "AWS::DynamoDB::Table",
    "AWS::Kinesis::Stream",
    "AWS::Events::EventBus",
    "AWS::Events::Rule",
    "AWS::SecretsManager::Secret",
    "AWS::SSM::Parameter",
    "AWS::SES::EmailIdentity",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Lambda::Permission",
    "AWS::Lambda::Url",
    "AWS::Lambda::EventInvokeConfig",
    "Nimbus::Lambda::DeadLetterConfig",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
];

pub fn supported(kind: &str) -> bool {
    SUPPORTED.contains(&kind)
}

/// What the providers do with property `prop` of `kind`: the properties each
/// provider applies, those accepted without effect on one self-hosted node,
/// and the rest (reported by the CLI as not supported yet, so a strict deploy
/// never silently drops a setting). IAM types are applied whole.
pub fn property_support(kind: &str, prop: &str) -> nimbus_manifest::PropertySupport {
    use nimbus_manifest::PropertySupport::*;
    let (applied, no_effect): (&[&str], &[&str]) = match kind {
        "AWS::SQS::Queue" => (
            &[
                "QueueName",
                "FifoQueue",
                "Tags",
                "DelaySeconds",
                "MaximumMessageSize",
                "MessageRetentionPeriod",
                "ReceiveMessageWaitTimeSeconds",
                "VisibilityTimeout",
                "RedrivePolicy",
                "RedriveAllowPolicy",
                "KmsMasterKeyId",
                "KmsDataKeyReusePeriodSeconds",
                "SqsManagedSseEnabled",
                "ContentBasedDeduplication",
                "DeduplicationScope",
                "FifoThroughputLimit",
            ],
            &[],
        ),
        "AWS::SQS::QueuePolicy" => (&["Queues", "PolicyDocument"], &[]),
        "AWS::SNS::Topic" => (
            &[
                "TopicName",
                "FifoTopic",
                "Tags",
                "Subscription",
                "DisplayName",
                "KmsMasterKeyId",
                "ContentBasedDeduplication",
                "SignatureVersion",
                "TracingConfig",
            ],
            &[
                "ArchivePolicy",
                "DataProtectionPolicy",
                "DeliveryStatusLogging",
            ],
        ),
        "AWS::SNS::Subscription" => (
            &[
                "TopicArn",
                "Protocol",
                "Endpoint",
                "FilterPolicy",
                "FilterPolicyScope",
                "RawMessageDelivery",
                "RedrivePolicy",
                "DeliveryPolicy",
                "SubscriptionRoleArn",
            ],
            &["Region", "ReplayPolicy"],
        ),
        "AWS::SNS::TopicPolicy" => (&["Topics", "PolicyDocument"], &[]),
        "AWS::S3::Bucket" => (
            &[
                "BucketName",
                "VersioningConfiguration",
                "CorsConfiguration",
                "LifecycleConfiguration",
                "Tags",
                "NotificationConfiguration",
            ],
            &[
                "BucketEncryption",
                "PublicAccessBlockConfiguration",
                "OwnershipControls",
                "AccessControl",
                "MetricsConfigurations",
                "IntelligentTieringConfigurations",
                "AccelerateConfiguration",
            ],
        ),
        "AWS::S3::BucketPolicy" => (&["Bucket", "PolicyDocument"], &[]),
        "Custom::S3" => (&["FunctionName", "BucketName", "BucketConfigs"], &[]),
        "AWS::DynamoDB::Table" => (
            &[
                "TableName",
                "AttributeDefinitions",
                "KeySchema",
                "GlobalSecondaryIndexes",
                "LocalSecondaryIndexes",
                "BillingMode",
                "ProvisionedThroughput",
                "TableClass",
                "DeletionProtectionEnabled",
                "StreamSpecification",
                "SSESpecification",
                "Tags",
                "TimeToLiveSpecification",
            ],
            &[
                "PointInTimeRecoverySpecification",
                "ContributorInsightsSpecification",
                "OnDemandThroughput",
                "WarmThroughput",
            ],
        ),
        "AWS::Kinesis::Stream" => (
            &[
                "Name",
                "ShardCount",
                "RetentionPeriodHours",
                "StreamModeDetails",
                "Tags",
            ],
            &["StreamEncryption"],
        ),
        "AWS::Events::EventBus" => (
            &[
                "Name",
                "EventSourceName",
                "Description",
                "KmsKeyIdentifier",
                "DeadLetterConfig",
                "Tags",
            ],
            &[],
        ),
        "AWS::Events::Rule" => (
            &[
                "Name",
                "EventBusName",
                "EventPattern",
                "ScheduleExpression",
                "Description",
                "RoleArn",
                "State",
                "Targets",
            ],
            &[],
        ),
        "AWS::SecretsManager::Secret" => (
            &[
                "Name",
                "Description",
                "KmsKeyId",
                "SecretString",
                "GenerateSecretString",
                "Tags",
            ],
            &[],
        ),
        "AWS::SSM::Parameter" => (
            &[
                "Name",
                "Type",
                "Value",
                "Description",
                "AllowedPattern",
                "Tier",
                "DataType",
                "Policies",
                "Tags",
            ],
            &[],
        ),
        "AWS::SES::EmailIdentity" => (
            &["EmailIdentity"],
            &[
                "DkimAttributes",
                "DkimSigningAttributes",
                "FeedbackAttributes",
                "MailFromAttributes",
                "ConfigurationSetAttributes",
            ],
        ),
        "AWS::Lambda::EventSourceMapping" => (
            lambda::MAPPING_FIELDS,
            &["KmsKeyArn", "MetricsConfig", "Tags"],
        ),
        "AWS::Lambda::Permission" => (
            &[
                "FunctionName",
                "Action",
                "Principal",
                "SourceArn",
                "SourceAccount",
                "EventSourceToken",
                "FunctionUrlAuthType",
                "PrincipalOrgID",
            ],
            &[],
        ),
        "AWS::Lambda::EventInvokeConfig" => (
            &[
                "FunctionName",
                "Qualifier",
                "MaximumRetryAttempts",
                "MaximumEventAgeInSeconds",
                "DestinationConfig",
            ],
            &[],
        ),
        "Nimbus::Lambda::DeadLetterConfig" => (&["FunctionName", "TargetArn"], &[]),
        "AWS::Lambda::Url" => (
            &[
                "TargetFunctionArn",
                "Qualifier",
                "AuthType",
                "Cors",
                "InvokeMode",
            ],
            &[],
        ),
        _ => return Applied,
    };
    if applied.contains(&prop) {
        Applied
    } else if no_effect.contains(&prop) {
        NoEffect
    } else {
        NotSupported
    }
}

/// Create `props` (intrinsics evaluated; a generated name already under the
/// type's name property).
pub async fn create(cx: &Cx<'_>, kind: &str, logical: &str, props: &Value) -> R<Made> {
    match kind {
        "AWS::SQS::Queue" => sqs::create_queue(cx, props).await,
        "AWS::SQS::QueuePolicy" => sqs::put_queue_policy(cx, logical, props, None).await,
        "AWS::SNS::Topic" => sns::create_topic(cx, props).await,
        "AWS::SNS::Subscription" => sns::subscribe(cx, props).await,
        "AWS::SNS::TopicPolicy" => sns::put_topic_policy(cx, logical, props, None).await,
        "AWS::S3::Bucket" => s3::create_bucket(cx, props).await,
        "AWS::S3::BucketPolicy" => s3::put_bucket_policy(cx, logical, props, None).await,
        "Custom::S3" => s3::put_custom_s3(cx, props).await,
        "AWS::DynamoDB::Table" => dynamodb::create_table(cx, props).await,
        "AWS::Kinesis::Stream" => kinesis::create_stream(cx, props).await,
        "AWS::Events::EventBus" => events::create_bus(cx, props).await,
        "AWS::Events::Rule" => events::create_rule(cx, props).await,
        "AWS::SecretsManager::Secret" => secrets::create_secret(cx, props).await,
        "AWS::SSM::Parameter" => secrets::put_parameter(cx, props).await,
        "AWS::SES::EmailIdentity" => secrets::create_identity(cx, props).await,
        "AWS::Lambda::EventSourceMapping" => lambda::create_mapping(cx, props).await,
        "AWS::Lambda::Permission" => lambda::add_permission(cx, logical, props).await,
        "AWS::Lambda::Url" => lambda::create_url(cx, props).await,
        "AWS::Lambda::EventInvokeConfig" => lambda::put_event_invoke(cx, props).await,
        "Nimbus::Lambda::DeadLetterConfig" => lambda::put_dead_letter(cx, props).await,
        "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
            iam::put(cx, kind, logical, props, None).await
        }
        other => invalid(format!("resource type {other} is not supported")),
    }
}

/// Update `row` in place to `props`.
pub async fn update(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    match row.kind.as_str() {
        "AWS::SQS::Queue" => sqs::update_queue(cx, row, props).await,
        "AWS::SQS::QueuePolicy" => {
            sqs::put_queue_policy(cx, &row.logical_id, props, Some(row)).await
        }
        "AWS::SNS::Topic" => sns::update_topic(cx, row, props).await,
        "AWS::SNS::Subscription" => sns::update_subscription(cx, row, props).await,
        "AWS::SNS::TopicPolicy" => {
            sns::put_topic_policy(cx, &row.logical_id, props, Some(row)).await
        }
        "AWS::S3::Bucket" => s3::update_bucket(cx, row, props).await,
        "Custom::S3" => s3::put_custom_s3(cx, props).await,
        "AWS::S3::BucketPolicy" => {
            s3::put_bucket_policy(cx, &row.logical_id, props, Some(row)).await
        }
        "AWS::DynamoDB::Table" => dynamodb::update_table(cx, row, props).await,
        "AWS::Kinesis::Stream" => kinesis::update_stream(cx, row, props).await,
        "AWS::Events::EventBus" => events::update_bus(cx, row, props).await,
        "AWS::Events::Rule" => events::update_rule(cx, row, props).await,
        "AWS::SecretsManager::Secret" => secrets::update_secret(cx, row, props).await,
        "AWS::SSM::Parameter" => secrets::update_parameter(cx, row, props).await,
        "AWS::SES::EmailIdentity" => secrets::update_identity(cx, row, props).await,
        "AWS::Lambda::EventSourceMapping" => lambda::update_mapping(cx, row, props).await,
        "AWS::Lambda::Url" => lambda::update_url(cx, row, props).await,
        "AWS::Lambda::EventInvokeConfig" => lambda::put_event_invoke(cx, props).await,
        "Nimbus::Lambda::DeadLetterConfig" => lambda::put_dead_letter(cx, props).await,
        "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
            iam::put(cx, &row.kind, &row.logical_id, props, Some(row)).await
        }
        other => invalid(format!("{other} cannot be updated in place")),
    }
}

/// Delete what `row` describes; gone already is success.
pub async fn delete(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let r = match row.kind.as_str() {
        "AWS::SQS::Queue" => sqs::delete_queue(cx, row).await,
        "AWS::SQS::QueuePolicy" => sqs::delete_queue_policy(cx, row).await,
        "AWS::SNS::Topic" => sns::delete_topic(cx, row).await,
        "AWS::SNS::Subscription" => sns::unsubscribe(cx, row).await,
        "AWS::SNS::TopicPolicy" => sns::delete_topic_policy(cx, row).await,
        "AWS::S3::Bucket" => s3::delete_bucket(cx, row).await,
        "AWS::S3::BucketPolicy" => s3::delete_bucket_policy(cx, row).await,
        "Custom::S3" => s3::delete_custom_s3(cx, row).await,
        "AWS::DynamoDB::Table" => dynamodb::delete_table(cx, row).await,
        "AWS::Kinesis::Stream" => kinesis::delete_stream(cx, row).await,
        "AWS::Events::EventBus" => events::delete_bus(cx, row).await,
        "AWS::Events::Rule" => events::delete_rule(cx, row).await,
        "AWS::SecretsManager::Secret" => secrets::delete_secret(cx, row).await,
        "AWS::SSM::Parameter" => secrets::delete_parameter(cx, row).await,
        "AWS::SES::EmailIdentity" => secrets::delete_identity(cx, row).await,
        "AWS::Lambda::EventSourceMapping" => lambda::delete_mapping(cx, row).await,
        "AWS::Lambda::Permission" => lambda::remove_permission(cx, row).await,
        "AWS::Lambda::Url" => lambda::delete_url(cx, row).await,
        "AWS::Lambda::EventInvokeConfig" => lambda::delete_event_invoke(cx, row).await,
        "Nimbus::Lambda::DeadLetterConfig" => lambda::delete_dead_letter(cx, row).await,
        "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
            iam::delete(cx, row).await
        }
        _ => Ok(()),
    };
    match r {
        Err(ProviderError::Call(e)) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// The pseudo-type of the journal steps that set a function's environment
/// from resources (`Template::function_environment`); such a step's rows hold
/// the function name as physical id and `{"Variables": {…}}` as properties.
pub const FUNCTION_ENVIRONMENT: &str = "Nimbus::Function::Environment";

/// A function's environment variables now.
pub async fn function_environment(cx: &Cx<'_>, function: &str) -> R<Map<String, Value>> {
    lambda::environment(cx, function).await
}

/// A function's environment variables and execution role ARN now.
pub async fn function_configuration(
    cx: &Cx<'_>,
    function: &str,
) -> R<(Map<String, Value>, Option<String>)> {
    lambda::configuration(cx, function).await
}

/// Set a function's whole environment and, when given, its execution role.
pub async fn set_function_configuration(
    cx: &Cx<'_>,
    function: &str,
    vars: &Map<String, Value>,
    role: Option<&str>,
) -> R<()> {
    lambda::set_configuration(cx, function, vars, role).await
}

/// Set a function's whole environment.
pub async fn set_function_environment(
    cx: &Cx<'_>,
    function: &str,
    vars: &Map<String, Value>,
) -> R<()> {
    lambda::set_environment(cx, function, vars).await
}

/// Undo a create that a crash may have interrupted before its physical id was
/// recorded: `planned` holds the name and properties it was started with.
pub async fn delete_planned(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    match planned.kind.as_str() {
        "AWS::Lambda::EventSourceMapping" => lambda::delete_planned_mapping(cx, planned).await,
        "AWS::SNS::Subscription" => sns::delete_planned_subscription(cx, planned).await,
        "AWS::SQS::Queue" => sqs::delete_planned_queue(cx, planned).await,
        _ if !planned.physical_id.is_empty() => delete(cx, planned).await,
        "AWS::S3::Bucket" => s3::delete_planned_bucket(cx, planned).await,
        "AWS::DynamoDB::Table" => dynamodb::delete_planned_table(cx, planned).await,
        "AWS::Kinesis::Stream" => kinesis::delete_planned_stream(cx, planned).await,
        "AWS::Events::Rule" => events::delete_planned_rule(cx, planned).await,
        "AWS::Events::EventBus" => {
            delete(
                cx,
                &ResourceRow {
                    physical_id: s(&planned.properties, "Name")
                        .unwrap_or_default()
                        .to_string(),
                    ..planned.clone()
                },
            )
            .await
        }
        "AWS::SecretsManager::Secret" => secrets::delete_planned_secret(cx, planned).await,
        "AWS::SSM::Parameter" => secrets::delete_planned_parameter(cx, planned).await,
        "AWS::SES::EmailIdentity" => secrets::delete_planned_identity(cx, planned).await,
        "AWS::IAM::Role" => iam::delete_planned(cx, planned).await,
        _ if planned.physical_id.is_empty() => Ok(()),
        _ => delete(cx, planned).await,
    }
}

/// Whether changing `old` to `new` replaces the resource (CloudFormation's
/// "Update requires: Replacement" properties).
pub fn replaces(kind: &str, old: &Value, new: &Value) -> bool {
    let changed = |keys: &[&str]| keys.iter().any(|k| old.get(*k) != new.get(*k));
    match kind {
        "AWS::SQS::Queue" => changed(&["QueueName", "FifoQueue"]),
        "AWS::SNS::Topic" => changed(&["TopicName", "FifoTopic"]),
        "AWS::SNS::Subscription" => changed(&["TopicArn", "Protocol", "Endpoint"]),
        "AWS::S3::Bucket" => changed(&["BucketName"]),
        "AWS::DynamoDB::Table" => {
            changed(&["TableName", "KeySchema", "LocalSecondaryIndexes"])
                || key_types_changed(old, new)
        }
        "AWS::Serverless::SimpleTable" => changed(&["TableName", "PrimaryKey"]),
        "AWS::Kinesis::Stream" => changed(&["Name"]),
        "AWS::Events::EventBus" => changed(&["Name", "EventSourceName"]),
        "AWS::Events::Rule" => changed(&["Name", "EventBusName"]),
        "AWS::SecretsManager::Secret" => changed(&["Name"]),
        "AWS::SSM::Parameter" => changed(&["Name"]),
        "AWS::SES::EmailIdentity" => changed(&["EmailIdentity"]),
        "AWS::Lambda::EventSourceMapping" => changed(&[
            "EventSourceArn",
            "StartingPosition",
            "StartingPositionTimestamp",
        ]),
        "AWS::Lambda::Permission" => true,
        "AWS::Lambda::Url" => changed(&["TargetFunctionArn", "Qualifier"]),
        "AWS::Lambda::EventInvokeConfig" => changed(&["FunctionName", "Qualifier"]),
        "Nimbus::Lambda::DeadLetterConfig" => changed(&["FunctionName"]),
        "AWS::IAM::Role" => changed(&["RoleName", "Path"]),
        "AWS::IAM::ManagedPolicy" => changed(&["ManagedPolicyName", "Path"]),
        "AWS::S3::BucketPolicy" => changed(&["Bucket"]),
        "Custom::S3" => changed(&["BucketName", "FunctionName"]),
        "AWS::SQS::QueuePolicy" | "AWS::SNS::TopicPolicy" | "AWS::IAM::Policy" => false,
        _ => true,
    }
}

/// A key attribute's type changing replaces a table too.
fn key_types_changed(old: &Value, new: &Value) -> bool {
    let keys = |v: &Value| -> Vec<(String, Value)> {
        let names: Vec<String> = v["KeySchema"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["AttributeName"].as_str().map(str::to_string))
            .collect();
        v["AttributeDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| names.iter().any(|n| d["AttributeName"] == n.as_str()))
            .map(|d| {
                (
                    d["AttributeName"].as_str().unwrap_or("").to_string(),
                    d["AttributeType"].clone(),
                )
            })
            .collect()
    };
    keys(old) != keys(new)
}

/// Whether the type holds user data that a replacement or deletion loses.
pub fn data_bearing(kind: &str) -> bool {
    matches!(
        kind,
        "AWS::SQS::Queue"
            | "AWS::S3::Bucket"
            | "AWS::DynamoDB::Table"
            | "AWS::Serverless::SimpleTable"
            | "AWS::Kinesis::Stream"
    )
}

/// Whether the resource holds data now (messages, objects, items, records).
pub async fn has_data(cx: &Cx<'_>, row: &ResourceRow) -> R<bool> {
    let r = match row.kind.as_str() {
        "AWS::SQS::Queue" => sqs::has_messages(cx, row).await,
        "AWS::S3::Bucket" => s3::has_objects(cx, row).await,
        "AWS::DynamoDB::Table" => dynamodb::has_items(cx, row).await,
        "AWS::Kinesis::Stream" => kinesis::has_records(cx, row).await,
        _ => Ok(false),
    };
    match r {
        Err(ProviderError::Call(e)) if e.is_not_found() => Ok(false),
        other => other,
    }
}

/// `[{Key, Value}]` (CloudFormation's tag list) → `{key: value}`.
pub(crate) fn tag_map(v: &Value) -> Map<String, Value> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t["Key"].as_str()?.to_string(),
                Value::String(scalar(&t["Value"])?),
            ))
        })
        .collect()
}

/// A scalar as the string AWS APIs take (`60` → `"60"`, `true` → `"true"`).
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A policy document as the JSON string the APIs take (CloudFormation lets a
/// template give it as an object or as a string).
pub(crate) fn policy_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn attrs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `props[key]` as a string.
pub(crate) fn s<'v>(props: &'v Value, key: &str) -> Option<&'v str> {
    props.get(key).and_then(|v| v.as_str())
}

/// The last `:`-separated part of an ARN (a queue's or topic's name).
pub(crate) fn arn_tail(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_manifest::PropertySupport::*;
    use serde_json::json;

    #[test]
    fn every_compiled_type_is_applied() {
        for t in nimbus_manifest::cfn::SUPPORTED_TYPES {
            assert!(supported(t), "{t}");
        }
        assert!(supported("Custom::S3"));
        assert!(!supported("AWS::ApiGateway::RestApi"));
    }

    #[test]
    fn properties_are_applied_accepted_or_reported() {
        assert_eq!(
            property_support("AWS::DynamoDB::Table", "StreamSpecification"),
            Applied
        );
        assert_eq!(
            property_support("AWS::DynamoDB::Table", "PointInTimeRecoverySpecification"),
            NoEffect
        );
        assert_eq!(
            property_support("AWS::DynamoDB::Table", "ImportSourceSpecification"),
            NotSupported
        );
        assert_eq!(
            property_support("AWS::S3::Bucket", "WebsiteConfiguration"),
            NotSupported
        );
        assert_eq!(
            property_support("AWS::S3::Bucket", "NotificationConfiguration"),
            Applied
        );
        // IAM documents are stored whole.
        assert_eq!(property_support("AWS::IAM::Role", "Anything"), Applied);
    }

    #[test]
    fn replacement_follows_cloudformation() {
        let t = |key: &str, ty: &str| {
            json!({"KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                   "AttributeDefinitions": [{"AttributeName": key, "AttributeType": ty}],
                   "BillingMode": "PAY_PER_REQUEST"})
        };
        assert!(!replaces("AWS::DynamoDB::Table", &t("id", "S"), &{
            let mut n = t("id", "S");
            n["StreamSpecification"] = json!({"StreamViewType": "NEW_IMAGE"});
            n
        }));
        assert!(replaces(
            "AWS::DynamoDB::Table",
            &t("id", "S"),
            &t("pk", "S")
        ));
        assert!(replaces(
            "AWS::DynamoDB::Table",
            &t("id", "S"),
            &t("id", "N")
        ));
        assert!(!replaces(
            "AWS::S3::Bucket",
            &json!({"BucketName": "b"}),
            &json!({"BucketName": "b", "Tags": []})
        ));
        assert!(replaces(
            "AWS::Events::Rule",
            &json!({"Name": "r", "EventBusName": "a"}),
            &json!({"Name": "r", "EventBusName": "b"})
        ));
        assert!(!replaces(
            "AWS::Events::Rule",
            &json!({"Name": "r", "State": "ENABLED"}),
            &json!({"Name": "r", "State": "DISABLED"})
        ));
    }
}

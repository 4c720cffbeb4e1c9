//! A SAM function's pull and push events, its `Policies`, and
//! `AWS::Serverless::SimpleTable`, compiled to the CloudFormation resources the
//! SAM transform generates (samtranslator's `model/eventsources/{pull,push}.py`,
//! `model/sam_resources.py`), with its logical ids: `<Function><Event>` for the
//! mapping, subscription or rule, `<Function><Event>Permission` for the
//! permission, `<Function>Role` for the role.

use crate::cfn::{self, to_cfn};
use crate::fields::fields;
use crate::template::{Resource, Template};
use crate::yaml::Node;
use crate::Diags;
use serde_json::{json, Map, Value as J};

/// One function as its events see it.
pub struct Func<'a> {
    pub logical_id: &'a str,
    /// `AutoPublishAlias`: the events invoke the alias, as SAM makes them (SAM
    /// names its `<Function>Alias<alias>` resource; Nimbus, which publishes the
    /// alias itself, names the qualified ARN).
    pub alias: Option<&'a str>,
}

impl Func<'_> {
    /// What a mapping's or permission's `FunctionName` is.
    fn name(&self) -> J {
        match self.alias {
            Some(a) => self.arn_value(a),
            None => json!({"Ref": self.logical_id}),
        }
    }

    /// What a subscription, notification or rule target invokes.
    fn arn(&self) -> J {
        match self.alias {
            Some(a) => self.arn_value(a),
            None => cfn::function_arn(self.logical_id),
        }
    }

    fn arn_value(&self, alias: &str) -> J {
        json!({"Fn::Join": [":", [cfn::function_arn(self.logical_id), alias]]})
    }
}

/// An S3 event waits for its bucket, which may be declared after the function.
pub struct PendingS3 {
    pub bucket: String,
    pub config: J,
    pub permission: String,
    pub line: usize,
}

fn res(d: &Diags, kind: &str, properties: J, depends_on: Vec<String>, line: usize) -> Resource {
    Resource {
        kind: kind.into(),
        properties,
        depends_on,
        deletion_policy: None,
        update_replace_policy: None,
        condition: None,
        source: Some(cfn::source(d, line)),
    }
}

/// Copy the listed properties (CloudFormation names on both sides).
fn copy(props: &Map<String, J>, keys: &[&str], out: &mut Map<String, J>) {
    for k in keys {
        if let Some(v) = props.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
}

fn permission(func: &Func, principal: &str, source: Option<(&str, J)>) -> J {
    let mut p = json!({
        "Action": "lambda:InvokeFunction",
        "FunctionName": func.name(),
        "Principal": principal,
    });
    if let Some((k, v)) = source {
        p[k] = v;
    }
    p
}

/// One event of a function that is not an API route or a schedule. Returns the
/// managed policy the pull events add to the function's role.
#[allow(clippy::too_many_arguments)]
pub fn event(
    d: &mut Diags,
    func: &Func,
    name: &str,
    ty: &str,
    props_node: &Node,
    path: &str,
    line: usize,
    t: &mut Template,
    pending_s3: &mut Vec<PendingS3>,
) -> Option<&'static str> {
    let known: &[&str] = match ty {
        "SQS" => &[
            "Queue",
            "BatchSize",
            "Enabled",
            "FilterCriteria",
            "FunctionResponseTypes",
            "MaximumBatchingWindowInSeconds",
            "ScalingConfig",
            "KmsKeyArn",
            "MetricsConfig",
        ],
        "DynamoDB" | "Kinesis" => &[
            "Stream",
            "StartingPosition",
            "StartingPositionTimestamp",
            "BatchSize",
            "Enabled",
            "MaximumBatchingWindowInSeconds",
            "MaximumRetryAttempts",
            "BisectBatchOnFunctionError",
            "MaximumRecordAgeInSeconds",
            "DestinationConfig",
            "ParallelizationFactor",
            "TumblingWindowInSeconds",
            "FunctionResponseTypes",
            "FilterCriteria",
            "KmsKeyArn",
            "MetricsConfig",
        ],
        "SNS" => &[
            "Topic",
            "FilterPolicy",
            "FilterPolicyScope",
            "Region",
            "SqsSubscription",
            "RedrivePolicy",
        ],
        "S3" => &["Bucket", "Events", "Filter"],
        "EventBridgeRule" | "CloudWatchEvent" => &[
            "Pattern",
            "EventBusName",
            "Input",
            "InputPath",
            "InputTransformer",
            "Target",
            "RuleName",
            "State",
            "Enabled",
            "DeadLetterConfig",
            "RetryPolicy",
        ],
        _ => return None,
    };
    let pf = fields(d, props_node, path, known)?;
    let props: Map<String, J> = match to_cfn(props_node, d) {
        J::Object(m) => m,
        _ => Map::new(),
    };
    let id = format!("{}{name}", func.logical_id);
    let fn_arn = func.arn();
    let need = |d: &mut Diags, key: &str| -> Option<J> {
        let v = props.get(key).cloned();
        if v.is_none() {
            d.error(line, format!("{path}.{key} is required"));
        }
        v
    };
    match ty {
        "SQS" => {
            let queue = need(d, "Queue")?;
            let mut p = Map::new();
            copy(&props, &["BatchSize", "Enabled"], &mut p);
            p.insert("EventSourceArn".into(), queue);
            p.insert("FunctionName".into(), func.name());
            copy(
                &props,
                &[
                    "MaximumBatchingWindowInSeconds",
                    "FilterCriteria",
                    "FunctionResponseTypes",
                    "ScalingConfig",
                    "KmsKeyArn",
                    "MetricsConfig",
                ],
                &mut p,
            );
            t.resources.insert(
                id,
                res(
                    d,
                    "AWS::Lambda::EventSourceMapping",
                    J::Object(p),
                    vec![],
                    line,
                ),
            );
            Some("AWSLambdaSQSQueueExecutionRole")
        }
        "DynamoDB" | "Kinesis" => {
            let stream = need(d, "Stream")?;
            if let Some(x) = pf.get("StartingPositionTimestamp") {
                d.unsupported(
                    x.line(),
                    format!("{path}.StartingPositionTimestamp (AT_TIMESTAMP)"),
                );
            }
            let mut p = Map::new();
            copy(&props, &["BatchSize", "Enabled"], &mut p);
            p.insert("EventSourceArn".into(), stream);
            p.insert("FunctionName".into(), func.name());
            copy(
                &props,
                &[
                    "StartingPosition",
                    "MaximumBatchingWindowInSeconds",
                    "MaximumRetryAttempts",
                    "BisectBatchOnFunctionError",
                    "MaximumRecordAgeInSeconds",
                    "ParallelizationFactor",
                    "TumblingWindowInSeconds",
                    "FunctionResponseTypes",
                    "FilterCriteria",
                    "KmsKeyArn",
                    "MetricsConfig",
                ],
                &mut p,
            );
            // SAM's `OnFailure.Type` (SQS/SNS) only picks the role's policy.
            if let Some(dc) = props.get("DestinationConfig") {
                let dest = dc.pointer("/OnFailure/Destination").cloned();
                match dest {
                    Some(dest) => {
                        p.insert(
                            "DestinationConfig".into(),
                            json!({"OnFailure": {"Destination": dest}}),
                        );
                    }
                    None => d.error(
                        line,
                        format!("{path}.DestinationConfig.OnFailure.Destination is required"),
                    ),
                }
            }
            t.resources.insert(
                id,
                res(
                    d,
                    "AWS::Lambda::EventSourceMapping",
                    J::Object(p),
                    vec![],
                    line,
                ),
            );
            Some(if ty == "DynamoDB" {
                "AWSLambdaDynamoDBExecutionRole"
            } else {
                "AWSLambdaKinesisExecutionRole"
            })
        }
        "SNS" => {
            let topic = need(d, "Topic")?;
            if let Some(x) = pf.get("SqsSubscription") {
                if !matches!(props.get("SqsSubscription"), Some(J::Bool(false))) {
                    d.unsupported(
                        x.line(),
                        format!("{path}.SqsSubscription: the queue SAM puts between the topic and the function"),
                    );
                    return None;
                }
            }
            let mut p = Map::new();
            p.insert("Endpoint".into(), fn_arn);
            p.insert("Protocol".into(), json!("lambda"));
            p.insert("TopicArn".into(), topic.clone());
            copy(
                &props,
                &[
                    "Region",
                    "FilterPolicy",
                    "FilterPolicyScope",
                    "RedrivePolicy",
                ],
                &mut p,
            );
            t.resources.insert(
                id.clone(),
                res(d, "AWS::SNS::Subscription", J::Object(p), vec![], line),
            );
            t.resources.insert(
                format!("{id}Permission"),
                res(
                    d,
                    "AWS::Lambda::Permission",
                    permission(func, "sns.amazonaws.com", Some(("SourceArn", topic))),
                    vec![],
                    line,
                ),
            );
            None
        }
        "S3" => {
            let bucket = need(d, "Bucket")?;
            let Some(bucket) = bucket.get("Ref").and_then(J::as_str).map(str::to_string) else {
                d.error(
                    line,
                    format!("{path}.Bucket must be !Ref to an AWS::S3::Bucket of this template (as SAM requires)"),
                );
                return None;
            };
            let events: Vec<J> = match need(d, "Events")? {
                J::Array(a) => a,
                one => vec![one],
            };
            let perm = format!("{id}Permission");
            for ev in events {
                let mut config = json!({"Event": ev, "Function": fn_arn.clone()});
                if let Some(f) = props.get("Filter") {
                    config["Filter"] = f.clone();
                }
                pending_s3.push(PendingS3 {
                    bucket: bucket.clone(),
                    config,
                    permission: perm.clone(),
                    line,
                });
            }
            t.resources.insert(
                perm,
                res(
                    d,
                    "AWS::Lambda::Permission",
                    permission(
                        func,
                        "s3.amazonaws.com",
                        Some(("SourceAccount", json!({"Ref": "AWS::AccountId"}))),
                    ),
                    vec![],
                    line,
                ),
            );
            None
        }
        _ => {
            // EventBridgeRule, CloudWatchEvent.
            let mut target = Map::new();
            target.insert("Arn".into(), fn_arn);
            let target_id = props
                .get("Target")
                .and_then(|x| x.get("Id"))
                .cloned()
                .unwrap_or_else(|| json!(format!("{id}LambdaTarget")));
            target.insert("Id".into(), target_id);
            copy(
                &props,
                &["Input", "InputPath", "InputTransformer", "RetryPolicy"],
                &mut target,
            );
            if let Some(dlc) = props.get("DeadLetterConfig") {
                match dlc.get("Arn") {
                    Some(arn) => {
                        target.insert("DeadLetterConfig".into(), json!({"Arn": arn}));
                    }
                    None => d.unsupported(
                        line,
                        format!(
                            "{path}.DeadLetterConfig.Type: the queue SAM creates for it (give Arn)"
                        ),
                    ),
                }
            }
            let mut p = Map::new();
            copy(&props, &["EventBusName"], &mut p);
            if let Some(x) = props.get("Pattern") {
                p.insert("EventPattern".into(), x.clone());
            }
            if let Some(x) = props.get("RuleName") {
                p.insert("Name".into(), x.clone());
            }
            match (props.get("State"), props.get("Enabled")) {
                (Some(s), _) => {
                    p.insert("State".into(), s.clone());
                }
                (None, Some(J::Bool(e))) => {
                    p.insert(
                        "State".into(),
                        json!(if *e { "ENABLED" } else { "DISABLED" }),
                    );
                }
                _ => {}
            }
            if !p.contains_key("EventPattern") {
                d.error(line, format!("{path}.Pattern is required"));
                return None;
            }
            p.insert("Targets".into(), json!([J::Object(target)]));
            t.resources.insert(
                id.clone(),
                res(d, "AWS::Events::Rule", J::Object(p), vec![], line),
            );
            t.resources.insert(
                format!("{id}Permission"),
                res(
                    d,
                    "AWS::Lambda::Permission",
                    permission(
                        func,
                        "events.amazonaws.com",
                        Some(("SourceArn", json!({"Fn::GetAtt": [id, "Arn"]}))),
                    ),
                    vec![],
                    line,
                ),
            );
            None
        }
    }
}

/// Put the S3 events into their buckets' `NotificationConfiguration`.
pub fn apply_s3(d: &mut Diags, pending: Vec<PendingS3>, t: &mut Template) {
    for p in pending {
        let Some(b) = t
            .resources
            .get_mut(&p.bucket)
            .filter(|r| r.kind == "AWS::S3::Bucket")
        else {
            d.error(
                p.line,
                format!(
                    "S3 event: {} is not an AWS::S3::Bucket of this template",
                    p.bucket
                ),
            );
            continue;
        };
        let props = b.properties.as_object_mut().expect("checked as an object");
        let nc = props
            .entry("NotificationConfiguration")
            .or_insert_with(|| json!({}));
        if let Some(nc) = nc.as_object_mut() {
            let lc = nc
                .entry("LambdaConfigurations")
                .or_insert_with(|| json!([]));
            if let Some(a) = lc.as_array_mut() {
                a.push(p.config);
            }
        }
        if !b.depends_on.contains(&p.permission) {
            b.depends_on.push(p.permission);
        }
    }
}

/// `<Function>Role`, as SAM generates it when the function has no `Role`: the
/// basic execution policy, the managed policies its events need, and its
/// `Policies` (managed policy names or ARNs, inline documents, and the policy
/// templates below). Stored for the least-privilege issue; not enforced yet.
pub fn role(
    d: &mut Diags,
    func: &Func,
    policies: Option<&Node>,
    event_policies: &[&str],
    line: usize,
    t: &mut Template,
) {
    let mut managed: Vec<J> = vec![json!(
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    )];
    for p in event_policies {
        let arn = json!(format!("arn:aws:iam::aws:policy/service-role/{p}"));
        if !managed.contains(&arn) {
            managed.push(arn);
        }
    }
    let mut inline: Vec<J> = Vec::new();
    let items: Vec<&Node> = match policies {
        Some(n) => match n.as_seq() {
            Some(s) => s.iter().collect(),
            None => vec![n],
        },
        None => Vec::new(),
    };
    for (i, item) in items.iter().enumerate() {
        let v = to_cfn(item, d);
        let policy_name = format!("{}RolePolicy{i}", func.logical_id);
        match &v {
            J::String(s) if s.starts_with("arn:") => managed.push(v.clone()),
            J::String(s) => managed.push(json!(format!("arn:aws:iam::aws:policy/{s}"))),
            J::Object(m) if m.contains_key("Statement") => inline.push(json!({
                "PolicyName": policy_name,
                "PolicyDocument": v,
            })),
            J::Object(m)
                if m.len() == 1
                    && !m.contains_key("Ref")
                    && !m.keys().any(|k| k.starts_with("Fn::")) =>
            {
                let (name, params) = m.iter().next().unwrap();
                match policy_template(name, params) {
                    Some(statements) => inline.push(json!({
                        "PolicyName": policy_name,
                        "PolicyDocument": {"Statement": statements},
                    })),
                    None => d.warn(
                        item.pos.line,
                        format!("Policies: SAM policy template {name} is not expanded by Nimbus; it is left out of the function's role"),
                    ),
                }
            }
            // `!Ref SomeManagedPolicy`, `!Sub arn:…`.
            _ => managed.push(v.clone()),
        }
    }
    let mut props = json!({
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": ["sts:AssumeRole"],
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com"]},
            }],
        },
        "ManagedPolicyArns": managed,
        "Tags": [{"Key": "lambda:createdBy", "Value": "SAM"}],
    });
    if !inline.is_empty() {
        props["Policies"] = json!(inline);
    }
    t.resources.insert(
        format!("{}Role", func.logical_id),
        res(d, "AWS::IAM::Role", props, vec![], line),
    );
}

/// The statements of the most used SAM policy templates
/// (samtranslator's `policy_templates_data/policy_templates.json`).
fn policy_template(name: &str, params: &J) -> Option<J> {
    let p = |k: &str| params.get(k).cloned().unwrap_or(J::Null);
    let table_arn = |t: J| json!({"Fn::Sub": ["arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}", {"tableName": t}]});
    let table_index = |t: J| json!({"Fn::Sub": ["arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}/index/*", {"tableName": t}]});
    let queue_arn = |q: J| json!({"Fn::Sub": ["arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}", {"queueName": q}]});
    let bucket =
        |b: J| json!({"Fn::Sub": ["arn:${AWS::Partition}:s3:::${bucketName}", {"bucketName": b}]});
    let bucket_objects = |b: J| json!({"Fn::Sub": ["arn:${AWS::Partition}:s3:::${bucketName}/*", {"bucketName": b}]});
    Some(match name {
        "DynamoDBCrudPolicy" => json!([{"Effect": "Allow", "Action": [
            "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query",
            "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem"],
            "Resource": [table_arn(p("TableName")), table_index(p("TableName"))]}]),
        "DynamoDBReadPolicy" => json!([{"Effect": "Allow", "Action": [
            "dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"],
            "Resource": [table_arn(p("TableName")), table_index(p("TableName"))]}]),
        "DynamoDBWritePolicy" => json!([{"Effect": "Allow", "Action": [
            "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"],
            "Resource": [table_arn(p("TableName")), table_index(p("TableName"))]}]),
        "SQSPollerPolicy" => json!([{"Effect": "Allow", "Action": [
            "sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch", "sqs:DeleteMessage",
            "sqs:DeleteMessageBatch", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
            "Resource": queue_arn(p("QueueName"))}]),
        "SQSSendMessagePolicy" => json!([{"Effect": "Allow", "Action": ["sqs:SendMessage*"],
            "Resource": queue_arn(p("QueueName"))}]),
        "SNSPublishMessagePolicy" => json!([{"Effect": "Allow", "Action": ["sns:Publish"],
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${topicName}", {"topicName": p("TopicName")}]}}]),
        "S3ReadPolicy" => json!([{"Effect": "Allow", "Action": [
            "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion", "s3:GetLifecycleConfiguration"],
            "Resource": [bucket(p("BucketName")), bucket_objects(p("BucketName"))]}]),
        "S3WritePolicy" => json!([{"Effect": "Allow", "Action": [
            "s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"],
            "Resource": [bucket(p("BucketName")), bucket_objects(p("BucketName"))]}]),
        "S3CrudPolicy" => json!([{"Effect": "Allow", "Action": [
            "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion", "s3:PutObject",
            "s3:PutObjectAcl", "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", "s3:DeleteObject"],
            "Resource": [bucket(p("BucketName")), bucket_objects(p("BucketName"))]}]),
        "EventBridgePutEventsPolicy" => json!([{"Effect": "Allow", "Action": "events:PutEvents",
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${eventBusName}", {"eventBusName": p("EventBusName")}]}}]),
        "AWSSecretsManagerGetSecretValuePolicy" => {
            json!([{"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
            "Resource": p("SecretArn")}])
        }
        "SSMParameterReadPolicy" => json!([{"Effect": "Allow", "Action": [
            "ssm:DescribeParameters", "ssm:GetParameters", "ssm:GetParameter", "ssm:GetParametersByPath"],
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${parameterName}", {"parameterName": p("ParameterName")}]}}]),
        "SESCrudPolicy" => json!([{"Effect": "Allow", "Action": [
            "ses:GetIdentityVerificationAttributes", "ses:SendEmail", "ses:SendRawEmail", "ses:VerifyEmailIdentity"],
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${identityName}", {"identityName": p("IdentityName")}]}}]),
        "KinesisStreamReadPolicy" => {
            json!([{"Effect": "Allow", "Action": ["kinesis:ListStreams", "kinesis:DescribeLimits"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/*"}},
            {"Effect": "Allow", "Action": ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator"],
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/${streamName}", {"streamName": p("StreamName")}]}}])
        }
        "LambdaInvokePolicy" => json!([{"Effect": "Allow", "Action": ["lambda:InvokeFunction"],
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${functionName}*", {"functionName": p("FunctionName")}]}}]),
        _ => return None,
    })
}

/// `AWS::Serverless::SimpleTable` → `AWS::DynamoDB::Table`, as the transform
/// lowers it: `PrimaryKey` (default `id`, `String`) → one HASH key, on-demand
/// billing unless `ProvisionedThroughput`, `Tags` as a list.
pub fn simple_table(
    d: &mut Diags,
    props_node: Option<&Node>,
    path: &str,
    line: usize,
) -> Option<J> {
    let empty = Node::new(crate::yaml::Value::Null, Default::default());
    let node = props_node.unwrap_or(&empty);
    fields(
        d,
        node,
        path,
        &[
            "PrimaryKey",
            "ProvisionedThroughput",
            "TableName",
            "Tags",
            "SSESpecification",
            "PointInTimeRecoverySpecification",
        ],
    )?;
    let props = match to_cfn(node, d) {
        J::Object(m) => m,
        _ => Map::new(),
    };
    let (key, ty) = match props.get("PrimaryKey") {
        Some(pk) => (
            pk.get("Name").cloned().unwrap_or(json!("id")),
            pk.get("Type")
                .and_then(J::as_str)
                .unwrap_or("String")
                .to_string(),
        ),
        None => (json!("id"), "String".to_string()),
    };
    let attr_type = match ty.as_str() {
        "String" => "S",
        "Number" => "N",
        "Binary" => "B",
        other => {
            d.error(
                line,
                format!("{path}.PrimaryKey.Type must be String, Number or Binary, found {other:?}"),
            );
            return None;
        }
    };
    let mut out = json!({
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": attr_type}],
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
    });
    match props.get("ProvisionedThroughput") {
        Some(pt) => out["ProvisionedThroughput"] = pt.clone(),
        None => out["BillingMode"] = json!("PAY_PER_REQUEST"),
    }
    for k in [
        "TableName",
        "SSESpecification",
        "PointInTimeRecoverySpecification",
    ] {
        if let Some(v) = props.get(k) {
            out[k] = v.clone();
        }
    }
    if let Some(J::Object(tags)) = props.get("Tags") {
        out["Tags"] = J::Array(
            tags.iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect(),
        );
    }
    Some(out)
}

/// The Template for SAM templates, compared with what `sam build`/the SAM
/// transform writes to CloudFormation for the same input (samtranslator's
/// `tests/translator/output/*.json` shapes).
#[cfg(test)]
mod tests {
    use crate::{load, Options};
    use serde_json::{json, Value as J};

    fn compile(body: &str) -> (crate::App, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let t = format!("Transform: AWS::Serverless-2016-10-31\nResources:\n{body}");
        std::fs::write(dir.path().join("template.yaml"), t).unwrap();
        std::fs::write(dir.path().join("app.py"), "def handler(e, c): pass\n").unwrap();
        let l = load(
            &dir.path().join("template.yaml"),
            &Options {
                stack_name: Some("shop".into()),
                ..Default::default()
            },
        );
        let msgs: Vec<String> = l
            .diagnostics
            .iter()
            .map(|d| {
                let s = d.to_string();
                s[s.find("template.yaml").unwrap()..].to_string()
            })
            .collect();
        (l.app.unwrap_or_else(|| panic!("{msgs:#?}")), msgs)
    }

    fn props(app: &crate::App, id: &str) -> J {
        let r = app
            .template
            .resources
            .get(id)
            .unwrap_or_else(|| panic!("no {id} in {:?}", app.template.resources.keys()));
        r.properties.clone()
    }

    const FN: &str = "  Worker:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n";

    #[test]
    fn pull_events() {
        let (app, msgs) = compile(&format!(
            "{FN}      Events:\n        Jobs:\n          Type: SQS\n          Properties:\n            Queue: !GetAtt Jobs.Arn\n            BatchSize: 5\n            MaximumBatchingWindowInSeconds: 2\n            FunctionResponseTypes: [ReportBatchItemFailures]\n            ScalingConfig: {{MaximumConcurrency: 2}}\n        Changes:\n          Type: DynamoDB\n          Properties:\n            Stream: !GetAtt Users.StreamArn\n            StartingPosition: TRIM_HORIZON\n            BatchSize: 1\n            MaximumRetryAttempts: 2\n            BisectBatchOnFunctionError: true\n            FilterCriteria:\n              Filters:\n                - Pattern: '{{\"eventName\": [\"INSERT\"]}}'\n            DestinationConfig:\n              OnFailure:\n                Type: SQS\n                Destination: !GetAtt Dlq.Arn\n        Clicks:\n          Type: Kinesis\n          Properties:\n            Stream: !GetAtt Clicks.Arn\n            StartingPosition: LATEST\n            ParallelizationFactor: 2\n  Jobs:\n    Type: AWS::SQS::Queue\n  Dlq:\n    Type: AWS::SQS::Queue\n  Users:\n    Type: AWS::DynamoDB::Table\n  Clicks:\n    Type: AWS::Kinesis::Stream\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        assert_eq!(
            props(&app, "WorkerJobs"),
            json!({"BatchSize": 5, "EventSourceArn": {"Fn::GetAtt": ["Jobs", "Arn"]}, "FunctionName": {"Ref": "Worker"},
                   "MaximumBatchingWindowInSeconds": 2, "FunctionResponseTypes": ["ReportBatchItemFailures"],
                   "ScalingConfig": {"MaximumConcurrency": 2}})
        );
        assert_eq!(
            props(&app, "WorkerChanges"),
            json!({"BatchSize": 1, "EventSourceArn": {"Fn::GetAtt": ["Users", "StreamArn"]}, "FunctionName": {"Ref": "Worker"},
                   "StartingPosition": "TRIM_HORIZON", "MaximumRetryAttempts": 2, "BisectBatchOnFunctionError": true,
                   "FilterCriteria": {"Filters": [{"Pattern": "{\"eventName\": [\"INSERT\"]}"}]},
                   "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Dlq", "Arn"]}}}})
        );
        assert_eq!(
            props(&app, "WorkerClicks"),
            json!({"EventSourceArn": {"Fn::GetAtt": ["Clicks", "Arn"]}, "FunctionName": {"Ref": "Worker"},
                   "StartingPosition": "LATEST", "ParallelizationFactor": 2})
        );
        // The role SAM generates, with the managed policies the pull events add.
        assert_eq!(
            props(&app, "WorkerRole")["ManagedPolicyArns"],
            json!([
                "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
                "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
                "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole"
            ])
        );
    }

    #[test]
    fn push_events() {
        let (app, msgs) = compile(&format!(
            "{FN}      Events:\n        Orders:\n          Type: SNS\n          Properties:\n            Topic: !Ref Topic\n            FilterPolicy: {{kind: [big]}}\n        Upload:\n          Type: S3\n          Properties:\n            Bucket: !Ref Bucket\n            Events: s3:ObjectCreated:*\n            Filter:\n              S3Key:\n                Rules:\n                  - {{Name: prefix, Value: in/}}\n        Paid:\n          Type: EventBridgeRule\n          Properties:\n            EventBusName: shop-bus\n            Pattern:\n              source: [shop]\n            InputPath: $.detail\n  Topic:\n    Type: AWS::SNS::Topic\n  Bucket:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: shop-uploads\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        let fn_arn = json!({"Fn::GetAtt": ["Worker", "Arn"]});
        assert_eq!(
            props(&app, "WorkerOrders"),
            json!({"Endpoint": fn_arn, "Protocol": "lambda", "TopicArn": {"Ref": "Topic"}, "FilterPolicy": {"kind": ["big"]}})
        );
        assert_eq!(
            props(&app, "WorkerOrdersPermission"),
            json!({"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": "Worker"},
                   "Principal": "sns.amazonaws.com", "SourceArn": {"Ref": "Topic"}})
        );
        let bucket = &app.template.resources["Bucket"];
        assert_eq!(bucket.depends_on, ["WorkerUploadPermission"]);
        assert_eq!(
            bucket.properties,
            json!({"BucketName": "shop-uploads", "NotificationConfiguration": {"LambdaConfigurations": [
                {"Event": "s3:ObjectCreated:*", "Function": fn_arn,
                 "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "in/"}]}}}]}})
        );
        assert_eq!(
            props(&app, "WorkerUploadPermission"),
            json!({"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": "Worker"},
                   "Principal": "s3.amazonaws.com", "SourceAccount": {"Ref": "AWS::AccountId"}})
        );
        assert_eq!(
            props(&app, "WorkerPaid"),
            json!({"EventBusName": "shop-bus", "EventPattern": {"source": ["shop"]},
                   "Targets": [{"Arn": fn_arn, "Id": "WorkerPaidLambdaTarget", "InputPath": "$.detail"}]})
        );
        assert_eq!(
            props(&app, "WorkerPaidPermission")["SourceArn"],
            json!({"Fn::GetAtt": ["WorkerPaid", "Arn"]})
        );
    }

    #[test]
    fn simple_table_policies_environment_and_outputs() {
        let (app, msgs) = compile(&format!(
            "{FN}      Environment:\n        Variables:\n          TABLE: !Ref Users\n          URL: !GetAtt Jobs.QueueUrl\n          BUCKET_ARN: !Sub 'arn:aws:s3:::${{Bucket}}'\n          PLAIN: !Sub '${{AWS::StackName}}-x'\n      Policies:\n        - AmazonSQSFullAccess\n        - DynamoDBCrudPolicy:\n            TableName: !Ref Users\n        - Statement:\n            - Effect: Allow\n              Action: ses:SendEmail\n              Resource: '*'\n  Users:\n    Type: AWS::Serverless::SimpleTable\n    DeletionPolicy: Retain\n    Properties:\n      PrimaryKey: {{Name: userId, Type: String}}\n      TableName: users\n      Tags: {{team: a}}\n  Plain:\n    Type: AWS::Serverless::SimpleTable\n  Jobs:\n    Type: AWS::SQS::Queue\n  Bucket:\n    Type: AWS::S3::Bucket\nOutputs:\n  JobsUrl:\n    Description: the queue\n    Value: !GetAtt Jobs.QueueUrl\n    Export:\n      Name: !Sub '${{AWS::StackName}}-jobs'\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        let t = &app.template;
        assert_eq!(t.resources["Users"].kind, "AWS::DynamoDB::Table");
        assert_eq!(
            t.resources["Users"].deletion_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(
            props(&app, "Users"),
            json!({"AttributeDefinitions": [{"AttributeName": "userId", "AttributeType": "S"}],
                   "KeySchema": [{"AttributeName": "userId", "KeyType": "HASH"}],
                   "BillingMode": "PAY_PER_REQUEST", "TableName": "users",
                   "Tags": [{"Key": "team", "Value": "a"}]})
        );
        assert_eq!(
            props(&app, "Plain"),
            json!({"AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                   "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"})
        );
        let f = &app.functions[0];
        assert_eq!(
            f.environment.get("PLAIN").map(String::as_str),
            Some("shop-x")
        );
        assert_eq!(f.environment.len(), 1, "{:?}", f.environment);
        assert_eq!(
            t.function_environment["Worker"],
            [
                (
                    "BUCKET_ARN".to_string(),
                    json!({"Fn::Sub": "arn:aws:s3:::${Bucket}"})
                ),
                ("TABLE".to_string(), json!({"Ref": "Users"})),
                (
                    "URL".to_string(),
                    json!({"Fn::GetAtt": ["Jobs", "QueueUrl"]})
                ),
            ]
            .into()
        );
        let role = props(&app, "WorkerRole");
        assert_eq!(
            role["ManagedPolicyArns"],
            json!([
                "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                "arn:aws:iam::aws:policy/AmazonSQSFullAccess"
            ])
        );
        assert_eq!(role["Policies"][0]["PolicyName"], "WorkerRolePolicy1");
        assert_eq!(
            role["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"][0],
            json!({"Fn::Sub": ["arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}",
                               {"tableName": {"Ref": "Users"}}]})
        );
        assert_eq!(
            role["Policies"][1],
            json!({"PolicyName": "WorkerRolePolicy2", "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "ses:SendEmail", "Resource": "*"}]}})
        );
        let o = &t.outputs["JobsUrl"];
        assert_eq!(o.value, json!({"Fn::GetAtt": ["Jobs", "QueueUrl"]}));
        assert_eq!(o.export, Some(json!({"Fn::Sub": "${AWS::StackName}-jobs"})));
        assert_eq!(o.description.as_deref(), Some("the queue"));
    }

    #[test]
    fn unsupported_resources_and_events_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let t = format!("Transform: AWS::Serverless-2016-10-31\nResources:\n{FN}      Events:\n        Q:\n          Type: SNS\n          Properties:\n            Topic: !Ref T\n            SqsSubscription: true\n        Iot:\n          Type: IoTRule\n          Properties: {{Sql: x}}\n  T:\n    Type: AWS::SNS::Topic\n  Cdn:\n    Type: AWS::CloudFront::Distribution\n");
        std::fs::write(dir.path().join("template.yaml"), t).unwrap();
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        let l = load(&dir.path().join("template.yaml"), &Options::default());
        let got: Vec<(usize, String)> = l
            .diagnostics
            .iter()
            .map(|d| (d.line, d.message.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (13, "Resources.Worker.Properties.Events.Q.Properties.SqsSubscription: the queue SAM puts between the topic and the function".to_string()),
                (14, "event Iot of type IoTRule: manifests do not wire this event kind yet (create it with the service API or `nimbus mappings`)".to_string()),
                (19, "resource Cdn of type AWS::CloudFront::Distribution: the app engine does not create this type".to_string()),
            ]
        );
    }
}

#[cfg(test)]
mod alias_tests {
    use crate::{load, Options};
    use serde_json::json;

    #[test]
    fn events_of_a_function_with_auto_publish_alias_invoke_the_alias() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        std::fs::write(
            dir.path().join("template.yaml"),
            "Transform: AWS::Serverless-2016-10-31\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n  T:\n    Type: AWS::SNS::Topic\n  Worker:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n      AutoPublishAlias: live\n      Events:\n        Jobs:\n          Type: SQS\n          Properties: {Queue: !GetAtt Q.Arn}\n        News:\n          Type: SNS\n          Properties: {Topic: !Ref T}\n",
        )
        .unwrap();
        let l = load(&dir.path().join("template.yaml"), &Options::default());
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let t = l.app.unwrap().template;
        let live = json!({"Fn::Join": [":", [{"Fn::GetAtt": ["Worker", "Arn"]}, "live"]]});
        assert_eq!(t.resources["WorkerJobs"].properties["FunctionName"], live);
        assert_eq!(t.resources["WorkerNews"].properties["Endpoint"], live);
        assert_eq!(
            t.resources["WorkerNewsPermission"].properties["FunctionName"],
            live
        );
    }
}

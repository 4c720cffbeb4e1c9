//! What each API operation is authorised as: its IAM action(s), resource ARN(s)
//! and service condition keys, after the IAM Service Authorization Reference,
//! derived from the request as it arrived (X-Amz-Target or form `Action`, the
//! JSON or form input, the REST path).
//!
//! Most operations are `<prefix>:<Operation>` on the resource the input
//! names; the exceptions (batch operations authorised as their single form,
//! S3's and Lambda's own action names, DynamoDB transactions authorised per
//! item) are in the tables below. An operation the table does not know is
//! authorised as `<prefix>:<Operation>` on `*`, so a policy naming it still
//! works and an admin is never refused.

use crate::context::Context;
use serde_json::Value;

/// One request, as the edge saw it.
#[derive(Debug, Clone, Copy)]
pub struct ApiCall<'a> {
    /// The front-end's name (`sqs`, `dynamodb`, `s3`, `lambda`, `nimbus`, …).
    pub service: &'a str,
    /// The operation, when the caller recognised it (S3, SES v2: REST APIs);
    /// JSON and query APIs are decoded here.
    pub operation: Option<&'a str>,
    pub method: &'a str,
    /// The raw (percent-encoded) path.
    pub path: &'a str,
    /// The raw query string (no `?`).
    pub query: &'a str,
    /// `X-Amz-Target`.
    pub target: Option<&'a str>,
    /// `Host`, for S3's virtual-host-style buckets (already resolved by the
    /// caller into `bucket` when known).
    pub bucket_from_host: Option<&'a str>,
    /// S3's `x-amz-copy-source`.
    pub copy_source: Option<&'a str>,
    /// The body, when it was read.
    pub body: Option<&'a [u8]>,
    pub region: &'a str,
    pub account: &'a str,
}

/// One authorisation the request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    /// Service condition keys (the global `aws:` keys are the caller's to add).
    pub context: Context,
}

/// The decoded operation and the checks it needs (none: open to every
/// authenticated caller, like `sts:GetCallerIdentity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub operation: String,
    pub checks: Vec<Check>,
}

/// The IAM action prefix of a front-end.
pub fn prefix(service: &str) -> &str {
    match service {
        "dynamodbstreams" => "dynamodb",
        "sesv2" => "ses",
        other => other,
    }
}

/// The error code and HTTP status a service answers an authorisation failure
/// with.
pub fn access_denied(service: &str) -> (&'static str, u16) {
    match service {
        "dynamodb" | "dynamodbstreams" | "kinesis" | "kms" | "secretsmanager" | "ssm"
        | "events" => ("AccessDeniedException", 400),
        "lambda" | "sesv2" => ("AccessDeniedException", 403),
        "sns" => ("AuthorizationError", 403),
        _ => ("AccessDenied", 403),
    }
}

/// Input fields, from a JSON body or a query form.
enum Input {
    Json(Value),
    Form(Vec<(String, String)>),
}

impl Input {
    fn str(&self, k: &str) -> Option<String> {
        match self {
            Input::Json(v) => v.get(k).and_then(Value::as_str).map(str::to_owned),
            Input::Form(f) => f
                .iter()
                .rev()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.clone()),
        }
    }
    /// `k.member.N` (query) or a JSON array of strings.
    fn list(&self, k: &str) -> Vec<String> {
        match self {
            Input::Json(v) => v
                .get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            Input::Form(f) => {
                let p = format!("{k}.member.");
                f.iter()
                    .filter(|(pk, _)| pk.starts_with(&p))
                    .map(|(_, v)| v.clone())
                    .collect()
            }
        }
    }
    fn json(&self) -> Option<&Value> {
        match self {
            Input::Json(v) => Some(v),
            Input::Form(_) => None,
        }
    }
}

fn check(action: String, resource: String) -> Check {
    Check {
        action,
        resource,
        context: Context::new(),
    }
}

/// Describe a request.
pub fn describe(call: &ApiCall<'_>) -> Described {
    let pre = prefix(call.service);
    match call.service {
        "s3" => s3(call),
        "lambda" => lambda(call),
        "sesv2" => {
            let op = call.operation.unwrap_or("Unknown").to_owned();
            let input = Input::Json(json_body(call.body));
            let mut checks = vec![];
            if op == "SendEmail" || op == "SendBulkEmail" {
                let from = input.str("FromEmailAddress").unwrap_or_default();
                checks.push(check(format!("ses:{op}"), ses_identity(call, &from)));
            } else {
                checks.push(check(format!("ses:{op}"), "*".into()));
            }
            Described {
                operation: op,
                checks,
            }
        }
        "nimbus" => Described {
            operation: format!("{} {}", call.method, call.path),
            checks: vec![check("nimbus:ControlApi".into(), "*".into())],
        },
        _ => {
            // JSON (X-Amz-Target) or query (Action).
            let (op, input) = match call.target {
                Some(t) => (
                    t.rsplit('.').next().unwrap_or(t).to_owned(),
                    Input::Json(json_body(call.body)),
                ),
                None => {
                    let mut form: Vec<(String, String)> =
                        form_urlencoded::parse(call.query.as_bytes())
                            .into_owned()
                            .collect();
                    if let Some(b) = call.body {
                        form.extend(form_urlencoded::parse(b).into_owned());
                    }
                    let op = form
                        .iter()
                        .find(|(k, _)| k == "Action")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    (op, Input::Form(form))
                }
            };
            let checks = by_input(call, pre, &op, &input);
            Described {
                operation: op,
                checks,
            }
        }
    }
}

fn json_body(body: Option<&[u8]>) -> Value {
    body.and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null)
}

fn by_input(call: &ApiCall<'_>, pre: &str, op: &str, input: &Input) -> Vec<Check> {
    let (r, a) = (call.region, call.account);
    let one = |action: &str, res: String| vec![check(format!("{pre}:{action}"), res)];
    match call.service {
        "sqs" => {
            let action = match op {
                "SendMessageBatch" => "SendMessage",
                "DeleteMessageBatch" => "DeleteMessage",
                "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
                o => o,
            };
            let queue = input
                .str("QueueUrl")
                .map(|u| {
                    let mut segs = u.trim_end_matches('/').rsplit('/');
                    let name = segs.next().unwrap_or("").to_owned();
                    let acct = segs
                        .next()
                        .filter(|s| !s.is_empty())
                        .unwrap_or(a)
                        .to_owned();
                    format!("arn:aws:sqs:{r}:{acct}:{name}")
                })
                .or_else(|| {
                    input
                        .str("QueueName")
                        .map(|n| format!("arn:aws:sqs:{r}:{a}:{n}"))
                })
                .or_else(|| input.str("SourceArn"))
                .or_else(|| input.str("TaskHandle").map(|_| "*".into()))
                .unwrap_or_else(|| "*".into());
            one(action, queue)
        }
        "sns" => {
            let action = match op {
                "PublishBatch" => "Publish",
                o => o,
            };
            let res = input
                .str("TopicArn")
                .or_else(|| input.str("TargetArn"))
                .or_else(|| input.str("ResourceArn"))
                .or_else(|| {
                    input
                        .str("SubscriptionArn")
                        .map(|s| match s.rsplit_once(':') {
                            Some((topic, _)) => topic.to_owned(),
                            None => s,
                        })
                })
                .or_else(|| {
                    (op == "CreateTopic")
                        .then(|| input.str("Name"))
                        .flatten()
                        .map(|n| format!("arn:aws:sns:{r}:{a}:{n}"))
                })
                .unwrap_or_else(|| "*".into());
            one(action, res)
        }
        "dynamodb" => dynamodb(call, op, input),
        "dynamodbstreams" => one(op, input.str("StreamArn").unwrap_or_else(|| "*".into())),
        "kinesis" => {
            let res = input
                .str("StreamARN")
                .or_else(|| {
                    input
                        .str("StreamName")
                        .map(|n| format!("arn:aws:kinesis:{r}:{a}:stream/{n}"))
                })
                .or_else(|| input.str("ConsumerARN"))
                .or_else(|| input.str("ResourceARN"))
                .unwrap_or_else(|| "*".into());
            one(op, res)
        }
        "events" => events(call, op, input),
        "secretsmanager" => {
            let arn = |id: String| {
                if id.starts_with("arn:") {
                    id
                } else {
                    format!("arn:aws:secretsmanager:{r}:{a}:secret:{id}")
                }
            };
            let ids = input.list("SecretIdList");
            if op == "BatchGetSecretValue" && !ids.is_empty() {
                return ids
                    .into_iter()
                    .map(|i| check("secretsmanager:GetSecretValue".into(), arn(i)))
                    .collect();
            }
            let res = input
                .str("SecretId")
                .or_else(|| (op == "CreateSecret").then(|| input.str("Name")).flatten())
                .map(arn)
                .unwrap_or_else(|| "*".into());
            one(op, res)
        }
        "ssm" => {
            let arn = |n: &str| {
                format!(
                    "arn:aws:ssm:{r}:{a}:parameter/{}",
                    n.trim_start_matches('/')
                )
            };
            let names = input.list("Names");
            if !names.is_empty() {
                return names
                    .iter()
                    .map(|n| check(format!("ssm:{op}"), arn(n)))
                    .collect();
            }
            let res = input
                .str("Name")
                .or_else(|| input.str("Path"))
                .or_else(|| input.str("ResourceId"))
                .map(|n| arn(&n))
                .unwrap_or_else(|| "*".into());
            one(op, res)
        }
        "kms" => {
            let arn = |k: String| {
                if k.starts_with("arn:") {
                    k
                } else if k.starts_with("alias/") {
                    format!("arn:aws:kms:{r}:{a}:{k}")
                } else {
                    format!("arn:aws:kms:{r}:{a}:key/{k}")
                }
            };
            let mut out = vec![];
            if let Some(k) = input.str("KeyId").or_else(|| input.str("TargetKeyId")) {
                out.push(check(format!("kms:{op}"), arn(k)));
            }
            if let Some(al) = input.str("AliasName") {
                out.push(check(format!("kms:{op}"), arn(al)));
            }
            if out.is_empty() {
                out.push(check(format!("kms:{op}"), "*".into()));
            }
            out
        }
        "ses" => {
            let from = match op {
                "SendEmail" | "SendRawEmail" | "SendTemplatedEmail" | "SendBulkTemplatedEmail" => {
                    input.str("Source")
                }
                _ => None,
            };
            match from {
                Some(f) => one(op, ses_identity(call, &f)),
                None => one(op, "*".into()),
            }
        }
        "iam" => {
            let res = input
                .str("RoleName")
                .map(|n| format!("arn:aws:iam::{a}:role/{n}"))
                .or_else(|| {
                    input
                        .str("UserName")
                        .map(|n| format!("arn:aws:iam::{a}:user/{n}"))
                })
                .or_else(|| input.str("PolicyArn"))
                .or_else(|| input.str("PolicySourceArn"))
                .unwrap_or_else(|| "*".into());
            one(op, res)
        }
        "sts" => match op {
            // Open to every authenticated caller, as on AWS.
            "GetCallerIdentity"
            | "GetSessionToken"
            | "AssumeRoleWithWebIdentity"
            | "AssumeRoleWithSAML" => vec![],
            "AssumeRole" => one(op, input.str("RoleArn").unwrap_or_else(|| "*".into())),
            "GetFederationToken" => one(
                op,
                format!(
                    "arn:aws:sts::{a}:federated-user/{}",
                    input.str("Name").unwrap_or_default()
                ),
            ),
            _ => one(op, "*".into()),
        },
        _ => one(op, "*".into()),
    }
}

fn ses_identity(call: &ApiCall<'_>, from: &str) -> String {
    // `Name <user@example.com>` → `user@example.com`.
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(i), Some(j)) if i < j => &from[i + 1..j],
        _ => from,
    };
    format!(
        "arn:aws:ses:{}:{}:identity/{}",
        call.region,
        call.account,
        addr.trim()
    )
}

fn dynamodb(call: &ApiCall<'_>, op: &str, input: &Input) -> Vec<Check> {
    let table = |t: &str| {
        if t.starts_with("arn:") {
            t.to_owned()
        } else {
            format!(
                "arn:aws:dynamodb:{}:{}:table/{t}",
                call.region, call.account
            )
        }
    };
    let json = input.json().cloned().unwrap_or(Value::Null);
    let mut ctx = Context::new();
    for k in ["Select", "ReturnValues", "ReturnConsumedCapacity"] {
        if let Some(v) = json.get(k).and_then(Value::as_str) {
            ctx.set(&format!("dynamodb:{k}"), v);
        }
    }
    // The leading key when the key names a single attribute (a table without
    // a sort key); with two, which one is the partition key is the table's to say.
    let leading = |key: Option<&Value>| -> Option<Vec<String>> {
        let obj = key?.as_object()?;
        if obj.len() != 1 {
            return None;
        }
        let v = obj.values().next()?;
        let s = v
            .get("S")
            .or_else(|| v.get("N"))
            .or_else(|| v.get("B"))?
            .as_str()?;
        Some(vec![s.to_owned()])
    };
    let with = |action: &str, t: &str, key: Option<&Value>| {
        let mut c = ctx.clone();
        if let Some(l) = leading(key) {
            c.set_many("dynamodb:LeadingKeys", l);
        }
        Check {
            action: format!("dynamodb:{action}"),
            resource: table(t),
            context: c,
        }
    };
    match op {
        "BatchGetItem" | "BatchWriteItem" => {
            let mut out = vec![];
            if let Some(items) = json.get("RequestItems").and_then(Value::as_object) {
                for t in items.keys() {
                    out.push(with(op, t, None));
                }
            }
            out
        }
        "TransactGetItems" | "TransactWriteItems" => {
            let mut out = vec![];
            for item in json
                .get("TransactItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for (kind, action) in [
                    ("Get", "GetItem"),
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                ] {
                    if let Some(x) = item.get(kind) {
                        let t = x.get("TableName").and_then(Value::as_str).unwrap_or("");
                        out.push(with(action, t, x.get("Key")));
                    }
                }
            }
            out
        }
        "ExecuteStatement" | "BatchExecuteStatement" | "ExecuteTransaction" => {
            let statements: Vec<String> = match op {
                "ExecuteStatement" => json
                    .get("Statement")
                    .and_then(Value::as_str)
                    .map(|s| vec![s.to_owned()])
                    .unwrap_or_default(),
                _ => json
                    .get(if op == "ExecuteTransaction" {
                        "TransactStatements"
                    } else {
                        "Statements"
                    })
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.get("Statement").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect(),
            };
            statements
                .iter()
                .map(|s| {
                    let (action, t) = partiql(s);
                    with(action, &t, None)
                })
                .collect()
        }
        _ => {
            let res = json
                .get("TableName")
                .and_then(Value::as_str)
                .map(table)
                .or_else(|| {
                    json.get("ResourceArn")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "*".into());
            let mut c = ctx.clone();
            if let Some(l) = leading(json.get("Key")) {
                c.set_many("dynamodb:LeadingKeys", l);
            }
            vec![Check {
                action: format!("dynamodb:{op}"),
                resource: res,
                context: c,
            }]
        }
    }
}

/// A PartiQL statement's action and table.
fn partiql(s: &str) -> (&'static str, String) {
    let words: Vec<&str> = s.split_whitespace().collect();
    let verb = words
        .first()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    let after = |kw: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(kw))
            .and_then(|i| words.get(i + 1))
            .map(|t| t.trim_matches(|c| c == '"' || c == '\'').to_owned())
            .unwrap_or_default()
    };
    match verb.as_str() {
        "SELECT" => (
            "PartiQLSelect",
            after("FROM").split('.').next().unwrap_or("").to_owned(),
        ),
        "INSERT" => ("PartiQLInsert", after("INTO")),
        "UPDATE" => (
            "PartiQLUpdate",
            words
                .get(1)
                .map(|t| t.trim_matches('"').to_owned())
                .unwrap_or_default(),
        ),
        "DELETE" => ("PartiQLDelete", after("FROM")),
        _ => ("PartiQLSelect", String::new()),
    }
}

fn events(call: &ApiCall<'_>, op: &str, input: &Input) -> Vec<Check> {
    let (r, a) = (call.region, call.account);
    let bus_arn = |b: Option<String>| {
        let b = b.unwrap_or_else(|| "default".into());
        if b.starts_with("arn:") {
            b
        } else {
            format!("arn:aws:events:{r}:{a}:event-bus/{b}")
        }
    };
    let json = input.json().cloned().unwrap_or(Value::Null);
    match op {
        "PutEvents" => {
            let mut buses: Vec<String> = json
                .get("Entries")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    bus_arn(
                        e.get("EventBusName")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    )
                })
                .collect();
            buses.sort();
            buses.dedup();
            buses
                .into_iter()
                .map(|b| check("events:PutEvents".into(), b))
                .collect()
        }
        "PutRule" | "DeleteRule" | "DescribeRule" | "EnableRule" | "DisableRule" | "PutTargets"
        | "RemoveTargets" | "ListTargetsByRule" => {
            let name = input
                .str("Name")
                .or_else(|| input.str("Rule"))
                .unwrap_or_default();
            let bus = input.str("EventBusName");
            let res = match bus.as_deref() {
                None | Some("default") => format!("arn:aws:events:{r}:{a}:rule/{name}"),
                Some(b) => {
                    let b = b.rsplit('/').next().unwrap_or(b);
                    format!("arn:aws:events:{r}:{a}:rule/{b}/{name}")
                }
            };
            vec![check(format!("events:{op}"), res)]
        }
        "CreateEventBus" | "DeleteEventBus" | "DescribeEventBus" => {
            vec![check(format!("events:{op}"), bus_arn(input.str("Name")))]
        }
        _ => {
            let res = input
                .str("ResourceARN")
                .or_else(|| input.str("Arn"))
                .unwrap_or_else(|| "*".into());
            vec![check(format!("events:{op}"), res)]
        }
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// S3's action for each operation (the Authorization Reference's table);
/// `true` when it is on the object, `false` on the bucket.
fn s3_action(op: &str) -> (&'static str, bool) {
    match op {
        "GetObject" | "HeadObject" => ("s3:GetObject", true),
        "PutObject"
        | "UploadPart"
        | "CreateMultipartUpload"
        | "CompleteMultipartUpload"
        | "CopyObject"
        | "UploadPartCopy" => ("s3:PutObject", true),
        "DeleteObject" => ("s3:DeleteObject", true),
        "DeleteObjects" => ("s3:DeleteObject", true),
        "AbortMultipartUpload" => ("s3:AbortMultipartUpload", true),
        "ListParts" => ("s3:ListMultipartUploadParts", true),
        "GetObjectTagging" => ("s3:GetObjectTagging", true),
        "PutObjectTagging" => ("s3:PutObjectTagging", true),
        "DeleteObjectTagging" => ("s3:DeleteObjectTagging", true),
        "GetObjectAcl" => ("s3:GetObjectAcl", true),
        "PutObjectAcl" => ("s3:PutObjectAcl", true),
        "GetObjectAttributes" => ("s3:GetObjectAttributes", true),
        "RestoreObject" => ("s3:RestoreObject", true),
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => ("s3:ListBucket", false),
        "ListObjectVersions" => ("s3:ListBucketVersions", false),
        "ListMultipartUploads" => ("s3:ListBucketMultipartUploads", false),
        "ListBuckets" => ("s3:ListAllMyBuckets", false),
        "CreateBucket" => ("s3:CreateBucket", false),
        "DeleteBucket" => ("s3:DeleteBucket", false),
        "GetBucketPolicy" => ("s3:GetBucketPolicy", false),
        "PutBucketPolicy" => ("s3:PutBucketPolicy", false),
        "DeleteBucketPolicy" => ("s3:DeleteBucketPolicy", false),
        "GetBucketLocation" => ("s3:GetBucketLocation", false),
        "GetBucketNotificationConfiguration" | "GetBucketNotification" => {
            ("s3:GetBucketNotification", false)
        }
        "PutBucketNotificationConfiguration" | "PutBucketNotification" => {
            ("s3:PutBucketNotification", false)
        }
        "GetBucketTagging" => ("s3:GetBucketTagging", false),
        "PutBucketTagging" | "DeleteBucketTagging" => ("s3:PutBucketTagging", false),
        "GetBucketVersioning" => ("s3:GetBucketVersioning", false),
        "PutBucketVersioning" => ("s3:PutBucketVersioning", false),
        "GetBucketCors" => ("s3:GetBucketCORS", false),
        "PutBucketCors" | "DeleteBucketCors" => ("s3:PutBucketCORS", false),
        "GetBucketLifecycleConfiguration" | "GetBucketLifecycle" => {
            ("s3:GetLifecycleConfiguration", false)
        }
        "PutBucketLifecycleConfiguration" | "PutBucketLifecycle" | "DeleteBucketLifecycle" => {
            ("s3:PutLifecycleConfiguration", false)
        }
        "GetBucketAcl" => ("s3:GetBucketAcl", false),
        "PutBucketAcl" => ("s3:PutBucketAcl", false),
        "GetBucketEncryption" => ("s3:GetEncryptionConfiguration", false),
        "PutBucketEncryption" | "DeleteBucketEncryption" => {
            ("s3:PutEncryptionConfiguration", false)
        }
        "GetBucketOwnershipControls" => ("s3:GetBucketOwnershipControls", false),
        "PutBucketOwnershipControls" | "DeleteBucketOwnershipControls" => {
            ("s3:PutBucketOwnershipControls", false)
        }
        "GetPublicAccessBlock" => ("s3:GetBucketPublicAccessBlock", false),
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => {
            ("s3:PutBucketPublicAccessBlock", false)
        }
        "GetBucketWebsite" => ("s3:GetBucketWebsite", false),
        "PutBucketWebsite" | "DeleteBucketWebsite" => ("s3:PutBucketWebsite", false),
        _ => ("", false),
    }
}

/// The bucket and key an S3 request names.
pub fn s3_bucket_key(call: &ApiCall<'_>) -> (Option<String>, Option<String>) {
    let path = call.path.trim_start_matches('/');
    match call.bucket_from_host {
        Some(b) => (Some(b.to_owned()), (!path.is_empty()).then(|| decode(path))),
        None => {
            let (b, k) = match path.split_once('/') {
                Some((b, k)) => (b, Some(k)),
                None => (path, None),
            };
            (
                (!b.is_empty()).then(|| decode(b)),
                k.filter(|k| !k.is_empty()).map(decode),
            )
        }
    }
}

fn s3(call: &ApiCall<'_>) -> Described {
    let op = call.operation.unwrap_or("Unknown").to_owned();
    let (bucket, key) = s3_bucket_key(call);
    let (mut action, on_object) = s3_action(&op);
    let generic = format!("s3:{op}");
    if action.is_empty() {
        action = &generic;
    }
    let bucket = bucket.unwrap_or_default();
    let mut ctx = Context::new();
    let q: Vec<(String, String)> = form_urlencoded::parse(call.query.as_bytes())
        .into_owned()
        .collect();
    if matches!(
        op.as_str(),
        "ListObjects" | "ListObjectsV2" | "ListObjectVersions"
    ) {
        let get = |k: &str| q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.clone());
        ctx.set("s3:prefix", get("prefix").unwrap_or_default());
        if let Some(d) = get("delimiter") {
            ctx.set("s3:delimiter", d);
        }
        if let Some(m) = get("max-keys") {
            ctx.set("s3:max-keys", m);
        }
    }
    let mut checks = vec![];
    if op == "ListBuckets" {
        checks.push(check(action.to_owned(), "*".into()));
    } else if op == "DeleteObjects" {
        // One check per key the body names (`<Key>…</Key>`), else the bucket's objects.
        let keys: Vec<String> = call
            .body
            .map(|b| {
                let text = String::from_utf8_lossy(b);
                text.split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split_once("</Key>").map(|(k, _)| xml_unescape(k)))
                    .collect()
            })
            .unwrap_or_default();
        if keys.is_empty() {
            checks.push(check(action.to_owned(), format!("arn:aws:s3:::{bucket}/*")));
        }
        for k in keys {
            checks.push(check(
                action.to_owned(),
                format!("arn:aws:s3:::{bucket}/{k}"),
            ));
        }
    } else if on_object {
        let k = key.unwrap_or_default();
        checks.push(Check {
            action: action.to_owned(),
            resource: format!("arn:aws:s3:::{bucket}/{k}"),
            context: ctx.clone(),
        });
    } else {
        checks.push(Check {
            action: action.to_owned(),
            resource: format!("arn:aws:s3:::{bucket}"),
            context: ctx.clone(),
        });
    }
    if matches!(op.as_str(), "CopyObject" | "UploadPartCopy") {
        if let Some(src) = call.copy_source {
            let src = decode(src.trim_start_matches('/'));
            let src = src.split("?versionId=").next().unwrap_or(&src).to_owned();
            checks.push(check("s3:GetObject".into(), format!("arn:aws:s3:::{src}")));
        }
    }
    Described {
        operation: op,
        checks,
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Lambda's REST routes: (method, path pattern after the version, operation,
/// action). `{f}` is the function name or ARN.
const LAMBDA: &[(&str, &str, &str, &str)] = &[
    ("POST", "functions", "CreateFunction", "CreateFunction"),
    ("GET", "functions", "ListFunctions", "ListFunctions"),
    ("GET", "functions/{f}", "GetFunction", "GetFunction"),
    (
        "DELETE",
        "functions/{f}",
        "DeleteFunction",
        "DeleteFunction",
    ),
    (
        "POST",
        "functions/{f}/invocations",
        "Invoke",
        "InvokeFunction",
    ),
    (
        "POST",
        "functions/{f}/invoke-async",
        "InvokeAsync",
        "InvokeFunction",
    ),
    (
        "POST",
        "functions/{f}/response-streaming-invocations",
        "InvokeWithResponseStream",
        "InvokeFunction",
    ),
    (
        "GET",
        "functions/{f}/configuration",
        "GetFunctionConfiguration",
        "GetFunctionConfiguration",
    ),
    (
        "PUT",
        "functions/{f}/configuration",
        "UpdateFunctionConfiguration",
        "UpdateFunctionConfiguration",
    ),
    (
        "PUT",
        "functions/{f}/code",
        "UpdateFunctionCode",
        "UpdateFunctionCode",
    ),
    (
        "POST",
        "functions/{f}/policy",
        "AddPermission",
        "AddPermission",
    ),
    ("GET", "functions/{f}/policy", "GetPolicy", "GetPolicy"),
    (
        "DELETE",
        "functions/{f}/policy/{s}",
        "RemovePermission",
        "RemovePermission",
    ),
    (
        "POST",
        "functions/{f}/versions",
        "PublishVersion",
        "PublishVersion",
    ),
    (
        "GET",
        "functions/{f}/versions",
        "ListVersionsByFunction",
        "ListVersionsByFunction",
    ),
    (
        "POST",
        "functions/{f}/aliases",
        "CreateAlias",
        "CreateAlias",
    ),
    ("GET", "functions/{f}/aliases", "ListAliases", "ListAliases"),
    ("GET", "functions/{f}/aliases/{s}", "GetAlias", "GetAlias"),
    (
        "PUT",
        "functions/{f}/aliases/{s}",
        "UpdateAlias",
        "UpdateAlias",
    ),
    (
        "DELETE",
        "functions/{f}/aliases/{s}",
        "DeleteAlias",
        "DeleteAlias",
    ),
    (
        "POST",
        "functions/{f}/url",
        "CreateFunctionUrlConfig",
        "CreateFunctionUrlConfig",
    ),
    (
        "GET",
        "functions/{f}/url",
        "GetFunctionUrlConfig",
        "GetFunctionUrlConfig",
    ),
    (
        "PUT",
        "functions/{f}/url",
        "UpdateFunctionUrlConfig",
        "UpdateFunctionUrlConfig",
    ),
    (
        "DELETE",
        "functions/{f}/url",
        "DeleteFunctionUrlConfig",
        "DeleteFunctionUrlConfig",
    ),
    (
        "GET",
        "functions/{f}/urls",
        "ListFunctionUrlConfigs",
        "ListFunctionUrlConfigs",
    ),
    (
        "PUT",
        "functions/{f}/concurrency",
        "PutFunctionConcurrency",
        "PutFunctionConcurrency",
    ),
    (
        "GET",
        "functions/{f}/concurrency",
        "GetFunctionConcurrency",
        "GetFunctionConcurrency",
    ),
    (
        "DELETE",
        "functions/{f}/concurrency",
        "DeleteFunctionConcurrency",
        "DeleteFunctionConcurrency",
    ),
    (
        "PUT",
        "functions/{f}/event-invoke-config",
        "PutFunctionEventInvokeConfig",
        "PutFunctionEventInvokeConfig",
    ),
    (
        "POST",
        "functions/{f}/event-invoke-config",
        "UpdateFunctionEventInvokeConfig",
        "UpdateFunctionEventInvokeConfig",
    ),
    (
        "GET",
        "functions/{f}/event-invoke-config",
        "GetFunctionEventInvokeConfig",
        "GetFunctionEventInvokeConfig",
    ),
    (
        "DELETE",
        "functions/{f}/event-invoke-config",
        "DeleteFunctionEventInvokeConfig",
        "DeleteFunctionEventInvokeConfig",
    ),
    (
        "POST",
        "event-source-mappings",
        "CreateEventSourceMapping",
        "CreateEventSourceMapping",
    ),
    (
        "GET",
        "event-source-mappings",
        "ListEventSourceMappings",
        "ListEventSourceMappings",
    ),
    (
        "GET",
        "event-source-mappings/{s}",
        "GetEventSourceMapping",
        "GetEventSourceMapping",
    ),
    (
        "PUT",
        "event-source-mappings/{s}",
        "UpdateEventSourceMapping",
        "UpdateEventSourceMapping",
    ),
    (
        "DELETE",
        "event-source-mappings/{s}",
        "DeleteEventSourceMapping",
        "DeleteEventSourceMapping",
    ),
    ("GET", "layers", "ListLayers", "ListLayers"),
    (
        "POST",
        "layers/{s}/versions",
        "PublishLayerVersion",
        "PublishLayerVersion",
    ),
    (
        "GET",
        "layers/{s}/versions",
        "ListLayerVersions",
        "ListLayerVersions",
    ),
    (
        "GET",
        "layers/{s}/versions/{s}",
        "GetLayerVersion",
        "GetLayerVersion",
    ),
    (
        "DELETE",
        "layers/{s}/versions/{s}",
        "DeleteLayerVersion",
        "DeleteLayerVersion",
    ),
    (
        "GET",
        "account-settings",
        "GetAccountSettings",
        "GetAccountSettings",
    ),
    ("GET", "tags/{s}", "ListTags", "ListTags"),
    ("POST", "tags/{s}", "TagResource", "TagResource"),
    ("DELETE", "tags/{s}", "UntagResource", "UntagResource"),
];

fn lambda(call: &ApiCall<'_>) -> Described {
    // `/<version>/<rest>`; the version differs per operation family.
    let path = call.path.trim_start_matches('/').trim_end_matches('/');
    let rest = path.split_once('/').map(|(_, r)| r).unwrap_or(path);
    let segs: Vec<&str> = rest.split('/').collect();
    let (r, a) = (call.region, call.account);
    for (method, pattern, op, action) in LAMBDA {
        if *method != call.method {
            continue;
        }
        let pat: Vec<&str> = pattern.split('/').collect();
        if pat.len() != segs.len() {
            continue;
        }
        let mut function = None;
        let mut other = None;
        let ok = pat.iter().zip(&segs).all(|(p, s)| match *p {
            "{f}" => {
                function = Some(decode(s));
                true
            }
            "{s}" => {
                other.get_or_insert_with(|| decode(s));
                true
            }
            lit => lit == *s,
        });
        if !ok {
            continue;
        }
        let q: Vec<(String, String)> = form_urlencoded::parse(call.query.as_bytes())
            .into_owned()
            .collect();
        let qualifier = q
            .iter()
            .find(|(k, _)| k == "Qualifier")
            .map(|(_, v)| v.clone());
        let body = json_body(call.body);
        let fname = function.or_else(|| {
            (*op == "CreateFunction")
                .then(|| {
                    body.get("FunctionName")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .flatten()
        });
        let resource = match fname {
            Some(f) => {
                let (name, qual) = function_name(&f);
                let qual = qual.or(qualifier.clone());
                match qual {
                    Some(q) if op.starts_with("Invoke") => {
                        format!("arn:aws:lambda:{r}:{a}:function:{name}:{q}")
                    }
                    _ => format!("arn:aws:lambda:{r}:{a}:function:{name}"),
                }
            }
            None if op.contains("Layer") && other.is_some() => format!(
                "arn:aws:lambda:{r}:{a}:layer:{}",
                other.clone().unwrap_or_default()
            ),
            None if *op == "TagResource" || *op == "UntagResource" || *op == "ListTags" => {
                other.clone().unwrap_or_else(|| "*".into())
            }
            None => "*".into(),
        };
        let mut checks = vec![check(format!("lambda:{action}"), resource)];
        // Creating or reconfiguring a function hands it a role: iam:PassRole.
        if matches!(*op, "CreateFunction" | "UpdateFunctionConfiguration") {
            if let Some(role) = body.get("Role").and_then(Value::as_str) {
                let mut c = Context::new();
                c.set("iam:PassedToService", "lambda.amazonaws.com");
                checks.push(Check {
                    action: "iam:PassRole".into(),
                    resource: role.to_owned(),
                    context: c,
                });
            }
        }
        if *op == "CreateEventSourceMapping" {
            if let Some(src) = body.get("EventSourceArn").and_then(Value::as_str) {
                checks[0].context.set("lambda:EventSourceArn", src);
            }
            if let Some(f) = body.get("FunctionName").and_then(Value::as_str) {
                let (name, _) = function_name(f);
                checks[0].context.set(
                    "lambda:FunctionArn",
                    format!("arn:aws:lambda:{r}:{a}:function:{name}"),
                );
            }
        }
        return Described {
            operation: (*op).to_owned(),
            checks,
        };
    }
    Described {
        operation: format!("{} {}", call.method, call.path),
        checks: vec![check("lambda:Unknown".into(), "*".into())],
    }
}

/// A function reference (`name`, `name:qualifier`, a full or partial ARN) as
/// its name and qualifier.
fn function_name(f: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = f.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name] => ((*name).to_owned(), None),
        ["arn", _, "lambda", _, _, "function", name, q] => {
            ((*name).to_owned(), Some((*q).to_owned()))
        }
        [_, "function", name] => ((*name).to_owned(), None),
        [_, "function", name, q] => ((*name).to_owned(), Some((*q).to_owned())),
        [name, q] => ((*name).to_owned(), Some((*q).to_owned())),
        _ => (f.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(service: &'a str, target: Option<&'a str>, body: &'a str) -> ApiCall<'a> {
        ApiCall {
            service,
            operation: None,
            method: "POST",
            path: "/",
            query: "",
            target,
            bucket_from_host: None,
            copy_source: None,
            body: Some(body.as_bytes()),
            region: "us-east-1",
            account: "123456789012",
        }
    }

    fn one(d: &Described) -> (&str, &str) {
        assert_eq!(d.checks.len(), 1, "{d:?}");
        (&d.checks[0].action, &d.checks[0].resource)
    }

    #[test]
    fn json_and_query_operations() {
        let d = describe(&call(
            "dynamodb",
            Some("DynamoDB_20120810.GetItem"),
            r#"{"TableName":"Orders","Key":{"id":{"S":"o-1"}}}"#,
        ));
        assert_eq!(
            one(&d),
            (
                "dynamodb:GetItem",
                "arn:aws:dynamodb:us-east-1:123456789012:table/Orders"
            )
        );
        assert_eq!(
            d.checks[0].context.get("dynamodb:LeadingKeys"),
            Some(&["o-1".to_owned()][..])
        );
        let d = describe(&call(
            "sqs",
            Some("AmazonSQS.SendMessageBatch"),
            r#"{"QueueUrl":"http://localhost:4566/123456789012/jobs","Entries":[]}"#,
        ));
        assert_eq!(
            one(&d),
            ("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:jobs")
        );
        let d = describe(&call(
            "sns",
            None,
            "Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3At&Message=x",
        ));
        assert_eq!(
            one(&d),
            ("sns:Publish", "arn:aws:sns:us-east-1:123456789012:t")
        );
        let d = describe(&call(
            "dynamodb",
            Some("DynamoDB_20120810.TransactWriteItems"),
            r#"{"TransactItems":[{"Put":{"TableName":"A","Item":{}}},{"Delete":{"TableName":"B","Key":{"k":{"S":"1"}}}}]}"#,
        ));
        let acts: Vec<_> = d
            .checks
            .iter()
            .map(|c| (c.action.as_str(), c.resource.as_str()))
            .collect();
        assert_eq!(
            acts,
            [
                (
                    "dynamodb:PutItem",
                    "arn:aws:dynamodb:us-east-1:123456789012:table/A"
                ),
                (
                    "dynamodb:DeleteItem",
                    "arn:aws:dynamodb:us-east-1:123456789012:table/B"
                )
            ]
        );
        let d = describe(&call(
            "sts",
            None,
            "Action=GetCallerIdentity&Version=2011-06-15",
        ));
        assert!(d.checks.is_empty());
        let d = describe(&call(
            "ssm",
            Some("AmazonSSM.GetParameter"),
            r#"{"Name":"/app/db/url"}"#,
        ));
        assert_eq!(
            one(&d),
            (
                "ssm:GetParameter",
                "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/url"
            )
        );
        let d = describe(&call(
            "events",
            Some("AWSEvents.PutEvents"),
            r#"{"Entries":[{"Source":"a"},{"EventBusName":"orders"}]}"#,
        ));
        assert_eq!(d.checks.len(), 2);
    }

    #[test]
    fn s3_operations() {
        let mut c = call("s3", None, "");
        c.method = "GET";
        c.operation = Some("ListObjectsV2");
        c.path = "/photos";
        c.query = "list-type=2&prefix=home%2Falice%2F";
        let d = describe(&c);
        assert_eq!(one(&d), ("s3:ListBucket", "arn:aws:s3:::photos"));
        assert_eq!(d.checks[0].context.first("s3:prefix"), Some("home/alice/"));
        c.operation = Some("GetObject");
        c.path = "/photos/a%20b/c.jpg";
        c.query = "";
        assert_eq!(
            one(&describe(&c)),
            ("s3:GetObject", "arn:aws:s3:::photos/a b/c.jpg")
        );
        c.bucket_from_host = Some("photos");
        c.path = "/k";
        assert_eq!(
            one(&describe(&c)),
            ("s3:GetObject", "arn:aws:s3:::photos/k")
        );
    }

    #[test]
    fn lambda_operations() {
        let mut c = call("lambda", None, "");
        c.path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Athumbs/invocations";
        assert_eq!(
            one(&describe(&c)),
            (
                "lambda:InvokeFunction",
                "arn:aws:lambda:us-east-1:123456789012:function:thumbs"
            )
        );
        c.path = "/2015-03-31/functions";
        c.body = Some(br#"{"FunctionName":"f","Role":"arn:aws:iam::123456789012:role/r"}"#);
        let d = describe(&c);
        assert_eq!(d.checks.len(), 2);
        assert_eq!(d.checks[1].action, "iam:PassRole");
        assert_eq!(d.checks[1].resource, "arn:aws:iam::123456789012:role/r");
    }
}

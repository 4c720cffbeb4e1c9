//! serverless.yml's non-HTTP events compiled to the CloudFormation resources the
//! Framework generates for them (`lib/plugins/aws/package/compile/events/*.js`),
//! with the Framework's logical ids: `sqs` and `stream` → an
//! `AWS::Lambda::EventSourceMapping`; `sns` → the topic (when named), an
//! `AWS::SNS::Subscription` or the topic's inline `Subscription`, and an
//! `AWS::Lambda::Permission`; `s3` → the bucket with
//! `NotificationConfiguration.LambdaConfigurations` and a permission (an
//! `existing: true` bucket → a `Custom::S3` resource, as the Framework's); and
//! `eventBridge` → the bus (when named), an `AWS::Events::Rule` and a permission.
//! The statements the Framework adds to `IamRoleLambdaExecution` are collected
//! too.

use crate::cfn::{self, alnum, function_arn, normalized_function, regional_arn, upper_first};
use crate::fields::{self, fields, join, Field};
use crate::template::{Resource, Template};
use crate::yaml::{Node, Value};
use crate::Diags;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value as J};
use std::collections::BTreeMap;

/// The role every function shares (`getRoleLogicalId`).
pub const ROLE: &str = "IamRoleLambdaExecution";

/// One function as the events see it.
pub struct Func<'a> {
    /// `functions.<key>`.
    pub key: &'a str,
    /// The deployed name.
    pub name: &'a str,
    /// `<Normalized>LambdaFunction`.
    pub logical_id: String,
}

/// What the events of every function add up to.
#[derive(Default)]
pub struct Out {
    pub resources: Vec<(String, Resource)>,
    /// Statements for `IamRoleLambdaExecution`.
    pub statements: Vec<J>,
    /// `s3` events on buckets the app creates, by bucket name, in order.
    buckets: Vec<NewBucket>,
    sqs_arns: Vec<J>,
    dynamodb_arns: Vec<J>,
    kinesis_arns: Vec<J>,
}

struct NewBucket {
    name: String,
    /// `provider.s3.<ref>` key when the event named one.
    reference: Option<String>,
    line: usize,
    configs: Vec<J>,
    permissions: Vec<String>,
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

/// Drop the `null`s the Framework's `undefined`s would be.
fn compact(mut v: J) -> J {
    if let J::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

/// A value that is either a plain string or an intrinsic (`arn:` fields).
fn arn_value(d: &mut Diags, f: Field, path: &str) -> Option<J> {
    match &f.val.value {
        Value::Str(_) if f.val.tag.is_none() => Some(J::String(f.val.scalar_text()?)),
        _ if f.val.tag.is_some() || f.val.as_map().is_some() => Some(cfn::to_cfn(f.val, d)),
        _ => {
            d.error(
                f.line(),
                format!(
                    "{path} must be an ARN or an intrinsic function, found {}",
                    f.val.kind()
                ),
            );
            None
        }
    }
}

/// `filterPatterns`: a list of patterns, each JSON-encoded into `FilterCriteria`.
fn filter_criteria(d: &mut Diags, f: Field, path: &str) -> Option<J> {
    let Some(items) = f.val.as_seq() else {
        d.error(f.line(), format!("{path} must be a list of patterns"));
        return None;
    };
    let filters: Vec<J> = items
        .iter()
        .map(|p| json!({"Pattern": p.to_json().to_string()}))
        .collect();
    Some(json!({ "Filters": filters }))
}

/// The name part the Framework takes from an event source for logical ids.
fn source_name(v: &J, split: impl Fn(&str) -> String) -> String {
    if let Some(g) = v
        .get("Fn::GetAtt")
        .and_then(|g| g.get(0))
        .and_then(J::as_str)
    {
        return g.to_string();
    }
    if let Some(s) = v.get("Fn::ImportValue").and_then(J::as_str) {
        return s.to_string();
    }
    if let Some(s) = v.get("Ref").and_then(J::as_str) {
        return s.to_string();
    }
    if let Some(last) = v
        .get("Fn::Join")
        .and_then(|j| j.get(1))
        .and_then(J::as_array)
        .and_then(|a| a.last())
        .and_then(J::as_str)
    {
        return split(last);
    }
    v.as_str().map(split).unwrap_or_default()
}

pub fn sqs(d: &mut Diags, f: Field, path: &str, func: &Func, out: &mut Out) {
    let mut batch = json!(10);
    let mut enabled = json!(true);
    let mut extra = Map::new();
    let arn = match &f.val.value {
        Value::Map(_) if f.val.tag.is_none() && f.val.get("arn").is_some() => {
            let Some(sf) = fields(
                d,
                f.val,
                path,
                &[
                    "arn",
                    "batchSize",
                    "enabled",
                    "maximumBatchingWindow",
                    "functionResponseType",
                    "filterPatterns",
                    "maximumConcurrency",
                ],
            ) else {
                return;
            };
            if let Some(x) = sf.get("batchSize") {
                batch = json!(fields::int(d, *x, &join(path, "batchSize"), 1, 10000));
            }
            if let Some(x) = sf.get("enabled") {
                enabled = json!(fields::boolean(d, *x, &join(path, "enabled")));
            }
            if let Some(x) = sf.get("maximumBatchingWindow") {
                extra.insert(
                    "MaximumBatchingWindowInSeconds".into(),
                    json!(fields::int(
                        d,
                        *x,
                        &join(path, "maximumBatchingWindow"),
                        0,
                        300
                    )),
                );
            }
            if let Some(x) = sf.get("functionResponseType") {
                response_type(d, *x, path, &mut extra);
            }
            if let Some(x) = sf.get("filterPatterns") {
                if let Some(c) = filter_criteria(d, *x, &join(path, "filterPatterns")) {
                    extra.insert("FilterCriteria".into(), c);
                }
            }
            if let Some(x) = sf.get("maximumConcurrency") {
                extra.insert(
                    "ScalingConfig".into(),
                    json!({"MaximumConcurrency": fields::int(d, *x, &join(path, "maximumConcurrency"), 2, 1000)}),
                );
            }
            arn_value(d, sf["arn"], &join(path, "arn"))
        }
        _ => arn_value(d, f, path),
    };
    let Some(arn) = arn else { return };
    let queue = source_name(&arn, |s| s.rsplit(':').next().unwrap_or(s).to_string());
    let id = format!(
        "{}EventSourceMappingSQS{}",
        normalized_function(func.key),
        alnum(&queue)
    );
    let mut props = json!({
        "BatchSize": batch,
        "EventSourceArn": arn,
        "FunctionName": function_arn(&func.logical_id),
        "Enabled": enabled,
    });
    props.as_object_mut().unwrap().extend(extra);
    out.sqs_arns.push(arn);
    out.resources.push((
        id,
        res(
            d,
            "AWS::Lambda::EventSourceMapping",
            props,
            vec![ROLE.into()],
            f.line(),
        ),
    ));
}

fn response_type(d: &mut Diags, x: Field, path: &str, extra: &mut Map<String, J>) {
    match x.val.as_str() {
        Some("ReportBatchItemFailures") => {
            extra.insert(
                "FunctionResponseTypes".into(),
                json!(["ReportBatchItemFailures"]),
            );
        }
        _ => d.error(
            x.line(),
            format!("{path}.functionResponseType must be ReportBatchItemFailures"),
        ),
    }
}

pub fn stream(d: &mut Diags, f: Field, path: &str, func: &Func, out: &mut Out) {
    let mut props = Map::new();
    let mut ty: Option<String> = None;
    let arn = match &f.val.value {
        Value::Map(_) if f.val.tag.is_none() && f.val.get("arn").is_some() => {
            let Some(sf) = fields(
                d,
                f.val,
                path,
                &[
                    "arn",
                    "type",
                    "batchSize",
                    "parallelizationFactor",
                    "startingPosition",
                    "startingPositionTimestamp",
                    "enabled",
                    "consumer",
                    "batchWindow",
                    "maximumRetryAttempts",
                    "bisectBatchOnFunctionError",
                    "maximumRecordAgeInSeconds",
                    "functionResponseType",
                    "destinations",
                    "tumblingWindowInSeconds",
                    "filterPatterns",
                ],
            ) else {
                return;
            };
            for key in ["consumer", "startingPositionTimestamp"] {
                if let Some(x) = sf.get(key) {
                    d.unsupported(
                        x.line(),
                        format!(
                            "{path}.{key}: Kinesis enhanced fan-out consumers and AT_TIMESTAMP"
                        ),
                    );
                }
            }
            if let Some(x) = sf.get("type") {
                match x.val.as_str() {
                    Some(t @ ("dynamodb" | "kinesis")) => ty = Some(t.into()),
                    _ => d.error(x.line(), format!("{path}.type must be dynamodb or kinesis")),
                }
            }
            let ints: &[(&str, &str, i64, i64)] = &[
                ("batchSize", "BatchSize", 1, 10000),
                ("parallelizationFactor", "ParallelizationFactor", 1, 10),
                ("batchWindow", "MaximumBatchingWindowInSeconds", 0, 300),
                ("tumblingWindowInSeconds", "TumblingWindowInSeconds", 0, 900),
            ];
            for (from, to, lo, hi) in ints {
                if let Some(x) = sf.get(*from) {
                    props.insert(
                        (*to).into(),
                        json!(fields::int(d, *x, &join(path, from), *lo, *hi)),
                    );
                }
            }
            if let Some(x) = sf.get("maximumRetryAttempts") {
                props.insert(
                    "MaximumRetryAttempts".into(),
                    signed(d, *x, path, "maximumRetryAttempts", -1, 10000),
                );
            }
            if let Some(x) = sf.get("maximumRecordAgeInSeconds") {
                props.insert(
                    "MaximumRecordAgeInSeconds".into(),
                    signed(d, *x, path, "maximumRecordAgeInSeconds", -1, 604800),
                );
            }
            if let Some(x) = sf.get("startingPosition") {
                match x.val.as_str() {
                    Some(p @ ("LATEST" | "TRIM_HORIZON")) => {
                        props.insert("StartingPosition".into(), json!(p));
                    }
                    Some("AT_TIMESTAMP") => {
                        d.unsupported(x.line(), format!("{path}.startingPosition AT_TIMESTAMP"))
                    }
                    _ => d.error(
                        x.line(),
                        format!(
                            "{path}.startingPosition must be LATEST, TRIM_HORIZON or AT_TIMESTAMP"
                        ),
                    ),
                }
            }
            if let Some(x) = sf.get("enabled") {
                props.insert(
                    "Enabled".into(),
                    json!(fields::boolean(d, *x, &join(path, "enabled"))),
                );
            }
            if let Some(x) = sf.get("bisectBatchOnFunctionError") {
                props.insert(
                    "BisectBatchOnFunctionError".into(),
                    json!(fields::boolean(
                        d,
                        *x,
                        &join(path, "bisectBatchOnFunctionError")
                    )),
                );
            }
            if let Some(x) = sf.get("functionResponseType") {
                response_type(d, *x, path, &mut props);
            }
            if let Some(x) = sf.get("filterPatterns") {
                if let Some(c) = filter_criteria(d, *x, &join(path, "filterPatterns")) {
                    props.insert("FilterCriteria".into(), c);
                }
            }
            if let Some(x) = sf.get("destinations") {
                let dp = join(path, "destinations");
                if let Some(df) = fields(d, x.val, &dp, &["onFailure"]) {
                    if let Some(of) = df.get("onFailure") {
                        let op = join(&dp, "onFailure");
                        let dest = match &of.val.value {
                            Value::Map(_)
                                if of.val.tag.is_none() && of.val.get("arn").is_some() =>
                            {
                                let Some(ofs) = fields(d, of.val, &op, &["arn", "type"]) else {
                                    return;
                                };
                                arn_value(d, ofs["arn"], &join(&op, "arn"))
                            }
                            _ => arn_value(d, *of, &op),
                        };
                        if let Some(dest) = dest {
                            props.insert(
                                "DestinationConfig".into(),
                                json!({"OnFailure": {"Destination": dest}}),
                            );
                        }
                    } else {
                        d.error(x.line(), format!("{dp}.onFailure is required"));
                    }
                }
            }
            arn_value(d, sf["arn"], &join(path, "arn"))
        }
        _ => arn_value(d, f, path),
    };
    let Some(arn) = arn else { return };
    let ty = match ty.or_else(|| {
        arn.as_str()
            .and_then(|s| s.split(':').nth(2))
            .map(str::to_string)
    }) {
        Some(t) if t == "dynamodb" || t == "kinesis" => t,
        _ => {
            d.error(
                f.line(),
                format!(
                    "{path}: give type: dynamodb or kinesis (the ARN is an intrinsic function)"
                ),
            );
            return;
        }
    };
    let stream = source_name(&arn, |s| {
        if arn.is_string() {
            s.split('/').nth(1).unwrap_or_default().to_string()
        } else {
            s.rsplit('/').next().unwrap_or(s).to_string()
        }
    });
    let id = format!(
        "{}EventSourceMapping{}{}",
        normalized_function(func.key),
        upper_first(&ty),
        alnum(&stream)
    );
    let mut all = json!({
        "BatchSize": props.remove("BatchSize").unwrap_or(json!(10)),
        "Enabled": props.remove("Enabled").unwrap_or(json!(true)),
        "EventSourceArn": arn,
        "FunctionName": function_arn(&func.logical_id),
        "StartingPosition": props.remove("StartingPosition").unwrap_or(json!("TRIM_HORIZON")),
    });
    all.as_object_mut().unwrap().extend(props);
    if ty == "dynamodb" {
        out.dynamodb_arns.push(arn);
    } else {
        out.kinesis_arns.push(arn);
    }
    out.resources.push((
        id,
        res(
            d,
            "AWS::Lambda::EventSourceMapping",
            all,
            vec![ROLE.into()],
            f.line(),
        ),
    ));
}

fn signed(d: &mut Diags, x: Field, path: &str, key: &str, lo: i64, hi: i64) -> J {
    match &x.val.value {
        Value::Int(i) if (lo..=hi).contains(i) => json!(i),
        _ => {
            d.error(
                x.line(),
                format!("{path}.{key} must be an integer between {lo} and {hi}"),
            );
            J::Null
        }
    }
}

pub fn sns(d: &mut Diags, f: Field, path: &str, func: &Func, region: &str, out: &mut Out) {
    let mut topic_arn: Option<J> = None;
    let mut topic_name: Option<String> = None;
    let mut sub_region: Option<String> = None;
    let (mut filter, mut scope, mut display, mut redrive) = (None, None, None, None);
    match &f.val.value {
        Value::Str(s) if f.val.tag.is_none() => {
            if s.starts_with("arn:") {
                topic_name = s.rsplit(':').next().map(str::to_string);
                topic_arn = Some(json!(s));
            } else {
                topic_name = Some(s.clone());
            }
        }
        Value::Map(_) if f.val.tag.is_none() => {
            let Some(sf) = fields(
                d,
                f.val,
                path,
                &[
                    "arn",
                    "topicName",
                    "displayName",
                    "filterPolicy",
                    "filterPolicyScope",
                    "redrivePolicy",
                ],
            ) else {
                return;
            };
            if let Some(a) = sf.get("arn") {
                let v = arn_value(d, *a, &join(path, "arn"));
                if let Some(s) = v.as_ref().and_then(J::as_str) {
                    let parts: Vec<&str> = s.split(':').collect();
                    topic_name = parts.last().map(|x| x.to_string());
                    if parts.get(3).is_some_and(|r| *r != region) {
                        sub_region = parts.get(3).map(|x| x.to_string());
                    }
                }
                topic_arn = v;
            }
            if let Some(x) = sf.get("topicName") {
                topic_name = fields::string(d, *x, &join(path, "topicName"));
            }
            if let Some(x) = sf.get("displayName") {
                display = fields::string(d, *x, &join(path, "displayName"));
            }
            filter = sf.get("filterPolicy").map(|x| x.val.to_json());
            if let Some(x) = sf.get("filterPolicyScope") {
                match x.val.as_str() {
                    Some(s @ ("MessageAttributes" | "MessageBody")) => scope = Some(s.to_string()),
                    _ => d.error(
                        x.line(),
                        format!(
                            "{path}.filterPolicyScope must be MessageAttributes or MessageBody"
                        ),
                    ),
                }
            }
            if let Some(x) = sf.get("redrivePolicy") {
                redrive = redrive_policy(d, *x, &join(path, "redrivePolicy"));
                if redrive.is_none() {
                    return;
                }
            }
        }
        _ => {
            d.error(
                f.line(),
                format!("{path} must be a topic name, an ARN or a mapping"),
            );
            return;
        }
    }
    let Some(topic_name) = topic_name else {
        d.error(
            f.line(),
            format!("{path}.topicName is required when arn is an intrinsic function"),
        );
        return;
    };
    let nf = normalized_function(func.key);
    let nt = alnum(&topic_name);
    let endpoint = function_arn(&func.logical_id);
    let sub_id = format!("{nf}SnsSubscription{nt}");
    let redrive_json = redrive
        .as_ref()
        .map(|r| json!({"deadLetterTargetArn": r.arn}));
    let topic_arn = match topic_arn {
        Some(arn) => {
            out.resources.push((
                sub_id,
                res(
                    d,
                    "AWS::SNS::Subscription",
                    compact(json!({
                        "TopicArn": arn,
                        "Protocol": "lambda",
                        "Endpoint": endpoint,
                        "FilterPolicy": filter,
                        "FilterPolicyScope": scope,
                        "RedrivePolicy": redrive_json,
                        "Region": sub_region,
                    })),
                    vec![],
                    f.line(),
                ),
            ));
            arn
        }
        None => {
            let topic_id = format!("SNSTopic{nt}");
            if !out.resources.iter().any(|(id, _)| *id == topic_id) {
                let mut props = json!({"TopicName": topic_name});
                if let Some(dn) = &display {
                    props["DisplayName"] = json!(dn);
                }
                out.resources.push((
                    topic_id.clone(),
                    res(d, "AWS::SNS::Topic", props, vec![], f.line()),
                ));
            }
            if filter.is_some() || redrive_json.is_some() {
                out.resources.push((
                    sub_id,
                    res(
                        d,
                        "AWS::SNS::Subscription",
                        compact(json!({
                            "Endpoint": endpoint,
                            "Protocol": "lambda",
                            "TopicArn": {"Ref": topic_id},
                            "FilterPolicy": filter,
                            "FilterPolicyScope": scope,
                            "RedrivePolicy": redrive_json,
                        })),
                        vec![],
                        f.line(),
                    ),
                ));
            } else {
                let topic = out
                    .resources
                    .iter_mut()
                    .find(|(id, _)| *id == topic_id)
                    .map(|(_, r)| r)
                    .expect("pushed above");
                let subs = topic
                    .properties
                    .as_object_mut()
                    .unwrap()
                    .entry("Subscription")
                    .or_insert_with(|| json!([]));
                subs.as_array_mut()
                    .unwrap()
                    .push(json!({"Endpoint": endpoint, "Protocol": "lambda"}));
            }
            regional_arn("sns", json!(topic_name))
        }
    };
    if let Some(r) = redrive {
        let policy_id = format!("{nt}To{nf}DLQPolicy");
        out.resources.push((
            policy_id.clone(),
            res(
                d,
                "AWS::SQS::QueuePolicy",
                json!({
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Id": policy_id,
                        "Statement": [{
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": r.arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                        }],
                    },
                    "Queues": [r.url],
                }),
                vec![],
                f.line(),
            ),
        ));
    }
    out.resources.push((
        format!("{nf}LambdaPermission{nt}SNS"),
        res(
            d,
            "AWS::Lambda::Permission",
            json!({
                "FunctionName": endpoint,
                "Action": "lambda:InvokeFunction",
                "Principal": "sns.amazonaws.com",
                "SourceArn": topic_arn,
            }),
            vec![],
            f.line(),
        ),
    ));
}

struct Redrive {
    arn: J,
    url: J,
}

fn redrive_policy(d: &mut Diags, f: Field, path: &str) -> Option<Redrive> {
    let rf = fields(
        d,
        f.val,
        path,
        &[
            "deadLetterTargetArn",
            "deadLetterTargetRef",
            "deadLetterTargetImport",
        ],
    )?;
    if let Some(x) = rf.get("deadLetterTargetArn") {
        let arn = fields::string(d, *x, &join(path, "deadLetterTargetArn"))?;
        let parts: Vec<&str> = arn.rsplit(':').collect();
        let (name, account, region) = (parts[0], parts.get(1)?, parts.get(2)?);
        return Some(Redrive {
            url: json!({"Fn::Join": ["", [format!("https://sqs.{region}."), {"Ref": "AWS::URLSuffix"}, format!("/{account}/{name}")]]}),
            arn: json!(arn),
        });
    }
    if let Some(x) = rf.get("deadLetterTargetRef") {
        let r = fields::string(d, *x, &join(path, "deadLetterTargetRef"))?;
        return Some(Redrive {
            arn: json!({"Fn::GetAtt": [r, "Arn"]}),
            url: json!({"Ref": r}),
        });
    }
    if let Some(x) = rf.get("deadLetterTargetImport") {
        let ip = join(path, "deadLetterTargetImport");
        let xf = fields(d, x.val, &ip, &["arn", "url"])?;
        let (Some(a), Some(u)) = (xf.get("arn"), xf.get("url")) else {
            d.error(x.line(), format!("{ip} needs arn and url"));
            return None;
        };
        return Some(Redrive {
            arn: json!({"Fn::ImportValue": fields::string(d, *a, &join(&ip, "arn"))?}),
            url: json!({"Fn::ImportValue": fields::string(d, *u, &join(&ip, "url"))?}),
        });
    }
    d.error(
        f.line(),
        format!("{path} needs deadLetterTargetArn, deadLetterTargetRef or deadLetterTargetImport"),
    );
    None
}

/// `s3` events. New buckets are gathered across every function and emitted by
/// [`finish`]; `provider_s3` is `provider.s3` (bucket name and properties by
/// reference).
pub fn s3(
    d: &mut Diags,
    f: Field,
    path: &str,
    func: &Func,
    provider_s3: &BTreeMap<String, Node>,
    out: &mut Out,
) {
    let mut event = "s3:ObjectCreated:*".to_string();
    let mut rules: Vec<(String, J)> = Vec::new();
    let mut existing = false;
    let bucket: J = match &f.val.value {
        Value::Str(s) if f.val.tag.is_none() => json!(s),
        Value::Map(_) if f.val.tag.is_none() => {
            let Some(sf) = fields(
                d,
                f.val,
                path,
                &["bucket", "event", "existing", "forceDeploy", "rules"],
            ) else {
                return;
            };
            if let Some(x) = sf.get("event") {
                match fields::string(d, *x, &join(path, "event")) {
                    Some(e) if e.starts_with("s3:") => event = e,
                    Some(e) => d.error(x.line(), format!("{path}.event {e:?} must start with s3:")),
                    None => return,
                }
            }
            if let Some(x) = sf.get("existing") {
                existing = fields::boolean(d, *x, &join(path, "existing")).unwrap_or(false);
            }
            if let Some(x) = sf.get("rules") {
                let rp = join(path, "rules");
                for (i, r) in x.val.as_seq().unwrap_or(&[]).iter().enumerate() {
                    match r.as_map() {
                        Some([(k, v)]) if matches!(k.as_str(), Some("prefix" | "suffix")) => {
                            rules.push((k.as_str().unwrap().to_string(), cfn::to_cfn(v, d)));
                        }
                        _ => d.error(
                            r.pos.line,
                            format!("{rp}[{i}] must be {{prefix: …}} or {{suffix: …}}"),
                        ),
                    }
                }
                if x.val.as_seq().is_none() {
                    d.error(x.line(), format!("{rp} must be a list"));
                }
            }
            match sf.get("bucket") {
                Some(b) => cfn::to_cfn(b.val, d),
                None => {
                    d.error(f.line(), format!("{path}.bucket is required"));
                    return;
                }
            }
        }
        _ => {
            d.error(
                f.line(),
                format!("{path} must be a bucket name or a mapping"),
            );
            return;
        }
    };
    if existing {
        let id = format!("{}CustomS31", normalized_function(func.key));
        let rules: Vec<J> = rules
            .iter()
            .map(|(k, v)| json!({ upper_first(k): v }))
            .collect();
        let config = json!({"Event": event, "Rules": rules});
        if let Some((_, r)) = out.resources.iter_mut().find(|(i, _)| *i == id) {
            if r.properties["BucketName"] != bucket {
                d.error(
                    f.line(),
                    format!("{path}: only one existing bucket per function (as the Framework)"),
                );
                return;
            }
            r.properties["BucketConfigs"]
                .as_array_mut()
                .unwrap()
                .push(config);
            return;
        }
        out.resources.push((
            id,
            res(
                d,
                "Custom::S3",
                json!({"FunctionName": func.name, "BucketName": bucket, "BucketConfigs": [config]}),
                vec![func.logical_id.clone()],
                f.line(),
            ),
        ));
        return;
    }
    let Some(reference) = bucket.as_str().map(str::to_string) else {
        d.error(
            f.line(),
            format!("{path}.bucket: an intrinsic function needs existing: true (as the Framework)"),
        );
        return;
    };
    let (name, from_provider) = match provider_s3.get(&reference) {
        Some(n) => (
            n.get("name")
                .and_then(Node::scalar_text)
                .unwrap_or_else(|| reference.clone()),
            true,
        ),
        None => (reference.clone(), false),
    };
    if !valid_bucket_name(&name) {
        d.error(f.line(), format!("{path}: bucket name {name:?} must be 3 to 63 lowercase letters, digits, dots or hyphens"));
        return;
    }
    let mut config = json!({"Event": event, "Function": function_arn(&func.logical_id)});
    if !rules.is_empty() {
        let r: Vec<J> = rules
            .iter()
            .map(|(k, v)| json!({"Name": k, "Value": v}))
            .collect();
        config["Filter"] = json!({"S3Key": {"Rules": r}});
    }
    let perm_ref = if from_provider { &reference } else { &name };
    let perm_id = format!(
        "{}LambdaPermission{}S3",
        normalized_function(func.key),
        alnum(perm_ref)
    );
    match out.buckets.iter_mut().find(|b| b.name == name) {
        Some(b) => {
            b.configs.push(config);
            if !b.permissions.contains(&perm_id) {
                b.permissions.push(perm_id.clone());
            }
        }
        None => out.buckets.push(NewBucket {
            name: name.clone(),
            reference: from_provider.then(|| reference.clone()),
            line: f.line(),
            configs: vec![config],
            permissions: vec![perm_id.clone()],
        }),
    }
    if !out.resources.iter().any(|(i, _)| *i == perm_id) {
        out.resources.push((
            perm_id,
            res(
                d,
                "AWS::Lambda::Permission",
                json!({
                    "FunctionName": function_arn(&func.logical_id),
                    "Action": "lambda:InvokeFunction",
                    "Principal": "s3.amazonaws.com",
                    "SourceArn": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, format!(":s3:::{name}")]]},
                    "SourceAccount": {"Ref": "AWS::AccountId"},
                }),
                vec![],
                f.line(),
            ),
        ));
    }
}

fn valid_bucket_name(n: &str) -> bool {
    (3..=63).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

#[allow(clippy::too_many_arguments)]
pub fn event_bridge(d: &mut Diags, f: Field, path: &str, func: &Func, index: usize, out: &mut Out) {
    let Some(ef) = fields(
        d,
        f.val,
        path,
        &[
            "eventBus",
            "schedule",
            "name",
            "description",
            "enabled",
            "pattern",
            "input",
            "inputPath",
            "inputTransformer",
            "retryPolicy",
            "deadLetterQueueArn",
        ],
    ) else {
        return;
    };
    let pattern = ef.get("pattern").map(|p| p.val.to_json());
    let schedule = ef
        .get("schedule")
        .and_then(|x| fields::string(d, *x, &join(path, "schedule")));
    if pattern.is_none() && schedule.is_none() {
        d.error(f.line(), format!("{path} needs pattern or schedule"));
        return;
    }
    if let (Some(s), Some(x)) = (&schedule, ef.get("schedule")) {
        if let Err(e) = crate::schedule::check(s) {
            d.error(x.line(), format!("{path}.schedule: {e}"));
            return;
        }
    }
    let n_inputs = ["input", "inputPath", "inputTransformer"]
        .iter()
        .filter(|k| ef.contains_key(**k))
        .count();
    if n_inputs > 1 {
        d.error(
            f.line(),
            format!("{path}: only one of input, inputPath or inputTransformer"),
        );
        return;
    }
    let rule_name = match ef.get("name") {
        Some(x) => match fields::string(d, *x, &join(path, "name")) {
            Some(n) => n,
            None => return,
        },
        None => hash_name_if_long(
            &format!("{}-rule-{index}", func.name),
            &format!("rule-{index}"),
        ),
    };
    let state = match ef.get("enabled") {
        Some(x) if fields::boolean(d, *x, &join(path, "enabled")) == Some(false) => "DISABLED",
        _ => "ENABLED",
    };
    let mut target = json!({
        "Arn": function_arn(&func.logical_id),
        "Id": hash_name_if_long(&format!("{rule_name}-target"), "target"),
    });
    if let Some(x) = ef.get("retryPolicy") {
        let rp = join(path, "retryPolicy");
        if let Some(rf) = fields(d, x.val, &rp, &["maximumEventAge", "maximumRetryAttempts"]) {
            target["RetryPolicy"] = compact(json!({
                "MaximumEventAgeInSeconds": rf.get("maximumEventAge").and_then(|v| fields::int(d, *v, &join(&rp, "maximumEventAge"), 60, 86400)),
                "MaximumRetryAttempts": rf.get("maximumRetryAttempts").and_then(|v| fields::int(d, *v, &join(&rp, "maximumRetryAttempts"), 0, 185)),
            }));
        }
    }
    if let Some(x) = ef.get("deadLetterQueueArn") {
        if let Some(a) = arn_value(d, *x, &join(path, "deadLetterQueueArn")) {
            target["DeadLetterConfig"] = json!({"Arn": a});
        }
    }
    if let Some(x) = ef.get("input") {
        target["Input"] = json!(x.val.to_json().to_string());
    } else if let Some(x) = ef.get("inputPath") {
        target["InputPath"] = json!(fields::string(d, *x, &join(path, "inputPath")));
    } else if let Some(x) = ef.get("inputTransformer") {
        let tp = join(path, "inputTransformer");
        if let Some(tf) = fields(d, x.val, &tp, &["inputPathsMap", "inputTemplate"]) {
            let Some(t) = tf.get("inputTemplate") else {
                d.error(x.line(), format!("{tp}.inputTemplate is required"));
                return;
            };
            target["InputTransformer"] = compact(json!({
                "InputPathsMap": tf.get("inputPathsMap").map(|m| m.val.to_json()),
                "InputTemplate": fields::string(d, *t, &join(&tp, "inputTemplate")),
            }));
        }
    }
    // The bus: a name the app creates, `default`, an ARN or an intrinsic (existing).
    let bus_val = ef.get("eventBus").map(|b| cfn::to_cfn(b.val, d));
    let (bus_name, create): (Option<J>, bool) = match &bus_val {
        None => (None, false),
        Some(J::String(s)) if s.starts_with("arn") => {
            (Some(json!(s[s.find('/').map_or(0, |i| i + 1)..])), false)
        }
        Some(J::String(s)) => (Some(json!(s)), s != "default"),
        Some(other) => (Some(other.clone()), false),
    };
    let mut depends_on = Vec::new();
    if create {
        let name = bus_name
            .as_ref()
            .and_then(J::as_str)
            .unwrap_or_default()
            .to_string();
        let bus_id = format!("{}EventBridgeEventBus", normalized_function(&name));
        if !out.resources.iter().any(|(i, _)| *i == bus_id) {
            out.resources.push((
                bus_id.clone(),
                res(
                    d,
                    "AWS::Events::EventBus",
                    json!({"Name": name}),
                    vec![],
                    f.line(),
                ),
            ));
        }
        depends_on.push(bus_id);
    }
    let rule_props = compact(json!({
        "Description": ef.get("description").and_then(|x| fields::string(d, *x, &join(path, "description"))),
        "EventBusName": bus_name.clone().filter(|b| b.as_str() != Some("default")),
        "EventPattern": pattern,
        "Name": rule_name,
        "ScheduleExpression": schedule,
        "State": state,
        "Targets": [target],
    }));
    let stub = format!("{}-rule-{index}", func.name);
    out.resources.push((
        format!("{}EventBridgeRule", alnum(&stub)),
        res(d, "AWS::Events::Rule", rule_props, depends_on, f.line()),
    ));
    let mut arn_path = vec![json!("rule")];
    if let Some(b) = &bus_name {
        arn_path.push(b.clone());
    }
    arn_path.push(json!(rule_name));
    out.resources.push((
        format!(
            "{}EventBridgeLambdaPermission{index}",
            normalized_function(func.key)
        ),
        res(
            d,
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunction",
                "FunctionName": function_arn(&func.logical_id),
                "Principal": "events.amazonaws.com",
                "SourceArn": {"Fn::Join": [":", [
                    "arn", {"Ref": "AWS::Partition"}, "events", {"Ref": "AWS::Region"},
                    {"Ref": "AWS::AccountId"}, {"Fn::Join": ["/", arn_path]}
                ]]},
            }),
            vec![],
            f.line(),
        ),
    ));
}

/// The Framework's `hashName` for names over 64 characters.
fn hash_name_if_long(name: &str, suffix: &str) -> String {
    if name.len() <= 64 {
        return name.to_string();
    }
    let digest = Md5::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let keep = 31usize.saturating_sub(suffix.len());
    format!("{}{hex}-{suffix}", &name[..keep.min(name.len())])
}

/// Emit the gathered buckets and the role's statements into `out.resources`.
pub fn finish(d: &Diags, provider_s3: &BTreeMap<String, Node>, out: &mut Out) {
    for b in std::mem::take(&mut out.buckets) {
        let mut props = Map::new();
        props.insert("BucketName".into(), json!(b.name));
        let mut notification = json!({"LambdaConfigurations": b.configs});
        if let Some(conf) = b.reference.as_ref().and_then(|r| provider_s3.get(r)) {
            for (k, v) in conf.as_map().unwrap_or(&[]) {
                let key = k.scalar_text().unwrap_or_default();
                if key == "name" {
                    continue;
                }
                if key == "notificationConfiguration" {
                    if let (J::Object(n), J::Object(given)) = (&mut notification, v.to_json()) {
                        n.extend(given);
                    }
                    continue;
                }
                props.insert(upper_first(&key), v.to_json());
            }
        }
        props.insert("NotificationConfiguration".into(), notification);
        let id = format!(
            "S3Bucket{}",
            alnum(b.reference.as_deref().unwrap_or(&b.name))
        );
        out.resources.push((
            id,
            res(
                d,
                "AWS::S3::Bucket",
                J::Object(props),
                b.permissions,
                b.line,
            ),
        ));
    }
    let statements = [
        (
            std::mem::take(&mut out.sqs_arns),
            json!([
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes"
            ]),
        ),
        (
            std::mem::take(&mut out.dynamodb_arns),
            json!([
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:DescribeStream",
                "dynamodb:ListStreams"
            ]),
        ),
        (
            std::mem::take(&mut out.kinesis_arns),
            json!([
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:DescribeStream",
                "kinesis:ListStreams"
            ]),
        ),
    ];
    for (arns, actions) in statements {
        if !arns.is_empty() {
            out.statements
                .push(json!({"Effect": "Allow", "Action": actions, "Resource": arns}));
        }
    }
}

/// `IamRoleLambdaExecution` as the Framework writes it: the log statements, the
/// user's `provider.iam.role.statements`, then what the events need.
pub fn role(service: &str, stage: &str, functions: &[String], user: Vec<J>, events: Vec<J>) -> J {
    let groups: Vec<J> = functions
        .iter()
        .map(|f| json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/{f}:*")}))
        .collect();
    let streams: Vec<J> = functions
        .iter()
        .map(|f| json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/{f}:*:*")}))
        .collect();
    let mut statements = vec![
        json!({"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:CreateLogGroup", "logs:TagResource"], "Resource": groups}),
        json!({"Effect": "Allow", "Action": ["logs:PutLogEvents"], "Resource": streams}),
    ];
    statements.extend(user);
    statements.extend(events);
    json!({
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com"]},
                "Action": ["sts:AssumeRole"],
            }],
        },
        "Policies": [{
            "PolicyName": {"Fn::Join": ["-", [service, stage, "lambda"]]},
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        }],
        "Path": "/",
        "RoleName": {"Fn::Join": ["-", [service, stage, {"Ref": "AWS::Region"}, "lambdaRole"]]},
    })
}

/// Put every generated resource into the template; a user's `resources.Resources`
/// entry with the same logical id is merged over it afterwards (the Framework's
/// way of extending what it generates).
pub fn into_template(d: &mut Diags, out: Out, t: &mut Template) {
    for (id, r) in out.resources {
        if t.resources.contains_key(&id) {
            d.error(
                r.source
                    .as_deref()
                    .and_then(|s| s.rsplit(':').next())
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
                format!("resource {id} is generated twice"),
            );
            continue;
        }
        t.resources.insert(id, r);
    }
}

/// Deep merge `over` into `base` (lodash `_.merge` on objects; other values replace).
pub fn merge(base: &mut J, over: J) {
    match (base, over) {
        (J::Object(b), J::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (J::Array(b), J::Array(o)) => {
            for (i, v) in o.into_iter().enumerate() {
                match b.get_mut(i) {
                    Some(slot) => merge(slot, v),
                    None => b.push(v),
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_rule_names_are_hashed_as_the_framework_does() {
        let short = "svc-dev-fn-rule-1";
        assert_eq!(hash_name_if_long(short, "rule-1"), short);
        let long = format!("{}-rule-1", "f".repeat(70));
        let h = hash_name_if_long(&long, "rule-1");
        assert!(h.starts_with(&"f".repeat(25)));
        assert!(h.ends_with("-rule-1"));
        assert_eq!(h.len(), 25 + 32 + 7);
    }
}

/// The Template for whole manifests, compared with what `sls package` writes to
/// `cloudformation-template-update-stack.json` for the same input (from the
/// Framework's compile plugins, `lib/plugins/aws/package/compile/events/`).
#[cfg(test)]
mod manifest_tests {
    use crate::{load, Level, Options};
    use serde_json::{json, Value as J};

    fn compile(manifest: &str) -> (crate::App, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("serverless.yml"), manifest).unwrap();
        std::fs::write(dir.path().join("handler.py"), "def main(e, c): pass\n").unwrap();
        let l = load(&dir.path().join("serverless.yml"), &Options::default());
        let msgs: Vec<String> = l
            .diagnostics
            .iter()
            .map(|d| {
                let s = d.to_string();
                s[s.find("serverless.yml").unwrap()..].to_string()
            })
            .collect();
        (l.app.unwrap_or_else(|| panic!("{msgs:#?}")), msgs)
    }

    fn resource(app: &crate::App, id: &str) -> J {
        let r = app
            .template
            .resources
            .get(id)
            .unwrap_or_else(|| panic!("no {id} in {:?}", app.template.resources.keys()));
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("Source");
        v
    }

    const HEAD: &str = "service: shop\nprovider:\n  name: aws\n  runtime: python3.12\nfunctions:\n  worker:\n    handler: handler.main\n    events:\n";

    #[test]
    fn sqs_event() {
        let (app, msgs) = compile(&format!(
            "{HEAD}      - sqs: arn:aws:sqs:us-east-1:000000000000:orders\n      - sqs:\n          arn: !GetAtt Jobs.Arn\n          batchSize: 5\n          maximumBatchingWindow: 10\n          functionResponseType: ReportBatchItemFailures\n          filterPatterns:\n            - body: {{kind: [big]}}\n          maximumConcurrency: 4\nresources:\n  Resources:\n    Jobs:\n      Type: AWS::SQS::Queue\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        assert_eq!(
            app.template.functions["WorkerLambdaFunction"],
            "shop-dev-worker"
        );
        assert_eq!(
            resource(&app, "WorkerEventSourceMappingSQSOrders"),
            json!({"Type": "AWS::Lambda::EventSourceMapping", "DependsOn": ["IamRoleLambdaExecution"],
                   "Properties": {"BatchSize": 10, "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:orders",
                                  "FunctionName": {"Fn::GetAtt": ["WorkerLambdaFunction", "Arn"]}, "Enabled": true}})
        );
        assert_eq!(
            resource(&app, "WorkerEventSourceMappingSQSJobs"),
            json!({"Type": "AWS::Lambda::EventSourceMapping", "DependsOn": ["IamRoleLambdaExecution"],
                   "Properties": {"BatchSize": 5, "MaximumBatchingWindowInSeconds": 10,
                                  "EventSourceArn": {"Fn::GetAtt": ["Jobs", "Arn"]},
                                  "FunctionName": {"Fn::GetAtt": ["WorkerLambdaFunction", "Arn"]}, "Enabled": true,
                                  "FunctionResponseTypes": ["ReportBatchItemFailures"],
                                  "FilterCriteria": {"Filters": [{"Pattern": "{\"body\":{\"kind\":[\"big\"]}}"}]},
                                  "ScalingConfig": {"MaximumConcurrency": 4}}})
        );
        assert_eq!(
            resource(&app, "Jobs"),
            json!({"Type": "AWS::SQS::Queue", "Properties": {}})
        );
        // The role carries what the mappings need, for the least-privilege issue.
        let role = resource(&app, "IamRoleLambdaExecution");
        let statements = &role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
        assert_eq!(
            statements.as_array().unwrap().last().unwrap(),
            &json!({"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                    "Resource": ["arn:aws:sqs:us-east-1:000000000000:orders", {"Fn::GetAtt": ["Jobs", "Arn"]}]})
        );
        assert_eq!(
            role["Properties"]["Policies"][0]["PolicyName"],
            json!({"Fn::Join": ["-", ["shop", "dev", "lambda"]]})
        );
    }

    #[test]
    fn sns_event() {
        let (app, msgs) = compile(&format!(
            "{HEAD}      - sns: orders\n      - sns:\n          topicName: audit\n          filterPolicy: {{kind: [refund]}}\n          filterPolicyScope: MessageBody\n      - sns: arn:aws:sns:eu-west-1:000000000000:ext\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        let fn_arn = json!({"Fn::GetAtt": ["WorkerLambdaFunction", "Arn"]});
        let arn_of = |t: &str| json!({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":sns:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, ":", t]]});
        // A topic without a filter: the subscription is the topic's own property.
        assert_eq!(
            resource(&app, "SNSTopicOrders"),
            json!({"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "orders",
                   "Subscription": [{"Endpoint": fn_arn, "Protocol": "lambda"}]}})
        );
        assert_eq!(
            resource(&app, "WorkerLambdaPermissionOrdersSNS"),
            json!({"Type": "AWS::Lambda::Permission", "Properties": {"FunctionName": fn_arn,
                   "Action": "lambda:InvokeFunction", "Principal": "sns.amazonaws.com", "SourceArn": arn_of("orders")}})
        );
        // With a filter policy: a separate subscription.
        assert_eq!(
            resource(&app, "SNSTopicAudit"),
            json!({"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "audit"}})
        );
        assert_eq!(
            resource(&app, "WorkerSnsSubscriptionAudit"),
            json!({"Type": "AWS::SNS::Subscription", "Properties": {"Endpoint": fn_arn, "Protocol": "lambda",
                   "TopicArn": {"Ref": "SNSTopicAudit"}, "FilterPolicy": {"kind": ["refund"]},
                   "FilterPolicyScope": "MessageBody"}})
        );
        // By ARN: a subscription only (`Region` only in the `arn:` mapping form,
        // as the Framework).
        assert_eq!(
            resource(&app, "WorkerSnsSubscriptionExt"),
            json!({"Type": "AWS::SNS::Subscription", "Properties": {"TopicArn": "arn:aws:sns:eu-west-1:000000000000:ext",
                   "Protocol": "lambda", "Endpoint": fn_arn}})
        );
        assert!(!app.template.resources.contains_key("SNSTopicExt"));
    }

    #[test]
    fn s3_event() {
        let (app, msgs) = compile(&format!(
            "{HEAD}      - s3: shop-uploads\n      - s3:\n          bucket: shop-uploads\n          event: s3:ObjectRemoved:*\n          rules:\n            - prefix: in/\n            - suffix: .jpg\n      - s3:\n          bucket: legacy-bucket\n          existing: true\n          rules:\n            - prefix: a/\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        let fn_arn = json!({"Fn::GetAtt": ["WorkerLambdaFunction", "Arn"]});
        assert_eq!(
            resource(&app, "S3BucketShopuploads"),
            json!({"Type": "AWS::S3::Bucket", "DependsOn": ["WorkerLambdaPermissionShopuploadsS3"],
                   "Properties": {"BucketName": "shop-uploads", "NotificationConfiguration": {"LambdaConfigurations": [
                       {"Event": "s3:ObjectCreated:*", "Function": fn_arn},
                       {"Event": "s3:ObjectRemoved:*", "Function": fn_arn, "Filter": {"S3Key": {"Rules": [
                           {"Name": "prefix", "Value": "in/"}, {"Name": "suffix", "Value": ".jpg"}]}}}]}}})
        );
        assert_eq!(
            resource(&app, "WorkerLambdaPermissionShopuploadsS3"),
            json!({"Type": "AWS::Lambda::Permission", "Properties": {"FunctionName": fn_arn,
                   "Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com",
                   "SourceArn": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::shop-uploads"]]},
                   "SourceAccount": {"Ref": "AWS::AccountId"}}})
        );
        assert_eq!(
            resource(&app, "WorkerCustomS31"),
            json!({"Type": "Custom::S3", "DependsOn": ["WorkerLambdaFunction"], "Properties": {
                   "FunctionName": "shop-dev-worker", "BucketName": "legacy-bucket",
                   "BucketConfigs": [{"Event": "s3:ObjectCreated:*", "Rules": [{"Prefix": "a/"}]}]}})
        );
    }

    #[test]
    fn stream_event() {
        let (app, msgs) = compile(&format!(
            "{HEAD}      - stream:\n          type: dynamodb\n          arn: !GetAtt Users.StreamArn\n          batchSize: 2\n          startingPosition: LATEST\n          maximumRetryAttempts: 1\n          bisectBatchOnFunctionError: true\n          destinations:\n            onFailure: arn:aws:sqs:us-east-1:000000000000:dlq\n          filterPatterns:\n            - eventName: [INSERT]\n          parallelizationFactor: 2\n          tumblingWindowInSeconds: 30\n      - stream: arn:aws:kinesis:us-east-1:000000000000:stream/clicks\nresources:\n  Resources:\n    Users:\n      Type: AWS::DynamoDB::Table\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        let fn_arn = json!({"Fn::GetAtt": ["WorkerLambdaFunction", "Arn"]});
        assert_eq!(
            resource(&app, "WorkerEventSourceMappingDynamodbUsers"),
            json!({"Type": "AWS::Lambda::EventSourceMapping", "DependsOn": ["IamRoleLambdaExecution"],
                   "Properties": {"BatchSize": 2, "Enabled": true, "EventSourceArn": {"Fn::GetAtt": ["Users", "StreamArn"]},
                   "FunctionName": fn_arn, "ParallelizationFactor": 2, "StartingPosition": "LATEST",
                   "MaximumRetryAttempts": 1, "BisectBatchOnFunctionError": true, "TumblingWindowInSeconds": 30,
                   "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:dlq"}},
                   "FilterCriteria": {"Filters": [{"Pattern": "{\"eventName\":[\"INSERT\"]}"}]}}})
        );
        assert_eq!(
            resource(&app, "WorkerEventSourceMappingKinesisClicks"),
            json!({"Type": "AWS::Lambda::EventSourceMapping", "DependsOn": ["IamRoleLambdaExecution"],
                   "Properties": {"BatchSize": 10, "Enabled": true,
                   "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/clicks",
                   "FunctionName": fn_arn, "StartingPosition": "TRIM_HORIZON"}})
        );
    }

    #[test]
    fn event_bridge_event() {
        let (app, msgs) = compile(&format!(
            "{HEAD}      - sqs: arn:aws:sqs:us-east-1:000000000000:q\n      - eventBridge:\n          eventBus: orders-bus\n          pattern:\n            source: [shop.orders]\n          inputTransformer:\n            inputPathsMap: {{id: $.detail.id}}\n            inputTemplate: '{{\"order\": <id>}}'\n      - eventBridge:\n          schedule: rate(1 hour)\n          input: {{key: v}}\n"
        ));
        assert!(msgs.is_empty(), "{msgs:?}");
        let fn_arn = json!({"Fn::GetAtt": ["WorkerLambdaFunction", "Arn"]});
        assert_eq!(
            resource(&app, "OrdersDashbusEventBridgeEventBus"),
            json!({"Type": "AWS::Events::EventBus", "Properties": {"Name": "orders-bus"}})
        );
        // The index counts every event of the function (the sqs one is 1).
        assert_eq!(
            resource(&app, "Shopdevworkerrule2EventBridgeRule"),
            json!({"Type": "AWS::Events::Rule", "DependsOn": ["OrdersDashbusEventBridgeEventBus"], "Properties": {
                   "EventBusName": "orders-bus", "EventPattern": {"source": ["shop.orders"]},
                   "Name": "shop-dev-worker-rule-2", "State": "ENABLED",
                   "Targets": [{"Arn": fn_arn, "Id": "shop-dev-worker-rule-2-target",
                                "InputTransformer": {"InputPathsMap": {"id": "$.detail.id"}, "InputTemplate": "{\"order\": <id>}"}}]}})
        );
        assert_eq!(
            resource(&app, "WorkerEventBridgeLambdaPermission2"),
            json!({"Type": "AWS::Lambda::Permission", "Properties": {"Action": "lambda:InvokeFunction",
                   "FunctionName": fn_arn, "Principal": "events.amazonaws.com",
                   "SourceArn": {"Fn::Join": [":", ["arn", {"Ref": "AWS::Partition"}, "events", {"Ref": "AWS::Region"},
                                 {"Ref": "AWS::AccountId"}, {"Fn::Join": ["/", ["rule", "orders-bus", "shop-dev-worker-rule-2"]]}]]}}})
        );
        assert_eq!(
            resource(&app, "Shopdevworkerrule3EventBridgeRule"),
            json!({"Type": "AWS::Events::Rule", "Properties": {
                   "Name": "shop-dev-worker-rule-3", "ScheduleExpression": "rate(1 hour)", "State": "ENABLED",
                   "Targets": [{"Arn": fn_arn, "Id": "shop-dev-worker-rule-3-target", "Input": "{\"key\":\"v\"}"}]}})
        );
    }

    #[test]
    fn resources_outputs_conditions_and_environment_intrinsics() {
        let (app, msgs) = compile(
            "service: shop\nprovider:\n  name: aws\n  runtime: python3.12\n  environment:\n    TABLE: !Ref Users\n    PLAIN: x\nfunctions:\n  worker:\n    handler: handler.main\n    environment:\n      QUEUE_URL: {Ref: Jobs}\n    events:\n      - s3: shop-in\nresources:\n  Conditions:\n    IsProd: !Equals ['${sls:stage}', prod]\n  Resources:\n    Users:\n      Type: AWS::DynamoDB::Table\n      DeletionPolicy: Retain\n      Condition: IsProd\n      Properties:\n        TableName: ${self:service}-users\n        BillingMode: PAY_PER_REQUEST\n        StreamSpecification: {StreamViewType: NEW_IMAGE}\n    Jobs:\n      Type: AWS::SQS::Queue\n      DependsOn: Users\n      Properties:\n        QueueName: !Sub '${AWS::StackName}-jobs'\n    S3BucketShopin:\n      Type: AWS::S3::Bucket\n      Properties:\n        VersioningConfiguration: {Status: Enabled}\n  Outputs:\n    JobsUrl:\n      Value: !Ref Jobs\n      Export:\n        Name: !Sub '${AWS::StackName}-jobs-url'\n",
        );
        assert!(msgs.is_empty(), "{msgs:?}");
        let t = &app.template;
        assert_eq!(
            t.conditions["IsProd"],
            json!({"Fn::Equals": ["dev", "prod"]})
        );
        let users = resource(&app, "Users");
        assert_eq!(users["DeletionPolicy"], "Retain");
        assert_eq!(users["Condition"], "IsProd");
        assert_eq!(users["Properties"]["TableName"], "shop-users");
        assert_eq!(resource(&app, "Jobs")["DependsOn"], json!(["Users"]));
        assert_eq!(
            resource(&app, "Jobs")["Properties"]["QueueName"],
            json!({"Fn::Sub": "${AWS::StackName}-jobs"})
        );
        // A resource with a generated bucket's logical id extends it.
        let bucket = resource(&app, "S3BucketShopin");
        assert_eq!(bucket["Properties"]["BucketName"], "shop-in");
        assert_eq!(
            bucket["Properties"]["VersioningConfiguration"],
            json!({"Status": "Enabled"})
        );
        assert!(
            bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"].is_array()
        );
        assert_eq!(t.outputs["JobsUrl"].value, json!({"Ref": "Jobs"}));
        assert_eq!(
            t.outputs["JobsUrl"].export,
            Some(json!({"Fn::Sub": "${AWS::StackName}-jobs-url"}))
        );
        // Variables needing a resource go to the engine, the rest to the function.
        let f = &app.functions[0];
        assert_eq!(f.environment.get("PLAIN").map(String::as_str), Some("x"));
        assert!(!f.environment.contains_key("TABLE"));
        assert_eq!(
            t.function_environment["WorkerLambdaFunction"],
            [
                ("QUEUE_URL".to_string(), json!({"Ref": "Jobs"})),
                ("TABLE".to_string(), json!({"Ref": "Users"}))
            ]
            .into()
        );
        assert_eq!(
            t.resources["Users"].source.as_deref(),
            Some("serverless.yml:19")
        );
    }

    #[test]
    fn what_cannot_be_compiled_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!("{HEAD}      - s3:\n          bucket: !Ref B\n      - stream: !GetAtt T.StreamArn\n      - eventBridge:\n          description: no pattern\n      - sns:\n          arn: !Ref T\n");
        std::fs::write(dir.path().join("serverless.yml"), manifest).unwrap();
        std::fs::write(dir.path().join("handler.py"), "").unwrap();
        let l = load(&dir.path().join("serverless.yml"), &Options::default());
        let errors: Vec<(usize, String)> = l
            .diagnostics
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| (d.line, d.message.clone()))
            .collect();
        assert_eq!(
            errors,
            [
                (9, "functions.worker.events[0].s3.bucket: an intrinsic function needs existing: true (as the Framework)".to_string()),
                (11, "functions.worker.events[1].stream: give type: dynamodb or kinesis (the ARN is an intrinsic function)".to_string()),
                (12, "functions.worker.events[2].eventBridge needs pattern or schedule".to_string()),
                (14, "functions.worker.events[3].sns.topicName is required when arn is an intrinsic function".to_string()),
            ]
        );
    }
}

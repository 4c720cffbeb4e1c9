//! The edge's authoriser: every request of a principal that is not an admin
//! is described ([`nimbus_policy::authz`]) and evaluated against the
//! principal's policies and the resource's policy; the mode decides what a
//! denial does.
//!
//! Admins (allowed everything, never evaluated): the account root (keys
//! configured without a user), and users of configured keys that are not IAM
//! users. IAM users and role sessions (function credentials, STS sessions)
//! are evaluated. A role session whose role is not in IAM is denied (audit:
//! reported) — create the role, or run with `--iam audit`.
//!
//! Resource policies are read from the services through their own
//! front-ends, as the account root would read them (S3 `GetBucketPolicy`,
//! Lambda `GetPolicy`, SQS `GetQueueAttributes Policy`, SNS
//! `GetTopicAttributes Policy`, Secrets Manager `GetResourcePolicy`), so no
//! service crate knows about IAM and a policy change applies to the next request.

use crate::{Iam, Identity, Mode};
use axum::body::Body;
use nimbus_core::{Principal, ACCOUNT_ID};
use nimbus_edge::authz::{Authorizer, AuthzFuture, AuthzRequest};
use nimbus_policy::authz::{access_denied, describe, ApiCall, Check};
use nimbus_policy::{
    evaluate, evaluate_bounded, Caller, Context, Decision, Kind, Named, Outcome, Policy, Request,
};
use nimbus_protocol::{AwsError, EdgeContext, Frontend, Protocol};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The authoriser the edge calls.
pub struct IamAuthorizer {
    iam: Iam,
    /// Front-ends by name, for reading resource policies.
    frontends: HashMap<&'static str, Arc<dyn Frontend>>,
}

impl IamAuthorizer {
    pub fn new(iam: Iam, frontends: &[Arc<dyn Frontend>]) -> Self {
        Self {
            iam,
            frontends: frontends
                .iter()
                .map(|f| (f.meta().name, f.clone()))
                .collect(),
        }
    }
}

/// The caller as the evaluator sees it: its ARN, and its role's ARN for a
/// role session.
pub fn caller(iam: &Iam, p: &Principal) -> Caller {
    let mut c = Caller::new(p.arn(), ACCOUNT_ID);
    if let Principal::AssumedRole { role, .. } = p {
        let arn = iam
            .store
            .role(role)
            .map(|r| r.arn())
            .unwrap_or_else(|| format!("arn:aws:iam::{ACCOUNT_ID}:role/{role}"));
        c.aliases.push(arn);
    }
    c
}

/// The global condition keys of a request.
pub fn global_context(
    iam: &Iam,
    p: &Principal,
    region: &str,
    source_ip: Option<std::net::IpAddr>,
) -> Context {
    let mut c = Context::new();
    let now = time::OffsetDateTime::now_utc();
    // A role session's principal ARN is its role's.
    let principal_arn = match p {
        Principal::AssumedRole { .. } => caller(iam, p).aliases.swap_remove(0),
        _ => p.arn(),
    };
    c.set("aws:PrincipalArn", principal_arn);
    c.set("aws:PrincipalAccount", ACCOUNT_ID);
    c.set("aws:RequestedRegion", region);
    c.set(
        "aws:CurrentTime",
        now.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    c.set("aws:EpochTime", now.unix_timestamp().to_string());
    // The edge listens on plain HTTP.
    c.set("aws:SecureTransport", "false");
    if let Some(ip) = source_ip {
        c.set("aws:SourceIp", ip.to_string());
    }
    match p {
        Principal::Root => {
            c.set("aws:PrincipalType", "Account");
            c.set("aws:userid", ACCOUNT_ID);
        }
        Principal::User(name) => {
            c.set("aws:PrincipalType", "User");
            c.set("aws:username", name.clone());
            let id = iam.store.user(name).map(|u| u.id).unwrap_or_default();
            c.set("aws:userid", id);
        }
        Principal::AssumedRole { role, session } => {
            c.set("aws:PrincipalType", "AssumedRole");
            let id = iam
                .store
                .role(role)
                .map(|r| r.id)
                .unwrap_or_else(|| nimbus_auth::role_id(role));
            c.set("aws:userid", format!("{id}:{session}"));
            c.set("aws:RoleSessionName", session.clone());
        }
        Principal::FederatedUser { name, .. } => {
            c.set("aws:PrincipalType", "FederatedUser");
            c.set("aws:userid", format!("{ACCOUNT_ID}:{name}"));
        }
    }
    c
}

/// The outcome of evaluating one request (all its checks).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub allowed: bool,
    /// The first failing check and its decision.
    pub failed: Option<(Check, Decision, String)>,
    /// The role a role session names is not in IAM.
    pub missing_role: Option<String>,
}

impl Authorizer for IamAuthorizer {
    fn wants(&self, principal: &Principal, verified: bool) -> bool {
        match self.iam.mode {
            Mode::Off => false,
            _ if *principal == Principal::Root => false,
            // Only a verified signature proves who calls (enforce needs credentials).
            Mode::Audit | Mode::Enforce => verified,
        }
    }

    fn authorize<'a>(&'a self, req: AuthzRequest<'a>) -> AuthzFuture<'a> {
        Box::pin(async move {
            let identity = self.iam.store.identity(req.principal, req.access_key_id);
            if matches!(identity, Identity::Admin) {
                return Ok(());
            }
            let parts = req.parts;
            let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
            let path = parts.uri.path();
            let query = parts.uri.query().unwrap_or("");
            let host_bucket = if req.service == "s3" {
                header("host").and_then(nimbus_svc_s3::addressing::virtual_host_bucket)
            } else {
                None
            };
            let rest_op = match req.service {
                "s3" => rest_name::<nimbus_svc_s3::Op>(parts, host_bucket),
                "sesv2" => rest_name::<nimbus_svc_sesv2::Op>(parts, None),
                _ => None,
            };
            let call = ApiCall {
                service: req.service,
                operation: rest_op,
                method: parts.method.as_str(),
                path,
                query,
                target: header("x-amz-target"),
                bucket_from_host: host_bucket,
                copy_source: header("x-amz-copy-source"),
                body: req.body,
                region: req.region,
                account: ACCOUNT_ID,
            };
            let described = describe(&call);
            let caller = caller(&self.iam, req.principal);
            let global = global_context(
                &self.iam,
                req.principal,
                req.region,
                req.peer.map(|p| p.ip()),
            );
            let verdict = match &identity {
                Identity::MissingRole(role) => Verdict {
                    allowed: described.checks.is_empty(),
                    failed: described.checks.first().map(|c| {
                        let d = Decision {
                            outcome: Outcome::ImplicitDeny,
                            by: None,
                            session_denied: false,
                            boundary_denied: false,
                        };
                        (c.clone(), d, String::new())
                    }),
                    missing_role: Some(role.clone()),
                },
                Identity::Admin => unreachable!("returned above"),
                Identity::Policies { policies, session } => {
                    let boundary = self.iam.store.boundary(req.principal);
                    let mut failed = None;
                    for check in &described.checks {
                        let resource_policy = self.resource_policy(req.service, check).await;
                        let mut ctx = global.clone();
                        ctx.extend(&check.context);
                        let r = Request {
                            caller: &caller,
                            action: &check.action,
                            resource: &check.resource,
                            context: &ctx,
                        };
                        let named: Vec<Named<'_>> = policies
                            .iter()
                            .map(|(n, p)| Named { name: n, policy: p })
                            .collect();
                        let sess: Vec<Named<'_>> = session
                            .iter()
                            .map(|(n, p)| Named { name: n, policy: p })
                            .collect();
                        let rp = resource_policy
                            .as_ref()
                            .map(|(n, p)| Named { name: n, policy: p });
                        let d = evaluate_bounded(
                            &r,
                            &named,
                            rp,
                            &sess,
                            boundary.as_ref().map(|(n, p)| Named { name: n, policy: p }),
                        );
                        if !d.allowed() {
                            let msg = d.message(&r);
                            failed = Some((check.clone(), d, msg));
                            break;
                        }
                    }
                    Verdict {
                        allowed: failed.is_none(),
                        failed,
                        missing_role: None,
                    }
                }
            };
            self.iam.counters.evaluated.fetch_add(1, Ordering::Relaxed);
            if verdict.allowed {
                self.iam.counters.allowed.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let (check, decision, mut message) = verdict.failed.clone().expect("a failed check");
            if message.is_empty() {
                message = format!(
                    "User: {} is not authorized to perform: {} on resource: {} because no \
                     identity-based policy allows the {} action",
                    caller.arn, check.action, check.resource, check.action
                );
            }
            let missing = format!(
                r#"{{"Effect":"Allow","Action":"{}","Resource":"{}"}}"#,
                check.action, check.resource
            );
            let reason = match (&verdict.missing_role, decision.outcome, &decision.by) {
                (Some(role), _, _) => format!("role {role} does not exist in IAM"),
                (None, Outcome::ExplicitDeny, Some(by)) => {
                    format!("explicit deny: {} in {}", by.statement, by.policy)
                }
                _ if decision.boundary_denied => {
                    "the permissions boundary does not allow it".to_owned()
                }
                _ if decision.session_denied => "no session policy allows it".to_owned(),
                _ => "no policy allows it".to_owned(),
            };
            match self.iam.mode {
                Mode::Audit => {
                    self.iam.counters.would_deny.fetch_add(1, Ordering::Relaxed);
                    *self
                        .iam
                        .counters
                        .would_deny_by_action
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(check.action.clone())
                        .or_default() += 1;
                    tracing::warn!(
                        target: "nimbus::iam::audit",
                        request_id = req.request_id,
                        principal = %caller.arn,
                        service = req.service,
                        operation = %described.operation,
                        action = %check.action,
                        resource = %check.resource,
                        reason = %reason,
                        missing_statement = %missing,
                        "iam audit: --iam enforce would deny this request"
                    );
                    Ok(())
                }
                _ => {
                    self.iam.counters.denied.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        target: "nimbus::iam",
                        request_id = req.request_id,
                        principal = %caller.arn,
                        action = %check.action,
                        resource = %check.resource,
                        reason = %reason,
                        "iam denied a request"
                    );
                    let (code, status) = access_denied(req.service);
                    let status =
                        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::FORBIDDEN);
                    Err(AwsError::new(status, code, message))
                }
            }
        })
    }
}

/// The operation a REST request names, by the service's generated table.
fn rest_name<O: nimbus_svc_common::Operation>(
    parts: &http::request::Parts,
    host_bucket: Option<&str>,
) -> Option<&'static str> {
    // Virtual-host style: the table's paths start with the bucket.
    let owned;
    let path = match host_bucket {
        Some(b) => {
            owned = format!("/{b}{}", parts.uri.path());
            owned.as_str()
        }
        None => parts.uri.path(),
    };
    match nimbus_svc_common::decode::recognise_rest::<O>(
        &parts.method,
        path,
        parts.uri.query(),
        &parts.headers,
    ) {
        nimbus_svc_common::RestMatch::Op(op) => Some(op.name()),
        _ => None,
    }
}

/// Service-to-function invokes (an S3 notification, an SNS subscription, an
/// EventBridge rule): the function's policy must let the service principal
/// invoke it for that source, under its `aws:SourceArn`/`aws:SourceAccount`
/// conditions — as Lambda checks what `AddPermission` granted. `enforce`
/// refuses the delivery (`AccessDeniedException`, not retried); `audit` logs
/// and counts it and lets it through.
impl nimbus_triggers::sinks::InvokeCheck for IamAuthorizer {
    fn check<'a>(
        &'a self,
        function_arn: &'a str,
        source: &'a nimbus_triggers::sinks::InvokeSource,
    ) -> nimbus_triggers::BoxFuture<'a, nimbus_triggers::sinks::SinkResult<()>> {
        Box::pin(async move {
            if self.iam.mode == Mode::Off {
                return Ok(());
            }
            let check = Check {
                action: "lambda:InvokeFunction".to_owned(),
                resource: function_arn.to_owned(),
                context: Context::new(),
            };
            let policy = self.resource_policy("lambda", &check).await;
            let caller = Caller::service(source.service.clone(), ACCOUNT_ID);
            let mut ctx = Context::new();
            ctx.set("aws:SourceArn", source.source_arn.clone());
            ctx.set("aws:SourceAccount", source.source_account.clone());
            ctx.set("aws:PrincipalServiceName", source.service.clone());
            let r = Request {
                caller: &caller,
                action: &check.action,
                resource: function_arn,
                context: &ctx,
            };
            let d = evaluate(
                &r,
                &[],
                policy.as_ref().map(|(n, p)| Named { name: n, policy: p }),
                &[],
            );
            self.iam.counters.evaluated.fetch_add(1, Ordering::Relaxed);
            if d.allowed() {
                self.iam.counters.allowed.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let missing = format!(
                "aws lambda add-permission --function-name {function_arn} --action \
                 lambda:InvokeFunction --principal {} --source-arn {} --source-account {}",
                source.service, source.source_arn, source.source_account
            );
            if self.iam.mode == Mode::Audit {
                self.iam.counters.would_deny.fetch_add(1, Ordering::Relaxed);
                *self
                    .iam
                    .counters
                    .would_deny_by_action
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(check.action.clone())
                    .or_default() += 1;
                tracing::warn!(
                    target: "nimbus::iam::audit",
                    principal = %source.service,
                    source_arn = %source.source_arn,
                    action = %check.action,
                    resource = %function_arn,
                    reason = "no function policy statement allows this source",
                    missing_permission = %missing,
                    "iam audit: --iam enforce would refuse this invocation"
                );
                return Ok(());
            }
            self.iam.counters.denied.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "nimbus::iam",
                principal = %source.service,
                source_arn = %source.source_arn,
                resource = %function_arn,
                missing_permission = %missing,
                "iam refused a service's invocation of a function"
            );
            Err(nimbus_triggers::sinks::SinkError::Rejected {
                code: "AccessDeniedException".to_owned(),
                message: format!(
                    "The function policy of {function_arn} does not allow {} to invoke it \
                     for {}",
                    source.service, source.source_arn
                ),
            })
        })
    }
}

impl IamAuthorizer {
    /// The policy of the resource a check is on, read as the root through
    /// the service's front-end; `None` when it has none.
    async fn resource_policy(&self, service: &str, check: &Check) -> Option<(String, Policy)> {
        let res = check.resource.as_str();
        if service == "sts" && check.action == "sts:AssumeRole" {
            // A role's trust policy is the resource policy of sts:AssumeRole.
            let role = self.iam.store.role(res.rsplit('/').next()?)?;
            let p = self.iam.store.parsed(&role.trust_policy, Kind::Resource)?;
            return Some((format!("trust policy of {res}"), (*p).clone()));
        }
        let (fe_name, method, uri, content_type, body, target): (
            &str,
            &str,
            String,
            Option<&str>,
            String,
            Option<&str>,
        ) = match service {
            "s3" => {
                let bucket = res.strip_prefix("arn:aws:s3:::")?.split('/').next()?;
                if bucket.is_empty() {
                    return None;
                }
                (
                    "s3",
                    "GET",
                    format!("/{bucket}?policy"),
                    None,
                    String::new(),
                    None,
                )
            }
            "lambda" => {
                let name = res.split(":function:").nth(1)?.split(':').next()?;
                (
                    "lambda",
                    "GET",
                    format!("/2015-03-31/functions/{name}/policy"),
                    None,
                    String::new(),
                    None,
                )
            }
            "sqs" => {
                let mut parts = res.rsplit(':');
                let name = parts.next()?;
                let acct = parts.next()?;
                if name == "*" {
                    return None;
                }
                let url = format!("http://localhost/{acct}/{name}");
                (
                    "sqs",
                    "POST",
                    "/".to_owned(),
                    Some("application/x-amz-json-1.0"),
                    serde_json::json!({"QueueUrl": url, "AttributeNames": ["Policy"]}).to_string(),
                    Some("AmazonSQS.GetQueueAttributes"),
                )
            }
            "sns" => {
                if !res.starts_with("arn:aws:sns:") {
                    return None;
                }
                let form: String = form_encode(&[
                    ("Action", "GetTopicAttributes"),
                    ("Version", "2010-03-31"),
                    ("TopicArn", res),
                ]);
                (
                    "sns",
                    "POST",
                    "/".to_owned(),
                    Some("application/x-www-form-urlencoded"),
                    form,
                    None,
                )
            }
            "secretsmanager" => {
                if !res.starts_with("arn:") {
                    return None;
                }
                let id = res.split(":secret:").nth(1)?;
                (
                    "secretsmanager",
                    "POST",
                    "/".to_owned(),
                    Some("application/x-amz-json-1.1"),
                    serde_json::json!({ "SecretId": id }).to_string(),
                    Some("secretsmanager.GetResourcePolicy"),
                )
            }
            _ => return None,
        };
        let fe = self.frontends.get(fe_name)?;
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        if let Some(t) = target {
            b = b.header("x-amz-target", t);
        }
        let mut req = b.body(Body::from(body)).ok()?;
        req.extensions_mut().insert(EdgeContext {
            request_id: nimbus_core::new_request_id(),
            region: nimbus_core::DEFAULT_REGION.to_owned(),
            principal: Principal::Root,
            protocol: fe.meta().protocol,
        });
        if target.is_some() {
            // The JSON protocol the target implies.
            let proto = if fe_name == "sqs" {
                Protocol::AwsJson10
            } else {
                Protocol::AwsJson11
            };
            if let Some(ctx) = req.extensions_mut().get_mut::<EdgeContext>() {
                ctx.protocol = proto;
            }
        }
        let resp = fe.call(req).await;
        if !resp.status().is_success() {
            return None;
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.ok()?;
        let text = match service {
            "s3" => String::from_utf8(bytes.to_vec()).ok()?,
            "lambda" => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()?
                .get("Policy")?
                .as_str()?
                .to_owned(),
            "sqs" => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()?
                .get("Attributes")?
                .get("Policy")?
                .as_str()?
                .to_owned(),
            "secretsmanager" => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()?
                .get("ResourcePolicy")?
                .as_str()?
                .to_owned(),
            "sns" => {
                // `<entry><key>Policy</key><value>…</value></entry>`
                let xml = String::from_utf8_lossy(&bytes);
                let i = xml.find("<key>Policy</key>")?;
                let rest = &xml[i..];
                let v = rest.split("<value>").nth(1)?.split("</value>").next()?;
                xml_unescape(v)
            }
            _ => return None,
        };
        let policy = self.iam.store.parsed(&text, Kind::Resource)?;
        let name = match service {
            "s3" => "bucket policy",
            "lambda" => "function policy",
            "sqs" => "queue policy",
            "sns" => "topic policy",
            _ => "resource policy",
        };
        Some((format!("{name} of {res}"), (*policy).clone()))
    }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Whether `principal` may do `action` on `resource`, for callers inside
/// Nimbus (e.g. STS's `AssumeRole` trust check); admins may do everything.
pub fn identity_allows(
    iam: &Iam,
    principal: &Principal,
    access_key_id: Option<&str>,
    action: &str,
    resource: &str,
) -> bool {
    match iam.store.identity(principal, access_key_id) {
        Identity::Admin => true,
        Identity::MissingRole(_) => false,
        Identity::Policies { policies, session } => {
            let caller = caller(iam, principal);
            let ctx = global_context(iam, principal, nimbus_core::DEFAULT_REGION, None);
            let r = Request {
                caller: &caller,
                action,
                resource,
                context: &ctx,
            };
            let named: Vec<Named<'_>> = policies
                .iter()
                .map(|(n, p)| Named { name: n, policy: p })
                .collect();
            let sess: Vec<Named<'_>> = session
                .iter()
                .map(|(n, p)| Named { name: n, policy: p })
                .collect();
            let boundary = iam.store.boundary(principal);
            evaluate_bounded(
                &r,
                &named,
                None,
                &sess,
                boundary.as_ref().map(|(n, p)| Named { name: n, policy: p }),
            )
            .allowed()
        }
    }
}

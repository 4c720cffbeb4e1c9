//! "May this principal do this action on this resource?" — the IAM API's
//! `SimulatePrincipalPolicy` / `SimulateCustomPolicy`, the admin route
//! `GET /_nimbus/services/iam/simulate` and so `nimbus iam simulate`.

use crate::api::Params;
use crate::authorize::{caller, global_context};
use crate::ops::Op;
use crate::store::IamError;
use crate::{Iam, Identity};
use axum::response::Response;
use nimbus_core::Principal;
use nimbus_policy::{evaluate_bounded, Context, Decision, Kind, Named, Outcome, Policy, Request};
use nimbus_svc_common::admin::{AdminError, AdminRequest};
use serde_json::{json, Value};
use std::sync::Arc;

/// The principal an ARN names: a role (simulated as a session of it), a
/// user, an assumed-role session, the root.
pub fn principal_of(arn: &str) -> Option<Principal> {
    let rest = arn
        .strip_prefix("arn:aws:iam::")
        .or_else(|| arn.strip_prefix("arn:aws:sts::"))?;
    let (_, resource) = rest.split_once(':')?;
    if resource == "root" {
        return Some(Principal::Root);
    }
    if let Some(r) = resource.strip_prefix("role/") {
        return Some(Principal::AssumedRole {
            role: r.rsplit('/').next()?.to_owned(),
            session: "simulation".to_owned(),
        });
    }
    if let Some(u) = resource.strip_prefix("user/") {
        return Some(Principal::User(u.rsplit('/').next()?.to_owned()));
    }
    if let Some(s) = resource.strip_prefix("assumed-role/") {
        let (role, session) = s.split_once('/')?;
        return Some(Principal::AssumedRole {
            role: role.to_owned(),
            session: session.to_owned(),
        });
    }
    None
}

/// One simulated decision.
#[derive(Debug, Clone)]
pub struct Simulated {
    pub action: String,
    pub resource: String,
    pub decision: Decision,
    pub message: String,
    pub admin: bool,
}

/// Evaluate `action` on `resource` for `principal` (plus `extra` identity
/// policies, a `resource_policy`, and context keys).
pub fn simulate(
    iam: &Iam,
    principal: Option<&Principal>,
    extra: &[Arc<Policy>],
    resource_policy: Option<&Policy>,
    action: &str,
    resource: &str,
    context: &Context,
) -> Result<Simulated, IamError> {
    let (mut policies, session, admin) = match principal {
        None => (vec![], vec![], false),
        Some(p) => match iam.store.identity(p, None) {
            Identity::Admin => (vec![], vec![], true),
            Identity::MissingRole(r) => {
                return Err(IamError::no_such(format!(
                    "The role with name {r} cannot be found."
                )))
            }
            Identity::Policies { policies, session } => (policies, session, false),
        },
    };
    for (i, p) in extra.iter().enumerate() {
        policies.push((format!("PolicyInputList.{}", i + 1), p.clone()));
    }
    let p = principal
        .cloned()
        .unwrap_or(Principal::User("simulated".into()));
    let caller = caller(iam, &p);
    let mut ctx = global_context(iam, &p, nimbus_core::DEFAULT_REGION, None);
    ctx.extend(context);
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
    let decision = if admin {
        Decision {
            outcome: Outcome::Allow,
            by: None,
            session_denied: false,
            boundary_denied: false,
        }
    } else {
        let boundary = principal.and_then(|p| iam.store.boundary(p));
        evaluate_bounded(
            &r,
            &named,
            resource_policy.map(|p| Named {
                name: "ResourcePolicy",
                policy: p,
            }),
            &sess,
            boundary.as_ref().map(|(n, p)| Named { name: n, policy: p }),
        )
    };
    let message = if decision.allowed() {
        String::new()
    } else {
        decision.message(&r)
    };
    Ok(Simulated {
        action: action.to_owned(),
        resource: resource.to_owned(),
        decision,
        message,
        admin,
    })
}

fn parse_context(pairs: &[(String, String)]) -> Context {
    let mut c = Context::new();
    for (k, v) in pairs {
        c.set(k, v.clone());
    }
    c
}

/// `GET /_nimbus/services/iam/simulate?principal=ARN&action=A&resource=R&context=k=v…`
pub fn admin(iam: &Iam, req: &AdminRequest) -> Result<Value, AdminError> {
    let bad =
        |m: String| AdminError::new(http::StatusCode::BAD_REQUEST, "InvalidParameterValue", m);
    let arn = req
        .param("principal")
        .ok_or_else(|| bad("principal is required".into()))?;
    let action = req
        .param("action")
        .ok_or_else(|| bad("action is required".into()))?;
    let resource = req.param("resource").unwrap_or("*");
    let principal = principal_of(arn).ok_or_else(|| {
        bad(format!(
            "{arn} is not a role, user, assumed-role or root ARN"
        ))
    })?;
    let ctx: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| k == "context")
        .filter_map(|(_, v)| v.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    let s = simulate(
        iam,
        Some(&principal),
        &[],
        None,
        action,
        resource,
        &parse_context(&ctx),
    )
    .map_err(|e| AdminError::new(http::StatusCode::NOT_FOUND, e.code, e.message))?;
    Ok(json!({
        "Principal": arn,
        "Action": s.action,
        "Resource": s.resource,
        "Decision": decision_name(s.decision.outcome),
        "Admin": s.admin,
        "Statement": s.decision.by.as_ref().map(|b| json!({
            "Policy": b.policy, "Statement": b.statement,
            "Source": format!("{:?}", b.source),
        })),
        "Message": s.message,
    }))
}

fn decision_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allowed",
        Outcome::ExplicitDeny => "explicitDeny",
        Outcome::ImplicitDeny => "implicitDeny",
    }
}

/// The IAM API's two simulate operations.
pub fn api(iam: &Iam, op: Op, p: &Params, ok: &crate::api::Ok<'_>) -> Result<Response, IamError> {
    let actions = p.list("ActionNames");
    if actions.is_empty() {
        return Err(IamError::validation(
            "1 validation error detected: Value null at 'actionNames' failed to satisfy \
             constraint: Member must not be null",
        ));
    }
    let mut resources = p.list("ResourceArns");
    if resources.is_empty() {
        resources.push("*".into());
    }
    let extra: Vec<Arc<Policy>> = p
        .list("PolicyInputList")
        .iter()
        .map(|t| Policy::parse(t, Kind::Identity).map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(IamError::malformed)?;
    let resource_policy = match p.get("ResourcePolicy") {
        Some(t) => Some(Policy::resource(t).map_err(IamError::malformed)?),
        None => None,
    };
    let principal = match op {
        Op::SimulatePrincipalPolicy => {
            let arn = p.req("PolicySourceArn")?;
            Some(
                principal_of(arn)
                    .ok_or_else(|| IamError::invalid(format!("Invalid ARN: {arn}")))?,
            )
        }
        _ => {
            if extra.is_empty() {
                return Err(IamError::validation(
                    "1 validation error detected: Value null at 'policyInputList' failed to \
                     satisfy constraint: Member must not be null",
                ));
            }
            None
        }
    };
    // ContextEntries.member.N.ContextKeyName / ContextKeyValues.member.M
    let mut ctx = Context::new();
    for i in 1.. {
        let Some(name) = p.get(&format!("ContextEntries.member.{i}.ContextKeyName")) else {
            break;
        };
        let values = p.list(&format!("ContextEntries.member.{i}.ContextKeyValues"));
        ctx.set_many(name, values);
    }
    let mut results = vec![];
    for a in &actions {
        for r in &resources {
            results.push(simulate(
                iam,
                principal.as_ref(),
                &extra,
                resource_policy.as_ref(),
                a,
                r,
                &ctx,
            )?);
        }
    }
    Ok(ok(&|w| {
        w.nested("EvaluationResults", |w| {
            for s in &results {
                w.nested("member", |w| {
                    w.element("EvalActionName", &s.action)
                        .element("EvalResourceName", &s.resource)
                        .element("EvalDecision", decision_name(s.decision.outcome));
                    w.nested("MatchedStatements", |w| {
                        if let Some(b) = &s.decision.by {
                            w.nested("member", |w| {
                                w.element("SourcePolicyId", &b.policy).element(
                                    "SourcePolicyType",
                                    match b.source {
                                        nimbus_policy::Source::Resource => "resource",
                                        _ => "user",
                                    },
                                );
                            });
                        }
                    });
                    w.nested("MissingContextValues", |_| {});
                });
            }
        });
        w.element("IsTruncated", "false");
    }))
}

//! AWS's evaluation logic within one account: an explicit deny in any policy
//! wins; otherwise an allow in the identity policies or in the resource
//! policy (naming the caller) allows, limited by session policies; otherwise
//! the request is implicitly denied.

use crate::condition;
use crate::context::Context;
use crate::document::{Effect, Match, Policy, PrincipalEntry, Statement};
use crate::wildcard::{arn_like, glob};

/// Who makes the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's ARN (a user, the root, an assumed-role session).
    pub arn: String,
    /// Other ARNs a resource policy may name the caller by: the role of an
    /// assumed-role session.
    pub aliases: Vec<String>,
    /// The caller's account.
    pub account: String,
    /// A web-identity caller (`sts:AssumeRoleWithWebIdentity`): the ARN of
    /// the OIDC provider its token comes from, which a `Federated` principal
    /// names. Such a caller is no IAM principal of the account.
    pub federated: Option<String>,
    /// An AWS service acting on behalf of a resource (`s3.amazonaws.com`
    /// invoking a function for a bucket's notification), which a `Service`
    /// principal names.
    pub service: Option<String>,
}

impl Caller {
    /// A caller with no aliases.
    pub fn new(arn: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            arn: arn.into(),
            aliases: vec![],
            account: account.into(),
            federated: None,
            service: None,
        }
    }

    /// A web-identity caller holding a token of the OIDC provider
    /// `provider_arn` (`arn:aws:iam::<account>:oidc-provider/<host/path>`).
    pub fn federated(provider_arn: impl Into<String>, account: impl Into<String>) -> Self {
        let arn = provider_arn.into();
        Self {
            arn: arn.clone(),
            aliases: vec![],
            account: account.into(),
            federated: Some(arn),
            service: None,
        }
    }

    /// An AWS service principal (`sns.amazonaws.com`).
    pub fn service(name: impl Into<String>, account: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            arn: name.clone(),
            aliases: vec![],
            account: account.into(),
            federated: None,
            service: Some(name),
        }
    }
}

/// One authorisation question: may the caller do `action` on `resource`?
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub caller: &'a Caller,
    /// `service:Operation`, e.g. `sqs:SendMessage`.
    pub action: &'a str,
    /// The resource ARN, or `*` for actions on no resource.
    pub resource: &'a str,
    pub context: &'a Context,
}

/// A policy with the name it is reported by.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// e.g. `inline policy ddb of role app-role`, a managed policy's ARN,
    /// `bucket policy of photos`.
    pub name: &'a str,
    pub policy: &'a Policy,
}

/// The kinds of policy a decision names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Identity,
    Resource,
    Session,
    /// A permissions boundary (`PutRolePermissionsBoundary`).
    Boundary,
}

/// The statement that decided (or, for an implicit deny, nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deciding {
    pub source: Source,
    /// The policy's name as given in [`Named`].
    pub policy: String,
    /// The statement's `Sid`, else `Statement[i]`.
    pub statement: String,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// An evaluation's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The allowing or denying statement; `None` for an implicit deny.
    pub by: Option<Deciding>,
    /// For an implicit deny caused by session policies (the identity allowed).
    pub session_denied: bool,
    /// For an implicit deny caused by the permissions boundary (the identity
    /// or the resource policy allowed).
    pub boundary_denied: bool,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// AWS's `AccessDenied` message for this decision.
    pub fn message(&self, req: &Request<'_>) -> String {
        let head = format!(
            "User: {} is not authorized to perform: {} on resource: {}",
            req.caller.arn, req.action, req.resource
        );
        match (&self.outcome, &self.by) {
            (Outcome::ExplicitDeny, Some(d)) => match d.source {
                Source::Resource => {
                    format!("{head} with an explicit deny in a resource-based policy")
                }
                Source::Session => format!("{head} with an explicit deny in a session policy"),
                Source::Boundary => {
                    format!("{head} with an explicit deny in a permissions boundary")
                }
                Source::Identity => {
                    format!("{head} with an explicit deny in an identity-based policy")
                }
            },
            _ if self.boundary_denied => format!(
                "{head} because no permissions boundary allows the {} action",
                req.action
            ),
            _ if self.session_denied => format!(
                "{head} because no session policy allows the {} action",
                req.action
            ),
            _ => format!(
                "{head} because no identity-based policy allows the {} action",
                req.action
            ),
        }
    }
}

/// Evaluate a request against the caller's identity policies, the resource's
/// policy (if any) and session policies (if any; an allow must also be
/// allowed by them).
pub fn evaluate(
    req: &Request<'_>,
    identity: &[Named<'_>],
    resource: Option<Named<'_>>,
    session: &[Named<'_>],
) -> Decision {
    evaluate_bounded(req, identity, resource, session, None)
}

/// [`evaluate`] for a principal with a permissions boundary: an explicit deny
/// in it denies, and an allow (by an identity policy, or by a resource policy
/// naming the role or user) must also be allowed by it.
pub fn evaluate_bounded(
    req: &Request<'_>,
    identity: &[Named<'_>],
    resource: Option<Named<'_>>,
    session: &[Named<'_>],
    boundary: Option<Named<'_>>,
) -> Decision {
    let d = evaluate_unbounded(req, identity, resource, session);
    let Some(b) = boundary else { return d };
    if d.outcome == Outcome::ExplicitDeny {
        return d;
    }
    if let Some(st) = first_match(b.policy, req, Effect::Deny, false) {
        return Decision {
            outcome: Outcome::ExplicitDeny,
            by: Some(Deciding {
                source: Source::Boundary,
                policy: b.name.to_owned(),
                statement: st.label(),
            }),
            session_denied: false,
            boundary_denied: false,
        };
    }
    if d.outcome == Outcome::Allow && first_match(b.policy, req, Effect::Allow, false).is_none() {
        return Decision {
            outcome: Outcome::ImplicitDeny,
            by: None,
            session_denied: false,
            boundary_denied: true,
        };
    }
    d
}

fn evaluate_unbounded(
    req: &Request<'_>,
    identity: &[Named<'_>],
    resource: Option<Named<'_>>,
    session: &[Named<'_>],
) -> Decision {
    let deny = |source, n: &Named<'_>, st: &Statement| Decision {
        outcome: Outcome::ExplicitDeny,
        by: Some(Deciding {
            source,
            policy: n.name.to_owned(),
            statement: st.label(),
        }),
        session_denied: false,
        boundary_denied: false,
    };
    // 1. Explicit denies anywhere.
    for n in identity {
        if let Some(st) = first_match(n.policy, req, Effect::Deny, false) {
            return deny(Source::Identity, n, st);
        }
    }
    if let Some(n) = &resource {
        if let Some(st) = first_match(n.policy, req, Effect::Deny, true) {
            return deny(Source::Resource, n, st);
        }
    }
    for n in session {
        if let Some(st) = first_match(n.policy, req, Effect::Deny, false) {
            return deny(Source::Session, n, st);
        }
    }
    // 2. A resource policy naming the caller allows on its own (same account).
    if let Some(n) = &resource {
        if let Some(st) = first_match(n.policy, req, Effect::Allow, true) {
            return Decision {
                outcome: Outcome::Allow,
                by: Some(Deciding {
                    source: Source::Resource,
                    policy: n.name.to_owned(),
                    statement: st.label(),
                }),
                session_denied: false,
                boundary_denied: false,
            };
        }
    }
    // 3. Identity policies, limited by session policies.
    for n in identity {
        if let Some(st) = first_match(n.policy, req, Effect::Allow, false) {
            let by = Some(Deciding {
                source: Source::Identity,
                policy: n.name.to_owned(),
                statement: st.label(),
            });
            if !session.is_empty()
                && !session
                    .iter()
                    .any(|s| first_match(s.policy, req, Effect::Allow, false).is_some())
            {
                return Decision {
                    outcome: Outcome::ImplicitDeny,
                    by: None,
                    session_denied: true,
                    boundary_denied: false,
                };
            }
            return Decision {
                outcome: Outcome::Allow,
                by,
                session_denied: false,
                boundary_denied: false,
            };
        }
    }
    Decision {
        outcome: Outcome::ImplicitDeny,
        by: None,
        session_denied: false,
        boundary_denied: false,
    }
}

/// The first statement of `effect` in `policy` that applies to the request.
pub fn first_match<'p>(
    policy: &'p Policy,
    req: &Request<'_>,
    effect: Effect,
    check_principal: bool,
) -> Option<&'p Statement> {
    policy
        .statements
        .iter()
        .filter(|s| s.effect == effect)
        .find(|s| applies(s, policy, req, check_principal))
}

/// Does a statement apply to the request (principal, action, resource, conditions)?
pub fn applies(st: &Statement, policy: &Policy, req: &Request<'_>, check_principal: bool) -> bool {
    let v2012 = policy.version == "2012-10-17";
    if check_principal {
        match &st.principal {
            Some(Match::Any(list)) => {
                if !list.iter().any(|p| principal_matches(p, req.caller)) {
                    return false;
                }
            }
            Some(Match::Not(list)) => {
                if list.iter().any(|p| principal_matches(p, req.caller)) {
                    return false;
                }
            }
            None => return false,
        }
    }
    let action_ok = match &st.action {
        Match::Any(list) => list.iter().any(|a| glob(a, req.action, false)),
        Match::Not(list) => !list.iter().any(|a| glob(a, req.action, false)),
    };
    if !action_ok {
        return false;
    }
    let resource_matches = |pattern: &String| {
        let p = if v2012 {
            match substitute(pattern, req.context) {
                Some(p) => p,
                None => return false,
            }
        } else {
            pattern.clone()
        };
        arn_like(&p, req.resource)
    };
    let resource_ok = match &st.resource {
        None => true,
        Some(Match::Any(list)) => list.iter().any(resource_matches),
        Some(Match::Not(list)) => !list.iter().any(resource_matches),
    };
    if !resource_ok {
        return false;
    }
    st.conditions
        .iter()
        .all(|c| condition::holds(c, req.context, v2012))
}

/// Does one `Principal` entry name the caller?
pub fn principal_matches(p: &PrincipalEntry, caller: &Caller) -> bool {
    match p {
        PrincipalEntry::Everyone => true,
        PrincipalEntry::Aws(_) if caller.federated.is_some() || caller.service.is_some() => false,
        PrincipalEntry::Aws(x) => {
            let root = format!("arn:aws:iam::{}:root", caller.account);
            if *x == caller.account || *x == root {
                return true;
            }
            *x == caller.arn || caller.aliases.iter().any(|a| a == x)
        }
        // A provider is named by its ARN (or, for the well-known ones like
        // `accounts.google.com`, by its name).
        PrincipalEntry::Federated(x) => caller.federated.as_deref().is_some_and(|f| {
            f == x
                || f.split_once(":oidc-provider/")
                    .is_some_and(|(_, name)| name == x)
        }),
        PrincipalEntry::Service(x) => caller.service.as_deref() == Some(x.as_str()),
        PrincipalEntry::CanonicalUser(_) => false,
    }
}

/// Replace policy variables (`${aws:username}`, `${key, 'default'}`, and the
/// escapes `${*}`, `${?}`, `${$}`) with the context's values; `None` if a
/// variable has no value and no default (the pattern then matches nothing).
pub fn substitute(s: &str, ctx: &Context) -> Option<String> {
    if !s.contains("${") {
        return Some(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Some(out);
        };
        let inner = &after[..end];
        match inner {
            "*" => out.push('*'),
            "?" => out.push('?'),
            "$" => out.push('$'),
            _ => {
                let (key, default) = match inner.split_once(',') {
                    Some((k, d)) => {
                        let d = d.trim();
                        let d = d
                            .strip_prefix('\'')
                            .and_then(|d| d.strip_suffix('\''))
                            .unwrap_or(d);
                        (k.trim(), Some(d))
                    }
                    None => (inner.trim(), None),
                };
                match (ctx.first(key), default) {
                    (Some(v), _) => out.push_str(v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => return None,
                }
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

//! `AWS::IAM::Role`, `AWS::IAM::Policy` and `AWS::IAM::ManagedPolicy`, applied
//! through the IAM service's awsQuery API as CloudFormation applies them:
//!
//! * a role is `CreateRole` (trust policy, path, description, session length),
//!   its `Policies` put as inline policies and its `ManagedPolicyArns`
//!   attached; an update sets the trust policy and makes the inline and
//!   attached sets exactly the declared ones; a delete detaches and deletes
//!   them, then the role;
//! * a policy is one inline policy put on each of its `Roles` and `Users`;
//! * a managed policy is `CreatePolicy`, attached to its `Roles` and `Users`;
//!   an update is a new default version (the oldest other version deleted when
//!   five exist) and the attachments made the declared ones.
//!
//! So `--iam enforce` evaluates a manifest function's calls against exactly the
//! statements its manifest declares. An AWS managed policy Nimbus does not
//! carry (`arn:aws:iam::aws:policy/…`, see `docs/compat/iam.md`) is left out
//! with a warning rather than failing the deploy.

use super::{attrs, exists, invalid, s, Cx, Made, ProviderError, R};
use crate::model::ResourceRow;
use crate::services::{xml_all, xml_text, CallError};
use serde_json::Value;
use std::collections::BTreeMap;

type Params = Vec<(String, String)>;

fn p(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn q(cx: &Cx<'_>, action: &str, params: Params) -> Result<String, CallError> {
    cx.services.query("iam", action, &params).await
}

fn not_found(e: &CallError) -> bool {
    e.code == "NoSuchEntity" || e.is_not_found()
}

/// A policy document property (an object, or a JSON string) as IAM takes it.
fn document(v: Option<&Value>, what: &str) -> R<String> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ Value::Object(_)) => Ok(v.to_string()),
        _ => invalid(format!("{what} must be a policy document")),
    }
}

/// A list-of-strings property (`Roles`, `ManagedPolicyArns`, …).
fn strings(props: &Value, key: &str) -> Vec<String> {
    props
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A role or user name from a `Roles`/`Users` entry (a name, or an ARN).
fn entity_name(v: &str) -> &str {
    v.rsplit('/').next().unwrap_or(v)
}

/// Create or update `props` of `kind`; `row` is the current one on update.
pub async fn put(
    cx: &Cx<'_>,
    kind: &str,
    logical: &str,
    props: &Value,
    row: Option<&ResourceRow>,
) -> R<Made> {
    match kind {
        "AWS::IAM::Role" => put_role(cx, logical, props, row).await,
        "AWS::IAM::ManagedPolicy" => put_managed_policy(cx, logical, props, row).await,
        _ => put_policy(cx, logical, props, row).await,
    }
}

async fn put_role(cx: &Cx<'_>, logical: &str, props: &Value, row: Option<&ResourceRow>) -> R<Made> {
    let name = row
        .map(|r| r.physical_id.clone())
        .or_else(|| s(props, "RoleName").map(str::to_string))
        .unwrap_or_else(|| logical.to_string());
    let trust = document(
        props.get("AssumeRolePolicyDocument"),
        "AssumeRolePolicyDocument",
    )?;
    let path = s(props, "Path").unwrap_or("/");
    let max = props
        .get("MaxSessionDuration")
        .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()));
    let answer = if row.is_none() {
        let mut params = p(&[
            ("RoleName", &name),
            ("AssumeRolePolicyDocument", &trust),
            ("Path", path),
        ]);
        if let Some(d) = s(props, "Description") {
            params.push(("Description".into(), d.into()));
        }
        if let Some(m) = &max {
            params.push(("MaxSessionDuration".into(), m.clone()));
        }
        for (i, t) in props
            .get("Tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let n = i + 1;
            params.push((
                format!("Tags.member.{n}.Key"),
                s(t, "Key").unwrap_or("").into(),
            ));
            params.push((
                format!("Tags.member.{n}.Value"),
                s(t, "Value").unwrap_or("").into(),
            ));
        }
        match q(cx, "CreateRole", params).await {
            Ok(x) => x,
            Err(e) if e.code == "EntityAlreadyExists" => {
                return exists(format!("role {name} already exists"))
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        q(
            cx,
            "UpdateAssumeRolePolicy",
            p(&[("RoleName", &name), ("PolicyDocument", &trust)]),
        )
        .await?;
        let mut params = p(&[("RoleName", &name)]);
        params.push((
            "Description".into(),
            s(props, "Description").unwrap_or("").into(),
        ));
        if let Some(m) = &max {
            params.push(("MaxSessionDuration".into(), m.clone()));
        }
        q(cx, "UpdateRole", params).await?;
        q(cx, "GetRole", p(&[("RoleName", &name)])).await?
    };
    let arn = xml_text(&answer, "Arn").unwrap_or_default();
    let id = xml_text(&answer, "RoleId").unwrap_or_default();
    // Inline policies: exactly the declared ones.
    let mut inline = BTreeMap::new();
    for pol in props
        .get("Policies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(pn) = s(pol, "PolicyName") else {
            return invalid("Policies: every policy needs a PolicyName");
        };
        inline.insert(
            pn.to_string(),
            document(pol.get("PolicyDocument"), "Policies.PolicyDocument")?,
        );
    }
    if row.is_some() {
        let now = q(cx, "ListRolePolicies", p(&[("RoleName", &name)])).await?;
        for old in xml_all(&now, "member") {
            if !inline.contains_key(&old) {
                q(
                    cx,
                    "DeleteRolePolicy",
                    p(&[("RoleName", &name), ("PolicyName", &old)]),
                )
                .await?;
            }
        }
    }
    for (pn, doc) in &inline {
        q(
            cx,
            "PutRolePolicy",
            p(&[
                ("RoleName", &name),
                ("PolicyName", pn),
                ("PolicyDocument", doc),
            ]),
        )
        .await?;
    }
    // Managed policies: exactly the declared ones.
    let want = strings(props, "ManagedPolicyArns");
    let have = if row.is_some() {
        let now = q(cx, "ListAttachedRolePolicies", p(&[("RoleName", &name)])).await?;
        xml_all(&now, "PolicyArn")
    } else {
        Vec::new()
    };
    // Attachments made by AWS::IAM::ManagedPolicy resources (their `Roles`)
    // are theirs: only ARNs this role declared before are detached here.
    let declared_before = row
        .map(|r| strings(&r.properties, "ManagedPolicyArns"))
        .unwrap_or_default();
    for old in have.iter().filter(|a| !want.contains(a)) {
        if declared_before.contains(old) {
            q(
                cx,
                "DetachRolePolicy",
                p(&[("RoleName", &name), ("PolicyArn", old)]),
            )
            .await?;
        }
    }
    for arn in want.iter().filter(|a| !have.contains(a)) {
        attach(cx, "AttachRolePolicy", "RoleName", &name, arn).await?;
    }
    Ok(Made {
        physical_id: name.clone(),
        ref_value: name.into(),
        attributes: attrs(&[("Arn", arn.into()), ("RoleId", id.into())]),
    })
}

/// Attach `arn`; an AWS managed policy Nimbus does not carry is left out with
/// a warning (the role then lacks what it grants, which `--iam audit` reports).
async fn attach(cx: &Cx<'_>, action: &str, key: &str, name: &str, arn: &str) -> R<()> {
    match q(cx, action, p(&[(key, name), ("PolicyArn", arn)])).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == "NoSuchEntity" && arn.starts_with("arn:aws:iam::aws:policy/") => {
            tracing::warn!(
                app = cx.app,
                entity = name,
                policy = arn,
                "apps: this AWS managed policy is not one Nimbus carries; not attached"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn put_policy(
    cx: &Cx<'_>,
    logical: &str,
    props: &Value,
    row: Option<&ResourceRow>,
) -> R<Made> {
    let Some(name) = s(props, "PolicyName") else {
        return invalid("AWS::IAM::Policy needs a PolicyName");
    };
    if props
        .get("Groups")
        .is_some_and(|g| g.as_array().is_some_and(|a| !a.is_empty()))
    {
        return invalid(
            "AWS::IAM::Policy: Groups are not applied by manifests yet (create the group policy with the IAM API)",
        );
    }
    let doc = document(props.get("PolicyDocument"), "PolicyDocument")?;
    let roles = strings(props, "Roles");
    let users = strings(props, "Users");
    if roles.is_empty() && users.is_empty() {
        return invalid("AWS::IAM::Policy needs Roles or Users");
    }
    if let Some(old) = row {
        remove_policy(cx, &old.properties, Some((name, &roles, &users))).await?;
    }
    for r in &roles {
        q(
            cx,
            "PutRolePolicy",
            p(&[
                ("RoleName", entity_name(r)),
                ("PolicyName", name),
                ("PolicyDocument", &doc),
            ]),
        )
        .await?;
    }
    for u in &users {
        q(
            cx,
            "PutUserPolicy",
            p(&[
                ("UserName", entity_name(u)),
                ("PolicyName", name),
                ("PolicyDocument", &doc),
            ]),
        )
        .await?;
    }
    let id = match row {
        Some(r) => r.physical_id.clone(),
        None => format!("{}-{logical}-{}", cx.app, crate::naming::random_suffix()),
    };
    Ok(Made {
        physical_id: id.clone(),
        ref_value: id.into(),
        attributes: Default::default(),
    })
}

/// Delete the inline policy `props` put, from every role and user it names —
/// except those `keep` (name, roles, users) puts it on again.
async fn remove_policy(
    cx: &Cx<'_>,
    props: &Value,
    keep: Option<(&str, &[String], &[String])>,
) -> R<()> {
    let Some(name) = s(props, "PolicyName") else {
        return Ok(());
    };
    let kept = |users: bool, e: &str| {
        keep.is_some_and(|(n, roles, us)| {
            n == name
                && (if users { us } else { roles })
                    .iter()
                    .any(|x| entity_name(x) == e)
        })
    };
    for r in strings(props, "Roles") {
        let r = entity_name(&r);
        if kept(false, r) {
            continue;
        }
        match q(
            cx,
            "DeleteRolePolicy",
            p(&[("RoleName", r), ("PolicyName", name)]),
        )
        .await
        {
            Err(e) if !not_found(&e) => return Err(e.into()),
            _ => {}
        }
    }
    for u in strings(props, "Users") {
        let u = entity_name(&u);
        if kept(true, u) {
            continue;
        }
        match q(
            cx,
            "DeleteUserPolicy",
            p(&[("UserName", u), ("PolicyName", name)]),
        )
        .await
        {
            Err(e) if !not_found(&e) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

async fn put_managed_policy(
    cx: &Cx<'_>,
    logical: &str,
    props: &Value,
    row: Option<&ResourceRow>,
) -> R<Made> {
    if props
        .get("Groups")
        .is_some_and(|g| g.as_array().is_some_and(|a| !a.is_empty()))
    {
        return invalid(
            "AWS::IAM::ManagedPolicy: Groups are not applied by manifests yet (create the group policy with the IAM API)",
        );
    }
    let doc = document(props.get("PolicyDocument"), "PolicyDocument")?;
    let arn = match row {
        Some(r) => {
            let arn = r.physical_id.clone();
            let versions = q(cx, "ListPolicyVersions", p(&[("PolicyArn", &arn)])).await?;
            let ids = xml_all(&versions, "VersionId");
            let defaults = xml_all(&versions, "IsDefaultVersion");
            if ids.len() >= 5 {
                // The oldest version that is not the default.
                if let Some(old) = ids
                    .iter()
                    .zip(defaults.iter())
                    .filter(|(_, d)| d.as_str() != "true")
                    .map(|(v, _)| v)
                    .min_by_key(|v| v.trim_start_matches('v').parse::<u64>().unwrap_or(0))
                {
                    q(
                        cx,
                        "DeletePolicyVersion",
                        p(&[("PolicyArn", &arn), ("VersionId", old)]),
                    )
                    .await?;
                }
            }
            q(
                cx,
                "CreatePolicyVersion",
                p(&[
                    ("PolicyArn", &arn),
                    ("PolicyDocument", &doc),
                    ("SetAsDefault", "true"),
                ]),
            )
            .await?;
            arn
        }
        None => {
            let name = s(props, "ManagedPolicyName").unwrap_or(logical);
            let mut params = p(&[
                ("PolicyName", name),
                ("PolicyDocument", &doc),
                ("Path", s(props, "Path").unwrap_or("/")),
            ]);
            if let Some(d) = s(props, "Description") {
                params.push(("Description".into(), d.into()));
            }
            match q(cx, "CreatePolicy", params).await {
                Ok(x) => xml_text(&x, "Arn").unwrap_or_default(),
                Err(e) if e.code == "EntityAlreadyExists" => {
                    return exists(format!("managed policy {name} already exists"))
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let roles: Vec<String> = strings(props, "Roles")
        .iter()
        .map(|r| entity_name(r).to_string())
        .collect();
    let users: Vec<String> = strings(props, "Users")
        .iter()
        .map(|u| entity_name(u).to_string())
        .collect();
    if let Some(old) = row {
        for r in strings(&old.properties, "Roles") {
            let r = entity_name(&r);
            if !roles.iter().any(|x| x == r) {
                detach(cx, "DetachRolePolicy", "RoleName", r, &arn).await?;
            }
        }
        for u in strings(&old.properties, "Users") {
            let u = entity_name(&u);
            if !users.iter().any(|x| x == u) {
                detach(cx, "DetachUserPolicy", "UserName", u, &arn).await?;
            }
        }
    }
    for r in &roles {
        q(
            cx,
            "AttachRolePolicy",
            p(&[("RoleName", r), ("PolicyArn", &arn)]),
        )
        .await?;
    }
    for u in &users {
        q(
            cx,
            "AttachUserPolicy",
            p(&[("UserName", u), ("PolicyArn", &arn)]),
        )
        .await?;
    }
    Ok(Made {
        physical_id: arn.clone(),
        ref_value: arn.clone().into(),
        attributes: attrs(&[("PolicyArn", arn.into())]),
    })
}

async fn detach(cx: &Cx<'_>, action: &str, key: &str, name: &str, arn: &str) -> R<()> {
    match q(cx, action, p(&[(key, name), ("PolicyArn", arn)])).await {
        Err(e) if !not_found(&e) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Delete what `row` made; gone already is done.
pub async fn delete(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let r = match row.kind.as_str() {
        "AWS::IAM::Role" => delete_role(cx, &row.physical_id).await,
        "AWS::IAM::ManagedPolicy" => delete_managed_policy(cx, &row.physical_id).await,
        _ => remove_policy(cx, &row.properties, None).await,
    };
    match r {
        Err(ProviderError::Call(e)) if not_found(&e) => Ok(()),
        other => other,
    }
}

/// Delete a role whose create did not finish (no physical id recorded): the
/// name is the planned `RoleName`.
pub async fn delete_planned(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    match (planned.kind.as_str(), s(&planned.properties, "RoleName")) {
        ("AWS::IAM::Role", Some(name)) => match delete_role(cx, name).await {
            Err(ProviderError::Call(e)) if not_found(&e) => Ok(()),
            other => other,
        },
        _ => Ok(()),
    }
}

async fn delete_role(cx: &Cx<'_>, name: &str) -> R<()> {
    let attached = q(cx, "ListAttachedRolePolicies", p(&[("RoleName", name)])).await?;
    for arn in xml_all(&attached, "PolicyArn") {
        detach(cx, "DetachRolePolicy", "RoleName", name, &arn).await?;
    }
    let inline = q(cx, "ListRolePolicies", p(&[("RoleName", name)])).await?;
    for pn in xml_all(&inline, "member") {
        match q(
            cx,
            "DeleteRolePolicy",
            p(&[("RoleName", name), ("PolicyName", &pn)]),
        )
        .await
        {
            Err(e) if !not_found(&e) => return Err(e.into()),
            _ => {}
        }
    }
    q(cx, "DeleteRole", p(&[("RoleName", name)])).await?;
    Ok(())
}

async fn delete_managed_policy(cx: &Cx<'_>, arn: &str) -> R<()> {
    let entities = q(cx, "ListEntitiesForPolicy", p(&[("PolicyArn", arn)])).await?;
    for r in xml_all(&entities, "RoleName") {
        detach(cx, "DetachRolePolicy", "RoleName", &r, arn).await?;
    }
    for u in xml_all(&entities, "UserName") {
        detach(cx, "DetachUserPolicy", "UserName", &u, arn).await?;
    }
    let versions = q(cx, "ListPolicyVersions", p(&[("PolicyArn", arn)])).await?;
    for (v, d) in xml_all(&versions, "VersionId")
        .iter()
        .zip(xml_all(&versions, "IsDefaultVersion").iter())
    {
        if d != "true" {
            q(
                cx,
                "DeletePolicyVersion",
                p(&[("PolicyArn", arn), ("VersionId", v)]),
            )
            .await?;
        }
    }
    q(cx, "DeletePolicy", p(&[("PolicyArn", arn)])).await?;
    Ok(())
}

//! The IAM operations (awsQuery: form parameters in, XML out), with the shapes,
//! validation and errors of the botocore model.

use crate::ops::{Op, META};
use crate::store::{
    random_id, random_secret, AccessKey, IamError, ManagedPolicy, PolicyVersion, Result, Role, Row,
    Store, User,
};
use crate::Iam;
use axum::response::Response;
use nimbus_core::{format_ms, now_ms, ACCOUNT_ID};
use nimbus_policy::{counted_size, Policy};
use nimbus_protocol::{query_response, AwsError, XmlWriter};
use nimbus_svc_common::Call;
use std::collections::BTreeSet;

mod groups;

/// Limits of IAM (the IAM User Guide, "IAM and AWS STS quotas").
pub const MANAGED_POLICY_MAX: usize = 6144;
pub const ROLE_INLINE_MAX: usize = 10240;
pub const USER_INLINE_MAX: usize = 2048;
pub const TRUST_POLICY_MAX: usize = 2048;
pub const ACCESS_KEYS_PER_USER: usize = 2;
pub const POLICY_VERSIONS_MAX: usize = 5;

/// The form parameters of one request.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn req(&self, k: &str) -> Result<&str> {
        self.get(k).ok_or_else(|| {
            IamError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(k)
            ))
        })
    }

    /// `{prefix}.member.N`, in N order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let p = format!("{prefix}.member.");
        let mut v: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&p)?.parse().ok()?, v.clone())))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// `Tags.member.N.Key` / `.Value`.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut idx = BTreeSet::new();
        for (k, _) in &self.0 {
            if let Some(rest) = k.strip_prefix("Tags.member.") {
                if let Some(n) = rest.split('.').next().and_then(|n| n.parse::<u32>().ok()) {
                    idx.insert(n);
                }
            }
        }
        idx.into_iter()
            .filter_map(|i| {
                let k = self.get(&format!("Tags.member.{i}.Key"))?;
                let v = self.get(&format!("Tags.member.{i}.Value")).unwrap_or("");
                Some((k.to_owned(), v.to_owned()))
            })
            .collect()
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// `[\w+=,.@-]{1,max}` (role, user and policy names).
fn check_name(field: &str, v: &str, max: usize) -> Result<()> {
    if v.is_empty()
        || v.chars().count() > max
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(IamError::validation(format!(
            "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length \
             between 1 and {max}",
            lower_first(field)
        )));
    }
    Ok(())
}

fn check_path(v: &str) -> Result<()> {
    let ok = v.starts_with('/')
        && v.ends_with('/')
        && v.len() <= 512
        && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !ok {
        return Err(IamError::validation(format!(
            "1 validation error detected: Value '{v}' at 'path' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"
        )));
    }
    Ok(())
}

/// Validate an identity policy document and its size.
fn identity_doc(text: &str, max: usize, quota: &str) -> Result<Policy> {
    if counted_size(text) > max {
        return Err(IamError::limit(format!(
            "Cannot exceed quota for {quota}: {max}"
        )));
    }
    Policy::identity(text).map_err(IamError::malformed)
}

/// Validate a trust policy.
pub fn trust_doc(text: &str) -> Result<Policy> {
    if counted_size(text) > TRUST_POLICY_MAX {
        return Err(IamError::limit(format!(
            "Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_MAX}"
        )));
    }
    Policy::resource(text).map_err(IamError::malformed)
}

/// Policy documents travel URL-encoded in IAM's answers (the SDKs decode them).
fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn ts(ms: i64) -> String {
    // IAM's timestamps: ISO 8601 with seconds, UTC.
    let s = format_ms(ms, "Z");
    match s.split_once('.') {
        Some((a, _)) => format!("{a}Z"),
        None => s,
    }
}

fn marker(p: &Params) -> Result<(usize, usize)> {
    let start = match p.get("Marker") {
        None => 0,
        Some(m) => m
            .parse()
            .map_err(|_| IamError::invalid("Invalid Marker."))?,
    };
    let max = match p.get("MaxItems") {
        None => 100,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(IamError::validation(format!(
                    "1 validation error detected: Value '{m}' at 'maxItems' failed to satisfy \
                     constraint: Member must have value between 1 and 1000"
                )))
            }
        },
    };
    Ok((start, max))
}

/// Page `items` and write `IsTruncated`/`Marker`.
fn page<T>(items: Vec<T>, p: &Params) -> Result<(Vec<T>, bool, Option<String>)> {
    let (start, max) = marker(p)?;
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = start + page.len();
    let truncated = next < total;
    Ok((page, truncated, truncated.then(|| next.to_string())))
}

fn write_tags(w: &mut XmlWriter, tags: &[(String, String)]) {
    if tags.is_empty() {
        return;
    }
    w.nested("Tags", |w| {
        for (k, v) in tags {
            w.nested("member", |w| {
                w.element("Key", k).element("Value", v);
            });
        }
    });
}

fn write_role(w: &mut XmlWriter, r: &Role, with_tags: bool) {
    w.element("Path", &r.path)
        .element("RoleName", &r.name)
        .element("RoleId", &r.id)
        .element("Arn", &r.arn())
        .element("CreateDate", &ts(r.created_ms))
        .element("AssumeRolePolicyDocument", &url_encode(&r.trust_policy))
        .element_opt("Description", r.description.as_deref())
        .element("MaxSessionDuration", &r.max_session_duration.to_string());
    write_boundary(w, r.boundary.as_deref());
    if with_tags {
        write_tags(w, &r.tags);
    }
}

fn write_user(w: &mut XmlWriter, u: &User) {
    w.element("Path", &u.path)
        .element("UserName", &u.name)
        .element("UserId", &u.id)
        .element("Arn", &u.arn())
        .element("CreateDate", &ts(u.created_ms));
    write_boundary(w, u.boundary.as_deref());
    write_tags(w, &u.tags);
}

fn write_boundary(w: &mut XmlWriter, arn: Option<&str>) {
    if let Some(arn) = arn {
        w.nested("PermissionsBoundary", |w| {
            w.element("PermissionsBoundaryType", "PermissionsBoundaryPolicy")
                .element("PermissionsBoundaryArn", arn);
        });
    }
}

/// `PermissionsBoundary`: a managed policy that exists.
fn boundary_param(store: &Store, p: &Params) -> Result<Option<String>> {
    match p.get("PermissionsBoundary") {
        None => Ok(None),
        Some(arn) => {
            if !store.has_policy(arn) {
                return Err(IamError::no_such(format!(
                    "Scope ARN: {arn} does not exist or is not attachable."
                )));
            }
            Ok(Some(arn.to_owned()))
        }
    }
}

fn write_policy(w: &mut XmlWriter, p: &ManagedPolicy, attachments: usize) {
    w.element("PolicyName", &p.name)
        .element("PolicyId", &p.id)
        .element("Arn", &p.arn())
        .element("Path", &p.path)
        .element("DefaultVersionId", &p.default_version)
        .element("AttachmentCount", &attachments.to_string())
        .element("PermissionsBoundaryUsageCount", "0")
        .element("IsAttachable", "true")
        .element_opt("Description", p.description.as_deref())
        .element("CreateDate", &ts(p.created_ms))
        .element("UpdateDate", &ts(p.updated_ms));
    write_tags(w, &p.tags);
}

fn attachments(st: &crate::store::State, arn: &str) -> usize {
    st.roles
        .values()
        .filter(|r| r.attached.iter().any(|a| a == arn))
        .count()
        + st.users
            .values()
            .filter(|u| u.attached.iter().any(|a| a == arn))
            .count()
        + st.groups
            .values()
            .filter(|g| g.attached.iter().any(|a| a == arn))
            .count()
}

fn no_role(name: &str) -> IamError {
    IamError::no_such(format!("The role with name {name} cannot be found."))
}

fn no_user(name: &str) -> IamError {
    IamError::no_such(format!("The user with name {name} cannot be found."))
}

fn no_policy(arn: &str) -> IamError {
    IamError::no_such(format!("Policy {arn} does not exist or is not attachable."))
}

/// Serve one decoded call (blocking: SQLite).
pub fn handle(iam: &Iam, call: &Call<Op>) -> Response {
    let p = Params(call.params.clone());
    let rid = call.request_id.as_str();
    let action = call.op.name();
    let ok = |f: &dyn Fn(&mut XmlWriter)| query_response(&META, action, rid, Some(f));
    let empty = || query_response(&META, action, rid, None);
    match run(iam, call, &p, &ok, &empty) {
        Ok(r) => r,
        Err(e) => {
            let status =
                http::StatusCode::from_u16(e.status).unwrap_or(http::StatusCode::BAD_REQUEST);
            call.error(&AwsError::new(status, e.code, e.message))
        }
    }
}

pub(crate) type Ok<'a> = dyn Fn(&dyn Fn(&mut XmlWriter)) -> Response + 'a;

fn run(
    iam: &Iam,
    call: &Call<Op>,
    p: &Params,
    ok: &Ok<'_>,
    empty: &dyn Fn() -> Response,
) -> Result<Response> {
    let store: &Store = &iam.store;
    if let Some(r) = groups::run(store, call.op, p, ok, empty) {
        return r;
    }
    Ok(match call.op {
        // ---- roles
        Op::CreateRole => {
            let name = p.req("RoleName")?;
            check_name("RoleName", name, 64)?;
            let path = p.get("Path").unwrap_or("/");
            check_path(path)?;
            let trust = p.req("AssumeRolePolicyDocument")?;
            trust_doc(trust)?;
            let max = match p.get("MaxSessionDuration") {
                None => 3600,
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if (3600..=43200).contains(&n) => n,
                    _ => {
                        return Err(IamError::validation(format!(
                            "1 validation error detected: Value '{v}' at 'maxSessionDuration' \
                             failed to satisfy constraint: Member must have value less than or \
                             equal to 43200"
                        )))
                    }
                },
            };
            let role = Role {
                name: name.to_owned(),
                id: random_id("AROA", 17),
                path: path.to_owned(),
                trust_policy: trust.to_owned(),
                description: p.get("Description").map(str::to_owned),
                max_session_duration: max,
                created_ms: now_ms(),
                inline: Default::default(),
                attached: vec![],
                tags: p.tags(),
                boundary: boundary_param(store, p)?,
            };
            let role = create_role(store, role)?;
            ok(&|w| {
                w.nested("Role", |w| write_role(w, &role, true));
            })
        }
        Op::GetRole => {
            let name = p.req("RoleName")?;
            let role = store.role(name).ok_or_else(|| no_role(name))?;
            ok(&|w| {
                w.nested("Role", |w| {
                    write_role(w, &role, true);
                    w.nested("RoleLastUsed", |_| {});
                });
            })
        }
        Op::ListRoles => {
            let prefix = p.get("PathPrefix").unwrap_or("/");
            let roles: Vec<Role> = store
                .read()
                .roles
                .values()
                .filter(|r| r.path.starts_with(prefix))
                .cloned()
                .collect();
            let (roles, truncated, next) = page(roles, p)?;
            ok(&|w| {
                w.nested("Roles", |w| {
                    for r in &roles {
                        w.nested("member", |w| write_role(w, r, false));
                    }
                });
                w.element("IsTruncated", if truncated { "true" } else { "false" });
                w.element_opt("Marker", next.as_deref());
            })
        }
        Op::UpdateRole | Op::UpdateRoleDescription => {
            let name = p.req("RoleName")?.to_owned();
            let desc = p.get("Description").map(str::to_owned);
            let max = p.get("MaxSessionDuration").map(str::to_owned);
            let role = store.write(|st| {
                let r = st.roles.get_mut(&name).ok_or_else(|| no_role(&name))?;
                if desc.is_some() {
                    r.description = desc;
                }
                if let Some(m) = max {
                    r.max_session_duration = match m.parse::<u32>() {
                        Ok(n) if (3600..=43200).contains(&n) => n,
                        _ => {
                            return Err(IamError::validation(format!(
                                "1 validation error detected: Value '{m}' at 'maxSessionDuration' \
                                 failed to satisfy constraint: Member must have value less than \
                                 or equal to 43200"
                            )))
                        }
                    };
                }
                Ok((r.clone(), vec![Row::put("role", &name, &*r)]))
            })?;
            if call.op == Op::UpdateRoleDescription {
                ok(&|w| {
                    w.nested("Role", |w| write_role(w, &role, true));
                })
            } else {
                ok(&|_| {})
            }
        }
        Op::UpdateAssumeRolePolicy => {
            let name = p.req("RoleName")?.to_owned();
            let doc = p.req("PolicyDocument")?.to_owned();
            trust_doc(&doc)?;
            store.write(|st| {
                let r = st.roles.get_mut(&name).ok_or_else(|| no_role(&name))?;
                r.trust_policy = doc;
                Ok(((), vec![Row::put("role", &name, &*r)]))
            })?;
            empty()
        }
        Op::DeleteRole => {
            let name = p.req("RoleName")?.to_owned();
            store.write(|st| {
                let r = st.roles.get(&name).ok_or_else(|| no_role(&name))?;
                if !r.inline.is_empty() {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must delete policies first.",
                    ));
                }
                if !r.attached.is_empty() {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must detach all policies first.",
                    ));
                }
                st.roles.remove(&name);
                Ok(((), vec![Row::delete("role", &name)]))
            })?;
            empty()
        }
        Op::PutRolePermissionsBoundary | Op::DeleteRolePermissionsBoundary => {
            let name = p.req("RoleName")?.to_owned();
            let boundary = if call.op == Op::PutRolePermissionsBoundary {
                p.req("PermissionsBoundary")?;
                boundary_param(store, p)?
            } else {
                None
            };
            store.write(|st| {
                let r = st.roles.get_mut(&name).ok_or_else(|| no_role(&name))?;
                r.boundary = boundary;
                Ok(((), vec![Row::put("role", &name, &*r)]))
            })?;
            empty()
        }
        Op::PutUserPermissionsBoundary | Op::DeleteUserPermissionsBoundary => {
            let name = p.req("UserName")?.to_owned();
            let boundary = if call.op == Op::PutUserPermissionsBoundary {
                p.req("PermissionsBoundary")?;
                boundary_param(store, p)?
            } else {
                None
            };
            store.write(|st| {
                let u = st.users.get_mut(&name).ok_or_else(|| no_user(&name))?;
                u.boundary = boundary;
                Ok(((), vec![Row::put("user", &name, &*u)]))
            })?;
            empty()
        }
        Op::PutRolePolicy => {
            let name = p.req("RoleName")?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            check_name("PolicyName", &pname, 128)?;
            let doc = p.req("PolicyDocument")?.to_owned();
            identity_doc(&doc, ROLE_INLINE_MAX, "PolicySize")?;
            put_role_policy(store, &name, &pname, &doc)?;
            empty()
        }
        Op::GetRolePolicy => {
            let name = p.req("RoleName")?;
            let pname = p.req("PolicyName")?;
            let role = store.role(name).ok_or_else(|| no_role(name))?;
            let doc = role.inline.get(pname).ok_or_else(|| {
                IamError::no_such(format!(
                    "The role policy with name {pname} cannot be found."
                ))
            })?;
            ok(&|w| {
                w.element("RoleName", name)
                    .element("PolicyName", pname)
                    .element("PolicyDocument", &url_encode(doc));
            })
        }
        Op::DeleteRolePolicy => {
            let name = p.req("RoleName")?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            store.write(|st| {
                let r = st.roles.get_mut(&name).ok_or_else(|| no_role(&name))?;
                if r.inline.remove(&pname).is_none() {
                    return Err(IamError::no_such(format!(
                        "The role policy with name {pname} cannot be found."
                    )));
                }
                Ok(((), vec![Row::put("role", &name, &*r)]))
            })?;
            empty()
        }
        Op::ListRolePolicies => {
            let name = p.req("RoleName")?;
            let role = store.role(name).ok_or_else(|| no_role(name))?;
            let names: Vec<String> = role.inline.keys().cloned().collect();
            let (names, truncated, next) = page(names, p)?;
            ok(&|w| {
                w.nested("PolicyNames", |w| {
                    for n in &names {
                        w.element("member", n);
                    }
                });
                w.element("IsTruncated", if truncated { "true" } else { "false" });
                w.element_opt("Marker", next.as_deref());
            })
        }
        Op::AttachRolePolicy | Op::AttachUserPolicy => {
            let (kind, name) = entity(call.op, p)?;
            let arn = p.req("PolicyArn")?.to_owned();
            attach(store, kind, &name, &arn, true)?;
            empty()
        }
        Op::DetachRolePolicy | Op::DetachUserPolicy => {
            let (kind, name) = entity(call.op, p)?;
            let arn = p.req("PolicyArn")?.to_owned();
            attach(store, kind, &name, &arn, false)?;
            empty()
        }
        Op::ListAttachedRolePolicies | Op::ListAttachedUserPolicies => {
            let (kind, name) = entity(call.op, p)?;
            let st = store.read();
            let attached = if kind == "role" {
                st.roles
                    .get(&name)
                    .ok_or_else(|| no_role(&name))?
                    .attached
                    .clone()
            } else {
                st.users
                    .get(&name)
                    .ok_or_else(|| no_user(&name))?
                    .attached
                    .clone()
            };
            let list: Vec<(String, String)> = attached
                .iter()
                .filter_map(|a| st.policies.get(a).map(|m| (m.name.clone(), a.clone())))
                .collect();
            drop(st);
            let (list, truncated, next) = page(list, p)?;
            ok(&|w| {
                w.nested("AttachedPolicies", |w| {
                    for (n, a) in &list {
                        w.nested("member", |w| {
                            w.element("PolicyName", n).element("PolicyArn", a);
                        });
                    }
                });
                w.element("IsTruncated", if truncated { "true" } else { "false" });
                w.element_opt("Marker", next.as_deref());
            })
        }
        Op::TagRole => {
            let name = p.req("RoleName")?.to_owned();
            let tags = p.tags();
            store.write(|st| {
                let r = st.roles.get_mut(&name).ok_or_else(|| no_role(&name))?;
                for (k, v) in tags {
                    r.tags.retain(|(tk, _)| *tk != k);
                    r.tags.push((k, v));
                }
                Ok(((), vec![Row::put("role", &name, &*r)]))
            })?;
            empty()
        }
        Op::UntagRole => {
            let name = p.req("RoleName")?.to_owned();
            let keys = p.list("TagKeys");
            store.write(|st| {
                let r = st.roles.get_mut(&name).ok_or_else(|| no_role(&name))?;
                r.tags.retain(|(k, _)| !keys.contains(k));
                Ok(((), vec![Row::put("role", &name, &*r)]))
            })?;
            empty()
        }
        Op::ListRoleTags => {
            let name = p.req("RoleName")?;
            let role = store.role(name).ok_or_else(|| no_role(name))?;
            ok(&|w| {
                w.nested("Tags", |w| {
                    for (k, v) in &role.tags {
                        w.nested("member", |w| {
                            w.element("Key", k).element("Value", v);
                        });
                    }
                });
                w.element("IsTruncated", "false");
            })
        }
        // ---- users
        Op::CreateUser => {
            let name = p.req("UserName")?;
            check_name("UserName", name, 64)?;
            let path = p.get("Path").unwrap_or("/");
            check_path(path)?;
            let user = User {
                name: name.to_owned(),
                id: random_id("AIDA", 17),
                path: path.to_owned(),
                created_ms: now_ms(),
                inline: Default::default(),
                attached: vec![],
                tags: p.tags(),
                boundary: boundary_param(store, p)?,
            };
            let u = user.clone();
            store.write(|st| {
                if st.users.keys().any(|n| n.eq_ignore_ascii_case(&u.name)) {
                    return Err(IamError::exists(format!(
                        "User with name {} already exists.",
                        u.name
                    )));
                }
                let row = Row::put("user", &u.name, &u);
                st.users.insert(u.name.clone(), u);
                Ok(((), vec![row]))
            })?;
            ok(&|w| {
                w.nested("User", |w| write_user(w, &user));
            })
        }
        Op::GetUser => {
            let user = match p.get("UserName") {
                Some(n) => store.user(n).ok_or_else(|| no_user(n))?,
                None => match call.context().map(|c| &c.principal) {
                    Some(nimbus_core::Principal::User(n)) => {
                        store.user(n).ok_or_else(|| no_user(n))?
                    }
                    _ => {
                        return Err(IamError::validation(
                            "Must specify userName when calling with non-User credentials",
                        ))
                    }
                },
            };
            ok(&|w| {
                w.nested("User", |w| write_user(w, &user));
            })
        }
        Op::ListUsers => {
            let prefix = p.get("PathPrefix").unwrap_or("/");
            let users: Vec<User> = store
                .read()
                .users
                .values()
                .filter(|u| u.path.starts_with(prefix))
                .cloned()
                .collect();
            let (users, truncated, next) = page(users, p)?;
            ok(&|w| {
                w.nested("Users", |w| {
                    for u in &users {
                        w.nested("member", |w| write_user(w, u));
                    }
                });
                w.element("IsTruncated", if truncated { "true" } else { "false" });
                w.element_opt("Marker", next.as_deref());
            })
        }
        Op::DeleteUser => {
            let name = p.req("UserName")?.to_owned();
            store.write(|st| {
                let u = st.users.get(&name).ok_or_else(|| no_user(&name))?;
                if !u.inline.is_empty() {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must delete policies first.",
                    ));
                }
                if !u.attached.is_empty() {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must detach all policies first.",
                    ));
                }
                if st.keys.values().any(|k| k.user == name) {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must delete access keys first.",
                    ));
                }
                if st.groups.values().any(|g| g.users.contains(&name)) {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must remove users from group first.",
                    ));
                }
                st.users.remove(&name);
                Ok(((), vec![Row::delete("user", &name)]))
            })?;
            empty()
        }
        Op::PutUserPolicy => {
            let name = p.req("UserName")?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            check_name("PolicyName", &pname, 128)?;
            let doc = p.req("PolicyDocument")?.to_owned();
            identity_doc(&doc, USER_INLINE_MAX, "PolicySize")?;
            store.write(|st| {
                let u = st.users.get_mut(&name).ok_or_else(|| no_user(&name))?;
                let mut inline = u.inline.clone();
                inline.insert(pname.clone(), doc.clone());
                let total: usize = inline.values().map(|d| counted_size(d)).sum();
                if total > USER_INLINE_MAX {
                    return Err(IamError::limit(format!(
                        "Maximum policy size of {USER_INLINE_MAX} bytes exceeded for user {name}"
                    )));
                }
                u.inline = inline;
                Ok(((), vec![Row::put("user", &name, &*u)]))
            })?;
            empty()
        }
        Op::GetUserPolicy => {
            let name = p.req("UserName")?;
            let pname = p.req("PolicyName")?;
            let user = store.user(name).ok_or_else(|| no_user(name))?;
            let doc = user.inline.get(pname).ok_or_else(|| {
                IamError::no_such(format!(
                    "The user policy with name {pname} cannot be found."
                ))
            })?;
            ok(&|w| {
                w.element("UserName", name)
                    .element("PolicyName", pname)
                    .element("PolicyDocument", &url_encode(doc));
            })
        }
        Op::DeleteUserPolicy => {
            let name = p.req("UserName")?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            store.write(|st| {
                let u = st.users.get_mut(&name).ok_or_else(|| no_user(&name))?;
                if u.inline.remove(&pname).is_none() {
                    return Err(IamError::no_such(format!(
                        "The user policy with name {pname} cannot be found."
                    )));
                }
                Ok(((), vec![Row::put("user", &name, &*u)]))
            })?;
            empty()
        }
        Op::ListUserPolicies => {
            let name = p.req("UserName")?;
            let user = store.user(name).ok_or_else(|| no_user(name))?;
            let names: Vec<String> = user.inline.keys().cloned().collect();
            let (names, truncated, next) = page(names, p)?;
            ok(&|w| {
                w.nested("PolicyNames", |w| {
                    for n in &names {
                        w.element("member", n);
                    }
                });
                w.element("IsTruncated", if truncated { "true" } else { "false" });
                w.element_opt("Marker", next.as_deref());
            })
        }
        // ---- access keys
        Op::CreateAccessKey => {
            let name = caller_user(call, p)?;
            let key = AccessKey {
                id: random_id("AKIA", 16),
                user: name.clone(),
                secret: random_secret(30),
                status: "Active".into(),
                created_ms: now_ms(),
            };
            let k = key.clone();
            store.write(|st| {
                if !st.users.contains_key(&name) {
                    return Err(no_user(&name));
                }
                if st.keys.values().filter(|x| x.user == name).count() >= ACCESS_KEYS_PER_USER {
                    return Err(IamError::limit(format!(
                        "Cannot exceed quota for AccessKeysPerUser: {ACCESS_KEYS_PER_USER}"
                    )));
                }
                let row = Row::put("key", &k.id, &k);
                st.keys.insert(k.id.clone(), k);
                Ok(((), vec![row]))
            })?;
            iam.register_key(&key);
            ok(&|w| {
                w.nested("AccessKey", |w| {
                    w.element("UserName", &key.user)
                        .element("AccessKeyId", &key.id)
                        .element("Status", &key.status)
                        .element("SecretAccessKey", &key.secret)
                        .element("CreateDate", &ts(key.created_ms));
                });
            })
        }
        Op::ListAccessKeys => {
            let name = caller_user(call, p)?;
            let st = store.read();
            if !st.users.contains_key(&name) {
                return Err(no_user(&name));
            }
            let keys: Vec<AccessKey> = st
                .keys
                .values()
                .filter(|k| k.user == name)
                .cloned()
                .collect();
            drop(st);
            ok(&|w| {
                w.nested("AccessKeyMetadata", |w| {
                    for k in &keys {
                        w.nested("member", |w| {
                            w.element("UserName", &k.user)
                                .element("AccessKeyId", &k.id)
                                .element("Status", &k.status)
                                .element("CreateDate", &ts(k.created_ms));
                        });
                    }
                });
                w.element("IsTruncated", "false");
            })
        }
        Op::UpdateAccessKey => {
            let name = caller_user(call, p)?;
            let id = p.req("AccessKeyId")?.to_owned();
            let status = p.req("Status")?.to_owned();
            if status != "Active" && status != "Inactive" {
                return Err(IamError::validation(format!(
                    "1 validation error detected: Value '{status}' at 'status' failed to satisfy \
                     constraint: Member must satisfy enum value set: [Active, Inactive]"
                )));
            }
            let key = store.write(|st| {
                let k = st
                    .keys
                    .get_mut(&id)
                    .filter(|k| k.user == name)
                    .ok_or_else(|| {
                        IamError::no_such(format!("The Access Key with id {id} cannot be found."))
                    })?;
                k.status = status;
                Ok((k.clone(), vec![Row::put("key", &id, &*k)]))
            })?;
            iam.register_key(&key);
            empty()
        }
        Op::DeleteAccessKey => {
            let name = caller_user(call, p)?;
            let id = p.req("AccessKeyId")?.to_owned();
            store.write(|st| {
                if st.keys.get(&id).is_none_or(|k| k.user != name) {
                    return Err(IamError::no_such(format!(
                        "The Access Key with id {id} cannot be found."
                    )));
                }
                st.keys.remove(&id);
                Ok(((), vec![Row::delete("key", &id)]))
            })?;
            iam.key_ring().inspect(|r| {
                r.unregister(&id);
            });
            empty()
        }
        Op::GetAccessKeyLastUsed => {
            let id = p.req("AccessKeyId")?;
            let key = store.read().keys.get(id).cloned().ok_or_else(|| {
                IamError::no_such(format!("The Access Key with id {id} cannot be found."))
            })?;
            ok(&|w| {
                w.element("UserName", &key.user);
                w.nested("AccessKeyLastUsed", |w| {
                    w.element("ServiceName", "N/A").element("Region", "N/A");
                });
            })
        }
        // ---- managed policies
        Op::CreatePolicy => {
            let name = p.req("PolicyName")?;
            check_name("PolicyName", name, 128)?;
            let path = p.get("Path").unwrap_or("/");
            check_path(path)?;
            let doc = p.req("PolicyDocument")?;
            identity_doc(doc, MANAGED_POLICY_MAX, "PolicySize")?;
            let now = now_ms();
            let pol = ManagedPolicy {
                name: name.to_owned(),
                id: random_id("ANPA", 17),
                path: path.to_owned(),
                description: p.get("Description").map(str::to_owned),
                default_version: "v1".into(),
                versions: vec![PolicyVersion {
                    id: "v1".into(),
                    document: doc.to_owned(),
                    created_ms: now,
                }],
                next_version: 2,
                created_ms: now,
                updated_ms: now,
                tags: p.tags(),
                aws_managed: false,
            };
            let pc = pol.clone();
            store.write(|st| {
                let arn = pc.arn();
                if st
                    .policies
                    .values()
                    .any(|x| !x.aws_managed && x.name == pc.name)
                {
                    return Err(IamError::exists(format!(
                        "A policy called {} already exists. Duplicate names are not allowed.",
                        pc.name
                    )));
                }
                let row = Row::put("policy", &arn, &pc);
                st.policies.insert(arn, pc);
                Ok(((), vec![row]))
            })?;
            ok(&|w| {
                w.nested("Policy", |w| write_policy(w, &pol, 0));
            })
        }
        Op::GetPolicy => {
            let arn = p.req("PolicyArn")?;
            let st = store.read();
            let pol = st.policies.get(arn).ok_or_else(|| no_policy(arn))?.clone();
            let n = attachments(&st, arn);
            drop(st);
            ok(&|w| {
                w.nested("Policy", |w| write_policy(w, &pol, n));
            })
        }
        Op::ListPolicies => {
            let scope = p.get("Scope").unwrap_or("All");
            let only_attached = p.get("OnlyAttached") == Some("true");
            let prefix = p.get("PathPrefix").unwrap_or("/");
            let st = store.read();
            let list: Vec<(ManagedPolicy, usize)> = st
                .policies
                .values()
                .filter(|x| match scope {
                    "AWS" => x.aws_managed,
                    "Local" => !x.aws_managed,
                    _ => true,
                })
                .filter(|x| x.path.starts_with(prefix))
                .map(|x| (x.clone(), attachments(&st, &x.arn())))
                .filter(|(_, n)| !only_attached || *n > 0)
                .collect();
            drop(st);
            let (list, truncated, next) = page(list, p)?;
            ok(&|w| {
                w.nested("Policies", |w| {
                    for (x, n) in &list {
                        w.nested("member", |w| write_policy(w, x, *n));
                    }
                });
                w.element("IsTruncated", if truncated { "true" } else { "false" });
                w.element_opt("Marker", next.as_deref());
            })
        }
        Op::DeletePolicy => {
            let arn = p.req("PolicyArn")?.to_owned();
            store.write(|st| {
                let pol = st.policies.get(&arn).ok_or_else(|| no_policy(&arn))?;
                if pol.aws_managed {
                    return Err(IamError::invalid("Cannot delete an AWS managed policy."));
                }
                if attachments(st, &arn) > 0 {
                    return Err(IamError::conflict(
                        "Cannot delete a policy attached to entities.",
                    ));
                }
                if pol.versions.len() > 1 {
                    return Err(IamError::conflict(
                        "This policy has more than one version. Before you delete a policy, you \
                         must delete the policy's versions. The default version is deleted with \
                         the policy.",
                    ));
                }
                st.policies.remove(&arn);
                Ok(((), vec![Row::delete("policy", &arn)]))
            })?;
            empty()
        }
        Op::CreatePolicyVersion => {
            let arn = p.req("PolicyArn")?.to_owned();
            let doc = p.req("PolicyDocument")?.to_owned();
            identity_doc(&doc, MANAGED_POLICY_MAX, "PolicySize")?;
            let set_default = p.get("SetAsDefault") == Some("true");
            let v = store.write(|st| {
                let pol = st.policies.get_mut(&arn).ok_or_else(|| no_policy(&arn))?;
                if pol.aws_managed {
                    return Err(IamError::invalid("Cannot modify an AWS managed policy."));
                }
                if pol.versions.len() >= POLICY_VERSIONS_MAX {
                    return Err(IamError::limit(format!(
                        "A managed policy can have up to {POLICY_VERSIONS_MAX} versions. Before \
                         you create a new version, you must delete an existing version."
                    )));
                }
                let v = PolicyVersion {
                    id: format!("v{}", pol.next_version),
                    document: doc,
                    created_ms: now_ms(),
                };
                pol.next_version += 1;
                pol.versions.push(v.clone());
                pol.updated_ms = v.created_ms;
                if set_default {
                    pol.default_version = v.id.clone();
                }
                Ok((
                    (v, pol.default_version.clone()),
                    vec![Row::put("policy", &arn, &*pol)],
                ))
            })?;
            ok(&|w| {
                w.nested("PolicyVersion", |w| {
                    w.element("VersionId", &v.0.id)
                        .element(
                            "IsDefaultVersion",
                            if v.0.id == v.1 { "true" } else { "false" },
                        )
                        .element("CreateDate", &ts(v.0.created_ms));
                });
            })
        }
        Op::GetPolicyVersion => {
            let arn = p.req("PolicyArn")?;
            let vid = p.req("VersionId")?;
            let pol = store
                .read()
                .policies
                .get(arn)
                .cloned()
                .ok_or_else(|| no_policy(arn))?;
            let v = pol.versions.iter().find(|v| v.id == vid).ok_or_else(|| {
                IamError::no_such(format!(
                    "Policy {arn} version {vid} does not exist or is not attachable."
                ))
            })?;
            ok(&|w| {
                w.nested("PolicyVersion", |w| {
                    w.element("Document", &url_encode(&v.document))
                        .element("VersionId", &v.id)
                        .element(
                            "IsDefaultVersion",
                            if v.id == pol.default_version {
                                "true"
                            } else {
                                "false"
                            },
                        )
                        .element("CreateDate", &ts(v.created_ms));
                });
            })
        }
        Op::ListPolicyVersions => {
            let arn = p.req("PolicyArn")?;
            let pol = store
                .read()
                .policies
                .get(arn)
                .cloned()
                .ok_or_else(|| no_policy(arn))?;
            ok(&|w| {
                w.nested("Versions", |w| {
                    for v in pol.versions.iter().rev() {
                        w.nested("member", |w| {
                            w.element("VersionId", &v.id)
                                .element(
                                    "IsDefaultVersion",
                                    if v.id == pol.default_version {
                                        "true"
                                    } else {
                                        "false"
                                    },
                                )
                                .element("CreateDate", &ts(v.created_ms));
                        });
                    }
                });
                w.element("IsTruncated", "false");
            })
        }
        Op::DeletePolicyVersion => {
            let arn = p.req("PolicyArn")?.to_owned();
            let vid = p.req("VersionId")?.to_owned();
            store.write(|st| {
                let pol = st.policies.get_mut(&arn).ok_or_else(|| no_policy(&arn))?;
                if pol.aws_managed {
                    return Err(IamError::invalid("Cannot modify an AWS managed policy."));
                }
                if pol.default_version == vid {
                    return Err(IamError::conflict(
                        "Cannot delete the default version of a policy.",
                    ));
                }
                let before = pol.versions.len();
                pol.versions.retain(|v| v.id != vid);
                if pol.versions.len() == before {
                    return Err(IamError::no_such(format!(
                        "Policy {arn} version {vid} does not exist or is not attachable."
                    )));
                }
                Ok(((), vec![Row::put("policy", &arn, &*pol)]))
            })?;
            empty()
        }
        Op::SetDefaultPolicyVersion => {
            let arn = p.req("PolicyArn")?.to_owned();
            let vid = p.req("VersionId")?.to_owned();
            store.write(|st| {
                let pol = st.policies.get_mut(&arn).ok_or_else(|| no_policy(&arn))?;
                if pol.aws_managed {
                    return Err(IamError::invalid("Cannot modify an AWS managed policy."));
                }
                if !pol.versions.iter().any(|v| v.id == vid) {
                    return Err(IamError::no_such(format!(
                        "Policy {arn} version {vid} does not exist or is not attachable."
                    )));
                }
                pol.default_version = vid;
                pol.updated_ms = now_ms();
                Ok(((), vec![Row::put("policy", &arn, &*pol)]))
            })?;
            empty()
        }
        Op::ListEntitiesForPolicy => {
            let arn = p.req("PolicyArn")?;
            let st = store.read();
            if !st.policies.contains_key(arn) {
                return Err(no_policy(arn));
            }
            let roles: Vec<Role> = st
                .roles
                .values()
                .filter(|r| r.attached.iter().any(|a| a == arn))
                .cloned()
                .collect();
            let users: Vec<User> = st
                .users
                .values()
                .filter(|u| u.attached.iter().any(|a| a == arn))
                .cloned()
                .collect();
            let groups: Vec<(String, String)> = st
                .groups
                .values()
                .filter(|g| g.attached.iter().any(|a| a == arn))
                .map(|g| (g.name.clone(), g.id.clone()))
                .collect();
            drop(st);
            ok(&|w| {
                w.nested("PolicyGroups", |w| {
                    for (n, id) in &groups {
                        w.nested("member", |w| {
                            w.element("GroupName", n).element("GroupId", id);
                        });
                    }
                });
                w.nested("PolicyUsers", |w| {
                    for u in &users {
                        w.nested("member", |w| {
                            w.element("UserName", &u.name).element("UserId", &u.id);
                        });
                    }
                });
                w.nested("PolicyRoles", |w| {
                    for r in &roles {
                        w.nested("member", |w| {
                            w.element("RoleName", &r.name).element("RoleId", &r.id);
                        });
                    }
                });
                w.element("IsTruncated", "false");
            })
        }
        Op::SimulatePrincipalPolicy | Op::SimulateCustomPolicy => {
            crate::simulate::api(iam, call.op, p, ok)?
        }
        _ => call.not_implemented(),
    })
}

/// The user an access-key operation is about: `UserName`, else the caller.
fn caller_user(call: &Call<Op>, p: &Params) -> Result<String> {
    match p.get("UserName") {
        Some(n) => Ok(n.to_owned()),
        None => match call.context().map(|c| &c.principal) {
            Some(nimbus_core::Principal::User(n)) => Ok(n.clone()),
            _ => Err(IamError::validation(
                "Must specify userName when calling with non-User credentials",
            )),
        },
    }
}

fn entity(op: Op, p: &Params) -> Result<(&'static str, String)> {
    Ok(match op {
        Op::AttachRolePolicy | Op::DetachRolePolicy | Op::ListAttachedRolePolicies => {
            ("role", p.req("RoleName")?.to_owned())
        }
        _ => ("user", p.req("UserName")?.to_owned()),
    })
}

fn attach(store: &Store, kind: &'static str, name: &str, arn: &str, on: bool) -> Result<()> {
    store.write(|st| {
        if !st.policies.contains_key(arn) {
            return Err(if arn.starts_with("arn:") {
                no_policy(arn)
            } else {
                IamError::invalid(format!("ARN {arn} is not valid."))
            });
        }
        let list: &mut Vec<String> = if kind == "role" {
            &mut st
                .roles
                .get_mut(name)
                .ok_or_else(|| no_role(name))?
                .attached
        } else {
            &mut st
                .users
                .get_mut(name)
                .ok_or_else(|| no_user(name))?
                .attached
        };
        let present = list.iter().any(|a| a == arn);
        match (on, present) {
            (true, false) => {
                if list.len() >= 10 {
                    return Err(IamError::limit(format!(
                        "Cannot exceed quota for PoliciesPer{}: 10",
                        if kind == "role" { "Role" } else { "User" }
                    )));
                }
                list.push(arn.to_owned())
            }
            (false, true) => list.retain(|a| a != arn),
            (false, false) => {
                return Err(IamError::no_such(format!("Policy {arn} was not found.")))
            }
            (true, true) => {}
        }
        let row = if kind == "role" {
            Row::put("role", name, &st.roles[name])
        } else {
            Row::put("user", name, &st.users[name])
        };
        Ok(((), vec![row]))
    })
}

/// Create a role (`EntityAlreadyExists` if the name is taken, case-insensitively).
pub fn create_role(store: &Store, role: Role) -> Result<Role> {
    let r = role.clone();
    store.write(|st| {
        if st.roles.keys().any(|n| n.eq_ignore_ascii_case(&r.name)) {
            return Err(IamError::exists(format!(
                "Role with name {} already exists.",
                r.name
            )));
        }
        let row = Row::put("role", &r.name, &r);
        st.roles.insert(r.name.clone(), r);
        Ok(((), vec![row]))
    })?;
    Ok(role)
}

/// Set a role's inline policy (validated by the caller), within the role's
/// aggregate inline size.
pub fn put_role_policy(store: &Store, role: &str, name: &str, doc: &str) -> Result<()> {
    store.write(|st| {
        let r = st.roles.get_mut(role).ok_or_else(|| no_role(role))?;
        let mut inline = r.inline.clone();
        inline.insert(name.to_owned(), doc.to_owned());
        let total: usize = inline.values().map(|d| counted_size(d)).sum();
        if total > ROLE_INLINE_MAX {
            return Err(IamError::limit(format!(
                "Maximum policy size of {ROLE_INLINE_MAX} bytes exceeded for role {role}"
            )));
        }
        r.inline = inline;
        Ok(((), vec![Row::put("role", role, &*r)]))
    })
}

/// Validate an inline identity policy for a role (for seams).
pub fn validate_role_policy(doc: &str) -> Result<()> {
    identity_doc(doc, ROLE_INLINE_MAX, "PolicySize").map(|_| ())
}

/// The account id in ARNs.
pub fn account() -> &'static str {
    ACCOUNT_ID
}

//! IAM groups: create, get (with members), list, delete; members; inline
//! and attached policies, which apply to every member.

use super::{check_name, check_path, identity_doc, no_policy, no_user, page, ts, url_encode, Ok};
use crate::ops::Op;
use crate::store::{random_id, Group, IamError, Result, Row, Store};
use axum::response::Response;
use nimbus_core::now_ms;
use nimbus_policy::counted_size;
use nimbus_protocol::XmlWriter;

/// The aggregate size of a group's inline policies.
pub const GROUP_INLINE_MAX: usize = 5120;

fn no_group(name: &str) -> IamError {
    IamError::no_such(format!("The group with name {name} cannot be found."))
}

fn write_group(w: &mut XmlWriter, g: &Group) {
    w.element("Path", &g.path)
        .element("GroupName", &g.name)
        .element("GroupId", &g.id)
        .element("Arn", &g.arn())
        .element("CreateDate", &ts(g.created_ms));
}

fn truncation(w: &mut XmlWriter, truncated: bool, next: Option<&str>) {
    w.element("IsTruncated", if truncated { "true" } else { "false" });
    w.element_opt("Marker", next);
}

/// Serve a group operation; `None` for any other.
pub(super) fn run(
    store: &Store,
    op: Op,
    p: &super::Params,
    ok: &Ok<'_>,
    empty: &dyn Fn() -> Response,
) -> Option<Result<Response>> {
    Some(match op {
        Op::CreateGroup => (|| {
            let name = p.req("GroupName")?;
            check_name("GroupName", name, 128)?;
            let path = p.get("Path").unwrap_or("/");
            check_path(path)?;
            let g = Group {
                name: name.to_owned(),
                id: random_id("AGPA", 17),
                path: path.to_owned(),
                created_ms: now_ms(),
                inline: Default::default(),
                attached: vec![],
                users: vec![],
            };
            let made = g.clone();
            store.write(|st| {
                if st.groups.keys().any(|n| n.eq_ignore_ascii_case(&g.name)) {
                    return Err(IamError::exists(format!(
                        "Group with name {} already exists.",
                        g.name
                    )));
                }
                let row = Row::put("group", &g.name, &g);
                st.groups.insert(g.name.clone(), g);
                Ok(((), vec![row]))
            })?;
            Ok(ok(&|w| {
                w.nested("Group", |w| write_group(w, &made));
            }))
        })(),
        Op::GetGroup => (|| {
            let name = p.req("GroupName")?;
            let st = store.read();
            let g = st.groups.get(name).cloned().ok_or_else(|| no_group(name))?;
            let users: Vec<_> = g
                .users
                .iter()
                .filter_map(|u| st.users.get(u).cloned())
                .collect();
            drop(st);
            let (users, truncated, next) = page(users, p)?;
            Ok(ok(&|w| {
                w.nested("Group", |w| write_group(w, &g));
                w.nested("Users", |w| {
                    for u in &users {
                        w.nested("member", |w| super::write_user(w, u));
                    }
                });
                truncation(w, truncated, next.as_deref());
            }))
        })(),
        Op::ListGroups | Op::ListGroupsForUser => (|| {
            let prefix = p.get("PathPrefix").unwrap_or("/");
            let st = store.read();
            let member_of = match op {
                Op::ListGroupsForUser => {
                    let u = p.req("UserName")?;
                    if !st.users.contains_key(u) {
                        return Err(no_user(u));
                    }
                    Some(u.to_owned())
                }
                _ => None,
            };
            let groups: Vec<Group> = st
                .groups
                .values()
                .filter(|g| g.path.starts_with(prefix))
                .filter(|g| member_of.as_ref().is_none_or(|u| g.users.contains(u)))
                .cloned()
                .collect();
            drop(st);
            let (groups, truncated, next) = page(groups, p)?;
            Ok(ok(&|w| {
                w.nested("Groups", |w| {
                    for g in &groups {
                        w.nested("member", |w| write_group(w, g));
                    }
                });
                truncation(w, truncated, next.as_deref());
            }))
        })(),
        Op::DeleteGroup => (|| {
            let name = p.req("GroupName")?.to_owned();
            store.write(|st| {
                let g = st.groups.get(&name).ok_or_else(|| no_group(&name))?;
                if !g.users.is_empty() {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must remove users from group first.",
                    ));
                }
                if !g.inline.is_empty() {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must delete policies first.",
                    ));
                }
                if !g.attached.is_empty() {
                    return Err(IamError::conflict(
                        "Cannot delete entity, must detach all policies first.",
                    ));
                }
                st.groups.remove(&name);
                Ok(((), vec![Row::delete("group", &name)]))
            })?;
            Ok(empty())
        })(),
        Op::AddUserToGroup | Op::RemoveUserFromGroup => (|| {
            let name = p.req("GroupName")?.to_owned();
            let user = p.req("UserName")?.to_owned();
            let add = op == Op::AddUserToGroup;
            store.write(|st| {
                if !st.users.contains_key(&user) {
                    return Err(no_user(&user));
                }
                let g = st.groups.get_mut(&name).ok_or_else(|| no_group(&name))?;
                let member = g.users.contains(&user);
                match (add, member) {
                    (true, false) => g.users.push(user.clone()),
                    (false, true) => g.users.retain(|u| *u != user),
                    (false, false) => {
                        return Err(IamError::no_such(format!(
                            "The user with name {user} cannot be found in group {name}."
                        )))
                    }
                    (true, true) => {}
                }
                Ok(((), vec![Row::put("group", &name, &*g)]))
            })?;
            Ok(empty())
        })(),
        Op::PutGroupPolicy => (|| {
            let name = p.req("GroupName")?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            check_name("PolicyName", &pname, 128)?;
            let doc = p.req("PolicyDocument")?.to_owned();
            identity_doc(&doc, GROUP_INLINE_MAX, "PolicySize")?;
            store.write(|st| {
                let g = st.groups.get_mut(&name).ok_or_else(|| no_group(&name))?;
                let mut inline = g.inline.clone();
                inline.insert(pname.clone(), doc.clone());
                let total: usize = inline.values().map(|d| counted_size(d)).sum();
                if total > GROUP_INLINE_MAX {
                    return Err(IamError::limit(format!(
                        "Maximum policy size of {GROUP_INLINE_MAX} bytes exceeded for group {name}"
                    )));
                }
                g.inline = inline;
                Ok(((), vec![Row::put("group", &name, &*g)]))
            })?;
            Ok(empty())
        })(),
        Op::GetGroupPolicy => (|| {
            let name = p.req("GroupName")?;
            let pname = p.req("PolicyName")?;
            let g = store
                .read()
                .groups
                .get(name)
                .cloned()
                .ok_or_else(|| no_group(name))?;
            let doc = g.inline.get(pname).ok_or_else(|| {
                IamError::no_such(format!(
                    "The group policy with name {pname} cannot be found."
                ))
            })?;
            Ok(ok(&|w| {
                w.element("GroupName", name)
                    .element("PolicyName", pname)
                    .element("PolicyDocument", &url_encode(doc));
            }))
        })(),
        Op::DeleteGroupPolicy => (|| {
            let name = p.req("GroupName")?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            store.write(|st| {
                let g = st.groups.get_mut(&name).ok_or_else(|| no_group(&name))?;
                if g.inline.remove(&pname).is_none() {
                    return Err(IamError::no_such(format!(
                        "The group policy with name {pname} cannot be found."
                    )));
                }
                Ok(((), vec![Row::put("group", &name, &*g)]))
            })?;
            Ok(empty())
        })(),
        Op::ListGroupPolicies => (|| {
            let name = p.req("GroupName")?;
            let names: Vec<String> = store
                .read()
                .groups
                .get(name)
                .ok_or_else(|| no_group(name))?
                .inline
                .keys()
                .cloned()
                .collect();
            let (names, truncated, next) = page(names, p)?;
            Ok(ok(&|w| {
                w.nested("PolicyNames", |w| {
                    for n in &names {
                        w.element("member", n);
                    }
                });
                truncation(w, truncated, next.as_deref());
            }))
        })(),
        Op::AttachGroupPolicy | Op::DetachGroupPolicy => (|| {
            let name = p.req("GroupName")?.to_owned();
            let arn = p.req("PolicyArn")?.to_owned();
            let on = op == Op::AttachGroupPolicy;
            store.write(|st| {
                if !st.policies.contains_key(&arn) {
                    return Err(if arn.starts_with("arn:") {
                        no_policy(&arn)
                    } else {
                        IamError::invalid(format!("ARN {arn} is not valid."))
                    });
                }
                let g = st.groups.get_mut(&name).ok_or_else(|| no_group(&name))?;
                let present = g.attached.contains(&arn);
                match (on, present) {
                    (true, false) => {
                        if g.attached.len() >= 10 {
                            return Err(IamError::limit(
                                "Cannot exceed quota for PoliciesPerGroup: 10",
                            ));
                        }
                        g.attached.push(arn.clone());
                    }
                    (false, true) => g.attached.retain(|a| *a != arn),
                    (false, false) => {
                        return Err(IamError::no_such(format!("Policy {arn} was not found.")))
                    }
                    (true, true) => {}
                }
                Ok(((), vec![Row::put("group", &name, &*g)]))
            })?;
            Ok(empty())
        })(),
        Op::ListAttachedGroupPolicies => (|| {
            let name = p.req("GroupName")?;
            let st = store.read();
            let g = st.groups.get(name).ok_or_else(|| no_group(name))?;
            let list: Vec<(String, String)> = g
                .attached
                .iter()
                .filter_map(|a| st.policies.get(a).map(|m| (m.name.clone(), a.clone())))
                .collect();
            drop(st);
            let (list, truncated, next) = page(list, p)?;
            Ok(ok(&|w| {
                w.nested("AttachedPolicies", |w| {
                    for (n, a) in &list {
                        w.nested("member", |w| {
                            w.element("PolicyName", n).element("PolicyArn", a);
                        });
                    }
                });
                truncation(w, truncated, next.as_deref());
            }))
        })(),
        _ => return None,
    })
}

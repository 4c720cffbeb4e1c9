//! `AWS::IAM::Role`, `AWS::IAM::Policy` and `AWS::IAM::ManagedPolicy`: stored in
//! apps.db only (the resource row is the record: its properties hold the trust
//! and permission documents) until the IAM service exists; this one function is
//! where it will call IAM. Nothing enforces these policies yet.

use super::{attrs, s, Cx, Made, R};
use serde_json::Value;

pub async fn put(cx: &Cx<'_>, kind: &str, logical: &str, props: &Value) -> R<Made> {
    let path = s(props, "Path").unwrap_or("/");
    Ok(match kind {
        "AWS::IAM::Role" => {
            let name = s(props, "RoleName").unwrap_or(logical).to_string();
            let arn = format!("arn:aws:iam::{}:role{path}{name}", cx.services.account_id);
            Made {
                physical_id: name.clone(),
                ref_value: name.clone().into(),
                attributes: attrs(&[
                    ("Arn", arn.into()),
                    (
                        "RoleId",
                        format!("AROA{}", crate::naming::random_suffix()).into(),
                    ),
                ]),
            }
        }
        "AWS::IAM::ManagedPolicy" => {
            let name = s(props, "ManagedPolicyName").unwrap_or(logical).to_string();
            let arn = format!("arn:aws:iam::{}:policy{path}{name}", cx.services.account_id);
            Made {
                physical_id: arn.clone(),
                ref_value: arn.clone().into(),
                attributes: attrs(&[("PolicyArn", arn.into())]),
            }
        }
        _ => {
            let id = format!("{}-{logical}-{}", cx.app, crate::naming::random_suffix());
            Made {
                physical_id: id.clone(),
                ref_value: id.into(),
                attributes: Default::default(),
            }
        }
    })
}

//! Whom a request to the API acts as.

use crate::ACCOUNT_ID;

/// The identity a request is attributed to once the edge has authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// The account root (`arn:aws:iam::<account>:root`): every key configured
    /// without a user name, and every unsigned request when authentication is off.
    Root,
    /// The IAM user of that name (`arn:aws:iam::<account>:user/<name>`).
    User(String),
    /// A role session: what a function's own credentials act as
    /// (`arn:aws:sts::<account>:assumed-role/<role>/<session>`, the session being
    /// the function's name, as on Lambda).
    AssumedRole {
        /// The role's name (the last path segment of its ARN).
        role: String,
        /// The session name (the function's name for function credentials).
        session: String,
    },
    /// A federated user session (STS `GetFederationToken`):
    /// `arn:aws:sts::<account>:federated-user/<name>`, acting within the
    /// permissions of the IAM user (or, `None`, the root) that asked for it.
    FederatedUser {
        /// The name given to `GetFederationToken`.
        name: String,
        /// The IAM user whose credentials asked for it; `None`: the root.
        user: Option<String>,
    },
}

impl Principal {
    /// The principal's ARN, as `GetCallerIdentity` reports it.
    pub fn arn(&self) -> String {
        match self {
            Principal::Root => format!("arn:aws:iam::{ACCOUNT_ID}:root"),
            Principal::User(name) => format!("arn:aws:iam::{ACCOUNT_ID}:user/{name}"),
            Principal::AssumedRole { role, session } => {
                format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/{session}")
            }
            Principal::FederatedUser { name, .. } => {
                format!("arn:aws:sts::{ACCOUNT_ID}:federated-user/{name}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(Principal::Root.arn(), "arn:aws:iam::123456789012:root");
        assert_eq!(
            Principal::AssumedRole {
                role: "fn-role".into(),
                session: "thumbs".into()
            }
            .arn(),
            "arn:aws:sts::123456789012:assumed-role/fn-role/thumbs"
        );
    }
}

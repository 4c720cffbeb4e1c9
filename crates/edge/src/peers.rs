//! Requests from function instances (issue 19: "the platform's own ports accept a
//! function only with its own credentials").
//!
//! The server tells the edge how to recognise a connection made by an instance
//! ([`InstancePeers`]: on Linux, the uid owning the peer's loopback socket is an
//! instance's). Such a request is authenticated even when authentication is off
//! (no `--credentials`): it must carry a SigV4 signature made with that
//! function's own session key (the `AWS_ACCESS_KEY_ID`/`AWS_SESSION_TOKEN` the
//! instance was handed), or with one of the configured static keys when there are
//! any. Unsigned, unknown-key and another function's key requests are refused
//! with the protocol's authentication error (403) before any front-end runs, the
//! control API included. What a function may do with its own key is the
//! authorisation layer's business, not this one's.

use crate::auth::Principal;
use nimbus_auth::AuthError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// The instance a connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePeer {
    /// The uid owning the peer socket.
    pub uid: u32,
    /// The function the instance runs (`None`: not known, e.g. a spare not yet
    /// claimed; only static keys are accepted from it then).
    pub function: Option<String>,
}

type Identify = dyn Fn(SocketAddr, SocketAddr) -> Option<InstancePeer> + Send + Sync;

/// How to tell whether a connection (`local`, `peer`) comes from an instance.
#[derive(Clone)]
pub struct InstancePeers(Arc<Identify>);

impl InstancePeers {
    pub fn new(
        f: impl Fn(SocketAddr, SocketAddr) -> Option<InstancePeer> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }

    /// The instance behind this connection, if it is one.
    pub fn identify(&self, local: SocketAddr, peer: SocketAddr) -> Option<InstancePeer> {
        (self.0)(local, peer)
    }
}

impl fmt::Debug for InstancePeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InstancePeers(..)")
    }
}

/// Whether `principal` (whom the request's verified key acts as) may be used by
/// `instance`: a static key (there are some only with authentication on), or a
/// session key minted for the instance's own function.
pub(crate) fn check(
    instance: &InstancePeer,
    principal: &Principal,
    access_key_id: &str,
) -> Result<(), AuthError> {
    let own = match (principal, access_key_id.starts_with(nimbus_auth::SESSION_KEY_PREFIX)) {
        (_, false) => true,
        (Principal::AssumedRole { session, .. }, true) => {
            instance.function.as_deref() == Some(session.as_str())
        }
        (_, true) => false,
    };
    if own {
        Ok(())
    } else {
        tracing::warn!(
            uid = instance.uid,
            function = instance.function.as_deref().unwrap_or("?"),
            access_key = access_key_id,
            "refused an instance's request signed with another function's key"
        );
        Err(AuthError::InvalidToken {
            access_key_id: access_key_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_own_function_key_or_a_static_key_passes() {
        let me = InstancePeer {
            uid: 1_900_000_001,
            function: Some("a".into()),
        };
        let role = |s: &str| Principal::AssumedRole {
            role: "r".into(),
            session: s.into(),
        };
        assert!(check(&me, &role("a"), "ASIAAAAA").is_ok());
        assert!(check(&me, &role("b"), "ASIABBBB").is_err());
        assert!(check(&me, &Principal::Root, "AKIDSTATIC").is_ok());
        let unknown = InstancePeer {
            uid: 1_900_000_002,
            function: None,
        };
        assert!(check(&unknown, &role("a"), "ASIAAAAA").is_err());
        assert!(check(&unknown, &Principal::Root, "AKIDSTATIC").is_ok());
    }
}

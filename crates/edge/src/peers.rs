//! Requests from function instances (issue 19: "the platform's own ports accept a
//! function only with its own credentials").
//!
//! The server tells the edge how to recognise a connection made by an instance
//! ([`InstancePeers`]: on Linux, the uid owning the peer's loopback socket is an
//! instance's). Such a request is authenticated even when authentication is off
//! (no `--credentials`): it must carry a SigV4 signature made with that
//! function's own session key (the `AWS_ACCESS_KEY_ID`/`AWS_SESSION_TOKEN` the
//! instance was handed), or with one of the configured static keys when there are
//! any (a presigned URL, a capability handed on on purpose, may carry another
//! function's key). Unsigned, unknown-key and another function's key requests are refused
//! with the protocol's authentication error (403) before any front-end runs, the
//! control API included. What a function may do with its own key is the
//! authorisation layer's business, not this one's.
//!
//! Instances also hold a bounded share of the edge's connections ([`ConnCaps`]),
//! so socket exhaustion by a function cannot lock the platform's users out.

use crate::auth::Principal;
use nimbus_auth::AuthError;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The instance a connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePeer {
    /// The uid owning the peer socket.
    pub uid: u32,
    /// The function the instance runs (`None`: not known, e.g. a spare not yet
    /// claimed; only static keys are accepted from it then).
    pub function: Option<String>,
}

/// Who is behind a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// Not an instance (a remote client, a local process of another uid).
    Other,
    Instance(InstancePeer),
    /// A local socket whose owner cannot be known any more (its process closed
    /// it right after sending): it could be an instance's, so it is not served.
    Unknown,
}

type Identify = dyn Fn(SocketAddr, SocketAddr) -> PeerIdentity + Send + Sync;

/// How to tell whether a connection (`local`, `peer`) comes from an instance.
#[derive(Clone)]
pub struct InstancePeers(Arc<Identify>);

impl InstancePeers {
    pub fn new(f: impl Fn(SocketAddr, SocketAddr) -> PeerIdentity + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Who is behind this connection.
    pub fn identify(&self, local: SocketAddr, peer: SocketAddr) -> PeerIdentity {
        (self.0)(local, peer)
    }
}

impl fmt::Debug for InstancePeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InstancePeers(..)")
    }
}

/// Caps on the edge connections function instances hold at once, so that
/// instances opening sockets in bulk (or never sending a request) cannot take
/// every connection slot from the platform's users: one instance at most an
/// eighth of `--max-connections`, all instances together at most half. A
/// connection past a cap is closed as soon as it is accepted.
#[derive(Debug)]
pub(crate) struct ConnCaps {
    per_instance: usize,
    all: usize,
    held: Mutex<(usize, HashMap<u32, usize>)>,
}

impl ConnCaps {
    pub(crate) fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            per_instance: (max_connections / 8).max(1),
            all: (max_connections / 2).max(1),
            held: Mutex::default(),
        })
    }

    /// A slot for one more connection of instance `uid`, if within the caps.
    pub(crate) fn admit(self: &Arc<Self>, uid: u32) -> Option<ConnHold> {
        let mut held = self.held.lock().unwrap();
        let (total, by_uid) = &mut *held;
        let mine = by_uid.entry(uid).or_insert(0);
        if *mine >= self.per_instance || *total >= self.all {
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(ConnHold {
            caps: self.clone(),
            uid,
        })
    }
}

/// One admitted instance connection; released when dropped.
#[derive(Debug)]
pub(crate) struct ConnHold {
    caps: Arc<ConnCaps>,
    uid: u32,
}

impl Drop for ConnHold {
    fn drop(&mut self) {
        let mut held = self.caps.held.lock().unwrap();
        let (total, by_uid) = &mut *held;
        *total = total.saturating_sub(1);
        if let Some(n) = by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                by_uid.remove(&self.uid);
            }
        }
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
    let own = match (
        principal,
        access_key_id.starts_with(nimbus_auth::SESSION_KEY_PREFIX),
    ) {
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

    #[test]
    fn instance_connections_are_capped_per_instance_and_in_all() {
        let caps = ConnCaps::new(64); // 8 per instance, 32 in all
        let a: Vec<_> = (0..8).map(|_| caps.admit(1).unwrap()).collect();
        assert!(caps.admit(1).is_none());
        let others: Vec<_> = (2..=4)
            .flat_map(|u| (0..8).map(move |_| u))
            .map(|u| caps.admit(u).unwrap())
            .collect();
        assert_eq!(a.len() + others.len(), 32);
        assert!(caps.admit(5).is_none());
        drop(a);
        assert!(caps.admit(1).is_some());
        assert!(caps.admit(5).is_some());
    }
}

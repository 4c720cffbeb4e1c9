//! The front-end of a service whose operations are not built yet.

use crate::{Call, Operation};
use axum::extract::Request;
use nimbus_protocol::{Frontend, ResponseFuture, ServiceMeta};
use std::marker::PhantomData;

/// Serves `O`'s API before its issue implements any operation: every request is
/// decoded in its protocol, a known operation answers `501 NotImplemented` naming
/// itself, anything else the protocol's unknown-operation error. A service issue
/// replaces it with the service's own front-end, which decodes with [`Call`] too.
pub struct PendingFrontend<O>(PhantomData<fn() -> O>);

impl<O: Operation> PendingFrontend<O> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<O: Operation> Default for PendingFrontend<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Operation> Frontend for PendingFrontend<O> {
    fn meta(&self) -> &'static ServiceMeta {
        O::meta()
    }

    fn call(&self, req: Request) -> ResponseFuture {
        Box::pin(async move {
            match Call::<O>::decode(req).await {
                Ok(call) => call.not_implemented(),
                Err(resp) => resp,
            }
        })
    }
}

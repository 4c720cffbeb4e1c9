//! The local implementation of the dispatch seam: this server's invoker (sync) and
//! its durable async queue (async), behind [`nimbus_dispatch::Dispatch`].

use crate::{AsyncQueue, Invoker};
use nimbus_core::FunctionConfig;
use nimbus_dispatch::{BoxFuture, Dispatch, FunctionLookup, Invocation, InvokeResult, Result};
use std::sync::Arc;

/// The invoker and the async queue of one server, as one [`Dispatch`].
#[derive(Clone)]
pub struct LocalDispatch {
    invoker: Invoker,
    queue: AsyncQueue,
}

impl LocalDispatch {
    pub fn new(invoker: Invoker, queue: AsyncQueue) -> Self {
        Self { invoker, queue }
    }

    /// As the `Arc<dyn Dispatch>` triggers and front-ends take.
    pub fn shared(invoker: Invoker, queue: AsyncQueue) -> Arc<dyn Dispatch> {
        Arc::new(Self::new(invoker, queue))
    }
}

impl FunctionLookup for LocalDispatch {
    fn function(&self, name: &str) -> Option<Arc<FunctionConfig>> {
        FunctionLookup::function(&self.invoker, name)
    }

    fn qualifier_exists(&self, name: &str, qualifier: Option<&str>) -> bool {
        FunctionLookup::qualifier_exists(&self.invoker, name, qualifier)
    }

    fn region(&self) -> &str {
        FunctionLookup::region(&self.invoker)
    }
}

impl Dispatch for LocalDispatch {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'_, Result<InvokeResult>> {
        Box::pin(self.invoker.invoke(inv))
    }

    fn enqueue(&self, inv: Invocation, source: &'static str) -> BoxFuture<'_, Result<String>> {
        Box::pin(self.queue.enqueue(inv, source))
    }
}

/// The invoker alone answers lookups, for callers that validate against it (a
/// Lambda authorizer's function must exist).
impl FunctionLookup for Invoker {
    fn function(&self, name: &str) -> Option<Arc<FunctionConfig>> {
        self.get(name)
    }

    fn qualifier_exists(&self, name: &str, qualifier: Option<&str>) -> bool {
        Invoker::qualifier_exists(self, name, qualifier)
    }

    fn region(&self) -> &str {
        Invoker::region(self)
    }
}

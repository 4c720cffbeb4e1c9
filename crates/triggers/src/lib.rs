//! Triggers: the sources of events that feed the dispatcher (DESIGN.md, "Backend
//! services and event sources").
//!
//! A trigger turns something that happened — an HTTP request on a gateway route or
//! function URL, a schedule's slot coming due, and later a message on an SQS queue, a
//! record on a DynamoDB or Kinesis stream, an SNS notification, an EventBridge event
//! — into invocations of a function, through the [`nimbus_dispatch::Dispatch`] seam,
//! never through the concrete invoker.
//!
//! Two shapes share this vocabulary:
//!
//! * **Request-driven** triggers (gateway routes, function URLs) call
//!   [`Dispatch::invoke`] per request and answer with the result; they hold an
//!   `Arc<dyn Dispatch>` and need nothing more.
//! * **Self-driven** triggers (schedules now; queue pollers, stream pollers and
//!   notification fan-out next) run on their own, implement [`Trigger`] (so the
//!   server can start and list them uniformly), and deliver each event to a
//!   [`Target`]: whether its function exists now, and "take this event" with an
//!   answer that says whether to retry ([`SubmitError::Transient`]) or give the
//!   event up ([`SubmitError::Permanent`]). [`DispatchTarget`] is the target every
//!   trigger uses in the server: an async invocation through the dispatcher (so
//!   retries, maximum event age and destinations apply), its record stamped with the
//!   trigger's [`nimbus_core::Trigger`] kind.
//!
//! The event filtering those triggers share (EventBridge patterns, SNS filter
//! policies, event-source-mapping filter criteria) is `nimbus-patterns`'.

pub mod esm;
pub mod sinks;

use bytes::Bytes;
use nimbus_dispatch::{Dispatch, Invocation, InvokeError};
use std::sync::Arc;

pub use nimbus_dispatch::BoxFuture;

/// A self-driven source of events (a scheduler, a queue poller, …).
pub trait Trigger: Send + Sync + 'static {
    /// What invocation records of its events say started them.
    fn kind(&self) -> nimbus_core::Trigger;
    /// A short name for logs (`schedules`, `sqs-poller`, …).
    fn name(&self) -> &str;
    /// Start delivering events; the task runs until aborted or the server stops.
    fn start(&self) -> tokio::task::JoinHandle<()>;
}

/// One event a trigger delivers: a function to run asynchronously with a payload.
#[derive(Debug, Clone)]
pub struct Event {
    /// What started it, for the invocation record.
    pub kind: nimbus_core::Trigger,
    /// The event source, for logs (`schedule`, `sqs`, …).
    pub source: &'static str,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Bytes,
    /// The X-Ray trace header to run it under; unique per event when the trigger
    /// needs to recognise it again (a schedule's firing).
    pub trace_id: Option<String>,
}

/// Why an event could not be handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// It never will be (the function is gone, the payload is too large): the
    /// trigger gives the event up.
    Permanent(String),
    /// Try again shortly (storage trouble).
    Transient(String),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Permanent(m) | SubmitError::Transient(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SubmitError {}

impl From<InvokeError> for SubmitError {
    /// Only the backend's own trouble is worth retrying; everything else (a missing
    /// function, a payload too large) would fail the same way again.
    fn from(e: InvokeError) -> Self {
        match e {
            InvokeError::Service(_) => SubmitError::Transient(e.to_string()),
            _ => SubmitError::Permanent(e.to_string()),
        }
    }
}

/// Where a self-driven trigger delivers its events. `E` is the trigger's own event
/// type (a schedule's firing carries its slot), convertible into an [`Event`].
pub trait Target<E = Event>: Send + Sync + 'static {
    /// Whether the function (and qualifier) exists now.
    fn exists(&self, function: &str, qualifier: Option<&str>) -> bool;
    /// Hand one event over; returns its request id once it is durable.
    fn submit(&self, event: E) -> BoxFuture<'_, Result<String, SubmitError>>;
}

/// The dispatcher as a [`Target`]: events become async invocations.
#[derive(Clone)]
pub struct DispatchTarget {
    dispatch: Arc<dyn Dispatch>,
}

impl DispatchTarget {
    pub fn new(dispatch: Arc<dyn Dispatch>) -> Self {
        Self { dispatch }
    }
}

impl<E: Into<Event> + Send + 'static> Target<E> for DispatchTarget {
    fn exists(&self, function: &str, qualifier: Option<&str>) -> bool {
        self.dispatch.qualifier_exists(function, qualifier)
    }

    fn submit(&self, event: E) -> BoxFuture<'_, Result<String, SubmitError>> {
        let ev: Event = event.into();
        Box::pin(async move {
            let inv = Invocation {
                function: ev.function,
                qualifier: ev.qualifier,
                payload: ev.payload,
                trigger: ev.kind,
                client_context: None,
                trace_id: ev.trace_id,
            };
            self.dispatch
                .enqueue(inv, ev.source)
                .await
                .map_err(SubmitError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backend_trouble_is_retried() {
        assert!(matches!(
            SubmitError::from(InvokeError::Service("disk full".into())),
            SubmitError::Transient(m) if m == "disk full"
        ));
        assert!(matches!(
            SubmitError::from(InvokeError::NotFound("f".into())),
            SubmitError::Permanent(m) if m == "Function not found: f"
        ));
        assert!(matches!(
            SubmitError::from(InvokeError::TooLarge {
                size: 2,
                max: 1,
                kind: "Event"
            }),
            SubmitError::Permanent(_)
        ));
    }
}

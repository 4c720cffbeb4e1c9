//! Function instances for Nimbus.
//!
//! This crate owns everything between "run this request on function F" and a process
//! that speaks the Lambda Runtime API:
//!
//! * [`api`]: the Runtime API server (`/2018-06-01/runtime/...`), one loopback listener
//!   per instance, so an instance can only ever see its own invocations.
//! * [`sandbox`]: starting a process with a minimal environment, a private scratch dir,
//!   its own process group, a parent-death signal, rlimits, and a cgroup (v2 or v1) that
//!   caps memory and pids; killing it and everything it forked.
//! * [`interpreters`]: finding the host's `python3.x` / `node` for a runtime name.
//! * [`instance`]: one running instance, its log pump (stdout+stderr attributed to the
//!   current request, framed by START/END/REPORT) and the invoke state machine
//!   (response, error, timeout, out-of-memory, crash).
//! * [`spare`]: pre-started Node.js and Python interpreters with the bootstrap
//!   loaded, each claimed once by a cold start that would be no different started
//!   from scratch.
//! * [`services`]: what an instance gets to call Nimbus's AWS services as a Lambda
//!   function calls AWS's (endpoint, its own credentials, the SDKs).
//! * [`layers`]: the environment of a function's Lambda layers (its `/opt`).
//! * [`pool`]: per-function warm pools: cold start, warm reuse (LIFO), idle reaping,
//!   provisioned concurrency, retiring instances of an old code revision.
//!
//! The process driver ([`ProcessDriver`], spares included) is behind the
//! [`RuntimeDriver`] trait ([`driver`]) and the pool is generic over it, so the Wasm
//! driver of DESIGN.md slots in beside it as a second implementation.

pub mod api;
pub mod driver;
pub mod instance;
pub mod interpreters;
pub mod isolation;
pub mod layers;
pub mod pool;
pub mod sandbox;
pub mod services;
pub mod spare;

pub use driver::{DriverInstance, ProcessDriver, RuntimeDriver};
pub use instance::{InvokeOutcome, InvokeRequest, Reply};
pub use pool::{Deployment, InstanceInfo, InstanceState, Lease, Pool, PoolSettings, ScaleUp};

/// Errors starting or talking to an instance (not the function's own errors, which
/// are values of [`nimbus_core::FunctionError`]).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no interpreter found on this host for runtime {0}")]
    NoInterpreter(String),
    #[error("could not start the function process: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the instance pool is shutting down")]
    ShuttingDown,
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

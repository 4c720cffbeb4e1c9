//! The runtime-driver seam (DESIGN.md "Instances"): what the pool needs from
//! whatever runs function instances. Today's driver is the process driver
//! ([`ProcessDriver`]: a sandboxed process per instance, with pre-started spares);
//! the Wasm driver of DESIGN.md is to be a second implementation.
//!
//! The pool is generic over the driver ([`crate::Pool<D>`], defaulting to the
//! process driver), not `Arc<dyn RuntimeDriver>`: the lease/invoke/release hot path
//! stays statically dispatched, with no boxed futures and no extra indirection per
//! request (the methods return `impl Future`, which a trait object could not).

use crate::instance::{Instance, InstanceSpec, InvokeOutcome, InvokeRequest, StartError};
use crate::sandbox::CpuReading;
use nimbus_telemetry::Telemetry;
use std::future::Future;
use std::sync::Arc;

/// The process driver: sandboxed processes, spares included.
pub type ProcessDriver = crate::sandbox::Driver;

/// Starts instances and owns what they share (spares, cgroups).
pub trait RuntimeDriver: Send + Sync + 'static {
    type Instance: DriverInstance;

    /// Start one instance and wait for its init to finish.
    fn start(
        &self,
        spec: InstanceSpec,
        telemetry: Telemetry,
    ) -> impl Future<Output = Result<Arc<Self::Instance>, StartError>> + Send;

    /// How instance limits are enforced, for the start-up banner.
    fn describe_limits(&self) -> &'static str;

    /// Release what the driver holds beside its instances (spares).
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}

/// One running instance, serving one request at a time.
pub trait DriverInstance: Send + Sync + 'static {
    fn id(&self) -> &str;
    /// The host process id (0 where there is none).
    fn pid(&self) -> u32;
    /// The code revision it runs.
    fn revision(&self) -> u64;
    fn provisioned(&self) -> bool;
    fn init_ms(&self) -> f64;
    /// Whether its start skipped work a full start pays (a spare was claimed), so
    /// the pool leaves it out of its start-cost average.
    fn started_from_spare(&self) -> bool;
    /// Whether it is gone (or condemned).
    fn is_dead(&self) -> bool;
    /// Its scheduler clocks, where the driver can tell (adaptive scale-up).
    fn cpu_reading(&self) -> Option<CpuReading>;
    /// Run one request.
    fn invoke(&self, req: InvokeRequest) -> impl Future<Output = InvokeOutcome> + Send;
    /// Stop it and everything it started.
    fn stop(&self) -> impl Future<Output = ()> + Send;
}

impl RuntimeDriver for ProcessDriver {
    type Instance = Instance;

    fn start(
        &self,
        spec: InstanceSpec,
        telemetry: Telemetry,
    ) -> impl Future<Output = Result<Arc<Instance>, StartError>> + Send {
        Instance::start(spec, self, telemetry)
    }

    fn describe_limits(&self) -> &'static str {
        ProcessDriver::describe_limits(self)
    }

    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        self.shutdown_spares()
    }
}

impl DriverInstance for Instance {
    fn id(&self) -> &str {
        &self.id
    }
    fn pid(&self) -> u32 {
        self.pid
    }
    fn revision(&self) -> u64 {
        self.revision
    }
    fn provisioned(&self) -> bool {
        self.provisioned
    }
    fn init_ms(&self) -> f64 {
        self.init_ms
    }
    fn started_from_spare(&self) -> bool {
        self.from_spare
    }
    fn is_dead(&self) -> bool {
        Instance::is_dead(self)
    }
    fn cpu_reading(&self) -> Option<CpuReading> {
        Instance::cpu_reading(self)
    }
    fn invoke(&self, req: InvokeRequest) -> impl Future<Output = InvokeOutcome> + Send {
        Instance::invoke(self, req)
    }
    fn stop(&self) -> impl Future<Output = ()> + Send {
        Instance::stop(self)
    }
}

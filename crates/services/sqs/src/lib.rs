//! Nimbus's Amazon SQS: queues wire-compatible with SQS in both of its protocols
//! (awsJson 1.0, as current SDKs send it, and the legacy awsQuery with XML answers),
//! durable across `kill -9`, and the SQS side of SQS → Lambda.
//!
//! * [`ops`]: the API's exhaustive operation table, generated from the AWS model.
//! * [`wire`]: the edge front-end — decode in either protocol, answer in the same.
//! * [`core`]: queues and messages in memory, indexed for receive; standard and FIFO
//!   semantics, visibility, delays, retention, long polling woken by sends, redrive
//!   to dead-letter queues, message move tasks.
//! * [`store`]: the [`store::Backend`] trait every state change goes through, and
//!   its SQLite implementation (`<data>/sqs.db`, WAL, group commit).
//! * [`sink`]: the [`nimbus_triggers::sinks::QueueSink`] other services deliver into.
//! * [`esm`]: the [`nimbus_triggers::esm::MappingSource`] for SQS queue ARNs — the
//!   pollers of event-source mappings.
//! * [`admin`]: `/_nimbus/services/sqs/…` (queues, depth, peek, redrive) and the
//!   per-queue `/metrics`.

pub mod admin;
pub mod core;
pub mod error;
pub mod esm;
pub mod model;
pub mod ops;
pub mod sink;
pub mod store;
pub mod wire;

pub use ops::{Op, META};

use nimbus_svc_common::{Service, ServiceContext, StartError};
use std::sync::Arc;

/// Start the service: open `<data>/sqs.db`, load every queue, register the queue
/// sink and the mapping source, and hand back the front-end and admin surface.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let backend = store::SqliteBackend::open(&ctx.data_dir.join("sqs.db"))
        .map_err(|e| StartError::new("sqs", e))?;
    let sqs = core::Sqs::open(Arc::new(backend), &ctx.region, &ctx.account_id)
        .map_err(|e| StartError::new("sqs", e))?;
    sqs.resume_moves();
    ctx.sinks
        .register_queues(Arc::new(sink::QueueSinkImpl::new(sqs.clone())));
    ctx.mapping_sources
        .register(Arc::new(esm::SqsMappingSource::new(sqs.clone())));
    Ok(Service {
        frontend: Arc::new(wire::SqsFrontend {
            sqs: sqs.clone(),
            endpoint: ctx.endpoint.clone(),
        }),
        admin: Some(Arc::new(admin::SqsAdmin::new(sqs))),
    })
}

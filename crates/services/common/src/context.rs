//! What the server hands every service at start, and what a service hands back.
//!
//! Each service crate exposes `pub fn start(ctx: &ServiceContext) ->
//! Result<Service, StartError>`: it opens its own SQLite file under
//! [`ServiceContext::data_dir`] (`<data>/<service>.db`, DESIGN.md decision 4),
//! starts its background tasks (outbox drains, sweeps), registers the sink it
//! implements in [`ServiceContext::sinks`] and, when it is an event source, its
//! mapping source in [`ServiceContext::mapping_sources`]; it returns its edge
//! [`Frontend`] and, optionally, a [`ServiceAdmin`] the control API mounts under
//! `/_nimbus/services/<name>/…` and whose metrics `/metrics` appends.

use axum::extract::Request;
use nimbus_dispatch::Dispatch;
use nimbus_protocol::{Frontend, ResponseFuture};
use nimbus_triggers::esm::{MappingSource, ShardSource};
use nimbus_triggers::sinks::Sinks;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What a service may use.
#[derive(Clone)]
pub struct ServiceContext {
    /// The server's data dir; a service keeps its files in `<name>.db` and, for
    /// large data, a directory named after it.
    pub data_dir: PathBuf,
    /// The region the server answers for (a request's SigV4 scope may name
    /// another: `EdgeContext::region` is the request's).
    pub region: String,
    pub account_id: String,
    /// The edge listener's base URL as clients reach it (`http://127.0.0.1:4566`),
    /// for URLs a service hands out (queue URLs, `SigningCertURL`, presigned
    /// links) when the request's `Host` does not say better.
    pub endpoint: String,
    /// Functions, for triggers that invoke them.
    pub dispatch: Arc<dyn Dispatch>,
    /// Deliveries into other services.
    pub sinks: Arc<Sinks>,
    /// Event-source-mapping sources, collected for the mapping registry.
    pub mapping_sources: Arc<MappingSources>,
    /// Operator settings for one service or another, from `nimbus up`'s flags
    /// (`smtp_relay`: SES's `--smtp-relay` URL). Absent keys mean the default.
    pub options: BTreeMap<String, String>,
}

/// The sources registered for event-source mappings.
#[derive(Default)]
pub struct MappingSources {
    sources: Mutex<Vec<Arc<dyn MappingSource>>>,
    shards: Mutex<Vec<Arc<dyn ShardSource>>>,
}

impl MappingSources {
    /// A source that runs mappings itself (SQS).
    pub fn register(&self, s: Arc<dyn MappingSource>) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
    }

    /// A stream the generic stream poller reads (DynamoDB Streams, Kinesis).
    pub fn register_shards(&self, s: Arc<dyn ShardSource>) {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
    }

    pub fn sources(&self) -> Vec<Arc<dyn MappingSource>> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn shard_sources(&self) -> Vec<Arc<dyn ShardSource>> {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A started service.
pub struct Service {
    pub frontend: Arc<dyn Frontend>,
    pub admin: Option<Arc<dyn ServiceAdmin>>,
}

impl Service {
    /// A service with no admin surface.
    pub fn frontend_only(frontend: Arc<dyn Frontend>) -> Self {
        Self {
            frontend,
            admin: None,
        }
    }
}

/// A service's introspection for operators and tests (DESIGN.md decision 7).
pub trait ServiceAdmin: Send + Sync + 'static {
    /// The path segment under `/_nimbus/services/` (`sqs`, `mail`, …).
    fn name(&self) -> &'static str;
    /// Serve `/_nimbus/services/<name>/<rest>`; the request's URI keeps its full
    /// path. Answers in JSON; errors in the control API's `{"Type","Message"}`
    /// shape with the right status.
    fn call(&self, req: Request) -> ResponseFuture;
    /// Prometheus text-format lines (with their `# HELP`/`# TYPE`) appended to
    /// `/metrics`; read at scrape time.
    fn metrics(&self) -> String {
        String::new()
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
#[error("{service}: {message}")]
pub struct StartError {
    pub service: &'static str,
    pub message: String,
}

impl StartError {
    pub fn new(service: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            service,
            message: message.to_string(),
        }
    }
}

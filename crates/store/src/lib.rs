//! Embedded state for Nimbus (DESIGN.md decision 6).
//!
//! * [`Db`]: one SQLite database in WAL mode with `synchronous=FULL`, holding the
//!   function registry, invocation records and function logs. A write that returns
//!   has been fsynced, so anything acknowledged survives `kill -9`.
//! * [`BlobStore`]: content-addressed code bundles (`code/sha256/ab/abcd….zip`), each
//!   written to a temp file, fsynced and renamed into place, and unpacked once into a
//!   read-only tree that instances run from. Paths inside user zips are never trusted:
//!   entries that would escape the tree are refused.
//! * Lambda layers: their versions in [`Db`] (`layer_versions`), their zips in the
//!   [`BlobStore`], and each function's merged layer tree (`<data>/opt/<hash>`) built
//!   from the unpacked zips by [`BlobStore::layer_tree`].
//! * [`EventStore`]: the durable async event queue, with group commit, read a
//!   window of due events at a time.
//! * [`migrate`] and [`schema`]: each database file's ordered migrations, tracked in
//!   `PRAGMA user_version`.
//! * [`traits`]: the durable state behind backend-neutral traits (no SQLite types),
//!   which the types above implement; another backend is an addition.
//! * [`RouteStore`], [`GatewayAuthStore`]: the gateway's routes, authorizers, API keys
//!   and usage plans; [`SharedConn`] is the connection every store opens the same way.

mod blob;
mod conn;
mod db;
mod events;
mod gateway_auth;
mod layers;
pub mod migrate;
mod routes;
pub mod schema;
pub mod traits;

pub use blob::{BlobStore, CodeBundle};
pub use conn::{open_durable, open_migrated, SharedConn};
pub use db::{Db, FunctionObject, LogLine, MeterRow, RecordQuery};
pub use events::{EventMeta, EventStore, OutboxEntry, QueuedEvent};
pub use gateway_auth::{GatewayAuthStore, StoredObject, UsageRow};
pub use layers::StoredLayerVersion;
pub use routes::{RouteStore, StoredRoute};
pub use traits::{
    BoxFuture, EventQueueStore, FunctionStore, GatewayAccessStore, GatewayRouteStore,
    TelemetryStore,
};

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (SQLite today); the source says how.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The file was written by a newer Nimbus: its schema is past what this build knows.
    #[error("{file} has schema version {found}, newer than the {known} this Nimbus knows; upgrade Nimbus or use another --data-dir")]
    SchemaTooNew {
        file: &'static str,
        found: u32,
        known: u32,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "Could not unzip uploaded file. Please check your file, then try to upload again. ({0})"
    )]
    BadZip(String),
    #[error("Unzipped size must be smaller than {max} bytes")]
    TooLarge { max: u64 },
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}

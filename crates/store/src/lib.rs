//! Embedded state for Nimbus (DESIGN.md decision 6).
//!
//! * [`Db`]: one SQLite database in WAL mode with `synchronous=FULL`, holding the
//!   function registry, invocation records and function logs. A write that returns
//!   has been fsynced, so anything acknowledged survives `kill -9`.
//! * [`BlobStore`]: content-addressed code bundles (`code/sha256/ab/abcd….zip`), each
//!   written to a temp file, fsynced and renamed into place, and unpacked once into a
//!   read-only tree that instances run from. Paths inside user zips are never trusted:
//!   entries that would escape the tree are refused.
//! * [`EventStore`]: the durable async event queue, with group commit.
//! * [`RouteStore`], [`GatewayAuthStore`]: the gateway's routes, authorizers, API keys
//!   and usage plans; [`SharedConn`] is the connection every store opens the same way.

mod blob;
mod conn;
mod db;
mod events;
mod gateway_auth;
mod routes;

pub use blob::{BlobStore, CodeBundle};
pub use conn::{open_durable, SharedConn};
pub use db::{Db, FunctionObject, LogLine, MeterRow, RecordQuery};
pub use events::{EventStore, QueuedEvent};
pub use gateway_auth::{GatewayAuthStore, StoredObject, UsageRow};
pub use routes::{RouteStore, StoredRoute};

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}

//! Limits Lambda enforces and Nimbus copies (DESIGN.md decision 5).

/// Largest synchronous request or response payload (6 MB).
pub const SYNC_PAYLOAD_MAX: usize = 6 * 1024 * 1024;
/// Largest asynchronous event payload (1 MB since 2024; 256 KB before).
pub const ASYNC_PAYLOAD_MAX: usize = 1024 * 1024;
/// Memory size bounds in MB.
pub const MEMORY_MIN_MB: u32 = 128;
pub const MEMORY_MAX_MB: u32 = 10_240;
/// Timeout bounds in seconds.
pub const TIMEOUT_MIN_S: u32 = 1;
pub const TIMEOUT_MAX_S: u32 = 900;
/// Lambda's defaults.
pub const DEFAULT_MEMORY_MB: u32 = 128;
pub const DEFAULT_TIMEOUT_S: u32 = 3;
/// The init phase may take this long before the instance is abandoned.
pub const INIT_TIMEOUT_S: u32 = 10;
/// Total size of a function's environment variables (4 KB).
pub const ENV_MAX_BYTES: usize = 4 * 1024;
/// Log bytes kept per invocation; output beyond this is drained and dropped.
pub const LOG_BYTES_PER_INVOCATION: usize = 1024 * 1024;
/// Largest code bundle accepted (unzipped size, as Lambda's 250 MB).
pub const CODE_UNZIPPED_MAX: u64 = 250 * 1024 * 1024;
/// Processes (threads included) one instance may hold; stops fork bombs.
pub const PIDS_PER_INSTANCE: u32 = 256;

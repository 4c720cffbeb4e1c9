//! A function's configuration: what the user asked for ([`FunctionSpec`]) and what the
//! registry stores once code is attached ([`FunctionConfig`]).

use crate::limits;
use crate::runtime::Runtime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a deploy asks for. Validated by [`FunctionSpec::validate`] before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    pub name: String,
    pub runtime: Runtime,
    /// `module.function` for python/node; free text (often `bootstrap`) for provided.
    #[serde(default)]
    pub handler: String,
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Reserved concurrency: the most instances this function may run at once.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Instances kept initialised at all times.
    #[serde(default)]
    pub provisioned_concurrency: u32,
    #[serde(default)]
    pub description: String,
    /// Stored and returned, never enforced (there is no IAM here).
    #[serde(default)]
    pub role: Option<String>,
    /// `x86_64` or `arm64`; stored and reported (instances run on the host's CPU).
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    /// Size of the instance's scratch space in MB (512–10240): the largest file it may write.
    #[serde(default = "default_ephemeral")]
    pub ephemeral_storage_mb: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `DeadLetterConfig.TargetArn`, honoured once queue/topic services exist.
    #[serde(default)]
    pub dead_letter_target: Option<String>,
    /// `TracingConfig.Mode`: `PassThrough` or `Active`.
    #[serde(default)]
    pub tracing_mode: Option<String>,
    /// Lambda layers, in order (later ones overwrite earlier files), each pinned
    /// to its content when the function was configured: deleting a layer
    /// version keeps the functions that use it working.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRef>,
}

/// One layer version as a function uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`.
    pub arn: String,
    /// sha256 (hex) of the layer's zip in the blob store.
    pub code_sha256: String,
    /// Size of the zip in bytes (`Layers[].CodeSize`).
    pub code_size: u64,
    /// Bytes the zip inflates to (counted against the 250 MB function limit).
    #[serde(default)]
    pub unzipped_size: u64,
}

fn default_architectures() -> Vec<String> {
    vec!["x86_64".to_string()]
}
fn default_ephemeral() -> u32 {
    512
}

fn default_memory() -> u32 {
    limits::DEFAULT_MEMORY_MB
}
fn default_timeout() -> u32 {
    limits::DEFAULT_TIMEOUT_S
}

/// A spec that breaks one of Lambda's rules. Messages follow Lambda's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("1 validation error detected: Value '{0}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]{{1,64}}")]
    BadName(String),
    #[error("1 validation error detected: Value '{0}' at 'memorySize' failed to satisfy constraint: Member must have value between 128 and 10240")]
    BadMemory(u32),
    #[error("1 validation error detected: Value '{0}' at 'timeout' failed to satisfy constraint: Member must have value between 1 and 900")]
    BadTimeout(u32),
    #[error("Handler '{0}' is invalid: it must look like 'module.function'")]
    BadHandler(String),
    #[error("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {0}")]
    EnvTooLarge(usize),
    #[error("Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {0}")]
    ReservedEnv(String),
    #[error("Environment variable name '{0}' is invalid: it must match [a-zA-Z]([a-zA-Z0-9_])+")]
    BadEnvName(String),
    #[error(
        "ProvisionedConcurrency ({provisioned}) must not exceed ReservedConcurrency ({reserved})"
    )]
    ProvisionedOverReserved { provisioned: u32, reserved: u32 },
    #[error("1 validation error detected: Value '{0:?}' at 'architectures' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]")]
    BadArchitectures(Vec<String>),
    #[error("1 validation error detected: Value '{0}' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value between 512 and 10240")]
    BadEphemeral(u32),
}

/// Variables Lambda sets itself and refuses to let users override.
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// `[a-zA-Z0-9-_]{1,64}`, Lambda's function-name rule.
pub fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FunctionSpec {
    /// A spec with Lambda's defaults for everything but the essentials.
    pub fn new(name: impl Into<String>, runtime: Runtime, handler: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            runtime,
            handler: handler.into(),
            memory_mb: default_memory(),
            timeout_s: default_timeout(),
            environment: BTreeMap::new(),
            reserved_concurrency: None,
            provisioned_concurrency: 0,
            description: String::new(),
            role: None,
            architectures: default_architectures(),
            ephemeral_storage_mb: default_ephemeral(),
            tags: BTreeMap::new(),
            dead_letter_target: None,
            tracing_mode: None,
            layers: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if !valid_function_name(&self.name) {
            return Err(ValidationError::BadName(self.name.clone()));
        }
        if !(limits::MEMORY_MIN_MB..=limits::MEMORY_MAX_MB).contains(&self.memory_mb) {
            return Err(ValidationError::BadMemory(self.memory_mb));
        }
        if !(limits::TIMEOUT_MIN_S..=limits::TIMEOUT_MAX_S).contains(&self.timeout_s) {
            return Err(ValidationError::BadTimeout(self.timeout_s));
        }
        if self.runtime.needs_handler() {
            let ok = match self.handler.rsplit_once('.') {
                Some((module, func)) => !module.is_empty() && !func.is_empty(),
                None => false,
            };
            if !ok {
                return Err(ValidationError::BadHandler(self.handler.clone()));
            }
        }
        if self.architectures.len() != 1
            || !matches!(self.architectures[0].as_str(), "x86_64" | "arm64")
        {
            return Err(ValidationError::BadArchitectures(
                self.architectures.clone(),
            ));
        }
        if !(512..=10_240).contains(&self.ephemeral_storage_mb) {
            return Err(ValidationError::BadEphemeral(self.ephemeral_storage_mb));
        }
        let mut size = 0;
        let mut reserved = Vec::new();
        for (k, v) in &self.environment {
            let mut chars = k.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
            if !first_ok || k.len() < 2 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ValidationError::BadEnvName(k.clone()));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                reserved.push(k.clone());
            }
            size += k.len() + v.len();
        }
        if !reserved.is_empty() {
            return Err(ValidationError::ReservedEnv(reserved.join(",")));
        }
        if size > limits::ENV_MAX_BYTES {
            return Err(ValidationError::EnvTooLarge(size));
        }
        if let Some(reserved) = self.reserved_concurrency {
            if self.provisioned_concurrency > reserved {
                return Err(ValidationError::ProvisionedOverReserved {
                    provisioned: self.provisioned_concurrency,
                    reserved,
                });
            }
        }
        Ok(())
    }
}

/// A deployed function as the registry stores it: the spec, the code it runs and
/// bookkeeping. Each deploy bumps `revision`; instances remember the revision they
/// were started from, and an instance of an older revision is never handed a new request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    #[serde(flatten)]
    pub spec: FunctionSpec,
    /// sha256 of the code bundle (hex). The bundle itself lives in the blob store.
    pub code_sha256: String,
    pub code_size: u64,
    /// Monotonic per function; a new one on every code or configuration change.
    pub revision: u64,
    /// Opaque id that changes with every update, as Lambda's `RevisionId`.
    pub revision_id: String,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub last_modified_ms: i64,
}

impl FunctionConfig {
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            name: "hello".into(),
            runtime: "python3.12".parse().unwrap(),
            handler: "app.handler".into(),
            memory_mb: 128,
            timeout_s: 3,
            environment: BTreeMap::new(),
            reserved_concurrency: None,
            provisioned_concurrency: 0,
            description: String::new(),
            role: None,
            architectures: default_architectures(),
            ephemeral_storage_mb: 512,
            tags: BTreeMap::new(),
            dead_letter_target: None,
            tracing_mode: None,
            layers: Vec::new(),
        }
    }

    #[test]
    fn valid_spec_passes() {
        spec().validate().unwrap();
    }

    type Mutation = Box<dyn Fn(&mut FunctionSpec)>;

    #[test]
    fn table_of_invalid_specs() {
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.name = "bad name".into()), "functionName"),
            (Box::new(|s| s.name = "x".repeat(65)), "functionName"),
            (Box::new(|s| s.memory_mb = 64), "memorySize"),
            (Box::new(|s| s.timeout_s = 901), "timeout"),
            (Box::new(|s| s.timeout_s = 0), "timeout"),
            (Box::new(|s| s.handler = "nodot".into()), "module.function"),
            (Box::new(|s| s.handler = "app.".into()), "module.function"),
            (
                Box::new(|s| {
                    s.environment.insert("AWS_REGION".into(), "x".into());
                }),
                "reserved keys",
            ),
            (
                Box::new(|s| {
                    s.environment.insert("BIG".into(), "x".repeat(5000));
                }),
                "4KB",
            ),
            (
                Box::new(|s| {
                    s.environment.insert("1X".into(), "x".into());
                }),
                "invalid",
            ),
            (
                Box::new(|s| s.architectures = vec!["sparc".into()]),
                "architectures",
            ),
            (
                Box::new(|s| s.ephemeral_storage_mb = 100),
                "ephemeralStorage",
            ),
            (
                Box::new(|s| {
                    s.reserved_concurrency = Some(1);
                    s.provisioned_concurrency = 2;
                }),
                "must not exceed",
            ),
        ];
        for (mutate, needle) in cases {
            let mut s = spec();
            mutate(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn provided_needs_no_handler() {
        let mut s = spec();
        s.runtime = "provided.al2023".parse().unwrap();
        s.handler = String::new();
        s.validate().unwrap();
    }

    #[test]
    fn spec_json_defaults() {
        let s: FunctionSpec = serde_json::from_str(
            r#"{"name":"f","runtime":"nodejs20.x","handler":"index.handler"}"#,
        )
        .unwrap();
        assert_eq!(s.memory_mb, 128);
        assert_eq!(s.timeout_s, 3);
        assert!(serde_json::from_str::<FunctionSpec>(
            r#"{"name":"f","runtime":"nodejs20.x","handler":"i.h","bogus":1}"#
        )
        .is_err());
    }
}

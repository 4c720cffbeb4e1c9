//! What an instance needs to call Nimbus's own AWS services unmodified, as a
//! Lambda function calls AWS's:
//!
//! * `AWS_ENDPOINT_URL`: the API listener, so every SDK client goes there
//!   without an `endpoint_url` in the code (botocore ≥ 1.31, JS SDK v3 ≥ 3.420);
//! * `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`: the
//!   function's own temporary credentials from the server's [`KeyRing`], acting as
//!   the function's execution role (the role named by its `Role` ARN, else
//!   `nimbus-<function>-role`) with the function's name as the session;
//! * the AWS SDKs Lambda's managed runtimes ship (boto3; `@aws-sdk/*` v3), from
//!   the server's SDK dir ([`SdkDir`]), searched *after* the function's own code
//!   so a bundled version wins: `NODE_PATH` for Node (Node searches it after every
//!   `node_modules` up the tree), and `NIMBUS_SDK_PYTHON`, which the Python
//!   bootstrap puts on `sys.path` right after `LAMBDA_TASK_ROOT` (before the
//!   host interpreter's site-packages, whose boto3 may be any version). Spares get both at the claim like the rest
//!   of the environment: the Node bootstrap re-reads `NODE_PATH` then and the
//!   Python one reads `NIMBUS_SDK_PYTHON` only then.
//!
//! The values are secrets: [`ServiceEnv`] never shows them in `Debug` output.

use nimbus_auth::KeyRing;
use nimbus_core::Runtime;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The variable naming the Python SDK dir for the bootstrap to append to `sys.path`.
pub const PYTHON_SDK_VAR: &str = "NIMBUS_SDK_PYTHON";

/// The server-wide part: where the API is, the key ring, the SDKs.
#[derive(Debug, Clone, Default)]
pub struct ServiceAccess {
    /// `http://127.0.0.1:4566`: an address an instance on this host reaches.
    pub endpoint_url: Option<String>,
    /// Mints and registers each function's credentials. `None`: functions get none.
    pub key_ring: Option<Arc<KeyRing>>,
    pub sdk: SdkDir,
}

/// Where the AWS SDKs for functions are installed (`scripts/install-sdks`):
/// `<dir>/python` (a `pip install --target` of boto3) and `<dir>/node_modules`
/// (the `@aws-sdk/*` v3 clients). Either may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdkDir {
    /// The dir holding `boto3/`, when it does.
    pub python: Option<PathBuf>,
    /// The `node_modules` dir holding `@aws-sdk/client-sts`, when it does.
    pub node: Option<PathBuf>,
}

impl SdkDir {
    /// Look for the SDKs under `dir`.
    pub fn probe(dir: &Path) -> Self {
        let python = dir.join("python");
        let node = dir.join("node_modules");
        Self {
            python: python
                .join("boto3")
                .join("__init__.py")
                .is_file()
                .then_some(python),
            node: node
                .join("@aws-sdk")
                .join("client-sts")
                .join("package.json")
                .is_file()
                .then_some(node),
        }
    }

    /// The installed boto3 version (from its `boto3-<version>.dist-info`).
    pub fn boto3_version(&self) -> Option<String> {
        let dir = std::fs::read_dir(self.python.as_ref()?).ok()?;
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .find_map(|n| {
                n.strip_prefix("boto3-")?
                    .strip_suffix(".dist-info")
                    .map(str::to_owned)
            })
    }

    /// The installed `@aws-sdk/client-sts` version.
    pub fn js_sdk_version(&self) -> Option<String> {
        let path = self
            .node
            .as_ref()?
            .join("@aws-sdk")
            .join("client-sts")
            .join("package.json");
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get("version")?.as_str().map(str::to_owned)
    }
}

/// The variables [`ServiceAccess`] adds to one instance's environment.
#[derive(Clone, Default)]
pub struct ServiceEnv(Vec<(String, String)>);

impl fmt::Debug for ServiceEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: the credentials are secrets.
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl ServiceEnv {
    pub fn vars(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The role a function's credentials act as: the last segment of its `Role` ARN
/// (`arn:aws:iam::123456789012:role/service-role/thumbs` → `thumbs`), or
/// `nimbus-<function>-role` when it has none.
pub fn role_name(function: &str, role_arn: Option<&str>) -> String {
    role_arn
        .and_then(|arn| arn.rsplit(['/', ':']).next())
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("nimbus-{function}-role"))
}

impl ServiceAccess {
    /// The variables for an instance of `function`, minting its credentials if
    /// this is its first instance under this role.
    pub fn environment(
        &self,
        function: &str,
        role_arn: Option<&str>,
        runtime: Runtime,
    ) -> Result<ServiceEnv, nimbus_auth::MintError> {
        let mut env = Vec::new();
        if let Some(url) = &self.endpoint_url {
            env.push(("AWS_ENDPOINT_URL".to_owned(), url.clone()));
        }
        if let Some(ring) = &self.key_ring {
            let c = ring.function_credentials(function, &role_name(function, role_arn))?;
            env.push(("AWS_ACCESS_KEY_ID".to_owned(), c.access_key_id));
            env.push(("AWS_SECRET_ACCESS_KEY".to_owned(), c.secret_access_key));
            env.push(("AWS_SESSION_TOKEN".to_owned(), c.session_token));
        }
        match runtime {
            Runtime::Python { .. } => {
                if let Some(dir) = &self.sdk.python {
                    env.push((
                        PYTHON_SDK_VAR.to_owned(),
                        dir.to_string_lossy().into_owned(),
                    ));
                }
            }
            Runtime::Node { .. } => {
                if let Some(dir) = &self.sdk.node {
                    env.push(("NODE_PATH".to_owned(), dir.to_string_lossy().into_owned()));
                }
            }
            Runtime::Provided(_) => {}
        }
        Ok(ServiceEnv(env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_come_from_the_arn() {
        assert_eq!(
            role_name(
                "f",
                Some("arn:aws:iam::123456789012:role/service-role/thumbs")
            ),
            "thumbs"
        );
        assert_eq!(
            role_name("f", Some("arn:aws:iam::123456789012:role/r")),
            "r"
        );
        assert_eq!(role_name("f", None), "nimbus-f-role");
        assert_eq!(
            role_name("f", Some("arn:aws:iam::1:role/")),
            "nimbus-f-role"
        );
    }

    #[test]
    fn instances_get_endpoint_credentials_and_their_sdk_path() {
        let ring = Arc::new(KeyRing::default());
        let sdk_root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sdk_root.path().join("python/boto3")).unwrap();
        std::fs::write(sdk_root.path().join("python/boto3/__init__.py"), "").unwrap();
        std::fs::create_dir_all(sdk_root.path().join("python/boto3-1.2.3.dist-info")).unwrap();
        let sdk = SdkDir::probe(sdk_root.path());
        assert!(sdk.node.is_none());
        assert_eq!(sdk.boto3_version().as_deref(), Some("1.2.3"));
        let access = ServiceAccess {
            endpoint_url: Some("http://127.0.0.1:4566".into()),
            key_ring: Some(ring.clone()),
            sdk,
        };
        let py: Runtime = "python3.12".parse().unwrap();
        let env = access.environment("thumbs", None, py).unwrap();
        let get = |k: &str| {
            env.vars()
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("AWS_ENDPOINT_URL").as_deref(),
            Some("http://127.0.0.1:4566")
        );
        let akid = get("AWS_ACCESS_KEY_ID").unwrap();
        assert!(akid.starts_with("ASIA"));
        assert_eq!(
            ring.principal(&akid),
            Some(nimbus_core::Principal::AssumedRole {
                role: "nimbus-thumbs-role".into(),
                session: "thumbs".into()
            })
        );
        assert!(get(PYTHON_SDK_VAR).unwrap().ends_with("python"));
        assert!(get("NODE_PATH").is_none());
        // Debug output names the variables but shows no value.
        let debug = format!("{env:?}");
        assert!(debug.contains("AWS_SECRET_ACCESS_KEY"));
        assert!(!debug.contains(&get("AWS_SECRET_ACCESS_KEY").unwrap()));
        assert!(!debug.contains(&get("AWS_SESSION_TOKEN").unwrap()));
    }
}

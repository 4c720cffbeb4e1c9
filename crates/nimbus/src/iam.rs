//! `nimbus up`'s IAM wiring: IAM opens `<data>/iam.db` with the edge's key ring
//! (so access keys it creates and STS sessions verify), its front-end joins the
//! services, and in `audit`/`enforce` mode its authoriser joins the edge.

use anyhow::Result;
use nimbus_svc_iam::{Iam, Mode};
use std::path::Path;
use std::sync::Arc;

pub struct Settings {
    pub mode: Mode,
    pub disabled: bool,
    pub sts_min_duration: u32,
    /// OIDC issuers and audiences for STS AssumeRoleWithWebIdentity.
    pub oidc_issuers: Vec<String>,
    pub oidc_audiences: Vec<String>,
}

/// Open IAM (unless disabled) and add its service to `services`.
pub fn start(
    s: Settings,
    data_dir: &Path,
    auth: &nimbus_edge::AuthConfig,
    services: &mut Vec<nimbus_svc_common::Service>,
) -> Result<Option<Iam>> {
    if s.mode == Mode::Enforce && !auth.is_enabled() {
        anyhow::bail!(
            "--iam enforce needs authentication: start with --credentials (or \
             --credentials-file); without it no request's principal is proven"
        );
    }
    if s.disabled {
        tracing::info!(service = "iam", "service disabled");
        return Ok(None);
    }
    let mut iam = Iam::open(data_dir, Some(auth.key_ring()), s.mode)?;
    iam.min_session_seconds = s.sts_min_duration.max(1);
    for i in &s.oidc_issuers {
        if !(i.starts_with("https://") || i.starts_with("http://")) {
            anyhow::bail!("--oidc-issuer {i:?}: an issuer is an http(s) URL");
        }
    }
    iam.oidc_issuers = s.oidc_issuers;
    iam.oidc_audiences = s.oidc_audiences;
    tracing::info!(mode = %s.mode, "iam");
    services.push(iam.service());
    Ok(Some(iam))
}

/// The edge's authoriser, unless IAM is off or disabled; with `sinks` (when
/// authentication is on: without it nothing is evaluated) it also checks
/// service-to-function deliveries against the functions' policies.
pub fn authorizer(
    iam: Option<&Iam>,
    frontends: &[Arc<dyn nimbus_protocol::Frontend>],
    sinks: Option<&nimbus_triggers::sinks::Sinks>,
) -> Option<Arc<dyn nimbus_edge::authz::Authorizer>> {
    let iam = iam.filter(|i| i.mode != Mode::Off)?;
    let az = Arc::new(nimbus_svc_iam::authorize::IamAuthorizer::new(
        iam.clone(),
        frontends,
    ));
    if let Some(sinks) = sinks {
        sinks.register_invoke_check(az.clone());
    }
    Some(az)
}

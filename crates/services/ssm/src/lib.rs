//! Nimbus's AWS Systems Manager Parameter Store (the SSM API, awsJson 1.1):
//! `String`, `StringList` and `SecureString` parameters with versions, labels,
//! tiers, allowed patterns, data types, stored policies and tags, over
//! `<data>/ssm.db` ([`params`]).
//!
//! * `SecureString` values are sealed by the data dir's keyring
//!   ([`nimbus_keyring`]) before they reach the database and are decrypted only
//!   for `WithDecryption` reads; nothing here logs or counts a value.
//! * `/aws/reference/secretsmanager/<id>` names read the secret through the
//!   Secrets Manager started in the same process
//!   ([`nimbus_svc_secretsmanager::running`]).
//! * SSM has hundreds of operations: the Parameter Store ones are flagged
//!   `=> true` in the generated table ([`ops`]); every other answers `501
//!   NotImplemented`.

// `AwsError` is the one error every handler returns, as in nimbus-protocol.
#![allow(clippy::result_large_err)]

pub mod ops;
pub mod params;

pub use ops::{Op, META};

use axum::extract::Request;
use axum::response::Response;
use nimbus_protocol::{encode_json, AwsError, Frontend, JsonOptions, ResponseFuture, ServiceMeta};
use nimbus_svc_common::admin::{JsonAdmin, Metrics};
use nimbus_svc_common::{Call, Service, ServiceContext, StartError};
use nimbus_svc_secretsmanager::args::Args;
use params::Ssm;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct SsmFrontend(Arc<Ssm>);

async fn serve(ssm: Arc<Ssm>, req: Request) -> Response {
    let call = match Call::<Op>::decode(req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if !call.op.implemented() {
        return call.not_implemented();
    }
    let (protocol, rid, op) = (call.protocol, call.request_id.clone(), call.op);
    let user = match call.context().map(|c| &c.principal) {
        Some(nimbus_core::Principal::User(u)) => {
            format!("arn:aws:iam::{}:user/{u}", nimbus_core::ACCOUNT_ID)
        }
        _ => format!("arn:aws:iam::{}:root", nimbus_core::ACCOUNT_ID),
    };
    let result: Result<serde_json::Value, AwsError> =
        match axum::body::to_bytes(call.body, nimbus_protocol::DEFAULT_BODY_LIMIT).await {
            Err(_) => Err(params::err(
                "SerializationException",
                "The request body could not be read.",
            )),
            Ok(body) => match Args::parse(&body) {
                Err(e) => Err(e),
                Ok(a) => tokio::task::spawn_blocking(move || {
                    ssm.handle(op, &a, &user, nimbus_core::now_ms())
                })
                .await
                .unwrap_or_else(|_| Err(params::err("InternalServerError", "The request failed."))),
            },
        };
    match result {
        Ok(v) => encode_json(protocol, &rid, &v, JsonOptions::default()),
        Err(e) => {
            tracing::debug!(operation = op.name(), code = %e.code, request_id = %rid, "ssm error");
            nimbus_protocol::error_response(protocol, &META, &e, &rid)
        }
    }
}

impl Frontend for SsmFrontend {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }
    fn call(&self, req: Request) -> ResponseFuture {
        Box::pin(serve(self.0.clone(), req))
    }
}

/// `/_nimbus/services/ssm` (counts only, never a value) and the SSM lines of
/// `/metrics`.
fn admin(ssm: Arc<Ssm>) -> JsonAdmin {
    let me = ssm.clone();
    JsonAdmin::new("ssm")
        .get("", move |_| {
            let v = me.stats();
            async move { Ok(v) }
        })
        .metrics(move || {
            let s = ssm.stats();
            let c = &ssm.counters;
            let by_type: Vec<(&str, u64)> = s["ByType"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(t, n)| (t.as_str(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            Metrics::new()
                .gauge_by(
                    "nimbus_ssm_parameters",
                    "Parameters stored, by type.",
                    "type",
                    by_type,
                )
                .gauge(
                    "nimbus_ssm_parameter_versions",
                    "Parameter versions stored.",
                    s["Versions"].as_u64().unwrap_or(0),
                )
                .counter(
                    "nimbus_ssm_puts",
                    "PutParameter calls that wrote a version.",
                    c.puts.load(Ordering::Relaxed),
                )
                .counter(
                    "nimbus_ssm_gets",
                    "Parameters read.",
                    c.gets.load(Ordering::Relaxed),
                )
                .counter(
                    "nimbus_ssm_decryptions",
                    "SecureString values decrypted for a reader.",
                    c.decryptions.load(Ordering::Relaxed),
                )
                .finish()
        })
}

/// The front-end of the operation table alone (its unit tests).
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(nimbus_svc_common::PendingFrontend::<Op>::new())
}

/// Start the service: open `ssm.db` and the keyring, re-encrypt values a
/// rotation made while stopped left under an old key.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let fail = |e: String| StartError::new("ssm", e);
    let keyring = nimbus_keyring::Keyring::open(&ctx.data_dir).map_err(|e| fail(e.to_string()))?;
    let ssm = Arc::new(
        Ssm::open(
            &ctx.data_dir,
            keyring.clone(),
            ctx.region.clone(),
            ctx.account_id.clone(),
        )
        .map_err(fail)?,
    );
    ssm.rewrap(&keyring).map_err(fail)?;
    let weak = Arc::downgrade(&ssm);
    keyring.register_rewrap(
        "ssm",
        Arc::new(move |k| match weak.upgrade() {
            Some(s) => s.rewrap(k),
            None => Ok(0),
        }),
    );
    Ok(Service {
        frontend: Arc::new(SsmFrontend(ssm.clone())),
        admin: Some(Arc::new(admin(ssm))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pending_operations_and_unknown_ones_answer_the_protocols_errors() {
        nimbus_svc_common::testing::assert_pending_json_frontend::<Op>(&*frontend()).await;
    }
}

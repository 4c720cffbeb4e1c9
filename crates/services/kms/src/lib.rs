//! Nimbus's minimal AWS KMS (awsJson 1.1, `TrentService`): symmetric keys
//! (`CreateKey`, `DescribeKey`, `ListKeys`, enable/disable, scheduled deletion),
//! `Encrypt`/`Decrypt`, `GenerateDataKey(WithoutPlaintext)`, `GenerateRandom` and
//! aliases, over `<data>/kms.db` ([`keys`]).
//!
//! A KMS key's material is 32 random bytes sealed by the data dir's keyring
//! ([`nimbus_keyring`]) — the same keys Secrets Manager and Parameter Store use —
//! and re-sealed when the keyring rotates. Ciphertexts name their KMS key and bind
//! the encryption context as associated data. The other KMS operations answer
//! `501 NotImplemented` ([`ops`]).

// `AwsError` is the one error every handler returns, as in nimbus-protocol.
#![allow(clippy::result_large_err)]

pub mod keys;
pub mod ops;

pub use ops::{Op, META};

use axum::extract::Request;
use axum::response::Response;
use keys::Kms;
use nimbus_protocol::{encode_json, AwsError, Frontend, JsonOptions, ResponseFuture, ServiceMeta};
use nimbus_svc_common::admin::{JsonAdmin, Metrics};
use nimbus_svc_common::{Call, Service, ServiceContext, StartError};
use nimbus_svc_secretsmanager::args::Args;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct KmsFrontend(Arc<Kms>);

async fn serve(kms: Arc<Kms>, req: Request) -> Response {
    let call = match Call::<Op>::decode(req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if !call.op.implemented() {
        return call.not_implemented();
    }
    let (protocol, rid, op) = (call.protocol, call.request_id.clone(), call.op);
    let result: Result<serde_json::Value, AwsError> =
        match axum::body::to_bytes(call.body, nimbus_protocol::DEFAULT_BODY_LIMIT).await {
            Err(_) => Err(keys::err(
                "SerializationException",
                "The request body could not be read.",
            )),
            Ok(body) => match Args::parse(&body) {
                Err(e) => Err(e),
                Ok(a) => {
                    tokio::task::spawn_blocking(move || kms.handle(op, &a, nimbus_core::now_ms()))
                        .await
                        .unwrap_or_else(|_| {
                            Err(keys::err("KMSInternalException", "The request failed."))
                        })
                }
            },
        };
    match result {
        Ok(v) => encode_json(protocol, &rid, &v, JsonOptions::default()),
        Err(e) => {
            tracing::debug!(operation = op.name(), code = %e.code, request_id = %rid, "kms error");
            nimbus_protocol::error_response(protocol, &META, &e, &rid)
        }
    }
}

impl Frontend for KmsFrontend {
    fn meta(&self) -> &'static ServiceMeta {
        &META
    }
    fn call(&self, req: Request) -> ResponseFuture {
        Box::pin(serve(self.0.clone(), req))
    }
}

/// `/_nimbus/services/kms` (counts) and the KMS lines of `/metrics`.
fn admin(kms: Arc<Kms>) -> JsonAdmin {
    let k = kms.clone();
    JsonAdmin::new("kms")
        .get("", move |_| {
            let (keys, aliases) = k.stats();
            async move { Ok(serde_json::json!({"Keys": keys, "Aliases": aliases})) }
        })
        .metrics(move || {
            let (keys, aliases) = kms.stats();
            let c = &kms.counters;
            Metrics::new()
                .gauge("nimbus_kms_keys", "KMS keys.", keys as u64)
                .gauge("nimbus_kms_aliases", "KMS aliases.", aliases as u64)
                .counter(
                    "nimbus_kms_encrypts",
                    "Encrypt calls.",
                    c.encrypts.load(Ordering::Relaxed),
                )
                .counter(
                    "nimbus_kms_decrypts",
                    "Decrypt calls.",
                    c.decrypts.load(Ordering::Relaxed),
                )
                .counter(
                    "nimbus_kms_data_keys",
                    "Data keys generated.",
                    c.data_keys.load(Ordering::Relaxed),
                )
                .finish()
        })
}

/// The front-end of the operation table alone (its unit tests).
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(nimbus_svc_common::PendingFrontend::<Op>::new())
}

/// Start the service: open `kms.db`, unseal the keys with the keyring.
pub fn start(ctx: &ServiceContext) -> Result<Service, StartError> {
    let fail = |e: String| StartError::new("kms", e);
    let keyring = nimbus_keyring::Keyring::open(&ctx.data_dir).map_err(|e| fail(e.to_string()))?;
    let kms = Arc::new(
        Kms::open(
            &ctx.data_dir,
            keyring.clone(),
            ctx.region.clone(),
            ctx.account_id.clone(),
        )
        .map_err(fail)?,
    );
    kms.rewrap(&keyring).map_err(fail)?;
    let weak = Arc::downgrade(&kms);
    keyring.register_rewrap(
        "kms",
        Arc::new(move |k| match weak.upgrade() {
            Some(s) => s.rewrap(k),
            None => Ok(0),
        }),
    );
    let weak = Arc::downgrade(&kms);
    keyring.set_kms_check(Arc::new(move |key| match weak.upgrade() {
        Some(k) => k.check_usable(key),
        None => Ok(()),
    }));
    Ok(Service {
        frontend: Arc::new(KmsFrontend(kms.clone())),
        admin: Some(Arc::new(admin(kms))),
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

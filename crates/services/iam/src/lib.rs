//! Nimbus's AWS IAM (users, roles and policies) front-end: the API's exhaustive operation table, generated
//! from the AWS API model by `scripts/gen-ops.py` ([`ops`]), and the front-end the
//! edge routes the API's requests to (awsQuery).
//!
//! The operations arrive with issue 19; until then every operation answers its
//! protocol's `501 NotImplemented` naming itself, and a request naming no
//! operation of the API gets the protocol's own unknown-operation error.

pub mod ops;

pub use ops::{Op, META};

use nimbus_protocol::Frontend;
use nimbus_svc_common::PendingFrontend;
use std::sync::Arc;

/// The front-end the edge registers for this API.
pub fn frontend() -> Arc<dyn Frontend> {
    Arc::new(PendingFrontend::<Op>::new())
}

/// Start the service: what the server calls once at start.
pub fn start(
    _ctx: &nimbus_svc_common::ServiceContext,
) -> Result<nimbus_svc_common::Service, nimbus_svc_common::StartError> {
    Ok(nimbus_svc_common::Service::frontend_only(frontend()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pending_operations_and_unknown_ones_answer_the_protocols_errors() {
        nimbus_svc_common::testing::assert_pending_query_frontend::<Op>(&*frontend()).await;
    }

    /// Real requests captured from botocore and the JS SDK v3.
    #[tokio::test]
    async fn captured_sdk_requests_decode_to_their_operation() {
        nimbus_svc_common::testing::assert_captured_requests_decode(&*frontend(), &[]).await;
    }
}

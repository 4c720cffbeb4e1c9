//! Every operation of the AWS Lambda API (2015-03-31), as one exhaustive enum with its
//! HTTP binding (method and URI template, from the Lambda API model) and whether Nimbus
//! implements it.
//!
//! The router serves the implemented ones; a request that matches the binding of one
//! that is not implemented gets an AWS-shaped `501 NotImplementedException` naming the
//! operation ([`not_implemented`]), never a panic or a silent 200. The table is
//! checked against botocore's own model by `tests/e2e/test_lambda_ops.py`.

use crate::error::ApiError;
use axum::http::{Method, StatusCode};

macro_rules! define_ops {
    ($($op:ident => ($method:ident, $uri:literal, $implemented:literal),)*) => {
        /// One Lambda API operation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum LambdaOp { $($op,)* }

        impl LambdaOp {
            /// Every operation, in the model's order.
            pub const ALL: &'static [LambdaOp] = &[$(LambdaOp::$op,)*];

            /// The operation's AWS name.
            pub fn name(self) -> &'static str {
                match self { $(LambdaOp::$op => stringify!($op),)* }
            }

            /// HTTP method and URI template (`{Name}` is one path segment; a
            /// `?key=value` suffix is a required query parameter).
            pub fn binding(self) -> (Method, &'static str) {
                match self { $(LambdaOp::$op => (Method::$method, $uri),)* }
            }

            pub fn implemented(self) -> bool {
                match self { $(LambdaOp::$op => $implemented,)* }
            }
        }
    };
}

// Generated from the Lambda API model (botocore data/lambda/2015-03-31/service-2.json).
define_ops! {
    AddLayerVersionPermission => (POST, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}/policy", true),
    AddPermission => (POST, "/2015-03-31/functions/{FunctionName}/policy", true),
    CreateAlias => (POST, "/2015-03-31/functions/{FunctionName}/aliases", true),
    CreateCodeSigningConfig => (POST, "/2020-04-22/code-signing-configs/", false),
    CreateEventSourceMapping => (POST, "/2015-03-31/event-source-mappings/", true),
    CreateFunction => (POST, "/2015-03-31/functions", true),
    CreateFunctionUrlConfig => (POST, "/2021-10-31/functions/{FunctionName}/url", true),
    DeleteAlias => (DELETE, "/2015-03-31/functions/{FunctionName}/aliases/{Name}", true),
    DeleteCodeSigningConfig => (DELETE, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}", false),
    DeleteEventSourceMapping => (DELETE, "/2015-03-31/event-source-mappings/{UUID}", true),
    DeleteFunction => (DELETE, "/2015-03-31/functions/{FunctionName}", true),
    DeleteFunctionCodeSigningConfig => (DELETE, "/2020-06-30/functions/{FunctionName}/code-signing-config", false),
    DeleteFunctionConcurrency => (DELETE, "/2017-10-31/functions/{FunctionName}/concurrency", true),
    DeleteFunctionEventInvokeConfig => (DELETE, "/2019-09-25/functions/{FunctionName}/event-invoke-config", true),
    DeleteFunctionUrlConfig => (DELETE, "/2021-10-31/functions/{FunctionName}/url", true),
    DeleteLayerVersion => (DELETE, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}", true),
    DeleteProvisionedConcurrencyConfig => (DELETE, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency", true),
    GetAccountSettings => (GET, "/2016-08-19/account-settings/", true),
    GetAlias => (GET, "/2015-03-31/functions/{FunctionName}/aliases/{Name}", true),
    GetCodeSigningConfig => (GET, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}", false),
    GetEventSourceMapping => (GET, "/2015-03-31/event-source-mappings/{UUID}", true),
    GetFunction => (GET, "/2015-03-31/functions/{FunctionName}", true),
    GetFunctionCodeSigningConfig => (GET, "/2020-06-30/functions/{FunctionName}/code-signing-config", false),
    GetFunctionConcurrency => (GET, "/2019-09-30/functions/{FunctionName}/concurrency", true),
    GetFunctionConfiguration => (GET, "/2015-03-31/functions/{FunctionName}/configuration", true),
    GetFunctionEventInvokeConfig => (GET, "/2019-09-25/functions/{FunctionName}/event-invoke-config", true),
    GetFunctionRecursionConfig => (GET, "/2024-08-31/functions/{FunctionName}/recursion-config", false),
    GetFunctionUrlConfig => (GET, "/2021-10-31/functions/{FunctionName}/url", true),
    GetLayerVersion => (GET, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}", true),
    GetLayerVersionByArn => (GET, "/2018-10-31/layers?find=LayerVersion", true),
    GetLayerVersionPolicy => (GET, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}/policy", true),
    GetPolicy => (GET, "/2015-03-31/functions/{FunctionName}/policy", true),
    GetProvisionedConcurrencyConfig => (GET, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency", true),
    GetRuntimeManagementConfig => (GET, "/2021-07-20/functions/{FunctionName}/runtime-management-config", false),
    Invoke => (POST, "/2015-03-31/functions/{FunctionName}/invocations", true),
    InvokeAsync => (POST, "/2014-11-13/functions/{FunctionName}/invoke-async/", false),
    InvokeWithResponseStream => (POST, "/2021-11-15/functions/{FunctionName}/response-streaming-invocations", false),
    ListAliases => (GET, "/2015-03-31/functions/{FunctionName}/aliases", true),
    ListCodeSigningConfigs => (GET, "/2020-04-22/code-signing-configs/", false),
    ListEventSourceMappings => (GET, "/2015-03-31/event-source-mappings/", true),
    ListFunctionEventInvokeConfigs => (GET, "/2019-09-25/functions/{FunctionName}/event-invoke-config/list", true),
    ListFunctionUrlConfigs => (GET, "/2021-10-31/functions/{FunctionName}/urls", true),
    ListFunctions => (GET, "/2015-03-31/functions/", true),
    ListFunctionsByCodeSigningConfig => (GET, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}/functions", false),
    ListLayerVersions => (GET, "/2018-10-31/layers/{LayerName}/versions", true),
    ListLayers => (GET, "/2018-10-31/layers", true),
    ListProvisionedConcurrencyConfigs => (GET, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency?List=ALL", true),
    ListTags => (GET, "/2017-03-31/tags/{ARN}", true),
    ListVersionsByFunction => (GET, "/2015-03-31/functions/{FunctionName}/versions", true),
    PublishLayerVersion => (POST, "/2018-10-31/layers/{LayerName}/versions", true),
    PublishVersion => (POST, "/2015-03-31/functions/{FunctionName}/versions", true),
    PutFunctionCodeSigningConfig => (PUT, "/2020-06-30/functions/{FunctionName}/code-signing-config", false),
    PutFunctionConcurrency => (PUT, "/2017-10-31/functions/{FunctionName}/concurrency", true),
    PutFunctionEventInvokeConfig => (PUT, "/2019-09-25/functions/{FunctionName}/event-invoke-config", true),
    PutFunctionRecursionConfig => (PUT, "/2024-08-31/functions/{FunctionName}/recursion-config", false),
    PutProvisionedConcurrencyConfig => (PUT, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency", true),
    PutRuntimeManagementConfig => (PUT, "/2021-07-20/functions/{FunctionName}/runtime-management-config", false),
    RemoveLayerVersionPermission => (DELETE, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}/policy/{StatementId}", true),
    RemovePermission => (DELETE, "/2015-03-31/functions/{FunctionName}/policy/{StatementId}", true),
    TagResource => (POST, "/2017-03-31/tags/{ARN}", true),
    UntagResource => (DELETE, "/2017-03-31/tags/{ARN}", true),
    UpdateAlias => (PUT, "/2015-03-31/functions/{FunctionName}/aliases/{Name}", true),
    UpdateCodeSigningConfig => (PUT, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}", false),
    UpdateEventSourceMapping => (PUT, "/2015-03-31/event-source-mappings/{UUID}", true),
    UpdateFunctionCode => (PUT, "/2015-03-31/functions/{FunctionName}/code", true),
    UpdateFunctionConfiguration => (PUT, "/2015-03-31/functions/{FunctionName}/configuration", true),
    UpdateFunctionEventInvokeConfig => (POST, "/2019-09-25/functions/{FunctionName}/event-invoke-config", true),
    UpdateFunctionUrlConfig => (PUT, "/2021-10-31/functions/{FunctionName}/url", true),
}

impl LambdaOp {
    /// The operation whose binding a request matches, if any. Bindings with a
    /// required query parameter win over the same path without one.
    pub fn recognise(method: &Method, path: &str, query: Option<&str>) -> Option<LambdaOp> {
        let mut best: Option<(LambdaOp, bool)> = None;
        for op in Self::ALL {
            let (m, template) = op.binding();
            if m != *method {
                continue;
            }
            let (tpath, tquery) = match template.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (template, None),
            };
            if !path_matches(tpath, path) {
                continue;
            }
            if let Some(tq) = tquery {
                let present = query
                    .unwrap_or("")
                    .split('&')
                    .any(|kv| kv == tq || kv.split('=').next() == tq.split('=').next());
                if !present {
                    continue;
                }
            }
            let specific = tquery.is_some();
            if best.is_none_or(|(_, s)| specific && !s) {
                best = Some((*op, specific));
            }
        }
        best.map(|(op, _)| op)
    }
}

/// Segment-wise match; trailing slashes do not matter (the model has both forms).
fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// The answer to an operation Nimbus knows but does not implement.
pub fn not_implemented(op: LambdaOp) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplementedException",
        format!(
            "The Lambda operation {} is not implemented by Nimbus yet (see docs/compat/lambda.md)",
            op.name()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_bindings() {
        let get = Method::GET;
        assert_eq!(
            LambdaOp::recognise(&get, "/2015-03-31/functions/f/policy", None),
            Some(LambdaOp::GetPolicy)
        );
        assert_eq!(
            LambdaOp::recognise(&get, "/2015-03-31/functions/", None),
            Some(LambdaOp::ListFunctions)
        );
        assert_eq!(
            LambdaOp::recognise(
                &get,
                "/2019-09-30/functions/f/provisioned-concurrency",
                Some("List=ALL")
            ),
            Some(LambdaOp::ListProvisionedConcurrencyConfigs)
        );
        assert_eq!(
            LambdaOp::recognise(
                &get,
                "/2019-09-30/functions/f/provisioned-concurrency",
                Some("Qualifier=1")
            ),
            Some(LambdaOp::GetProvisionedConcurrencyConfig)
        );
        assert_eq!(
            LambdaOp::recognise(&get, "/2018-10-31/layers", Some("find=LayerVersion&Arn=x")),
            Some(LambdaOp::GetLayerVersionByArn)
        );
        assert_eq!(
            LambdaOp::recognise(&get, "/2018-10-31/layers", None),
            Some(LambdaOp::ListLayers)
        );
        assert_eq!(
            LambdaOp::recognise(&Method::PATCH, "/2015-03-31/functions/f", None),
            None
        );
        assert_eq!(LambdaOp::recognise(&get, "/nope", None), None);
    }

    #[test]
    fn names_are_unique_and_every_op_has_a_binding() {
        let mut names: Vec<_> = LambdaOp::ALL.iter().map(|o| o.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), LambdaOp::ALL.len());
        assert!(LambdaOp::ALL.iter().all(|o| o.binding().1.starts_with('/')));
        assert!(!not_implemented(LambdaOp::AddPermission).message.is_empty());
    }
}

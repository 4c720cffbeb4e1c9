//! A `provided.al2023` function built on AWS's `lambda_runtime` crate, exactly as a
//! user would write it for Lambda. tests/compat/test_ric.py deploys this binary as
//! `bootstrap` and drives it through Nimbus.
//!
//! The event's `mode` picks what the handler does:
//! * `"echo"` (default): a buffered JSON response describing the context and env.
//! * `"error"`: returns an error, which the runtime posts to `/error`.
//! * `"stream"`: a streaming response (`Lambda-Runtime-Function-Response-Mode:
//!   streaming`), `chunks` pieces of `"chunk-<i>\n"`.

use lambda_runtime::streaming::{channel, Body};
use lambda_runtime::{
    service_fn, Diagnostic, FunctionResponse, LambdaEvent, StreamResponse,
};
use serde_json::{json, Value};

async fn handler(
    event: LambdaEvent<Value>,
) -> Result<FunctionResponse<Value, Body>, Diagnostic> {
    let (payload, ctx) = event.into_parts();
    match payload.get("mode").and_then(Value::as_str).unwrap_or("echo") {
        "error" => Err(Diagnostic {
            error_type: "CompatRustError".into(),
            error_message: format!(
                "asked to fail: {}",
                payload.get("why").and_then(Value::as_str).unwrap_or("no reason")
            ),
        }),
        "stream" => {
            let n = payload.get("chunks").and_then(Value::as_u64).unwrap_or(3);
            let (mut tx, rx) = channel();
            tokio::spawn(async move {
                for i in 0..n {
                    if tx.send_data(format!("chunk-{i}\n").into()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            });
            Ok(FunctionResponse::StreamingResponse(StreamResponse::from(rx)))
        }
        _ => Ok(FunctionResponse::BufferedResponse(json!({
            "runtime": "lambda_runtime (Rust)",
            "pid": std::process::id(),
            "request_id": ctx.request_id,
            "deadline_ms": ctx.deadline,
            "invoked_function_arn": ctx.invoked_function_arn,
            "xray_trace_id": ctx.xray_trace_id,
            "function_name": ctx.env_config.function_name,
            "memory_mb": ctx.env_config.memory,
            "version": ctx.env_config.version,
            "log_stream": ctx.env_config.log_stream,
            "log_group": ctx.env_config.log_group,
            "event": payload,
        }))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(handler)).await
}

"""AWS's own runtime interface clients, unmodified, as `provided.al2023` functions on
Nimbus: Python `awslambdaric`, Node `aws-lambda-ric` and Rust `lambda_runtime`. Each
function's `bootstrap` starts the client exactly as a custom runtime or container
image on Lambda does; the clients are installed by tests/compat/setup.sh (run by
scripts/test). A missing client fails its test: nothing here is skipped."""

import base64
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "tests" / "compat"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
NODE_RIC = COMPAT / "node" / "node_modules" / "aws-lambda-ric" / "bin" / "index.mjs"
NODE_ADDON = COMPAT / "node" / "node_modules" / "aws-lambda-ric" / "dist" / "rapid-client.node"
RUST_BOOTSTRAP = COMPAT / "rust-fn" / "target" / "release" / "bootstrap"

SETUP_HINT = "run `bash tests/compat/setup.sh` (scripts/test does)"


def require_file(path, what):
    if not Path(path).is_file():
        pytest.fail(f"{what} is not installed: {path} is missing; {SETUP_HINT}")


def shell_bootstrap(command):
    """A `bootstrap` that execs the client; `_HANDLER` is the function's handler."""
    return ("#!/bin/sh\n"
            "# A custom runtime that hands over to AWS's runtime interface client.\n"
            f"exec {command}\n", 0o755)


def client_context_header(cc):
    return {"X-Amz-Client-Context": base64.b64encode(json.dumps(cc).encode()).decode()}


def check_context(name, body, response, timeout_s):
    """The context fields a handler saw describe this invocation of this function."""
    assert body["request_id"] == response.headers["x-amzn-requestid"], body
    assert body["function_name"] == name, body
    assert body["function_version"] == "$LATEST", body
    assert str(body["memory_mb"]) == "256", body
    assert re.fullmatch(rf"arn:aws:lambda:us-east-1:\d{{12}}:function:{name}",
                        body["invoked_function_arn"]), body
    assert body["log_group"] == f"/aws/lambda/{name}", body
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{8,}", body["log_stream"]), body
    assert 0 < body["remaining_ms"] <= timeout_s * 1000, body


# --- Python: awslambdaric ---------------------------------------------------------

PY_APP = """
import os, sys

def handler(event, context):
    if "fail" in event:
        raise ValueError("asked to fail: " + event["fail"])
    print("python handler saw", context.aws_request_id)
    cc = context.client_context
    return {
        "ric": "awslambdaric" in sys.modules,
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "custom": cc.custom if cc else None,
        "event": event,
    }
"""


@pytest.fixture(scope="module")
def py_ric(server):
    require_file(VENV_PYTHON, "the test venv's python")
    probe = os.popen(f"'{VENV_PYTHON}' -c 'import awslambdaric, runtime_client; "
                     f"print(awslambdaric.__version__)' 2>&1").read().strip()
    if not re.fullmatch(r"\d+\.\d+\.\d+", probe):
        pytest.fail(f"awslambdaric does not import in {VENV_PYTHON}: {probe}; "
                    "it is pinned in tests/requirements.txt; " + SETUP_HINT)
    server.deploy("ric-python", "provided.al2023", "app.handler", {
        "bootstrap": shell_bootstrap(f"'{VENV_PYTHON}' -m awslambdaric \"$_HANDLER\""),
        "app.py": PY_APP,
    }, memory_mb=256, timeout_s=10)
    return "ric-python"


def test_awslambdaric_context_and_warm_reuse(server, py_ric):
    cc = {"client": {"installation_id": "i-1"}, "custom": {"tenant": "acme"}, "env": {}}
    a, ra = server.invoke_ok(py_ric, {"n": 1}, headers=client_context_header(cc))
    assert a["ric"] is True
    check_context(py_ric, a, ra, 10)
    assert a["event"] == {"n": 1}
    assert a["custom"] == {"tenant": "acme"}
    b, rb = server.invoke_ok(py_ric, {"n": 2})
    assert b["pid"] == a["pid"], "the second invoke must reuse the warm instance"
    assert b["request_id"] != a["request_id"]
    assert b["custom"] is None
    assert any("python handler saw " + a["request_id"] in l
               for l in server.log_lines(py_ric, a["request_id"]))


def test_awslambdaric_exception_is_the_function_error(server, py_ric):
    r = server.invoke(py_ric, {"fail": "on purpose"})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-function-error") == "Unhandled", r.headers
    err = r.json()
    assert err["errorType"] == "ValueError", err
    assert err["errorMessage"] == "asked to fail: on purpose", err
    trace = "".join(err["stackTrace"])
    assert "app.py" in trace and "raise ValueError" in trace, err
    # The instance survives its handler's exception.
    body, _ = server.invoke_ok(py_ric, {"n": 3})
    assert body["event"] == {"n": 3}


# --- Node: aws-lambda-ric ---------------------------------------------------------

NODE_APP = r"""
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

exports.handler = async (event, context) => {
  if (event.fail) throw new TypeError("asked to fail: " + event.fail);
  console.log("node handler saw", context.awsRequestId);
  return {
    ric: typeof awslambda === "object",
    pid: process.pid,
    request_id: context.awsRequestId,
    function_name: context.functionName,
    function_version: context.functionVersion,
    memory_mb: context.memoryLimitInMB,
    invoked_function_arn: context.invokedFunctionArn,
    log_group: context.logGroupName,
    log_stream: context.logStreamName,
    remaining_ms: context.getRemainingTimeInMillis(),
    custom: context.clientContext ? context.clientContext.custom : null,
    event,
  };
};

exports.stream = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType("text/plain");
  for (let i = 0; i < (event.chunks ?? 3); i++) {
    responseStream.write(`chunk-${i} ${context.awsRequestId}\n`);
    await sleep(10);
  }
  if (event.fail) throw new Error("stream broke: " + event.fail);
  responseStream.end();
});
"""


@pytest.fixture(scope="module")
def node_ric(server):
    require_file(NODE_RIC, "aws-lambda-ric (npm)")
    require_file(NODE_ADDON, "aws-lambda-ric's native addon")
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not on PATH")
    code = {
        "bootstrap": shell_bootstrap(f"'{node}' '{NODE_RIC}' \"$_HANDLER\""),
        "index.js": NODE_APP,
    }
    server.deploy("ric-node", "provided.al2023", "index.handler", code, memory_mb=256, timeout_s=10)
    server.deploy("ric-node-stream", "provided.al2023", "index.stream", code,
                  memory_mb=256, timeout_s=10)
    return "ric-node"


def test_aws_lambda_ric_context_and_warm_reuse(server, node_ric):
    cc = {"client": {"installation_id": "i-2"}, "custom": {"tenant": "zeta"}, "env": {}}
    a, ra = server.invoke_ok(node_ric, {"n": 1}, headers=client_context_header(cc))
    assert a["ric"] is True
    check_context(node_ric, a, ra, 10)
    assert a["event"] == {"n": 1}
    assert a["custom"] == {"tenant": "zeta"}, a
    b, _ = server.invoke_ok(node_ric, {"n": 2})
    assert b["pid"] == a["pid"], "the second invoke must reuse the warm instance"
    assert b["request_id"] != a["request_id"]
    assert any("node handler saw" in l and a["request_id"] in l
               for l in server.log_lines(node_ric, a["request_id"]))


def test_aws_lambda_ric_exception_is_the_function_error(server, node_ric):
    r = server.invoke(node_ric, {"fail": "on purpose"})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-function-error") == "Unhandled", r.headers
    err = r.json()
    assert err["errorType"] == "TypeError", err
    assert err["errorMessage"] == "asked to fail: on purpose", err
    # Node's RIC reports the stack as `trace` (as on Lambda), passed through verbatim.
    assert any("index.js" in line for line in err["trace"]), err
    body, _ = server.invoke_ok(node_ric, {"n": 3})
    assert body["event"] == {"n": 3}


def test_aws_lambda_ric_streamify_response(server, node_ric):
    name = "ric-node-stream"
    r = server.invoke(name, {"chunks": 40})
    assert r.status_code == 200, r.text
    assert "x-amz-function-error" not in r.headers, r.text
    rid = r.headers["x-amzn-requestid"]
    assert r.text == "".join(f"chunk-{i} {rid}\n" for i in range(40))
    # Same instance next time.
    pid_before = set(server.processes(name))
    r2 = server.invoke(name, {"chunks": 2})
    assert r2.status_code == 200 and r2.text.count("chunk-") == 2, r2.text
    assert set(server.processes(name)) == pid_before


def test_aws_lambda_ric_stream_failure_arrives_as_error_trailers(server, node_ric):
    r = server.invoke("ric-node-stream", {"chunks": 2, "fail": "half-way"})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-function-error") == "Unhandled", (r.headers, r.text)
    err = r.json()
    assert err["errorType"] == "Error", err
    assert err["errorMessage"] == "stream broke: half-way", err


# --- Rust: lambda_runtime ---------------------------------------------------------

@pytest.fixture(scope="module")
def rust_fn(server):
    require_file(RUST_BOOTSTRAP, "the lambda_runtime function (tests/compat/rust-fn)")
    server.deploy("ric-rust", "provided.al2023", "unused", {
        "bootstrap": (RUST_BOOTSTRAP.read_bytes(), 0o755),
    }, memory_mb=256, timeout_s=10)
    return "ric-rust"


def test_lambda_runtime_context_and_warm_reuse(server, rust_fn):
    a, ra = server.invoke_ok(rust_fn, {"mode": "echo", "n": 1})
    assert a["runtime"] == "lambda_runtime (Rust)"
    # lambda_runtime exposes the deadline itself rather than a remaining-time helper.
    seen = {**a, "function_version": a["version"],
            "remaining_ms": a["deadline_ms"] - int(time.time() * 1000)}
    check_context(rust_fn, seen, ra, 10)
    assert a["xray_trace_id"].startswith("Root=1-"), a
    assert a["event"] == {"mode": "echo", "n": 1}
    b, _ = server.invoke_ok(rust_fn, {"mode": "echo", "n": 2})
    assert b["pid"] == a["pid"], "the second invoke must reuse the warm instance"
    assert b["request_id"] != a["request_id"]


def test_lambda_runtime_error_is_the_function_error(server, rust_fn):
    r = server.invoke(rust_fn, {"mode": "error", "why": "bad input"})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-function-error") == "Unhandled", r.headers
    assert r.json() == {"errorType": "CompatRustError", "errorMessage": "asked to fail: bad input"}
    body, _ = server.invoke_ok(rust_fn, {"mode": "echo"})
    assert body["event"] == {"mode": "echo"}


def test_lambda_runtime_streaming_response(server, rust_fn):
    r = server.invoke(rust_fn, {"mode": "stream", "chunks": 25})
    assert r.status_code == 200, r.text
    assert "x-amz-function-error" not in r.headers, r.text
    # lambda_runtime always streams as `application/vnd.awslambda.http-integration-
    # response`: a JSON metadata prelude, eight NUL bytes, then the body. Lambda's
    # Invoke hands those bytes over as they are.
    prelude, sep, rest = r.content.partition(b"\0" * 8)
    assert sep, r.content[:200]
    meta = json.loads(prelude)
    assert meta["statusCode"] == 200, meta
    assert rest == "".join(f"chunk-{i}\n" for i in range(25)).encode()

"""Handlers written for AWS Lambda run unmodified: Python and Node (CommonJS, ESM,
callback style), the context object, log formats, the environment a function sees
(and does not see), private scratch dirs and client context."""

import base64
import json
import os
import re

from conftest import concurrently, pid_alive, wait_for

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ISO_MS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"

# The canonical Lambda hello world, as a user would paste it from the AWS console.
PY_HELLO = """
import json

def handler(event, context):
    name = event.get('name')
    print(f"request_id={context.aws_request_id}")
    print(f"memory={context.memory_limit_in_mb}")
    print(f"remaining={context.get_remaining_time_in_millis()}")
    return {'statusCode': 200, 'body': json.dumps({'message': f'Hello {name}'})}
"""

NODE_ASYNC = """
exports.handler = async (event, context) => {
  console.log(`request_id=${context.awsRequestId}`);
  console.log(`memory=${context.memoryLimitInMB}`);
  console.log(`remaining=${context.getRemainingTimeInMillis()}`);
  console.log('env', process.env.AWS_EXECUTION_ENV, process.env.AWS_LAMBDA_FUNCTION_NAME);
  return { statusCode: 200, body: JSON.stringify({ message: `Hello ${event.name}` }) };
};
"""

NODE_ESM = """
export const handler = async (event, context) => {
  console.log(`request_id=${context.awsRequestId}`);
  console.log(`memory=${context.memoryLimitInMB}`);
  console.log(`remaining=${context.getRemainingTimeInMillis()}`);
  return { statusCode: 200, body: JSON.stringify({ message: `Hello ${event.name}`, esm: typeof require === 'undefined' }) };
};
"""

NODE_CALLBACK = """
exports.handler = (event, context, callback) => {
  console.log(`request_id=${context.awsRequestId}`);
  console.log(`memory=${context.memoryLimitInMB}`);
  console.log(`remaining=${context.getRemainingTimeInMillis()}`);
  setTimeout(() => callback(null, { statusCode: 200, body: JSON.stringify({ message: `Hello ${event.name}` }) }), 10);
};
"""


def check_hello(server, name, memory):
    body, r = server.invoke_ok(name, {"name": "Ada"})
    assert body["statusCode"] == 200
    assert json.loads(body["body"])["message"] == "Hello Ada"
    rid = r.headers["x-amzn-requestid"]
    assert re.fullmatch(UUID, rid), rid
    lines = server.log_lines(name, rid)
    text = "\n".join(lines)
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[-2] == f"END RequestId: {rid}"
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert f"request_id={rid}" in text
    assert f"memory={memory}" in text
    m = re.search(r"remaining=(\d+)", text)
    assert m, text
    remaining = int(m.group(1))
    # Deadline is the function's timeout (3 s by default) from the start of the request.
    assert 0 < remaining <= 3000, remaining
    return body, lines, rid


def test_python_hello_world_unmodified(server):
    server.deploy("py-hello", "python3.12", "lambda_function.lambda_handler",
                  {"lambda_function.py": PY_HELLO.replace("def handler", "def lambda_handler")},
                  memory_mb=256)
    _, lines, _ = check_hello(server, "py-hello", 256)
    # print() output is passed through verbatim, between START and END.
    assert any(l.startswith("request_id=") for l in lines[1:-2])


def test_node_async_handler(server):
    server.deploy("node-async", "nodejs20.x", "index.handler", {"index.js": NODE_ASYNC})
    _, lines, rid = check_hello(server, "node-async", 128)
    # console.log lines use Lambda's format: <ISO time>\t<request id>\tINFO\t<message>
    logged = [l for l in lines if "\tINFO\t" in l]
    assert logged, lines
    for l in logged:
        assert re.fullmatch(ISO_MS + "\t" + re.escape(rid) + r"\tINFO\t.*", l), l
    assert any(l.endswith("\tINFO\tenv AWS_Lambda_nodejs20.x node-async") for l in logged), lines


def test_node_esm_mjs_handler(server):
    server.deploy("node-mjs", "nodejs20.x", "index.handler", {"index.mjs": NODE_ESM})
    body, _, _ = check_hello(server, "node-mjs", 128)
    assert json.loads(body["body"])["esm"] is True


def test_node_esm_type_module_handler(server):
    server.deploy("node-typemodule", "nodejs20.x", "app.handler",
                  {"app.js": NODE_ESM, "package.json": json.dumps({"type": "module"})})
    body, _, _ = check_hello(server, "node-typemodule", 128)
    assert json.loads(body["body"])["esm"] is True


def test_node_callback_handler(server):
    server.deploy("node-callback", "nodejs20.x", "index.handler", {"index.js": NODE_CALLBACK})
    check_hello(server, "node-callback", 128)


def test_python_nested_package_handler(server):
    code = {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/helpers.py": "def greet(n):\n    return 'nested ' + n\n",
        "pkg/sub/mod.py": (
            "from pkg.sub.helpers import greet\n"
            "from . import helpers\n"
            "def handler(event, context):\n"
            "    return {'msg': greet(event['name']), 'same': helpers.greet is greet}\n"
        ),
    }
    server.deploy("py-nested", "python3.12", "pkg/sub/mod.handler", code)
    body, _ = server.invoke_ok("py-nested", {"name": "x"})
    assert body == {"msg": "nested x", "same": True}
    server.deploy("py-nested-dots", "python3.12", "pkg.sub.mod.handler", code)
    body, _ = server.invoke_ok("py-nested-dots", {"name": "y"})
    assert body == {"msg": "nested y", "same": True}


PY_LOGGING = """
import logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)

def handler(event, context):
    logger.info("info line %s", event["n"])
    logging.warning("warning line")
    logging.getLogger("child").debug("debug is filtered")
    return "ok"
"""


def test_python_logging_lines(server):
    server.deploy("py-logging", "python3.12", "app.handler", {"app.py": PY_LOGGING})
    _, r = server.invoke_ok("py-logging", {"n": 42})
    rid = r.headers["x-amzn-requestid"]
    lines = server.log_lines("py-logging", rid)
    info = [l for l in lines if l.startswith("[INFO]")]
    warn = [l for l in lines if l.startswith("[WARNING]")]
    assert len(info) == 1 and len(warn) == 1, lines
    assert re.fullmatch(r"\[INFO\]\t" + ISO_MS + "\t" + re.escape(rid) + r"\tinfo line 42", info[0]), info
    assert warn[0].endswith(f"\t{rid}\twarning line"), warn
    assert not any("debug is filtered" in l for l in lines)


PY_ENV = """
import os
def handler(event, context):
    return dict(os.environ)
"""

STANDARD_ENV = [
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "TZ", "LAMBDA_TASK_ROOT", "_HANDLER", "AWS_LAMBDA_RUNTIME_API",
]
# Variables the platform sets itself; their names may also exist in the server's env.
PLATFORM_SET = set(STANDARD_ENV) | {
    "PATH", "LANG", "HOME", "TMPDIR", "LAMBDA_RUNTIME_DIR", "AWS_DEFAULT_REGION", "LC_CTYPE",
    "PYTHONPYCACHEPREFIX", "_X_AMZN_TRACE_ID",
    # The function's own credentials, endpoint and SDK path (never the server's values).
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
    "NODE_PATH", "NIMBUS_SDK_PYTHON",
}


def test_environment_is_lambdas_and_nothing_of_the_server(server_factory):
    marker_env = {"NIMBUS_SECRET_MARKER": "xyz", "AWS_SECRET_ACCESS_KEY": "leaked-key"}
    s = server_factory(env=marker_env)
    s.deploy("py-env", "python3.12", "app.handler", {"app.py": PY_ENV}, memory_mb=256,
             environment={"MY_SETTING": "hello world", "OTHER": "1"})
    env, _ = s.invoke_ok("py-env", {})

    for k in STANDARD_ENV:
        assert k in env, f"{k} missing from {sorted(env)}"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "py-env"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/py-env"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{8,}", env["AWS_LAMBDA_LOG_STREAM_NAME"]), env
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["TZ"] == ":UTC"
    assert env["_HANDLER"] == "app.handler"
    # Isolated instances see their code at Lambda's /var/task (docs/SECURITY.md).
    assert env["LAMBDA_TASK_ROOT"] == "/var/task" or os.path.isfile(
        os.path.join(env["LAMBDA_TASK_ROOT"], "app.py"))
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"]), env
    # User variables are visible.
    assert env["MY_SETTING"] == "hello world" and env["OTHER"] == "1"
    # Nothing of the server's own environment leaks in.
    assert "NIMBUS_SECRET_MARKER" not in env
    # The function has a secret key of its own, not the server's.
    assert env["AWS_SECRET_ACCESS_KEY"] != "leaked-key"
    assert "xyz" not in env.values() and "leaked-key" not in env.values()
    server_env = {**os.environ, **marker_env, "NIMBUS_LOG": "info"}
    leaked = sorted(k for k in server_env if k in env and k not in PLATFORM_SET)
    assert not leaked, f"server variables visible to the function: {leaked}"


PY_TMP = """
import os, tempfile, time
def handler(event, context):
    d = tempfile.gettempdir()
    with open(os.path.join(d, "mine-" + context.aws_request_id), "w") as f:
        f.write("x")
    time.sleep(event.get("sleep", 0))
    return {"tmpdir": os.environ["TMPDIR"], "gettempdir": d, "files": sorted(os.listdir(d)),
            "rid": context.aws_request_id, "pid": os.getpid()}
"""


def test_tmpdir_is_private_per_instance_and_removed(server):
    server.deploy("py-tmp", "python3.12", "app.handler", {"app.py": PY_TMP})
    results = concurrently(2, lambda i: server.invoke_ok("py-tmp", {"sleep": 1})[0])
    a, b = results
    assert a["pid"] != b["pid"]
    # Isolated (a mount namespace, docs/SECURITY.md): each instance has its own
    # tmpfs at /tmp, gone with the instance. Otherwise a scratch dir of its own.
    isolated = a["tmpdir"] == "/tmp"
    if not isolated:
        assert a["tmpdir"] != b["tmpdir"]
    for r in results:
        assert r["gettempdir"] == r["tmpdir"]
        if not isolated:
            assert r["tmpdir"] not in ("/tmp", "/var/tmp")
            assert os.path.isdir(r["tmpdir"])
        # Each instance sees only its own files.
        assert r["files"] == ["mine-" + r["rid"]], r
    # Stopping the instances (here: deleting the function) removes their dirs.
    assert server.delete("py-tmp").status_code == 204
    if not isolated:
        wait_for(lambda: not any(os.path.exists(r["tmpdir"]) for r in results),
                 timeout=15, what="scratch dirs removed")
    else:
        wait_for(lambda: not any(pid_alive(r["pid"]) for r in results),
                 timeout=15, what="instances stopped")
    for r in results:
        assert not pid_alive(r["pid"])


PY_CLIENT_CONTEXT = """
def handler(event, context):
    cc = context.client_context
    if cc is None:
        return None
    return {"custom": cc.custom, "env": cc.env, "installation_id": cc.client.installation_id,
            "app_title": cc.client.app_title}
"""


def test_client_context_reaches_the_handler(server):
    server.deploy("py-cc", "python3.12", "app.handler", {"app.py": PY_CLIENT_CONTEXT})
    cc = {
        "client": {"installation_id": "inst-1", "app_title": "My App", "app_version_name": "1",
                   "app_version_code": "1", "app_package_name": "com.example"},
        "custom": {"tenant": "acme", "n": 3},
        "env": {"platform": "Android"},
    }
    header = base64.b64encode(json.dumps(cc).encode()).decode()
    body, _ = server.invoke_ok("py-cc", {}, headers={"X-Amz-Client-Context": header})
    assert body == {"custom": {"tenant": "acme", "n": 3}, "env": {"platform": "Android"},
                    "installation_id": "inst-1", "app_title": "My App"}
    # Without the header there is no client context.
    body, _ = server.invoke_ok("py-cc", {})
    assert body is None


NODE_CLIENT_CONTEXT = """
exports.handler = async (event, context) => ({ cc: context.clientContext ?? null });
"""


def test_client_context_reaches_a_node_handler(server):
    server.deploy("node-cc", "nodejs20.x", "index.handler", {"index.js": NODE_CLIENT_CONTEXT})
    cc = {"client": {"installation_id": "inst-2"}, "custom": {"k": "v"}, "env": {"locale": "en"}}
    header = base64.b64encode(json.dumps(cc).encode()).decode()
    body, _ = server.invoke_ok("node-cc", {}, headers={"X-Amz-Client-Context": header})
    got = body["cc"]
    assert got["custom"] == {"k": "v"} and got["env"] == {"locale": "en"}, got
    assert got["client"]["installation_id"] == "inst-2", got
    assert server.invoke_ok("node-cc", {})[0]["cc"] is None

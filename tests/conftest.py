"""Shared fixtures for the end-to-end suite: every test talks to the real `nimbus`
binary (NIMBUS_BIN, built by scripts/test) started on random ports with its own data
dir, over real HTTP."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
NIMBUS_BIN = os.environ.get("NIMBUS_BIN", str(ROOT / "target" / "debug" / "nimbus"))
READY = re.compile(r"nimbus ready: api (http://\S+) gateway (http://\S+)")


class Server:
    """A running `nimbus up` with helpers for the control API and Lambda Invoke."""

    def __init__(self, data_dir, extra_args=(), env=None):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.api = None
        self.gateway = None
        self.output = []
        self.session = requests.Session()

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout=30):
        args = [
            NIMBUS_BIN, "up",
            "--data-dir", str(self.data_dir),
            "--listen", "127.0.0.1:0",
            "--gateway-listen", "127.0.0.1:0",
            *self.extra_args,
        ]
        env = dict(os.environ)
        env.setdefault("NIMBUS_LOG", "info")
        # Many tests hand functions a host file to write to (OUT=...), which an
        # isolated instance cannot reach: the suite runs with isolation off unless
        # NIMBUS_ISOLATION says otherwise; test_hostile_functions.py, test_spares.py
        # and test_runtimes.py run isolated (docs/SECURITY.md).
        env.setdefault("NIMBUS_ISOLATION", "off")
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.output = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.output.append(line)
                m = READY.search(line)
                if m:
                    self.api, self.gateway = m.group(1), m.group(2)
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise RuntimeError("nimbus did not become ready:\n" + "".join(self.output))
        r = self.session.get(self.api + "/_nimbus/health", timeout=5)
        assert r.status_code == 200, r.text
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self):
        """kill -9: no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self):
        return "".join(self.output)

    # -- control API -----------------------------------------------------------
    def upload(self, code):
        """`code` is a directory path, a dict {relative path: text|bytes|(content, mode)}, or zip bytes."""
        if isinstance(code, (bytes, bytearray)):
            data = bytes(code)
        else:
            data = make_zip(code)
        r = self.session.post(self.api + "/_nimbus/code", data=data, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["sha256"]

    def deploy(self, name, runtime, handler, code, expect=(200, 201), **config):
        sha = self.upload(code)
        body = {"runtime": runtime, "handler": handler, "code_sha256": sha, **config}
        r = self.session.put(f"{self.api}/_nimbus/functions/{name}", json=body, timeout=60)
        if expect is not None:
            assert r.status_code in expect, r.text
        return r

    def delete(self, name):
        return self.session.delete(f"{self.api}/_nimbus/functions/{name}", timeout=30)

    def function(self, name):
        r = self.session.get(f"{self.api}/_nimbus/functions/{name}", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def instances(self, name):
        return self.function(name)["instances"]

    def logs(self, name, after=0):
        r = self.session.get(f"{self.api}/_nimbus/functions/{name}/logs", params={"after": after}, timeout=10)
        assert r.status_code == 200, r.text
        return [json.loads(l) for l in r.text.splitlines() if l.strip()]

    def log_lines(self, name, request_id=None):
        return [l["line"] for l in self.logs(name) if request_id is None or l["request_id"] == request_id]

    def records(self, name=None, **params):
        if name:
            params["function"] = name
        r = self.session.get(f"{self.api}/_nimbus/invocations", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["invocations"]

    # -- Lambda Invoke ---------------------------------------------------------
    def invoke(self, name, payload=None, qualifier=None, headers=None, timeout=60, session=None):
        """Returns the raw `requests.Response` of the Lambda Invoke operation."""
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload if payload is not None else {})
        params = {"Qualifier": qualifier} if qualifier else None
        s = session or self.session
        return s.post(
            f"{self.api}/2015-03-31/functions/{name}/invocations",
            data=body, params=params, headers=headers or {}, timeout=timeout,
        )

    def invoke_json(self, name, payload=None, **kw):
        r = self.invoke(name, payload, **kw)
        assert r.status_code == 200, r.text
        return r.json(), r

    def invoke_ok(self, name, payload=None, **kw):
        """Invoke and require a successful function result (no function error)."""
        r = self.invoke(name, payload, **kw)
        assert r.status_code == 200, r.text
        assert "x-amz-function-error" not in r.headers, r.text
        return r.json(), r

    # -- host-side inspection --------------------------------------------------
    def processes(self, function=None):
        """Pids of live instance processes of this server (and of `function`), found
        by scanning /proc: every instance process, and everything it forks, carries a
        TMPDIR under this server's data dir unless it scrubbed its own environment."""
        return instance_processes(self.data_dir, function)

    def cli(self, *args, timeout=60, endpoint=None, **kw):
        """Run the `nimbus` CLI against this server."""
        return run_cli(*args, endpoint=endpoint or self.api, timeout=timeout, **kw)


def run_cli(*args, endpoint, timeout=60, **kw):
    env = dict(os.environ)
    env.pop("NIMBUS_ENDPOINT", None)
    env.pop("RUST_BACKTRACE", None)
    return subprocess.run(
        [NIMBUS_BIN, "--endpoint", endpoint, *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, **kw,
    )


def server_cgroup(data_dir):
    """The cgroup path segment of a server's instances (`nimbus/<server-id>/`)."""
    import hashlib
    sid = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:12]
    return f"/nimbus/{sid}/"


def instance_processes(data_dir, function=None):
    marker = ("TMPDIR=" + os.path.realpath(data_dir) + "/instances/").encode()
    # Isolated instances (docs/SECURITY.md) have TMPDIR=/tmp: they are found by
    # their server's cgroup and the function name in their environment.
    group = server_cgroup(data_dir)
    fn = ("AWS_LAMBDA_FUNCTION_NAME=" + function).encode() if function else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ours = any(e.startswith(marker) for e in env)
        if not ours and b"TMPDIR=/tmp" in env and any(
                e.startswith(b"AWS_LAMBDA_FUNCTION_NAME=") for e in env):
            try:
                with open(f"/proc/{entry}/cgroup") as f:
                    ours = group in f.read()
            except OSError:
                ours = False
        if ours and (fn is None or fn in env):
            if pid_alive(int(entry)):
                found.append(int(entry))
    return found


def session_processes(sid):
    """Live pids in session `sid`. Every instance is a session leader, and whatever it
    forks stays in its session (unless it calls setsid itself)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # fields: state ppid pgrp session ...
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            found.append(int(entry))
    return found


def concurrently(n, fn, timeout=120):
    """Run fn(i) for i in range(n) in n threads released together; results in order."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "concurrent calls did not finish"
    return results


def log_tail(response):
    """The decoded `X-Amz-Log-Result` of an invoke made with `X-Amz-Log-Type: Tail`."""
    return base64.b64decode(response.headers["x-amz-log-result"]).decode()


CANARY = """
import os
def handler(event, context):
    return {"canary": True, "pid": os.getpid(), "echo": event}
"""


def assert_platform_healthy(server, name="canary"):
    """The server answers and an unrelated function still runs correctly."""
    r = server.session.get(server.api + "/_nimbus/health", timeout=10)
    assert r.status_code == 200, r.text
    if server.session.get(f"{server.api}/_nimbus/functions/{name}", timeout=10).status_code == 404:
        server.deploy(name, "python3.12", "app.handler", {"app.py": CANARY})
    body, _ = server.invoke_ok(name, {"ping": 1}, timeout=60)
    assert body["canary"] is True and body["echo"] == {"ping": 1}, body


def make_zip(code):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if isinstance(code, (str, Path)):
            root = Path(code)
            for p in sorted(root.rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts:
                    info = zipfile.ZipInfo(str(p.relative_to(root)))
                    info.external_attr = (p.stat().st_mode & 0o777) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    z.writestr(info, p.read_bytes())
        else:
            for rel, content in code.items():
                mode = 0o644
                if isinstance(content, tuple):
                    content, mode = content
                info = zipfile.ZipInfo(rel)
                info.external_attr = mode << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, content)
    return buf.getvalue()


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server_factory(data_dir):
    """Start servers (several, or restarts on one data dir) and always stop them."""
    started = []

    def make(*extra_args, env=None, data=None):
        s = Server(data or data_dir, extra_args, env=env).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def server():
    """One server shared by a test module."""
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)

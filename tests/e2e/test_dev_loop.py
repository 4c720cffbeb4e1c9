"""`nimbus dev`, end to end against the real binary: it deploys a serverless.yml
app, then a saved handler change is served within a second, a syntax error is
reported and leaves the last good version serving, a fix is live again, and
Ctrl-C stops the watch with status 0 and nothing left running."""

import os
import signal
import subprocess
import threading
import time

import requests

from conftest import NIMBUS_BIN, pid_alive, wait_for

MANIFEST = """\
service: devloop
provider:
  name: aws
  runtime: python3.12
  httpApi:
    payload: '2.0'
functions:
  hello:
    handler: handler.handler
    events:
      - httpApi: 'GET /hello'
"""

HANDLER = """\
def handler(event, context):
    return {{"statusCode": 200, "body": "{body}"}}
"""

BROKEN = """\
def handler(event, context):
    return {"statusCode": 200, "body": "broken"
"""

FUNCTION = "devloop-dev-hello"


class Dev:
    def __init__(self, server, cwd):
        env = dict(os.environ)
        env.pop("NIMBUS_ENDPOINT", None)
        self.proc = subprocess.Popen(
            [NIMBUS_BIN, "--endpoint", server.api, "dev", "--debounce-ms", "100"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, start_new_session=True,
        )
        self.lines = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def wait_output(self, needle, after=0, timeout=30):
        return wait_for(lambda: needle in "".join(self.lines[after:]), timeout=timeout,
                        what=f"{needle!r} in the output of nimbus dev:\n{self.text()}")


def body(url):
    try:
        r = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return r.text if r.status_code == 200 else f"HTTP {r.status_code}"


def save_and_time(path, text, url, expect):
    """Write `text`, then poll `url` until it answers `expect`; seconds from the write."""
    t0 = time.monotonic()
    path.write_text(text)
    wait_for(lambda: body(url) == expect, timeout=10, interval=0.02, what=f"{expect!r} at {url}")
    return time.monotonic() - t0


def test_dev_loop(server, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "serverless.yml").write_text(MANIFEST)
    handler = app / "handler.py"
    handler.write_text(HANDLER.format(body="v1"))
    url = server.gateway + "/hello"

    dev = Dev(server, app)
    try:
        dev.wait_output("watching", timeout=60)
        assert body(url) == "v1", dev.text()

        # A saved change is live for the next invocation once the reload is
        # reported (the order is the behaviour; the time it took is printed only).
        n = len(dev.lines)
        took = save_and_time(handler, HANDLER.format(body="v2"), url, "v2")
        print(f"\nnimbus dev: v1 -> v2 served {took * 1000:.0f} ms after the save")
        dev.wait_output(f"reloaded {FUNCTION}", after=n)
        assert body(url) == "v2", dev.text()

        # A syntax error is reported and the good version keeps serving.
        n = len(dev.lines)
        handler.write_text(BROKEN)
        dev.wait_output("reload failed", after=n)
        out = "".join(dev.lines[n:])
        assert "SyntaxError" in out and "handler.py:" in out, out
        for _ in range(5):
            assert body(url) == "v2", dev.text()
            time.sleep(0.05)

        # The fix is live again.
        n = len(dev.lines)
        took = save_and_time(handler, HANDLER.format(body="v3"), url, "v3")
        print(f"nimbus dev: broken -> v3 served {took * 1000:.0f} ms after the save")
        dev.wait_output(f"reloaded {FUNCTION}", after=n)
        assert body(url) == "v3", dev.text()

        # Changes outside the code that ships (caches, editor files) reload nothing.
        n = len(dev.lines)
        (app / "__pycache__").mkdir(exist_ok=True)
        (app / "__pycache__" / "x.pyc").write_bytes(b"x")
        (app / ".handler.py.swp").write_bytes(b"x")
        time.sleep(0.5)
        assert "".join(dev.lines[n:]).strip() == "", dev.text()
    finally:
        if dev.proc.poll() is None:
            dev.proc.send_signal(signal.SIGINT)
    rc = dev.proc.wait(timeout=15)
    dev.pump.join(timeout=10)  # the last lines are read after the exit
    assert rc == 0, dev.text()
    assert "stopped" in dev.text()
    print(dev.text())

    # Nothing the dev loop started is left (its session), and the server keeps one
    # warm instance of the current code at most: old instances finished and stopped.
    pgid = dev.proc.pid
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid and pid_alive(int(entry)):
                    left.append(int(entry))
            except ProcessLookupError:
                pass
    assert left == [], left
    wait_for(lambda: len(server.processes(FUNCTION)) <= 1, timeout=15,
             what="old instances of the function to stop")
    assert body(url) == "v3"

"""Invokes are cancel-safe: a client that disconnects mid-invoke (as boto3 does when
its 60 s read timeout fires) does not cut the invocation short. As on Lambda, the
function runs to completion, its instance goes back to the pool, its invocation record
is written, and the next invoke reuses the warm instance."""

import json
import socket
import struct
from urllib.parse import urlparse

from conftest import wait_for

SLEEPER = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "slept": event.get("sleep", 0)}
"""


def start_invoke_and_hang_up(server, name, payload, state="busy"):
    """Send a Lambda Invoke over a raw socket, wait until the function is running
    (an instance of it is busy), then drop the connection without reading the reply."""
    url = urlparse(server.api)
    body = json.dumps(payload).encode()
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(
        (
            f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    wait_for(
        lambda: any(i["state"] == state for i in server.instances(name)),
        timeout=60,
        what=f"an instance of {name} to be {state}",
    )
    # Reset rather than a polite FIN: the connection is gone, as after a timeout.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_disconnect_mid_invoke_finishes_the_invocation(server):
    server.deploy("sleeper", "python3.12", "app.handler", {"app.py": SLEEPER}, timeout_s=30)
    start_invoke_and_hang_up(server, "sleeper", {"sleep": 2})

    # The invocation finishes on its own: a complete record, outcome success.
    recs = wait_for(lambda: server.records("sleeper"), timeout=60, what="the invocation record")
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["outcome"] == "success", rec
    assert rec["cold"] is True, rec
    assert rec["duration_ms"] >= 2000, rec  # the function's own sleep, not a wall clock

    # The instance went back to the pool: one instance, idle, none busy.
    insts = wait_for(
        lambda: (lambda i: i if i and all(x["state"] == "idle" for x in i) else None)(
            server.instances("sleeper")
        ),
        timeout=60,
        what="the instance to be idle again",
    )
    assert len(insts) == 1, insts
    pid = insts[0]["pid"]

    # The next invoke reuses the warm instance.
    body, r = server.invoke_ok("sleeper", {"sleep": 0})
    assert body["pid"] == pid, (body, insts)
    rid = r.headers["x-amzn-requestid"]
    mine = wait_for(
        lambda: [x for x in server.records("sleeper") if x["request_id"] == rid],
        what="the second record",
    )
    assert mine[0]["cold"] is False and mine[0]["outcome"] == "success", mine
    assert [i["state"] for i in server.instances("sleeper")] == ["idle"]


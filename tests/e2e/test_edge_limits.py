"""The API listener's limits against slow and greedy clients: a request head sent
slowly is cut off (connection closed, or 408), a body sent slowly is refused with
408, and past --max-connections the listener stops accepting until a connection
closes — while well-behaved clients keep being served. The limits come from
flags on the server under test; the assertions are about behaviour, not time."""

import shutil
import socket
import tempfile
import threading
import time
from urllib.parse import urlparse

import pytest
import requests

from conftest import Server

MAX_CONNECTIONS = 4


@pytest.fixture(scope="module")
def edge():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, ["--header-timeout", "1s", "--body-timeout", "2s"]).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def addr(url):
    host, port = urlparse(url).netloc.split(":")
    return host, int(port)


def drip(sock, data, stop):
    """Send `data` one byte at a time until the server hangs up; True if it did."""
    for b in data:
        if stop.is_set():
            return False
        try:
            sock.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            return True
        time.sleep(0.2)
    return False


def closed_or_408(sock):
    """Whether the server closed the connection (possibly after a 408)."""
    sock.settimeout(120)
    try:
        data = sock.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 408")


def test_slowloris_head_is_cut_off_while_others_are_served(edge):
    s = socket.create_connection(addr(edge.api))
    stop = threading.Event()
    # A head that, at one byte per 0.2 s, takes far longer than the 1 s allowed.
    head = b"GET /_nimbus/health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 400
    result = {}
    t = threading.Thread(target=lambda: result.update(cut=drip(s, head, stop)), daemon=True)
    t.start()
    # Meanwhile a normal client is answered, again and again.
    for _ in range(5):
        assert requests.get(edge.api + "/_nimbus/health", timeout=30).status_code == 200
    t.join(300)
    stop.set()
    assert result.get("cut") or closed_or_408(s), "the slow head was never cut off"
    s.close()
    assert requests.get(edge.api + "/_nimbus/health", timeout=30).status_code == 200


def test_silent_connection_is_closed(edge):
    s = socket.create_connection(addr(edge.api))
    assert closed_or_408(s)
    s.close()


def test_slow_body_gets_408(edge):
    s = socket.create_connection(addr(edge.api))
    body = b"Action=GetCallerIdentity&Version=2011-06-15" + b"&Pad=" + b"a" * 200
    s.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    stop = threading.Event()
    t = threading.Thread(target=drip, args=(s, body, stop), daemon=True)
    t.start()
    s.settimeout(120)
    data = s.recv(4096)
    stop.set()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"RequestTimeout" in data
    s.close()
    r = requests.post(edge.api + "/", data={"Action": "GetCallerIdentity", "Version": "2011-06-15"}, timeout=30)
    assert r.status_code == 200


def test_connection_cap_holds_new_connections_until_one_closes(server_factory):
    s = server_factory("--max-connections", str(MAX_CONNECTIONS), "--header-timeout", "120s")
    host_port = addr(s.api)
    # The fixture's own keep-alive connection would take a slot.
    s.session.close()
    # Fill every slot with a connection in the middle of its head.
    held = []
    for _ in range(MAX_CONNECTIONS):
        c = socket.create_connection(host_port)
        c.sendall(b"GET /_nimbus/health HTTP/1.1\r\nHost: x\r\n")
        held.append(c)
    # Wait until the server has accepted all of them: a complete request on one of
    # them is answered (the header continues, then ends).
    held[0].sendall(b"\r\n")
    held[0].settimeout(60)
    assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    # One more: connected (the kernel's backlog) but not served while the slots are full.
    extra = socket.create_connection(host_port)
    extra.sendall(b"GET /_nimbus/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    extra.settimeout(1.5)
    with pytest.raises(socket.timeout):
        extra.recv(4096)
    # A slot frees up: the waiting connection is served.
    held[0].close()
    extra.settimeout(60)
    assert extra.recv(4096).startswith(b"HTTP/1.1 200")
    extra.close()
    for c in held[1:]:
        c.close()


ECHO = """
def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
"""


def test_gateway_has_the_same_body_timeout(edge):
    edge.deploy("limits-echo", "python3.12", "app.handler", {"app.py": ECHO})
    r = edge.session.put(f"{edge.api}/_nimbus/routes",
                         json={"route_key": "POST /slow-body", "function": "limits-echo"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    s = socket.create_connection(addr(edge.gateway))
    body = b"x" * 300
    s.sendall(b"POST /slow-body HTTP/1.1\r\nHost: x\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode())
    stop = threading.Event()
    threading.Thread(target=drip, args=(s, body, stop), daemon=True).start()
    s.settimeout(120)
    data = s.recv(4096)
    stop.set()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    s.close()
    # A client sending its body at once is served.
    r = requests.post(f"{edge.gateway}/slow-body", data=body, timeout=60)
    assert r.status_code == 200 and r.text == "ok"

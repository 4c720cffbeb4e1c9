"""Hostile functions, the resource-abuse half (issue 19): a fork bomb, endless
output and 1 GB of stdout, filling /tmp, exhausting file descriptors and the
edge's connections, memory beyond MemorySize, ignoring SIGTERM at the timeout.
Each is contained (what the abuser gets is asserted as counts and states), a
neighbour function keeps serving, and the server stays up with bounded memory.
One isolated server for the module, as a default `nimbus up` runs.

Where a mechanism is missing on the host (health's `isolation.missing`, `pids_limit`),
the test asserts that its absence is reported instead: loud degradation, never a
silent skip."""
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request

import pytest
import requests

from conftest import Server, pid_alive, wait_for

ABUSER = r'''
import errno, os, resource, signal, socket, time

LEAKED = []

def tmp_state():
    st = os.statvfs("/tmp")
    return {"tmp_files": sorted(os.listdir("/tmp")),
            "tmp_size_mb": st.f_blocks * st.f_frsize // 2**20,
            "tmp_free_mb": st.f_bavail * st.f_frsize // 2**20}

def handler(event, context):
    what = event.get("do", "ok")
    if what == "ok":
        return {"ok": True, "pid": os.getpid(), "uid": os.getuid(), **tmp_state()}
    if what == "forkbomb":
        print("forkbomb starting", flush=True)
        while True:
            try:
                os.fork()
            except OSError:
                pass
    if what == "flood":
        block = (b"y" * 1023 + b"\n") * 1024
        for _ in range(event["mb"]):
            os.write(1, block)
        return {"flooded_mb": event["mb"]}
    if what == "endless":
        # No newline ever, and no end: only the timeout stops it.
        block = b"z" * 65536
        while True:
            os.write(1, block)
    if what == "fill_tmp":
        chunk = b"\xaa" * (1 << 20)
        err = None
        try:
            with open("/tmp/fill", "wb", buffering=0) as f:
                while True:
                    f.write(chunk)
        except OSError as e:
            err = errno.errorcode.get(e.errno, str(e.errno))
        written = os.path.getsize("/tmp/fill")
        state = tmp_state()
        os.remove("/tmp/fill")
        return {"errno": err, "written_mb": written / 2**20, **state}
    if what == "fds":
        err = None
        try:
            while True:
                LEAKED.append(socket.socket())
        except OSError as e:
            err = errno.errorcode.get(e.errno, str(e.errno))
        n = len(LEAKED)
        # Keep them open (leaked) past the invocation, unless told otherwise.
        if not event.get("leak"):
            while LEAKED:
                LEAKED.pop().close()
        return {"errno": err, "sockets": n, "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE))}
    if what == "edge_connections":
        # Open as many connections to the platform's port as it lets us hold
        # (never sending a request), and keep them.
        host, port = os.environ["AWS_ENDPOINT_URL"].removeprefix("http://").rsplit(":", 1)
        opened = 0
        for _ in range(event["n"]):
            try:
                s = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                break
            LEAKED.append(s)
            opened += 1
        # How many the edge serves: each asks for the health check; one over
        # the cap was closed when accepted and answers nothing.
        alive = 0
        for s in LEAKED:
            s.settimeout(60)
            try:
                s.sendall(b"GET /_nimbus/health HTTP/1.1\r\nHost: edge\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    alive += 1
            except OSError:
                pass
        return {"opened": opened, "alive": alive}
    if what == "release":
        n = len(LEAKED)
        while LEAKED:
            LEAKED.pop().close()
        return {"released": n}
    if what == "oom":
        hog = []
        while True:
            hog.append(b"x" * (8 * 2**20))
    if what == "ignore_term":
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        r, w = os.pipe()
        if os.fork() == 0:
            os.write(w, str(os.getpid()).encode())
            while True:
                time.sleep(0.05)
        child = int(os.read(r, 32))
        print("ignoring SIGTERM; child", child, flush=True)
        while True:
            time.sleep(0.05)
    raise ValueError(what)
'''

NEIGHBOUR = r'''
import os
def handler(event, context):
    st = os.statvfs("/tmp")
    with open("/tmp/neighbour", "wb") as f:
        f.write(b"n" * (4 << 20))
    size = os.path.getsize("/tmp/neighbour")
    os.remove("/tmp/neighbour")
    return {"neighbour": True, "pid": os.getpid(), "wrote": size,
            "tmp_free_mb": st.f_bavail * st.f_frsize // 2**20}
'''


def health(server):
    with urllib.request.urlopen(server.api + "/_nimbus/health") as r:
        return json.loads(r.read())


def expect_error(r, error_type, in_message=None):
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-function-error") == "Unhandled", r.headers
    body = r.json()
    assert body["errorType"] == error_type, body
    if in_message is not None:
        assert in_message in body["errorMessage"], body
    return body


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def uid_processes(uid):
    """Live pids running as `uid` (an isolated instance's own uid)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state = [l for l in status.splitlines() if l.startswith("State:")]
        uids = [l for l in status.splitlines() if l.startswith("Uid:")]
        if state and state[0].split()[1] in ("Z", "X"):
            continue
        if uids and int(uids[0].split()[1]) == uid:
            found.append(int(entry))
    return found



def neighbour_serves(server):
    """The neighbour answers correctly, /tmp of its own intact, and the server is up."""
    assert server.proc.poll() is None, "the server died"
    assert server.session.get(server.api + "/_nimbus/health", timeout=30).status_code == 200
    body, _ = server.invoke_ok("neighbour", {}, timeout=120)
    assert body["neighbour"] is True and body["wrote"] == 4 << 20, body
    return body


class RssWatch:
    """Samples the server's resident memory while something runs."""

    def __init__(self, pid):
        self.pid = pid
        self.before = rss_kib(pid)
        self.peak = self.before
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self.samples += 1
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        self._t.join(10)
        return self.peak - self.before


def test_fork_bomb_is_capped_and_cleaned_up(server):
    iso = health(server)["isolation"]
    leader = server.invoke_ok("bomb", {})[0]
    r = server.invoke("bomb", {"do": "forkbomb"}, timeout=120)
    expect_error(r, "Sandbox.Timedout", "Task timed out after 2.00 seconds")
    lines = server.log_lines("bomb", r.headers["x-amzn-requestid"])
    assert any("forkbomb starting" in l for l in lines), lines
    if iso["pids_limit"] == "none":
        assert "uid" in {m["feature"] for m in iso["missing"]}, iso
    else:
        assert iso["pids_limit"] in ("cgroup", "rlimit"), iso
    if "uid" in iso["active"]:
        # Every process of the instance's uid is gone once the timeout killed it.
        wait_for(lambda: uid_processes(leader["uid"]) == [], timeout=30,
                 what="fork bomb processes killed")
    wait_for(lambda: not pid_alive(leader["pid"]), timeout=30, what="bomb instance killed")
    neighbour_serves(server)
    # The same function serves again, from a fresh instance.
    again = server.invoke_ok("bomb", {})[0]
    assert again["ok"] and again["pid"] != leader["pid"]


def test_a_pids_cap_holds_while_the_bomb_runs(server):
    """Counted from the host while the bomb runs: never more than the cap."""
    iso = health(server)["isolation"]
    if "uid" not in iso["active"] or iso["pids_limit"] == "none":
        assert iso["pids_limit"] == "none" or "uid" in {m["feature"] for m in iso["missing"]}
        return
    uid = server.invoke_ok("bomb", {})[0]["uid"]
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], len(uid_processes(uid)))
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        r = server.invoke("bomb", {"do": "forkbomb"}, timeout=120)
    finally:
        done.set()
        t.join(10)
    expect_error(r, "Sandbox.Timedout")
    # It really forked, and the per-instance cap (256 processes) held.
    assert 32 <= peak[0] <= 256, peak[0]
    neighbour_serves(server)


def test_endless_output_is_capped_and_the_server_memory_stays_bounded(server):
    watch = RssWatch(server.proc.pid)
    try:
        r = server.invoke("talker", {"do": "endless"}, timeout=120)
    finally:
        grew_kib = watch.stop()
    expect_error(r, "Sandbox.Timedout")
    lines = server.log_lines("talker", r.headers["x-amzn-requestid"])
    assert sum(1 for l in lines if "log output truncated" in l) == 1, lines[-5:]
    kept = sum(len(l) + 1 for l in lines if l.startswith("zzz"))
    assert 0 < kept <= 1024 * 1024 + 256 * 1024 + 2048, kept
    assert watch.samples > 0
    assert grew_kib < 64 * 1024, f"server RSS grew by {grew_kib} KiB"
    neighbour_serves(server)


def test_one_gigabyte_of_stdout_is_drained_not_buffered(server):
    watch = RssWatch(server.proc.pid)
    result = {}

    def flood():
        result["r"] = server.invoke("talker-slow", {"do": "flood", "mb": 1024},
                                    session=requests.Session(), timeout=600)

    t = threading.Thread(target=flood)
    t.start()
    try:
        wait_for(lambda: any(i["state"] == "busy" for i in server.instances("talker-slow")),
                 timeout=60, what="flood running")
        neighbour_serves(server)
        meanwhile = t.is_alive()
    finally:
        t.join(600)
        grew_kib = watch.stop()
    r = result["r"]
    assert r.status_code == 200, r.text
    assert "x-amz-function-error" not in r.headers, r.text
    assert r.json() == {"flooded_mb": 1024}
    assert meanwhile, "the flood finished before the neighbour was invoked"
    lines = server.log_lines("talker-slow", r.headers["x-amzn-requestid"])
    assert sum(1 for l in lines if "log output truncated" in l) == 1
    kept = sum(len(l) + 1 for l in lines if l.startswith("yyy"))
    assert 0 < kept <= 1024 * 1024 + 2048, kept
    # 1 GiB went through the pipe; the server held a bounded amount of it.
    assert grew_kib < 64 * 1024, f"server RSS grew by {grew_kib} KiB during a 1 GiB flood"


def test_filling_tmp_stops_at_its_ephemeral_storage_and_spares_the_neighbour(server):
    iso = health(server)["isolation"]
    got = server.invoke_ok("filler", {"do": "fill_tmp"}, timeout=300)[0]
    if "mount_namespace" not in iso["active"]:
        # No private tmpfs: the scratch dir is capped by RLIMIT_FSIZE only.
        assert "mount_namespace" in {m["feature"] for m in iso["missing"]}, iso
        assert got["errno"] in ("EFBIG", "ENOSPC"), got
        return
    assert got["errno"] == "ENOSPC", got
    # The function's EphemeralStorage (512 MB, the default) is its /tmp.
    assert got["tmp_size_mb"] == 512, got
    assert 500 <= got["written_mb"] <= 512, got
    assert got["tmp_free_mb"] <= 1, got
    # Its neighbour's /tmp is its own, empty and writable.
    n = neighbour_serves(server)
    assert n["tmp_free_mb"] >= 500, n
    # The filler's file is gone with it, and it serves again.
    again = server.invoke_ok("filler", {}, timeout=60)[0]
    assert "fill" not in again["tmp_files"] and again["tmp_free_mb"] >= 500, again
    # /tmp is a tmpfs: its pages count against MemorySize (a documented difference
    # from Lambda), so a 128 MB function filling it is stopped by its memory cap.
    r = server.invoke("hog", {"do": "fill_tmp"}, timeout=300)
    expect_error(r, "Runtime.OutOfMemory")
    neighbour_serves(server)
    again = server.invoke_ok("hog", {}, timeout=60)[0]
    assert again["tmp_files"] == [] and again["tmp_free_mb"] >= 500, again


def test_file_descriptor_exhaustion_stays_inside_the_instance(server):
    got = server.invoke_ok("fds", {"do": "fds", "leak": True}, timeout=120)[0]
    assert got["errno"] == "EMFILE", got
    assert got["nofile"] == [1024, 1024], got
    assert 900 <= got["sockets"] < 1024, got
    # With every descriptor of the instance taken, the platform and the neighbour
    # are unaffected; the instance itself still answers (its Runtime API
    # connection is already open) and frees them.
    neighbour_serves(server)
    released = server.invoke_ok("fds", {"do": "release"}, timeout=60)[0]
    assert released["released"] == got["sockets"], released
    again = server.invoke_ok("fds", {"do": "fds"}, timeout=120)[0]
    assert again["sockets"] == got["sockets"], again


def test_edge_connections_held_by_a_function_are_capped(server):
    """A function opening connections to the platform's port in bulk holds at most
    its share (an eighth of --max-connections, 1024 by default); the user's calls
    and the neighbour go on meanwhile."""
    iso = health(server)["isolation"]
    got = server.invoke_ok("fds", {"do": "edge_connections", "n": 600}, timeout=120)[0]
    try:
        if iso["platform_ports_check"] != "active":
            assert "uid" in {m["feature"] for m in iso["missing"]}, iso
            return
        assert got["opened"] >= 128, got
        assert got["alive"] == 128, got
        # The user's control API and the neighbour are served while they are held.
        assert server.session.get(server.api + "/_nimbus/functions", timeout=30).status_code == 200
        neighbour_serves(server)
    finally:
        server.invoke_ok("fds", {"do": "release"}, timeout=60)
    assert server.invoke_ok("fds", {})[0]["ok"]


def test_memory_beyond_memory_size_is_out_of_memory(server):
    limits = health(server)["limits"]
    r = server.invoke("hog", {"do": "oom"}, timeout=120)
    body = expect_error(r, "Runtime.OutOfMemory")
    assert "memory" in body["errorMessage"].lower(), (body, limits)
    rid = r.headers["x-amzn-requestid"]
    rec = [x for x in server.records("hog") if x["request_id"] == rid][0]
    assert rec["outcome"] == "out_of_memory", rec
    neighbour_serves(server)
    assert server.invoke_ok("hog", {})[0]["ok"]


def test_ignoring_sigterm_does_not_outlive_the_timeout(server):
    iso = health(server)["isolation"]
    leader = server.invoke_ok("stubborn", {})[0]
    r = server.invoke("stubborn", {"do": "ignore_term"}, timeout=120)
    expect_error(r, "Sandbox.Timedout", "Task timed out after 1.00 seconds")
    lines = server.log_lines("stubborn", r.headers["x-amzn-requestid"])
    child = [int(l.rsplit(" ", 1)[1]) for l in lines if "ignoring SIGTERM; child" in l]
    assert len(child) == 1, lines
    # The instance and the child that also ignores SIGTERM are gone.
    wait_for(lambda: not pid_alive(leader["pid"]), timeout=30, what="stubborn instance killed")
    if "uid" in iso["active"]:
        wait_for(lambda: uid_processes(leader["uid"]) == [], timeout=30,
                 what="stubborn processes killed")
    neighbour_serves(server)
    assert server.invoke_ok("stubborn", {})[0]["pid"] != leader["pid"]


@pytest.fixture(scope="module")
def server():
    """This module's server, isolated as a default `nimbus up` is."""
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    # A long header timeout: the edge-connections test counts connections held
    # open, which an idle timeout would otherwise close under a slow run.
    s = Server(d, ["--header-timeout", "120s"], env={"NIMBUS_ISOLATION": "auto"}).start()
    code = {"app.py": ABUSER}
    s.deploy("neighbour", "python3.12", "app.handler", {"app.py": NEIGHBOUR}, timeout_s=60)
    # Room for 256 forked interpreters, so the pids cap (not memory) stops the bomb.
    s.deploy("bomb", "python3.12", "app.handler", code, timeout_s=2, memory_mb=2048)
    s.deploy("talker", "python3.12", "app.handler", code, timeout_s=3)
    s.deploy("talker-slow", "python3.12", "app.handler", code, timeout_s=600, memory_mb=256)
    # /tmp is a tmpfs: its pages count against the memory cap (docs/SECURITY.md).
    s.deploy("filler", "python3.12", "app.handler", code, timeout_s=300, memory_mb=1024)
    s.deploy("fds", "python3.12", "app.handler", code, timeout_s=60)
    s.deploy("hog", "python3.12", "app.handler", code, timeout_s=60, memory_mb=128)
    s.deploy("stubborn", "python3.12", "app.handler", code, timeout_s=1)
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)

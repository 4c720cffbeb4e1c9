"""Pre-started interpreter spares (`nimbus up --spares N`, crates/runtime/src/spare.rs).

A cold start served by a spare must be indistinguishable, from inside the function,
from one that spawned a fresh interpreter: the same environment (and nothing of the
spare's generic one), the same cwd, the same limits. A function whose environment
sets variables the interpreter reads at start-up must not get a spare. Spares are
not instances, are replaced after a claim and die with the server.

Which process served a cold start is told by its pid: a spare is a live process
before the invoke, ready (blocked reading its control channel, fd 3) and the
instance that answers has that pid.
"""

import json
import os
import signal
import tempfile

import pytest

from conftest import Server, pid_alive, wait_for

NODE_PROBE = r"""
const fs = require('fs');
exports.handler = async (event) => {
  if (event.grow_mb) {
    const keep = [];
    for (let i = 0; i < event.grow_mb; i++) keep.push(Buffer.alloc(1 << 20, 1));
    globalThis.keep = keep;
    return { grown: keep.length };
  }
  return {
    pid: process.pid,
    cwd: process.cwd(),
    env: process.env,
    proc_environ: fs.readFileSync('/proc/self/environ', 'latin1').split('\0').filter(Boolean),
    limits: fs.readFileSync('/proc/self/limits', 'latin1').split('\n').filter((l) => /file size|data size/.test(l)),
    date: new Date(Date.UTC(2024, 0, 1, 12)).toString(),
    heap_limit: require('v8').getHeapStatistics().heap_size_limit,
    global_paths: require('module').globalPaths,
  };
};
"""

PY_PROBE = r"""
import os, sys, time, site
keep = []
def handler(event, context):
    if event.get("grow_mb"):
        for _ in range(event["grow_mb"]):
            keep.append(bytearray(1 << 20))
        return {"grown": len(keep)}
    with open("/proc/self/environ", "rb") as f:
        proc_environ = [e.decode() for e in f.read().split(b"\0") if e]
    with open("/proc/self/limits") as f:
        limits = [l.rstrip() for l in f if "file size" in l or "data size" in l]
    return {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "proc_environ": proc_environ,
        "limits": limits,
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(1704110400)),
        "sys_path": sys.path,
        "pycache_prefix": sys.pycache_prefix,
        "user_site": site.USER_SITE,
        "hash_randomization": sys.flags.hash_randomization,
    }
"""

RUNTIMES = {
    "python": ("python3.12", "app.handler", {"app.py": PY_PROBE}),
    "node": ("nodejs20.x", "index.handler", {"index.js": NODE_PROBE}),
}

SPARE_MARKER = b"_NIMBUS_SPARE="


BOOTSTRAP = {"python": b"bootstrap.py", "node": b"bootstrap.js"}


def spare_pids(server, kind=None):
    """Live spares of `server` (of one runtime kind): processes whose start-up
    environment is a spare's with its home under this server's data dir. A claimed
    spare's is rewritten to the instance's, so it no longer counts."""
    home = ("HOME=" + os.path.realpath(server.data_dir) + "/spares/home").encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if kind and BOOTSTRAP[kind] not in cmdline:
            continue
        # An isolated spare's home is its private /tmp; it is then this server's
        # when the server is its parent.
        ours = home in env or (b"HOME=/tmp" in env and parent_pid(int(entry)) == server.proc.pid)
        if ours and any(e.startswith(SPARE_MARKER) for e in env) and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def parent_pid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def is_ready(pid):
    """Blocked in read(2) on fd 3: the bootstrap has loaded and waits for a claim."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return False
    # read is syscall 0 on x86_64, 63 on aarch64; the first argument is the fd.
    return len(fields) > 1 and fields[0] in ("0", "63") and int(fields[1], 16) == 3


def ready_spare(server, kind, exclude=()):
    def find():
        return [p for p in spare_pids(server, kind) if p not in exclude and is_ready(p)]

    return wait_for(find, timeout=30, what="a ready spare")[0]


def prime(server, kind, memory_mb=128):
    """One cold start of the runtime (and memory size), after which the server keeps
    a spare for it: the one started after that cold start."""
    runtime, handler, code = RUNTIMES[kind]
    name = f"prime-{kind}-{memory_mb}"
    before = set(spare_pids(server, kind))
    server.deploy(name, runtime, handler, code, memory_mb=memory_mb)
    server.invoke_ok(name, {})
    return ready_spare(server, kind, exclude=before)


@pytest.fixture(scope="module")
def servers():
    dirs = [tempfile.mkdtemp(prefix="nimbus-spares-") for _ in range(2)]
    with_spares = Server(dirs[0], ["--spares", "1"]).start()
    without = Server(dirs[1], ["--spares", "0"]).start()
    yield with_spares, without
    with_spares.stop()
    without.stop()


def keys_of(environ):
    return sorted(e.split("=", 1)[0] for e in environ)


@pytest.mark.parametrize("kind", ["python", "node"])
def test_a_spare_serves_a_cold_start_exactly_as_a_fresh_process(servers, kind):
    s, plain = servers
    runtime, handler, code = RUNTIMES[kind]
    spare = prime(s, kind)
    env = {"MY_SETTING": "hello world", "TZ": "Asia/Tokyo"}
    bodies = []
    for srv in (s, plain):
        srv.deploy(f"probe-{kind}", runtime, handler, code, environment=env)
        bodies.append(srv.invoke_ok(f"probe-{kind}", {})[0])
    got, want = bodies

    # Served by the spare: the instance is the process that was waiting.
    assert got["pid"] == spare, s.log_text()[-3000:]
    assert spare not in spare_pids(s)
    [inst] = s.instances(f"probe-{kind}")
    assert inst["pid"] == spare

    # (1) Exactly the function's environment, nothing of the spare's.
    assert sorted(got["env"]) == sorted(want["env"])
    assert got["env"]["MY_SETTING"] == "hello world"
    assert not any(k.startswith("_NIMBUS") for k in got["env"])
    assert "/spares/" not in json.dumps(got["env"])
    # ... also as the kernel shows the start-up environment (/proc/<pid>/environ).
    assert keys_of(got["proc_environ"]) == keys_of(want["proc_environ"])
    assert not any(e.startswith("_NIMBUS") for e in got["proc_environ"])
    assert f"AWS_LAMBDA_FUNCTION_NAME=probe-{kind}" in got["proc_environ"]
    # The tests find instance processes by that environment: the claimed spare counts.
    assert spare in s.processes(f"probe-{kind}")

    # (2) cwd = the code dir.
    assert got["cwd"] == got["env"]["LAMBDA_TASK_ROOT"]
    # The function's TZ is in effect, as in a fresh process.
    assert got["date"] == want["date"]
    assert "JST" in got["date"] or "Japan" in got["date"] or "+09" in got["date"], got["date"]
    # The instance's rlimits (file size = the default 512 MB ephemeral storage), not
    # the spare's (started with Lambda's largest, 10240 MB).
    assert got["limits"] == want["limits"]
    # Isolated instances have the function's size on their /tmp tmpfs and Lambda's
    # largest (10240 MB) as the rlimit, as the spare has (docs/SECURITY.md).
    assert any(str(512 * 1024 * 1024) in line or str(10240 * 1024 * 1024) in line
               for line in got["limits"]), got["limits"]
    if kind == "node":
        assert got["heap_limit"] == want["heap_limit"]
        home = got["env"]["HOME"]
        # NODE_PATH (the provided AWS SDKs) first, then HOME's, as at a fresh start.
        node_path = [p for p in got["env"].get("NODE_PATH", "").split(":") if p]
        assert got["global_paths"][: len(node_path)] == node_path
        rest = got["global_paths"][len(node_path) :]
        assert rest[:2] == [home + "/.node_modules", home + "/.node_libraries"]
    else:
        assert got["sys_path"][0] == got["env"]["LAMBDA_TASK_ROOT"]
        assert got["sys_path"][1:] == want["sys_path"][1:]
        # Isolated instances share no bytecode cache (docs/SECURITY.md).
        assert got["pycache_prefix"] == got["env"].get("PYTHONPYCACHEPREFIX")
        assert got["user_site"].startswith(got["env"]["HOME"] + "/")

    # (5) A replacement spare starts after the claim.
    replacement = ready_spare(s, kind, exclude={spare})
    assert replacement != spare

    # The server without spares never starts one.
    assert spare_pids(plain) == []


@pytest.mark.parametrize("kind", ["python", "node"])
def test_the_memory_limit_applies_to_a_claimed_spare(servers, kind):
    s, _ = servers
    runtime, handler, code = RUNTIMES[kind]
    # Python spares start under a generic 128 MB cap and take the function's at
    # the claim; Node spares are started per memory size (V8 sizes its heap from it).
    memory = 256
    spare = prime(s, kind, memory_mb=memory)
    name = f"oom-{kind}"
    s.deploy(name, runtime, handler, code, memory_mb=memory, timeout_s=30)
    body, _ = s.invoke_ok(name, {})
    assert body["pid"] == spare
    # More than the spare's own start-up cap would allow, within the function's.
    body, _ = s.invoke_ok(name, {"grow_mb": 160})
    assert body["grown"] == 160
    r = s.invoke(name, {"grow_mb": 400})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-function-error") == "Unhandled", r.text
    assert r.json()["errorType"] == "Runtime.OutOfMemory", r.text
    rid = r.headers["x-amzn-requestid"]
    rec = [x for x in s.records(name) if x["request_id"] == rid][0]
    assert rec["outcome"] == "out_of_memory", rec
    assert not pid_alive(spare)


@pytest.mark.parametrize(
    "kind,env",
    [
        ("python", {"PYTHONHASHSEED": "0"}),
        ("node", {"NODE_OPTIONS": "--max-old-space-size=64"}),
    ],
)
def test_start_up_variables_mean_a_normal_spawn(servers, kind, env):
    s, _ = servers
    runtime, handler, code = RUNTIMES[kind]
    spare = prime(s, kind)
    name = f"startvars-{kind}"
    s.deploy(name, runtime, handler, code, environment=env)
    body, _ = s.invoke_ok(name, {})
    assert body["pid"] != spare
    # The variable took effect, as only a fresh interpreter can apply it.
    if kind == "python":
        assert body["hash_randomization"] == 0
    else:
        assert body["heap_limit"] < 128 * 1024 * 1024, body["heap_limit"]
    # The spare was left alone, ready for the next function that can use it.
    assert spare in spare_pids(s, kind) and is_ready(spare)


def test_spares_are_not_instances_and_die_with_the_server():
    d = tempfile.mkdtemp(prefix="nimbus-spares-")
    s = Server(d, ["--spares", "1"]).start()
    try:
        spares = [prime(s, "python"), prime(s, "node")]
        # Not in any function's instances, nor among the instance processes.
        listed = {i["pid"] for n in ("prime-python-128", "prime-node-128") for i in s.instances(n)}
        assert not listed & set(spares)
        assert not set(s.processes()) & set(spares)
        metrics = s.session.get(s.api + "/metrics", timeout=10).text
        idle = [l for l in metrics.splitlines() if l.startswith("nimbus_function_instances") and 'state="idle"' in l]
        assert sum(float(l.rsplit(" ", 1)[1]) for l in idle) == 2, idle
    finally:
        s.stop()
    wait_for(lambda: not any(pid_alive(p) for p in spares), timeout=10, what="spares stopped with the server")

    # kill -9: the parent-death signal takes them down.
    s = Server(d, ["--spares", "1"]).start()
    try:
        spare = prime(s, "python")
        s.kill()
        wait_for(lambda: not pid_alive(spare), timeout=10, what="spare gone after kill -9")
    finally:
        s.stop()


def test_nimbus_spares_env_disables_them():
    d = tempfile.mkdtemp(prefix="nimbus-spares-")
    s = Server(d, env={"NIMBUS_SPARES": "0"}).start()
    try:
        runtime, handler, code = RUNTIMES["python"]
        s.deploy("nospare", runtime, handler, code)
        s.invoke_ok("nospare", {})
        s.deploy("nospare2", runtime, handler, code)
        s.invoke_ok("nospare2", {})
        assert spare_pids(s) == []
    finally:
        s.stop()

"""Server lifecycle: `kill -9` leaves no instance behind and loses no deployed
function; SIGTERM drains in-flight invocations and exits cleanly."""

import os
import signal
import threading
import time

import requests

from conftest import pid_alive, session_processes, wait_for

PY = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"fn": os.environ["AWS_LAMBDA_FUNCTION_NAME"], "pid": os.getpid(), "slept": event.get("sleep", 0)}
"""

NODE = """
exports.handler = async (event) => ({ fn: process.env.AWS_LAMBDA_FUNCTION_NAME, pid: process.pid });
"""


def test_kill_9_leaves_no_instances_and_loses_no_functions(server_factory, data_dir):
    s = server_factory()
    s.deploy("keep-py", "python3.12", "app.handler", {"app.py": PY},
             environment={"STAYS": "yes"}, memory_mb=256)
    s.deploy("keep-node", "nodejs20.x", "index.handler", {"index.js": NODE},
             provisioned_concurrency=1)
    # An update, so the stored revision is 2.
    s.deploy("keep-py", "python3.12", "app.handler", {"app.py": PY},
             environment={"STAYS": "yes"}, memory_mb=256, timeout_s=60)

    def long_call():
        try:
            s.invoke("keep-py", {"sleep": 30}, timeout=60, session=requests.Session())
        except requests.RequestException:
            pass  # the server is killed under it

    # A busy python instance, a warm one, and a provisioned node instance.
    busy = threading.Thread(target=long_call, daemon=True)
    busy.start()
    wait_for(lambda: len(s.instances("keep-py")) >= 1 and
             any(i["state"] == "busy" for i in s.instances("keep-py")), timeout=15, what="busy instance")
    s.invoke_ok("keep-py", {})
    wait_for(lambda: len(s.instances("keep-node")) == 1, timeout=15, what="provisioned node instance")
    pids = [i["pid"] for f in ("keep-py", "keep-node") for i in s.instances(f)]
    assert len(pids) >= 3, pids
    before = set(s.processes())
    assert set(pids) <= before

    s.kill()

    # Instances die with the server (parent-death signal), within a few seconds.
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="instances to die with the server")
    wait_for(lambda: not any(session_processes(p) for p in pids), timeout=5)
    assert s.processes() == []

    s2 = server_factory()
    listed = s2.session.get(s2.api + "/_nimbus/functions", timeout=10).json()["functions"]
    by_name = {f["function"]["name"]: f["function"] for f in listed}
    assert set(by_name) == {"keep-py", "keep-node"}
    assert by_name["keep-py"]["environment"] == {"STAYS": "yes"}
    assert by_name["keep-py"]["memory_mb"] == 256 and by_name["keep-py"]["timeout_s"] == 60
    assert by_name["keep-py"]["revision"] == 2
    assert by_name["keep-node"]["provisioned_concurrency"] == 1
    # Invokable at once, by fresh processes.
    body, _ = s2.invoke_ok("keep-py", {})
    assert body["fn"] == "keep-py" and body["pid"] not in pids
    body, _ = s2.invoke_ok("keep-node", {})
    assert body["fn"] == "keep-node" and body["pid"] not in pids
    # The old instances' scratch dirs were swept.
    left = os.listdir(data_dir / "instances")
    current = {i["id"] for f in ("keep-py", "keep-node") for i in s2.instances(f)}
    assert set(left) <= current, (left, current)


DAEMON = """
import os, time
def handler(event, context):
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, str(os.getpid()).encode())
            time.sleep(1000)
        os._exit(0)
    os.close(w)
    return {"pid": os.getpid(), "daemon": int(os.read(r, 32))}
"""


def test_kill_9_orphans_are_swept_on_restart(server_factory):
    """A process an instance daemonized escapes the parent-death signal; the restarted
    server finds it in the instance's cgroup and kills it."""
    s = server_factory()
    s.deploy("orphan", "python3.12", "app.handler", {"app.py": DAEMON})
    body, _ = s.invoke_ok("orphan", {})
    s.kill()
    wait_for(lambda: not pid_alive(body["pid"]), timeout=5, what="instance to die with the server")
    s2 = server_factory()
    wait_for(lambda: not pid_alive(body["daemon"]), timeout=10, what="orphan swept on restart")
    s2.invoke_ok("orphan", {})


def test_sigterm_drains_in_flight_invocation(server_factory):
    s = server_factory()
    s.deploy("drain", "python3.12", "app.handler", {"app.py": PY}, timeout_s=30)
    s.deploy("drain-idle", "python3.12", "app.handler", {"app.py": PY})
    idle_pid = s.invoke_ok("drain-idle", {})[0]["pid"]
    result = {}

    def call():
        result["r"] = s.invoke("drain", {"sleep": 2}, timeout=60, session=requests.Session())

    t = threading.Thread(target=call)
    t.start()
    busy = wait_for(lambda: [i for i in s.instances("drain") if i["state"] == "busy"],
                    timeout=15, what="invocation in flight")
    busy_pid = busy[0]["pid"]
    s.proc.send_signal(signal.SIGTERM)
    t.join(60)
    r = result["r"]
    assert r.status_code == 200, r.text
    assert "x-amz-function-error" not in r.headers, r.text
    assert r.json() == {"fn": "drain", "pid": busy_pid, "slept": 2}
    assert s.proc.wait(30) == 0, s.log_text()
    # No instance outlives the server.
    for pid in (busy_pid, idle_pid):
        assert not pid_alive(pid)
        assert session_processes(pid) == []
    assert s.processes() == []
    assert "Traceback" not in s.log_text() and "panicked" not in s.log_text()


def test_sigterm_refuses_new_work_while_draining(server_factory):
    s = server_factory()
    s.deploy("drain2", "python3.12", "app.handler", {"app.py": PY}, timeout_s=30)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", s.invoke("drain2", {"sleep": 2}, timeout=60, session=requests.Session())))
    t.start()
    wait_for(lambda: any(i["state"] == "busy" for i in s.instances("drain2")), timeout=15)
    s.proc.send_signal(signal.SIGTERM)
    # New connections are no longer accepted once draining starts.
    def refused():
        try:
            requests.post(f"{s.api}/2015-03-31/functions/drain2/invocations", data="{}", timeout=5)
            return False
        except requests.ConnectionError:
            return True
    wait_for(refused, timeout=5, what="listener closed")
    t.join(60)
    assert result["r"].status_code == 200
    # It exited by itself, cleanly, once the in-flight call was answered.
    assert s.proc.wait(30) == 0

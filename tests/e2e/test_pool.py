"""The instance pool: cold then warm, scale-out, reserved and account concurrency
(429s), keep-alive reaping, provisioned concurrency and redeploys."""

import os
import signal
import time

import requests

from conftest import concurrently, pid_alive, wait_for

PY_PID = """
import os, time
def handler(event, context):
    start = time.time()
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "version": VERSION, "start": start, "end": time.time()}

VERSION = "v1"
"""


def test_cold_then_warm_same_process(server):
    server.deploy("warm", "python3.12", "app.handler", {"app.py": PY_PID})
    first, r1 = server.invoke_ok("warm", {})
    second, r2 = server.invoke_ok("warm", {})
    assert first["pid"] == second["pid"], "second invoke must reuse the warm process"

    report1 = server.log_lines("warm", r1.headers["x-amzn-requestid"])[-1]
    report2 = server.log_lines("warm", r2.headers["x-amzn-requestid"])[-1]
    assert report1.startswith("REPORT RequestId: ") and "\tInit Duration: " in report1, report1
    assert report2.startswith("REPORT RequestId: ") and "Init Duration" not in report2, report2

    recs = {rec["request_id"]: rec for rec in server.records("warm")}
    cold = recs[r1.headers["x-amzn-requestid"]]
    warm = recs[r2.headers["x-amzn-requestid"]]
    assert cold["cold"] is True and cold["init_ms"] is not None and cold["init_ms"] > 0
    assert warm["cold"] is False and warm["init_ms"] is None
    assert cold["outcome"] == warm["outcome"] == "success"
    assert [i["pid"] for i in server.instances("warm")] == [first["pid"]]


def test_scale_out_runs_concurrently(server):
    server.deploy("fanout", "python3.12", "app.handler", {"app.py": PY_PID}, timeout_s=30)

    def call(_):
        s = requests.Session()
        return server.invoke_ok("fanout", {"sleep": 1}, session=s)[0]

    # First round: eight cold starts, one process each.
    pids = [b["pid"] for b in concurrently(8, call)]
    assert len(set(pids)) == 8, pids
    # Second round (warm): the eight 1 s requests run at the same time, on eight
    # instances: by the functions' own clocks every one started before any ended.
    bodies = concurrently(8, call)
    assert len({b["pid"] for b in bodies}) == 8, bodies
    last_start = max(b["start"] for b in bodies)
    first_end = min(b["end"] for b in bodies)
    assert last_start < first_end, f"the calls did not overlap: {bodies}"
    assert len(server.instances("fanout")) == 8


def _throttle_checks(r, reason):
    assert r.status_code == 429, r.text
    assert r.headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert r.json()["Reason"] == reason, r.text
    assert "retry-after" in r.headers
    assert int(r.headers["retry-after"]) >= 1


def test_reserved_concurrency_throttles_at_once(server):
    server.deploy("reserved2", "python3.12", "app.handler", {"app.py": PY_PID},
                  reserved_concurrency=2, timeout_s=30)

    def call(_):
        r = server.invoke("reserved2", {"sleep": 3}, session=requests.Session())
        return r, time.time()

    results = concurrently(8, call)
    ok = [r for r, _ in results if r.status_code == 200]
    throttled = [(r, t) for r, t in results if r.status_code != 200]
    assert len(ok) == 2, [r.status_code for r, _ in results]
    assert len(throttled) == 6
    ends = [r.json()["end"] for r in ok]
    for r, answered in throttled:
        _throttle_checks(r, "ReservedFunctionConcurrentInvocationLimitExceeded")
        # Rejected at once, not queued behind the 3 s invocations: the 429 was in
        # the client's hands before either admitted call finished (same host clock).
        assert answered < min(ends), (answered, ends)
    assert all("x-amz-function-error" not in r.headers for r in ok)
    # Throttles do not leak permits: once they finish, the function runs again.
    server.invoke_ok("reserved2", {})


def test_reserved_zero_throttles_everything(server):
    server.deploy("reserved0", "python3.12", "app.handler", {"app.py": PY_PID},
                  reserved_concurrency=0)
    for _ in range(3):
        _throttle_checks(server.invoke("reserved0", {}),
                         "ReservedFunctionConcurrentInvocationLimitExceeded")
    assert server.instances("reserved0") == []
    # Lifting the reservation makes it invokable again.
    server.deploy("reserved0", "python3.12", "app.handler", {"app.py": PY_PID})
    server.invoke_ok("reserved0", {})


def test_account_concurrency_cap(server_factory):
    s = server_factory("--max-concurrency", "2")
    s.deploy("capped", "python3.12", "app.handler", {"app.py": PY_PID}, timeout_s=30)
    s.deploy("capped-other", "python3.12", "app.handler", {"app.py": PY_PID}, timeout_s=30)

    def call(i):
        return s.invoke("capped" if i % 2 else "capped-other", {"sleep": 3},
                        session=requests.Session())

    results = concurrently(4, call)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 429, 429], codes
    for r in results:
        if r.status_code == 429:
            _throttle_checks(r, "ConcurrentInvocationLimitExceeded")
    s.invoke_ok("capped", {})


def test_keep_alive_reaps_idle_instances(server_factory):
    s = server_factory("--keep-alive", "2s")
    s.deploy("reaped", "python3.12", "app.handler", {"app.py": PY_PID})
    pids = [r[0]["pid"] for r in concurrently(2, lambda i: s.invoke_ok(
        "reaped", {"sleep": 0.5}, session=requests.Session()))]
    last_call = time.monotonic()
    assert len(set(pids)) == 2
    assert sorted(i["pid"] for i in s.instances("reaped")) == sorted(pids)
    # Zero instances, and the processes really gone, 3 s after the last call.
    wait_for(lambda: s.instances("reaped") == [], timeout=3.0 + 2.0, what="instances reaped")
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=3.0, what="pids dead")
    reaped_after = time.monotonic() - last_call
    assert reaped_after >= 1.5, f"reaped {reaped_after:.1f} s after the last call (keep-alive 2 s)"
    assert s.processes("reaped") == []
    # The next call is a cold start again.
    body, r = s.invoke_ok("reaped", {})
    assert body["pid"] not in pids
    assert "Init Duration" in s.log_lines("reaped", r.headers["x-amzn-requestid"])[-1]


PY_INIT_TYPE = """
import os
def handler(event, context):
    return {"pid": os.getpid(), "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""


def test_provisioned_concurrency_is_always_there(server_factory):
    s = server_factory("--keep-alive", "2s")
    s.deploy("prov", "python3.12", "app.handler", {"app.py": PY_INIT_TYPE},
             provisioned_concurrency=2)

    def provisioned():
        inst = s.instances("prov")
        live = [i for i in inst if pid_alive(i["pid"])]
        return len(inst) == 2 and len(live) == 2 and all(i["provisioned"] for i in inst) and inst

    # Right after deploy, without any invoke.
    before = {i["pid"] for i in wait_for(provisioned, timeout=15, what="2 provisioned instances")}
    body, r = s.invoke_ok("prov", {})
    assert body["pid"] in before
    assert body["init"] == "provisioned-concurrency"
    assert "Init Duration" not in s.log_lines("prov", r.headers["x-amzn-requestid"])[-1]

    # After the keep-alive has long expired, still the same two.
    time.sleep(3.5)
    assert {i["pid"] for i in provisioned() or []} == before

    # One killed from outside is replaced.
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim), timeout=5)
    after = wait_for(lambda: (p := provisioned()) and victim not in {i["pid"] for i in p} and p,
                     timeout=15, what="killed provisioned instance replaced")
    pids_after = {i["pid"] for i in after}
    assert len(pids_after) == 2 and (before - {victim}) < pids_after
    s.invoke_ok("prov", {})


def test_redeploy_serves_new_code_and_retires_old_process(server):
    server.deploy("redeploy", "python3.12", "app.handler", {"app.py": PY_PID})
    old, _ = server.invoke_ok("redeploy", {})
    assert old["version"] == "v1"
    r = server.deploy("redeploy", "python3.12", "app.handler",
                      {"app.py": PY_PID.replace('"v1"', '"v2"')})
    assert r.status_code == 200
    new, _ = server.invoke_ok("redeploy", {})
    assert new["version"] == "v2"
    assert new["pid"] != old["pid"]
    wait_for(lambda: not pid_alive(old["pid"]), timeout=10, what="old instance stopped")
    assert [i["pid"] for i in server.instances("redeploy")] == [new["pid"]]
    assert server.function("redeploy")["function"]["revision"] == 2


def test_redeploy_while_busy_retires_old_instance_after_request(server):
    server.deploy("redeploy-busy", "python3.12", "app.handler", {"app.py": PY_PID}, timeout_s=30)
    results = {}

    import threading

    t = threading.Thread(target=lambda: results.setdefault(
        "old", server.invoke("redeploy-busy", {"sleep": 2}, session=requests.Session())))
    t.start()
    busy = wait_for(lambda: [i for i in server.instances("redeploy-busy") if i["state"] == "busy"],
                    timeout=15, what="busy instance")
    old_pid = busy[0]["pid"]
    server.deploy("redeploy-busy", "python3.12", "app.handler",
                  {"app.py": PY_PID.replace('"v1"', '"v2"')}, timeout_s=30)
    new, _ = server.invoke_ok("redeploy-busy", {})
    assert new["version"] == "v2" and new["pid"] != old_pid
    t.join(30)
    old = results["old"]
    assert old.status_code == 200, old.text
    assert (old.json()["pid"], old.json()["version"]) == (old_pid, "v1"), old.text
    wait_for(lambda: not pid_alive(old_pid), timeout=10, what="old busy instance stopped")
    assert old_pid not in [i["pid"] for i in server.instances("redeploy-busy")]


def _burst(s, name, clients=8, per_client=40):
    """`clients` threads, each sending `per_client` no-op invokes back to back."""
    def call(_):
        sess = requests.Session()
        return {s.invoke_ok(name, {}, session=sess)[0]["pid"] for _ in range(per_client)}
    return set().union(*concurrently(clients, call))


def test_adaptive_scale_up_shares_busy_instances_between_short_requests(server_factory):
    # Default policy: past one instance per CPU, a short request waits for a busy
    # instance rather than starting a process that would cost more than the wait.
    limit = (os.cpu_count() or 1) + 2
    if limit >= 8:
        import pytest
        pytest.skip("with 6 or more CPUs eight concurrent clients are within one per CPU")
    s = server_factory()
    s.deploy("short", "python3.12", "app.handler", {"app.py": PY_PID})
    s.invoke_ok("short", {})  # one warm instance: service and start times known
    pids = _burst(s, "short")
    n = len(s.instances("short"))
    assert n <= limit, f"{n} instances for 8 clients of a no-op on {os.cpu_count()} CPUs"
    assert len(pids) == n
    outcomes = [r["outcome"] for r in s.records("short")]
    assert len(outcomes) == 1 + 8 * 40 and set(outcomes) == {"success"}
    # A waiting request got a warm instance: only the starts are cold.
    assert sum(r["cold"] for r in s.records("short")) == n


def test_eager_scale_up_starts_an_instance_per_concurrent_request(server_factory):
    s = server_factory("--scale-up", "eager")
    s.deploy("eager", "python3.12", "app.handler", {"app.py": PY_PID})
    s.invoke_ok("eager", {})
    _burst(s, "eager")
    n = len(s.instances("eager"))
    assert n >= 7, f"eager policy: {n} instances for 8 concurrent clients"

"""Metering and cost: `nimbus cost` prices a known set of invocations as AWS Lambda
would (requests + GB-s, x86_64 and arm64) to the cent and beyond, flags
over-provisioned memory with a smaller size and its saving, and keeps counting usage
whose records retention (`nimbus up --retention`) has deleted; retention deletes
records and log lines older than the setting and keeps the rest."""

import json
import time

from conftest import wait_for

PER_MILLION = 0.20
X86 = 0.0000166667
ARM = 0.0000133334

HANDLER = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""


def cost(server, *args):
    r = server.cli("cost", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def expected(records, memory_mb):
    requests = len(records)
    gbs = sum(r["billed_ms"] for r in records) / 1000 * memory_mb / 1024
    return requests, gbs, requests * PER_MILLION / 1e6 + gbs * X86, requests * PER_MILLION / 1e6 + gbs * ARM


def test_cost_matches_hand_computation_and_flags_memory(server_factory):
    s = server_factory()
    s.deploy("c-big", "python3.12", "app.handler", {"app.py": HANDLER}, memory_mb=2048)
    s.deploy("c-small", "python3.12", "app.handler", {"app.py": HANDLER}, memory_mb=128)
    for i in range(5):
        s.invoke_ok("c-big", {"sleep": 0.05 * i})
    for _ in range(3):
        s.invoke_ok("c-small", {})

    report = cost(s)
    by_fn = {f["function"]: f for f in report["functions"]}
    assert set(by_fn) == {"c-big", "c-small"}
    totals = [0, 0.0, 0.0, 0.0]
    for name, mem in [("c-big", 2048), ("c-small", 128)]:
        recs = s.records(name)
        n, gbs, x86, arm = expected(recs, mem)
        f = by_fn[name]
        assert f["requests"] == n
        assert f["billed_ms"] == sum(r["billed_ms"] for r in recs)
        assert abs(f["gb_seconds"] - gbs) < 1e-9
        assert abs(f["x86"]["total"] - x86) < 1e-12
        assert abs(f["arm64"]["total"] - arm) < 1e-12
        assert f["memory_mb"] == mem
        assert f["max_memory_used_mb"] == max(r["max_memory_used_mb"] for r in recs)
        totals = [totals[0] + n, totals[1] + gbs, totals[2] + x86, totals[3] + arm]
    t = report["totals"]
    assert t["requests"] == totals[0] == 8
    assert abs(t["gb_seconds"] - totals[1]) < 1e-9
    assert abs(t["x86"]["total"] - totals[2]) < 1e-12
    assert abs(t["arm64"]["total"] - totals[3]) < 1e-12
    assert report["prices"]["per_million_requests"] == PER_MILLION
    assert report["prices"]["x86_per_gb_second"] == X86
    assert report["prices"]["arm64_per_gb_second"] == ARM
    assert report["prices"]["as_of"]

    # A python function peaks far under 2048 MB: flagged, with the smallest size
    # (a multiple of 64 MB, at least 128) holding 1.5 × the peak.
    big = by_fn["c-big"]
    peak = big["max_memory_used_mb"]
    assert 0 < peak < 1024, big
    suggested = max(128, -(-int(-(-peak * 3 // 2)) // 64) * 64)
    assert big["over_provisioned"]["memory_mb"] == suggested
    saved_gbs = big["gb_seconds"] * (1 - suggested / 2048)
    assert abs(big["over_provisioned"]["saving_x86"] - saved_gbs * X86) < 1e-12
    assert abs(big["over_provisioned"]["saving_arm64"] - saved_gbs * ARM) < 1e-12
    # 128 MB is the floor: nothing smaller to suggest.
    assert by_fn["c-small"]["over_provisioned"] is None

    # The table: one row per function, the totals in dollars, the flag.
    r = s.cli("cost", "--since", "1h")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "us-east-1" in out and report["prices"]["as_of"] in out
    total_line = next(l for l in out.splitlines() if l.startswith("TOTAL"))
    assert total_line.split()[1:4] == ["8", f"{totals[1]:.6f}", f"${totals[2]:.6f}"], total_line
    assert f"${totals[3]:.6f}" in total_line
    assert f"c-big: peak {peak} MB of 2048 MB; {suggested} MB would fit" in out
    assert "c-small: peak" not in out

    # Usage survives a restart (it is in the store, not in memory).
    s.stop()
    s2 = server_factory(data=s.data_dir)
    again = cost(s2)
    assert again["totals"]["requests"] == 8
    assert abs(again["totals"]["x86"]["total"] - totals[2]) < 1e-12


def test_retention_prunes_old_records_and_logs_and_keeps_the_rest(server_factory):
    s = server_factory("--retention", "4s")
    s.deploy("r-fn", "python3.12", "app.handler", {"app.py": HANDLER}, memory_mb=256)
    t0 = time.time()
    _, old1 = s.invoke_ok("r-fn", {})
    _, old2 = s.invoke_ok("r-fn", {})
    old_ids = {old1.headers["x-amzn-requestid"], old2.headers["x-amzn-requestid"]}
    time.sleep(max(0.0, t0 + 2.0 - time.time()))
    _, new = s.invoke_ok("r-fn", {})
    new_id = new.headers["x-amzn-requestid"]
    ids = lambda: {r["request_id"] for r in s.records("r-fn")}
    assert ids() == old_ids | {new_id}
    logged = lambda: {l["request_id"] for l in s.logs("r-fn") if l["request_id"]}
    assert old_ids <= logged()

    wait_for(lambda: not (ids() & old_ids), timeout=10, interval=0.2, what="old records pruned")
    # The newer invocation is younger than the retention and stays.
    assert ids() == {new_id}
    assert logged() == {new_id}
    assert any("REPORT RequestId: " + new_id in l["line"] for l in s.logs("r-fn"))
    # Metering still counts all three.
    report = cost(s)
    assert report["functions"][0]["requests"] == 3
    wait_for(lambda: not ids(), timeout=10, interval=0.2, what="the rest pruned in turn")

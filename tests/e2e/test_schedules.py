"""Schedules against the real binary: the control API contract, the CLI, a firing
that reaches the function as EventBridge's scheduled event (or the schedule's
input), retries of a failed run, and kill -9 in the middle of a schedule.

The semantics (next-fire times, catch-up once, the crash windows of a firing) are
proven by the crate's fake-clock tests; here the server runs its schedule clock
60x faster (`--schedule-clock-speed 60`, a hidden testing flag) so that
`rate(1 minute)` fires every second and the wiring is proven in seconds."""

import json
import random
import time

import pytest

from conftest import wait_for

FAST = ("--schedule-clock-speed", "60", "--async-retry-base", "200ms")

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"rid": context.aws_request_id, "event": event}) + "\\n")
    return {"ok": True}
"""

# Fails the first attempt of every event (by event id), succeeds on the retry.
FAIL_FIRST = """
import json, os
def handler(event, context):
    path = os.environ["OUT"]
    seen = []
    if os.path.exists(path):
        seen = [json.loads(l)["event"]["id"] for l in open(path) if l.strip()]
    with open(path, "a") as f:
        f.write(json.dumps({"rid": context.aws_request_id, "event": event}) + "\\n")
    if event["id"] not in seen:
        raise RuntimeError("first attempt fails")
    return {"ok": True}
"""


def records(path):
    try:
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def put(s, name, expect=(200, 201), **body):
    r = s.session.put(f"{s.api}/_nimbus/schedules/{name}", json=body, timeout=10)
    if expect is not None:
        assert r.status_code in expect, r.text
    return r


def schedules(s):
    r = s.session.get(f"{s.api}/_nimbus/schedules", timeout=10)
    assert r.status_code == 200, r.text
    return {x["name"]: x for x in r.json()["schedules"]}


def test_control_api_contract(server):
    server.deploy("sched-target", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"})
    r = put(server, "nightly", expect=None, expression="cron(0 2 * * ? *)", function="sched-target")
    assert r.status_code == 201, r.text
    s = r.json()
    assert set(s) == {"name", "expression", "timezone", "function", "qualifier", "input",
                      "enabled", "app", "last_fired_ms", "next_fire_ms"}
    assert s["name"] == "nightly" and s["expression"] == "cron(0 2 * * ? *)"
    assert (s["timezone"], s["function"], s["qualifier"], s["input"]) == ("UTC", "sched-target", None, None)
    assert (s["enabled"], s["app"], s["last_fired_ms"]) == (True, "", None)
    # The next 02:00 UTC, within a day.
    nxt = s["next_fire_ms"]
    assert 0 < nxt - time.time() * 1000 <= 86_400_000 and nxt % 86_400_000 == 2 * 3_600_000

    r = put(server, "nightly", expect=None, expression="cron(0 2 * * ? *)", function="sched-target",
            input={"source": "warmup"}, timezone="Europe/Paris", enabled=False, app="orders-dev")
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["input"] == {"source": "warmup"} and s["timezone"] == "Europe/Paris"
    assert (s["enabled"], s["app"], s["next_fire_ms"]) == (False, "orders-dev", None)
    assert schedules(server)["nightly"] == s

    r = put(server, "bad", expect=None, expression="cron(0 25 * * ? *)", function="sched-target")
    assert r.status_code == 400
    assert "field 2 (hours) '25'" in r.json()["message"], r.text
    r = put(server, "bad", expect=None, expression="cron(0 12 ? * 9 *)", function="sched-target")
    assert r.status_code == 400 and "day-of-week" in r.json()["message"], r.text
    r = put(server, "bad", expect=None, expression="rate(1 minutes)", function="sched-target")
    assert r.status_code == 400 and "singular" in r.json()["message"], r.text
    r = put(server, "bad", expect=None, expression="rate(5 minutes)", function="sched-target", timezone="Mars/Base")
    assert r.status_code == 400 and "Mars/Base" in r.json()["message"], r.text
    r = put(server, "bad", expect=None, expression="rate(5 minutes)", function="no-such-function")
    assert r.status_code == 404, r.text
    r = put(server, "bad", expect=None, expression="rate(5 minutes)", function="sched-target", qualifier="nope")
    assert r.status_code == 404, r.text
    assert "bad" not in schedules(server)

    r = server.session.delete(f"{server.api}/_nimbus/schedules/nightly", timeout=10)
    assert r.status_code == 204
    r = server.session.delete(f"{server.api}/_nimbus/schedules/nightly", timeout=10)
    assert r.status_code == 404
    assert "nightly" not in schedules(server)


def test_cli_add_ls_rm(server):
    server.deploy("cli-target", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"})
    r = server.cli("schedule", "add", "warm", "rate(5 minutes)", "cli-target",
                   "--input", '{"source": "warmup"}', "--tz", "Europe/Paris")
    assert r.returncode == 0, r.stderr
    assert "Added warm rate(5 minutes) [Europe/Paris] -> cli-target" in r.stdout, r.stdout
    assert "(in 4m)" in r.stdout or "(in 5m)" in r.stdout, r.stdout
    r = server.cli("schedule", "ls")
    assert r.returncode == 0, r.stderr
    assert "NEXT FIRE" in r.stdout
    line = next(l for l in r.stdout.splitlines() if l.startswith("warm "))
    assert "rate(5 minutes)" in line and "cli-target" in line and "(in " in line, line
    # `nimbus schedules` (and `nimbus schedule` alone) list too.
    for args in (["schedules"], ["schedule"]):
        r = server.cli(*args)
        assert r.returncode == 0 and any(l.startswith("warm ") for l in r.stdout.splitlines()), r.stdout
    r = server.cli("schedule", "add", "broken", "cron(0 12 * * * *)", "cli-target")
    assert r.returncode != 0
    assert "day-of-month (field 3) and day-of-week (field 5)" in r.stderr, r.stderr
    r = server.cli("schedule", "rm", "warm")
    assert r.returncode == 0 and "Removed warm" in r.stdout, r.stderr
    r = server.cli("schedule", "rm", "warm")
    assert r.returncode != 0 and "Schedule not found: warm" in r.stderr, r.stderr


def test_a_schedule_fires_the_scheduled_event(server_factory, tmp_path):
    s = server_factory(*FAST)
    out = tmp_path / "out"
    s.deploy("tick", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(out)})
    put(s, "every-minute", expression="rate(1 minute)", function="tick")
    wait_for(lambda: records(out), timeout=15, what="a scheduled run")
    rec = records(out)[0]
    ev = rec["event"]
    assert ev["version"] == "0"
    assert ev["detail-type"] == "Scheduled Event"
    assert ev["source"] == "aws.events"
    assert ev["account"] == "123456789012"
    assert ev["region"] == "us-east-1"
    assert ev["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/every-minute"]
    assert ev["detail"] == {}
    assert len(ev["id"]) == 36
    assert time.strptime(ev["time"], "%Y-%m-%dT%H:%M:%SZ")
    inv = [x for x in s.records("tick") if x["request_id"] == rec["rid"]]
    assert inv and inv[0]["trigger"] == "schedule", inv
    sched = schedules(s)["every-minute"]
    assert sched["last_fired_ms"] is not None and sched["next_fire_ms"] > sched["last_fired_ms"]
    # It keeps firing, once per (fast) minute, with distinct times.
    wait_for(lambda: len(records(out)) >= 3, timeout=15, what="three runs")
    times = [r["event"]["time"] for r in records(out)]
    assert len(set(times)) == len(times), times
    # Removed: no more runs.
    assert s.session.delete(f"{s.api}/_nimbus/schedules/every-minute").status_code == 204
    time.sleep(0.5)
    n = len(records(out))
    time.sleep(2.5)
    assert len(records(out)) == n


def test_input_payload_and_cron_in_a_zone(server_factory, tmp_path):
    s = server_factory(*FAST)
    out = tmp_path / "out"
    s.deploy("warm", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(out)})
    put(s, "warmup", expression="cron(* * * * ? *)", function="warm",
        input={"source": "warmup"}, timezone="Europe/Paris")
    wait_for(lambda: records(out), timeout=15, what="a scheduled run")
    assert records(out)[0]["event"] == {"source": "warmup"}
    put(s, "warmup", expression="cron(* * * * ? *)", function="warm", enabled=False)


def test_a_failed_run_is_retried_by_the_async_queue(server_factory, tmp_path):
    s = server_factory(*FAST)
    out = tmp_path / "out"
    s.deploy("flaky", "python3.12", "app.handler", {"app.py": FAIL_FIRST}, environment={"OUT": str(out)})
    put(s, "flaky-minute", expression="rate(1 minute)", function="flaky")
    def retried():
        ids = [r["event"]["id"] for r in records(out)]
        return any(ids.count(i) >= 2 for i in ids)

    wait_for(retried, timeout=20, what="a retried run")
    put(s, "flaky-minute", expression="rate(1 minute)", function="flaky", enabled=False)
    time.sleep(1.5)  # let retries in flight finish
    by_id = {}
    for r in records(out):
        by_id.setdefault(r["event"]["id"], []).append(r["rid"])
    complete = [rids for rids in by_id.values() if len(rids) >= 2]
    assert complete, by_id
    for rids in complete:
        # The retry is the same async event: same request id, as on Lambda.
        assert len(set(rids)) == 1, rids
    outcomes = [x["outcome"] for x in s.records("flaky")]
    assert "function_error" in outcomes and "success" in outcomes, outcomes


@pytest.mark.parametrize("kills", [3])
def test_kill_9_mid_schedule_never_fires_a_slot_twice(server_factory, data_dir, tmp_path, kills):
    out = tmp_path / "out"
    s = server_factory(*FAST)
    s.deploy("beat", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(out)})
    put(s, "heartbeat", expression="rate(1 minute)", function="beat")
    wait_for(lambda: len(records(out)) >= 2, timeout=15, what="first runs")
    rng = random.Random(7)
    for _ in range(kills):
        # Somewhere inside a (fast) minute: before, during or after a firing.
        time.sleep(rng.uniform(0.0, 1.0))
        s.kill()
        seen = len(records(out))
        s = server_factory(*FAST, data=data_dir)
        # Catch-up once: the slots missed while down are owed, and paid promptly.
        wait_for(lambda: len(records(out)) > seen, timeout=10, what="a run after the restart")
    wait_for(lambda: len(records(out)) >= 2 * kills + 2, timeout=15)
    put(s, "heartbeat", expression="rate(1 minute)", function="beat", enabled=False)
    time.sleep(1.0)

    # A run the queue had in flight at the kill runs again after the restart with the
    # same event (at-least-once delivery). A double *firing* would be a second event
    # (new id) for the same slot time.
    events = {}
    for r in records(out):
        events.setdefault(r["event"]["id"], r["event"])
    times = sorted(e["time"] for e in events.values())
    assert len(times) == len(set(times)), f"a slot fired twice: {times}"
    assert len(times) >= 2 * kills + 2, times

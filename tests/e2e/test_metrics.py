"""Prometheus metrics at GET /metrics on the API port: after a scripted workload
(successes, function errors, a timeout, out of memory, throttles, cold starts,
async retries and dead letters, gateway requests) the exposition, parsed by the
Prometheus client library's own text parsers, shows the exact counts; the state
gauges follow the pool and the queue; `/metrics` honours SigV4; `nimbus metrics`
summarises it."""

import shutil
import tempfile
import threading
import time

import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from conftest import Server, wait_for

CHAOS = r"""
import time

def handler(event, context):
    what = event.get("do", "ok")
    if what == "ok":
        return {"ok": True}
    if what == "raise":
        raise ValueError("asked to fail")
    if what == "sleep":
        time.sleep(event["seconds"])
        return {"slept": event["seconds"]}
    if what == "oom":
        hog = []
        for _ in range(60):
            hog.append(b"x" * (10 * 1024 * 1024))
        return {"allocated_mb": 10 * len(hog)}
"""


def scrape(server, openmetrics=False, **kw):
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    r = (kw.get("session") or server.session).get(server.api + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    if openmetrics:
        assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
        families = list(parse_openmetrics(r.text))
    else:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
        families = list(parse_prometheus(r.text))
    samples = {}
    types = {}
    for fam in families:
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def srv():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, ["--async-retry-base", "200ms"]).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_workload_counts_are_exact(srv):
    s = srv
    s.deploy("m-chaos", "python3.12", "app.handler", {"app.py": CHAOS}, timeout_s=1, memory_mb=128)
    s.deploy("m-off", "python3.12", "app.handler", {"app.py": CHAOS}, reserved_concurrency=0)
    for _ in range(3):
        s.invoke_ok("m-chaos", {"do": "ok"})
    for _ in range(2):
        r = s.invoke("m-chaos", {"do": "raise"})
        assert r.headers.get("x-amz-function-error") == "Unhandled"
    r = s.invoke("m-chaos", {"do": "sleep", "seconds": 3})
    assert "Task timed out" in r.text
    r = s.invoke("m-chaos", {"do": "oom"})
    assert r.headers.get("x-amz-function-error"), r.text
    s.invoke_ok("m-chaos", {"do": "ok"})
    for _ in range(2):
        assert s.invoke("m-off", {}).status_code == 429

    records = s.records("m-chaos", limit=100)
    outcomes = {}
    for rec in records:
        outcomes[rec["outcome"]] = outcomes.get(rec["outcome"], 0) + 1
    assert outcomes.get("success") == 4
    assert outcomes.get("function_error") == 2
    assert outcomes.get("timeout") == 1
    assert outcomes.get("out_of_memory") == 1, outcomes
    cold = sum(1 for rec in records if rec["cold"])
    # The first call and the calls after the timeout and the OOM killed the instance.
    assert cold == 3, records

    samples, types = scrape(s)
    assert types["nimbus_function_invocations"] == "counter"
    assert types["nimbus_function_duration_seconds"] == "histogram"
    lbl = {"function": "m-chaos", "version": "$LATEST"}
    for outcome, n in [("success", 4), ("function_error", 2), ("timeout", 1),
                       ("out_of_memory", 1), ("throttled", 0), ("init_error", 0), ("runtime_error", 0)]:
        assert value(samples, "nimbus_function_invocations_total", outcome=outcome, **lbl) == n, outcome
    assert value(samples, "nimbus_function_invocations_total", function="m-off", version="$LATEST",
                 outcome="throttled") == 2
    assert value(samples, "nimbus_function_invocations_total", function="m-off", version="$LATEST",
                 outcome="success") == 0
    assert value(samples, "nimbus_function_cold_starts_total", **lbl) == 3
    assert value(samples, "nimbus_function_duration_seconds_count", **lbl) == 8
    assert value(samples, "nimbus_function_duration_seconds_bucket", le="+Inf", **lbl) == 8
    # The timeout sits above the 1 s bucket; everything else below 1 s... except OOM
    # which may take a moment: at least the timeout is past 1 s.
    assert value(samples, "nimbus_function_duration_seconds_bucket", le="1", **lbl) <= 7
    assert value(samples, "nimbus_function_init_duration_seconds_count", **lbl) == 3
    total_ms = sum(rec["duration_ms"] for rec in records)
    assert abs(value(samples, "nimbus_function_duration_seconds_sum", **lbl) - total_ms / 1000) < 1e-6
    gbs = sum(rec["billed_ms"] for rec in records) / 1000 * 128 / 1024
    assert abs(value(samples, "nimbus_function_billed_gb_seconds_total", **lbl) - gbs) < 1e-9
    assert value(samples, "nimbus_function_concurrent_executions", **lbl) == 0

    # Instances by state match the pool.
    idle = sum(1 for i in s.instances("m-chaos") if i["state"] == "idle")
    assert value(samples, "nimbus_function_instances", state="idle", **lbl) == idle == 1
    assert value(samples, "nimbus_function_instances", state="busy", **lbl) == 0
    assert value(samples, "nimbus_function_instances", state="initialising", **lbl) == 0

    # Process figures.
    assert value(samples, "process_resident_memory_bytes") > 1e6
    assert value(samples, "process_open_fds") > 3
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "nimbus_uptime_seconds") > 0
    assert value(samples, "process_start_time_seconds") > 1.6e9

    # The OpenMetrics rendering carries the same numbers.
    om, _ = scrape(s, openmetrics=True)
    assert value(om, "nimbus_function_invocations_total", outcome="success", **lbl) == 4
    assert value(om, "nimbus_function_cold_starts_total", **lbl) == 3


def test_concurrent_executions_and_busy_instances(srv):
    s = srv
    s.deploy("m-slow", "python3.12", "app.handler", {"app.py": CHAOS}, timeout_s=10)
    s.invoke_ok("m-slow", {"do": "ok"})
    t = threading.Thread(target=lambda: s.invoke("m-slow", {"do": "sleep", "seconds": 2},
                                                 session=requests.Session()))
    t.start()
    lbl = {"function": "m-slow", "version": "$LATEST"}
    try:
        def running():
            samples, _ = scrape(s, session=requests.Session())
            return (value(samples, "nimbus_function_concurrent_executions", **lbl) == 1
                    and value(samples, "nimbus_function_instances", state="busy", **lbl) == 1)
        wait_for(running, timeout=5, what="one execution in flight")
    finally:
        t.join()
    samples, _ = scrape(s)
    assert value(samples, "nimbus_function_concurrent_executions", **lbl) == 0
    assert value(samples, "nimbus_function_instances", state="idle", **lbl) == 1


def test_async_retries_dead_letters_and_backlog(srv, tmp_path):
    s = srv
    s.deploy("m-fails", "python3.12", "app.handler", {"app.py": CHAOS})
    s.deploy("m-dlq", "python3.12", "app.handler", {"app.py": CHAOS})
    s.deploy("m-drop", "python3.12", "app.handler", {"app.py": CHAOS})
    arn = "arn:aws:lambda:us-east-1:123456789012:function:m-dlq"
    r = s.session.put(f"{s.api}/2019-09-25/functions/m-fails/event-invoke-config",
                      json={"MaximumRetryAttempts": 1, "DestinationConfig": {"OnFailure": {"Destination": arn}}})
    assert r.status_code == 200, r.text
    r = s.session.put(f"{s.api}/2019-09-25/functions/m-drop/event-invoke-config",
                      json={"MaximumRetryAttempts": 0})
    assert r.status_code == 200, r.text
    ev = {"X-Amz-Invocation-Type": "Event"}
    assert s.invoke("m-fails", {"do": "raise"}, headers=ev).status_code == 202
    assert s.invoke("m-drop", {"do": "raise"}, headers=ev).status_code == 202

    def settled():
        samples, _ = scrape(s)
        return (value(samples, "nimbus_async_destination_deliveries_total", function="m-fails",
                      destination="on_failure", result="delivered") == 1
                and value(samples, "nimbus_async_events_dropped_total", function="m-drop",
                          reason="RetriesExhausted") == 1
                and len(s.records("m-dlq")) == 1)
    wait_for(settled, timeout=20, what="dead letter and drop")
    samples, _ = scrape(s)
    assert value(samples, "nimbus_async_retries_total", function="m-fails") == 1
    assert value(samples, "nimbus_async_retries_total", function="m-drop") == 0
    assert value(samples, "nimbus_async_events_enqueued_total", function="m-fails") == 1
    # The destination record is itself an accepted async event of m-dlq.
    assert value(samples, "nimbus_async_events_enqueued_total", function="m-dlq") == 1
    assert value(samples, "nimbus_async_destination_deliveries_total", function="m-fails",
                 destination="on_success", result="delivered") == 0
    assert value(samples, "nimbus_function_invocations_total", function="m-fails", version="$LATEST",
                 outcome="function_error") == 2

    # A backlog: events of a function that may not run stay queued and age.
    s.deploy("m-held", "python3.12", "app.handler", {"app.py": CHAOS}, reserved_concurrency=0)
    for _ in range(3):
        assert s.invoke("m-held", {}, headers=ev).status_code == 202
    time.sleep(1.1)
    samples, types = scrape(s)
    assert types["nimbus_async_queue_depth"] == "gauge"
    assert value(samples, "nimbus_async_queue_depth", function="m-held") == 3
    assert value(samples, "nimbus_async_queue_oldest_event_age_seconds", function="m-held") >= 1.0
    assert value(samples, "nimbus_async_queue_depth", function="m-fails") == 0
    # Async events waiting for capacity are not sync throttles.
    assert value(samples, "nimbus_function_invocations_total", function="m-held", version="$LATEST",
                 outcome="throttled") in (None, 0)


def test_gateway_requests_by_route_and_status(srv):
    s = srv
    s.deploy("m-gw", "python3.12", "app.handler",
             {"app.py": "def handler(e, c):\n    return {'statusCode': 201, 'body': 'made'}\n"})
    r = s.session.put(f"{s.api}/_nimbus/routes", json={"route_key": "POST /things", "function": "m-gw"}, timeout=10)
    assert r.status_code in (200, 201), r.text
    for _ in range(3):
        assert requests.post(s.gateway + "/things", data="x", timeout=10).status_code == 201
    assert requests.get(s.gateway + "/things", timeout=10).status_code == 405
    assert requests.get(s.gateway + "/nowhere", timeout=10).status_code == 404
    samples, types = scrape(s)
    assert types["nimbus_gateway_request_duration_seconds"] == "histogram"
    assert value(samples, "nimbus_gateway_requests_total", route="POST /things", status="201") == 3
    assert value(samples, "nimbus_gateway_requests_total", route="none", status="405") == 1
    assert value(samples, "nimbus_gateway_requests_total", route="none", status="404") == 1
    assert value(samples, "nimbus_gateway_request_duration_seconds_count", route="POST /things") == 3
    assert value(samples, "nimbus_gateway_request_duration_seconds_sum", route="POST /things") > 0


def test_gateway_rejections_by_reason(srv):
    s = srv
    s.deploy("m-rej", "python3.12", "app.handler",
             {"app.py": "def handler(e, c):\n    return {'statusCode': 200, 'body': 'ok'}\n"})
    s.deploy("m-rej-zero", "python3.12", "app.handler",
             {"app.py": "def handler(e, c):\n    return 1\n"}, reserved_concurrency=0)
    for body in (
        {"route_key": "GET /rej/q", "function": "m-rej", "required_query": ["page"]},
        {"route_key": "GET /rej/t", "function": "m-rej", "throttle": {"rate": 0.001, "burst": 1}},
        {"route_key": "GET /rej/z", "function": "m-rej-zero"},
    ):
        r = s.session.put(f"{s.api}/_nimbus/routes", json=body, timeout=10)
        assert r.status_code in (200, 201), r.text
    assert requests.get(s.gateway + "/rej/q", timeout=10).status_code == 400
    assert requests.get(s.gateway + "/rej/q?page=1", timeout=10).status_code == 200
    codes = [requests.get(s.gateway + "/rej/t", timeout=10).status_code for _ in range(3)]
    assert codes == [200, 429, 429], codes
    assert requests.get(s.gateway + "/rej/z", timeout=10).status_code == 429
    samples, _ = scrape(s)
    assert value(samples, "nimbus_gateway_rejections_total", route="GET /rej/q", reason="invalid_request") == 1
    assert value(samples, "nimbus_gateway_rejections_total", route="GET /rej/t", reason="throttled") == 2
    assert value(samples, "nimbus_gateway_rejections_total", route="GET /rej/z", reason="function_throttled") == 1


def test_nimbus_metrics_prints_a_summary(srv):
    s = srv
    s.deploy("m-cli", "python3.12", "app.handler", {"app.py": CHAOS})
    s.invoke_ok("m-cli", {"do": "ok"})
    s.invoke("m-cli", {"do": "raise"})
    r = s.cli("metrics")
    assert r.returncode == 0, r.stderr
    assert "INVOKED" in r.stdout and "THROTTLED" in r.stdout, r.stdout
    row = next(l for l in r.stdout.splitlines() if l.startswith("m-cli "))
    # FUNCTION VERSION INVOKED SUCCESS ERRORS TIMEOUT OOM THROTTLED COLD
    assert row.split()[:9] == ["m-cli", "$LATEST", "2", "1", "1", "0", "0", "0", "1"], row
    assert "server: rss" in r.stdout
    raw = s.cli("metrics", "--raw")
    assert raw.returncode == 0 and "# TYPE nimbus_function_invocations_total counter" in raw.stdout


ROOT_KEY, ROOT_SECRET = "AKIANIMBUSMETRICS001", "metrics/Secret+Key00000000000000000000001"


def test_metrics_needs_a_signature_when_credentials_are_set(server_factory):
    s = server_factory("--credentials", f"{ROOT_KEY}:{ROOT_SECRET}")
    r = requests.get(s.api + "/metrics", timeout=10)
    assert r.status_code == 403, r.text
    assert r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    req = AWSRequest(method="GET", url=s.api + "/metrics")
    botocore.auth.SigV4Auth(Credentials(ROOT_KEY, ROOT_SECRET), "lambda", "us-east-1").add_auth(req)
    r = requests.get(s.api + "/metrics", headers=dict(req.headers), timeout=10)
    assert r.status_code == 200, r.text
    assert list(parse_prometheus(r.text))
    cli = s.cli("--access-key", ROOT_KEY, "--secret-key", ROOT_SECRET, "metrics")
    assert cli.returncode == 0, cli.stderr
    assert s.cli("metrics").returncode != 0

"""The benchmark must keep working: run `nimbus-bench --quick` (debug build, built by
scripts/test with `cargo build --workspace --bins`) against the debug `nimbus` and
check that every section ran and printed its table. The numbers of a quick debug run
mean nothing; only that the bench still drives the server end to end.

About 20-30 s: every section (cold start, warm, boto3, async, gateway) at 3 cold
samples and 0.3 s per load level, concurrency 1 and 4."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
NIMBUS_BIN = os.environ.get("NIMBUS_BIN", str(ROOT / "target" / "debug" / "nimbus"))
BENCH_BIN = os.environ.get(
    "NIMBUS_BENCH_BIN", str(ROOT / "target" / "debug" / "nimbus-bench")
)

TABLES = [
    "## Machine",
    "## Cold start",
    "## Warm invoke latency",
    "## Throughput",
    "## Sync Invoke through boto3",
    "## Durable async acceptance",
    "## Gateway overhead",
    "## Gateway throughput",
]


def test_bench_quick_runs_every_section(tmp_path):
    assert Path(BENCH_BIN).is_file(), (
        f"{BENCH_BIN} missing: build it with `cargo build --workspace --bins`"
    )
    assert Path(NIMBUS_BIN).is_file(), f"{NIMBUS_BIN} missing"
    out = tmp_path / "latest.json"
    # The boto3 section needs a python with boto3: the one running this test has it.
    p = subprocess.run(
        [
            BENCH_BIN, "--quick",
            "--nimbus", NIMBUS_BIN,
            "--sdk-python", sys.executable,
            "--out", str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, f"exit {p.returncode}\nstderr:\n{p.stderr[-4000:]}"
    for t in TABLES:
        assert t in p.stdout, f"table {t!r} missing:\n{p.stdout}\nstderr:\n{p.stderr[-2000:]}"
    # Gateway rows: Invoke and the three route variants, each with samples, no errors.
    for way in ["Invoke (POST", "payload 2.0 (POST", "payload 1.0 (POST", "payload 2.0 (GET"]:
        assert f"| {way}" in p.stdout or f"| route, {way}" in p.stdout, way

    res = json.loads(out.read_text())
    assert res["mode"] == "quick"
    run = res["runs"][0]
    gw = run["gateway"]
    assert [r["errors"] for r in gw["latency_c1"]["results"]] == [0, 0, 0, 0]
    assert all(r["client_ms"]["n"] > 0 for r in gw["latency_c1"]["results"])
    assert gw["throughput"] and all(t["errors"] == 0 for t in gw["throughput"])
    assert all(w["errors"] == 0 for w in run["warm"]["results"])
    assert run["cold_start"]["results"], "no cold-start results"
    assert run["boto3"] is not None, "the boto3 section did not run"
    assert (out.with_suffix(".md")).read_text().startswith("# nimbus-bench")

"""The README's first command, `examples/hello/run.sh`, as a new user runs it: with
CARGO_TARGET_DIR pointing elsewhere, with its ports taken (a plain message naming
the way out, not a stack of errors), and with free ports given through
NIMBUS_LISTEN / NIMBUS_GATEWAY_LISTEN (the walkthrough runs, the server's log goes
to a file). The binary the suite already built is reused: the target dir is the
suite's own, reached through a symlink so the path differs from the default."""

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import NIMBUS_BIN, ROOT

RUN_SH = ROOT / "examples" / "hello" / "run.sh"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path):
    bin_path = Path(NIMBUS_BIN).resolve()
    if bin_path.parent.name != "debug":
        pytest.skip("run.sh is exercised with the dev profile the suite builds")
    target = tmp_path / "elsewhere-target"
    target.symlink_to(bin_path.parent.parent)
    e = dict(os.environ)
    for k in ("NIMBUS_ENDPOINT", "NIMBUS_LISTEN", "NIMBUS_GATEWAY_LISTEN", "CARGO_BUILD_TARGET_DIR"):
        e.pop(k, None)
    e.update({
        "CARGO_TARGET_DIR": str(target),
        "NIMBUS_PROFILE": "dev",
        "NIMBUS_SDK_DIR": str(ROOT / "sdk"),
        "NIMBUS_DATA_DIR": str(tmp_path / "data"),
        "CARGO_TERM_COLOR": "never",
    })
    return e


def test_taken_port_is_named_with_the_way_out(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env["NIMBUS_LISTEN"] = f"127.0.0.1:{port}"
        env["NIMBUS_GATEWAY_LISTEN"] = f"127.0.0.1:{free_port()}"
        p = subprocess.run(["bash", str(RUN_SH)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: the port is taken" in p.stderr, p.stderr
    assert "NIMBUS_LISTEN" in p.stderr and "--listen" in p.stderr, p.stderr


def test_walkthrough_runs_on_given_ports_with_the_log_in_a_file(env, tmp_path):
    api, gw = free_port(), free_port()
    env["NIMBUS_LISTEN"] = f"127.0.0.1:{api}"
    env["NIMBUS_GATEWAY_LISTEN"] = f"127.0.0.1:{gw}"
    proc = subprocess.Popen(["bash", str(RUN_SH)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if "Ctrl-C stops the server." in line:
                break
        text = "".join(out)
        assert "Nimbus is running" in text, text
        assert f"API http://127.0.0.1:{api}" in text and f"gateway http://127.0.0.1:{gw}" in text, text
        assert text.count("Hello Nimbus") >= 2, text
        # The server's own log is in the file, not interleaved with the walkthrough.
        log = (tmp_path / "data" / "server.log").read_text()
        assert "nimbus ready" in log
        assert "nimbus ready" not in text
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

"""Runs tests/e2e/test_aws_cli.sh (the aws CLI against Nimbus) against a real
server, with credentials required and without any; fails when the script does."""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = Path(__file__).with_name("test_aws_cli.sh")
KEY, SECRET = "AKIANIMBUSAWSCLI0001", "awscli/Secret+Key00000000000000000000001"


@pytest.mark.parametrize("auth", [True, False], ids=["credentials", "open"])
def test_aws_cli(server_factory, auth):
    aws = ROOT / ".venv" / "bin" / "aws"
    if not aws.exists():
        pytest.fail(f"{aws} missing: install tests/requirements.txt into .venv")
    args = ["--credentials", f"{KEY}:{SECRET}:ci"] if auth else []
    server = server_factory(*args)
    env = dict(os.environ)
    env.update(
        NIMBUS_ENDPOINT=server.api,
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        EXPECT_ARN="arn:aws:iam::123456789012:user/ci" if auth else "arn:aws:iam::123456789012:root",
        EXPECT_AUTH="1" if auth else "0",
    )
    p = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, f"{SCRIPT.name} failed:\n{p.stdout}\n{p.stderr}"
    assert " passed, 0 failed" in p.stdout, p.stdout

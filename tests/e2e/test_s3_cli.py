"""S3 with the aws CLI: `aws s3 mb/cp/sync/ls/rm/rb` (multipart for large files)
and `aws s3api`."""

import json
import os
import subprocess

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def aws(server):
    exe = ROOT / ".venv" / "bin" / "aws"
    if not exe.exists():
        pytest.fail(f"{exe} missing: install tests/requirements.txt into .venv")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")

    def run(*args, check=True):
        p = subprocess.run([str(exe), "--endpoint-url", server.api, *args], capture_output=True,
                           text=True, env=env, timeout=300)
        if check:
            assert p.returncode == 0, f"aws {' '.join(args)}:\n{p.stdout}\n{p.stderr}"
        return p

    return run


def test_s3_high_level_commands(aws, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.txt").write_text("beta")
    big = os.urandom(9 * 1024 * 1024)  # over the CLI's 8 MiB multipart threshold
    (src / "big.bin").write_bytes(big)
    aws("s3", "mb", "s3://clibucket")
    aws("s3", "cp", str(src / "a.txt"), "s3://clibucket/one/a.txt")
    out = aws("s3", "ls", "s3://clibucket/one/").stdout
    assert "a.txt" in out and " 5 " in out, out
    aws("s3", "sync", str(src), "s3://clibucket/tree")
    listing = aws("s3", "ls", "--recursive", "s3://clibucket/tree/").stdout
    for k in ("tree/a.txt", "tree/sub/b.txt", "tree/big.bin"):
        assert k in listing, listing
    # A second sync has nothing to do.
    assert aws("s3", "sync", str(src), "s3://clibucket/tree").stdout.strip() == ""
    dst = tmp_path / "dst"
    aws("s3", "sync", "s3://clibucket/tree", str(dst))
    assert (dst / "a.txt").read_text() == "alpha"
    assert (dst / "sub" / "b.txt").read_text() == "beta"
    assert (dst / "big.bin").read_bytes() == big
    aws("s3", "cp", "s3://clibucket/tree/big.bin", str(tmp_path / "big.copy"))
    assert (tmp_path / "big.copy").read_bytes() == big
    head = json.loads(aws("s3api", "head-object", "--bucket", "clibucket", "--key", "tree/big.bin").stdout)
    assert head["ETag"].endswith('-2"'), head
    aws("s3", "rm", "--recursive", "s3://clibucket/tree")
    assert aws("s3", "ls", "--recursive", "s3://clibucket/tree/", check=False).stdout.strip() == ""
    p = aws("s3", "rb", "s3://clibucket", check=False)
    assert p.returncode != 0 and "BucketNotEmpty" in p.stderr, p.stderr
    aws("s3", "rm", "s3://clibucket/one/a.txt")
    aws("s3", "rb", "s3://clibucket")


def test_s3api_commands(aws, tmp_path):
    aws("s3api", "create-bucket", "--bucket", "apibucket")
    f = tmp_path / "body"
    f.write_bytes(b"hello s3api")
    put = json.loads(aws("s3api", "put-object", "--bucket", "apibucket", "--key", "k",
                         "--body", str(f), "--metadata", "x=1").stdout)
    assert put["ETag"].strip('"')
    out = tmp_path / "out"
    got = json.loads(aws("s3api", "get-object", "--bucket", "apibucket", "--key", "k", str(out)).stdout)
    assert out.read_bytes() == b"hello s3api" and got["Metadata"] == {"x": "1"}
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", "apibucket").stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["k"]
    p = aws("s3api", "get-object", "--bucket", "apibucket", "--key", "nope", str(out), check=False)
    assert p.returncode != 0 and "NoSuchKey" in p.stderr, p.stderr
    aws("s3api", "delete-object", "--bucket", "apibucket", "--key", "k")
    aws("s3api", "delete-bucket", "--bucket", "apibucket")

"""serverless.yml `package.patterns` (issue 18) with the real CLI and binary: the
bundle holds what the Framework's include/exclude globs select — the service's
patterns, then the function's — and a function sees exactly those files."""

import json

import boto3
from botocore.config import Config

LISTER = """
import os

def main(event, context):
    root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)
"""

MANIFEST = """service: pkg
provider:
  name: aws
  runtime: python3.12
package:
  patterns:
    - '!docs/**'
    - docs/keep.md
    - '!**/*_test.py'
    - '!{notes,todo}.txt'
functions:
  all:
    handler: handler.main
  slim:
    handler: handler.main
    package:
      patterns:
        - '!lib/**'
"""


def test_package_patterns_select_the_bundled_files(server, tmp_path):
    d = tmp_path / "pkg"
    for rel, body in {
        "handler.py": LISTER, "handler_test.py": "", "lib/util.py": "", "lib/util_test.py": "",
        "docs/a.md": "", "docs/keep.md": "", "notes.txt": "", "todo.txt": "", "data.txt": "",
        "serverless.yml": MANIFEST,
    }.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(body)
    p = server.cli("deploy", cwd=d, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="AKIDPKG", aws_secret_access_key="secret",
                       config=Config(retries={"total_max_attempts": 1}))

    def files(fn):
        r = lam.invoke(FunctionName=fn, Payload=b"{}")
        assert "FunctionError" not in r, r["Payload"].read()
        return json.loads(r["Payload"].read())

    assert files("pkg-dev-all") == ["data.txt", "docs/keep.md", "handler.py", "lib/util.py",
                                    "serverless.yml"]
    assert files("pkg-dev-slim") == ["data.txt", "docs/keep.md", "handler.py", "serverless.yml"]

    # A bad glob is an error at its line; nothing deploys.
    (d / "serverless.yml").write_text(MANIFEST.replace("- docs/keep.md", "- 'docs/[keep.md'"))
    p = server.cli("deploy", cwd=d, timeout=180)
    assert p.returncode == 1
    assert "serverless.yml:6: error: package.patterns:" in p.stderr, p.stderr
    assert server.cli("app", "rm", "pkg-dev").returncode == 0

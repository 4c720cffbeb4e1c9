"""Each service crate's operation table (crates/services/<name>/src/ops.rs) lists
exactly the operations of botocore's model for that API, and the generated files
(tables, docs/compat pages) are what scripts/gen-ops.py makes from the installed
botocore — so a model upgrade that is not re-generated fails here. No server needed."""

import re
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SERVICES = ["sqs", "sns", "s3", "dynamodb", "dynamodbstreams", "kinesis", "events",
            "secretsmanager", "ssm", "kms", "ses", "sesv2", "iam"]
SESSION = botocore.session.get_session()


def table_ops(name):
    text = (ROOT / "crates" / "services" / name / "src" / "ops.rs").read_text()
    body = text[text.index("define_ops! {"):]
    return re.findall(r"^    (\w+)(?::| =>)", body, re.M)


@pytest.mark.parametrize("name", SERVICES)
def test_table_matches_the_model(name):
    model = SESSION.get_service_model(name)
    ops = table_ops(name)
    assert len(ops) == len(model.operation_names), name
    assert ops == list(model.operation_names), name
    text = (ROOT / "crates" / "services" / name / "src" / "ops.rs").read_text()
    assert f'api_version: "{model.api_version}"' in text
    if model.protocol in ("rest-xml", "rest-json"):
        for op in ops:
            http = model.operation_model(op).http
            assert f'    {op}: {http["method"]} "{http["requestUri"]}"' in text, op


def test_generated_files_are_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-ops.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

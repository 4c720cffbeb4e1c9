"""S3 with the AWS SDK for JavaScript v3: default CRC32 checksums (header and
aws-chunked trailer), lib-storage's multipart `Upload`, the presigner, typed
errors. The SDK pieces are pinned in tests/e2e/s3js/package(-lock).json and
installed with `npm ci` on first use."""

import base64
import json
import subprocess
import zlib
from pathlib import Path

import pytest

JS_DIR = Path(__file__).with_name("s3js")


@pytest.fixture(scope="module")
def node_s3():
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "lib-storage").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=600)
    return JS_DIR / "run.js"


def test_js_sdk_v3_against_s3(node_s3, server):
    p = subprocess.run(["node", str(node_s3), server.api, "jsbucket"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["smallRoundTrip"] is True, out
    assert out["putChecksum"] and out["putChecksum"] == out["getChecksum"], out
    assert out["streamedLength"] == 300 * 1024 and out["streamedRoundTrip"] is True, out
    assert out["uploadETag"].endswith('-3"'), out
    assert out["bigRoundTrip"] is True, out
    assert out["keys"] == ["big.bin", "copy.bin", "small.bin"], out
    assert out["prefixes"] == ["dir/"], out
    assert out["deleted"] == ["copy.bin"], out
    assert out["presignedPut"] == 200, out
    assert out["presignedGet"] == [200, "via presigned url"], out
    assert out["missing"] == "NoSuchKey", out

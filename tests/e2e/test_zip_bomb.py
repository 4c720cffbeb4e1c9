"""A zip bomb deployed through the Lambda API: the archive's headers claim a tiny file
whose data really inflates past Lambda's 250 MB unzipped limit. Nimbus must count the
bytes it really decompresses, refuse with Lambda's error, keep its memory flat and stay
healthy."""

import io
import struct
import zipfile

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import assert_platform_healthy

LIMIT = 262144000  # Lambda's unzipped code limit, in bytes


def lying_zip(real_size, claimed_size):
    """A valid deflated zip of `real_size` zero bytes whose local and central headers
    both claim `claimed_size` (CRC and compressed size stay true)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("app.py", "w") as f:
            chunk = b"\0" * (1 << 20)
            left = real_size
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    data = bytearray(buf.getvalue())
    # Local file header at 0: signature, then uncompressed size at +22.
    assert data[0:4] == b"PK\x03\x04"
    assert struct.unpack_from("<I", data, 22)[0] == real_size
    struct.pack_into("<I", data, 22, claimed_size)
    # End of central directory (no comment): central directory offset at +16.
    eocd = len(data) - 22
    assert data[eocd:eocd + 4] == b"PK\x05\x06"
    cd = struct.unpack_from("<I", data, eocd + 16)[0]
    assert data[cd:cd + 4] == b"PK\x01\x02"
    assert struct.unpack_from("<I", data, cd + 24)[0] == real_size
    struct.pack_into("<I", data, cd + 24, claimed_size)
    return bytes(data)


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def lam(server):
    return boto3.client(
        "lambda",
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, read_timeout=300),
    )


def test_zip_bomb_is_refused_with_memory_flat(server, lam):
    bomb = lying_zip(LIMIT + (1 << 20), 1024)
    # The lie is what a trusting reader sees.
    info = zipfile.ZipFile(io.BytesIO(bomb)).infolist()[0]
    assert info.file_size == 1024 and len(bomb) < 2 * 1024 * 1024

    assert_platform_healthy(server)
    before = peak_rss_kb(server.proc.pid)
    with pytest.raises(ClientError) as e:
        lam.create_function(
            FunctionName="bomb",
            Runtime="python3.12",
            Role="arn:aws:iam::123456789012:role/lambda-role",
            Handler="app.handler",
            Code={"ZipFile": bomb},
        )
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidParameterValueException", err
    assert err["Message"] == f"Unzipped size must be smaller than {LIMIT} bytes", err
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    # Memory stayed flat: the 250 MB were streamed through, never held. The request
    # body (base64 of < 2 MB) and its copies are all the server should have grown by.
    grown_mb = (peak_rss_kb(server.proc.pid) - before) / 1024
    assert grown_mb < 64, f"peak RSS grew by {grown_mb:.0f} MB"

    # Nothing was created and the server still serves.
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName="bomb")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert_platform_healthy(server)


def test_honest_zip_under_the_limit_still_deploys(server, lam):
    # Counting real bytes refuses nothing honest: a normal bundle still deploys and runs.
    code = b"def handler(event, context):\n    return {'ok': True}\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("app.py", code)
    out = lam.create_function(
        FunctionName="small",
        Runtime="python3.12",
        Role="arn:aws:iam::123456789012:role/lambda-role",
        Handler="app.handler",
        Code={"ZipFile": buf.getvalue()},
    )
    assert out["CodeSize"] == len(buf.getvalue())
    r = lam.invoke(FunctionName="small", Payload=b"{}")
    assert r["Payload"].read() == b'{"ok": true}'

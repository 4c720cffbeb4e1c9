"""Regenerate the aws-chunked fixtures of crates/protocol with botocore's own
encoder (what boto3 sends for STREAMING-UNSIGNED-PAYLOAD-TRAILER uploads).

    /work/main/.venv/bin/python crates/protocol/testdata/gen_chunked.py

The object is PAYLOAD below; each fixture is the encoded body as botocore
writes it with a 1 KiB chunk size and a trailing checksum.
"""
import io
import os

from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    Sha1Checksum,
    Sha256Checksum,
)

# 5000 bytes: 4 full chunks and a short one.
PAYLOAD = bytes((i * 7 + i // 251) % 256 for i in range(5000))

HERE = os.path.dirname(os.path.abspath(__file__))
for name, cls in [
    ("crc32", Crc32Checksum),
    ("sha1", Sha1Checksum),
    ("sha256", Sha256Checksum),
]:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(PAYLOAD),
        checksum_cls=cls,
        checksum_name=f"x-amz-checksum-{name}",
        chunk_size=1024,
    )
    with open(os.path.join(HERE, f"unsigned-trailer-{name}.bin"), "wb") as f:
        f.write(wrapper.read())

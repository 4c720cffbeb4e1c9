"""S3 against the real binary with boto3: buckets, objects, listings, conditional
and ranged reads, checksums, copy, tagging, multipart (including boto3's
`upload_file`/`download_file`), bad input, notifications to a function, and
durability across `kill -9`."""

import base64
import hashlib
import json
import os
import socket
import zlib
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import wait_for


def signed(server, method, path, body=b"", headers=None):
    """A raw S3 request, SigV4-signed (the edge routes unsigned requests elsewhere)."""
    req = AWSRequest(method=method, url=server.api + path, data=body, headers=headers or {})
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "s3", "us-east-1").add_auth(req)
    return requests.request(method, server.api + path, data=body, headers=dict(req.headers), timeout=30)


def s3_client(server, **s3cfg):
    return boto3.client(
        "s3",
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path", **s3cfg}),
    )


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


def error_of(fn, *args, **kwargs):
    with pytest.raises(ClientError) as e:
        fn(*args, **kwargs)
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_buckets_create_head_list_location_delete(s3):
    s3.create_bucket(Bucket="alpha")
    s3.create_bucket(Bucket="beta", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "alpha" in names and "beta" in names
    assert s3.get_bucket_location(Bucket="alpha")["LocationConstraint"] is None
    assert s3.get_bucket_location(Bucket="beta")["LocationConstraint"] == "eu-west-1"
    head = s3.head_bucket(Bucket="beta")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
    assert error_of(s3.create_bucket, Bucket="alpha") == ("BucketAlreadyOwnedByYou", 409)
    assert error_of(s3.head_bucket, Bucket="nope-nope") == ("404", 404)
    s3.put_object(Bucket="beta", Key="k", Body=b"x")
    assert error_of(s3.delete_bucket, Bucket="beta") == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket="beta", Key="k")
    s3.delete_bucket(Bucket="beta")
    assert error_of(s3.head_bucket, Bucket="beta") == ("404", 404)
    assert error_of(s3.list_objects_v2, Bucket="beta") == ("NoSuchBucket", 404)


@pytest.mark.parametrize("name", ["ab", "Upper", "under_score", "-dash", "a..b", "192.168.1.1", "x" * 64])
def test_bad_bucket_names_are_refused(s3, name):
    code, status = error_of(s3.create_bucket, Bucket=name)
    # botocore refuses some names itself before sending; the rest are ours.
    assert (code, status) == ("InvalidBucketName", 400)


def test_objects_put_get_head_delete_with_metadata_and_content_headers(s3):
    s3.create_bucket(Bucket="objects")
    body = os.urandom(100_000)
    put = s3.put_object(
        Bucket="objects", Key="dir/file name+1.bin", Body=body, ContentType="application/x-test",
        Metadata={"owner": "ana", "Colour": "blue"}, CacheControl="max-age=60",
        ContentDisposition="attachment", ContentLanguage="pt", ContentEncoding="identity",
    )
    md5 = hashlib.md5(body).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    got = s3.get_object(Bucket="objects", Key="dir/file name+1.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == f'"{md5}"'
    assert got["ContentLength"] == len(body)
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"owner": "ana", "colour": "blue"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == "attachment"
    assert got["ContentLanguage"] == "pt"
    head = s3.head_object(Bucket="objects", Key="dir/file name+1.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == f'"{md5}"'
    # Default content type, empty object.
    s3.put_object(Bucket="objects", Key="empty", Body=b"")
    e = s3.get_object(Bucket="objects", Key="empty")
    assert e["Body"].read() == b"" and e["ContentType"] == "binary/octet-stream"
    assert e["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    # Overwrite, then delete (twice: absent is fine).
    s3.put_object(Bucket="objects", Key="empty", Body=b"now full")
    assert s3.get_object(Bucket="objects", Key="empty")["Body"].read() == b"now full"
    s3.delete_object(Bucket="objects", Key="empty")
    s3.delete_object(Bucket="objects", Key="empty")
    assert error_of(s3.get_object, Bucket="objects", Key="empty") == ("NoSuchKey", 404)
    assert error_of(s3.head_object, Bucket="objects", Key="empty") == ("404", 404)
    # response-* overrides.
    url_resp = s3.get_object(Bucket="objects", Key="dir/file name+1.bin", ResponseContentType="text/plain")
    assert url_resp["ContentType"] == "text/plain"


def test_keys_with_path_tricks_stay_keys(s3, server):
    s3.create_bucket(Bucket="tricks")
    keys = ["../escape", "a/../../b", "/leading", "dots/./x", "ünï/cödé ✓", "q?x=1&y", "%2F..%2F"]
    for k in keys:
        s3.put_object(Bucket="tricks", Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket="tricks", Key=k)["Body"].read() == k.encode(), k
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="tricks")["Contents"]]
    assert sorted(listed) == sorted(keys)
    # Nothing was written outside the store: every file under s3/ is a blob named by its hash.
    root = server.data_dir / "s3"
    for p in root.rglob("*"):
        if p.is_file():
            assert p.parent.parent == root / "blobs", p
            assert len(p.name) == 64 and all(c in "0123456789abcdef" for c in p.name), p
    assert not (server.data_dir.parent / "escape").exists()


def test_list_objects_v2_and_v1(s3):
    s3.create_bucket(Bucket="listing")
    keys = ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d", "sp ace/x"]
    for k in keys:
        s3.put_object(Bucket="listing", Key=k, Body=b"1")
    r = s3.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["b", "d"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "c/", "sp ace/"]
    assert r["KeyCount"] == 5
    r = s3.list_objects_v2(Bucket="listing", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/"]
    # Pagination with continuation tokens.
    seen, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket="listing", MaxKeys=3, **kw)
        seen += [o["Key"] for o in r["Contents"]]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == sorted(keys)
    # The paginator, start-after.
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="listing", PaginationConfig={"PageSize": 2})
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys)
    r = s3.list_objects_v2(Bucket="listing", StartAfter="c/1")
    assert [o["Key"] for o in r["Contents"]] == ["c/2", "d", "sp ace/x"]
    # encoding-type=url: botocore asks for it itself (and decodes: the keys above);
    # asked for explicitly, the keys stay encoded.
    r = s3.list_objects_v2(Bucket="listing", Prefix="sp ace/", EncodingType="url")
    assert [o["Key"] for o in r["Contents"]] == ["sp+ace/x"]
    # V1 with markers.
    r = s3.list_objects(Bucket="listing", MaxKeys=4)
    assert r["IsTruncated"] and len(r["Contents"]) == 4
    r2 = s3.list_objects(Bucket="listing", Marker=r["Contents"][-1]["Key"])
    assert [o["Key"] for o in r["Contents"] + r2["Contents"]] == sorted(keys)
    v1 = s3.get_paginator("list_objects").paginate(Bucket="listing", Delimiter="/",
                                                    PaginationConfig={"PageSize": 2})
    prefixes = [p["Prefix"] for page in v1 for p in page.get("CommonPrefixes", [])]
    assert prefixes == ["a/", "c/", "sp ace/"]


def test_ranges_and_conditional_reads(s3):
    s3.create_bucket(Bucket="ranges")
    body = bytes(range(256)) * 4
    etag = s3.put_object(Bucket="ranges", Key="k", Body=body)["ETag"]
    r = s3.get_object(Bucket="ranges", Key="k", Range="bytes=10-19")
    assert r["Body"].read() == body[10:20]
    assert r["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket="ranges", Key="k", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket="ranges", Key="k", Range="bytes=1000-")["Body"].read() == body[1000:]
    assert error_of(s3.get_object, Bucket="ranges", Key="k", Range="bytes=5000-") == ("InvalidRange", 416)
    assert s3.get_object(Bucket="ranges", Key="k", IfMatch=etag)["Body"].read() == body
    assert error_of(s3.get_object, Bucket="ranges", Key="k", IfMatch='"nope"') == ("PreconditionFailed", 412)
    assert error_of(s3.get_object, Bucket="ranges", Key="k", IfNoneMatch=etag) == ("304", 304)
    modified = s3.head_object(Bucket="ranges", Key="k")["LastModified"]
    assert error_of(s3.get_object, Bucket="ranges", Key="k", IfModifiedSince=modified) == ("304", 304)
    import datetime
    earlier = modified - datetime.timedelta(days=1)
    assert error_of(s3.head_object, Bucket="ranges", Key="k", IfUnmodifiedSince=earlier) == ("412", 412)
    assert s3.get_object(Bucket="ranges", Key="k", IfModifiedSince=earlier)["Body"].read() == body


def test_conditional_writes(s3):
    s3.create_bucket(Bucket="condwrite")
    s3.put_object(Bucket="condwrite", Key="once", Body=b"first", IfNoneMatch="*")
    assert error_of(s3.put_object, Bucket="condwrite", Key="once", Body=b"second",
                    IfNoneMatch="*") == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket="condwrite", Key="once")["Body"].read() == b"first"


def test_checksums_and_content_md5(s3, server):
    s3.create_bucket(Bucket="sums")
    data = b"checksum me" * 1000
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    r = s3.put_object(Bucket="sums", Key="crc", Body=data, ChecksumAlgorithm="CRC32")
    assert r["ChecksumCRC32"] == crc
    got = s3.get_object(Bucket="sums", Key="crc", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    r = s3.put_object(Bucket="sums", Key="sha", Body=data, ChecksumSHA256=sha)
    assert s3.head_object(Bucket="sums", Key="sha", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket="sums", Key="md5", Body=data, ContentMD5=md5)
    # Wrong values: BadDigest, and nothing stored.
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert error_of(s3.put_object, Bucket="sums", Key="bad", Body=data, ContentMD5=wrong) == ("BadDigest", 400)
    wrong_sha = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    assert error_of(s3.put_object, Bucket="sums", Key="bad", Body=data,
                    ChecksumSHA256=wrong_sha) == ("BadDigest", 400)
    r = signed(server, "PUT", "/sums/bad", data, {"Content-MD5": "not-base64!"})
    assert r.status_code == 400 and "<Code>InvalidDigest</Code>" in r.text, r.text
    assert error_of(s3.head_object, Bucket="sums", Key="bad") == ("404", 404)


def test_aws_chunked_upload_with_trailing_checksum(s3):
    s3.create_bucket(Bucket="chunked")

    def force_trailer(params, **_):
        alg = params["context"].get("checksum", {}).get("request_algorithm")
        if isinstance(alg, dict):
            alg["in"] = "trailer"

    c = s3_client_like(s3)
    c.meta.events.register("before-call.s3.PutObject", force_trailer)
    sent = {}
    c.meta.events.register("before-send.s3.PutObject",
                           lambda request, **_: sent.update(dict(request.headers)))
    data = os.urandom(70_000)
    r = c.put_object(Bucket="chunked", Key="k", Body=data, ChecksumAlgorithm="SHA1")
    assert sent["Content-Encoding"] in ("aws-chunked", b"aws-chunked"), sent
    got = c.get_object(Bucket="chunked", Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumSHA1"] == r["ChecksumSHA1"]
    assert got["ChecksumSHA1"] == base64.b64encode(hashlib.sha1(data).digest()).decode()


def s3_client_like(s3):
    return boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))


def test_copy_object_and_metadata_directives(s3):
    s3.create_bucket(Bucket="copies")
    s3.put_object(Bucket="copies", Key="src", Body=b"payload", Metadata={"a": "1"}, ContentType="text/x")
    r = s3.copy_object(Bucket="copies", Key="dst", CopySource={"Bucket": "copies", "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"payload").hexdigest()}"'
    d = s3.get_object(Bucket="copies", Key="dst")
    assert d["Body"].read() == b"payload" and d["Metadata"] == {"a": "1"} and d["ContentType"] == "text/x"
    s3.copy_object(Bucket="copies", Key="dst2", CopySource="copies/src", MetadataDirective="REPLACE",
                   Metadata={"b": "2"}, ContentType="text/y")
    d = s3.head_object(Bucket="copies", Key="dst2")
    assert d["Metadata"] == {"b": "2"} and d["ContentType"] == "text/y"
    assert error_of(s3.copy_object, Bucket="copies", Key="src",
                    CopySource="copies/src") == ("InvalidRequest", 400)
    assert error_of(s3.copy_object, Bucket="copies", Key="x",
                    CopySource="copies/missing") == ("NoSuchKey", 404)
    # Deleting the source keeps the copy (shared content is reference counted).
    s3.delete_object(Bucket="copies", Key="src")
    assert s3.get_object(Bucket="copies", Key="dst")["Body"].read() == b"payload"


def test_batch_delete(s3):
    s3.create_bucket(Bucket="batch")
    for i in range(5):
        s3.put_object(Bucket="batch", Key=f"k{i}", Body=b"x")
    r = s3.delete_objects(Bucket="batch", Delete={"Objects": [{"Key": f"k{i}"} for i in range(3)] + [{"Key": "absent"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["absent", "k0", "k1", "k2"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="batch")["Contents"]] == ["k3", "k4"]
    r = s3.delete_objects(Bucket="batch", Delete={"Objects": [{"Key": "k3"}], "Quiet": True})
    assert "Deleted" not in r


def test_object_tagging(s3):
    s3.create_bucket(Bucket="tags")
    s3.put_object(Bucket="tags", Key="k", Body=b"x", Tagging="a=1&b=two")
    assert {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket="tags", Key="k")["TagSet"]} == {"a": "1", "b": "two"}
    s3.put_object_tagging(Bucket="tags", Key="k", Tagging={"TagSet": [{"Key": "c", "Value": "3"}]})
    assert s3.get_object_tagging(Bucket="tags", Key="k")["TagSet"] == [{"Key": "c", "Value": "3"}]
    s3.delete_object_tagging(Bucket="tags", Key="k")
    assert s3.get_object_tagging(Bucket="tags", Key="k")["TagSet"] == []


def test_malformed_xml_is_refused(server, s3):
    s3.create_bucket(Bucket="malformed")
    r = signed(server, "POST", "/malformed?delete", b"<Delete><Object><Key>a</Key>")
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, r.text
    r = signed(server, "PUT", "/malformed?notification", b"<<<")
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, r.text
    r = signed(server, "PUT", "/malformed2", b"<CreateBucketConfiguration><Loc")
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, r.text


def test_multipart_upload_list_complete_abort(s3):
    s3.create_bucket(Bucket="mpu")
    up = s3.create_multipart_upload(Bucket="mpu", Key="big", ContentType="video/x", Metadata={"m": "1"})
    uid = up["UploadId"]
    p1 = os.urandom(5 * 1024 * 1024)
    p2 = os.urandom(1234)
    e1 = s3.upload_part(Bucket="mpu", Key="big", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket="mpu", Key="big", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
    parts = s3.list_parts(Bucket="mpu", Key="big", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, len(p1), e1), (2, len(p2), e2)]
    uploads = s3.list_multipart_uploads(Bucket="mpu")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big", uid)]
    # Out of order, a wrong ETag, a small non-last part.
    assert error_of(s3.complete_multipart_upload, Bucket="mpu", Key="big", UploadId=uid,
                    MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]}
                    ) == ("InvalidPartOrder", 400)
    assert error_of(s3.complete_multipart_upload, Bucket="mpu", Key="big", UploadId=uid,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0"'}]}) == ("InvalidPart", 400)
    r = s3.complete_multipart_upload(Bucket="mpu", Key="big", UploadId=uid,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                {"PartNumber": 2, "ETag": e2}]})
    want = hashlib.md5(bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))).hexdigest() + "-2"
    assert r["ETag"] == f'"{want}"'
    got = s3.get_object(Bucket="mpu", Key="big")
    assert got["Body"].read() == p1 + p2 and got["ContentType"] == "video/x" and got["Metadata"] == {"m": "1"}
    assert s3.list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []
    assert error_of(s3.list_parts, Bucket="mpu", Key="big", UploadId=uid) == ("NoSuchUpload", 404)
    # Small parts: EntityTooSmall.
    uid = s3.create_multipart_upload(Bucket="mpu", Key="small")["UploadId"]
    a = s3.upload_part(Bucket="mpu", Key="small", UploadId=uid, PartNumber=1, Body=b"a")["ETag"]
    b = s3.upload_part(Bucket="mpu", Key="small", UploadId=uid, PartNumber=2, Body=b"b")["ETag"]
    assert error_of(s3.complete_multipart_upload, Bucket="mpu", Key="small", UploadId=uid,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": a}, {"PartNumber": 2, "ETag": b}]}
                    ) == ("EntityTooSmall", 400)
    assert error_of(s3.upload_part, Bucket="mpu", Key="small", UploadId=uid, PartNumber=10001,
                    Body=b"x") == ("InvalidArgument", 400)
    s3.abort_multipart_upload(Bucket="mpu", Key="small", UploadId=uid)
    assert error_of(s3.abort_multipart_upload, Bucket="mpu", Key="small", UploadId=uid) == ("NoSuchUpload", 404)
    assert error_of(s3.head_object, Bucket="mpu", Key="small") == ("404", 404)


def test_upload_part_copy_with_ranges(s3):
    s3.create_bucket(Bucket="partcopy")
    src = os.urandom(6 * 1024 * 1024)
    s3.put_object(Bucket="partcopy", Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket="partcopy", Key="dst")["UploadId"]
    e1 = s3.upload_part_copy(Bucket="partcopy", Key="dst", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": "partcopy", "Key": "src"},
                             CopySourceRange=f"bytes=0-{5 * 1024 * 1024 - 1}")["CopyPartResult"]["ETag"]
    e2 = s3.upload_part_copy(Bucket="partcopy", Key="dst", UploadId=uid, PartNumber=2,
                             CopySource="partcopy/src", CopySourceRange="bytes=100-199")["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(Bucket="partcopy", Key="dst", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                            {"PartNumber": 2, "ETag": e2}]})
    assert s3.get_object(Bucket="partcopy", Key="dst")["Body"].read() == src[: 5 * 1024 * 1024] + src[100:200]


def test_boto3_upload_file_and_download_file(s3, tmp_path):
    from boto3.s3.transfer import TransferConfig

    s3.create_bucket(Bucket="transfer")
    src = tmp_path / "src.bin"
    data = os.urandom(17 * 1024 * 1024 + 5)
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024,
                         max_concurrency=4)
    s3.upload_file(str(src), "transfer", "big.bin", Config=cfg)
    head = s3.head_object(Bucket="transfer", Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-4"'), head["ETag"]
    dst = tmp_path / "dst.bin"
    s3.download_file("transfer", "big.bin", str(dst), Config=cfg)  # ranged GETs, concurrently
    assert dst.read_bytes() == data


def test_presigned_get_and_put(server, s3):
    s3.create_bucket(Bucket="presign")
    # SigV4 query signing (botocore 1.35 presigns S3 with SigV2 unless told).
    s3 = boto3.client("s3", endpoint_url=server.api, region_name="us-east-1",
                      aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "presign", "Key": "p"}, ExpiresIn=600)
    r = requests.put(put_url, data=b"presigned body")
    assert r.status_code == 200, r.text
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "presign", "Key": "p"}, ExpiresIn=600)
    r = requests.get(get_url)
    assert r.status_code == 200 and r.content == b"presigned body"


def test_virtual_host_style(server, monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    port = server.api.rsplit(":", 1)[1]
    c = boto3.client("s3", endpoint_url=f"http://s3.localhost:{port}", region_name="us-east-1",
                     aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                     config=Config(s3={"addressing_style": "virtual"}))
    c.create_bucket(Bucket="vhost")
    c.put_object(Bucket="vhost", Key="a/b.txt", Body=b"vh")
    assert c.get_object(Bucket="vhost", Key="a/b.txt")["Body"].read() == b"vh"
    assert [o["Key"] for o in c.list_objects_v2(Bucket="vhost")["Contents"]] == ["a/b.txt"]


def test_admin_and_metrics(server, s3):
    s3.create_bucket(Bucket="adminview")
    s3.put_object(Bucket="adminview", Key="k", Body=b"12345")
    r = requests.get(f"{server.api}/_nimbus/services/s3/buckets")
    assert r.status_code == 200, r.text
    b = [b for b in r.json()["Buckets"] if b["Name"] == "adminview"][0]
    assert b["Objects"] == 1 and b["Bytes"] == 5
    r = requests.get(f"{server.api}/_nimbus/services/s3/outbox")
    assert "Backlog" in r.json()
    m = requests.get(f"{server.api}/metrics").text
    assert "nimbus_s3_objects" in m and "nimbus_s3_notification_backlog" in m


# --- notifications --------------------------------------------------------------------

RECORDER = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event))
    return {"ok": True}
"""


def recorded_events(server, fn):
    out = []
    for line in server.log_lines(fn):
        if "EVENT " in line:
            out.append(json.loads(line.split("EVENT ", 1)[1]))
    return out


def lambda_arn(fn):
    return f"arn:aws:lambda:us-east-1:123456789012:function:{fn}"


def test_notifications_to_a_function(server, s3):
    server.deploy("s3rec", "python3.12", "app.handler", {"app.py": RECORDER})
    s3.create_bucket(Bucket="notified")
    s3.put_bucket_notification_configuration(
        Bucket="notified",
        NotificationConfiguration={"LambdaFunctionConfigurations": [
            {"Id": "created", "LambdaFunctionArn": lambda_arn("s3rec"), "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"},
                                                {"Name": "suffix", "Value": ".jpg"}]}}},
            {"Id": "removed", "LambdaFunctionArn": lambda_arn("s3rec"), "Events": ["s3:ObjectRemoved:Delete"]},
        ]},
    )
    conf = s3.get_bucket_notification_configuration(Bucket="notified")
    ids = sorted(c["Id"] for c in conf["LambdaFunctionConfigurations"])
    assert ids == ["created", "removed"]
    rules = conf["LambdaFunctionConfigurations"][0]["Filter"]["Key"]["FilterRules"]
    # Given as "prefix"/"suffix", answered capitalised, as S3 does.
    assert {r["Name"]: r["Value"] for r in rules} == {"Prefix": "in/", "Suffix": ".jpg"}

    s3.put_object(Bucket="notified", Key="in/skip.png", Body=b"no")     # suffix does not match
    s3.put_object(Bucket="notified", Key="out/skip.jpg", Body=b"no")    # prefix does not match
    s3.put_object(Bucket="notified", Key="in/my photo.jpg", Body=b"abc")
    s3.copy_object(Bucket="notified", Key="in/copy.jpg", CopySource="notified/in/my photo.jpg")
    s3.delete_object(Bucket="notified", Key="in/copy.jpg")
    events = wait_for(lambda: (lambda e: e if len(e) >= 3 else None)(recorded_events(server, "s3rec")),
                      timeout=60, what="three notifications")
    recs = [e["Records"][0] for e in events]
    by_name = {r["eventName"]: r for r in recs}
    assert sorted(by_name) == ["ObjectCreated:Copy", "ObjectCreated:Put", "ObjectRemoved:Delete"], recs
    put = by_name["ObjectCreated:Put"]
    assert put["eventVersion"] == "2.1" and put["eventSource"] == "aws:s3"
    assert put["awsRegion"] == "us-east-1"
    assert put["s3"]["configurationId"] == "created"
    assert put["s3"]["bucket"]["name"] == "notified"
    assert put["s3"]["bucket"]["arn"] == "arn:aws:s3:::notified"
    obj = put["s3"]["object"]
    assert obj["key"] == "in/my+photo.jpg"  # URL-encoded, as S3 sends it
    assert obj["size"] == 3 and obj["eTag"] == hashlib.md5(b"abc").hexdigest()
    removed = by_name["ObjectRemoved:Delete"]
    assert removed["s3"]["configurationId"] == "removed"
    assert "size" not in removed["s3"]["object"]
    # Sequencers order the changes of one key.
    copy_seq = by_name["ObjectCreated:Copy"]["s3"]["object"]["sequencer"]
    assert removed["s3"]["object"]["sequencer"] > copy_seq


def test_notification_configuration_validation(server, s3):
    s3.create_bucket(Bucket="badconf")
    server.deploy("s3rec2", "python3.12", "app.handler", {"app.py": RECORDER})
    arn = lambda_arn("s3rec2")
    overlapping = {"LambdaFunctionConfigurations": [
        {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "a/"}]}}},
        {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:Put"],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "a/b/"}]}}},
    ]}
    assert error_of(s3.put_bucket_notification_configuration, Bucket="badconf",
                    NotificationConfiguration=overlapping) == ("InvalidArgument", 400)
    missing = {"LambdaFunctionConfigurations": [
        {"LambdaFunctionArn": lambda_arn("does-not-exist"), "Events": ["s3:ObjectCreated:*"]}]}
    assert error_of(s3.put_bucket_notification_configuration, Bucket="badconf",
                    NotificationConfiguration=missing) == ("InvalidArgument", 400)
    bad_event = {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:Nope"]}]}
    assert error_of(s3.put_bucket_notification_configuration, Bucket="badconf",
                    NotificationConfiguration=bad_event) == ("InvalidArgument", 400)
    # Disjoint filters are fine; an empty configuration clears it.
    ok = {"LambdaFunctionConfigurations": [
        {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".png"}]}}},
        {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".jpg"}]}}},
    ], "EventBridgeConfiguration": {}}
    s3.put_bucket_notification_configuration(Bucket="badconf", NotificationConfiguration=ok)
    conf = s3.get_bucket_notification_configuration(Bucket="badconf")
    assert len(conf["LambdaFunctionConfigurations"]) == 2 and "EventBridgeConfiguration" in conf
    s3.put_bucket_notification_configuration(Bucket="badconf", NotificationConfiguration={})
    conf = s3.get_bucket_notification_configuration(Bucket="badconf")
    assert "LambdaFunctionConfigurations" not in conf


# --- durability -----------------------------------------------------------------------

DURABLE_RECORDER = """
import os
def handler(event, context):
    # Made durable before the invocation ends: function logs are best-effort
    # telemetry and a kill -9 may drop the last of them, the async event's
    # completion is what the platform guarantees.
    fd = os.open(os.environ["OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (event["Records"][0]["s3"]["object"]["key"] + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"ok": True}
"""


def test_kill_9_keeps_acknowledged_objects_and_notifications(server_factory, data_dir, tmp_path):
    # What is under test is S3's outbox: a function run that fails on a loaded host
    # is retried by Lambda's async queue after a second here, not Lambda's minute.
    fast_retry = ("--async-retry-base", "1s")
    server = server_factory(*fast_retry)
    s3 = s3_client(server)
    out = tmp_path / "notified-keys"
    server.deploy("s3dur", "python3.12", "app.handler", {"app.py": DURABLE_RECORDER}, timeout_s=30,
                  environment={"OUT": str(out)})
    s3.create_bucket(Bucket="durable")
    # Notifications go nowhere while the function is missing... so point them at a
    # function that exists, then kill the server right after the PUTs are acknowledged.
    s3.put_bucket_notification_configuration(
        Bucket="durable",
        NotificationConfiguration={"LambdaFunctionConfigurations": [
            {"Id": "c", "LambdaFunctionArn": lambda_arn("s3dur"), "Events": ["s3:ObjectCreated:*"]}]})
    bodies = {f"k{i}": os.urandom(1000 + i) for i in range(20)}
    for k, b in bodies.items():
        s3.put_object(Bucket="durable", Key=k, Body=b)
    # A multipart upload in the middle: one part acknowledged, never completed.
    uid = s3.create_multipart_upload(Bucket="durable", Key="partial")["UploadId"]
    part = os.urandom(5 * 1024 * 1024)
    e1 = s3.upload_part(Bucket="durable", Key="partial", UploadId=uid, PartNumber=1, Body=part)["ETag"]
    server.kill()
    server2 = server_factory(*fast_retry, data=data_dir)
    s3 = s3_client(server2)
    for k, b in bodies.items():
        assert s3.get_object(Bucket="durable", Key=k)["Body"].read() == b, k
    # The upload survives with its part and can be completed; nothing of it is visible before.
    assert error_of(s3.head_object, Bucket="durable", Key="partial") == ("404", 404)
    parts = s3.list_parts(Bucket="durable", Key="partial", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, e1)]
    s3.complete_multipart_upload(Bucket="durable", Key="partial", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]})
    assert s3.get_object(Bucket="durable", Key="partial")["Body"].read() == part
    # Every acknowledged PUT is notified at least once, across the kill.
    seen = set()

    def keys():
        if out.exists():
            seen.update(line for line in out.read_text().splitlines() if line)
        return set(bodies) <= seen

    try:
        wait_for(keys, timeout=120, what="every PUT's notification after kill -9")
    except AssertionError:
        backlog = requests.get(f"{server2.api}/_nimbus/services/s3/outbox").json()
        raise AssertionError(f"notified keys {sorted(seen)}; outbox {backlog}")
    # No temporary or orphaned files are left behind.
    assert list((data_dir / "s3" / "tmp").iterdir()) == []


# --- bucket configurations ------------------------------------------------------------

def test_bucket_policy_is_stored_and_returned(s3):
    s3.create_bucket(Bucket="policied")
    assert error_of(s3.get_bucket_policy, Bucket="policied") == ("NoSuchBucketPolicy", 404)
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::policied/*"}]})
    s3.put_bucket_policy(Bucket="policied", Policy=policy)
    assert json.loads(s3.get_bucket_policy(Bucket="policied")["Policy"]) == json.loads(policy)
    assert error_of(s3.put_bucket_policy, Bucket="policied", Policy="{not json") == ("MalformedPolicy", 400)
    s3.delete_bucket_policy(Bucket="policied")
    assert error_of(s3.get_bucket_policy, Bucket="policied") == ("NoSuchBucketPolicy", 404)


def test_bucket_tagging(s3):
    s3.create_bucket(Bucket="tagged-bucket")
    assert error_of(s3.get_bucket_tagging, Bucket="tagged-bucket") == ("NoSuchTagSet", 404)
    s3.put_bucket_tagging(Bucket="tagged-bucket", Tagging={"TagSet": [{"Key": "team", "Value": "core"}]})
    assert s3.get_bucket_tagging(Bucket="tagged-bucket")["TagSet"] == [{"Key": "team", "Value": "core"}]
    s3.delete_bucket_tagging(Bucket="tagged-bucket")
    assert error_of(s3.get_bucket_tagging, Bucket="tagged-bucket") == ("NoSuchTagSet", 404)


def test_lifecycle_configuration_and_sweep(server, s3):
    s3.create_bucket(Bucket="lifecycle")
    assert error_of(s3.get_bucket_lifecycle_configuration, Bucket="lifecycle") == (
        "NoSuchLifecycleConfiguration", 404)
    s3.put_bucket_lifecycle_configuration(Bucket="lifecycle", LifecycleConfiguration={"Rules": [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 1},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
        {"ID": "tmp", "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "kind", "Value": "scratch"}]}},
         "Status": "Enabled", "Expiration": {"Days": 3}},
        {"ID": "off", "Filter": {"Prefix": "keep/"}, "Status": "Disabled", "Expiration": {"Days": 1}},
    ]})
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="lifecycle")["Rules"]}
    assert rules["logs"]["Expiration"]["Days"] == 1 and rules["off"]["Status"] == "Disabled"
    assert rules["tmp"]["Filter"]["And"]["Tags"] == [{"Key": "kind", "Value": "scratch"}]
    for k in ("logs/a", "logs/b", "tmp/x", "keep/y", "other"):
        s3.put_object(Bucket="lifecycle", Key=k, Body=b"1")
    s3.put_object(Bucket="lifecycle", Key="tmp/scratch", Body=b"1", Tagging="kind=scratch")
    uid = s3.create_multipart_upload(Bucket="lifecycle", Key="logs/mpu")["UploadId"]
    day = 86_400_000
    import time as _time
    now = int(_time.time() * 1000)

    def sweep(at):
        r = requests.post(f"{server.api}/_nimbus/services/s3/lifecycle/sweep", params={"now": at})
        assert r.status_code == 200, r.text
        return r.json()

    def keys():
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="lifecycle").get("Contents", []))

    assert sweep(now) == {"Expired": 0, "Aborted": 0}
    assert sweep(now + day + 1000) == {"Expired": 2, "Aborted": 0}
    assert keys() == ["keep/y", "other", "tmp/scratch", "tmp/x"]
    assert sweep(now + 3 * day + 1000) == {"Expired": 1, "Aborted": 1}
    assert keys() == ["keep/y", "other", "tmp/x"]
    assert error_of(s3.list_parts, Bucket="lifecycle", Key="logs/mpu", UploadId=uid) == ("NoSuchUpload", 404)
    s3.delete_bucket_lifecycle(Bucket="lifecycle")
    assert error_of(s3.get_bucket_lifecycle_configuration, Bucket="lifecycle") == (
        "NoSuchLifecycleConfiguration", 404)


def test_cors_configuration_preflight_and_response_headers(server, s3):
    s3.create_bucket(Bucket="browser")
    assert error_of(s3.get_bucket_cors, Bucket="browser") == ("NoSuchCORSConfiguration", 404)
    port = server.api.rsplit(":", 1)[1]
    host = {"Host": f"s3.localhost:{port}"}  # S3's path-style host: unsigned requests reach S3
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "content-type, x-amz-meta-owner", **host}
    r = requests.options(f"{server.api}/browser/uploads/a.jpg", headers=pre)
    assert r.status_code == 403 and "CORS is not enabled" in r.text, r.text
    s3.put_bucket_cors(Bucket="browser", CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["PUT", "GET"],
         "AllowedHeaders": ["content-type", "x-amz-meta-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
    ]})
    rules = s3.get_bucket_cors(Bucket="browser")["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["https://*.example.com"] and rules[0]["MaxAgeSeconds"] == 600
    r = requests.options(f"{server.api}/browser/uploads/a.jpg", headers=pre)
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Allow-Methods"] == "PUT"
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag"
    denied = dict(pre, Origin="https://evil.test")
    assert requests.options(f"{server.api}/browser/uploads/a.jpg", headers=denied).status_code == 403
    denied = dict(pre, **{"Access-Control-Request-Method": "DELETE"})
    assert requests.options(f"{server.api}/browser/uploads/a.jpg", headers=denied).status_code == 403
    # The actual request carries the headers too.
    r = requests.put(f"{server.api}/browser/uploads/a.jpg", data=b"img",
                     headers={"Origin": "https://app.example.com", **host})
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag"
    s3.delete_bucket_cors(Bucket="browser")
    assert error_of(s3.get_bucket_cors, Bucket="browser") == ("NoSuchCORSConfiguration", 404)


def test_versioning(s3):
    s3.create_bucket(Bucket="versioned")
    assert "Status" not in s3.get_bucket_versioning(Bucket="versioned")
    s3.put_object(Bucket="versioned", Key="k", Body=b"v0")  # before versioning: the null version
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="versioned")["Status"] == "Enabled"
    v1 = s3.put_object(Bucket="versioned", Key="k", Body=b"v1")["VersionId"]
    v2 = s3.put_object(Bucket="versioned", Key="k", Body=b"v2")["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    v3 = s3.copy_object(Bucket="versioned", Key="copied",
                        CopySource={"Bucket": "versioned", "Key": "k", "VersionId": v1})["VersionId"]
    assert v3 not in (v1, v2, "null")
    assert s3.get_object(Bucket="versioned", Key="copied")["Body"].read() == b"v1"
    s3.delete_object(Bucket="versioned", Key="copied", VersionId=v3)
    got = s3.get_object(Bucket="versioned", Key="k")
    assert got["Body"].read() == b"v2" and got["VersionId"] == v2
    assert s3.get_object(Bucket="versioned", Key="k", VersionId=v1)["Body"].read() == b"v1"
    assert s3.get_object(Bucket="versioned", Key="k", VersionId="null")["Body"].read() == b"v0"
    assert error_of(s3.get_object, Bucket="versioned", Key="k", VersionId="nope") == ("NoSuchVersion", 404)
    # A delete makes a marker; the versions stay.
    d = s3.delete_object(Bucket="versioned", Key="k")
    assert d["DeleteMarker"] is True
    marker = d["VersionId"]
    assert error_of(s3.get_object, Bucket="versioned", Key="k") == ("NoSuchKey", 404)
    assert "Contents" not in s3.list_objects_v2(Bucket="versioned")
    listed = s3.list_object_versions(Bucket="versioned")
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(v2, False), (v1, False), ("null", False)]
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]
    # Deleting the marker brings v2 back; deleting v2 by id brings v1 back.
    s3.delete_object(Bucket="versioned", Key="k", VersionId=marker)
    assert s3.get_object(Bucket="versioned", Key="k")["Body"].read() == b"v2"
    s3.delete_object(Bucket="versioned", Key="k", VersionId=v2)
    got = s3.get_object(Bucket="versioned", Key="k")
    assert got["Body"].read() == b"v1" and got["VersionId"] == v1
    # Pagination over versions.
    for i in range(3):
        s3.put_object(Bucket="versioned", Key="p", Body=str(i).encode())
    pages = s3.get_paginator("list_object_versions").paginate(Bucket="versioned", PaginationConfig={"PageSize": 2})
    ids = [(v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", [])]
    assert len(ids) == 5 and len(set(ids)) == 5 and ids[:2] == [("k", v1), ("k", "null")]
    # A versioned bucket is not empty while versions remain.
    assert error_of(s3.delete_bucket, Bucket="versioned") == ("BucketNotEmpty", 409)
    # Suspended: writes replace the null version.
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Suspended"})
    r = s3.put_object(Bucket="versioned", Key="k", Body=b"s1")
    assert r["VersionId"] == "null"
    s3.put_object(Bucket="versioned", Key="k", Body=b"s2")
    assert s3.get_object(Bucket="versioned", Key="k", VersionId="null")["Body"].read() == b"s2"
    keys = [(v["Key"], v["VersionId"]) for v in s3.list_object_versions(Bucket="versioned", Prefix="k")["Versions"]]
    assert keys == [("k", "null"), ("k", v1)]


def test_large_single_put_digests_and_checksums_survive_the_pipeline(s3):
    """A body past the inline threshold (1 MiB) is written, hashed (SHA-256 blob
    name, MD5 ETag, the requested checksum) by concurrent workers: every digest must
    still be the whole body's, and a wrong Content-MD5 still loses nothing."""
    s3.create_bucket(Bucket="bigput")
    data = os.urandom(9 * 1024 * 1024 + 12345)
    md5 = hashlib.md5(data).digest()
    r = s3.put_object(Bucket="bigput", Key="big", Body=data, ContentMD5=base64.b64encode(md5).decode(),
                      ChecksumAlgorithm="SHA256")
    assert r["ETag"] == f'"{md5.hex()}"'
    assert r["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    got = s3.get_object(Bucket="bigput", Key="big", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ContentLength"] == len(data)
    # Same content under another key: stored once, both readable.
    s3.put_object(Bucket="bigput", Key="copy", Body=data)
    assert s3.get_object(Bucket="bigput", Key="copy")["Body"].read() == data
    # A wrong MD5 of a large body is BadDigest and leaves the old object as it was.
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert error_of(s3.put_object, Bucket="bigput", Key="big", Body=data[:-1], ContentMD5=bad) == ("BadDigest", 400)
    assert s3.get_object(Bucket="bigput", Key="big")["Body"].read() == data

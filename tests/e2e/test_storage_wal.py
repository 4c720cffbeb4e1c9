"""Every service database in the data dir is in WAL mode (the mode is kept in
the file, so a fresh connection reads what the server set). The server opens
them all through `nimbus_store::open_durable` (WAL, `synchronous=FULL`); the
synchronous level is per connection and is unit-tested in `nimbus-store`."""

import sqlite3

import boto3
from botocore.config import Config


def test_every_service_database_is_wal(server):
    kw = dict(endpoint_url=server.api, region_name="us-east-1", aws_access_key_id="x",
              aws_secret_access_key="y", config=Config(retries={"total_max_attempts": 1}))
    # One write each, so every database exists whether it is opened lazily or not.
    boto3.client("s3", **kw).create_bucket(Bucket="wal-check")
    boto3.client("ses", **kw).verify_email_identity(EmailAddress="wal@example.com")
    boto3.client("kms", **kw).create_key()
    boto3.client("secretsmanager", **kw).create_secret(Name="wal", SecretString="x")
    boto3.client("ssm", **kw).put_parameter(Name="wal", Value="x", Type="String")
    dbs = sorted(p for p in server.data_dir.glob("*.db"))
    names = {p.stem for p in dbs}
    for svc in ["s3", "ses", "kms", "secretsmanager", "ssm"]:
        assert svc in names, (svc, names)
    modes = {}
    for p in dbs:
        with sqlite3.connect(p) as c:
            modes[p.name] = c.execute("PRAGMA journal_mode").fetchone()[0]
    assert all(m == "wal" for m in modes.values()), modes

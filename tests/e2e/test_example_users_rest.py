"""examples/users-rest-dynamodb (issue 18, seed pattern 1): a Users REST API on a
DynamoDB table, Node.js with the SDK v3 DocumentClient, deployed unchanged from its
serverless.yml (the table from `resources:`, its name by `!Ref`) with the real CLI,
driven over HTTP and checked with boto3."""

import shutil
import subprocess

import boto3
import requests

from conftest import NIMBUS_BIN, ROOT



def deploy(server, app):
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy"], cwd=app,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    return p


def test_users_rest_api_on_a_table(server, tmp_path):
    app = tmp_path / "users-rest-dynamodb"
    shutil.copytree(ROOT / "examples" / "users-rest-dynamodb", app)
    deploy(server, app)
    drive(server)


def drive(server):
    ddb = boto3.client("dynamodb", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    table = ddb.describe_table(TableName="users-rest-dev-users")["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["id"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by-email"

    url = server.gateway + "/users"
    ada = requests.post(url, json={"name": "Ada", "email": "Ada@example.com"}, timeout=30)
    assert ada.status_code == 201, ada.text
    ada = ada.json()
    assert ada["email"] == "ada@example.com"
    bob = requests.post(url, json={"name": "Bob", "email": "bob@example.com"}, timeout=30).json()
    assert requests.post(url, json={"name": "A2", "email": "ada@example.com"}, timeout=30).status_code == 409
    assert requests.post(url, data="not json", timeout=30).status_code == 400

    listed = requests.get(url, timeout=30).json()["users"]
    assert [u["id"] for u in listed] == [ada["id"], bob["id"]]
    # The function wrote through the DocumentClient: plain attributes in the table.
    item = ddb.get_item(TableName="users-rest-dev-users", Key={"id": {"S": bob["id"]}})["Item"]
    assert item["name"] == {"S": "Bob"}

    r = requests.put(f"{url}/{bob['id']}", json={"name": "Robert", "email": "bob@example.com"}, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == "Robert"
    assert requests.put(f"{url}/{bob['id']}", json={"name": "x", "email": "ada@example.com"},
                        timeout=30).status_code == 409
    assert requests.put(f"{url}/nope", json={"name": "x", "email": "x@example.com"}, timeout=30).status_code == 404
    assert requests.get(f"{url}/{bob['id']}", timeout=30).json()["name"] == "Robert"
    assert requests.delete(f"{url}/{bob['id']}", timeout=30).status_code == 204
    assert requests.delete(f"{url}/{bob['id']}", timeout=30).status_code == 404
    assert requests.get(f"{url}/{bob['id']}", timeout=30).status_code == 404
    assert [u["id"] for u in requests.get(url, timeout=30).json()["users"]] == [ada["id"]]


def test_app_rm_keeps_the_retained_table(server, tmp_path):
    """`nimbus app rm` removes the app; the table has `DeletionPolicy: Retain`, so
    it stays with its items (as CloudFormation's stack deletion keeps it)."""
    app = tmp_path / "users-rest-dynamodb"
    shutil.copytree(ROOT / "examples" / "users-rest-dynamodb", app)
    deploy(server, app)
    ddb = boto3.client("dynamodb", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    ddb.put_item(TableName="users-rest-dev-users", Item={"id": {"S": "kept"}})
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "app", "rm", "users-rest-dev"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Retained UsersTable (users-rest-dev-users)" in p.stdout, p.stdout
    assert ddb.get_item(TableName="users-rest-dev-users", Key={"id": {"S": "kept"}})["Item"]
    assert server.session.get(f"{server.api}/_nimbus/apps/users-rest-dev", timeout=10).status_code == 404
    assert requests.get(server.gateway + "/users", timeout=30).status_code == 404

"""examples/users-api end to end: its deploy script against the real binary, then
every route over HTTP through the gateway, as a REST client would."""

import os
import subprocess

import requests

from conftest import NIMBUS_BIN, ROOT, concurrently

EXAMPLE = ROOT / "examples" / "users-api"


def deploy(server, tmp_path):
    env = dict(os.environ, NIMBUS=NIMBUS_BIN, NIMBUS_ENDPOINT=server.api,
               USERS_DB=str(tmp_path / "state" / "users.db"))
    p = subprocess.run([str(EXAMPLE / "deploy.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for route in ("GET /users ", "POST /users ", "GET /users/{id}", "PUT /users/{id}", "DELETE /users/{id}"):
        assert route in p.stdout, p.stdout
    return server.gateway + "/users"


def test_users_api(server, tmp_path):
    users = deploy(server, tmp_path)

    r = requests.get(users)
    assert r.status_code == 200 and r.json() == {"users": []}

    r = requests.post(users, json={"name": "Ada Lovelace", "email": "ada@example.com"})
    assert r.status_code == 201, r.text
    ada = r.json()
    assert ada["name"] == "Ada Lovelace" and ada["email"] == "ada@example.com"
    assert r.headers["location"] == f"/users/{ada['id']}"
    assert r.headers["content-type"] == "application/json"

    for bad in (b"not json", b"[1]", b'{"email": "x@example.com"}', b'{"name": "X", "email": "nope"}',
                b'{"name": "X", "email": "x@example.com", "admin": true}'):
        r = requests.post(users, data=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["message"]
    r = requests.post(users, json={"name": "Ada again", "email": "ADA@example.com"})
    assert r.status_code == 409

    r = requests.get(f"{users}/{ada['id']}")
    assert r.status_code == 200 and r.json() == ada
    for missing in ("999999", "abc"):
        r = requests.get(f"{users}/{missing}")
        assert r.status_code == 404 and r.json() == {"message": "User not found"}

    r = requests.put(f"{users}/{ada['id']}", json={"name": "Ada King", "email": "ada@example.org"})
    assert r.status_code == 200
    assert r.json() == {**ada, "name": "Ada King", "email": "ada@example.org"}
    assert requests.put(f"{users}/{ada['id']}", json={"name": ""}).status_code == 400
    assert requests.put(f"{users}/999999", json={"name": "N", "email": "n@example.com"}).status_code == 404

    # Methods the API does not route are the gateway's 405.
    r = requests.patch(f"{users}/{ada['id']}", json={})
    assert r.status_code == 405

    r = requests.delete(f"{users}/{ada['id']}")
    assert r.status_code == 204 and r.content == b""
    assert requests.delete(f"{users}/{ada['id']}").status_code == 404
    assert requests.get(f"{users}/{ada['id']}").status_code == 404


def test_users_api_state_is_shared_across_instances(server, tmp_path):
    users = deploy(server, tmp_path)
    # Concurrent creates run on several instances at once; all land in one store.
    results = concurrently(8, lambda i: requests.post(
        users, json={"name": f"User {i}", "email": f"user{i}@example.com"}, timeout=60))
    assert [r.status_code for r in results] == [201] * 8, [r.text for r in results]
    listed = requests.get(users, params={"limit": "1000"}).json()["users"]
    emails = {u["email"] for u in listed}
    assert {f"user{i}@example.com" for i in range(8)} <= emails
    assert requests.get(users, params={"limit": "0"}).status_code == 400
    ids = {r.json()["id"] for r in results}
    assert len(ids) == 8
    for uid in ids:
        assert requests.get(f"{users}/{uid}").status_code == 200

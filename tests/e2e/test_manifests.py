"""`nimbus deploy` of app manifests, end to end against the real binary: the two
examples (examples/orders-api-python's serverless.yml, examples/users-crud-node's
SAM template.yaml) deployed from their manifests and driven over HTTP through the
gateway; redeploys that prune what is no longer declared; diagnostics with
file:line; a failed apply that restores the previous app."""

import json
import os
import re
import shutil
import subprocess

import pytest
import requests

from conftest import NIMBUS_BIN, ROOT

EXAMPLES = ROOT / "examples"
NEXT_FIRE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")


def deploy(server, cwd, *args, env=None, expect=0):
    e = dict(os.environ)
    e.pop("NIMBUS_ENDPOINT", None)
    e.update(env or {})
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy", *map(str, args)],
                       cwd=cwd, capture_output=True, text=True, env=e, timeout=180)
    assert p.returncode == expect, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def copy_example(name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(EXAMPLES / name, dst, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    return dst


def functions(server):
    r = server.session.get(server.api + "/_nimbus/functions", timeout=10)
    return {f["function"]["name"]: f["function"] for f in r.json()["functions"]}


def routes(server):
    return {r["route_key"]: r for r in server.session.get(server.api + "/_nimbus/routes", timeout=10).json()["routes"]}


def schedules(server):
    r = server.session.get(server.api + "/_nimbus/schedules", timeout=10)
    assert r.status_code == 200, "the scheduler's control API is not there: " + r.text
    return {s["name"]: s for s in r.json()["schedules"]}


def drop_function(manifest, name, next_top_level):
    """Remove the block of `name:` up to the line `next_top_level` (exclusive) or EOF."""
    text = manifest.read_text()
    start = text.index(name)
    end = text.find(next_top_level, start) if next_top_level else -1
    manifest.write_text(text[:start] + (text[end:] if end >= 0 else ""))


def test_orders_api_serverless_yml(server, tmp_path):
    app = copy_example("orders-api-python", tmp_path)
    env = {"ORDERS_DB": str(tmp_path / "state" / "orders.db")}
    p = deploy(server, app, env=env)
    out = p.stdout
    for fn in ("orders-api-dev-api", "orders-api-dev-cleanup"):
        assert fn in out, out
    for route in ("POST /orders ", "GET /orders ", "GET /orders/{id}", "POST /orders/{id}/cancel"):
        assert route in out, out
    assert server.gateway + "/orders" in out
    assert "cron(0 2 * * ? *)" in out and "rate(5 minutes)" in out
    assert len(NEXT_FIRE.findall(out)) == 2, out
    assert "packaging" in p.stderr

    fns = functions(server)
    assert fns["orders-api-dev-api"]["tags"]["nimbus:app"] == "orders-api-dev"
    assert fns["orders-api-dev-api"]["memory_mb"] == 256
    assert fns["orders-api-dev-api"]["handler"] == "src/orders.handler"
    assert fns["orders-api-dev-cleanup"]["timeout_s"] == 60
    assert fns["orders-api-dev-api"]["environment"]["STAGE"] == "dev"
    sch = schedules(server)
    warm = sch["orders-api-dev-api-schedule-1"]
    assert warm["expression"] == "rate(5 minutes)" and warm["input"] == {"source": "warmup"}
    assert warm["app"] == "orders-api-dev" and warm["function"] == "orders-api-dev-api"
    nightly = sch["orders-api-dev-cleanup-schedule-1"]
    assert nightly["expression"] == "cron(0 2 * * ? *)" and nightly["next_fire_ms"] > 0
    eic = server.session.get(server.api + "/2019-09-25/functions/orders-api-dev-cleanup/event-invoke-config")
    assert eic.status_code == 200 and eic.json()["MaximumRetryAttempts"] == 1

    orders = server.gateway + "/orders"
    r = requests.post(orders, json={"item": "coffee", "quantity": 2})
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["item"] == "coffee" and order["status"] == "open" and order["stage"] == "dev"
    assert requests.get(f"{orders}/{order['id']}").json() == order
    assert requests.get(orders).json() == {"orders": [order]}
    assert requests.post(orders, data=b"nope").status_code == 400
    assert requests.get(f"{orders}/999").status_code == 404
    r = requests.post(f"{orders}/{order['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert requests.post(f"{orders}/{order['id']}/cancel").status_code == 409

    # The warm-up schedule's input, as the scheduler sends it: recognised, no DB work.
    assert server.invoke_json("orders-api-dev-api", {"source": "warmup"})[0] == {"warmup": True}
    scheduled = {"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": "000000000000", "time": "2030-01-01T02:00:00Z", "region": "us-east-1",
                 "resources": [], "detail": {}}
    assert server.invoke_json("orders-api-dev-cleanup", scheduled)[0] == {"deleted": 0}

    # Redeploying the same manifest changes nothing and removes nothing.
    p = deploy(server, app, env=env)
    assert "Removed" not in p.stdout
    assert [o["id"] for o in requests.get(orders).json()["orders"]] == [order["id"]]

    # A function dropped from the manifest goes, with its schedule.
    drop_function(app / "serverless.yml", "  cleanup:", None)
    p = deploy(server, app, env=env)
    assert "Removed (no longer declared): function orders-api-dev-cleanup, schedule orders-api-dev-cleanup-schedule-1" in p.stdout, p.stdout
    assert "orders-api-dev-cleanup" not in functions(server)
    assert server.delete("orders-api-dev-cleanup").status_code == 404
    assert set(n for n in schedules(server) if n.startswith("orders-api-dev")) == {"orders-api-dev-api-schedule-1"}
    assert requests.get(orders).status_code == 200

    # Another stage is another app; on one gateway its routes would take dev's,
    # so it is refused before anything changes.
    p = deploy(server, app, "--stage", "qa", env=env, expect=1)
    assert "route POST /orders belongs to app orders-api-dev" in p.stderr, p.stderr
    assert "orders-api-qa-api" not in functions(server)


def test_users_crud_sam_template(server, tmp_path):
    app = copy_example("users-crud-node", tmp_path)
    data = tmp_path / "data"
    args = ("--stack-name", "users-e2e", "--parameter-overrides", f"DataDir={data}")
    p = deploy(server, app, *args)
    assert "users-e2e-UsersFunction" in p.stdout and "users-e2e-HealthFunction" in p.stdout
    fns = functions(server)
    users_fn = fns["users-e2e-UsersFunction"]
    assert users_fn["runtime"] == "nodejs20.x" and users_fn["memory_mb"] == 256
    assert users_fn["environment"] == {"STAGE": "dev", "USERS_DIR": f"{data}/users-e2e/users"}
    assert users_fn["description"] == "Users CRUD (dev)"
    assert users_fn["tags"]["nimbus:app"] == "users-e2e"

    users = server.gateway + "/users"
    health = requests.get(server.gateway + "/health").json()
    assert health["usersFunction"] == "users-e2e-UsersFunction"
    url = server.session.get(server.api + "/2021-10-31/functions/users-e2e-HealthFunction/url").json()
    assert url["AuthType"] == "NONE" and url["FunctionUrl"] in p.stdout
    assert requests.get(url["FunctionUrl"]).json() == health
    assert health["usersFunctionArn"].endswith(":function:users-e2e-UsersFunction")

    assert requests.get(users).json() == {"users": []}
    r = requests.post(users, json={"name": "Ada", "email": "ada@example.com"})
    assert r.status_code == 201, r.text
    ada = r.json()
    assert r.headers["location"] == f"/users/{ada['id']}"
    assert requests.post(users, json={"name": "Ada 2", "email": "ADA@example.com"}).status_code == 409
    assert requests.post(users, data=b"{").status_code == 400
    assert requests.get(f"{users}/{ada['id']}").json() == ada
    r = requests.put(f"{users}/{ada['id']}", json={"name": "Ada King", "email": "ada@example.org"})
    assert r.status_code == 200 and r.json()["name"] == "Ada King"
    assert requests.get(users).json()["users"][0]["email"] == "ada@example.org"
    assert requests.delete(f"{users}/{ada['id']}").status_code == 204
    assert requests.get(f"{users}/{ada['id']}").status_code == 404

    # Parameters change the deployed configuration through !If and !Sub.
    deploy(server, app, *args, "Stage=prod")
    assert functions(server)["users-e2e-UsersFunction"]["memory_mb"] == 512
    assert requests.get(server.gateway + "/health").json()["stage"] == "prod"

    # Drop HealthFunction: its function and route go; the users API stays.
    drop_function(app / "template.yaml", "  HealthFunction:", "\nOutputs:")
    p = deploy(server, app, *args)
    assert "function users-e2e-HealthFunction" in p.stdout and "route GET /health" in p.stdout, p.stdout
    assert "users-e2e-HealthFunction" not in functions(server)
    assert "GET /health" not in routes(server)
    assert requests.get(server.gateway + "/health").status_code == 404
    assert requests.get(users).status_code == 200


def write_app(tmp_path, manifest, files=None):
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "serverless.yml").write_text(manifest)
    for name, body in (files or {"handler.py": "def main(event, context):\n    return {'v': 1}\n"}).items():
        (app / name).write_text(body)
    return app


def test_errors_name_file_and_line_and_deploy_nothing(server, tmp_path):
    app = write_app(tmp_path, "service: broken\nprovider:\n  runtime: python3.12\nfunctions:\n"
                              "  a:\n    handler: handler.main\n    memorySize: huge\n  b:\n    handler: missing.main\n")
    before = set(functions(server))
    p = deploy(server, app, expect=1)
    assert "serverless.yml:7: error: functions.a.memorySize must be an integer, found a string" in p.stderr
    assert "serverless.yml:9: error: functions.b.handler: handler file" in p.stderr
    assert "nothing was deployed" in p.stderr
    assert set(functions(server)) == before

    # Route keys, expressions and zones are checked as the server will, up front.
    app = write_app(tmp_path, "service: broken\nprovider:\n  runtime: python3.12\nfunctions:\n"
                              "  a:\n    handler: handler.main\n    events:\n      - httpApi: 'GET /x/{proxy+}/y'\n"
                              "      - schedule: cron(99 2 * * ? *)\n")
    p = deploy(server, app, expect=1)
    assert "serverless.yml:9: error: functions.a.events[1].schedule: \"cron(99 2 * * ? *)\"" in p.stderr, p.stderr
    assert "nothing was deployed" in p.stderr
    (app / "serverless.yml").write_text((app / "serverless.yml").read_text().replace("cron(99", "cron(0"))
    p = deploy(server, app, expect=1)
    assert "serverless.yml:8: error: " in p.stderr and "{proxy+}" in p.stderr, p.stderr
    assert set(functions(server)) == before

    # -f names the file as given.
    write_app(tmp_path, "service: broken\nprovider:\n  runtime: python3.12\nfunctions:\n"
                        "  a:\n    handler: handler.main\n    memorySize: huge\n")
    p = deploy(server, tmp_path, "-f", "app/serverless.yml", expect=1)
    assert "app/serverless.yml:7: error:" in p.stderr


def test_unsupported_and_unknown_are_reported_and_the_rest_deploys(server, tmp_path):
    app = write_app(tmp_path, "service: partial\nprovider:\n  runtime: python3.12\nfunctions:\n"
                              "  a:\n    handler: handler.main\n    memorySiz: 512\n    events:\n"
                              "      - websocket: $connect\n"
                              "      - httpApi: GET /partial\n")
    # Strict by default (issue 18): what Nimbus cannot honour fails the deploy,
    # with file:line, before any change.
    before = set(functions(server))
    p = deploy(server, app, expect=1)
    assert "serverless.yml:9: not supported yet: event 'websocket' of functions.a" in p.stderr
    assert "nothing was deployed" in p.stderr and "--allow-unsupported" in p.stderr, p.stderr
    assert set(functions(server)) == before
    assert requests.get(server.gateway + "/partial").status_code == 404

    # --allow-unsupported deploys the rest, on purpose, with the same report.
    p = deploy(server, app, "--allow-unsupported")
    assert "serverless.yml:7: warning: unknown key 'functions.a.memorySiz'" in p.stderr
    assert "serverless.yml:9: not supported yet: event 'websocket' of functions.a" in p.stderr
    assert requests.get(server.gateway + "/partial").json() == {"v": 1}

    # A function URL comes and goes with the manifest.
    manifest = (app / "serverless.yml").read_text()
    (app / "serverless.yml").write_text(manifest.replace("    memorySiz: 512\n", "    url: true\n"))
    deploy(server, app, "--allow-unsupported")
    url_api = server.api + "/2021-10-31/functions/partial-dev-a/url"
    url = server.session.get(url_api).json()["FunctionUrl"]
    assert requests.get(url).json() == {"v": 1}
    (app / "serverless.yml").write_text(manifest)
    deploy(server, app, "--allow-unsupported")
    assert server.session.get(url_api).status_code == 404


def test_failed_apply_restores_the_previous_app(server, tmp_path):
    manifest = ("service: rollback\nprovider:\n  runtime: python3.12\n  memorySize: {mem}\nfunctions:\n"
                "  a:\n    handler: handler.main\n    events:\n      - httpApi: GET /rb\n{extra}")
    app = write_app(tmp_path, manifest.format(mem=256, extra=""))
    deploy(server, app)
    before_fn = functions(server)["rollback-dev-a"]
    # A new function with a route and a schedule, new code and memory for the old
    # one, then an async destination the server refuses (no SQS in Nimbus yet):
    # everything done before it is undone.
    write_app(tmp_path, manifest.format(mem=512, extra=(
        "  b:\n    handler: handler.main\n    destinations:\n"
        "      onFailure: arn:aws:sqs:us-east-1:000000000000:dlq\n"
        "    events:\n      - httpApi: GET /rb2\n      - schedule: rate(1 day)\n")),
        files={"handler.py": "def main(e, c):\n    return {'v': 2}\n"})
    p = deploy(server, app, expect=1)
    assert "setting async invocation of rollback-dev-b" in p.stderr, p.stderr
    assert "the previous version of app rollback-dev is restored" in p.stderr, p.stderr
    fns = functions(server)
    assert "rollback-dev-b" not in fns
    after = fns["rollback-dev-a"]
    assert after["memory_mb"] == 256 and after["code_sha256"] == before_fn["code_sha256"]
    assert "GET /rb2" not in routes(server)
    assert not [n for n in schedules(server) if n.startswith("rollback-dev")]
    assert requests.get(server.gateway + "/rb").json() == {"v": 1}


def test_an_app_cannot_take_another_apps_resources(server, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "handler.py").write_text("def main(e, c):\n    return {'app': 'one'}\n")
    (one / "serverless.yml").write_text("service: one\nprovider:\n  runtime: python3.12\nfunctions:\n"
                                        "  a:\n    handler: handler.main\n    events:\n      - httpApi: GET /owned\n")
    deploy(server, one)
    two = tmp_path / "two"
    two.mkdir()
    (two / "handler.py").write_text("def main(e, c):\n    return {'app': 'two'}\n")
    (two / "serverless.yml").write_text("service: two\nprovider:\n  runtime: python3.12\nfunctions:\n"
                                        "  a:\n    handler: handler.main\n    events:\n      - httpApi: GET /owned\n")
    p = deploy(server, two, expect=1)
    assert "route GET /owned belongs to app one-dev" in p.stderr, p.stderr
    assert "two-dev-a" not in functions(server)
    assert requests.get(server.gateway + "/owned").json() == {"app": "one"}

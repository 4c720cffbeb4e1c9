"""The first thing a user does: deploy a Python handler and invoke it."""

PY_HELLO = """
import json
def handler(event, context):
    print("hello from", context.function_name)
    return {"statusCode": 200, "body": json.dumps({"message": f"Hello {event.get('name', 'world')}"})}
"""


def test_deploy_and_invoke_python(server):
    server.deploy("smoke", "python3.12", "app.handler", {"app.py": PY_HELLO})
    body, r = server.invoke_json("smoke", {"name": "Ada"})
    assert body["statusCode"] == 200
    assert '"Hello Ada"' in body["body"]
    assert r.headers["x-amz-executed-version"] == "$LATEST"
    assert "x-amz-function-error" not in r.headers
    lines = server.log_lines("smoke", r.headers["x-amzn-requestid"])
    assert lines[0].startswith("START RequestId: ")
    assert "hello from smoke" in lines
    assert lines[-1].startswith("REPORT RequestId: ")


def test_unknown_function_is_resource_not_found(server):
    r = server.invoke("does-not-exist", {})
    assert r.status_code == 404
    assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "Function not found" in r.json()["message"]

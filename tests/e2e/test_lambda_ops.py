"""Every operation in botocore's Lambda model reaches Nimbus's router: implemented ones
are served, the rest answer 501 NotImplementedException naming the operation — never a
panic, never a silent 200, never a generic "unknown"."""

import botocore.session
import pytest
import requests

MODEL = botocore.session.get_session().get_service_model("lambda")


def request_for(op_name):
    http = MODEL.operation_model(op_name).http
    uri = http["requestUri"]
    path, _, query = uri.partition("?")
    # Fill every {Label} with a name that exists nowhere.
    parts = [("nimbus-ops-x" if p.startswith("{") else p) for p in path.split("/")]
    return http["method"], "/".join(parts), query


@pytest.mark.parametrize("op_name", sorted(MODEL.operation_names))
def test_operation_is_routed(server, op_name):
    method, path, query = request_for(op_name)
    r = requests.request(method, f"{server.api}{path}" + (f"?{query}" if query else ""),
                         data=b"{}", headers={"content-type": "application/json"}, timeout=30)
    error_type = r.headers.get("x-amzn-errortype", "")
    assert error_type != "UnknownOperationException", (op_name, r.status_code, r.text)
    assert r.status_code < 500 or r.status_code == 501, (op_name, r.status_code, r.text)
    if r.status_code == 501:
        assert error_type == "NotImplementedException", r.headers
        assert op_name in r.json()["message"], r.text


def test_not_implemented_surfaces_in_boto3(server):
    import boto3
    from botocore.config import Config
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test",
                       config=Config(retries={"max_attempts": 0}))
    with pytest.raises(lam.exceptions.ClientError) as e:
        lam.list_code_signing_configs()
    assert e.value.response["Error"]["Code"] == "NotImplementedException"
    assert "ListCodeSigningConfigs" in e.value.response["Error"]["Message"]

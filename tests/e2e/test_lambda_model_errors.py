"""Every error Nimbus's Lambda front-end answers is one the Lambda API model lists for
that operation (botocore's service-2.json), or ValidationException, which AWS's
request validation returns for any operation before it reaches Lambda. Each
implemented operation is probed with requests that must fail: names and ids that
exist nowhere, an empty JSON body, a body that is not JSON, and out-of-range
paging."""

import botocore.session
import pytest
import requests

MODEL = botocore.session.get_session().get_service_model("lambda")
GENERIC = {"ValidationException"}


def implemented(server):
    out = []
    for op_name in sorted(MODEL.operation_names):
        http = MODEL.operation_model(op_name).http
        path, _, query = http["requestUri"].partition("?")
        parts = [("nimbus-model-x" if p.startswith("{") else p) for p in path.split("/")]
        url = f"{server.api}{'/'.join(parts)}" + (f"?{query}" if query else "")
        r = requests.request(http["method"], url, data=b"{}", timeout=30,
                             headers={"content-type": "application/json"})
        if r.status_code != 501:
            out.append((op_name, http["method"], url))
    return out


def probes(method, url):
    sep = "&" if "?" in url else "?"
    yield method, url, b"{}"
    yield method, url, b"{not json"
    yield method, url + f"{sep}MaxItems=0", b"{}"
    yield method, url + f"{sep}Qualifier=nimbus-nope", b"{}"
    yield method, url.replace("nimbus-model-x", "99"), b"{}"
    yield method, url.replace("nimbus-model-x", "bad%2Fname"), b"{}"


def test_errors_are_the_models(server):
    wrong = []
    ops = implemented(server)
    assert len(ops) > 50
    for op_name, method, url in ops:
        allowed = {e.name for e in MODEL.operation_model(op_name).error_shapes} | GENERIC
        for m, u, body in probes(method, url):
            r = requests.request(m, u, data=body, timeout=30, headers={"content-type": "application/json"})
            code = r.headers.get("x-amzn-errortype", "").split(":")[0]
            assert r.status_code < 500 or code in allowed, (op_name, u, r.status_code, r.text)
            if r.status_code >= 400 and code not in allowed:
                wrong.append((op_name, u.split("?", 1)[-1] if "?" in u else "", body[:5], code))
    assert not wrong, "\n".join(map(str, sorted(set(wrong))))

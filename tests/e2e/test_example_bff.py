"""examples/bff-node (issue 18, seed pattern 6: backend-for-frontend): the
serverless.yml deployed unchanged with the real CLI, both routes driven over HTTP
through the gateway."""

import shutil
import subprocess

import requests

from conftest import NIMBUS_BIN, ROOT


def test_backend_for_frontend_pair_of_routes(server, tmp_path):
    app = tmp_path / "bff-node"
    shutil.copytree(ROOT / "examples" / "bff-node", app)
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy"], cwd=app,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr and "warning" not in p.stderr, p.stderr
    assert "bff-dev-web" in p.stdout and "bff-dev-mobile" in p.stdout

    web = requests.get(server.gateway + "/web/products/p1", timeout=30)
    assert web.status_code == 200, web.text
    page = web.json()
    assert page["price"] == {"amount": "129.00", "currency": "EUR"}
    assert page["images"] == ["p1-front.jpg", "p1-side.jpg", "p1-sole.jpg"]
    assert page["availability"] == "14 in stock"
    assert page["rating"] == 4.5
    assert page["related"] == [{"id": "p2", "name": "Running socks (3 pairs)"}]

    mobile = requests.get(server.gateway + "/mobile/products/p2", timeout=30)
    assert mobile.status_code == 200, mobile.text
    assert mobile.json() == {"id": "p2", "name": "Running socks (3 pairs)", "price": "19.00",
                             "image": "p2.jpg", "inStock": False}
    assert mobile.headers["cache-control"] == "max-age=60"
    # The mobile card is the smaller payload: what the pattern is for.
    card = requests.get(server.gateway + "/mobile/products/p1", timeout=30)
    assert len(card.content) * 3 < len(web.content)

    for route in ("/web/products/nope", "/mobile/products/nope"):
        r = requests.get(server.gateway + route, timeout=30)
        assert r.status_code == 404 and r.json() == {"message": "no such product"}

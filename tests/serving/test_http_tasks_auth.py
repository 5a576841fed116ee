"""Bearer tokens on the /v1 task endpoints (each shares its gRPC method's token) while the console's
pages and /openapi.json stay open, as health does: they hold no data."""

from __future__ import annotations

import pytest

from tests.serving.conftest import server_config, start_server
from tests.serving.rest_client import Http

TOKEN = "console-test-token"


@pytest.fixture(scope="module")
def guarded_http(repository, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "inference.token"
    path.write_text(TOKEN + "\n")
    server = start_server(server_config(repository, auth_token_file=path, providers="cpu"))
    yield Http(server.server.http_port)
    server.stop()


def test_task_endpoints_need_the_token_and_pages_do_not(guarded_http):
    status, headers, _ = guarded_http.post("/v1/classify", {"images": ["aGVsbG8="]})
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert guarded_http.get("/v1/models")[0] == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert "no ready 'classification' model" in guarded_http.error(
        404, guarded_http.post("/v1/classify", {"images": ["aGVsbG8="]}, headers=bearer))
    assert guarded_http.call("GET", "/v1/models", headers=bearer)[0] == 200
    assert guarded_http.post("/v1/predict", {"rows": [{"a": 1}]})[0] == 401
    assert "no ready 'tabular' model" in guarded_http.error(404, guarded_http.post("/v1/predict", {"rows": [{"a": 1}]}, headers=bearer))
    for path in ("/", "/openapi.json", "/console/console.js"):
        assert guarded_http.get(path)[0] == 200, path

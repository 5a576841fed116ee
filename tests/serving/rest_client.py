"""A plain HTTP client of the REST front (urllib and raw sockets, as scripts and attackers use), the
request builders the REST tests share, and their server fixtures."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.serving.conftest import server_config, start_server

HEADER = "Inference-Header-Content-Length"


class Http:
    """A blocking HTTP client of one server (urllib, as a script would use)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def get(self, path: str, **headers):
        return self.call("GET", path, headers=headers)

    def post(self, path: str, document=None, body: bytes | None = None, headers: dict | None = None):
        if body is None:
            body = json.dumps(document).encode()
        return self.call("POST", path, body, headers)

    def error(self, status: int, answer) -> str:
        """The error message of an answer that must have `status`: JSON {"error": ...}, short."""
        code, headers, body = answer
        assert code == status, body[:500]
        assert headers["Content-Type"].startswith("application/json")
        assert len(body) <= 1100
        document = json.loads(body)
        assert set(document) == {"error"}
        return document["error"]



@pytest.fixture(scope="module")
def running(repository):
    server = start_server(server_config(repository))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(running):
    return Http(running.server.http_port)



X = np.arange(8, dtype=np.float32).reshape(2, 4) / 4


def json_infer(model: str, **inputs) -> dict:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}
                       for name, (datatype, array, data) in inputs.items()]}


def binary_body(document: dict, *parts: bytes) -> tuple[bytes, dict]:
    header = json.dumps(document).encode()
    return header + b"".join(parts), {HEADER: str(len(header))}


def split_binary(headers, body: bytes) -> tuple[dict, dict[str, bytes]]:
    """A binary answer: its JSON header, and each binary output's bytes by name."""
    length = int(headers[HEADER])
    document, offset, parts = json.loads(body[:length]), length, {}
    for item in document["outputs"]:
        size = item.get("parameters", {}).get("binary_data_size")
        if size is not None:
            parts[item["name"]] = body[offset:offset + size]
            offset += size
    assert offset == len(body)
    return document, parts



def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection (a 30 s socket timeout fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


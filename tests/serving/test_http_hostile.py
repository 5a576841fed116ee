"""The REST front under hostile input: every JSON field wrong in turn (a table, then a hypothesis
property), binary sizes that lie, bad encodings, zip bombs, bodies above the cap, and slow clients.
Each gets a clear 4xx and the server keeps serving everybody else."""

from __future__ import annotations

import gzip
import http.client as http_client
import json
import logging
import struct
import threading
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import server_config, start_server
from tests.serving.rest_client import HEADER, X, Http, binary_body, http, json_infer, raw_exchange, running  # noqa: F401



def test_bad_encodings(http):
    assert "gzip" in http.error(400, http.post("/v2/models/doubler/infer", body=b"not gzip", headers={"Content-Encoding": "gzip"}))
    cut = gzip.compress(b'{"inputs": []}')[:-12]
    assert "cut short" in http.error(400, http.post("/v2/models/doubler/infer", body=cut, headers={"Content-Encoding": "gzip"}))
    assert "br" in http.error(415, http.post("/v2/models/doubler/infer", body=b"{}", headers={"Content-Encoding": "br"}))


def test_zip_bomb_is_refused_at_the_cap(http, running):
    bomb = gzip.compress(b" " * (65 << 20), 9)  # 65 MiB of spaces in about 64 KiB; the cap is 64 MiB
    assert len(bomb) < 200_000
    message = http.error(413, http.post("/v2/models/doubler/infer", body=bomb, headers={"Content-Encoding": "gzip"}))
    assert "--max-message-mb" in message
    assert http.get("/v2/health/live")[0] == 200


def test_body_above_the_cap_is_refused_before_it_is_read(running):
    claim = b"POST /v2/models/doubler/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n{"
    answer = raw_exchange(running.server.http_port, claim)
    assert answer.startswith(b"HTTP/1.1 413") and b"--max-message-mb" in answer


MALFORMED = [  # HTTP/1.1 messages aiohttp's parser refuses with 400
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20000 + b"\r\n\r\n",
]


def test_malformed_http_messages_get_400_and_no_traceback_in_the_log(running, caplog):
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    for message in MALFORMED * 5:
        assert raw_exchange(running.server.http_port, message).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert Http(running.server.http_port).get("/v2/health/live")[0] == 200
    lines = [r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.WARNING]
    assert not [r for r in lines if r.exc_info or r.exc_text], "a malformed request logged a traceback"
    assert len(lines) <= 1, [r.getMessage() for r in lines]  # one counting line a minute at most
    assert all("malformed HTTP request" in r.getMessage() and len(r.getMessage()) < 400 for r in lines)


# -- hostile bodies --------------------------------------------------------------------------------------------


def _binary(document: dict, payload: bytes, header_length: str | None = None):
    body, headers = binary_body(document, payload)
    if header_length is not None:
        headers[HEADER] = header_length
    return body, headers


def _x(**changes) -> dict:
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": X.reshape(-1).tolist()}
    tensor.update(changes)
    return {"inputs": [tensor]}


HOSTILE = {
    "empty body": (b"", {}, "no JSON"),
    "not JSON": (b"{inputs", {}, "not valid JSON"),
    "not UTF-8": (b'{"id": "\xff\xfe"}', {}, "UTF-8"),
    "deep nesting": (b"[" * 200_000, {}, "nested too deeply"),
    "array body": (b"[]", {}, "JSON object"),
    "inputs not an array": (b'{"inputs": {"x": 1}}', {}, "'inputs'"),
    "no inputs": (b'{"inputs": []}', {}, "'inputs'"),
    "input not an object": (b'{"inputs": [7]}', {}, "inputs[0]"),
    "name not a string": (json.dumps(_x(name=5)).encode(), {}, "inputs[0].name"),
    "unknown datatype": (json.dumps(_x(datatype="FP33")).encode(), {}, "FP33"),
    "shape not an array": (json.dumps(_x(shape="2,4")).encode(), {}, "shape"),
    "boolean dimension": (json.dumps(_x(shape=[True, 4])).encode(), {}, "shape"),
    "negative dimension": (json.dumps(_x(shape=[-2, 4])).encode(), {}, "shape"),
    "rank 40": (json.dumps(_x(shape=[1] * 40)).encode(), {}, "dimensions"),
    "huge count": (json.dumps(_x(shape=[2 ** 62, 2 ** 62])).encode(), {}, "more than"),
    "data too short": (json.dumps(_x(data=[1.0])).encode(), {}, "needs 8"),
    "data of strings": (json.dumps(_x(data=["a"] * 8)).encode(), {}, "FP32 data must be numbers"),
    "data of objects": (json.dumps(_x(data=[{}] * 8)).encode(), {}, "FP32 data must be numbers"),
    "data deeper than the shape": (json.dumps(_x(data=[[[[1.0]]]] * 8)).encode(), {}, "nested deeper"),
    "ragged data": (json.dumps(_x(data=[[1.0, 2.0], 3.0, [4.0, [5.0]]])).encode(), {}, "x"),
    "data not an array": (json.dumps(_x(data=3)).encode(), {}, "data must be an array"),
    "no data": (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4]}]}', {}, "neither"),
    "parameters not an object": (json.dumps({**_x(), "parameters": []}).encode(), {}, "parameters"),
    "binary_data_output not a boolean": (json.dumps({**_x(), "parameters": {"binary_data_output": "yes"}}).encode(), {}, "binary_data_output"),
    "negative timeout": (json.dumps({**_x(), "parameters": {"timeout": -1}}).encode(), {}, "timeout"),
    "outputs not an array": (json.dumps({**_x(), "outputs": "y"}).encode(), {}, "'outputs'"),
    "classification not a count": (json.dumps({**_x(), "outputs": [{"name": "y", "parameters": {"classification": "2"}}]}).encode(), {}, "classification"),
    "negative classification": (json.dumps({**_x(), "outputs": [{"name": "y", "parameters": {"classification": -2}}]}).encode(), {}, "classification"),
    "id not a string": (json.dumps({**_x(), "id": 5}).encode(), {}, "id"),
    "too many inputs": (json.dumps({"inputs": [_x()["inputs"][0]] * 65}).encode(), {}, "65 inputs"),
    "header length beyond the body": (*_binary(_x(), b"", "999999"), "999999"),
    "header length not a number": (*_binary(_x(), b"", "-5"), HEADER),
    "negative binary size": (*_binary({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": -4}}]}, X.tobytes()), "binary_data_size"),
    "binary size beyond the body": (*_binary({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 1 << 40}}]}, X.tobytes()), "bytes of binary data are left"),
    "binary size not matching the shape": (*_binary({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 12}}]}, X.tobytes()[:12]), "needs 32 bytes"),
    "bytes left over": (*_binary({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}}]}, X.tobytes() + b"tail"), "belong to no input"),
    "both data and binary": (*_binary(_x(parameters={"binary_data_size": 32}), X.tobytes()), "both"),
    "shared memory": (json.dumps(_x(parameters={"shared_memory_region": "r"})).encode(), {}, "shared memory"),
}


@pytest.mark.parametrize("body,headers,fragment", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_get_a_clear_400(http, body, headers, fragment):
    message = http.error(400, http.post("/v2/models/doubler/infer", body=body, headers=headers))
    assert fragment in message, message


def test_bytes_with_bad_lengths_and_values_out_of_range(http):
    document = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "parameters": {"binary_data_size": 8}}]}
    body, headers = binary_body(document, struct.pack("<I", 1000) + b"abcd")
    assert "claims 1000 bytes" in http.error(400, http.post("/v2/models/strings/infer", body=body, headers=headers))
    pixels = json_infer("pixels", images=("UINT8", np.zeros((1, 3)), [[1, 2, 300]]))
    assert "out of range for UINT8" in http.error(400, http.post("/v2/models/pixels/infer", pixels))
    floats = json_infer("pixels", images=("UINT8", np.zeros((1, 3)), [[1, 2, 3.5]]))
    assert "integers" in http.error(400, http.post("/v2/models/pixels/infer", floats))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=20)
_field = st.sampled_from(["name", "datatype", "shape", "data", "parameters"])
_top = st.sampled_from(["inputs", "outputs", "parameters", "id"])


@st.composite
def malformed(draw) -> tuple[bytes, dict]:
    """A valid request with one field replaced by arbitrary JSON, or arbitrary JSON, or bytes."""
    kind = draw(st.sampled_from(["field", "top", "any", "bytes", "binary"]))
    document = _x()
    if kind == "field":
        document["inputs"][0][draw(_field)] = draw(_json)
    elif kind == "top":
        document[draw(_top)] = draw(_json)
    elif kind == "any":
        return json.dumps(draw(_json)).encode(), {}
    elif kind == "bytes":
        return draw(st.binary(max_size=64)), {}
    else:
        body, headers = binary_body({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                                 "parameters": {"binary_data_size": draw(_json)}}]}, draw(st.binary(max_size=40)))
        if draw(st.booleans()):
            headers[HEADER] = draw(st.text(max_size=6))
        return body, headers
    return json.dumps(document).encode(), {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=malformed())
def test_malformed_requests_are_4xx_and_the_server_keeps_serving(http, case):
    body, headers = case
    headers = {k: v for k, v in headers.items() if v.isprintable() and v.isascii() and v.strip() == v}
    status, _, answer = http.post("/v2/models/doubler/infer", body=body, headers=headers)
    if status != 200:
        assert 400 <= status < 500, answer[:300]
        assert len(answer) <= 1100 and "error" in json.loads(answer)
    assert http.get("/v2/health/live")[0] == 200


# -- slow clients ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(repository):
    server = start_server(server_config(repository, http_read_seconds=1.0, max_message_mb=1))
    yield server
    server.stop()


def test_slow_clients_are_cut_off_and_others_served(impatient):
    port = impatient.server.http_port
    answers: dict[str, bytes] = {}
    slow = [
        ("headers", b"POST /v2/models/doubler/infer HTTP/1.1\r\nHost: x\r\n"),  # never finishes its headers
        ("body", b"POST /v2/models/doubler/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"in"),
    ]
    threads = [threading.Thread(target=lambda k=k, d=d: answers.__setitem__(k, raw_exchange(port, d))) for k, d in slow]
    for thread in threads:
        thread.start()
    assert Http(port).get("/v2/health/live")[0] == 200  # served while the slow ones wait
    for thread in threads:
        thread.join(30)
    assert answers["headers"] == b""  # closed without an answer: it never asked anything
    assert answers["body"].startswith(b"HTTP/1.1 408") and b"--http-read-seconds" in answers["body"]


def test_cap_follows_max_message_mb(impatient):
    http = Http(impatient.server.http_port)
    body = json.dumps(json_infer("doubler", x=("FP32", X, X.tolist()))).encode() + b" " * (2 << 20)
    assert "1 MiB" in http.error(413, http.post("/v2/models/doubler/infer", body=body))
    bomb = zlib.compress(b" " * (2 << 20))
    assert "decompresses" in http.error(413, http.post("/v2/models/doubler/infer", body=bomb, headers={"Content-Encoding": "deflate"}))
    connection = http_client.HTTPConnection("127.0.0.1", impatient.server.http_port, timeout=30)
    connection.request("POST", "/v2/models/doubler/infer", body=iter([b" " * (1 << 19)] * 5), encode_chunked=True)
    answer = connection.getresponse()  # chunked: no Content-Length to check first, so the cap stops the read
    assert "1 MiB" in http.error(413, (answer.status, answer.headers, answer.read()))
    connection.close()



def test_an_answer_above_the_message_cap_is_refused_not_encoded(tmp_path):
    """A model whose output grows with a request (Tile) cannot make the REST front build a JSON answer
    of gigabytes: above --max-message-mb it is refused, as gRPC refuses to send it."""
    from tests.serving.builders import TILE_CONFIG, tile_graph, write_model

    write_model(tmp_path / "repo", "tile", graph=tile_graph, config=TILE_CONFIG)
    server = start_server(server_config(tmp_path / "repo", max_message_mb=1))
    try:
        http = Http(server.server.http_port)

        def ask(columns: int):
            return http.post("/v2/models/tile/infer", {"inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
                {"name": "reps", "datatype": "INT64", "shape": [2], "data": [1, columns]}]})

        status, _, body = ask(10)
        assert status == 200 and json.loads(body)["outputs"][0]["shape"] == [1, 40]
        words = http.error(413, ask(100_000))  # 400,000 floats: 1.6 MB; over a cap is 413 here, as for bodies
        assert "1,600,000 bytes, more than the 1 MiB the server sends (--max-message-mb)" in words
        assert ask(10)[0] == 200
    finally:
        server.stop()

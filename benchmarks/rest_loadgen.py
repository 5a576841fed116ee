"""The one closed-loop REST load generator the benchmarks drive HTTP servers with (`peers.py`,
`http_stacks.py`): KServe v2 inference over HTTP/1.1, the REST twin of `serving.loadgen`.

Each of `concurrency` callers owns one kept-alive connection and sends the same pre-serialised
request (request line, headers and body built once, `request_bytes`) as soon as its previous answer
is in; the answer's head is read up to its blank line and its body by Content-Length. That is all
the HTTP a benchmark needs, and it keeps the client's own work per call to a few microseconds, so
that on a small machine the server, not the client, is what is measured (the tables show the
client's CPU). Each answer goes to a `check` that raises on anything but the expected outputs; a
status other than 200 raises at once with the server's words.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving.loadgen import closed_loop, summarise  # noqa: E402

HEADER_LENGTH = "Inference-Header-Content-Length"


def binary_body(model: str, input_name: str, datatype: str, array: np.ndarray) -> tuple[bytes, dict]:
    """A Triton binary-tensor body (JSON header, then the raw tensor) asking for binary outputs, and its headers."""
    header = json.dumps({"inputs": [{"name": input_name, "datatype": datatype, "shape": list(array.shape),
                                     "parameters": {"binary_data_size": array.nbytes}}],
                         "parameters": {"binary_data_output": True}}, separators=(",", ":")).encode()
    return header + array.tobytes(), {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}


def json_body(model: str, input_name: str, datatype: str, array: np.ndarray) -> tuple[bytes, dict]:
    """A plain KServe v2 JSON body (flat `data`), as every v2 server accepts, and its headers."""
    body = json.dumps({"inputs": [{"name": input_name, "datatype": datatype, "shape": list(array.shape),
                                   "data": array.reshape(-1).tolist()}]}, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json"}


def request_bytes(host: str, path: str, body: bytes, headers: dict) -> bytes:
    """One whole HTTP/1.1 POST, ready to write as it is, again and again on a kept-alive connection."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Answer:
    """A response: status, lower-cased header names -> values, body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def document(self) -> dict:
        """The JSON document of the body (its header part, when binary tensors follow it)."""
        length = self.headers.get(HEADER_LENGTH.lower())
        return json.loads(self.body if length is None else self.body[:int(length)])


class Connection:
    """One kept-alive HTTP/1.1 connection; `call` writes a prepared request and reads one answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def call(self, request: bytes) -> Answer:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:  # chunked answers: no server here sends one for these bodies
            raise ValueError(f"answer without Content-Length (headers {sorted(headers)})")
        body = await self.reader.readexactly(int(headers["content-length"]))
        if status != 200:
            raise AssertionError(f"HTTP {status}: {body[:300]!r}")
        return Answer(status, headers, body)

    def close(self) -> None:
        self.writer.close()


def outputs_of(answer: Answer) -> dict[str, tuple[list[int], np.ndarray]]:
    """name -> (shape, flat values) of every output of an inference answer, binary or JSON."""
    from protos.config_text import from_name

    document = answer.document()
    offset = int(answer.headers.get(HEADER_LENGTH.lower(), 0))
    found = {}
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            values = np.asarray(output["data"])
        else:
            dtype = np.dtype(from_name(output["datatype"]).numpy)
            values = np.frombuffer(answer.body, dtype, size // dtype.itemsize, offset)
            offset += size
        found[output["name"]] = (list(output["shape"]), values)
    if offset and offset != len(answer.body):
        raise AssertionError(f"{len(answer.body) - offset} bytes after the outputs' binary data")
    return found


def checker(expected: dict[str, list[int]], server: str) -> Callable[[Answer], dict]:
    """A function that raises unless an answer has exactly the expected outputs, each with as many
    values as its shape says; it returns `outputs_of`'s values."""
    want = {name: (list(shape), int(np.prod(shape))) for name, shape in expected.items()}

    def check(answer: Answer) -> dict:
        found = outputs_of(answer)
        got = {name: (shape, values.size) for name, (shape, values) in found.items()}
        if got != want:
            raise AssertionError(f"{server}: answer has outputs {got}, expected {want}")
        return found

    return check


async def measure(address: str, request: bytes, batch: int, concurrency: int, seconds: float, warmup: float,
                  check: Callable[[Answer], object] = lambda answer: None,
                  first: Callable[[Answer], object] | None = None) -> dict:
    """Drive `address` ("host:port") with `concurrency` connections: `warmup` unmeasured seconds, then
    `seconds`; `serving.loadgen.summarise`'s figures (cpu: this process's, in cores). `first` checks
    the first answer (e.g. its values against a reference), `check` every answer."""
    host, port = address.rsplit(":", 1)
    idle = [await Connection.open(host, int(port)) for _ in range(concurrency)]
    try:
        async def infer(payload: bytes, timeout: float | None = None) -> Answer:
            connection = idle.pop()  # closed loop: never more callers than connections
            try:
                return await connection.call(payload)
            finally:
                idle.append(connection)

        (first or check)(await asyncio.wait_for(infer(request), 60))
        if warmup > 0:
            await closed_loop(infer, request, concurrency, warmup, check)
        cpu = time.process_time()
        latencies, elapsed = await closed_loop(infer, request, concurrency, seconds, check)
        return summarise(latencies, len(latencies) * batch, elapsed, time.process_time() - cpu)
    finally:
        for connection in idle:
            connection.close()

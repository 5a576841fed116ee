"""The minimal KServe-style apps `http_stacks.py` measures, one per HTTP stack, each doing the same work.

Run in the benchmark's own environment (uvicorn, starlette, granian, aiohttp; see `http_stacks.py`),
never imported by dnnzoo:

    python benchmarks/http_stacks_apps.py STACK PORT

Every app answers `POST /v2/models/<name>/infer` the same way, with no model: it reads the body,
parses the JSON request with orjson, as dnnzoo does (and, with `Inference-Header-Content-Length`,
takes the tensor from the binary part in place), checks the element count against the shape, and
answers ten float32 values per item, as a classifier would: binary after a JSON header when the
request had binary tensors, else JSON `data`. So the only difference between the rows is the HTTP stack itself.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import orjson

HEADER_LENGTH = "inference-header-content-length"
CLASSES = 10


def answer(body: bytes, header_length: str | None) -> tuple[int, bytes, str | None]:
    """(status, body, JSON header length or None) for one inference body."""
    try:
        length = int(header_length) if header_length is not None else len(body)
        request = orjson.loads(body[:length])  # the parser dnnzoo's REST front uses
        tensor = request["inputs"][0]
        shape = tensor["shape"]
        if header_length is not None:
            values = np.frombuffer(body, np.float32, offset=length)
        else:
            values = np.asarray(tensor["data"], np.float32)
        if values.size != int(np.prod(shape)):
            raise ValueError(f"{values.size} values for shape {shape}")
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # orjson's JSONDecodeError is a ValueError
        return 400, json.dumps({"error": str(exc)[:200]}).encode(), None
    batch = shape[0]
    scores = values[:batch * CLASSES] if values.size >= batch * CLASSES else np.zeros(batch * CLASSES, np.float32)
    output = {"name": "y", "datatype": "FP32", "shape": [batch, CLASSES]}
    if header_length is None:
        output["data"] = scores.tolist()
        return 200, json.dumps({"model_name": "echo", "model_version": "1", "outputs": [output]}).encode(), None
    raw = scores.tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"model_name": "echo", "model_version": "1", "outputs": [output]}).encode()
    return 200, header + raw, str(len(header))


# -- (a) raw ASGI -------------------------------------------------------------------------------------------


async def asgi_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    header_length = None
    for name, value in scope["headers"]:
        if name == b"inference-header-content-length":
            header_length = value.decode("latin-1")
    parts, more = [], True
    while more:
        message = await receive()
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    status, body, length = answer(b"".join(parts), header_length)
    headers = [(b"content-type", b"application/octet-stream" if length else b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if length:
        headers.append((HEADER_LENGTH.encode(), length.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- (b) Starlette --------------------------------------------------------------------------------------------


def starlette_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def infer(request: Request) -> Response:
        status, body, length = answer(await request.body(), request.headers.get(HEADER_LENGTH))
        headers = {HEADER_LENGTH: length} if length else None
        return Response(body, status, headers, "application/octet-stream" if length else "application/json")

    return Starlette(routes=[Route("/v2/models/{model}/infer", infer, methods=["POST"])])


# -- (c) aiohttp ------------------------------------------------------------------------------------------------


def aiohttp_app():
    from aiohttp import web

    async def infer(request: web.Request) -> web.Response:
        status, body, length = answer(await request.read(), request.headers.get(HEADER_LENGTH))
        headers = {HEADER_LENGTH: length} if length else None
        return web.Response(body=body, status=status, headers=headers,
                            content_type="application/octet-stream" if length else "application/json")

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    return app


# -- (d) granian's own interface (RSGI) ---------------------------------------------------------------------------


async def rsgi_app(scope, protocol) -> None:
    body = await protocol()
    status, payload, length = answer(body, scope.headers.get(HEADER_LENGTH))
    headers = [("content-type", "application/octet-stream" if length else "application/json")]
    if length:
        headers.append((HEADER_LENGTH, length))
    protocol.response_bytes(status, headers, payload)


def main() -> None:
    stack, port = sys.argv[1], int(sys.argv[2])
    if stack in ("asgi-uvicorn", "starlette-uvicorn", "asgi-uvicorn-uvloop"):
        import uvicorn

        app = asgi_app if stack.startswith("asgi") else starlette_app()
        # asyncio's loop: the one grpc.aio shares in dnnzoo's process; httptools: uvicorn's fast parser
        uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop" if stack.endswith("uvloop") else "asyncio",
                    http="httptools", lifespan="off", access_log=False, log_level="warning")
    elif stack == "aiohttp":
        from aiohttp import web

        web.run_app(aiohttp_app(), host="127.0.0.1", port=port, access_log=None, print=None)
    elif stack in ("granian-asgi", "granian-rsgi"):
        from granian import Granian
        from granian.constants import Interfaces

        interface = Interfaces.ASGI if stack == "granian-asgi" else Interfaces.RSGI
        target = "http_stacks_apps:asgi_app" if stack == "granian-asgi" else "http_stacks_apps:rsgi_app"
        Granian(target, address="127.0.0.1", port=port, interface=interface, workers=1, websockets=False,
                log_access=False).serve()
    else:
        raise SystemExit(f"unknown stack {stack!r}")


if __name__ == "__main__":
    main()

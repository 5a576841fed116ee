"""The browser console and the OpenAPI document: static files from this folder, and /openapi.json.

The pages are plain HTML, CSS and JavaScript written for dnnzoo (no build step, nothing fetched from
a CDN: the server may have no internet, and neither may its users). They call the /v1 task endpoints
and the /v2 routes of the same server, so they hold no model logic. The files are read once, at
start, and served from memory with a closed list of names: a request can never name a path.
"""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from serving.http_openapi import schema

# The open gRPC method these rows stand for (health is never guarded): pages and the schema hold no data.
OPEN_METHOD = "/inference.GRPCInferenceService/ServerLive"
FILES = {"index.html": "text/html", "console.css": "text/css", "console.js": "text/javascript"}


def _static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__)
    return {name: (folder.joinpath(name).read_bytes(), kind) for name, kind in FILES.items()}


def console_routes() -> tuple:
    """HttpFront extra route rows: / (the console), /console/<file>, /openapi.json."""
    files = _static()
    document = json.dumps(schema(), indent=1).encode()

    def page(name: str):
        body, kind = files[name]

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=kind, charset="utf-8", headers={"Cache-Control": "no-cache"})

        return handler

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    rows = [("GET", "/", page("index.html"), OPEN_METHOD), ("GET", "/openapi.json", openapi, OPEN_METHOD)]
    rows += [("GET", f"/console/{name}", page(name), OPEN_METHOD) for name in FILES]
    return tuple(rows)

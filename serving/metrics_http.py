"""The Prometheus /metrics endpoint, on aiohttp in the server's event loop.

Why not prometheus-client's own `start_http_server`: it runs a thread per open connection and never
closes an idle one, so a client holding 2,000 idle connections to the metrics port took the serving
process from 44 to over 900 threads (hostile-input audit, 2026-12-03). Here a connection costs no
thread, one that sends nothing is closed after `--http-read-seconds` (as on the REST port), and the
text is still prometheus-client's (`generate_latest`), built in a worker thread so that a large
scrape never holds the loop that serves inference.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from serving.http_front import listen


class MetricsEndpoint:
    def __init__(self, registry: CollectorRegistry, read_seconds: float) -> None:
        self.registry, self.read_seconds = registry, read_seconds
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the bound port."""
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        app.router.add_get("/", self._scrape)  # prometheus-client's server answered on any path; / is the common one
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.read_seconds, shutdown_timeout=1.0)
        return await listen(self._runner, host, port, "metrics")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _scrape(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, self.registry)
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression(web.ContentCoding.gzip)
        return response

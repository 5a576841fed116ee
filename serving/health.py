"""`grpc.health.v1` statuses kept in step with the server and its models.

Service "" (the whole server), "inference.GRPCInferenceService" and each typed task service
(`dnnzoo.v1.ImageClassification`, ...) are SERVING only while the server is ready; each model name is its own service, SERVING while that model can answer. The model
manager reports changes synchronously, so updates are queued as tasks on the event loop in order.
"""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVER_SERVICES = ("", "inference.GRPCInferenceService")


class Health:
    def __init__(self, services: tuple[str, ...] = SERVER_SERVICES) -> None:
        self.servicer = health_aio.HealthServicer()
        self.services = services
        self._pending: set[asyncio.Task] = set()

    async def server_ready(self, ready: bool) -> None:
        for service in self.services:
            await self.servicer.set(service, SERVING if ready else NOT_SERVING)

    def model_changed(self, name: str, ready: bool) -> None:
        task = asyncio.get_running_loop().create_task(self.servicer.set(name, SERVING if ready else NOT_SERVING))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def shutting_down(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.servicer.enter_graceful_shutdown()

"""The composition root: repository -> model manager -> data plane -> servicers -> grpc.aio server
(and the HTTP/REST front, `serving.http_front`, on the same data plane and event loop).

The Open Inference Protocol servicer and the typed task servicers (`dnnzoo.v1`, through a
`serving.tasks.Catalog` on the same data plane) are registered side by side, each with its health
status and its reflection name.

Bearer tokens (`serving.auth`, when a token file is set) are checked by an interceptor in front of
the error mapping on grpc.aio, and by the native front itself for the calls it serves.

`create_server(config)` builds and starts everything (port 0 binds a free port, for tests) and
returns the running `Server` with its port; nothing happens at import time. `Server.stop(grace)`
is the graceful shutdown: health goes NOT_SERVING, no new RPCs are accepted, batchers run what is
queued without waiting for more, and in-flight RPCs get up to `grace` seconds to finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc

from serving import cores
from serving.auth import AuthInterceptor, Guard
from serving.config import ServeConfig
from serving.dataplane import DataPlane
from serving.grpc_inference import InferenceServicer
from serving.grpc_tasks import SERVICE_NAMES as TASK_SERVICES
from serving.grpc_tasks import add_task_servicers
from serving.health import SERVER_SERVICES, Health
from serving.console import console_routes
from serving.http_front import HttpFront
from serving.http_tasks import TaskRoutes
from serving.limits import RequestLimits
from serving.metrics import Metrics
from serving.metrics_http import MetricsEndpoint
from serving.models import ModelManager
from serving.native_front import MethodTable, NativeFront, available
from serving.repository import Repository
from serving.sessions import ProviderChoice
from serving.status import ErrorMappingInterceptor
from serving.tasks import Catalog, TaskLimits

log = logging.getLogger(__name__)


def _version() -> str:
    from dnnzoo import __version__

    return __version__


@dataclass
class Server:
    grpc_server: grpc.aio.Server
    plane: DataPlane
    models: ModelManager
    health: Health
    metrics: Metrics
    port: int
    metrics_port: int | None
    _metrics_endpoint: MetricsEndpoint | None = None
    front: NativeFront | None = None  # the public port when the native front is on
    _socket_dir: str | None = None  # holds the grpc.aio server's Unix socket behind the front
    _poll_task: asyncio.Task | None = None
    _stopped: asyncio.Event | None = None
    _stopping: bool = False  # stop() has begun
    failure: str | None = None  # why the server stopped itself (the process then exits non-zero)
    http: HttpFront | None = None  # the HTTP/REST front, unless --http-port -1

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else self.http.port

    async def stop(self, grace: float = 30.0, drain_delay: float = 0.0) -> None:
        """Graceful shutdown, in the order load balancers and clients need:

        1. health turns NOT_SERVING (and ServerReady false) at once, while calls are still accepted
           for `drain_delay` seconds, so that balancers that poll health stop sending first;
        2. new calls are refused (UNAVAILABLE); calls in flight, multi-step typed calls and open
           streams included, get up to `grace` seconds, with every model still loaded, and batchers
           run what is queued without waiting for batches to fill;
        3. only then are the models closed and the ports released."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("shutting down: finishing in-flight and queued requests (up to %.0f s)", grace)
        self.plane.accepting = False
        await self.health.shutting_down()
        if self._poll_task is not None:
            self._poll_task.cancel()
        if drain_delay > 0:
            await asyncio.sleep(drain_delay)
        self.models.hurry()
        stopping = [self.grpc_server.stop(grace)]
        if self.front is not None:
            stopping.append(self.front.drain(grace))
        if self.http is not None:
            stopping.append(self.http.drain())
        await asyncio.gather(*stopping)
        await self.models.close()
        self.plane.heavy.shutdown(wait=False)
        if self.front is not None:  # after grpc.aio has finished the calls the front forwarded to it
            await self.front.close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._metrics_endpoint is not None:
            await self._metrics_endpoint.close()
        self._stopped.set()
        log.info("stopped")

    def fail(self, reason: str) -> None:
        """A part the server cannot run without has failed (the front's dispatch thread): go
        NOT_SERVING and stop, so that the process exits non-zero and the orchestrator restarts it."""
        if self.failure is None:
            self.failure = reason
            log.critical("stopping: %s", reason)
            asyncio.get_running_loop().create_task(self.stop(grace=5.0))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def use_native_front(config: ServeConfig) -> bool:
    """`--grpc-front`: native asks for it (config.check refuses it with TLS), auto takes it when it can."""
    if config.grpc_front == "grpcio" or config.tls_cert is not None:
        return False
    if available():
        return True
    if config.grpc_front == "native":
        raise OSError("--grpc-front native: pygrpc-native is not installed (pip install pygrpc-native)")
    return False


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """The bound port; OSError in plain words where grpcio returns 0 or raises (it has done both)."""
    try:
        port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot bind gRPC port {address} (in use, or not an address of this machine)")
    return port


def _credentials(config: ServeConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None:
        return None
    key, cert = Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes()
    if config.tls_client_ca is None:
        return grpc.ssl_server_credentials([(key, cert)])
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=Path(config.tls_client_ca).read_bytes(), require_client_auth=True
    )


async def create_server(config: ServeConfig) -> tuple[Server, int]:
    """Load the models, bind, start serving; returns the running server and its gRPC port."""
    guard = Guard.from_config(config)  # reads the token files: a bad one is a UserError before anything starts
    metrics = Metrics()
    health = Health(SERVER_SERVICES + TASK_SERVICES)
    await health.server_ready(False)

    models = ModelManager(
        Repository(config.repository),
        mode=config.model_control_mode,
        providers=ProviderChoice(config.providers),
        startup_models=tuple(config.load_model),
        on_state=health.model_changed,
        new_statistics=metrics.statistics,
        max_run_s=config.max_run_seconds,
    )
    plane = DataPlane(models, _version(), RequestLimits(config.max_request_elements, config.max_string_elements, config.max_queued_mb << 20))

    limit = config.max_message_mb * 1024 * 1024
    grpc_server = grpc.aio.server(
        interceptors=([] if guard is None else [AuthInterceptor(guard)]) + [ErrorMappingInterceptor()],
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    ours = MethodTable(grpc_server)  # records our unary methods for the native front
    inference = InferenceServicer(plane)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(inference, ours)
    limits = TaskLimits(**{f.name: getattr(config, f.name) for f in fields(TaskLimits)})
    catalog = Catalog(plane, limits)
    task_services = add_task_servicers(catalog, ours)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, grpc_server)
    services = (
        pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
        *task_services,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(services, grpc_server)
    address = f"{config.host}:{config.port}"
    credentials = _credentials(config)
    front, socket_dir = None, None
    if use_native_front(config):
        socket_dir = tempfile.mkdtemp(prefix="dnnzoo-grpc-")
        socket = os.path.join(socket_dir, "grpc.sock")
        _bind(grpc_server, f"unix:{socket}", None)
        infer_path = f"/{pb.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name}/ModelInfer"
        front = NativeFront(address, list(ours.unary.values()), socket, limit, direct={infer_path: inference.start_model_infer},
                            guard=guard, on_fatal=lambda reason: server.fail(reason), held=plane.held,
                            heavy=plane.heavy, keep_cores_awake=config.idle_cores == "poll")
        port = front.port
    else:
        port = _bind(grpc_server, address, credentials)

    await models.start()
    endpoint, metrics_port = (None, None)
    if config.metrics_port >= 0:
        endpoint = MetricsEndpoint(metrics.registry, config.http_read_seconds)
        metrics_port = await endpoint.start(config.host, config.metrics_port)
    metrics.watch_models(lambda: [(v.name, str(v.version), v.runtime.providers) for v in models.loaded()])
    await grpc_server.start()
    if front is not None:
        front.start()
    http = None
    if config.http_port >= 0:
        http = HttpFront(plane, guard, limit, config.http_read_seconds, config.grace_seconds,
                         keep_cores_awake=config.idle_cores == "poll")
        http.extra_routes = (*TaskRoutes(catalog).rows(http.read_body), *console_routes())  # they read bodies through the front
        await http.start(config.host, config.http_port)
    plane.accepting = True
    await health.server_ready(True)
    server = Server(grpc_server, plane, models, health, metrics, port, metrics_port, endpoint, front=front,
                    _socket_dir=socket_dir, http=http)
    server._stopped = asyncio.Event()
    if config.model_control_mode == "poll":
        server._poll_task = asyncio.get_running_loop().create_task(models.poll_forever(config.poll_seconds))
    log.info("gRPC front: %s", "pygrpc-native for unary RPCs, grpc.aio behind it" if front is not None else "grpc.aio")
    log.info("CPU: %s", cores.describe())
    if guard is not None:
        log.info("bearer tokens: inference %s, repository control %s", "guarded" if guard.inference else "open",
                 "guarded" if guard.admin or guard.inference else "open")
        if config.tls_cert is None:
            log.warning("bearer tokens are on without TLS: they cross the network in clear text")
    if http is not None:
        log.info("HTTP/REST (KServe v2) on %s:%d", config.host, http.port)
    log.info("serving %s on %s (gRPC) and port %s (metrics)", config.repository, address.rsplit(":", 1)[0] + f":{port}", metrics_port)
    return server, port

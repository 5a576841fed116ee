"""The HTTP/REST front: KServe v2 as Triton serves it on port 8000, on aiohttp in the server's event loop.

Handlers only translate, like the gRPC servicer: a REST call becomes a data-plane call (validation,
batching, statistics and metrics all live behind it, once), and the answer becomes JSON (or JSON
followed by binary tensors, `serving.http_codec`). Each route names the gRPC method it stands for,
so that `serving.auth` decides which bearer token it needs and `serving.status` which error it is:
the two fronts cannot drift apart. gRPC codes become HTTP statuses through the table of
google.rpc.Code's documented HTTP mapping; errors are `{"error": "..."}`.

Bodies are capped (`--max-message-mb`, before and after gzip/deflate decompression, which is done
here with a bounded output so that a zip bomb costs nothing) and must arrive within
`--http-read-seconds` (headers and then body), so that a slow client holds a connection, never the
server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable

import grpc
from aiohttp import http_exceptions, web

from protos import grpc_service_pb2 as pb

from serving.auth import Guard
from serving.dataplane import DataPlane
from serving.errors import InvalidInput, ServingError, TooLarge
from serving.grpc_inference import InferenceServicer, _statistics
from serving.http_codec import HEADER_LENGTH, decode_infer, encode_infer, index_ready_only, load_request, message_json
from serving.limits import INLINE_ANSWER_ELEMENTS, INLINE_PAYLOAD_BYTES
from serving.status import client_message, status_of
from serving.wake_latency import HOLD_S, WakeLatency

log = logging.getLogger(__name__)

# google.rpc.Code -> HTTP status, as google/rpc/code.proto documents each code.
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
}
_OIP = "/inference.GRPCInferenceService/"
ENCODINGS = ("gzip", "deflate")  # request bodies, as Triton accepts them
_DECOMPRESS_STEP = 1 << 20


class ReadTimeout(ServingError):
    """The client did not send its body within --http-read-seconds."""


class UnsupportedEncoding(InvalidInput):
    """A Content-Encoding other than gzip or deflate: 415."""


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": client_message(message)}).encode(),
                        content_type="application/json", headers=headers)


def json_response(document) -> web.Response:
    return web.Response(body=json.dumps(document, separators=(",", ":")).encode(), content_type="application/json")


def decompress(body: bytes, encoding: str, cap: int) -> bytes:
    """`body` decoded from gzip or deflate (zlib-wrapped, or raw as some clients send it), refused as
    soon as its output passes `cap`: decompression never produces more than the cap allows."""
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:  # RFC 9110's deflate is zlib-wrapped; a first byte that is no zlib header means raw deflate
        wbits = zlib.MAX_WBITS if body[:1] and body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    inflater, parts, size, data = zlib.decompressobj(wbits), [], 0, body
    try:
        while data:
            part = inflater.decompress(data, _DECOMPRESS_STEP)
            size += len(part)
            if size > cap:
                raise TooLarge(f"the request body decompresses to more than {cap >> 20} MiB, "
                                   "the server's limit (--max-message-mb)")
            parts.append(part)
            data = inflater.unconsumed_tail
        if not inflater.eof:
            raise InvalidInput(f"the {encoding} request body is cut short")
    except zlib.error as exc:
        raise InvalidInput(f"the request body is not valid {encoding} data ({exc})") from None
    return b"".join(parts)


class MalformedRequestLog(logging.Filter):
    """aiohttp logs every malformed HTTP/1.1 message (a bad Content-Length, a header over its limit, a
    NUL in a header) at ERROR with a traceback, after answering it 400 and closing the connection: a
    client sending such messages would fill the log at ~0.6 KB per 40-byte request. This turns them
    into one WARNING line per `interval_s`, counting the ones in between, without the traceback."""

    def __init__(self, interval_s: float = 60.0):
        super().__init__()
        self.interval_s, self.count, self.next_line = interval_s, 0, 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, http_exceptions.HttpProcessingError):
            return True
        self.count += 1
        now = time.monotonic()
        if now < self.next_line:
            return False
        reason = " ".join(str(getattr(exc, "message", "") or type(exc).__name__).split())[:120]
        record.msg = "refused %d malformed HTTP request(s) with 400 since this line was last written (at most every %.0f s); the last: %s"
        record.args = (self.count, self.interval_s, reason)
        record.levelno, record.levelname, record.exc_info, record.exc_text = logging.WARNING, "WARNING", None, None
        self.count, self.next_line = 0, now + self.interval_s
        return True


MALFORMED_REQUEST_LOG = MalformedRequestLog()


async def listen(runner: web.AppRunner, host: str, port: int, what: str) -> int:
    """Set `runner` up and listen on host:port (0: any free port); returns the bound port. A port that
    cannot be bound is an OSError naming `what` (the REST or the metrics port)."""
    await runner.setup()
    logging.getLogger("aiohttp.server").addFilter(MALFORMED_REQUEST_LOG)  # once: a logger keeps a set of filters
    site = web.TCPSite(runner, host, port, reuse_port=False)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot bind {what} port {host}:{port} ({exc.strerror or exc})") from None
    return runner.addresses[0][1]


class HttpFront:
    """The REST routes, bound to one data plane; `start` binds, `drain` finishes what is in flight."""

    def __init__(self, plane: DataPlane, guard: Guard | None, max_body: int, read_seconds: float,
                 grace: float = 30.0, extra_routes: tuple = (), keep_cores_awake: bool = False) -> None:
        self.plane = plane
        # More rows like `routes()`'s (typed task endpoints, say), each naming the gRPC method whose
        # token and errors it shares; their handlers may use `read_body` and raise ServingErrors.
        self.extra_routes = tuple(extra_routes)
        self.grace = grace
        self.guard = guard
        self.max_body = max_body
        self.read_seconds = read_seconds
        self.port: int | None = None
        self._control = InferenceServicer(plane)  # repository load: the gRPC request it stands for, checked once
        self._runner: web.AppRunner | None = None
        self._inferring = 0  # inference requests this front has in hand (read, queued or running)
        # idle cores kept polling while requests arrive close together (serving/wake_latency.py), as
        # the gRPC front does; its own request, touched on the event loop only
        self._wake = WakeLatency(keep_cores_awake)
        self._last_request = 0.0  # loop.time() of the latest request, while the cores are held awake

    def routes(self) -> list[tuple[str, str, Callable, str]]:
        """(HTTP method, path, handler, the gRPC method it stands for). /v2/models/stats goes before
        /v2/models/{model}, as in Triton."""
        model, version = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
        table = [
            ("GET", "/v2/health/live", self.live, "ServerLive"),
            ("GET", "/v2/health/ready", self.ready, "ServerReady"),
            ("GET", "/v2", self.server_metadata, "ServerMetadata"),
            ("GET", "/v2/models/stats", self.statistics, "ModelStatistics"),
            ("POST", "/v2/repository/index", self.index, "RepositoryIndex"),
            ("POST", "/v2/repository/models/{model}/load", self.load, "RepositoryModelLoad"),
            ("POST", "/v2/repository/models/{model}/unload", self.unload, "RepositoryModelUnload"),
        ]
        for base in (model, version):
            table += [
                ("GET", base, self.model_metadata, "ModelMetadata"),
                ("GET", base + "/ready", self.model_ready, "ModelReady"),
                ("GET", base + "/config", self.model_config, "ModelConfig"),
                ("GET", base + "/stats", self.statistics, "ModelStatistics"),
                ("POST", base + "/infer", self.infer, "ModelInfer"),
            ]
        return table

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=self.max_body)
        for method, path, handler, rpc in self.routes():
            app.router.add_route(method, path, self._guarded(handler, _OIP + rpc))
        for method, path, handler, rpc in self.extra_routes:  # rpc: the full /package.Service/Method
            app.router.add_route(method, path, self._guarded(handler, rpc))
        return app

    async def start(self, host: str, port: int) -> int:
        # keepalive_timeout also bounds how long a new connection may take to send its first headers
        self._runner = web.AppRunner(self.application(), access_log=None, auto_decompress=False, shutdown_timeout=self.grace,
                                     keepalive_timeout=self.read_seconds, max_field_size=16384)
        self.port = await listen(self._runner, host, port, "HTTP")
        return self.port

    async def drain(self) -> None:
        """Stop listening, let calls in flight finish (for up to `grace` seconds), close the connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._wake.close()

    def _awake(self) -> None:
        """A request arrived: idle cores poll until `HOLD_S` passes without another (one timer per
        hold, not per request)."""
        if not self._wake.active:
            return
        loop = asyncio.get_running_loop()
        self._last_request = loop.time()
        if not self._wake.held:
            self._wake.hold()
            loop.call_later(HOLD_S, self._release_when_quiet)

    def _release_when_quiet(self) -> None:
        left = self._last_request + HOLD_S - asyncio.get_running_loop().time()
        if left > 0:
            asyncio.get_running_loop().call_later(left, self._release_when_quiet)
        else:
            self._wake.release()

    # -- the layer every route goes through ------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        self._awake()
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no such route, method not allowed
            if exc.status < 400:
                raise
            return error_response(exc.status, f"{request.method} {request.path}: {exc.reason}",
                                  {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None)
        except TooLarge as exc:  # above a cap: HTTP's own 413 (a full queue stays RESOURCE_EXHAUSTED's 429)
            return error_response(413, str(exc))
        except ReadTimeout as exc:
            return error_response(408, str(exc), {"Connection": "close"})
        except UnsupportedEncoding as exc:
            return error_response(415, str(exc))
        except Exception as exc:  # noqa: BLE001 - the one place that maps them all, as serving.status does
            code, message = status_of(exc, f"HTTP {request.method} {request.path}")
            return error_response(HTTP_STATUS.get(code, 500), message)

    def _guarded(self, handler, method: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        accepted = None if self.guard is None else self.guard.accepted(method)
        if accepted is None:
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self.guard.check(accepted, [("authorization", v) for v in request.headers.getall("Authorization", ())])
            if refusal is not None:
                code, message = refusal
                headers = {"WWW-Authenticate": "Bearer"} if code == grpc.StatusCode.UNAUTHENTICATED else None
                return error_response(HTTP_STATUS[code], message, headers)
            return await handler(request)

        return guarded

    async def read_body(self, request: web.Request) -> bytes:
        """The request body, decompressed, within the size cap and the read deadline."""
        cap = self.max_body
        if request.content_length is not None and request.content_length > cap:
            raise TooLarge(f"the request body is {request.content_length} bytes, more than {cap >> 20} MiB, "
                               "the server's limit (--max-message-mb)")
        try:
            if request.content.is_eof():  # all in already (a small body comes with its headers): no deadline to keep
                body = await request.read()
            else:
                body = await asyncio.wait_for(request.read(), self.read_seconds)
        except asyncio.TimeoutError:
            raise ReadTimeout(f"the request body did not arrive within {self.read_seconds:g} s "
                              "(--http-read-seconds)") from None
        except web.HTTPRequestEntityTooLarge:
            raise TooLarge(f"the request body is more than {cap >> 20} MiB, the server's limit (--max-message-mb)") from None
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return body
        if encoding not in ENCODINGS:
            raise UnsupportedEncoding(f"Content-Encoding {encoding[:40]!r} is not accepted; use gzip, deflate or none")
        if len(body) > INLINE_PAYLOAD_BYTES:
            return await asyncio.get_running_loop().run_in_executor(self.plane.heavy, decompress, body, encoding, cap)
        return decompress(body, encoding, cap)

    # -- health and metadata -----------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.plane.live() else 400)

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.plane.ready() else 400)

    async def model_ready(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        return web.Response(status=200 if self.plane.model_ready(name, version) else 400)

    async def server_metadata(self, request: web.Request) -> web.Response:
        name, version, extensions = self.plane.server_metadata()
        return json_response({"name": name, "version": version, "extensions": list(extensions)})

    async def model_metadata(self, request: web.Request) -> web.Response:
        info = self.plane.model_metadata(*_model(request))

        def tensors(items) -> list[dict]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

        return json_response({"name": info.name, "versions": info.versions, "platform": info.platform,
                              "inputs": tensors(info.inputs), "outputs": tensors(info.outputs)})

    async def model_config(self, request: web.Request) -> web.Response:
        return json_response(message_json(self.plane.model_config(*_model(request))))

    async def statistics(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        stats = self.plane.statistics(name, version)
        return json_response(message_json(pb.ModelStatisticsResponse(model_stats=[_statistics(s) for s in stats])))

    # -- repository control ------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        rows = self.plane.index(ready_only=index_ready_only(await self.read_body(request)))
        return json_response([{k: v for k, v in (("name", r.name), ("version", r.version), ("state", r.state),
                                                 ("reason", r.reason)) if v} for r in rows])

    async def load(self, request: web.Request) -> web.Response:
        await self._control.RepositoryModelLoad(load_request(request.match_info["model"], await self.read_body(request)), None)
        return web.Response()

    async def unload(self, request: web.Request) -> web.Response:
        await self.read_body(request)  # read (and checked) though unused: Triton's parameters change nothing here
        await self.plane.unload(request.match_info["model"])
        return web.Response()

    # -- inference -----------------------------------------------------------------------------------------

    async def infer(self, request: web.Request) -> web.Response:
        self._inferring += 1
        try:
            if self._inferring == 1:  # one pass of the loop, so that requests that came with this one count too
                await asyncio.sleep(0)
            return await self._infer(request, alone=self._inferring == 1)
        finally:
            self._inferring -= 1

    async def _infer(self, request: web.Request, alone: bool) -> web.Response:
        name, version = _model(request)
        body = await self.read_body(request)
        header_length = request.headers.get(HEADER_LENGTH)
        limits, decoded = self.plane.limits, []

        def decode():
            infer_request, choice = decode_infer(body, header_length, name, version, limits)
            decoded.append(choice)
            return infer_request

        if len(body) > INLINE_PAYLOAD_BYTES:  # parsed off the event loop, as gRPC's large requests are
            response = await self.plane.infer_off_loop(decode)
        else:
            # alone: an idle, cheap model runs it right here, as the native gRPC front's dispatch thread
            # does; with others in hand it queues, so that they can be batched together
            response = await self.plane.infer(decode(), run_here=alone)
        answer_bytes = sum(o.data.nbytes for o in response.outputs)
        if answer_bytes > self.max_body:  # as gRPC refuses an answer over --max-message-mb; as JSON it would be ~3x larger
            raise TooLarge(f"the answer's outputs hold {answer_bytes:,} bytes, more than the {self.max_body >> 20} MiB "
                           "the server sends (--max-message-mb)")
        if sum(o.data.size for o in response.outputs) > INLINE_ANSWER_ELEMENTS:
            body, length = await asyncio.get_running_loop().run_in_executor(
                self.plane.heavy, encode_infer, response, decoded[0])
        else:
            body, length = encode_infer(response, decoded[0])
        if length is None:
            answer = web.Response(body=body, content_type="application/json")
        else:
            answer = web.Response(body=body, content_type="application/octet-stream", headers={HEADER_LENGTH: str(length)})
        if "Accept-Encoding" in request.headers:
            answer.enable_compression()  # gzip or deflate, whichever the client accepts (else none)
        return answer


def _model(request: web.Request) -> tuple[str, str]:
    return request.match_info.get("model", ""), request.match_info.get("version", "")

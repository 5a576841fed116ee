"""The unary RPCs on pygrpc-native's Rust HTTP/2 front; everything else through grpc.aio behind it.

Why: on a small CPU grpcio's Python layer costs more than a small model. `benchmarks/grpc_floor.py`
(empty handlers, h2load as the client) on the 2-core build machine: a grpc.aio server answers in
about 0.7 ms at concurrency 1 and spends about 0.5 ms of CPU per call at concurrency 16;
pygrpc-native's low-level front (HTTP/2, flow control, deadlines and cancellation on tokio threads,
outside the GIL), answers in 0.2-0.3 ms and spends 0.04 ms.

How: the front listens on the public port and serves the unary-unary methods of our own services
(the Open Inference Protocol's and the typed task services'). Any other path (streams, health,
reflection, unknown methods) is proxied by the front to the grpc.aio server, which listens on a
Unix socket in a private temporary folder, so every method keeps one implementation and one port.
Calls reach Python in batches on one dispatch thread. The inference call (ModelInfer) is "direct":
the dispatch thread decodes it and queues it at its model's batcher, and the instance thread that
runs the batch encodes and sends the answer, so the request crosses one thread hand-over and never
touches the event loop (on a small busy CPU each wake-up of another thread costs 0.1-1 ms); a call
that arrived alone for an idle model that is measured to be cheap runs on the dispatch thread
itself, which then polls the front for the client's next call for up to 1 ms instead of sleeping
(`POLL_AFTER_ANSWER_S`). The other methods become tasks on the event loop. ModelInfer takes the servicer's one path
(`InferenceServicer.start_model_infer`), as grpc.aio's ModelInfer does. Exceptions become statuses
in one method (`_fail_with`) through `serving.status.status_of`, the table the grpc.aio interceptor
applies; the front's own refusals (shutting down, too large, unparsable) are grpcio's statuses and
words. The front has no TLS, so a TLS server uses grpc.aio alone.

Bearer tokens (`serving.auth`): the front reads each call's metadata (`call_details=True` gives it
with every event) and the dispatch thread refuses a call that lacks its method's token before it is
decoded or queued. pygrpc-native's own `bearer_token_sha256` check is not used: it guards every
path alike, while health and ServerLive/ServerReady must stay open and repository control needs
another token. Calls the front forwards to grpc.aio are checked there by `auth.AuthInterceptor`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc

from serving.auth import Guard
from serving.cores import usable_cores
from serving.dataplane import HeldBytes
from serving.limits import INLINE_PAYLOAD_BYTES
from serving.status import MALFORMED_MESSAGE, status_of
from serving.wake_latency import HOLD_S, WakeLatency
from serving.wire import converted_bytes, split_raw_inputs

log = logging.getLogger(__name__)
HOLD_MS = max(1, round(HOLD_S * 1000))  # the front's wait takes whole milliseconds

# After answering calls itself, with no other direct call open, the dispatch thread asks the front
# for the next call without sleeping for up to this long (each ask releases the GIL, ~2 us), as long
# as its last wait for calls was this short: a sleeping thread takes ~0.1 ms to wake on a small busy VM,
# and a closed-loop Python client sends its next call ~0.4 ms after its answer. Sparse callers,
# whose next call comes later, cost no polling; nor does a busy model (its calls are open).
# peers.py b1c1, foreign CNN: p50 0.87 against 1.03 ms; 0.6 and 2 ms windows measured the same (README).
POLL_AFTER_ANSWER_S = 0.001

Handler = Callable[[object, "CallContext"], Awaitable[object]]
Reply = Callable[[object], None]  # the response message, or an exception to map to a status
# start(request message, deadline in time.monotonic() seconds, reply, run_here, raw views) -> a
# handle with cancel(); run_here: the call arrived alone, and may run on the dispatch thread if its
# model is idle; raw views: its raw_input_contents, split off the payload (serving.wire), or None
Direct = Callable[[object, "float | None", Reply, bool, "list[memoryview] | None"], object]


def available() -> bool:
    try:
        import pygrpc_native  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class UnaryMethod:
    """One unary-unary method as generated code registers it: decode, handle, encode."""

    path: str
    handler: Handler
    deserialize: Callable[[bytes], object]
    serialize: Callable[[object], bytes]


class CallContext:
    """The part of grpc.aio.ServicerContext our unary handlers use: the time left to the deadline."""

    __slots__ = ("_deadline",)

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline  # time.monotonic() seconds

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())


class MethodTable:
    """Stands in for the grpc.aio server while generated `add_*Servicer_to_server` functions run:
    forwards every registration to it and keeps the unary-unary handlers for the front."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server
        self.unary: dict[str, UnaryMethod] = {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.server.add_registered_method_handlers(service, handlers)
        for name, handler in handlers.items():
            if not handler.request_streaming and not handler.response_streaming:
                path = f"/{service}/{name}"
                self.unary[path] = UnaryMethod(
                    path, handler.unary_unary, handler.request_deserializer, handler.response_serializer
                )


class NativeFront:
    """The public port. `start` needs the running loop; `drain` then `close` stop it gracefully."""

    def __init__(self, address: str, methods: list[UnaryMethod], fallback_socket: str, max_message: int,
                 direct: dict[str, Direct] | None = None, guard: Guard | None = None,
                 on_fatal: Callable[[str], None] | None = None, held: HeldBytes | None = None,
                 heavy: Executor | None = None, keep_cores_awake: bool = False) -> None:
        from pygrpc_native import EVENT_CANCEL, NativeGrpcFront

        self._cancel_event = EVENT_CANCEL
        self.methods = methods
        self._guard = guard
        # per method id: the tokens that open it (None: open); looked up once, not per call
        self._accepted = [None if guard is None else guard.accepted(m.path) for m in methods]
        direct = direct or {}
        self._direct = {number: direct[m.path] for number, m in enumerate(methods) if m.path in direct}
        self._direct_calls: dict[int, object] = {}  # call id -> its handle, until answered
        self._last_wait_s = 0.0  # how long this thread last waited for events
        self.max_message = max_message
        io_threads = 1 if usable_cores() <= 2 else 2  # on 2 cores a second one only competes
        try:
            self._front = NativeGrpcFront(
                address, [(m.path, False) for m in methods], io_threads=io_threads, call_details=True, metrics=True
            )
        except OSError as exc:
            raise OSError(f"cannot bind gRPC port {address}: {exc}") from None
        self._front.set_fallback(fallback_socket)
        self.port = self._front.bound_port
        self._calls: dict[int, asyncio.Task] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._on_fatal = on_fatal  # called on the event loop if the dispatch thread fails
        # Large direct calls are parsed and checked here, so that the dispatch thread stays free.
        self._heavy = heavy  # where large calls are parsed and queued (the data plane's, one thread)
        self._held = held  # the data plane's budget of bytes held by accepted requests
        # idle cores kept polling while calls arrive close together (serving/wake_latency.py); only
        # the dispatch thread touches it, and closes it when it ends
        self._wake = WakeLatency(keep_cores_awake)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._front.start()
        threading.Thread(target=self._dispatch, name="dnnzoo-grpc-front", daemon=True).start()

    async def drain(self, grace: float) -> None:
        """Refuse new calls (UNAVAILABLE), give running ones `grace` seconds, answer the rest with
        UNAVAILABLE, then wait until every answer has left (`respond` only queues it)."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        running = dict(self._calls)
        if running:
            await asyncio.wait(running.values(), timeout=grace)
        while self._direct_calls and loop.time() < end:
            await asyncio.sleep(0.005)
        for call_id, handle in list(self._direct_calls.items()):
            if handle is not None:
                handle.cancel()
            self._fail(call_id, grpc.StatusCode.UNAVAILABLE, "server shut down before the request finished")
        for call_id, task in running.items():
            if not task.done():
                task.cancel()
                self._fail(call_id, grpc.StatusCode.UNAVAILABLE, "server shut down before the request finished")
        await asyncio.gather(*running.values(), return_exceptions=True)
        flushed_by = max(end, loop.time() + 1.0)  # the rest of the grace period, and at least a second
        while self._unfinished() and loop.time() < flushed_by:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Close the port; calls still open (none after `drain`) get UNAVAILABLE."""
        await asyncio.get_running_loop().run_in_executor(None, self._front.close)

    def _unfinished(self) -> int:
        """Calls the front has started and not finished writing, from its own counters."""
        methods = self._front.metrics()["methods"]
        return sum(m["started"] - sum(s["count"] for s in m["status"].values()) for m in methods.values())

    # -- on the dispatch thread -------------------------------------------------------------

    def _dispatch(self) -> None:
        """The dispatch thread. If it fails, nothing would read the port any more: the failure is
        reported (the server then goes NOT_SERVING and exits non-zero), never swallowed."""
        try:
            self._dispatch_events()
        except BaseException as exc:  # noqa: BLE001
            log.critical("the gRPC front's dispatch thread failed", exc_info=exc)
            if self._on_fatal is not None and not self._stopping:
                try:
                    self._loop.call_soon_threadsafe(self._on_fatal, f"the gRPC front's dispatch thread failed ({type(exc).__name__})")
                except RuntimeError:  # the loop is closed: the process is ending anyway
                    pass
        finally:
            self._wake.close()

    def _dispatch_events(self) -> None:
        front, loop = self._front, self._loop
        events = front.recv_batch_details(256)
        while events is not None:
            self._wake.hold()
            if self._guard is not None:
                events = [event for event in events if not self._refused(event)]
            all_answered = False  # it took direct calls and none is open now (answered here, or at once)
            if self._direct:
                alone, count = len(events) == 1, len(events)
                events = [event for event in events if not self._take_direct(event, alone)]
                all_answered = len(events) < count and not self._direct_calls
            if events:
                try:
                    loop.call_soon_threadsafe(self._on_events, events)
                except RuntimeError:  # the loop is closed: nobody can answer any more
                    front.close()
                    return
            events = self._next_events(all_answered)

    def _next_events(self, all_answered: bool) -> list | None:
        """The next events (None: the front closed). When the calls this thread took are all answered
        and none is open, first asked for without sleeping, if the last wait ended within
        POLL_AFTER_ANSWER_S."""
        front = self._front
        start = time.perf_counter()
        events = []
        if all_answered and self._last_wait_s <= POLL_AFTER_ANSWER_S:
            end = start + POLL_AFTER_ANSWER_S
            while (events := front.recv_batch_details(256, 0)) == [] and time.perf_counter() < end:
                pass
        if events == [] and self._wake.held:  # calls came close together: hold the cores awake a little longer
            events = front.recv_batch_details(256, HOLD_MS)
            if events == []:
                self._wake.release()
        if events == []:
            events = front.recv_batch_details(256)
        self._last_wait_s = time.perf_counter() - start
        return events

    def _refused(self, event) -> bool:
        """Fail a call whose metadata lacks the token its method needs; False for the rest."""
        kind, call_id, method_id, _payload, _client, details = event
        if kind == self._cancel_event:
            return False
        accepted = self._accepted[method_id]
        if accepted is None:
            return False
        refusal = self._guard.check(accepted, details[0] if details else ())
        if refusal is None:
            return False
        self._fail(call_id, *refusal)
        return True

    def _take_direct(self, event, alone: bool) -> bool:
        """Start a direct call, or cancel one; False for what the event loop handles."""
        kind, call_id, method_id, payload, _client, details = event
        if kind == self._cancel_event:
            if call_id not in self._direct_calls:
                return False
            handle = self._direct_calls.pop(call_id, None)
            if handle is not None:
                handle.cancel()
            return True
        start = self._direct.get(method_id)
        if start is None or self._stopping:
            return False
        remaining = details[2] if details else None
        deadline = None if remaining is None else time.monotonic() + remaining
        self._direct_calls[call_id] = None  # the answer may come before `start` returns
        if self._too_large(call_id, len(payload), "received"):
            self._direct_calls.pop(call_id, None)
            return True
        # Raw inputs are read in place, never parsed: what is left to parse, and the strings to
        # convert, decide where a call is decoded (a large one takes time: not on this thread).
        body, raw_views = split_raw_inputs(payload)
        method = self.methods[method_id]
        request = None
        if len(body) <= INLINE_PAYLOAD_BYTES or self._heavy is None:
            request = self._parse(call_id, method, body)
            if request is None:
                self._direct_calls.pop(call_id, None)
                return True
            if self._heavy is None or converted_bytes(request, raw_views) <= INLINE_PAYLOAD_BYTES:
                self._start_direct(start, call_id, method, request, raw_views, deadline, alone)
                return True
        self._decode_later(start, call_id, method_id, body, request, raw_views, deadline, len(payload))
        return True

    def _decode_later(self, start: Direct, call_id: int, method_id: int, body: bytes, request: object | None,
                      raw_views: list[memoryview] | None, deadline: float | None, size: int) -> None:
        """Hand a call with much to decode (typed contents, many strings) to the decoder thread,
        parsed (`request`) or not yet; its payload (`size` bytes) counts against the server's held
        bytes until it is queued (then the request's own inputs count), so a greedy client cannot
        pile up a backlog of payloads here either."""
        if self._held is not None:
            try:
                self._held.take(size)
            except Exception as exc:  # noqa: BLE001 - TooLarge, mapped like every other error
                self._direct_calls.pop(call_id, None)
                self._fail_with(call_id, self.methods[method_id], exc)
                return

        def decode() -> None:
            try:
                method = self.methods[method_id]
                parsed = request if request is not None else self._parse(call_id, method, body)
                if parsed is None:
                    self._direct_calls.pop(call_id, None)
                    return
                self._start_direct(start, call_id, method, parsed, raw_views, deadline, False)
            finally:
                if self._held is not None:
                    self._held.give_back(size)

        self._heavy.submit(decode)

    def _start_direct(self, start: Direct, call_id: int, method: UnaryMethod, request: object,
                      raw_views: list[memoryview] | None, deadline: float | None, alone: bool) -> None:
        """Decode a parsed direct call and queue it at its model (on the dispatch thread, or the
        decoder thread for a large one)."""
        try:
            handle = start(request, deadline, lambda result: self._reply(call_id, method, result), alone, raw_views)
        except Exception as exc:  # noqa: BLE001 - what is wrong with the request itself
            self._direct_calls.pop(call_id, None)
            self._fail_with(call_id, method, exc)
            return
        if call_id in self._direct_calls:
            self._direct_calls[call_id] = handle

    def _reply(self, call_id: int, method: UnaryMethod, result: object) -> None:
        """On a model's instance thread: send a direct call's answer, or its error."""
        self._direct_calls.pop(call_id, None)
        if isinstance(result, BaseException):
            self._fail_with(call_id, method, result)
            return
        data = method.serialize(result)
        if not self._too_large(call_id, len(data), "sent"):
            self._front.respond(call_id, data)

    # -- on the event loop ------------------------------------------------------------------

    def _on_events(self, events) -> None:
        now = time.monotonic()
        for kind, call_id, method_id, payload, _client, details in events:
            if kind == self._cancel_event:  # the client cancelled, or its deadline passed
                task = self._calls.get(call_id)
                if task is not None:
                    task.cancel()
                continue
            if self._stopping:
                self._fail(call_id, grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry elsewhere")
                continue
            remaining = details[2] if details else None
            deadline = None if remaining is None else now + remaining
            self._calls[call_id] = self._loop.create_task(self._run(call_id, self.methods[method_id], payload, deadline))

    async def _run(self, call_id: int, method: UnaryMethod, payload: bytes, deadline: float | None) -> None:
        try:
            request = self._parse(call_id, method, payload)
            if request is None:
                return
            try:
                data = method.serialize(await method.handler(request, CallContext(deadline)))
            except asyncio.CancelledError:
                return  # the front has answered the client already (CANCELLED or DEADLINE_EXCEEDED)
            except Exception as exc:  # noqa: BLE001 - the handler's error
                self._fail_with(call_id, method, exc)
                return
            if not self._too_large(call_id, len(data), "sent"):
                self._front.respond(call_id, data)
        finally:
            self._calls.pop(call_id, None)

    def _parse(self, call_id: int, method: UnaryMethod, payload: bytes) -> object | None:
        """The request message, or None after failing the call (too large, or malformed)."""
        if self._too_large(call_id, len(payload), "received"):
            return None
        try:
            return method.deserialize(payload)
        except Exception:  # noqa: BLE001 - any decode failure is the client's malformed message
            self._fail(call_id, grpc.StatusCode.INVALID_ARGUMENT, MALFORMED_MESSAGE)
            return None

    def _too_large(self, call_id: int, size: int, direction: str) -> bool:
        """Fail the call with RESOURCE_EXHAUSTED, as grpcio words it, if a message is over the limit."""
        if size <= self.max_message:
            return False
        self._fail(call_id, grpc.StatusCode.RESOURCE_EXHAUSTED, f"{direction} message larger than max ({size} vs. {self.max_message})")
        return True

    def _fail_with(self, call_id: int, method: UnaryMethod, exc: BaseException) -> None:
        """Answer an exception raised for a call with its status: the one place this front maps
        errors, through the table the grpc.aio interceptor uses too."""
        self._fail(call_id, *status_of(exc, method.path))

    def _fail(self, call_id: int, code: grpc.StatusCode, message: str) -> None:
        self._front.fail(call_id, code.value[0], message)

"""The one table from domain exceptions to gRPC status codes, and the interceptor that applies it.

Servicers raise; they never pick codes. An exception outside the table is a bug: the client gets
INTERNAL with a generic message and the traceback goes to the log only, never over the wire. A
ServingError is the client's mistake or the server's honest refusal: its message goes to the client,
cut to `limits.MAX_MESSAGE_CHARS` and with absolute paths reduced to their last component (a reason
may quote a file of the repository), and it is logged at debug level at most, without a traceback.
"""

from __future__ import annotations

import inspect
import logging

import grpc

from serving import errors
from serving.limits import MAX_MESSAGE_CHARS, without_paths

log = logging.getLogger(__name__)

CODES: dict[type[errors.ServingError], grpc.StatusCode] = {
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.UnknownItems: grpc.StatusCode.NOT_FOUND,
    errors.ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unsupported: grpc.StatusCode.FAILED_PRECONDITION,
    errors.LoadFailed: grpc.StatusCode.INVALID_ARGUMENT,  # Triton's code for "load failed for model"
}

INTERNAL_MESSAGE = "internal server error (details are in the server log)"
_CUT = " ... (cut short)"


def client_message(text: str) -> str:
    """A message as a client may see it: paths scrubbed, at most MAX_MESSAGE_CHARS characters."""
    text = without_paths(text[: MAX_MESSAGE_CHARS * 4])
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - len(_CUT)] + _CUT
    return text


def status_of(exc: BaseException, method: str = "") -> tuple[grpc.StatusCode, str]:
    """(code, message) for an exception; unexpected ones are logged with their traceback."""
    for cls in type(exc).__mro__:
        if cls in CODES:
            log.debug("%s: %s: %s", method or "a request", cls.__name__, exc)
            return CODES[cls], client_message(str(exc))
    log.error("unexpected error in %s", method or "a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler of our services so a raised exception becomes its mapped status.

    Streaming responses are wrapped too (ForecastStream ends with the mapped status); ModelStreamInfer
    reports per-request errors inside its messages (as Triton does, using `status_of` itself) and so
    never lets one escape. Handlers that write with `context.write` instead of yielding (health's
    Watch) are left alone; health and reflection raise nothing of ours.
    """

    def __init__(self) -> None:
        # method -> (the handler grpc gave, our wrapper of it): grpc asks for every RPC, and
        # building the wrapper each time costs as much as a cheap request's own Python work.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    @staticmethod
    def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:

        async def mapped(context, exc: Exception) -> None:
            code, message = status_of(exc, method)
            await context.abort(code, message)

        deserialize = _tolerant(handler.request_deserializer)

        if handler.response_streaming:
            if handler.request_streaming:
                inner, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
            else:
                inner, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
            if not inspect.isasyncgenfunction(inner):
                return handler  # writes with context.write (health's Watch): nothing to wrap

            async def streaming(request, context):
                try:
                    request = _checked_stream(request) if handler.request_streaming else _checked(request)
                    async for response in inner(request, context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - this is the one place that maps them all
                    await mapped(context, exc)

            behaviour = streaming
        else:
            if handler.request_streaming:
                inner, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
            else:
                inner, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler

            async def unary(request, context):
                try:
                    request = _checked_stream(request) if handler.request_streaming else _checked(request)
                    return await inner(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - this is the one place that maps them all
                    await mapped(context, exc)

            behaviour = unary

        return factory(behaviour, request_deserializer=deserialize, response_serializer=handler.response_serializer)


MALFORMED_MESSAGE = "failed to parse the request message"


class _Malformed:
    """Stands in for a request message that could not be parsed, so that the handler's wrapper
    answers INVALID_ARGUMENT (grpc.aio itself would answer UNKNOWN and log a traceback)."""


def _tolerant(deserialize):
    if deserialize is None:
        return None

    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - any parse failure is the client's malformed message
            return _Malformed()

    return parse


def _checked(request):
    if isinstance(request, _Malformed):
        raise errors.InvalidInput(MALFORMED_MESSAGE)
    return request


async def _checked_stream(requests):
    async for request in requests:
        yield _checked(request)

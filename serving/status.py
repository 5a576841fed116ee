"""The one table from domain exceptions to gRPC status codes, and the interceptor that applies it.

Servicers raise; they never pick codes. An exception outside the table is a bug: the client gets
INTERNAL with a generic message and the traceback goes to the log only, never over the wire.
"""

from __future__ import annotations

import logging

import grpc

from serving import errors

log = logging.getLogger(__name__)

CODES: dict[type[errors.ServingError], grpc.StatusCode] = {
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unsupported: grpc.StatusCode.FAILED_PRECONDITION,
    errors.LoadFailed: grpc.StatusCode.UNAVAILABLE,
}

INTERNAL_MESSAGE = "internal server error (details are in the server log)"


def status_of(exc: BaseException, method: str = "") -> tuple[grpc.StatusCode, str]:
    """(code, message) for an exception; unexpected ones are logged with their traceback."""
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls], str(exc)
    log.error("unexpected error in %s", method or "a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-response handler so a raised exception becomes its mapped status.

    Streaming-response handlers are left alone: ModelStreamInfer reports errors inside its messages
    (as Triton does) and uses `status_of` itself; health and reflection raise nothing of ours.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.response_streaming:
            return handler
        method = handler_call_details.method
        if handler.request_streaming:
            inner, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        else:
            inner, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler

        async def behaviour(request, context):
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - this is the one place that maps them all
                code, message = status_of(exc, method)
                await context.abort(code, message)

        return factory(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

"""The Open Inference Protocol servicer (`inference.GRPCInferenceService`).

Each method only translates: protobuf in, a data-plane call, protobuf out. ModelInfer has one path
(`start_model_infer`) that both gRPC fronts and ModelStreamInfer take. Errors are raised and turned
into status codes by `serving.status` (one table); ModelStreamInfer is the exception to raising,
because Triton reports a stream's per-request errors in `error_message` and keeps the stream open,
so it uses the same table to write the message.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import json_format

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from protos.model_config_pb2 import ModelConfig

from serving.codec import decode_request, encode_response
from serving.batching import await_callback
from serving.dataplane import Call, DataPlane
from serving.deadlines import deadline_of
from serving.errors import InvalidInput, Unsupported
from serving.limits import INLINE_PAYLOAD_BYTES
from serving.repository import check_override
from serving.statistics import Duration, VersionStatistics
from serving.status import status_of


def _config_override(request: pb.RepositoryModelLoadRequest) -> ModelConfig | None:
    """Triton's `config` load parameter: the model's config as JSON, used instead of its config.pbtxt."""
    if "config" not in request.parameters:
        return None
    parameter = request.parameters["config"]
    if parameter.WhichOneof("parameter_choice") != "string_param":
        raise InvalidInput("load parameter 'config' must be a string holding the model config as JSON")
    try:
        config = json_format.Parse(parameter.string_param, ModelConfig())
    except json_format.ParseError as exc:
        raise InvalidInput(f"load parameter 'config' is not a model config in JSON: {exc}") from None
    try:
        check_override(config)
    except ValueError as exc:
        raise InvalidInput(f"load parameter 'config': {exc}") from None
    if config.name and config.name != request.model_name:
        raise InvalidInput(f"load parameter 'config' names model {config.name!r}, the request loads {request.model_name!r}")
    return config


def _duration(value: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=value.count, ns=value.ns)


def _statistics(stats: VersionStatistics) -> pb.ModelStatistics:
    message = pb.ModelStatistics(
        name=stats.name,
        version=stats.version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
    )
    for size, batch in sorted(stats.batches.items()):
        message.batch_stats.add(
            batch_size=size,
            compute_input=_duration(batch.compute_input),
            compute_infer=_duration(batch.compute_infer),
            compute_output=_duration(batch.compute_output),
        )
    return message


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    async def ServerMetadata(self, request, context):
        name, version, extensions = self.plane.server_metadata()
        return pb.ServerMetadataResponse(name=name, version=version, extensions=extensions)

    async def ModelMetadata(self, request, context):
        info = self.plane.model_metadata(request.name, request.version)
        response = pb.ModelMetadataResponse(name=info.name, versions=info.versions, platform=info.platform)
        for tensors, target in ((info.inputs, response.inputs), (info.outputs, response.outputs)):
            for t in tensors:
                target.add(name=t.name, datatype=t.datatype, shape=t.shape)
        return response

    async def ModelConfig(self, request, context):
        return pb.ModelConfigResponse(config=self.plane.model_config(request.name, request.version))

    async def ModelInfer(self, request, context):
        return await self.model_infer(request, deadline_of(context))

    def start_model_infer(self, request: pb.ModelInferRequest, deadline: float | None, reply: Callable[[object], None],
                          run_here: bool = False, raw_views: list[memoryview] | None = None) -> Call:
        """The one ModelInfer path, whichever front the call came in on: decoded, validated and
        queued on the calling thread; `reply` gets the response message, or the exception to map, on
        the model's instance thread (or on this one, see `DataPlane.start`). The native front calls
        it straight from its dispatch thread, with the request's raw inputs split off the payload it
        arrived in (`raw_views`, serving.wire); grpc.aio through `model_infer`."""

        def done(result) -> None:
            if not isinstance(result, BaseException):
                try:
                    result = encode_response(result)
                except Exception as exc:  # noqa: BLE001 - a bug: answered INTERNAL, never left unanswered
                    result = exc
            reply(result)

        return self.plane.start(decode_request(request, self.plane.limits, raw_views), deadline, done, run_here)

    async def model_infer(self, request: pb.ModelInferRequest, deadline: float | None) -> pb.ModelInferResponse:
        """`start_model_infer` for the event loop; a large request is decoded and queued off it."""
        heavy = self.plane.heavy if request.ByteSize() > INLINE_PAYLOAD_BYTES else None  # as the native front does
        return await await_callback(lambda reply: self.start_model_infer(request, deadline, reply), Call.cancel, heavy)

    async def ModelStreamInfer(self, request_iterator, context):
        deadline = deadline_of(context)
        async for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self.model_infer(request, deadline))
            except Exception as exc:  # noqa: BLE001 - reported in the stream, which stays open
                _, message = status_of(exc, "ModelStreamInfer")
                yield pb.ModelStreamInferResponse(
                    error_message=message,
                    infer_response=pb.ModelInferResponse(
                        model_name=request.model_name, model_version=request.model_version, id=request.id
                    ),
                )

    async def ModelStatistics(self, request, context):
        stats = self.plane.statistics(request.name, request.version)
        return pb.ModelStatisticsResponse(model_stats=[_statistics(s) for s in stats])

    async def RepositoryIndex(self, request, context):
        rows = self.plane.index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(name=r.name, version=r.version, state=r.state, reason=r.reason)
                for r in rows
            ]
        )

    async def RepositoryModelLoad(self, request, context):
        if any(key.startswith("file:") for key in request.parameters):
            raise Unsupported("model file contents ('file:' parameters) are not accepted; the model files come from the repository")
        await self.plane.load(request.model_name, _config_override(request))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        await self.plane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

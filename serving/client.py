"""A Python client for dnnzoo's server: the typed task services and the Open Inference Protocol.

It needs grpcio, protobuf, numpy (and Pillow only to send PIL images), never torch:

    from serving.client import Client
    with Client("localhost:8001", timeout=10) as client:
        reply = client.classify("digits_classifier", ["seven.png"], top_k=3)
        print(reply.results[0].classes[0].label)

Typed calls return the `dnnzoo.v1` response messages as they are (their fields are documented in
`protos/dnnzoo_tasks.proto`); `infer` returns numpy arrays by output name. Every call takes a
`timeout` (seconds; the client's default otherwise), sent as the gRPC deadline. Failures raise
`grpc.RpcError` with the server's status code and message. TLS: pass `TLS(ca=...)`, plus `cert`
and `key` for mutual TLS. Access tokens: `token=` (else the DNNZOO_TOKEN environment variable) is sent
as `authorization: Bearer <token>` on every call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import dnnzoo_tasks_pb2 as tasks
from protos import dnnzoo_tasks_pb2_grpc as tasks_grpc
from protos import grpc_service_pb2 as oip
from protos import grpc_service_pb2_grpc as oip_grpc
from protos.config_text import from_name, from_numpy

from serving.codec import decode_bytes, encode_bytes

DEFAULT_ADDRESS = "localhost:8001"
TOKEN_ENV = "DNNZOO_TOKEN"


@dataclass(frozen=True)
class TLS:
    """Channel security: `ca` verifies the server (None = the system's roots); `cert` + `key` are the
    client's own certificate for mutual TLS; `server_name` overrides the name checked in the server
    certificate (e.g. when connecting by IP address)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate and its key go together")
        read = lambda p: None if p is None else Path(p).read_bytes()  # noqa: E731
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call of a channel, whatever its kind."""

    def __init__(self, token: str) -> None:
        self.entry = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details.method, details.timeout, (*(details.metadata or ()), self.entry),
                            details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_token(details), requests)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


def image_message(image) -> tasks.Image:
    """An `Image` from a file path, encoded bytes, a uint8 numpy array [H, W(, C)] or a PIL image."""
    if isinstance(image, tasks.Image):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return tasks.Image(encoded=bytes(image))
    if isinstance(image, (str, Path)):
        return tasks.Image(encoded=Path(image).read_bytes())
    if hasattr(image, "getbands"):  # a PIL image: send its pixels as they are
        image = np.asarray(image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"raw images must be uint8 pixels, got {array.dtype}")
    return tasks.Image(raw=tasks.RawImage(pixels=np.ascontiguousarray(array).tobytes(), shape=list(array.shape)))


def decode_image(image: tasks.OutputImage) -> np.ndarray:
    """The uint8 [H, W] pixels of an output image (raw if sent, else decoded from its PNG)."""
    if image.raw.pixels:
        return np.frombuffer(image.raw.pixels, np.uint8).reshape(tuple(image.raw.shape))
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(image.png)))


class Client:
    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float | None = 30.0, tls: TLS | None = None,
                 max_message_mb: int = 64, token: str | None = None) -> None:  # fmt: skip
        """`token`: the bearer token to send; None reads DNNZOO_TOKEN, "" sends none."""
        token = os.environ.get(TOKEN_ENV, "") if token is None else token
        options = [("grpc.max_send_message_length", max_message_mb << 20), ("grpc.max_receive_message_length", max_message_mb << 20)]
        if tls is None:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self.channel = grpc.secure_channel(address, tls.credentials(), options=options)
        if token.strip():
            self.channel = grpc.intercept_channel(self.channel, _Bearer(token.strip()))
        self.timeout = timeout
        self.classification = tasks_grpc.ImageClassificationStub(self.channel)
        self.detection = tasks_grpc.ObjectDetectionStub(self.channel)
        self.words = tasks_grpc.WordVectorsStub(self.channel)
        self.sequences = tasks_grpc.SequencePredictionStub(self.channel)
        self.generation = tasks_grpc.ImageGenerationStub(self.channel)
        self.autoencoding = tasks_grpc.AutoencodingStub(self.channel)
        self.tabular = tasks_grpc.TabularPredictionStub(self.channel)
        self.inference = oip_grpc.GRPCInferenceServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _t(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    # -- health -----------------------------------------------------------------------------

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """grpc.health.v1 status name of `service` ("" = the whole server): SERVING, NOT_SERVING, ..."""
        reply = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self._t(timeout))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    # -- typed task services ----------------------------------------------------------------------

    def classify(self, model: str, images: Iterable, top_k: int | None = None, version: str = "",
                 timeout: float | None = None) -> tasks.ClassifyResponse:  # fmt: skip
        request = tasks.ClassifyRequest(model=model, model_version=version, images=[image_message(i) for i in images])
        if top_k is not None:
            request.top_k = top_k
        return self.classification.Classify(request, timeout=self._t(timeout))

    def detect(self, model: str, images: Iterable, score_threshold: float | None = None, iou_threshold: float | None = None,
               max_detections: int | None = None, version: str = "", timeout: float | None = None) -> tasks.DetectResponse:  # fmt: skip
        request = tasks.DetectRequest(model=model, model_version=version, images=[image_message(i) for i in images])
        for name, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold), ("max_detections", max_detections)):
            if value is not None:
                setattr(request, name, value)
        return self.detection.Detect(request, timeout=self._t(timeout))

    def get_vectors(self, model: str, words: Iterable[str], unit: bool = False, version: str = "",
                    timeout: float | None = None) -> tasks.GetVectorsResponse:  # fmt: skip
        request = tasks.GetVectorsRequest(model=model, model_version=version, words=list(words), unit=unit)
        return self.words.GetVectors(request, timeout=self._t(timeout))

    def most_similar(self, model: str, positive: Iterable[str] = (), negative: Iterable[str] = (), top_k: int | None = None,
                     exclude_inputs: bool | None = None, version: str = "", timeout: float | None = None) -> tasks.MostSimilarResponse:  # fmt: skip
        request = tasks.MostSimilarRequest(model=model, model_version=version, positive=list(positive), negative=list(negative))
        if top_k is not None:
            request.top_k = top_k
        if exclude_inputs is not None:
            request.exclude_inputs = exclude_inputs
        return self.words.MostSimilar(request, timeout=self._t(timeout))

    def similarity(self, model: str, pairs: Iterable[tuple[str, str]], version: str = "",
                   timeout: float | None = None) -> tasks.SimilarityResponse:  # fmt: skip
        request = tasks.SimilarityRequest(model=model, model_version=version, pairs=[tasks.WordPair(first=a, second=b) for a, b in pairs])
        return self.words.Similarity(request, timeout=self._t(timeout))

    def forecast(self, model: str, series: Iterable[Iterable[float]], horizon: int | None = None, version: str = "",
                 timeout: float | None = None) -> tasks.ForecastResponse:  # fmt: skip
        request = tasks.ForecastRequest(model=model, model_version=version, series=[tasks.Series(values=list(s)) for s in series])
        if horizon is not None:
            request.horizon = horizon
        return self.sequences.Forecast(request, timeout=self._t(timeout))

    def forecast_stream(self, model: str, observations: Iterable, version: str = "",
                        timeout: float | None = None) -> Iterator[tasks.ForecastStreamResponse]:  # fmt: skip
        """One answer per item of `observations` (a value, or a list of values sent as one chunk)."""

        def requests():
            first = True
            for item in observations:
                values = list(item) if isinstance(item, Iterable) else [float(item)]
                yield tasks.ForecastStreamRequest(model=model if first else "", model_version=version if first else "", values=values)
                first = False

        return self.sequences.ForecastStream(requests(), timeout=self._t(timeout))

    def generate(self, model: str, count: int = 1, seed: int | None = None, latents: Iterable[Iterable[float]] | None = None,
                 png: bool = True, raw: bool = False, version: str = "", timeout: float | None = None) -> tasks.GenerateResponse:  # fmt: skip
        request = tasks.GenerateRequest(model=model, model_version=version, count=count)
        if latents is not None:
            request.latents.vectors.extend(tasks.Vector(values=list(v)) for v in latents)
        elif seed is not None:
            request.seed = seed
        request.formats.extend(([tasks.PNG] if png else []) + ([tasks.RAW] if raw else []))
        return self.generation.Generate(request, timeout=self._t(timeout))

    def encode(self, model: str, images: Iterable, version: str = "", timeout: float | None = None) -> tasks.EncodeResponse:
        request = tasks.EncodeRequest(model=model, model_version=version, images=[image_message(i) for i in images])
        return self.autoencoding.Encode(request, timeout=self._t(timeout))

    def reconstruct(self, model: str, images: Iterable, png: bool = True, raw: bool = False, version: str = "",
                    timeout: float | None = None) -> tasks.ReconstructResponse:  # fmt: skip
        request = tasks.ReconstructRequest(model=model, model_version=version, images=[image_message(i) for i in images])
        request.formats.extend(([tasks.PNG] if png else []) + ([tasks.RAW] if raw else []))
        return self.autoencoding.Reconstruct(request, timeout=self._t(timeout))

    def predict(self, model: str, rows: Iterable[dict] = (), csv: str = "", top_k: int | None = None, version: str = "",
                timeout: float | None = None) -> tasks.PredictResponse:  # fmt: skip
        """Rows as column -> str | number | None (missing) maps, or CSV text with a header row."""
        request = tasks.PredictRequest(model=model, model_version=version, csv=csv)
        if top_k is not None:
            request.top_k = top_k
        for row in rows:
            cells = request.rows.add().cells
            for name, value in row.items():
                if value is None:
                    cells[name].missing = True
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    cells[name].number = float(value)
                else:
                    cells[name].text = str(value)
        return self.tabular.Predict(request, timeout=self._t(timeout))

    def columns(self, model: str, version: str = "", timeout: float | None = None) -> tasks.ColumnsResponse:
        """A tabular model's columns: numeric or text, training's means and spreads, known text values."""
        return self.tabular.Columns(tasks.ColumnsRequest(model=model, model_version=version), timeout=self._t(timeout))

    # -- Open Inference Protocol ------------------------------------------------------------------

    def server_live(self, timeout: float | None = None) -> bool:
        return self.inference.ServerLive(oip.ServerLiveRequest(), timeout=self._t(timeout)).live

    def server_ready(self, timeout: float | None = None) -> bool:
        return self.inference.ServerReady(oip.ServerReadyRequest(), timeout=self._t(timeout)).ready

    def model_ready(self, model: str, version: str = "", timeout: float | None = None) -> bool:
        return self.inference.ModelReady(oip.ModelReadyRequest(name=model, version=version), timeout=self._t(timeout)).ready

    def model_metadata(self, model: str, version: str = "", timeout: float | None = None) -> oip.ModelMetadataResponse:
        return self.inference.ModelMetadata(oip.ModelMetadataRequest(name=model, version=version), timeout=self._t(timeout))

    def model_config(self, model: str, version: str = "", timeout: float | None = None):
        return self.inference.ModelConfig(oip.ModelConfigRequest(name=model, version=version), timeout=self._t(timeout)).config

    def repository_index(self, ready_only: bool = False, timeout: float | None = None) -> list:
        return list(self.inference.RepositoryIndex(oip.RepositoryIndexRequest(ready=ready_only), timeout=self._t(timeout)).models)

    def model_statistics(self, model: str = "", version: str = "", timeout: float | None = None) -> list:
        request = oip.ModelStatisticsRequest(name=model, version=version)
        return list(self.inference.ModelStatistics(request, timeout=self._t(timeout)).model_stats)

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: Iterable[str] = (), version: str = "",
              timeout: float | None = None) -> dict[str, np.ndarray]:  # fmt: skip
        """ModelInfer with numpy inputs (raw contents); returns the outputs by name as numpy arrays."""
        request = oip.ModelInferRequest(model_name=model, model_version=version)
        for name, value in inputs.items():
            array = np.asarray(value)
            datatype = "BYTES" if array.dtype.kind in "OSU" else from_numpy(array.dtype).name
            request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
            if datatype == "BYTES":
                request.raw_input_contents.append(encode_bytes(array))
            else:
                request.raw_input_contents.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
        request.outputs.extend(oip.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs)
        reply = self.inference.ModelInfer(request, timeout=self._t(timeout))
        result = {}
        for tensor, raw in zip(reply.outputs, reply.raw_output_contents):
            shape = tuple(tensor.shape)
            if tensor.datatype == "BYTES":
                result[tensor.name] = decode_bytes(raw, int(np.prod(shape)), tensor.name).reshape(shape)
            else:
                result[tensor.name] = np.frombuffer(raw, from_name(tensor.datatype).numpy.newbyteorder("<")).reshape(shape)
        return result

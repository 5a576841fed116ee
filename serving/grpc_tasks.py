"""The typed task servicers (`dnnzoo.v1`): protobuf in, a `serving.tasks` call, protobuf out.

Nothing else happens here: validation, model lookup, batching and errors live behind the task
functions; raised errors become status codes in `serving.status` (ForecastStream included, which
ends with the mapped status). Repeated fields go to the task functions as they are, or seen through
`Converted`, never copied into Python lists first: a task function checks its caps on their length
before anything is converted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc
import numpy as np

from protos import dnnzoo_tasks_pb2 as pb
from protos import dnnzoo_tasks_pb2_grpc as pb_grpc

from serving.deadlines import deadline_of
from serving.errors import InvalidInput
from serving.tasks import autoencoding, classification, detection, generation, sequences, tabular, words
from serving.tasks.catalog import Catalog
from serving.tasks.images import EncodedImage, ImageInput, RawPixels, png

SERVICES = ("ImageClassification", "ObjectDetection", "WordVectors", "SequencePrediction", "ImageGeneration", "Autoencoding",
            "TabularPrediction")
SERVICE_NAMES = tuple(pb.DESCRIPTOR.services_by_name[s].full_name for s in SERVICES)


def _optional(message, name: str):
    return getattr(message, name) if message.HasField(name) else None


T = TypeVar("T")


class Converted(Sequence[T]):
    """A repeated field seen through `convert(item, index)`, one item at a time as it is read: its
    length costs nothing, so a call over a cap is refused before any item is converted (images are
    then converted by the decoding thread as it reaches them)."""

    def __init__(self, items, convert: Callable[[object, int], T]) -> None:
        self._items, self._convert = items, convert

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> T:  # type: ignore[override] - no slices: nothing here takes one
        if not 0 <= index < len(self._items):
            raise IndexError(index)
        return self._convert(self._items[index], index)


def _image(image, index: int) -> ImageInput:
    kind = image.WhichOneof("source")
    if kind == "encoded":
        return EncodedImage(image.encoded)
    if kind == "raw":
        return RawPixels(image.raw.pixels, tuple(image.raw.shape))
    raise InvalidInput(f"image {index}: neither encoded bytes nor raw pixels")


def _images(images) -> Sequence[ImageInput]:
    return Converted(images, _image)


def _formats(formats) -> set[int]:
    """The image formats a call asks for (none or UNSPECIFIED: PNG); a number the enum lacks is refused
    before the model runs (protobuf keeps unknown enum values, which would otherwise give empty images)."""
    unknown = sorted({f for f in formats if f not in pb.ImageFormat.values()})
    if unknown:
        raise InvalidInput(f"formats: {unknown[0]} is not an image format (known: {', '.join(pb.ImageFormat.keys())})")
    return {f for f in formats if f != pb.IMAGE_FORMAT_UNSPECIFIED} or {pb.PNG}


def _output_image(pixels: np.ndarray, wanted: set[int]) -> pb.OutputImage:
    image = pb.OutputImage()
    plane = np.asarray(pixels, np.uint8).reshape(pixels.shape[-2:])
    if pb.PNG in wanted:
        image.png = png(plane)
    if pb.RAW in wanted:
        image.raw.pixels = plane.tobytes()
        image.raw.shape.extend(plane.shape)
    return image


class ImageClassificationServicer(pb_grpc.ImageClassificationServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def Classify(self, request, context):
        result = await classification.classify(
            self.catalog, request.model, request.model_version, _images(request.images), _optional(request, "top_k"), deadline_of(context)
        )
        response = pb.ClassifyResponse(model=result.model, model_version=result.version)
        for scores in result.results:
            response.results.add(classes=[pb.ClassScore(label=s.label, class_id=s.class_id, score=s.score) for s in scores])
        return response


class ObjectDetectionServicer(pb_grpc.ObjectDetectionServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def Detect(self, request, context):
        result = await detection.detect(
            self.catalog, request.model, request.model_version, _images(request.images),
            _optional(request, "score_threshold"), _optional(request, "iou_threshold"),
            _optional(request, "max_detections"), deadline_of(context),
        )  # fmt: skip
        response = pb.DetectResponse(
            model=result.model, model_version=result.version, score_threshold=result.score_threshold,
            iou_threshold=result.iou_threshold, max_detections=result.max_detections,
        )  # fmt: skip
        for boxes, (width, height) in zip(result.results, result.sizes):
            found = response.results.add(width=width, height=height)
            for b in boxes:
                found.detections.add(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max,
                                     label=b.label, class_id=b.class_id, score=b.score)  # fmt: skip
        return response


class WordVectorsServicer(pb_grpc.WordVectorsServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def GetVectors(self, request, context):
        result = await words.get_vectors(
            self.catalog, request.model, request.model_version, request.words, request.unit, deadline_of(context)
        )
        return pb.GetVectorsResponse(
            model=result.model, model_version=result.version,
            vectors=[pb.WordVector(word=v.word, token=v.token, values=v.values.tolist()) for v in result.vectors],
        )  # fmt: skip

    async def MostSimilar(self, request, context):
        exclude = _optional(request, "exclude_inputs")
        result = await words.most_similar(
            self.catalog, request.model, request.model_version, request.positive, request.negative,
            _optional(request, "top_k"), True if exclude is None else exclude, deadline_of(context),
        )  # fmt: skip
        return pb.MostSimilarResponse(
            model=result.model, model_version=result.version,
            neighbors=[pb.Neighbor(word=n.word, id=n.id, score=n.score) for n in result.neighbors],
        )  # fmt: skip

    async def Similarity(self, request, context):
        pairs = Converted(request.pairs, lambda p, _: (p.first, p.second))
        result = await words.similarity(self.catalog, request.model, request.model_version, pairs, deadline_of(context))
        return pb.SimilarityResponse(model=result.model, model_version=result.version, cosines=result.cosines)


class SequencePredictionServicer(pb_grpc.SequencePredictionServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def Forecast(self, request, context):
        result = await sequences.forecast(
            self.catalog, request.model, request.model_version, Converted(request.series, lambda s, _: s.values),
            _optional(request, "horizon"), deadline_of(context),
        )  # fmt: skip
        return pb.ForecastResponse(
            model=result.model, model_version=result.version,
            forecasts=[pb.Forecast(values=f.tolist()) for f in result.forecasts],
            horizon=result.horizon, trained_horizon=result.trained_horizon, fed_back=result.fed_back,
        )  # fmt: skip

    async def ForecastStream(self, request_iterator, context):
        deadline = deadline_of(context)
        stream = None
        async for request in request_iterator:
            if stream is None:
                stream = sequences.open_stream(self.catalog, request.model, request.model_version)
            elif request.model and request.model != stream.model:
                raise InvalidInput(f"this stream follows model {stream.model!r}; a message named {request.model!r}")
            answer = await stream.push(request.values, deadline)
            yield pb.ForecastStreamResponse(observations=answer.observations, next=answer.next, ahead=answer.ahead.tolist())


class ImageGenerationServicer(pb_grpc.ImageGenerationServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def Generate(self, request, context):
        formats = _formats(request.formats)
        source = request.WhichOneof("source")
        latents = Converted(request.latents.vectors, lambda v, _: v.values) if source == "latents" else None
        seed = request.seed if source == "seed" else None
        result = await generation.generate(
            self.catalog, request.model, request.model_version, request.count, seed, latents, deadline_of(context)
        )
        return pb.GenerateResponse(
            model=result.model, model_version=result.version, seed=result.seed, seeded=result.seeded,
            latent_size=result.latent_size, images=[_output_image(image, formats) for image in result.images],
        )  # fmt: skip


class AutoencodingServicer(pb_grpc.AutoencodingServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def Encode(self, request, context):
        result = await autoencoding.encode(self.catalog, request.model, request.model_version, _images(request.images), deadline_of(context))
        return pb.EncodeResponse(model=result.model, model_version=result.version, codes=[pb.Vector(values=c.tolist()) for c in result.codes])

    async def Reconstruct(self, request, context):
        formats = _formats(request.formats)
        result = await autoencoding.reconstruct(
            self.catalog, request.model, request.model_version, _images(request.images), deadline_of(context)
        )
        return pb.ReconstructResponse(
            model=result.model, model_version=result.version,
            reconstructions=[
                pb.Reconstruction(image=_output_image(image, formats), error=float(error))
                for image, error in zip(result.images, result.errors)
            ],
        )  # fmt: skip


def _cell(value: pb.TabularValue):
    kind = value.WhichOneof("kind")
    return value.text if kind == "text" else value.number if kind == "number" else tabular.MISSING


class TabularPredictionServicer(pb_grpc.TabularPredictionServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def Predict(self, request, context):
        rows = Converted(request.rows, lambda row, _: {name: _cell(value) for name, value in row.cells.items()})
        result = await tabular.predict(
            self.catalog, request.model, request.model_version, rows, request.csv, _optional(request, "top_k"), deadline_of(context)
        )
        return pb.PredictResponse(
            model=result.model, model_version=result.version, kind=result.kind, target=result.target,
            predictions=[pb.TabularAnswer(label=r.label, value=r.value, classes=[pb.ClassScore(label=c.label, class_id=c.class_id, score=c.score)
                                                                                 for c in r.classes]) for r in result.rows],
        )  # fmt: skip


    async def Columns(self, request, context):
        found = tabular.describe(self.catalog, request.model, request.model_version)
        return pb.ColumnsResponse(
            model=found.model, model_version=found.version, kind=found.kind, target=found.target, missing_tokens=found.missing_tokens,
            columns=[pb.TabularColumn(name=c.name, numeric=c.numeric, mean=c.mean, std=c.std, values=c.values) for c in found.columns],
        )  # fmt: skip


def add_task_servicers(catalog: Catalog, server: grpc.aio.Server) -> tuple[str, ...]:
    """Register every typed service on the server; returns their full names (health, reflection)."""
    pb_grpc.add_ImageClassificationServicer_to_server(ImageClassificationServicer(catalog), server)
    pb_grpc.add_ObjectDetectionServicer_to_server(ObjectDetectionServicer(catalog), server)
    pb_grpc.add_WordVectorsServicer_to_server(WordVectorsServicer(catalog), server)
    pb_grpc.add_SequencePredictionServicer_to_server(SequencePredictionServicer(catalog), server)
    pb_grpc.add_ImageGenerationServicer_to_server(ImageGenerationServicer(catalog), server)
    pb_grpc.add_AutoencodingServicer_to_server(AutoencodingServicer(catalog), server)
    pb_grpc.add_TabularPredictionServicer_to_server(TabularPredictionServicer(catalog), server)
    return SERVICE_NAMES

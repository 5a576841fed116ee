"""Typed task endpoints on the REST front (`POST /v1/classify`, `/v1/detect`, …): JSON in and out.

Handlers only translate, as the gRPC task servicers do (`serving.grpc_tasks`): a body becomes a call
to the same `serving.tasks` function, whose answer becomes JSON. Validation, caps, batching,
statistics and errors therefore live behind the task functions once; each route names the gRPC
method it stands for, so it shares that method's bearer token and error mapping on the REST front.

Images come as a multipart upload (`image` file fields, options as form fields), as a JSON body
(`images`: base64 strings of encoded files, or `{"raw": base64, "shape": [H, W(, C)]}`), or as a bare
image body (`Content-Type: image/…`, options in the query string). Table rows come as JSON (`rows`:
column -> value maps, or `csv`: CSV text) or as a bare `text/csv` body. Options may also be given in
the query string. Images go back as base64 PNG in JSON, or as one PNG with `format=png`.
A request that names no model uses the first ready model of the endpoint's task, by name.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.parser
import io
import json
import math
from collections.abc import Awaitable, Callable

import numpy as np
from aiohttp import web

from protos import contract

from serving.commands import drawing
from serving.errors import InvalidInput, ModelNotFound
from serving.http_codec import parse_json
from serving.limits import INLINE_PAYLOAD_BYTES, shown
from serving.tasks import autoencoding, classification, detection, generation, sequences, tabular, words
from serving.tasks.catalog import Catalog
from serving.tasks.images import EncodedImage, ImageInput, RawPixels, png

_V1 = "/dnnzoo.v1."
Reader = Callable[[web.Request], Awaitable[bytes]]


class Body:
    """A task request's fields, whichever way they came (JSON, multipart form, bare image, query
    string), each read through a typed getter that names the field when it is wrong."""

    def __init__(self, fields: dict, images: list[ImageInput] | None) -> None:
        self.fields, self.images_given = fields, images

    @classmethod
    def parse(cls, content_type: str, query: dict, body: bytes) -> Body:
        """`content_type` is the whole header (a multipart boundary is in it); images are decoded
        from base64 here, so that a large body is all parsed off the event loop."""
        kind = content_type.partition(";")[0].strip().lower()
        if kind == "multipart/form-data":
            parsed, images = _multipart(content_type, body)
            return cls({**query, **parsed}, images)
        if kind.startswith("image/"):
            return cls(query, [EncodedImage(body)])
        if kind == "text/csv":
            try:
                return cls({**query, "csv": body.decode("utf-8-sig")}, None)
            except UnicodeDecodeError:
                raise InvalidInput("the CSV body is not UTF-8 text") from None
        if not body.strip():
            return cls(query, None)
        try:  # the REST front's one JSON reader: an integer of 5,000 digits or nesting 200,000 deep is a 400 there
            document = parse_json(body, "the body")
        except InvalidInput as exc:
            raise InvalidInput(f"the body is not JSON, a multipart form or an image ({str(exc)[:120]})") from None
        if not isinstance(document, dict):
            raise InvalidInput("the JSON body must be an object")
        items = document.get("images")
        images = [_image(item, i) for i, item in enumerate(items)] if isinstance(items, list) and items else None
        return cls({**query, **document}, images)

    def _get(self, key: str, kinds: tuple[type, ...], what: str, default, convert=None):
        value = self.fields.get(key)
        if value is None:
            return default
        if isinstance(value, str) and convert is not None:  # form fields and query strings are text
            try:
                return convert(value)
            except ValueError:
                raise InvalidInput(f"{key!r} must be {what}, got {value[:40]!r}") from None
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            raise InvalidInput(f"{key!r} must be {what}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: str = "") -> str:
        return self._get(key, (str,), "a string", default)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        """A string field that must be one of `choices`; the first is the default."""
        value = self.text(key, choices[0])
        if value not in choices:
            raise InvalidInput(f"{key!r} must be one of {', '.join(map(repr, choices))}, got {value[:40]!r}")
        return value

    def integer(self, key: str, default: int | None = None) -> int | None:
        return self._get(key, (int,), "an integer", default, int)

    def number(self, key: str, default: float | None = None) -> float | None:
        value = self._get(key, (int, float), "a number", default, float)
        return None if value is None else float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        return self._get(key, (bool,), "true or false", default, _truth)

    def strings(self, key: str) -> list[str]:
        value = self.fields.get(key, [])
        if isinstance(value, str):
            value = [w for w in value.replace(",", " ").split() if w]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"{key!r} must be a list of strings")
        return value

    def numbers(self, key: str) -> list[list[float]]:
        """A list of series (lists of numbers); a single list is one series."""
        value = self.fields.get(key)
        if isinstance(value, str):
            try:
                value = [float(v) for v in value.replace(" ", ",").split(",") if v]
            except ValueError:
                raise InvalidInput(f"{key!r} must be comma-separated numbers") from None
        if isinstance(value, list) and value and not isinstance(value[0], list):
            value = [value]
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"{key!r} must be a list of numbers, or a list of such lists")
        for i, row in enumerate(value):
            if not isinstance(row, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
                raise InvalidInput(f"{key!r}: item {i} is not a list of numbers")
        return value

    def rows(self) -> list[dict] | None:
        """Table rows (column -> string, number or null); None when the body has no 'rows'."""
        value = self.fields.get("rows")
        if value is None:
            return None
        if not isinstance(value, list):
            raise InvalidInput("'rows' must be a list of objects (column -> string, number or null)")
        for i, row in enumerate(value):
            if not isinstance(row, dict):
                raise InvalidInput(f"'rows': item {i} is not an object (column -> string, number or null)")
            for column, cell in row.items():
                if cell is not None and (isinstance(cell, bool) or not isinstance(cell, (str, int, float))):
                    raise InvalidInput(f"row {i}: column {shown(column)} must be a string, a number or null, "
                                       f"got {type(cell).__name__}")
        return value

    def images(self) -> list[ImageInput]:
        if self.images_given is None:
            raise InvalidInput("give 'images': a list of base64-encoded image files (or {\"raw\": base64, \"shape\": [H, W]})")
        if not self.images_given:
            raise InvalidInput("the form has no 'image' file field")
        return self.images_given


def _truth(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


def _base64(text, where: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput(f"{where} must be a base64 string")
    if text.startswith("data:"):  # a browser's data URL
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not valid base64") from None


def _image(item, index: int) -> ImageInput:
    if isinstance(item, dict):
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidInput(f"image {index}: 'shape' must be a list of integers")
        return RawPixels(_base64(item.get("raw"), f"image {index}'s 'raw'"), tuple(shape))
    return EncodedImage(_base64(item, f"image {index}"))


def _multipart(content_type: str, body: bytes) -> tuple[dict, list[ImageInput]]:
    """Form fields (text) and the `image` file parts of a multipart/form-data body."""
    message = email.parser.BytesParser().parsebytes(  # the compat32 policy: ten times faster than HTTP's here
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise InvalidInput("the multipart form holds no parts; send each picture in an 'image' file field")
    fields, images = {}, []
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if name == "image":
            images.append(EncodedImage(data))
        elif name:
            try:
                fields[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"form field {str(name)[:40]!r} is not UTF-8 text") from None
    return fields, images


def _b64png(pixels: np.ndarray) -> str:
    return base64.b64encode(png(pixels)).decode("ascii")


def _png_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="image/png")


def _json(document) -> web.Response:
    return web.Response(body=json.dumps(document, separators=(",", ":")).encode(), content_type="application/json")


def _finite(value: float) -> float | None:
    """A number for JSON; null where there is none (NaN is not JSON)."""
    return value if math.isfinite(value) else None


class TaskRoutes:
    """The /v1 routes over one catalog; `rows(read_body)` gives HttpFront's extra route rows."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.read_body: Reader | None = None

    def rows(self, read_body: Reader) -> tuple:
        self.read_body = read_body
        return (
            ("POST", "/v1/classify", self.classify, _V1 + "ImageClassification/Classify"),
            ("POST", "/v1/detect", self.detect, _V1 + "ObjectDetection/Detect"),
            ("POST", "/v1/similar", self.similar, _V1 + "WordVectors/MostSimilar"),
            ("POST", "/v1/vectors", self.vectors, _V1 + "WordVectors/GetVectors"),
            ("POST", "/v1/forecast", self.forecast, _V1 + "SequencePrediction/Forecast"),
            ("POST", "/v1/generate", self.generate, _V1 + "ImageGeneration/Generate"),
            ("POST", "/v1/encode", self.encode, _V1 + "Autoencoding/Encode"),
            ("POST", "/v1/reconstruct", self.reconstruct, _V1 + "Autoencoding/Reconstruct"),
            ("POST", "/v1/predict", self.predict, _V1 + "TabularPrediction/Predict"),
            ("POST", "/v1/columns", self.columns, _V1 + "TabularPrediction/Columns"),
            ("GET", "/v1/models", self.models, "/inference.GRPCInferenceService/ModelStatistics"),
        )

    async def _body(self, request: web.Request) -> Body:
        body = await self.read_body(request)
        content_type, query = request.headers.get("Content-Type", ""), dict(request.query)
        if len(body) > INLINE_PAYLOAD_BYTES:  # parsed off the event loop, as the /v2 routes do
            return await asyncio.get_running_loop().run_in_executor(self.catalog.plane.heavy, Body.parse, content_type, query, body)
        return Body.parse(content_type, query, body)

    def _model(self, body: Body, task: str) -> tuple[str, str]:
        """The model the request names, else the first ready one (by name) whose task is `task`."""
        name, version = body.text("model"), body.text("version")
        if name:
            return name, version
        for entry in sorted(self.catalog.plane.index(ready_only=True), key=lambda e: e.name):
            try:
                if self.catalog.plane.handle(entry.name, "").parameter(contract.TASK, "") == task:
                    return entry.name, ""
            except Exception:  # noqa: BLE001 - unloaded between the index and now: not a candidate
                continue
        raise ModelNotFound(f"no ready {task!r} model on this server; name one with 'model'")

    async def classify(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.CLASSIFICATION)
        result = await classification.classify(self.catalog, model, version, body.images(), body.integer("top_k"))
        return _json({"model": result.model, "model_version": result.version, "results": [
            {"classes": [{"label": s.label, "class_id": s.class_id, "score": s.score} for s in scores]}
            for scores in result.results]})

    async def detect(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.DETECTION)
        images, answer_png = body.images(), body.choice("format", ("json", "png")) == "png"
        draw = body.flag("draw") or answer_png
        if draw and any(not isinstance(image, EncodedImage) for image in images):
            raise InvalidInput("drawing the boxes needs encoded images (PNG, JPEG, …), not raw pixels")
        if answer_png and len(images) != 1:
            raise InvalidInput(f"format=png answers one image; this request has {len(images)}")
        result = await detection.detect(self.catalog, model, version, images, body.number("score_threshold"),
                                        body.number("iou_threshold"), body.integer("max_detections"))
        drawn = await asyncio.to_thread(lambda: [_drawn(i.data, b) for i, b in zip(images, result.results)]) if draw else None
        if answer_png:
            return _png_response(drawn[0])
        results = []
        for i, (boxes, (width, height)) in enumerate(zip(result.results, result.sizes)):
            item = {"width": width, "height": height, "detections": [
                {"label": b.label, "class_id": b.class_id, "score": b.score, "box": [b.x_min, b.y_min, b.x_max, b.y_max]}
                for b in boxes]}
            if drawn is not None:
                item["drawn_png"] = base64.b64encode(drawn[i]).decode("ascii")
            results.append(item)
        return _json({"model": result.model, "model_version": result.version, "score_threshold": result.score_threshold,
                      "iou_threshold": result.iou_threshold, "max_detections": result.max_detections, "results": results})

    async def similar(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.WORD_VECTORS)
        result = await words.most_similar(self.catalog, model, version, body.strings("positive"), body.strings("negative"),
                                          body.integer("top_k"), body.flag("exclude_inputs", True))
        return _json({"model": result.model, "model_version": result.version,
                      "neighbors": [{"word": n.word, "id": n.id, "score": n.score} for n in result.neighbors]})

    async def vectors(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.WORD_VECTORS)
        result = await words.get_vectors(self.catalog, model, version, body.strings("words"), body.flag("unit"))
        return _json({"model": result.model, "model_version": result.version, "vectors": [
            {"word": v.word, "token": v.token, "values": v.values.tolist()} for v in result.vectors]})

    async def forecast(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.SEQUENCE)
        series = body.numbers("series")
        for i, row in enumerate(series):
            if not all(math.isfinite(v) for v in row):
                raise InvalidInput(f"series {i} holds a value that is not finite")
        result = await sequences.forecast(self.catalog, model, version, series, body.integer("horizon"))
        return _json({"model": result.model, "model_version": result.version, "horizon": result.horizon,
                      "trained_horizon": result.trained_horizon, "fed_back": result.fed_back,
                      "forecasts": [f.tolist() for f in result.forecasts]})

    async def generate(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.GENERATION)
        latents = body.numbers("latents") if "latents" in body.fields else None
        answer_png, scale = body.choice("format", ("json", "png")) == "png", body.integer("scale", 4)
        if not 1 <= scale <= 8:
            raise InvalidInput(f"'scale' must be between 1 and 8, got {scale}")
        result = await generation.generate(self.catalog, model, version, body.integer("count", 1), body.integer("seed"), latents)
        if answer_png:
            return _png_response(await asyncio.to_thread(_grid_png, result.images, scale))
        return _json({"model": result.model, "model_version": result.version, "seed": result.seed, "seeded": result.seeded,
                      "latent_size": result.latent_size, "images": [_b64png(image) for image in result.images]})

    async def encode(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.AUTOENCODING)
        result = await autoencoding.encode(self.catalog, model, version, body.images())
        return _json({"model": result.model, "model_version": result.version, "codes": [c.tolist() for c in result.codes]})

    async def reconstruct(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.AUTOENCODING)
        result = await autoencoding.reconstruct(self.catalog, model, version, body.images())
        return _json({"model": result.model, "model_version": result.version, "reconstructions": [
            {"png": _b64png(image), "error": float(error)} for image, error in zip(result.images, result.errors)]})

    async def predict(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model, version = self._model(body, contract.TABULAR)
        result = await tabular.predict(self.catalog, model, version, body.rows(), body.text("csv"), body.integer("top_k"))
        if result.kind == "classification":
            answers = [{"label": r.label, "classes": [{"label": c.label, "class_id": c.class_id, "score": c.score} for c in r.classes]}
                       for r in result.rows]
        else:
            answers = [{"value": r.value} for r in result.rows]
        return _json({"model": result.model, "model_version": result.version, "kind": result.kind, "target": result.target,
                      "predictions": answers})

    async def columns(self, request: web.Request) -> web.Response:
        """The model's columns, for a form: names, numeric or text, means and spreads, known values."""
        body = await self._body(request)
        found = tabular.describe(self.catalog, *self._model(body, contract.TABULAR))
        columns = [{"name": c.name, "numeric": True, "mean": _finite(c.mean), "std": _finite(c.std)} if c.numeric
                   else {"name": c.name, "numeric": False, "values": list(c.values)} for c in found.columns]
        return _json({"model": found.model, "model_version": found.version, "kind": found.kind, "target": found.target,
                      "columns": columns, "missing_tokens": found.missing_tokens})

    async def models(self, request: web.Request) -> web.Response:
        """Every model with its version, state, reason and task (the console's models page)."""
        rows = []
        for entry in self.catalog.plane.index():
            task = ""
            if entry.state == "READY":
                try:
                    task = self.catalog.plane.handle(entry.name, entry.version).parameter(contract.TASK, "") or ""
                except Exception:  # noqa: BLE001 - unloaded meanwhile
                    pass
            rows.append({"name": entry.name, "version": entry.version, "state": entry.state, "reason": entry.reason, "task": task})
        return _json({"models": rows})


def _drawn(data: bytes, boxes) -> bytes:
    out = io.BytesIO()
    drawing.boxes(data, boxes).save(out, format="PNG")
    return out.getvalue()


def _grid_png(images: np.ndarray, scale: int) -> bytes:
    out = io.BytesIO()
    drawing.grid(list(images[:, 0] if images.ndim == 4 else images), scale=scale).save(out, format="PNG")
    return out.getvalue()

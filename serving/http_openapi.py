"""The OpenAPI 3.1 description of the typed task endpoints (`serving.http_tasks`), served at /openapi.json.

Written by hand beside the handlers rather than generated: the handlers read bodies three ways (JSON,
multipart, a bare image), which a generator would not see. A test posts every example in this
schema to a real server, so an example that the handlers no longer accept fails there.
"""

from __future__ import annotations

from dnnzoo import __version__

_MODEL = {"model": {"type": "string", "description": "model name; default: the first ready model of this task"},
          "version": {"type": "string", "description": "model version; default: the version policy's latest"}}
_IMAGE = {"oneOf": [
    {"type": "string", "contentEncoding": "base64", "description": "an encoded image file (PNG, JPEG, …; any size); a data: URL works"},
    {"type": "object", "required": ["raw", "shape"], "properties": {
        "raw": {"type": "string", "contentEncoding": "base64", "description": "uint8 pixels, row-major"},
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "[H, W] or [H, W, C], C = 1, 3, 4"}}},
]}
_IMAGES = {"images": {"type": "array", "items": _IMAGE, "minItems": 1}}
_PNG = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}

# A 1×1 black PNG, so that the examples run as they stand.
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _endpoint(summary: str, request: dict, example: dict, response: dict, images: bool = False, png: str = "") -> dict:
    content = {"application/json": {"schema": request, "example": example}}
    if images:
        form = {k: v for k, v in request["properties"].items() if k != "images"}
        form["image"] = {"type": "array", "items": {"type": "string", "format": "binary"}}
        content["multipart/form-data"] = {"schema": _object(form, ("image",))}
        content["image/*"] = {"schema": {"type": "string", "format": "binary"},
                              "description": "one image as the whole body; options in the query string"}
    answers = {"application/json": {"schema": response}}
    if png:
        answers["image/png"] = {"schema": {"type": "string", "format": "binary"}, "description": png}
    return {"post": {
        "summary": summary,
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {"description": "the answer", "content": answers},
            **{code: {"description": why, "content": {"application/json": {"schema": _ERROR}}} for code, why in (
                ("400", "a malformed body or option (the message names it)"), ("401", "a bearer token is needed"),
                ("404", "no such model, or no ready model of this task"), ("413", "over a server cap"),
                ("429", "the model's queue is full"), ("503", "the model is not available"))},
        },
    }}


def _answer(**properties) -> dict:
    return _object({"model": {"type": "string"}, "model_version": {"type": "string"}, **properties})


def _list(items: dict) -> dict:
    return {"type": "array", "items": items}


NUMBERS = _list({"type": "number"})
CLASS = _object({"label": {"type": "string"}, "class_id": {"type": "integer"}, "score": {"type": "number"}})
DETECTION = _object({"label": {"type": "string"}, "class_id": {"type": "integer"}, "score": {"type": "number"},
                     "box": {**NUMBERS, "description": "x_min, y_min, x_max, y_max in the image's own pixels"}})
CELL = {"type": ["string", "number", "null"], "description": "null (or a CSV cell the model's schema calls missing): missing"}
PENGUIN = {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0, "flipper_length_mm": 230,
           "body_mass_g": 5800, "sex": "male", "year": 2009}  # the penguins_tabular model's columns
NEIGHBOR = _object({"word": {"type": "string"}, "id": {"type": "integer"}, "score": {"type": "number"}})


def schema() -> dict:
    """The whole document (a fresh dict each call)."""
    paths = {
        "/v1/classify": _endpoint(
            "Top-k classes of each image",
            _object({**_MODEL, **_IMAGES, "top_k": {"type": "integer", "minimum": 1}}, ("images",)),
            {"images": [TINY_PNG], "top_k": 3},
            _answer(results=_list(_object({"classes": _list(CLASS)}))), images=True),
        "/v1/detect": _endpoint(
            "Objects in each image, boxes in its own pixels",
            _object({**_MODEL, **_IMAGES, "score_threshold": {"type": "number"}, "iou_threshold": {"type": "number"},
                     "max_detections": {"type": "integer"}, "draw": {"type": "boolean", "description": "add drawn_png to each result"},
                     "format": {"enum": ["json", "png"], "description": "png: answer one image's picture with its boxes drawn"}},
                    ("images",)),
            {"images": [TINY_PNG], "draw": True},
            _answer(score_threshold={"type": "number"}, iou_threshold={"type": "number"}, max_detections={"type": "integer"},
                    results=_list(_object({"width": {"type": "integer"}, "height": {"type": "integer"},
                                           "detections": _list(DETECTION), "drawn_png": _PNG}))),
            images=True, png="format=png: the image with boxes and labels drawn"),
        "/v1/similar": _endpoint(
            "Nearest words to the sum of `positive` minus `negative` (analogies: a − b + c)",
            _object({**_MODEL, "positive": _list({"type": "string"}), "negative": _list({"type": "string"}),
                     "top_k": {"type": "integer"}, "exclude_inputs": {"type": "boolean", "default": True}}, ("positive",)),
            {"positive": ["lists", "tuple"], "negative": ["list"], "top_k": 5},
            _answer(neighbors=_list(NEIGHBOR))),
        "/v1/vectors": _endpoint(
            "The vector of each word",
            _object({**_MODEL, "words": _list({"type": "string"}), "unit": {"type": "boolean"}}, ("words",)),
            {"words": ["list", "tuple"]},
            _answer(vectors=_list(_object({"word": {"type": "string"}, "token": {"type": "string"}, "values": NUMBERS})))),
        "/v1/forecast": _endpoint(
            "The next values of each series",
            _object({**_MODEL, "series": {"oneOf": [NUMBERS, _list(NUMBERS)], "description": "one series or several, oldest first"},
                     "horizon": {"type": "integer"}}, ("series",)),
            {"series": [0.1, 0.3, 0.5, 0.4, 0.2], "horizon": 10},
            _answer(horizon={"type": "integer"}, trained_horizon={"type": "integer"}, fed_back={"type": "boolean"},
                    forecasts=_list(NUMBERS))),
        "/v1/generate": _endpoint(
            "Images from a GAN generator, from a seed or latent vectors",
            _object({**_MODEL, "count": {"type": "integer", "default": 1}, "seed": {"type": "integer"},
                     "latents": _list(NUMBERS), "format": {"enum": ["json", "png"]},
                     "scale": {"type": "integer", "minimum": 1, "maximum": 8, "default": 4}}),
            {"count": 4, "seed": 1},
            _answer(seed={"type": "integer"}, seeded={"type": "boolean"}, latent_size={"type": "integer"}, images=_list(_PNG)),
            png="format=png: the images as one grid, scaled ×scale"),
        "/v1/encode": _endpoint(
            "The autoencoder's code of each image",
            _object({**_MODEL, **_IMAGES}, ("images",)), {"images": [TINY_PNG]},
            _answer(codes=_list(NUMBERS)), images=True),
        "/v1/reconstruct": _endpoint(
            "Each image through the autoencoder, with its mean squared error",
            _object({**_MODEL, **_IMAGES}, ("images",)), {"images": [TINY_PNG]},
            _answer(reconstructions=_list(_object({"png": _PNG, "error": {"type": "number"}})))),
        "/v1/predict": _endpoint(
            "Classes (top-k with scores) or a value for each table row, from a tabular model",
            _object({**_MODEL, "rows": _list({"type": "object", "additionalProperties": CELL, "description": "column -> value"}),
                     "csv": {"type": "string", "description": "CSV text with a header row, instead of rows"},
                     "top_k": {"type": "integer", "minimum": 1}}),
            {"rows": [PENGUIN, {**PENGUIN, "sex": None}], "top_k": 2},
            _answer(kind={"enum": ["classification", "regression"]}, target={"type": "string"},
                    predictions=_list(_object({"label": {"type": "string"}, "classes": _list(CLASS),
                                               "value": {"type": "number", "description": "regression only"}})))),
        "/v1/columns": _endpoint(
            "A tabular model's columns, in its input order, as a form for its rows needs them",
            _object(_MODEL), {},
            _answer(kind={"enum": ["classification", "regression"]}, target={"type": "string"},
                    missing_tokens=_list({"type": "string"}),
                    columns=_list(_object({"name": {"type": "string"}, "numeric": {"type": "boolean"},
                                           "mean": {"type": ["number", "null"], "description": "numeric: the training rows' mean"},
                                           "std": {"type": ["number", "null"], "description": "numeric: their standard deviation"},
                                           "values": _list({"type": "string"}) | {"description": "text: the values training saw, most frequent first"}})))),
    }
    paths["/v1/predict"]["post"]["requestBody"]["content"]["text/csv"] = {
        "schema": {"type": "string"}, "description": "the rows as CSV with a header row; options in the query string"}
    paths["/v1/models"] = {"get": {"summary": "Every model: version, state, reason, task", "responses": {"200": {
        "description": "the models", "content": {"application/json": {"schema": _object({"models": _list(_object({
            k: {"type": "string"} for k in ("name", "version", "state", "reason", "task")}))})}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "dnnzoo task endpoints", "version": __version__,
                 "description": "Typed JSON endpoints over the same models as the KServe v2 routes (/v2/…) and gRPC. "
                                "Errors are {\"error\": \"…\"}; bearer tokens as on /v2."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }

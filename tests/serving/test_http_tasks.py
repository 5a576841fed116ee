"""The typed task endpoints (/v1/…) and /openapi.json against the real server on the tiny repository:
answers equal the gRPC task services' for the same input (one implementation behind both), each way
of sending images works, and bad bodies get a short JSON error with the right status."""

from __future__ import annotations

import base64
import io
import json
import uuid

import numpy as np
import pytest
from PIL import Image

from tests.serving.rest_client import Http


@pytest.fixture(scope="module")
def http(task_server) -> Http:
    return Http(task_server.server.http_port)


@pytest.fixture(scope="module")
def digit_png() -> bytes:
    from training.data import images

    out = io.BytesIO()
    Image.fromarray(images.digits().images[3, 0]).resize((56, 56)).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ok(answer) -> dict:
    status, headers, body = answer
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def multipart(files: list[bytes], **fields: str) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d{i}.png"\r\n'
              f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for i, data in enumerate(files)]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_classify_json_multipart_and_bare_image_agree_with_grpc(http, task_client, digit_png):
    expected = task_client.classify("digits_classifier", [digit_png], top_k=3).results[0].classes
    wanted = [[c.label, c.class_id, pytest.approx(c.score, rel=1e-6)] for c in expected]

    def classes(document):
        return [[c["label"], c["class_id"], c["score"]] for c in document["results"][0]["classes"]]

    by_json = ok(http.post("/v1/classify", {"images": [b64(digit_png)], "top_k": 3}))
    assert by_json["model"] == "digits_classifier" and classes(by_json) == wanted
    body, headers = multipart([digit_png, digit_png], top_k="3")
    by_form = ok(http.post("/v1/classify", body=body, headers=headers))
    assert len(by_form["results"]) == 2 and classes(by_form) == wanted
    bare = ok(http.post("/v1/classify?top_k=3", body=digit_png, headers={"Content-Type": "image/png"}))
    assert classes(bare) == wanted
    data_url = ok(http.post("/v1/classify", {"images": ["data:image/png;base64," + b64(digit_png)], "top_k": 3}))
    assert classes(data_url) == wanted
    pixels = np.asarray(Image.open(io.BytesIO(digit_png)).convert("L"))
    raw = ok(http.post("/v1/classify", {"images": [{"raw": b64(pixels.tobytes()), "shape": list(pixels.shape)}], "top_k": 3}))
    assert classes(raw) == wanted


def test_detect_json_and_drawn_png(http, task_client, tmp_path):
    from training.data import images, scenes

    scene = scenes.generate(scenes.make_bank(images.digits(), 14, 32), 1, seed=5, canvas=64).images[0, 0]
    out = io.BytesIO()
    Image.fromarray(scene).save(out, format="PNG")
    source = out.getvalue()
    expected = task_client.detect("digits_detector", [source]).results[0]
    document = ok(http.post("/v1/detect", {"images": [b64(source)], "draw": True}))
    result = document["results"][0]
    assert (result["width"], result["height"]) == (64, 64)
    assert [d["label"] for d in result["detections"]] == [d.label for d in expected.detections]
    np.testing.assert_allclose([d["box"] for d in result["detections"]],
                               [[d.x_min, d.y_min, d.x_max, d.y_max] for d in expected.detections], rtol=1e-5)
    drawn = Image.open(io.BytesIO(base64.b64decode(result["drawn_png"])))
    assert drawn.size == (64, 64) and drawn.mode == "RGB"
    status, headers, body = http.post("/v1/detect?format=png", body=source, headers={"Content-Type": "image/png"})
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == base64.b64decode(result["drawn_png"])
    if expected.detections:  # boxes are drawn in colour on a grey picture
        assert np.ptp(np.asarray(drawn, np.int16), axis=2).max() > 0


def test_similar_and_vectors_agree_with_grpc(http, task_client):
    expected = task_client.most_similar("pydoc_word2vec", ["lists", "tuple"], ["list"], top_k=5)
    document = ok(http.post("/v1/similar", {"positive": ["lists", "tuple"], "negative": ["list"], "top_k": 5}))
    assert [n["word"] for n in document["neighbors"]] == [n.word for n in expected.neighbors]
    vectors = ok(http.post("/v1/vectors", {"words": ["list"]}))["vectors"]
    expected_vector = task_client.get_vectors("pydoc_word2vec", ["list"]).vectors[0].values
    np.testing.assert_allclose(vectors[0]["values"], expected_vector, rtol=1e-6)


def test_forecast_one_series_or_several(http, task_client):
    series = np.sin(np.linspace(0, 3, 20)).round(4).tolist()
    expected = task_client.forecast("waves_sequence", [series], horizon=4).forecasts[0].values
    one = ok(http.post("/v1/forecast", {"series": series, "horizon": 4}))
    np.testing.assert_allclose(one["forecasts"][0], expected, rtol=1e-6)
    two = ok(http.post("/v1/forecast", {"series": [series, series[:10]], "horizon": 4}))
    assert len(two["forecasts"]) == 2 and two["forecasts"][0] == one["forecasts"][0]


def test_generate_json_and_grid(http, task_client):
    expected = task_client.generate("digits_gan", 4, seed=9).images
    document = ok(http.post("/v1/generate", {"count": 4, "seed": 9}))
    assert document["seed"] == 9 and [base64.b64decode(i) for i in document["images"]] == [i.png for i in expected]
    status, headers, body = http.post("/v1/generate", {"count": 4, "seed": 9, "format": "png", "scale": 4})
    assert status == 200 and headers["Content-Type"] == "image/png"
    grid = np.asarray(Image.open(io.BytesIO(body)))
    assert grid.shape == (2 + 2 * (28 * 4 + 2), 2 + 2 * (28 * 4 + 2))
    first = np.asarray(Image.open(io.BytesIO(expected[0].png)))
    np.testing.assert_array_equal(grid[2:2 + 112:4, 2:2 + 112:4], first)


def test_encode_and_reconstruct_agree_with_grpc(http, task_client, digit_png):
    codes = ok(http.post("/v1/encode", {"images": [b64(digit_png)]}))["codes"]
    np.testing.assert_allclose(codes[0], task_client.encode("digits_autoencoder", [digit_png]).codes[0].values, rtol=1e-5, atol=1e-6)
    body, headers = multipart([digit_png])
    document = ok(http.post("/v1/reconstruct", body=body, headers=headers))
    expected = task_client.reconstruct("digits_autoencoder", [digit_png]).reconstructions[0]
    assert base64.b64decode(document["reconstructions"][0]["png"]) == expected.image.png
    assert document["reconstructions"][0]["error"] == pytest.approx(expected.error, rel=1e-6)


def test_models_lists_every_model_with_its_task(http):
    models = {m["name"]: m for m in ok(http.get("/v1/models"))["models"]}
    assert models["digits_classifier"]["task"] == "classification" and models["digits_gan"]["state"] == "READY"
    assert {"digits_detector", "pydoc_word2vec", "waves_sequence", "digits_autoencoder"} <= set(models)


@pytest.mark.parametrize(("path", "body", "headers", "status", "words"), [
    ("/v1/classify", b"{not json", {}, 400, "not JSON"),
    ("/v1/generate", b'{"count": ' + b"1" * 5000 + b"}", {}, 400, "not JSON"),  # past Python's 4,300-digit conversion limit
    ("/v1/similar", b"[" * 200_000 + b"]" * 200_000, {}, 400, "nested too deeply"),
    ("/v1/classify", b"[1, 2]", {}, 400, "must be an object"),
    ("/v1/classify", b"{}", {}, 400, "give 'images'"),
    ("/v1/classify", b'{"images": ["%%%"]}', {}, 400, "not valid base64"),
    ("/v1/classify", b'{"images": ["aGVsbG8="]}', {}, 400, "not an image"),
    ("/v1/classify", b'{"images": [{"raw": "AAAA", "shape": [9, 9]}]}', {}, 400, "image 0"),
    ("/v1/classify", b'{"images": ["aGVsbG8="], "top_k": "many"}', {}, 400, "'top_k' must be an integer"),
    ("/v1/classify", b'{"images": ["aGVsbG8="], "top_k": true}', {}, 400, "'top_k' must be an integer"),
    ("/v1/classify", b'{"model": "nope", "images": ["aGVsbG8="]}', {}, 404, "nope"),
    ("/v1/classify", b'{"model": "waves_sequence", "images": ["aGVsbG8="]}', {}, 400, "needs a 'classification' model"),
    ("/v1/classify", b"--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 400, "'image'"),
    ("/v1/detect", b'{"images": [{"raw": "AAAA", "shape": [2, 2]}], "draw": true}', {}, 400, "encoded images"),
    ("/v1/similar", b'{"positive": "key", "negative": [1]}', {}, 400, "'negative' must be a list of strings"),
    ("/v1/similar", b'{"positive": ["zzzunknownzzz"]}', {}, 404, "zzzunknownzzz"),
    ("/v1/forecast", b'{"series": []}', {}, 400, "'series'"),
    ("/v1/forecast", b'{"series": [[1, "a"]]}', {}, 400, "item 0"),
    ("/v1/forecast", b'{"series": [1, 2, 3], "horizon": 0}', {}, 400, "horizon"),
    ("/v1/forecast", b'{"series": [1e300, 2e300, 3e300]}', {}, 400, "value 0 is 1e+300 (values must be finite and within float32's range)"),
    ("/v1/generate", b'{"count": 100000}', {}, 413, "max-generate-count"),
    ("/v1/generate", b'{"count": 2, "format": "png", "scale": 99}', {}, 400, "'scale'"),
    ("/v1/generate", b'{"latents": [[1, 2]]}', {}, 400, "latent size"),
    ("/v1/generate", b'{"count": 1, "seed": -1}', {}, 400, "seed must be at least 0 and below 2**64"),
    ("/v1/generate", b'{"count": 1, "seed": 18446744073709551616}', {}, 400, "'seed' must be an integer"),  # JSON reads 2**64 as a float
    ("/v1/generate", b'{"count": 1, "format": "gif"}', {}, 400, "'format' must be one of 'json', 'png', got 'gif'"),
    ("/v1/generate", b'{"count": 1, "scale": 0}', {}, 400, "'scale' must be between 1 and 8, got 0"),
    ("/v1/generate", b'{"count": 1, "scale": 2.5}', {}, 400, "'scale' must be an integer"),
    ("/v1/detect", b'{"images": ["aGVsbG8="], "format": "svg"}', {}, 400, "'format' must be one of"),
])  # fmt: skip
def test_bad_bodies_get_a_short_error_naming_the_fault(http, path, body, headers, status, words):
    assert words in http.error(status, http.post(path, body=body, headers={"Content-Type": "application/json", **headers}))


def test_oversized_body_and_wrong_method(task_server, http, digit_png):
    cap = task_server.server.http.max_body
    huge = json.dumps({"images": [b64(digit_png)], "pad": "x" * cap}).encode()
    assert "--max-message-mb" in http.error(413, http.post("/v1/classify", body=huge))
    assert http.get("/v1/classify")[0] == 405


def test_openapi_examples_run_against_the_server(http):
    document = ok(http.get("/openapi.json"))
    assert document["openapi"].startswith("3.") and "/v1/classify" in document["paths"]
    ran = 0
    for path, item in document["paths"].items():
        if "post" not in item:
            continue
        example = item["post"]["requestBody"]["content"]["application/json"]["example"]
        status, _, body = http.post(path, example)
        assert status == 200, (path, body[:300])
        ran += 1
    assert ran == 10


def test_console_pages_are_served_without_anything_external(http):
    status, headers, page = http.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = page.decode()
    assert "/console/console.js" in text and "http://" not in text and "https://" not in text
    for name in ("console.js", "console.css"):
        status, _, body = http.get(f"/console/{name}")
        assert status == 200 and b"https://" not in body and b"http://" not in body
    assert http.get("/console/../server.py")[0] == 404

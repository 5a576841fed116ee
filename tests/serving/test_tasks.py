"""The typed task services end to end: a real server on a repository exported from tiny training
runs, called with the Python client. Tiny models are weak, so answers are checked against the same
model run another way (the Open Inference Protocol on the same input, or ONNX Runtime in process);
quality on quick-profile models is in test_tasks_quality.py (slow)."""

from __future__ import annotations

import io
import threading

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from serving.client import decode_image
from serving.tasks.generation import latents_for
from serving.tasks.images import to_model_input

INVALID, NOT_FOUND, TOO_LARGE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _status(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if not hasattr(result, "ByteSize"):  # a stream: errors arrive while reading it
            list(result)
    return caught.value


def _digit_png(index: int = 0, size: int = 56) -> tuple[bytes, Image.Image]:
    from training.data import images

    digits = images.digits()
    picture = Image.fromarray(digits.images[index, 0]).resize((size, size), Image.BILINEAR).convert("RGB")
    return _png(np.asarray(picture)), picture


def _session(repository, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(repository / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


# -- classification ------------------------------------------------------------------------------


def test_classify_matches_the_inference_protocol_on_the_same_pixels(task_client):
    data, picture = _digit_png(3)
    reply = task_client.classify("digits_classifier", [data, np.asarray(picture)], top_k=10)
    pixels = to_model_input(picture, 28)[None, None]
    probabilities = task_client.infer("digits_classifier", {"images": pixels})["probabilities"][0]
    for result in reply.results:  # PNG bytes and raw RGB pixels give the same answer
        assert [c.class_id for c in result.classes] == list(np.argsort(-probabilities, kind="stable"))
        np.testing.assert_allclose([c.score for c in result.classes], np.sort(probabilities)[::-1], rtol=1e-6)
        assert [c.label for c in result.classes] == [str(c.class_id) for c in result.classes]
    assert len(task_client.classify("digits_classifier", [data]).results[0].classes) == 5  # default top-k


@pytest.mark.parametrize("top_k", [0, -1, 11])
def test_classify_top_k_out_of_range(task_client, top_k):
    error = _status(lambda: task_client.classify("digits_classifier", [_digit_png()[0]], top_k=top_k))
    assert error.code() == INVALID and "top_k" in error.details()


def test_classify_bad_inputs_name_the_image(task_client):
    good = _digit_png()[0]
    error = _status(lambda: task_client.classify("digits_classifier", [good, b"GIF89a but not really"]))
    assert error.code() == INVALID and "image 1" in error.details()
    assert _status(lambda: task_client.classify("digits_classifier", [])).code() == INVALID
    bomb = _png(np.zeros((4097, 4097), np.uint8))  # one pixel over the default cap of 4096 x 4096
    error = _status(lambda: task_client.classify("digits_classifier", [good, good, bomb]))
    assert error.code() == INVALID and "image 2" in error.details() and "cap" in error.details()


def test_wrong_task_and_unknown_model(task_client):
    before = task_client.classify("digits_classifier", [_digit_png()[0]])
    error = _status(lambda: task_client.classify("pydoc_word2vec", [_digit_png()[0]]))
    assert error.code() == INVALID and "'word_vectors'" in error.details() and "classification" in error.details()
    error = _status(lambda: task_client.classify("no_such_model", [_digit_png()[0]]))
    assert error.code() == NOT_FOUND and "no_such_model" in error.details()
    assert _status(lambda: task_client.most_similar("digits_classifier", ["class"])).code() == INVALID
    assert _status(lambda: task_client.forecast("digits_gan", [[1.0]])).code() == INVALID
    assert _status(lambda: task_client.generate("waves_sequence", 1, seed=1)).code() == INVALID
    assert _status(lambda: task_client.detect("digits_classifier", [_digit_png()[0]])).code() == INVALID
    assert _status(lambda: task_client.encode("digits_classifier", [_digit_png()[0]])).code() == INVALID
    assert _status(lambda: task_client.forecast_stream("digits_gan", [1.0])).code() == INVALID
    assert task_client.health() == "SERVING"  # and the server keeps serving, with the same answer
    assert task_client.classify("digits_classifier", [_digit_png()[0]]) == before


# -- detection --------------------------------------------------------------------------------------


def _scene(seed: int = 7):
    from training.data import images, scenes

    bank = scenes.make_bank(images.digits(), 14, 32)
    return scenes.generate(bank, 1, seed=seed, canvas=64)


def test_detect_boxes_are_in_the_pixels_of_the_image_as_sent(task_client):
    scene = _scene()
    big = Image.fromarray(scene.images[0, 0]).resize((128, 96), Image.BILINEAR)  # not the canvas, not square
    reply = task_client.detect("digits_detector", [_png(np.asarray(big))])
    result = reply.results[0]
    assert (result.width, result.height) == (128, 96)
    rows = task_client.infer("digits_detector", {"images": to_model_input(big, 64)[None, None]})["detections"][0]
    rows = rows[rows[:, 4] > 0]
    assert len(result.detections) == len(rows) > 0
    for d, row in zip(result.detections, rows):
        np.testing.assert_allclose([d.x_min, d.y_min, d.x_max, d.y_max], row[:4] * [2, 1.5, 2, 1.5], rtol=1e-5, atol=1e-4)
        assert d.class_id == int(row[5]) and d.label == str(int(row[5])) and d.score == pytest.approx(row[4], rel=1e-6)
    assert reply.score_threshold == pytest.approx(0.2) and reply.max_detections == 10


def test_detect_thresholds_only_tighten(task_client):
    image = _png(_scene(3).images[0, 0])
    full = task_client.detect("digits_detector", [image]).results[0].detections
    scores = sorted(d.score for d in full)
    middle = scores[len(scores) // 2]
    stricter = task_client.detect("digits_detector", [image], score_threshold=middle).results[0].detections
    assert [d.score for d in stricter] == [d.score for d in full if d.score > middle]
    assert len(task_client.detect("digits_detector", [image], max_detections=2).results[0].detections) == min(2, len(full))
    tight = task_client.detect("digits_detector", [image], iou_threshold=0.1).results[0].detections
    for i, a in enumerate(tight):
        for b in tight[i + 1 :]:
            if a.class_id == b.class_id:
                assert _iou(a, b) <= 0.1 + 1e-6
    for loose in ({"score_threshold": 0.1}, {"iou_threshold": 0.9}, {"max_detections": 11}, {"max_detections": 0}):
        error = _status(lambda: task_client.detect("digits_detector", [image], **loose))
        assert error.code() == INVALID and next(iter(loose)) in error.details()


def _iou(a, b) -> float:
    w = max(0.0, min(a.x_max, b.x_max) - max(a.x_min, b.x_min))
    h = max(0.0, min(a.y_max, b.y_max) - max(a.y_min, b.y_min))
    union = (a.x_max - a.x_min) * (a.y_max - a.y_min) + (b.x_max - b.x_min) * (b.y_max - b.y_min) - w * h
    return w * h / union if union > 0 else 0.0


# -- word vectors ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocabulary(tiny_exported):
    return (tiny_exported.repository / "pydoc_word2vec" / "vocab.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def unit_vectors(task_client, vocabulary):
    ids = np.arange(len(vocabulary), dtype=np.int64)[:, None]
    chunks = [task_client.infer("pydoc_word2vec", {"ids": ids[i : i + 256]}, ["unit_vectors"]) for i in range(0, len(ids), 256)]
    return np.concatenate([c["unit_vectors"] for c in chunks])


def test_get_vectors_follow_the_vocabulary_normalisation(task_client, vocabulary):
    reply = task_client.get_vectors("pydoc_word2vec", ["Class", "ＣＬＡＳＳ", "class"])
    assert [v.token for v in reply.vectors] == ["class"] * 3  # lowercase after NFKC (fullwidth letters)
    raw = task_client.infer("pydoc_word2vec", {"ids": np.array([[vocabulary.index("class")]])}, ["vectors"])["vectors"][0]
    for vector in reply.vectors:
        np.testing.assert_allclose(vector.values, raw, rtol=1e-6)
    unit = task_client.get_vectors("pydoc_word2vec", ["class"], unit=True).vectors[0].values
    assert np.linalg.norm(unit) == pytest.approx(1.0, abs=1e-5)


def test_unknown_words_are_all_named(task_client):
    for call in (
        lambda: task_client.get_vectors("pydoc_word2vec", ["xyzzy", "class", "plugh"]),
        lambda: task_client.most_similar("pydoc_word2vec", ["xyzzy"], ["plugh"]),
        lambda: task_client.similarity("pydoc_word2vec", [("class", "xyzzy"), ("plugh", "true")]),
    ):
        error = _status(call)
        assert error.code() == NOT_FOUND and "'xyzzy'" in error.details() and "'plugh'" in error.details()


def test_most_similar_is_gensims(task_client, vocabulary, unit_vectors):
    from gensim.models import KeyedVectors

    keyed = KeyedVectors(unit_vectors.shape[1])
    keyed.add_vectors(vocabulary, unit_vectors)
    positive, negative = ["keys", "value"], ["key"]
    reply = task_client.most_similar("pydoc_word2vec", positive, negative, top_k=8)
    expected = keyed.most_similar(positive=positive, negative=negative, topn=8)
    assert [n.word for n in reply.neighbors] == [w for w, _ in expected]
    np.testing.assert_allclose([n.score for n in reply.neighbors], [s for _, s in expected], atol=1e-5)
    plain = task_client.most_similar("pydoc_word2vec", ["class"], top_k=3, exclude_inputs=False)
    assert plain.neighbors[0].word == "class" and plain.neighbors[0].score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("top_k", [0, -3, 10**6])
def test_most_similar_top_k_out_of_range(task_client, top_k):
    error = _status(lambda: task_client.most_similar("pydoc_word2vec", ["class"], top_k=top_k))
    assert error.code() == INVALID and "top_k" in error.details()


def test_similarity_is_the_cosine(task_client, vocabulary, unit_vectors):
    pairs = [("true", "false"), ("key", "value")]
    reply = task_client.similarity("pydoc_word2vec", pairs)
    expected = [float(unit_vectors[vocabulary.index(a)] @ unit_vectors[vocabulary.index(b)]) for a, b in pairs]
    np.testing.assert_allclose(reply.cosines, expected, atol=1e-5)
    assert _status(lambda: task_client.similarity("pydoc_word2vec", [])).code() == INVALID
    assert _status(lambda: task_client.get_vectors("pydoc_word2vec", [])).code() == INVALID
    assert _status(lambda: task_client.most_similar("pydoc_word2vec")).code() == INVALID


# -- sequences ------------------------------------------------------------------------------------


def _series(length: int, seed: int) -> np.ndarray:
    t = np.linspace(0, 1, length)
    rng = np.random.default_rng(seed)
    return (0.5 * np.sin(t * 13 + seed) + 0.2 * np.sin(t * 27) + 0.05 * rng.standard_normal(length)).astype(np.float32)


def test_forecast_matches_the_model_in_process(task_client, tiny_exported):
    session = _session(tiny_exported.repository, "waves_sequence")
    series = [_series(30, 1), _series(30, 2), _series(7, 3)]
    reply = task_client.forecast("waves_sequence", [s.tolist() for s in series])
    assert (reply.horizon, reply.trained_horizon, reply.fed_back) == (10, 10, False)
    for s, f in zip(series, reply.forecasts):
        expected = session.run(["next10"], {"series": s[None, :, None]})[0][0]
        np.testing.assert_allclose(f.values, expected, atol=1e-5)


def test_forecast_beyond_the_trained_horizon_feeds_back(task_client, tiny_exported):
    session = _session(tiny_exported.repository, "waves_sequence")
    series = _series(25, 4)
    reply = task_client.forecast("waves_sequence", [series.tolist()], horizon=23)
    assert (reply.horizon, reply.fed_back) == (23, True)
    current, predicted = series, []
    while len(predicted) < 23:
        step = session.run(["next10"], {"series": current[None, :, None]})[0][0]
        predicted += step.tolist()
        current = np.concatenate([current, step])
    np.testing.assert_allclose(reply.forecasts[0].values, predicted[:23], atol=1e-4)


@pytest.mark.parametrize(
    "series, horizon, words",
    [
        ([[]], None, "series 0"),
        ([[0.1, 0.2], [0.1, float("nan")]], None, "series 1"),
        ([[0.1, float("inf")]], None, "series 0"),
        ([], None, "no series"),
        ([[0.1]], 0, "horizon"),
        ([[0.1]], -2, "horizon"),
        ([[0.1]], 101, "the server's cap is 100 (--max-forecast-horizon)"),
    ],
)
def test_forecast_bad_input(task_client, series, horizon, words):
    error = _status(lambda: task_client.forecast("waves_sequence", series, horizon))
    assert error.code() == (TOO_LARGE if "cap" in words else INVALID) and words in error.details()


def test_stream_of_100_equals_unary_on_every_prefix(task_client):
    series = _series(100, 5)
    answers = list(task_client.forecast_stream("waves_sequence", series.tolist()))
    unary = task_client.forecast("waves_sequence", [series[: i + 1].tolist() for i in range(100)])
    assert [a.observations for a in answers] == list(range(1, 101))
    for answer, forecast in zip(answers, unary.forecasts):
        np.testing.assert_allclose(answer.ahead, forecast.values, atol=2e-5)
        assert answer.next == pytest.approx(forecast.values[0], abs=2e-5)


def test_stream_chunks_and_concurrent_streams_keep_their_own_state(task_client):
    a, b = _series(40, 6), _series(40, 7)
    alone = {k: [x.ahead for x in task_client.forecast_stream("waves_sequence", s.tolist())] for k, s in (("a", a), ("b", b))}
    results, barrier = {}, threading.Barrier(2)

    def paced(values):
        for v in values:  # interleave the two streams' messages on the server
            barrier.wait(timeout=30)
            yield v

    def run(key, values):
        results[key] = [x.ahead for x in task_client.forecast_stream("waves_sequence", paced(values.tolist()))]

    threads = [threading.Thread(target=run, args=(k, s)) for k, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for key in ("a", "b"):
        np.testing.assert_allclose(results[key], alone[key], atol=1e-6)
    chunked = list(task_client.forecast_stream("waves_sequence", [a[:15].tolist(), a[15:16].tolist(), a[16:].tolist()]))
    assert [c.observations for c in chunked] == [15, 16, 40]
    np.testing.assert_allclose([c.ahead for c in chunked], [alone["a"][i] for i in (14, 15, 39)], atol=1e-6)


def test_stream_errors_end_the_stream_with_a_status(task_client):
    error = _status(lambda: task_client.forecast_stream("waves_sequence", [0.1, float("nan")]))
    assert error.code() == INVALID and "nan" in error.details()
    assert _status(lambda: task_client.forecast_stream("nope", [0.1])).code() == NOT_FOUND
    assert _status(lambda: task_client.forecast_stream("waves_sequence", [[]])).code() == INVALID
    answers = list(task_client.forecast_stream("waves_sequence_step", [0.1, 0.2]))  # the step model itself
    assert answers[-1].observations == 2


# -- generation -------------------------------------------------------------------------------------


def test_generation_is_reproducible_by_seed(task_client):
    first = task_client.generate("digits_gan", 6, seed=42, raw=True)
    again = task_client.generate("digits_gan", 6, seed=42, raw=True)
    fewer = task_client.generate("digits_gan", 2, seed=42, raw=True)
    other = task_client.generate("digits_gan", 6, seed=43, raw=True)
    pixels = [decode_image(i) for i in first.images]
    assert first.seeded and first.seed == 42 and first.latent_size == 8
    assert [i.png for i in again.images] == [i.png for i in first.images]
    np.testing.assert_array_equal([decode_image(i) for i in fewer.images], pixels[:2])
    others = [decode_image(i) for i in other.images]
    np.testing.assert_array_equal(others, task_client.infer("digits_gan", {"latent": latents_for(43, 6, 8)})["images"][:, 0])
    assert any(not np.array_equal(o, p) for o, p in zip(others, pixels))  # seed 43 is another draw
    for image, raw in zip(first.images, pixels):  # PNG and raw are the same picture
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image.png))), raw)
    expected = task_client.infer("digits_gan", {"latent": latents_for(42, 6, 8)})["images"]
    np.testing.assert_array_equal(pixels, expected[:, 0])


def test_generation_from_latents_and_a_server_drawn_seed(task_client):
    latents = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    reply = task_client.generate("digits_gan", latents=latents.tolist(), png=False, raw=True)
    assert not reply.seeded and all(not i.png for i in reply.images)
    expected = task_client.infer("digits_gan", {"latent": latents})["images"][:, 0]
    np.testing.assert_array_equal([decode_image(i) for i in reply.images], expected)
    drawn = task_client.generate("digits_gan", 2)
    again = task_client.generate("digits_gan", 2, seed=drawn.seed)
    assert [i.png for i in again.images] == [i.png for i in drawn.images]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"count": 0, "seed": 1}, "count"),
        ({"count": -1, "seed": 1}, "count"),
        ({"count": 65, "seed": 1}, "the server's cap is 64 (--max-generate-count)"),
        ({"latents": [[0.0] * 8] * 65}, "Generate: 65 images in one call; the server's cap is 64"),
        ({"latents": [[0.0] * 8, [0.0] * 7]}, "latent vector 1"),
        ({"latents": [[0.0] * 8, [float("nan")] * 8]}, "latent vector 1"),
    ],
)
def test_generation_bad_input(task_client, kwargs, words):
    error = _status(lambda: task_client.generate("digits_gan", **kwargs))
    assert error.code() == (TOO_LARGE if "cap" in words else INVALID) and words in error.details()


def test_an_image_format_the_enum_lacks_is_refused_not_answered_with_empty_images(task_client):
    from protos import dnnzoo_tasks_pb2 as tasks

    request = tasks.GenerateRequest(model="digits_gan", count=1, seed=1, formats=[99])
    error = _status(lambda: task_client.generation.Generate(request, timeout=30))
    assert error.code() == INVALID and "formats: 99 is not an image format (known: IMAGE_FORMAT_UNSPECIFIED, PNG, RAW)" in error.details()
    request = tasks.ReconstructRequest(model="digits_autoencoder", formats=[tasks.RAW, 7])
    error = _status(lambda: task_client.autoencoding.Reconstruct(request, timeout=30))
    assert error.code() == INVALID and "formats: 7" in error.details()


# -- autoencoding -----------------------------------------------------------------------------------


def test_encode_and_reconstruct(task_client):
    data, picture = _digit_png(5)
    pixels = to_model_input(picture, 28)[None, None]
    expected = task_client.infer("digits_autoencoder", {"images": pixels})
    codes = task_client.encode("digits_autoencoder", [data]).codes
    np.testing.assert_allclose(codes[0].values, expected["codes"][0], atol=1e-5)
    white = np.full((30, 30), 255, np.uint8)
    reply = task_client.reconstruct("digits_autoencoder", [data, white], raw=True)
    for sent, result in zip((picture, Image.fromarray(white)), reply.reconstructions):  # each image's own error
        model_input = to_model_input(sent, 28)[None, None]
        output = task_client.infer("digits_autoencoder", {"images": model_input})["reconstructions"]
        assert result.error == pytest.approx(float(((model_input / 255.0 - output) ** 2).mean()), rel=1e-4)
    np.testing.assert_array_equal(
        decode_image(reply.reconstructions[0].image), np.clip(np.round(expected["reconstructions"][0, 0] * 255), 0, 255)
    )
    assert _status(lambda: task_client.reconstruct("digits_autoencoder", [b"nope"])).code() == INVALID


# -- the same runners, health, reflection -----------------------------------------------------------


def test_task_calls_go_through_the_shared_runners(task_client):
    def count() -> int:
        return sum(s.inference_count for s in task_client.model_statistics("digits_classifier"))

    before = count()
    task_client.classify("digits_classifier", [_digit_png()[0]] * 3)
    assert count() == before + 3


def test_health_and_reflection_list_the_task_services(task_server, task_client):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from serving.grpc_tasks import SERVICE_NAMES

    for name in SERVICE_NAMES:
        assert task_client.health(name) == "SERVING"
    with grpc.insecure_channel(task_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    listed = {s.name for s in reply.list_services_response.service}
    assert set(SERVICE_NAMES) <= listed

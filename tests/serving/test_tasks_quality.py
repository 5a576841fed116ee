"""Quality through the typed services on quick-profile models (slow: reads the suite's one
`quick_build` of tests/conftest.py, which trains and exports every family's quick profile)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serving.client import Client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_client(quick_build):
    from tests.serving.conftest import server_config, start_server

    running = start_server(server_config(quick_build.repository, providers="cpu"))
    try:
        with Client(running.address, timeout=60) as client:
            yield client
    finally:
        running.stop()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_digits_rendered_to_png_are_classified_correctly(quick_client):
    from training.data import images

    digits = images.digits()
    _, test = images.split(digits, 0.2, seed=42)  # the classifier's held-out split
    chosen = range(0, len(test.labels), 6)
    pictures = [
        _png(np.asarray(Image.fromarray(test.images[i, 0]).resize((96, 96), Image.BICUBIC).convert("RGB")))
        for i in chosen
    ]  # larger than the model input, and in colour: the server converts as training did
    reply = quick_client.classify("digits_classifier", pictures, top_k=1)
    predicted = [int(r.classes[0].label) for r in reply.results]
    truth = [int(test.classes[test.labels[i]]) for i in chosen]
    accuracy = float(np.mean(np.equal(predicted, truth)))
    assert predicted[0] == truth[0]
    assert accuracy >= 0.9, f"accuracy {accuracy:.3f} on {len(truth)} PNG digits"


def _iou(box: np.ndarray, d) -> float:
    w = max(0.0, min(box[2], d.x_max) - max(box[0], d.x_min))
    h = max(0.0, min(box[3], d.y_max) - max(box[1], d.y_min))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (d.x_max - d.x_min) * (d.y_max - d.y_min) - w * h
    return w * h / union if union > 0 else 0.0


def test_generated_scene_boxes_found_within_iou_half(quick_client):
    from training.data import images, scenes

    bank = scenes.make_bank(images.digits(), 14, 32)
    batch = scenes.generate(bank, 20, seed=2024, canvas=64)  # seeds training never used
    reply = quick_client.detect("digits_detector", [_png(image[0]) for image in batch.images])
    found = total = 0
    for i, result in enumerate(reply.results):
        for k in range(int(batch.counts[i])):
            total += 1
            label = batch.classes[int(batch.labels[i, k])]
            found += any(d.label == label and _iou(batch.boxes[i, k], d) >= 0.5 for d in result.detections)
    first = [batch.classes[int(c)] for c in batch.labels[0, : batch.counts[0]]]
    assert all(
        any(d.label == label and _iou(batch.boxes[0, k], d) >= 0.5 for d in reply.results[0].detections)
        for k, label in enumerate(first)
    ), "the first scene's boxes were not all found"
    assert found / total >= 0.85, f"found {found} of {total} boxes at IoU 0.5"


ANALOGIES = [("list", "lists", "tuple", "tuples"), ("integer", "integers", "string", "strings")]


@pytest.mark.parametrize("a, b, c, expected", ANALOGIES)
def test_analogy_from_the_training_corpus(quick_client, a, b, c, expected):
    # a : b :: c : ?  — plurals as the pydoc text uses them ("a list of tuples", "integers and strings").
    reply = quick_client.most_similar("pydoc_word2vec", positive=[b, c], negative=[a], top_k=3)
    words = [n.word for n in reply.neighbors]
    assert words[0] == expected, words


def test_analogies_beat_answering_with_a_neighbour_of_b_or_c(quick_client):
    """The offset b − a + c must matter: answering with the nearest neighbour of b alone (or of c alone),
    the question words excluded, gets fewer of the analogies right ("tuples" is next to "lists" anyway)."""

    def nearest(word: str, excluded: set[str]) -> str:
        neighbours = quick_client.most_similar("pydoc_word2vec", positive=[word], top_k=4).neighbors
        return next(n.word for n in neighbours if n.word not in excluded)

    def right(answer) -> int:
        return sum(answer(a, b, c) == expected for a, b, c, expected in ANALOGIES)

    offset = right(lambda a, b, c: quick_client.most_similar("pydoc_word2vec", positive=[b, c], negative=[a], top_k=1).neighbors[0].word)
    of_b = right(lambda a, b, c: nearest(b, {a, c}))
    of_c = right(lambda a, b, c: nearest(c, {a, b}))
    assert offset > max(of_b, of_c), (offset, of_b, of_c)

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


HELD_OUT_SCENES, HELD_OUT_SEED = 200, 2024  # new layouts of the detector run's test digits (a seed training never used)


def _rows(result, classes: list[str]) -> np.ndarray:
    """A served image's detections as training's rows x1, y1, x2, y2, score, class (class from the label)."""
    rows = [[d.x_min, d.y_min, d.x_max, d.y_max, d.score, classes.index(d.label)] for d in result.detections]
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def served_held_out_map50(client, extra: dict) -> dict:
    """mAP@0.5, precision and recall of the served detector on scenes of digits its run held out. The
    service returns what scores above the model's own threshold (a request may only raise it): mAP is
    that part of the precision/recall curve, and every false positive returned costs."""
    from training import detector as det
    from training import detector_eval

    scenes = det.held_out_scenes(extra, HELD_OUT_SCENES, HELD_OUT_SEED)
    pictures = [_png(image[0]) for image in scenes.images]
    results = [r for start in range(0, len(pictures), 100)
               for r in client.detect("digits_detector", pictures[start : start + 100]).results]  # fmt: skip
    return detector_eval.scored_detections([_rows(r, scenes.classes) for r in results], scenes, extra["score_threshold"])


def test_served_detector_reaches_map50_of_0_90_on_held_out_digits(quick_client, quick_build):
    from training import checkpoint

    extra = checkpoint.load(quick_build.run("detector"), family="detector")["extra"]
    scored = served_held_out_map50(quick_client, extra)
    assert scored["map"] >= 0.90, (
        f"mAP@0.5 {scored['map']:.3f} on {HELD_OUT_SCENES} scenes of held-out digits; at score > {extra['score_threshold']}: "
        f"precision {scored['precision']:.3f}, recall {scored['recall']:.3f}"
    )


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

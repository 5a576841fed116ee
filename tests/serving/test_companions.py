"""A companion model is paired with its main model only when both come from one export.

MostSimilar maps the ids of `NAME_neighbors` through the vocabulary of `NAME`; when the two folders
carry different `dnnzoo.vocab_hash` or `dnnzoo.export_id` (a main model re-exported beside old
neighbours) the ids would name other words, so the call is refused with UNAVAILABLE while the main
model alone (GetVectors, Similarity) still serves. A pair without those parameters, as older
exports wrote it, is served as before.
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

from serving.client import Client
from tests.serving.builders import EXPORT_ID, VOCAB_HASH, WORD_UNIT, WORDS, write_word_pair
from tests.serving.conftest import server_config, start_server, wait_until

OTHER_HASH = "fedcba9876543210"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def words_repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("companions") / "repo"
    write_word_pair(root, "words")
    write_word_pair(root, "stale", neighbors={"dnnzoo.vocab_hash": OTHER_HASH, "dnnzoo.export_id": "1111111111111111"})
    write_word_pair(root, "drifted", neighbors={"dnnzoo.export_id": "2222222222222222"})
    write_word_pair(root, "legacy", neighbors={"dnnzoo.vocab_hash": None, "dnnzoo.export_id": None})
    write_word_pair(root, "repaired", neighbors={"dnnzoo.vocab_hash": OTHER_HASH})
    return root


@pytest.fixture(scope="module")
def client(words_repository):
    running = start_server(server_config(words_repository, providers="cpu", model_control_mode="poll"))
    with Client(running.address, timeout=30) as client:
        yield client
    running.stop()


def _nearest(word: str) -> list[str]:
    cosines = WORD_UNIT @ WORD_UNIT[WORDS.index(word)]
    return [WORDS[i] for i in np.argsort(-cosines) if WORDS[i] != word]


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_a_pair_from_one_export_answers(client):
    reply = client.most_similar("words", ["king"])
    assert [n.word for n in reply.neighbors] == _nearest("king")


def test_a_companion_with_another_vocabulary_is_refused(client):
    error = _refused(lambda: client.most_similar("stale", ["king"]))
    assert error.code() == UNAVAILABLE
    assert error.details() == (
        f"model 'stale_neighbors' comes from another export than 'stale' (vocabulary hash {OTHER_HASH} != {VOCAB_HASH}); re-export both"
    )


def test_the_main_model_alone_still_serves_beside_a_stale_companion(client):
    reply = client.get_vectors("stale", ["king", "Queen"], unit=True)
    np.testing.assert_allclose([v.values for v in reply.vectors], WORD_UNIT[[0, 1]], rtol=1e-6)
    cosine = client.similarity("stale", [("king", "queen")]).cosines[0]
    assert cosine == pytest.approx(float(WORD_UNIT[0] @ WORD_UNIT[1]), abs=1e-6)


def test_a_companion_from_another_export_run_is_refused(client):
    error = _refused(lambda: client.most_similar("drifted", ["king"]))
    assert error.code() == UNAVAILABLE
    assert f"(export id 2222222222222222 != {EXPORT_ID}); re-export both" in error.details()
    assert "'drifted_neighbors' comes from another export than 'drifted'" in error.details()


def test_a_pair_without_fingerprints_is_served_as_before(client):
    reply = client.most_similar("legacy", ["woman"], top_k=2)
    assert [n.word for n in reply.neighbors] == _nearest("woman")[:2]


def test_re_exporting_the_companion_repairs_the_pair(client, words_repository):
    assert _refused(lambda: client.most_similar("repaired", ["man"])).code() == UNAVAILABLE
    config = words_repository / "repaired_neighbors" / "config.pbtxt"
    staged = config.with_name(".config.pbtxt.new")
    staged.write_text(config.read_text(encoding="utf-8").replace(OTHER_HASH, VOCAB_HASH), encoding="utf-8")
    os.replace(staged, config)

    def answers():
        try:
            return client.most_similar("repaired", ["man"])
        except grpc.RpcError as error:
            assert error.code() == UNAVAILABLE, error.details()
            return None

    reply = wait_until(answers, what="the repaired pair to answer")
    assert [n.word for n in reply.neighbors] == _nearest("man")

"""Tabular export: raw columns in (BYTES and FP32), vocabularies inside the graph, parity with PyTorch on
training rows and on unseen and missing categories, readable vocabulary files in the folder."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.graphs import tabular as graph
from export.pipeline import export_run
from protos.config_text import parse_config
from training import checkpoint, tabular
from training.config import TrainConfig
from training.tabular_encoding import Schema


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tabular")
    tabular.train(TrainConfig(family="tabular", profile="tiny", out=root / "run", progress=False), tabular.Options(oov_buckets=2))
    export_run(root / "run", root / "repo")
    return root / "run", root / "repo" / "penguins_tabular"


def _session(folder):
    return ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


def _row(**cells):
    numbers = {"bill_length_mm": 44.0, "bill_depth_mm": 17.0, "flipper_length_mm": 200.0, "body_mass_g": 4200.0, "year": 2008.0}
    row = {**numbers, "island": "Biscoe", "sex": "male", **cells}
    return {k: (np.array([[v]], np.float32) if k in numbers else np.array([[v]], dtype=object)) for k, v in row.items()}


def test_config_takes_raw_columns_and_the_folder_holds_readable_vocabularies(exported):
    run, folder = exported
    config = parse_config((folder / "config.pbtxt").read_text())
    types = {t.name: t.data_type for t in config.input}
    assert types["island"] == types["sex"] == 13 and types["body_mass_g"] == 11  # TYPE_STRING, TYPE_FP32
    assert [o.name for o in config.output] == ["probabilities", "label"] and config.output[0].label_filename == "labels.txt"
    assert config.parameters["dnnzoo.task"].string_value == "tabular"
    vocab = (folder / "vocab.0.island.txt").read_text().splitlines()
    assert sorted(vocab[:3]) == ["Biscoe", "Dream", "Torgersen"] and vocab[3:] == ["[OOV bucket 0]", "[OOV bucket 1]", "[missing]"]
    schema = json.loads((folder / "tabular.json").read_text())
    assert schema["categorical"][0]["unseen_slot"] == 3 and schema["categorical"][0]["missing_slot"] == 5
    assert (folder / "labels.txt").read_text().split() == ["Adelie", "Chinstrap", "Gentoo"]


def _trained(run):
    """The run's checkpoint, its network in eval mode and its column schema."""
    ckpt = checkpoint.load(run)
    model = tabular.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    return ckpt, model.eval(), Schema.from_plain(ckpt["extra"]["schema"])


def test_unseen_and_missing_categories_take_their_slots_in_the_graph_as_in_pytorch(exported):
    run, folder = exported
    ckpt, model, schema = _trained(run)
    session = _session(folder)
    reference = graph.reference(model, schema, "probabilities", ckpt["extra"]["labels"])
    for island, sex in [("Biscoe", "male"), ("DESERT", "male"), ("", "NA"), ("Dream", "?"), ("Atlantis", "unknown")]:
        case = _row(island=island, sex=sex, bill_depth_mm=np.nan)
        got = dict(zip(["probabilities", "label"], session.run(["probabilities", "label"], case)))
        want = reference(case)
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
        assert got["label"][0, 0] == want["label"][0, 0]
    # DESERT and Atlantis both take island's first OOV slot; a missing sex and "?" the missing slot.
    island, sex = schema.categorical
    assert island.encode(["DESERT", "Atlantis"]).tolist() == [island.unseen_index] * 2 == [3, 3]
    assert sex.encode(["NA", "?", None]).tolist() == [sex.missing_index] * 3
    desert = session.run(["probabilities"], _row(island="DESERT"))[0]
    atlantis = session.run(["probabilities"], _row(island="Atlantis"))[0]
    np.testing.assert_array_equal(desert, atlantis)
    assert not np.allclose(desert, session.run(["probabilities"], _row(island="")), atol=1e-6)


def test_training_rows_agree_with_pytorch_in_a_batch(exported):
    run, folder = exported
    ckpt, model, schema = _trained(run)
    case = graph._case(schema, ckpt["extra"]["sample_rows"], np.arange(40))
    got = _session(folder).run(["probabilities"], case)[0]
    want = graph.reference(model, schema, "probabilities", ckpt["extra"]["labels"])(case)["probabilities"]
    assert got.shape == (40, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_regression_with_embeddings_exports_its_value(tmp_path):
    torch.set_num_threads(1)
    tabular.train(TrainConfig(family="tabular", profile="tiny", out=tmp_path / "run", progress=False),
                  tabular.Options(target="body_mass_g", encoding="embedding"))
    exported = export_run(tmp_path / "run", tmp_path / "repo", "penguin_mass")
    folder = tmp_path / "repo" / "penguin_mass"
    config = parse_config((folder / "config.pbtxt").read_text())
    assert [o.name for o in config.output] == ["value"] and config.parameters["dnnzoo.tabular.kind"].string_value == "regression"
    assert "species" in {t.name for t in config.input} and exported[0].task == "tabular"
    value = _session(folder).run(["value"], {k: v for k, v in _row(species="Gentoo").items() if k != "body_mass_g"})[0]
    assert value.shape == (1, 1) and 2000 < float(value[0, 0]) < 7000

"""Every family exported from a tiny run: configs parse back, `dnnzoo repo check` passes, and each
model runs in ONNX Runtime from its config alone."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from protos import config_text
from protos.model_config_pb2 import ModelConfig

from dnnzoo import cli
from export.families import DEFAULT_NAMES

EXPECTED = {
    "digits_classifier": "classification",
    "digits_detector": "detection",
    "pydoc_word2vec": "word_vectors",
    "pydoc_word2vec_neighbors": "word_neighbors",
    "waves_sequence": "sequence",
    "waves_sequence_step": "sequence_step",
    "digits_gan": "generation",
    "digits_autoencoder": "autoencoding",
    "penguins_tabular": "tabular",
}


def _config(repository, name) -> ModelConfig:
    return config_text.parse_config((repository / name / "config.pbtxt").read_text(), source=name)


def test_build_exports_every_family_with_parity(built):
    """Read from the repository, not from the build's return value: another xdist worker may have
    made the shared build, and this worker's `build` then found it up to date."""
    assert {p.name for p in built.repository.iterdir() if p.is_dir() and not p.name.startswith(".")} == set(EXPECTED)
    for name in EXPECTED:
        assert [p.name for p in (built.repository / name).iterdir() if p.is_dir()] == ["1"]
        assert (built.repository / name / "1" / "model.onnx").is_file()
        assert float(_config(built.repository, name).parameters["dnnzoo.export.parity_max_abs_diff"].string_value) <= 1e-4
    assert {s.family for s in built.steps} == set(DEFAULT_NAMES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_back_with_the_facts_serving_needs(built, name):
    config = _config(built.repository, name)
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["dnnzoo.task"] == EXPECTED[name]
    assert all(k.startswith("dnnzoo.") for k in params)
    assert len(params["dnnzoo.source.checkpoint_sha256"]) == 64
    assert config.version_policy.latest.num_versions == 1
    assert len(config.instance_group) == 1 and config.instance_group[0].count == 0  # the server's plan decides
    assert config.HasField("dynamic_batching") == (config.max_batch_size > 0)
    # written text is what the strict parser reads back, byte for byte
    assert config_text.format_config(config) == (built.repository / name / "config.pbtxt").read_text()


def test_side_files_and_companions(built):
    repo = built.repository
    labels = (repo / "digits_classifier" / "labels.txt").read_text().splitlines()
    assert labels == [str(i) for i in range(10)]
    assert _config(repo, "digits_classifier").output[0].label_filename == "labels.txt"
    assert (repo / "digits_detector" / "labels.txt").is_file()
    vocab = (repo / "pydoc_word2vec" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    params = _config(repo, "pydoc_word2vec").parameters
    assert len(vocab) == int(params["dnnzoo.vocab_size"].string_value)
    assert params["dnnzoo.vocab.lowercase"].string_value == "true"
    assert params["dnnzoo.companion.neighbors"].string_value == "pydoc_word2vec_neighbors"
    assert _config(repo, "waves_sequence").parameters["dnnzoo.companion.step"].string_value == "waves_sequence_step"
    assert _config(repo, "pydoc_word2vec_neighbors").max_batch_size == 0
    assert params["dnnzoo.input.ids.range"].string_value == f"0,{len(vocab) - 1}"


@pytest.mark.parametrize("main, companion", [("pydoc_word2vec", "pydoc_word2vec_neighbors"), ("waves_sequence", "waves_sequence_step")])
def test_a_model_and_its_companion_carry_one_export_id(built, main, companion):
    ours, theirs = (_config(built.repository, name).parameters for name in (main, companion))
    assert len(ours["dnnzoo.export_id"].string_value) == 16
    assert ours["dnnzoo.export_id"] == theirs["dnnzoo.export_id"]
    others = {_config(built.repository, name).parameters["dnnzoo.export_id"].string_value for name in EXPECTED}
    assert len(others) == len(EXPECTED) - 2, "each export run has its own id"


def test_repo_check_cli_passes(built, capsys):
    assert cli.main(["repo", "check", str(built.repository)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("ok ") for line in lines) == len(EXPECTED)


def _inputs_from_config(config: ModelConfig, batch: int, rng) -> dict[str, np.ndarray]:
    """Random inputs built only from what the config states (names, types, dims)."""
    feeds = {}
    for tensor in config.input:
        dtype = config_text.from_config(tensor.data_type).numpy
        dims = [batch] if config.max_batch_size > 0 else []
        dims += [d if d > 0 else (batch if config.max_batch_size == 0 and i == 0 else 7) for i, d in enumerate(tensor.dims)]
        if dtype == np.uint8:
            feeds[tensor.name] = rng.integers(0, 256, size=dims, dtype=np.uint8)
        elif dtype == np.int64:
            feeds[tensor.name] = np.ones(dims, np.int64)  # an id and a k every model accepts
        else:
            feeds[tensor.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_runs_in_onnxruntime_from_its_config_alone(built, name):
    config = _config(built.repository, name)
    session = ort.InferenceSession(str(built.repository / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = 3
    feeds = _inputs_from_config(config, batch, np.random.default_rng(0))
    names = [t.name for t in config.output]
    results = session.run(names, feeds)
    for tensor, value in zip(config.output, results):
        assert value.dtype == config_text.from_config(tensor.data_type).numpy, tensor.name
        want = ([batch] if config.max_batch_size > 0 else []) + list(tensor.dims)
        assert len(value.shape) == len(want), tensor.name
        for have, dim in zip(value.shape, want):
            assert dim == -1 or have == dim, (tensor.name, value.shape, want)
        if value.dtype.kind == "f":
            assert np.isfinite(value).all(), tensor.name


def test_classifier_probabilities_sum_to_one(built):
    session = ort.InferenceSession(str(built.repository / "digits_classifier" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(1).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    (probs,) = session.run(["probabilities"], {"images": images})
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_build_again_is_up_to_date(built):
    from export.build import build

    steps = build("tiny", built.repository, built.runs, 17, False, "auto", False, out=lambda _: None)
    assert all(s.up_to_date and s.trained_seconds is None for s in steps)
    assert not (built.repository / "digits_classifier" / "2").exists()


def test_build_cli_exports_existing_runs_into_a_new_repository(built, tmp_path, capsys):
    repo = tmp_path / "repo"
    argv = ["build", "--profile", "tiny", "--runs", str(built.runs), "--repository", str(repo), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "training 0s" in out and sorted(p.name for p in repo.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("opset", ["12", "21"])
def test_unsupported_opsets_are_refused(built, tmp_path, capsys, opset):
    argv = ["export", str(built.runs / "gan-tiny"), "--repository", str(tmp_path / "repo"), "--opset", opset]
    assert cli.main(argv) == 2
    assert "--opset" in capsys.readouterr().err and not (tmp_path / "repo").exists()


@pytest.mark.parametrize("family", sorted(DEFAULT_NAMES))
def test_config_carries_every_baseline_comparison_of_the_run(built, run_of, family):
    import json

    records = json.loads((run_of(family) / "metrics.json").read_text())["final"]["baselines"]
    params = {k: v.string_value for k, v in _config(built.repository, DEFAULT_NAMES[family]).parameters.items()}
    assert records, f"{family} compares itself with no baseline"
    for record in records:
        key = f"dnnzoo.baseline.{record['baseline']}.{record['metric']}"
        assert float(params[key]) == pytest.approx(record["value"], rel=1e-5)
        assert params[f"{key}.beaten"] == ("true" if record["beats"] else "false")


def test_export_warns_about_a_lost_baseline(run_of, tmp_path, capsys):
    import json
    import shutil

    from export.pipeline import export_run

    run = tmp_path / "classifier-lost"
    shutil.copytree(run_of("classifier"), run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["final"]["baselines"] = [{"baseline": "majority_class", "metric": "val_acc", "model": 0.05, "value": 0.1,
                                      "higher_is_better": True, "beats": False}]  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    export_run(run, tmp_path / "repository")
    assert "WARNING: exporting classifier-lost: its val_acc 0.05 does NOT beat the majority_class baseline (0.1)" in capsys.readouterr().err
    params = {k: v.string_value for k, v in _config(tmp_path / "repository", DEFAULT_NAMES["classifier"]).parameters.items()}
    assert params["dnnzoo.baseline.majority_class.val_acc.beaten"] == "false"

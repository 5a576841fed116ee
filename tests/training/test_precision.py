"""--precision: bf16 autocast trains on CPU, its checkpoints and exported graphs stay FP32; fp16 is CUDA-only."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from export.pipeline import export_run
from training import checkpoint, resume
from training import cli as train_cli
from training.precision import Precision

FLAGS = ["classifier", "--profile", "tiny", "--steps", "20", "--no-progress"]


def test_bf16_autocast_runs_the_step_in_bf16_and_leaves_the_weights_fp32():
    model = nn.Linear(4, 2)
    with Precision("bf16", torch.device("cpu")).autocast():
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16 and model.weight.dtype == torch.float32


def test_a_bf16_run_keeps_fp32_checkpoints_and_exports_with_parity(tmp_path):
    assert train_cli.main([*FLAGS, "--out", str(tmp_path / "fp32")]) == 0
    assert train_cli.main([*FLAGS, "--precision", "bf16", "--out", str(tmp_path / "bf16")]) == 0
    run = tmp_path / "bf16"
    weights = checkpoint.load(run)["state_dict"]
    state = torch.load(run / resume.STATE, map_location="cpu", weights_only=True)
    floats = [t for t in [*weights.values(), *state["model"].values()] if t.is_floating_point()]
    assert floats and {t.dtype for t in floats} == {torch.float32}
    fp32 = checkpoint.load(tmp_path / "fp32")["state_dict"]
    assert any(not torch.equal(fp32[k], weights[k]) for k in weights if weights[k].is_floating_point())  # the flag did act
    assert json.loads((run / "metrics.json").read_text())["config"]["precision"] == "bf16"

    (exported,) = export_run(run, tmp_path / "repository")
    assert exported.parity_max_abs_diff < 1e-4


def test_fp16_on_the_cpu_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main([*FLAGS, "--device", "cpu", "--precision", "fp16", "--out", str(out)]) == 2
    assert "--precision fp16 needs a CUDA device" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("family", ["word2vec", "gan"])
def test_families_outside_the_fit_loop_refuse_bf16_saying_why(capsys, family):
    assert train_cli.main([family, "--profile", "tiny", "--precision", "bf16"]) == 2
    assert f"--precision: not available for the {family} family (" in capsys.readouterr().err

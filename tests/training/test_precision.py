"""--precision: bf16 and fp16 autocast train on CPU (fp16 with a CPU gradient scaler), their checkpoints and
exported graphs stay FP32."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from export.pipeline import export_run
from training import checkpoint, resume, scale
from training import cli as train_cli
from training.families import FAMILIES
from training.precision import Precision

FLAGS = ["classifier", "--profile", "tiny", "--steps", "20", "--no-progress"]


def test_bf16_autocast_runs_the_step_in_bf16_and_leaves_the_weights_fp32():
    model = nn.Linear(4, 2)
    with Precision("bf16", torch.device("cpu")).autocast():
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16 and model.weight.dtype == torch.float32


def test_the_fp16_gradient_scaler_works_on_the_cpu_skipping_a_step_whose_scaled_gradients_overflow():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    amp = Precision("fp16", torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    for factor in (1e3, 1.0):  # ×65536 overflows fp16's range (65504) at the first factor, not at the second
        with amp.autocast():
            out = model(torch.ones(1, 4))
        assert out.dtype == torch.float16 and model.weight.dtype == torch.float32
        amp.backward(out.float().sum() * factor)
        amp.unscale(optimizer)
        amp.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        if factor > 1:
            assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was skipped
    assert amp.state_dict()["scale"] == 65536.0 / 2
    assert not torch.equal(before[0], model.weight)  # the next step was taken


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_a_reduced_precision_run_keeps_fp32_checkpoints_and_exports_with_parity(tmp_path, name):
    assert train_cli.main([*FLAGS, "--out", str(tmp_path / "fp32")]) == 0
    assert train_cli.main([*FLAGS, "--precision", name, "--out", str(tmp_path / name)]) == 0
    run = tmp_path / name
    weights = checkpoint.load(run)["state_dict"]
    state = torch.load(run / resume.STATE, map_location="cpu", weights_only=True)
    floats = [t for t in [*weights.values(), *state["model"].values()] if t.is_floating_point()]
    assert floats and {t.dtype for t in floats} == {torch.float32}
    fp32 = checkpoint.load(tmp_path / "fp32")["state_dict"]
    assert any(not torch.equal(fp32[k], weights[k]) for k in weights if weights[k].is_floating_point())  # the flag did act
    assert json.loads((run / "metrics.json").read_text())["config"]["precision"] == name
    scaler = state["precision"]  # the gradient scaler's state, counting the steps since its last overflow
    assert scaler["_growth_tracker"] > 0 and scaler["scale"] > 0 if name == "fp16" else scaler == {}

    (exported,) = export_run(run, tmp_path / "repository")
    assert exported.parity_max_abs_diff < 1e-4


@pytest.mark.parametrize("name", ["bf16", "fp16"])
@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in scale.OWN_LOOP])
def test_every_fit_loop_family_trains_at_reduced_precision_on_the_cpu(tmp_path, family, name):
    """The sequence family keeps its LSTM in FP32 (no oneDNN bf16/fp16 LSTM here); the detector sums its loss in FP32."""
    run = tmp_path / "run"
    assert train_cli.main([family, "--profile", "tiny", "--steps", "3", "--precision", name, "--device", "cpu", "--no-progress", "--out", str(run)]) == 0
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert history and all(math.isfinite(row["loss"]) for row in history)


@pytest.mark.parametrize("family", ["word2vec", "gan"])
def test_families_outside_the_fit_loop_refuse_bf16_saying_why(capsys, family):
    assert train_cli.main([family, "--profile", "tiny", "--precision", "bf16"]) == 2
    assert f"--precision: not available for the {family} family (" in capsys.readouterr().err

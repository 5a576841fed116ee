"""The step budget, evaluation rounds, and early stopping and max-norm as the fit loop applies them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnnzoo.errors import UserError
from training import budget
from training.cli import parse
from training.config import TrainConfig
from training.fit import fit


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"family": "t", "lr": 0.05, "optimizer": "sgd", "schedule": "constant", "progress": False, **kw})


@pytest.mark.parametrize("steps_per_epoch, epochs, per_round", [(1, 600, 50), (7, 86, 8), (50, 12, 1), (300, 2, 1)])
def test_a_step_budget_trains_small_data_as_long_as_large_data(steps_per_epoch, epochs, per_round):
    plan = budget.plan(_config(steps=600), steps_per_epoch)
    assert (plan.epochs, plan.epochs_per_round) == (epochs, per_round)
    assert plan.steps >= 600 and plan.steps - 600 < steps_per_epoch


def test_epochs_given_win_over_the_profiles_steps():
    assert budget.plan(_config(epochs=3, steps=600), 10).epochs == 3


def test_epochs_and_steps_together_are_refused():
    with pytest.raises(UserError, match="--epochs and --steps"):
        parse("classifier", ["--epochs", "2", "--steps", "100"], "dnnzoo train")


def test_a_users_steps_replace_the_profiles_epochs():
    _, config, _ = parse("classifier", ["--profile", "tiny", "--steps", "7"], "dnnzoo train")
    from training.config import apply_profile
    from training.classifier import PROFILES

    resolved, _ = apply_profile(config, None, {k: v for k, v in PROFILES["tiny"].items() if k in ("epochs", "steps")})
    assert (resolved.epochs, resolved.steps) == (None, 7)


def _regression(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def test_fit_runs_the_budget_in_steps_and_evaluates_once_per_round():
    x, y = _regression()
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 64, 32)]  # 2 steps per epoch
    model = nn.Linear(4, 1)
    history = fit(model, batches, _config(steps=120), lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
                  lambda m: {"val_loss": 0.0}, torch.device("cpu"))  # fmt: skip
    assert [row["step"] for row in history] == [50, 100, 120]  # rounds of 25 epochs (50 steps), then the rest


def test_early_stopping_restores_the_best_weights_through_fit():
    """Training on y and validating on -y: validation gets worse as training improves, so the best is early."""
    torch.manual_seed(0)
    x, y = _regression()
    model = nn.Linear(4, 1)
    snapshots = []

    def evaluate(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"val_loss": float(nn.functional.mse_loss(m(x), -y))}

    history = fit(model, [(x, y)], _config(epochs=200, early_stopping=3), lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
                  evaluate, torch.device("cpu"))  # fmt: skip
    losses = [row["val_loss"] for row in history]
    best = losses.index(min(losses))
    assert len(history) == best + 4  # stopped after 3 rounds without improvement
    assert history[-1]["val_loss"] > losses[best]  # the last weights were worse...
    for key, value in model.state_dict().items():  # ...and the best ones are back
        assert torch.equal(value, snapshots[best][key])


@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_max_norm_holds_every_unit_through_fit(max_norm):
    x, y = _regression()
    model = nn.Linear(4, 3)
    fit(model, [(x, y.repeat(1, 3))], _config(epochs=30, lr=0.1, max_norm=max_norm),
        lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), lambda m: {"val_loss": 0.0}, torch.device("cpu"))  # fmt: skip
    norms = model.weight.detach().norm(dim=1)
    if max_norm is None:
        assert norms.min() > 1.0  # the target needs ‖w‖ ≈ 3.8: unconstrained training gets there
    else:
        assert norms.max() <= max_norm + 1e-6


@pytest.mark.parametrize("items, steps", [(500, 1000), (1300, 1000), (1950, 1500), (2600, 2000), (9000, 2000)])
def test_a_budget_grows_with_the_data_up_to_its_cap(items, steps):
    assert budget.grown(1000, items, items_per_budget=1300, cap=2.0) == steps

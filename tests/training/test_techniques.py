"""Each shared training technique checked against its definition."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training import initialization, regularization, transfer
from training.config import TrainConfig
from training.optim import Schedule, lr_factor, make_optimizer


def _big_linear(fan_in: int = 400, fan_out: int = 600) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(fan_in, fan_out)


@pytest.mark.parametrize(
    "activation, expected",
    [
        ("tanh", lambda i, o: 2 / (i + o)),  # Glorot: 1/fan_avg
        ("sigmoid", lambda i, o: 2 / (i + o)),
        (None, lambda i, o: 2 / (i + o)),
        ("relu", lambda i, o: 2 / i),  # He
        ("leaky_relu", lambda i, o: 2 / i),
        ("elu", lambda i, o: 2 / i),
        ("selu", lambda i, o: 1 / i),  # LeCun
    ],
)
@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_initial_weight_variance_matches_the_formula(activation, expected, distribution):
    layer = _big_linear()
    initialization.initialize(layer, activation, "auto", distribution)
    want = expected(400, 600)
    assert layer.weight.var().item() == pytest.approx(want, rel=0.03)
    assert torch.count_nonzero(layer.bias) == 0
    if distribution == "uniform":
        assert layer.weight.abs().max().item() <= math.sqrt(3 * want) + 1e-7


@pytest.mark.parametrize("activation, normal", [("selu", True), ("relu", False), ("tanh", False)])
def test_auto_distribution_is_lecun_normal_for_selu_only(activation, normal):
    layer = _big_linear()
    initialization.initialize(layer, activation)  # --init auto, --init-distribution auto
    w = layer.weight.detach().flatten()
    excess_kurtosis = float(((w - w.mean()) ** 4).mean() / w.var() ** 2) - 3  # normal 0, uniform -1.2
    assert excess_kurtosis == pytest.approx(0.0 if normal else -1.2, abs=0.1)


def test_conv_fans_include_the_receptive_field():
    conv = nn.Conv2d(16, 32, 3)
    assert initialization.fans(conv.weight) == (16 * 9, 32 * 9)
    deconv = nn.ConvTranspose2d(16, 32, 3)  # weight is [in, out, k, k]
    assert initialization.fans(deconv.weight, transposed=True) == (16 * 9, 32 * 9)
    initialization.initialize(conv, "relu")
    assert conv.weight.var().item() == pytest.approx(2 / (16 * 9), rel=0.05)


@pytest.mark.parametrize("activation, factor", [("sigmoid", 1.0), ("tanh", 4.0), ("relu", math.sqrt(2))])
def test_survey_table_is_applied_as_printed(activation, factor):
    layer = _big_linear()
    initialization.initialize(layer, activation, "survey-table")
    r = factor * math.sqrt(6 / (400 + 600))
    assert layer.weight.abs().max().item() <= r
    assert layer.weight.var().item() == pytest.approx(r * r / 3, rel=0.03)  # uniform(-r, r)


def _config(**kw) -> TrainConfig:
    base = dict(family="t", lr=0.1, optimizer="sgd", epochs=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("t", [0, 10, 55, 100])
def test_power_and_exponential_schedules_follow_their_formulas(t):
    cfg = _config(schedule_steps=20, schedule_power=1.5)
    assert lr_factor("power", t, 100, cfg) == pytest.approx(1 / (1 + t / 20) ** 1.5)
    assert lr_factor("exponential", t, 100, cfg) == pytest.approx(0.1 ** (t / 20))


def test_piecewise_drops_tenfold_at_each_milestone():
    cfg = _config(milestones=(0.5, 0.75))
    assert [lr_factor("piecewise", t, 100, cfg) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


def test_schedule_object_sets_the_optimizer_rate_each_step():
    model = nn.Linear(2, 1)
    cfg = _config(schedule="exponential", schedule_steps=10)
    opt = make_optimizer(model.parameters(), cfg)
    sched = Schedule(opt, cfg, total_steps=100)
    for _ in range(20):
        opt.step()
        sched.after_step()
    assert sched.lr == pytest.approx(0.1 * 0.1 ** (20 / 10))


@pytest.mark.parametrize("step, rate, momentum", [
    (0, 0.1, 0.95),     # start: a tenth of the peak, high momentum
    (15, 0.4, 0.91667),  # a third of the way up
    (45, 1.0, 0.85),    # the peak, halfway through the cycle (90 steps = the run less its final tenth)
    (60, 0.7, 0.8833),  # on the way down
    (90, 0.1, 0.95),    # back to the start value
    (95, 0.05005, 0.95),  # the final drop, halfway
    (100, 1e-4, 0.95),  # three orders below the start at the end
])  # fmt: skip
def test_one_cycle_follows_the_books_shape_point_by_point(step, rate, momentum):
    model = nn.Linear(2, 1)
    cfg = _config(schedule="1cycle", lr=2.0, optimizer="momentum")
    opt = make_optimizer(model.parameters(), cfg)
    sched = Schedule(opt, cfg, total_steps=100)
    for _ in range(step):
        opt.step()
        sched.after_step()
    assert sched.lr == pytest.approx(2.0 * rate, rel=1e-3)
    assert opt.param_groups[0]["momentum"] == pytest.approx(momentum, rel=1e-3)


def test_torch_one_cycle_is_pytorchs_cosine_shape():
    model = nn.Linear(2, 1)
    cfg = _config(schedule="1cycle-torch", lr=1.0)
    opt = make_optimizer(model.parameters(), cfg)
    sched = Schedule(opt, cfg, total_steps=100)
    rates = []
    for _ in range(100):
        rates.append(sched.lr)
        opt.step()
        sched.after_step()
    peak = max(range(100), key=rates.__getitem__)
    assert rates[0] == pytest.approx(1.0 / 25) and rates[peak] == pytest.approx(1.0, rel=0.01)
    assert 25 <= peak <= 35 and rates[-1] < 1e-3


def test_performance_schedule_cuts_the_rate_on_a_plateau():
    model = nn.Linear(2, 1)
    cfg = _config(schedule="performance")
    opt = make_optimizer(model.parameters(), cfg)
    sched = Schedule(opt, cfg, total_steps=10)
    for loss in (1.0, 0.9, 0.9, 0.9, 0.9):
        sched.after_epoch(loss)
    assert sched.lr == pytest.approx(0.01)


@pytest.mark.parametrize(
    "name, cls, extra",
    [
        ("sgd", torch.optim.SGD, {"momentum": 0, "nesterov": False}),
        ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        ("adagrad", torch.optim.Adagrad, {}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.9}),
        ("adam", torch.optim.Adam, {}),
        ("adamw", torch.optim.AdamW, {}),
    ],
)
def test_optimizers_by_name(name, cls, extra):
    opt = make_optimizer(nn.Linear(2, 1).parameters(), _config(optimizer=name, lr=0.01))
    assert type(opt) is cls
    for key, value in extra.items():
        assert opt.param_groups[0][key] == value


def test_l1_l2_penalties_sum_connection_weights_only():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]]))
        layer.bias.fill_(100.0)
    assert float(regularization.penalty(layer, 0.1, 0.0).detach()) == pytest.approx(0.1 * 5.5)
    assert float(regularization.penalty(layer, 0.0, 0.01).detach()) == pytest.approx(0.01 * 7.25)


def test_max_norm_holds_after_a_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    cfg = _config(optimizer="sgd", lr=5.0)
    opt = make_optimizer(model.parameters(), cfg)
    model(torch.randn(8, 20)).pow(2).sum().backward()
    opt.step()
    assert model[0].weight.norm(dim=1).max() > 1.0
    regularization.apply_max_norm(model, 1.0)
    for layer in (model[0], model[2]):
        assert layer.weight.norm(dim=1).max().item() <= 1.0 + 1e-5


def test_gradient_clipping_by_value_and_norm():
    layer = nn.Linear(4, 1, bias=False)
    layer.weight.grad = torch.tensor([[3.0, -4.0, 0.1, 0.0]])
    regularization.clip_gradients(layer, None, 1.0)
    assert layer.weight.grad.tolist() == [pytest.approx([1.0, -1.0, 0.1, 0.0])]
    layer.weight.grad = torch.tensor([[3.0, -4.0, 0.0, 0.0]])
    regularization.clip_gradients(layer, 1.0, None)
    assert layer.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-4)


def test_early_stopping_stops_after_patience_and_restores_the_best():
    model = nn.Linear(1, 1)
    stopper = regularization.EarlyStopping(patience=2)
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert not stopper.update(model, 0.5, 1)
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert not stopper.update(model, 0.6, 2)
    assert stopper.update(model, 0.7, 3)
    stopper.restore(model)
    assert model.weight.item() == 1.0 and stopper.best_epoch == 1


def test_frozen_layers_do_not_change_during_training():
    from training.fit import fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    frozen = transfer.freeze(model, ["0.", "1."])
    assert frozen == ["0.weight", "0.bias", "1.weight", "1.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    cfg = _config(optimizer="adam", lr=0.05, epochs=3, progress=False, freeze=("0.", "1."))
    fit(model, batches, cfg, lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), lambda m: {"val_loss": 0.0}, torch.device("cpu"))
    after = model.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["3.weight"], after["3.weight"])


def test_load_matching_reuses_lower_layers_and_keeps_a_new_head():
    source = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5))
    target = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    copied = transfer.load_matching(target, source.state_dict(), "source")
    assert copied == ["0.weight", "0.bias"]
    assert torch.equal(target[0].weight, source[0].weight)


def test_fit_lowers_the_loss_with_every_technique_switched_on():
    from training.fit import fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ELU(), nn.Dropout(0.1), nn.Linear(16, 1))
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    x = torch.randn(256, 3)
    y = x @ w
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    cfg = _config(
        optimizer="nesterov", lr=0.05, epochs=15, progress=False, schedule="1cycle",
        clip_norm=1.0, l2=1e-4, max_norm=3.0, early_stopping=5,
    )
    val = lambda m: {"val_loss": float(nn.functional.mse_loss(m(x), y).detach())}  # noqa: E731
    start = val(model)["val_loss"]
    history = fit(model, batches, cfg, lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), val, torch.device("cpu"))
    assert history[-1]["val_loss"] < 0.2 * start

"""Shared flags are applied or refused, never ignored; 1cycle cycles only the momentum an optimiser has."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnnzoo.errors import UserError
from training import cli as train_cli
from training.config import TrainConfig, apply_profile
from training.families import FAMILIES, NOT_APPLIED, module
from training.optim import Schedule, make_optimizer

# Every shared flag a family's training never applies (read from each family's loop, not from the table).
REFUSED = [
    ("word2vec", ["--momentum", "0.9"]),
    ("word2vec", ["--clip-norm", "1"]),
    ("word2vec", ["--clip-value", "1"]),
    ("word2vec", ["--activation", "relu"]),
    ("word2vec", ["--init", "he"]),
    ("word2vec", ["--init-distribution", "normal"]),
    ("word2vec", ["--batch-norm"]),
    ("word2vec", ["--dropout", "0.2"]),
    ("word2vec", ["--l1", "0.01"]),
    ("word2vec", ["--l2", "0.01"]),
    ("word2vec", ["--max-norm", "2"]),
    ("word2vec", ["--early-stopping", "3"]),
    ("word2vec", ["--augment"]),
    ("word2vec", ["--init-from", "somewhere"]),
    ("word2vec", ["--freeze", "input"]),
    ("gan", ["--activation", "elu"]),
    ("gan", ["--no-batch-norm"]),
    ("gan", ["--dropout", "0.2"]),
    ("gan", ["--l1", "0.01"]),
    ("gan", ["--l2", "0.01"]),
    ("gan", ["--max-norm", "2"]),
    ("gan", ["--early-stopping", "3"]),
    ("gan", ["--augment"]),
    ("sequence", ["--activation", "relu"]),
    ("sequence", ["--batch-norm"]),
    ("sequence", ["--augment"]),
    ("autoencoder", ["--augment"]),
]


def _message(capsys, argv: list[str]) -> str:
    code = train_cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("family, flags", REFUSED, ids=[f"{f}{''.join(a[:1])}" for f, a in REFUSED])
def test_a_flag_the_family_never_applies_is_refused(tmp_path, capsys, family, flags):
    out = tmp_path / "run"
    err = _message(capsys, [family, "--profile", "tiny", "--no-progress", "--out", str(out), *flags])
    assert f"{flags[0]} is not applied by the {family} family (" in err and "leave it out" in err
    assert not out.exists()


def test_the_table_lists_exactly_the_refused_flags():
    listed = {(family, field) for family, fields in NOT_APPLIED.items() for field in fields}
    refused = {(family, flags[0].removeprefix("--no-").removeprefix("--").replace("-", "_")) for family, flags in REFUSED}
    assert listed == refused


def test_a_value_equal_to_the_default_still_counts_as_given(capsys):
    assert "--l1 is not applied by the gan family" in _message(capsys, ["gan", "--l1", "0"])
    assert "--momentum is not applied by the word2vec family" in _message(capsys, ["word2vec", "--momentum", "0.9"])


def test_several_refused_flags_are_named_in_one_message(capsys):
    err = _message(capsys, ["word2vec", "--max-norm", "2", "--early-stopping", "3"])
    assert "--max-norm is not applied" in err and "--early-stopping is not applied" in err and "leave them out" in err


@pytest.mark.parametrize("family, field, value", [("gan", "l1", 0.1), ("word2vec", "max_norm", 2.0), ("sequence", "augment", True),
                                                  ("autoencoder", "augment", False), ("word2vec", "early_stopping", 3)])
def test_a_config_built_in_code_is_refused_before_any_work(tmp_path, family, field, value):
    config = TrainConfig(family=family, profile="tiny", out=tmp_path / "run", progress=False, **{field: value})
    with pytest.raises(UserError, match=f"is not applied by the {family} family"):
        module(family).train(config, module(family).Options())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_defaults_and_profiles_never_trigger_a_refusal(family, capsys):
    fam, config, options = train_cli.parse(family, [], "dnnzoo train")
    assert (config.momentum, config.l1, config.l2, config.freeze, config.init) == (0.9, 0.0, 0.0, (), "auto")
    for profile in fam.PROFILES:
        apply_profile(TrainConfig(family=family, profile=profile), fam.Options(), fam.PROFILES[profile])
    with pytest.raises(SystemExit) as exit_:
        train_cli.parse(family, ["--help"], "dnnzoo train")
    assert exit_.value.code == 0 and "--max-norm" in capsys.readouterr().out


@pytest.mark.parametrize("family", ["classifier", "detector"])
def test_families_that_apply_everything_accept_every_technique_flag(family):
    flags = ["--l1", "1e-5", "--l2", "1e-4", "--max-norm", "3", "--early-stopping", "2", "--augment", "--no-batch-norm",
             "--activation", "elu", "--init", "he", "--init-distribution", "normal", "--dropout", "0.1", "--clip-norm", "1",
             "--clip-value", "5", "--optimizer", "nesterov", "--momentum", "0.8", "--schedule", "power",
             "--schedule-steps", "100", "--schedule-power", "2", "--freeze", "stem"]
    _, config, _ = train_cli.parse(family, flags, "dnnzoo train")
    assert (config.l1, config.max_norm, config.momentum, config.schedule_power, config.freeze) == (1e-5, 3.0, 0.8, 2.0, ("stem",))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["classifier", "--momentum", "0.8"], "adamw has no such term"),  # the profile's optimiser
        (["gan", "--optimizer", "rmsprop", "--momentum", "0.8"], "rmsprop has no such term"),
        (["classifier", "--optimizer", "momentum", "--momentum", "0.8"], "not used with --schedule 1cycle"),  # the profile's schedule
        (["gan", "--schedule-steps", "100"], "--schedule-steps applies to --schedule power or exponential only"),
        (["classifier", "--schedule", "exponential", "--schedule-power", "2"], "--schedule-power applies to --schedule power only"),
        (["word2vec", "--milestones", "0.3"], "--milestones applies to --schedule piecewise only"),
    ],
)
def test_a_flag_the_chosen_optimiser_or_schedule_ignores_is_refused(capsys, argv, message):
    assert message in _message(capsys, argv)


def test_gan_refuses_the_performance_schedule_it_could_never_step(tmp_path):
    with pytest.raises(UserError, match="--schedule performance needs a validation loss"):
        module("gan").train(TrainConfig(family="gan", profile="tiny", schedule="performance", out=tmp_path / "run"), module("gan").Options())
    assert not (tmp_path / "run").exists()


def test_sequence_refuses_dropout_with_a_single_recurrent_layer(tmp_path):
    sequence = module("sequence")
    with pytest.raises(UserError, match="--num-layers 2 or more"):
        sequence.train(TrainConfig(family="sequence", profile="tiny", dropout=0.2, out=tmp_path / "run"), sequence.Options(num_layers=1))
    assert not (tmp_path / "run").exists()


# --- 1cycle and momentum ------------------------------------------------------------------------------


def _one_cycle_steps(optimizer_name: str, steps: int = 3):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    config = TrainConfig(family="t", lr=0.1, optimizer=optimizer_name, schedule="1cycle")
    optimizer = make_optimizer(model.parameters(), config)
    schedule = Schedule(optimizer, config, total_steps=100)
    group = optimizer.param_groups[0]
    first = (group.get("momentum"), group.get("betas"))
    rates = []
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.ones(4, 2)).sum().backward()
        optimizer.step()
        schedule.after_step()
        rates.append(schedule.lr)
    return optimizer, model, first, rates


@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_one_cycle_gives_no_momentum_to_an_optimiser_without_it(name):
    optimizer, model, first, rates = _one_cycle_steps(name)
    assert first[0] == 0 and optimizer.param_groups[0]["momentum"] == 0
    assert optimizer.state[model.weight].get("momentum_buffer") is None
    assert rates[0] < rates[1] < rates[2]  # the learning rate still warms up


def test_one_cycle_drives_adagrad_learning_rate_only():
    optimizer, _, first, rates = _one_cycle_steps("adagrad")
    assert first == (None, None) and "momentum" not in optimizer.param_groups[0]
    assert rates[0] < rates[1] < rates[2] <= 0.1


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_one_cycle_cycles_the_momentum_asked_for(name):
    optimizer, _, first, _ = _one_cycle_steps(name)
    now = optimizer.param_groups[0]["momentum"]
    assert first[0] == pytest.approx(0.95) and now < first[0]  # 0.95 at the start, falling while the rate warms up


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_one_cycle_keeps_adams_beta1(name):
    optimizer, _, first, _ = _one_cycle_steps(name)
    assert first[1][0] == optimizer.param_groups[0]["betas"][0] == 0.9


@pytest.mark.parametrize("name, key", [("momentum", "momentum"), ("adam", "betas")])
def test_torch_one_cycle_cycles_what_the_optimiser_has(name, key):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    config = TrainConfig(family="t", lr=0.1, optimizer=name, schedule="1cycle-torch")
    optimizer = make_optimizer(model.parameters(), config)
    schedule = Schedule(optimizer, config, total_steps=100)
    for _ in range(3):
        optimizer.step()
        schedule.after_step()
    group = optimizer.param_groups[0]
    now = group["momentum"] if key == "momentum" else group["betas"][0]
    assert now < 0.95

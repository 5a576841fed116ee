"""Resumable runs: a run killed after a round and resumed ends exactly where an uninterrupted one does;
a resume with other flags, and a second run into a used folder, are refused before anything is written."""

from __future__ import annotations

import json

import pytest
import torch

from training import checkpoint, resume
from training import cli as train_cli

# Two evaluation rounds each (training.budget), a few seconds on the CPU; fp16 also restores its gradient scaler.
RUNS = {
    "classifier": ["classifier", "--profile", "tiny", "--batch-size", "8", "--epochs", "4"],
    "classifier-fp16": ["classifier", "--profile", "tiny", "--batch-size", "8", "--epochs", "4", "--precision", "fp16"],
    "autoencoder": ["autoencoder", "--profile", "tiny", "--batch-size", "64", "--epochs", "4"],
    "sequence": ["sequence", "--profile", "tiny", "--epochs", "2", "--batch-size", "8"],
    "detector": ["detector", "--profile", "tiny", "--epochs", "2", "--batch-size", "2"],
}


class Killed(Exception):
    """Stands for the process dying right after a round's state reached the disk."""


def _train(argv: list[str]) -> None:
    assert train_cli.main([*argv, "--no-progress"]) == 0


def _killed_after(monkeypatch, rounds: int) -> None:
    saved = resume.save
    calls = []

    def save_then_die(folder, state):
        saved(folder, state)
        calls.append(state["epoch"])
        if len(calls) == rounds:
            raise Killed

    monkeypatch.setattr(resume, "save", save_then_die)


def _outcome(run) -> tuple[dict, dict]:
    metrics = json.loads((run / "metrics.json").read_text())
    final = {k: v for k, v in metrics["final"].items() if not k.endswith("seconds")}  # wall time differs, nothing else may
    return checkpoint.load(run)["state_dict"], {"history": metrics["history"], "final": final}


@pytest.mark.parametrize("case", RUNS)
def test_a_run_killed_after_a_round_and_resumed_ends_exactly_where_an_uninterrupted_one_does(tmp_path, monkeypatch, case):
    flags = RUNS[case]
    _train([*flags, "--out", str(tmp_path / "through")])
    with monkeypatch.context() as patch:
        _killed_after(patch, 1)
        with pytest.raises(Killed):
            _train([*flags, "--out", str(tmp_path / "killed")])
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert torch.load(tmp_path / "killed" / resume.STATE, weights_only=True)["finished"] is False
    _train([*flags, "--resume", str(tmp_path / "killed")])

    weights, record = _outcome(tmp_path / "through")
    resumed_weights, resumed_record = _outcome(tmp_path / "killed")
    assert len(record["history"]) >= 2
    assert weights.keys() == resumed_weights.keys()
    different = [k for k in weights if not torch.equal(weights[k], resumed_weights[k])]
    assert not different, different
    assert resumed_record == record
    scalers = [torch.load(tmp_path / name / resume.STATE, weights_only=True)["precision"] for name in ("through", "killed")]
    assert scalers[0] == scalers[1] and (scalers[0] != {}) == ("--precision" in flags)


def test_a_resume_with_other_flags_is_refused_naming_them(tmp_path, capsys):
    run = tmp_path / "run"
    _train(["classifier", "--profile", "tiny", "--steps", "4", "--out", str(run)])
    before = (run / resume.STATE).read_bytes()
    assert train_cli.main(["classifier", "--profile", "tiny", "--steps", "4", "--lr", "0.02", "--arch", "vgg", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "lr (0.01 in the run, 0.02 now)" in err and "options.arch ('resnet' in the run, 'vgg' now)" in err
    assert (run / resume.STATE).read_bytes() == before


def test_a_used_run_folder_is_refused_unless_forced(tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["classifier", "--profile", "tiny", "--steps", "4", "--no-progress", "--out", str(run)]
    _train(flags)
    first = (run / "metrics.json").read_text()
    assert train_cli.main([*flags, "--seed", "7"]) == 2
    assert f"{run} already holds a run" in capsys.readouterr().err
    assert (run / "metrics.json").read_text() == first
    _train([*flags, "--seed", "7", "--force"])
    assert json.loads((run / "metrics.json").read_text())["config"]["seed"] == 7


def test_resume_needs_a_round_state(tmp_path, capsys):
    assert train_cli.main(["classifier", "--profile", "tiny", "--resume", str(tmp_path)]) == 2
    assert f"--resume {tmp_path}: no {resume.STATE} there" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["word2vec", "gan"])
def test_families_outside_the_fit_loop_refuse_resume_saying_why(tmp_path, capsys, family):
    assert train_cli.main([family, "--profile", "tiny", "--resume", str(tmp_path)]) == 2
    assert f"--resume: not available for the {family} family (" in capsys.readouterr().err


def test_resume_and_out_naming_different_folders_is_refused(tmp_path, capsys):
    assert train_cli.main(["classifier", "--profile", "tiny", "--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    assert "name different run folders" in capsys.readouterr().err


def test_the_sequence_family_refuses_several_processes_saying_why(tmp_path, capsys):
    assert train_cli.main(["sequence", "--profile", "tiny", "--nproc", "2", "--out", str(tmp_path / "run")]) == 2
    assert "model.forecasts, which DistributedDataParallel does not synchronise" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

"""An interrupted `dnnzoo build` picks up where it stopped: a finished family is not trained again, the
family it was killed in continues from its last round, and --force retrains a finished family."""

from __future__ import annotations

import json

import pytest
import torch

from dnnzoo.errors import UserError
from export.build import build
from training import resume


class Killed(Exception):
    """Stands for the build's process dying right after a round's state reached the disk."""


def _build(runs, repository, monkeypatch, kill_in: str, force: bool = False) -> tuple[list[tuple[str, int]], list[str]]:
    """A tiny build that dies after `kill_in`'s first round; returns the rounds it saved and what it said."""
    saved, said = [], []
    real = resume.save

    def save(folder, state):
        real(folder, state)
        saved.append((state["family"], state["epoch"]))
        if state["family"] == kill_in:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(resume, "save", save)
        with pytest.raises(Killed):
            build("tiny", repository, runs, 17, force, "auto", False, out=said.append)
    return saved, said


def _stamps(run) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(run.iterdir())}


def test_a_build_killed_mid_family_keeps_the_finished_family_continues_the_killed_one_and_force_retrains(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    runs, repository = tmp_path / "runs", tmp_path / "repository"
    classifier, autoencoder = runs / "classifier-tiny", runs / "autoencoder-tiny"

    # 1. killed after the autoencoder's round (the tiny profile's only one) reached the disk, before its
    #    checkpoint and metrics: the classifier before it finished and was exported
    saved, _ = _build(runs, repository, monkeypatch, kill_in="autoencoder")
    assert resume.finished(classifier) and (repository / "digits_classifier" / "1").is_dir()
    assert not resume.finished(autoencoder)
    killed = torch.load(autoencoder / resume.STATE, weights_only=True)
    assert (killed["finished"], len(killed["history"])) == (True, 1)
    assert saved[-1] == ("autoencoder", killed["epoch"])
    before = _stamps(classifier)

    # 2. built again (and killed at the next family): the classifier untouched, the autoencoder continued
    #    from its round state (starting over would have trained and saved that round again)
    saved, said = _build(runs, repository, monkeypatch, kill_in="detector")
    assert _stamps(classifier) == before  # not retrained, not a file of its run folder rewritten
    assert [family for family, _ in saved] == ["detector"]
    assert f"autoencoder: continuing the interrupted run in {autoencoder} from its last round" in said
    assert "digits_classifier: up to date" in " ".join(said)
    rows = [json.loads(json.dumps(row)) for row in killed["history"]]
    history = json.loads((autoencoder / resume.METRICS).read_text())["history"]
    assert [(h["step"], h["loss"], h["val_loss"]) for h in history] == [(h["step"], h["loss"], h["val_loss"]) for h in rows]
    assert resume.finished(autoencoder) and (repository / "digits_autoencoder" / "1").is_dir()

    # 3. --force: the finished classifier trains again, its finish mark dropped as its new run starts
    saved, _ = _build(runs, repository, monkeypatch, kill_in="classifier", force=True)
    assert [family for family, _ in saved] == ["classifier"]
    assert not resume.finished(classifier)


def test_a_build_refuses_to_continue_a_run_started_with_other_settings(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    from training import cli as train_cli

    runs = tmp_path / "runs"
    run = runs / "classifier-tiny"
    with monkeypatch.context() as patch:
        real = resume.save

        def save_then_die(folder, state):
            real(folder, state)
            raise Killed

        patch.setattr(resume, "save", save_then_die)
        with pytest.raises(Killed):
            train_cli.main(["classifier", "--profile", "tiny", "--lr", "0.02", "--no-progress", "--out", str(run)])
    with pytest.raises(UserError) as refused:
        build("tiny", tmp_path / "repository", runs, 17, False, "auto", False, out=lambda _: None)
    assert f"{run} holds an unfinished classifier run started with other settings (differing: lr (0.02 in the run, 0.01 now))" in str(refused.value)
    assert not (tmp_path / "repository").exists()

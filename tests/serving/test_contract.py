"""One table decides: a model folder that lacks what its task requires fails `dnnzoo repo check` with
the reason, and the real server refuses the same folder's typed service with the same reason.

The folders are copies of the tiny exported repository's models with one required parameter taken
away (or made unreadable), so every other part of them is what export really writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from protos import config_text, contract

from dnnzoo import cli
from export.check import check_repository
from serving.client import Client
from serving.repository import Repository
from tests.serving.conftest import server_config, start_server

# (copy name, the exported model it copies, the parameter changed, its new value or None to drop it)
BROKEN = [
    ("gan_no_latent", "digits_gan", contract.LATENT_SIZE, None),
    ("detector_no_classes", "digits_detector", contract.CLASSES, None),
    ("detector_bad_iou", "digits_detector", contract.IOU_THRESHOLD, "tight"),
]


def _copy(source: Path, target: Path, key: str, value: str | None) -> None:
    shutil.copytree(source, target)
    path = target / contract.CONFIG_FILE
    config = config_text.parse_config(path.read_text(encoding="utf-8"))
    config.name = target.name
    if value is None:
        del config.parameters[key]
    else:
        config.parameters[key].string_value = value
    path.write_text(config_text.format_config(config), encoding="utf-8")


def _problem(source: Path, key: str, value: str | None) -> str:
    """What the task table says about the changed parameter: the expected reason in both places."""
    config = config_text.parse_config((source / contract.CONFIG_FILE).read_text(encoding="utf-8"))
    parameters = contract.parameters_of(config)
    parameters.pop(key) if value is None else parameters.update({key: value})
    (problem,) = contract.task_problems(parameters[contract.TASK], parameters)
    assert key in problem
    return problem


@pytest.fixture(scope="module")
def broken(tiny_exported, tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("contract") / "repository"
    repository.mkdir()
    for name, source, key, value in BROKEN:
        _copy(tiny_exported.repository / source, repository / name, key, value)
    return repository


def test_the_intact_exports_meet_the_task_table(tiny_exported):
    for name in Repository(tiny_exported.repository).scan():
        config = config_text.parse_config((tiny_exported.repository / name / contract.CONFIG_FILE).read_text(encoding="utf-8"))
        parameters = contract.parameters_of(config)
        assert parameters[contract.TASK] in contract.TASKS
        assert contract.task_problems(parameters[contract.TASK], parameters) == [], name


def test_every_required_parameter_is_missed_when_absent():
    for task in contract.TASKS.values():
        for key in task.requires:
            problems = contract.task_problems(task.name, {})
            assert any(repr(key) in p for p in problems), (task.name, key)


def test_repo_check_names_what_the_task_lacks(broken, tiny_exported, capsys):
    results = {r.name: r for r in check_repository(broken)}
    for name, source, key, value in BROKEN:
        assert not results[name].ok
        assert _problem(tiny_exported.repository / source, key, value) in results[name].problems
    assert cli.main(["repo", "check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  gan_no_latent: a 'generation' model needs the parameter {contract.LATENT_SIZE!r}" in out


def test_the_server_refuses_the_same_folders_for_the_same_reason(broken, tiny_exported):
    running = start_server(server_config(broken, providers="cpu"))
    try:
        with Client(running.address, timeout=30) as client:
            calls = {
                "gan_no_latent": lambda: client.generate("gan_no_latent", 1, seed=1),
                "detector_no_classes": lambda: client.detect("detector_no_classes", []),
                "detector_bad_iou": lambda: client.detect("detector_bad_iou", []),
            }
            for name, source, key, value in BROKEN:
                with pytest.raises(grpc.RpcError) as caught:
                    calls[name]()
                assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
                assert _problem(tiny_exported.repository / source, key, value) in caught.value.details()
    finally:
        running.stop()


def test_a_name_export_refuses_is_a_folder_serving_skips_and_repo_check_reports(tiny_exported, tmp_path):
    shutil.copytree(tiny_exported.repository / "digits_gan", tmp_path / "-gan")
    assert Repository(tmp_path).scan() == []
    (result,) = check_repository(tmp_path)
    assert any("serving skips this folder" in p for p in result.problems)

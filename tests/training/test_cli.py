"""`dnnzoo train` as a user meets it: clear one-line errors, no tracebacks, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnnzoo", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands_without_importing_torch():
    code = "import sys; from dnnzoo import cli; cli.main(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "train" in out and "serve" in out
    assert out.strip().endswith("False")


def test_unknown_command_and_family_are_named():
    result = _run("trian")
    assert result.returncode == 2 and "unknown command 'trian'" in result.stderr
    result = _run("train", "resnet")
    assert result.returncode == 2
    assert "unknown family 'resnet'" in result.stderr and "classifier" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_flag_value_is_rejected_by_the_parser():
    result = _run("train", "classifier", "--optimizer", "adamax")
    assert result.returncode == 2
    assert "invalid choice: 'adamax'" in result.stderr and "Traceback" not in result.stderr


def test_missing_data_is_one_clear_message(tmp_path):
    result = _run("train", "classifier", "--profile", "tiny", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr and "Traceback" not in result.stderr


def test_checkpoint_of_another_family_cannot_initialise(tmp_path):
    import torch

    from training import checkpoint

    checkpoint.save(tmp_path, "word2vec", {"dim": 4}, {"w": torch.zeros(2)})
    result = _run("train", "classifier", "--profile", "tiny", "--init-from", str(tmp_path), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "word2vec checkpoint cannot initialise" in result.stderr and "Traceback" not in result.stderr


def test_a_pickle_that_is_not_weights_only_is_refused(tmp_path):
    import pickle

    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(pickle.dumps(subprocess.Popen))  # a global weights_only must refuse
    result = _run("train", "classifier", "--profile", "tiny", "--init-from", str(bad), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "weights_only=True" in result.stderr and "Traceback" not in result.stderr


def test_importing_the_stages_changes_no_environment_and_the_family_table_loads_no_torch():
    code = (
        "import os, sys; before = dict(os.environ);"
        "import training, training.families, training.config, export.families, export.build;"
        "from training.families import BUILD_ORDER, FAMILIES, graphs, module;"
        "assert set(BUILD_ORDER) == set(FAMILIES) and BUILD_ORDER.index('classifier') < BUILD_ORDER.index('gan');"
        "print(dict(os.environ) == before, 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split() == ["True", "False"], out.stderr

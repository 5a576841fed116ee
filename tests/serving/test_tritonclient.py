"""Triton's own client (tritonclient[grpc]) against our server, for every model in the repository."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.builders import HEALTHY

# Only look for it: importing tritonclient here would clash with our protos in this process.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None, reason="tritonclient not installed")
ROOT = Path(__file__).resolve().parents[2]


def test_tritonclient_drives_every_model(served):
    script = Path(__file__).with_name("tritonclient_check.py")
    result = subprocess.run(
        [sys.executable, str(script), served.address], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["live"] and summary["ready"] and "statistics" in summary["extensions"]
    assert set(summary["models"]) == set(HEALTHY)
    for name, model in summary["models"].items():
        assert model["ready"] and model["config_name"] == name
        assert model["stream_error"] is None
        assert model["outputs"] == model["stream_outputs"]
        assert model["success"] >= 2, name
    assert summary["models"]["doubler"]["outputs"] == {"y": [8, 4], "probabilities": [8, 4]}
    assert summary["models"]["fixed"]["outputs"] == {"tripled": [2, 2]}

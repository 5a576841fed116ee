"""The README's first client commands, run exactly as written (taken from the README itself, so the
test breaks when the README drifts) against the real server on the tiny repository."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "Then, from another terminal"


def quickstart_commands() -> list[list[str]]:
    """The `dnnzoo …` lines of the first bash block after MARKER, comments dropped."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER):], re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_quickstart_block_runs_verbatim(task_server, tmp_path):
    commands = quickstart_commands()
    assert commands and all(c[0] == "dnnzoo" for c in commands), commands
    env = {**os.environ, "DNNZOO_SERVER": task_server.address,
           "PYTHONPATH": os.pathsep.join([str(README.parent), os.environ.get("PYTHONPATH", "")])}
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "dnnzoo", *command[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{shlex.join(command)}: {done.stderr[-2000:]}"
        assert done.stdout.strip(), shlex.join(command)
    written = [arg for c in commands for flag, arg in zip(c, c[1:]) if flag in ("--draw", "--plot", "--out")]
    assert written, "the block writes no picture"
    for name in written:  # every picture the block promises exists and is not blank
        assert np.asarray(Image.open(tmp_path / name)).std() > 0, name


def test_samples_are_the_same_every_time(tmp_path):
    from training.samples import write_samples

    first = write_samples(tmp_path / "a")
    second = write_samples(tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert Image.open(tmp_path / "a" / "digit.png").size == (112, 112)
    assert Image.open(tmp_path / "a" / "scene.png").size == (256, 256)
    assert (tmp_path / "a" / "series.csv").read_text().splitlines()[0] == "step,value"


@pytest.mark.slow
def test_the_quickstart_answers_what_its_comments_say_on_quick_models(quick_build, tmp_path):
    """On quick-profile models the sample digit is read as the digit it is, and the analogy in the
    README answers the word its comment names."""
    from tests.serving.conftest import server_config, start_server
    from training.samples import DIGIT_SHOWN, write_samples

    write_samples(tmp_path)
    analogy = next(c for c in quickstart_commands() if c[1] == "similar" and "--minus" in c)
    line = next(line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(shlex.join(analogy)))
    promised = re.search(r"\((\w+)\)\s*$", line).group(1)
    running = start_server(server_config(quick_build.repository, providers="cpu"))
    try:
        env = {**os.environ, "DNNZOO_SERVER": running.address,
               "PYTHONPATH": os.pathsep.join([str(README.parent), os.environ.get("PYTHONPATH", "")])}

        def run(*args: str):
            done = subprocess.run([sys.executable, "-m", "dnnzoo", *args, "--json"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
            return json.loads(done.stdout)

        assert run("classify", "digit.png")[0]["classes"][0]["label"] == str(DIGIT_SHOWN)
        assert run(*analogy[1:])[0]["word"] == promised
    finally:
        running.stop()

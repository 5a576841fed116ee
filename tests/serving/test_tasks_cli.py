"""The client subcommands as a person runs them: `python -m dnnzoo …` in a subprocess, against the
real server on the tiny repository; tables by default, JSON with --json, pictures written with Pillow."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def dnnzoo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dnnzoo", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def server(task_server) -> str:
    return task_server.address


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    from training.data import images

    path = tmp_path_factory.mktemp("cli") / "digit.png"
    Image.fromarray(images.digits().images[7, 0]).resize((56, 56)).save(path)
    return path


def test_classify(server, digit, task_client):
    data = json.loads(dnnzoo("classify", str(digit), str(digit), "--top-k", "3", "--server", server, "--json").stdout)
    expected = task_client.classify("digits_classifier", [digit.read_bytes()], top_k=3).results[0]
    assert len(data) == 2 and [c["label"] for c in data[0]["classes"]] == [c.label for c in expected.classes]
    table = dnnzoo("classify", str(digit), "--server", server).stdout
    assert table.splitlines()[0].split() == ["image", "rank", "label", "class", "score"] and len(table.splitlines()) == 2 + 5


def test_classify_errors_exit_non_zero(server, digit, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    done = dnnzoo("classify", str(digit), str(junk), "--server", server, check=False)
    assert done.returncode == 1 and "INVALID_ARGUMENT" in done.stderr and "image 1" in done.stderr
    done = dnnzoo("classify", str(tmp_path / "missing.png"), "--server", server, check=False)
    assert done.returncode == 2 and "missing.png" in done.stderr


def test_detect_draws_boxes(server, tmp_path, task_client):
    from serving.commands import drawing
    from training.data import images, scenes

    scene = scenes.generate(scenes.make_bank(images.digits(), 14, 32), 1, seed=11, canvas=64).images[0, 0]
    source, drawn = tmp_path / "scene.png", tmp_path / "boxes.png"
    Image.fromarray(scene).save(source)
    done = dnnzoo("detect", str(source), "--server", server, "--draw", str(drawn), "--json")
    data = json.loads(done.stdout)  # one JSON document: the note about the picture is on stderr
    assert done.stderr.strip() == f"wrote {drawn}"
    expected = task_client.detect("digits_detector", [source.read_bytes()]).results[0].detections
    assert [d["label"] for d in data[0]["detections"]] == [d.label for d in expected]
    assert expected, "the tiny detector finds nothing in this scene: nothing would be drawn"
    picture = Image.open(drawn)
    assert picture.size == (64, 64) and picture.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(picture), np.asarray(drawing.boxes(source.read_bytes(), expected)))
    assert not np.array_equal(np.asarray(picture.convert("L")), scene)  # the boxes changed the picture


def test_similar(server, task_client):
    data = json.loads(dnnzoo("similar", "keys", "value", "--minus", "key", "--top-k", "4", "--server", server, "--json").stdout)
    expected = task_client.most_similar("pydoc_word2vec", ["keys", "value"], ["key"], top_k=4).neighbors
    assert [n["word"] for n in data] == [n.word for n in expected]
    done = dnnzoo("similar", "xyzzy", "--server", server, check=False)
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr and "xyzzy" in done.stderr


def test_forecast_values_csv_and_plot(server, tmp_path, task_client):
    values = np.sin(np.linspace(0, 3, 30)).round(4).tolist()
    text = ",".join(str(v) for v in values)
    data = json.loads(dnnzoo("forecast", "--values", text, "--horizon", "12", "--server", server, "--json").stdout)
    expected = task_client.forecast("waves_sequence", [values], horizon=12)
    np.testing.assert_allclose(data["forecast"], expected.forecasts[0].values, rtol=1e-6)
    assert data["fed_back"] is True
    csv_file, plot = tmp_path / "series.csv", tmp_path / "plot.png"
    csv_file.write_text("t,level\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    done = dnnzoo("forecast", "--csv", str(csv_file), "--column", "level", "--plot", str(plot), "--server", server)
    table = done.stdout
    assert done.stderr.strip() == f"wrote {plot}"
    assert len([line for line in table.splitlines() if line.startswith("t+")]) == 10
    assert Image.open(plot).size == (800, 400)
    done = dnnzoo("forecast", "--csv", str(csv_file), "--column", "nope", "--server", server, check=False)
    assert done.returncode == 2 and "no column 'nope'" in done.stderr


def test_generate_grid(server, tmp_path, task_client):
    out = tmp_path / "grid.png"
    data = json.loads(dnnzoo("generate", "--count", "4", "--seed", "9", "--out", str(out), "--scale", "1", "--server", server, "--json").stdout)
    assert data == {"images": 4, "seed": 9, "out": str(out)}
    grid = np.asarray(Image.open(out))
    first = np.asarray(Image.open(io.BytesIO(task_client.generate("digits_gan", 4, seed=9).images[0].png)))
    np.testing.assert_array_equal(grid[2:30, 2:30], first)  # 2-pixel padding, scale 1
    done = dnnzoo("generate", "--count", "65", "--out", str(out), "--server", server, check=False)
    assert done.returncode == 1 and "cap is 64 (--max-generate-count)" in done.stderr


def test_health(server):
    assert dnnzoo("health", "--server", server).stdout.strip() == "SERVING"
    assert dnnzoo("health", "--server", server, "--service", "dnnzoo.v1.WordVectors").returncode == 0
    assert dnnzoo("health", "--server", server, "--service", "nothing.Here", check=False).returncode == 1
    assert dnnzoo("health", "--server", "127.0.0.1:1", "--timeout", "1", check=False).returncode == 1


def test_client_commands_do_not_import_torch(server, digit):
    code = (
        "import sys; from dnnzoo.cli import main; "
        f"rc = main(['classify', {str(digit)!r}, '--server', {server!r}, '--json']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

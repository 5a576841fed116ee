"""What export refuses, and how it writes: names, overwrites, staging, bad runs, failed parity."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from protos import contract

from dnnzoo import cli
from dnnzoo.errors import UserError
from export import parity, repository
from export.pipeline import Source, export_run, export_specs
from export.spec import ExportSpec, TensorSpec
from training import checkpoint


def _export(argv, capsys):
    code = cli.main(["export", *map(str, argv)])
    return code, capsys.readouterr()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "", "sp ace", "x\\y", "naïve", "-flag"])
def test_bad_model_names_are_refused(name):
    with pytest.raises(UserError, match="invalid model name"):
        repository.check_name(name)


@pytest.mark.parametrize("name", ["digits_classifier", "m-1.2", "A9"])
def test_good_model_names(name):
    assert repository.check_name(name) == name


def test_cli_refuses_a_bad_name_and_writes_nothing(run_of, tmp_path, capsys):
    code, out = _export([run_of("gan"), "--repository", tmp_path / "repo", "--name", "../escape"], capsys)
    assert code == 2 and "invalid model name" in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "escape").exists() and not (tmp_path / "repo").exists()


def test_next_version_then_no_overwrite_without_force(run_of, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert _export([run_of("gan"), "--repository", repo, "--name", "g"], capsys)[0] == 0
    assert _export([run_of("gan"), "--repository", repo, "--name", "g"], capsys)[0] == 0
    assert contract.versions(repo / "g") == [1, 2]
    before = (repo / "g" / "1" / "model.onnx").stat().st_mtime_ns
    code, out = _export([run_of("gan"), "--repository", repo, "--name", "g", "--version", "1"], capsys)
    assert code == 2 and "--force" in out.err
    assert (repo / "g" / "1" / "model.onnx").stat().st_mtime_ns == before
    code, _ = _export([run_of("gan"), "--repository", repo, "--name", "g", "--version", "1", "--force"], capsys)
    assert code == 0 and contract.versions(repo / "g") == [1, 2]
    assert (repo / "g" / "1" / "model.onnx").stat().st_mtime_ns != before
    assert [p.name for p in repo.iterdir()] == ["g"], "no staging folders left behind"


def test_companions_share_the_version_and_are_refused_together(run_of, tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "w_neighbors" / "1").mkdir(parents=True)  # only the companion has a version 1
    code, out = _export([run_of("word2vec"), "--repository", repo, "--name", "w", "--version", "1"], capsys)
    assert code == 2 and "w_neighbors" in out.err
    assert not (repo / "w").exists(), "the main model is not written when a companion is refused"
    assert _export([run_of("word2vec"), "--repository", repo, "--name", "w"], capsys)[0] == 0
    assert contract.versions(repo / "w") == [2] and contract.versions(repo / "w_neighbors") == [1, 2]


def test_write_stages_beside_the_target_and_renames(tmp_path):
    repo = tmp_path / "repo"
    first = repository.ModelFolder("m", 1, "name: \"m\"\n", b"one", {"labels.txt": b"a\n"})
    repository.write(repo, first)
    inode = (repo / "m" / "1" / "model.onnx").stat().st_ino
    repository.write(repo, repository.ModelFolder("m", 2, "name: \"m\"\n# v2\n", b"two", {"labels.txt": b"b\n"}))
    assert (repo / "m" / "1" / "model.onnx").read_bytes() == b"one"
    assert (repo / "m" / "1" / "model.onnx").stat().st_ino == inode, "kept versions are hard links, not copies"
    assert (repo / "m" / "2" / "model.onnx").read_bytes() == b"two"
    assert (repo / "m" / "labels.txt").read_bytes() == b"b\n"
    assert sorted(p.name for p in repo.iterdir()) == ["m"]


def test_a_failed_write_leaves_the_live_model_and_no_staging(tmp_path):
    repo = tmp_path / "repo"
    repository.write(repo, repository.ModelFolder("m", 1, "v1", b"one"))
    broken = repository.ModelFolder("m", 2, "v2", b"two", {"sub/labels.txt": b"x"})  # parent folder missing: fails mid-staging
    with pytest.raises(FileNotFoundError):
        repository.write(repo, broken)
    assert sorted(p.name for p in repo.iterdir()) == ["m"]
    assert contract.versions(repo / "m") == [1] and (repo / "m" / "config.pbtxt").read_text() == "v1"


def test_unknown_family_is_one_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    checkpoint.save(run, "transformer", {}, {"w": torch.zeros(1)})
    (run / "metrics.json").write_text("{}")
    code, out = _export([run, "--repository", tmp_path / "repo"], capsys)
    assert code == 2 and "family 'transformer'" in out.err
    assert not (tmp_path / "repo").exists()


class _NotAllowed:
    """Any class: a pickle that needs it cannot load with weights_only=True."""


def test_a_pickle_checkpoint_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": 1, "family": "gan", "payload": _NotAllowed()}, run / "checkpoint.pt")
    code, out = _export([run, "--repository", tmp_path / "repo"], capsys)
    assert code == 2 and "weights_only=True" in out.err
    assert not (tmp_path / "repo").exists()


def test_a_checkpoint_without_its_labels_is_refused(run_of, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_of("classifier"), run)
    ckpt = checkpoint.load(run)
    del ckpt["extra"]["labels"]
    checkpoint.save(run, "classifier", ckpt["model_args"], ckpt["state_dict"], ckpt["extra"])
    code, out = _export([run, "--repository", tmp_path / "repo"], capsys)
    assert code == 2 and "labels" in out.err
    assert not (tmp_path / "repo").exists()


def test_a_run_without_metrics_is_refused(run_of, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_of("gan"), run)
    (run / "metrics.json").unlink()
    code, out = _export([run, "--repository", tmp_path / "repo"], capsys)
    assert code == 2 and "metrics.json" in out.err


def test_parity_reports_the_largest_difference_and_where():
    case = {"x": np.zeros((2, 3), np.float32)}
    good = lambda c: {"y": np.zeros((2, 3), np.float32)}  # noqa: E731
    bad_values = np.zeros((2, 3), np.float32)
    bad_values[1, 2], bad_values[0, 0] = 0.5, 1e-3
    bad = lambda c: {"y": bad_values}  # noqa: E731
    assert parity.check("m", good, good, [case]).max_abs_diff == 0.0
    with pytest.raises(parity.ParityError, match=r"'y' differs by 0\.5 at index \(1, 2\)"):
        parity.check("m", good, bad, [case])
    ok = bad_values.copy()
    ok[:] = 5e-5
    assert parity.check("m", good, lambda c: {"y": ok}, [case]).max_abs_diff == pytest.approx(5e-5)


def test_a_family_comparator_reports_its_largest_difference_too():
    """The tabular comparator judges regression values in units of the target's std, but the figure
    recorded in the config is in the target's own units."""
    from export.graphs import tabular

    case = {"x": np.zeros((2, 1), np.float32)}
    want = lambda c: {"value": np.array([[4000.0], [3000.0]], np.float32)}  # noqa: E731
    got = lambda c: {"value": np.array([[4000.0], [3000.02]], np.float32)}  # noqa: E731
    report = parity.check("m", want, got, [case], tabular.comparator(800.0))
    assert report.max_abs_diff == pytest.approx(0.02, rel=1e-2)
    with pytest.raises(parity.ParityError, match="'value' differs"):
        parity.check("m", want, lambda c: {"value": np.array([[4000.0], [3001.0]], np.float32)}, [case], tabular.comparator(800.0))


def _tiny_spec(reference=None) -> ExportSpec:
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(-1)).eval()
    return ExportSpec(
        suffix="", module=module, max_batch_size=8,
        inputs=[TensorSpec("x", np.float32, (3,))], outputs=[TensorSpec("y", np.float32, (2,))],
        samples=lambda n: {"x": np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)},
        reference=reference,
    )  # fmt: skip


def test_failed_parity_writes_nothing(tmp_path):
    source = Source("test", tmp_path, {}, "0" * 64)
    wrong = lambda case: {"y": np.full((len(case["x"]), 2), 0.5, np.float32)}  # noqa: E731
    with pytest.raises(parity.ParityError, match="nothing written"):
        export_specs([_tiny_spec(wrong)], source, tmp_path / "repo", "tiny")
    assert not (tmp_path / "repo").exists()
    written = export_specs([_tiny_spec()], source, tmp_path / "repo", "tiny")
    assert written[0].path.is_file()


def test_a_module_in_training_mode_is_not_exported(tmp_path):
    spec = _tiny_spec()
    spec.module.train()
    with pytest.raises(UserError, match="eval mode"):
        export_specs([spec], Source("test", tmp_path, {}, "0" * 64), tmp_path / "repo", "tiny")


def test_export_run_rejects_a_missing_run(tmp_path):
    with pytest.raises(UserError, match="no run folder"):
        export_run(tmp_path / "absent", tmp_path / "repo")


def test_repo_check_finds_problems(built, tmp_path, capsys):
    repo = tmp_path / "repo"
    for name in ("digits_classifier", "digits_gan", "pydoc_word2vec", "pydoc_word2vec_neighbors", "waves_sequence"):
        shutil.copytree(built.repository / name, repo / name)
    (repo / "digits_classifier" / "labels.txt").unlink()
    config = repo / "digits_gan" / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [8]", "dims: [9]"))
    shutil.rmtree(repo / "pydoc_word2vec_neighbors")
    (repo / "waves_sequence" / "config.pbtxt").write_text('name: "other"\nplatform: "onnxruntime_onnx"\nunknown_field: 1\n')
    assert cli.main(["repo", "check", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  digits_classifier: side file 'labels.txt' is missing" in out
    assert "FAIL  digits_gan:" in out and "dimension 1 is 8 in the graph but 9 in the config" in out
    assert "companion model 'pydoc_word2vec_neighbors' is not in the repository" in out
    assert "FAIL  waves_sequence:" in out and "unknown_field" in out


def test_repo_check_on_a_missing_folder(tmp_path, capsys):
    assert cli.main(["repo", "check", str(tmp_path / "nothing")]) == 2
    assert "no model repository" in capsys.readouterr().err

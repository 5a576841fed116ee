"""A model and its companions are written as one set and carry the same fingerprints.

The set is staged complete before any folder moves; a failure while staging or while swapping
leaves the old set as it was. Word2vec runs here are built directly from a small checkpoint, so
these tests need no training.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from protos import config_text, contract

from dnnzoo import cli
from export import repository
from export.pipeline import export_run
from training import checkpoint, word2vec


def _set(version: int, tag: str, names=("m", "m_c")) -> list[repository.ModelFolder]:
    return [repository.ModelFolder(n, version, f"{n} {tag}\n", f"{n} {tag}".encode(), {"vocab.txt": tag.encode()}) for n in names]


def _state(repo: Path) -> dict[str, object]:
    """Every file under the repository with its bytes: what a reader could see."""
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}


def test_a_set_is_swapped_in_whole_and_the_old_folders_are_removed(tmp_path):
    repo = tmp_path / "repo"
    repository.write_all(repo, _set(1, "old"))
    kept = (repo / "m" / "1" / "model.onnx").stat().st_ino
    paths = repository.write_all(repo, _set(2, "new"))
    assert paths == [repo / "m" / "2" / "model.onnx", repo / "m_c" / "2" / "model.onnx"]
    for name in ("m", "m_c"):
        assert (repo / name / "config.pbtxt").read_text() == f"{name} new\n"
        assert (repo / name / "vocab.txt").read_bytes() == b"new"
        assert contract.versions(repo / name) == [1, 2]
    assert (repo / "m" / "1" / "model.onnx").stat().st_ino == kept
    assert sorted(p.name for p in repo.iterdir()) == ["m", "m_c"], "no staged or replaced folders left"


def test_one_folder_that_cannot_be_written_leaves_the_old_set(tmp_path):
    repo = tmp_path / "repo"
    repository.write_all(repo, _set(1, "old"))
    before = _state(repo)
    broken = _set(2, "new")
    broken[1].side_files["sub/extra.txt"] = b"x"  # its parent folder does not exist: the companion's staging fails
    with pytest.raises(FileNotFoundError):
        repository.write_all(repo, broken)
    assert _state(repo) == before
    assert sorted(p.name for p in repo.iterdir()) == ["m", "m_c"]


@pytest.mark.parametrize("existing", [("m", "m_c"), ("m",), ()], ids=["both-exist", "new-companion", "new-set"])
def test_a_failure_while_swapping_puts_the_old_set_back(tmp_path, existing):
    repo = tmp_path / "repo"
    repo.mkdir()
    if existing:
        repository.write_all(repo, _set(1, "old", existing))
    before = _state(repo)
    staged = repository.stage(repo, _set(2, "new"))
    assert sorted(p.name for p in repo.iterdir() if p.name.startswith(".")) == sorted(p.name for p in staged.stages)
    assert _state(repo) != before and {k for k in _state(repo) if not k.startswith(".")} == set(before)
    shutil.rmtree(staged.stages[1])  # the companion's staged folder vanishes: its rename fails after the main's
    with pytest.raises(FileNotFoundError):
        staged.swap()
    assert _state(repo) == before
    assert sorted(p.name for p in repo.iterdir()) == sorted(existing)


def test_a_set_names_each_folder_once(tmp_path):
    with pytest.raises(ValueError, match="named twice"):
        repository.write_all(tmp_path, _set(1, "a", ("m", "m")))


# -- word2vec: one vocabulary hash, one export id ---------------------------------------------------


def _word2vec_run(root: Path, words: list[str], seed: int = 0) -> Path:
    """A finished word2vec run folder with random vectors: all export needs, no training."""
    torch.manual_seed(seed)
    model = word2vec.build_model(vocab_size=len(words), dim=4)
    extra = {"vocab": words, "lowercase": True, "unicode_normalisation": "NFKC", "token_pattern": r"\w+"}
    root.mkdir(parents=True)
    checkpoint.save(root, "word2vec", {"vocab_size": len(words), "dim": 4}, model.state_dict(), extra)
    (root / "metrics.json").write_text(json.dumps({"final": {}, "profile": "test"}))
    return root


def _params(repo: Path, name: str) -> dict[str, str]:
    config = config_text.parse_config((repo / name / "config.pbtxt").read_text(encoding="utf-8"), source=name)
    return {k: v.string_value for k, v in config.parameters.items()}


WORDS = ["the", "king", "queen", "man", "woman", "child"]


def test_word2vec_and_its_neighbors_share_the_vocabulary_hash_and_export_id(tmp_path):
    repo = tmp_path / "repo"
    export_run(_word2vec_run(tmp_path / "run", WORDS), repo, "w")
    main, neighbours = _params(repo, "w"), _params(repo, "w_neighbors")
    expected = hashlib.sha256((repo / "w" / "vocab.txt").read_bytes()).hexdigest()[:16]
    assert main["dnnzoo.vocab_hash"] == neighbours["dnnzoo.vocab_hash"] == expected
    assert main["dnnzoo.export_id"] == neighbours["dnnzoo.export_id"]
    assert len(main["dnnzoo.export_id"]) == 16
    assert main["dnnzoo.input.ids.range"] == f"0,{len(WORDS) - 1}"

    export_run(_word2vec_run(tmp_path / "run2", WORDS[:-1] + ["prince"], seed=1), repo, "w")
    again, again_neighbours = _params(repo, "w"), _params(repo, "w_neighbors")
    assert again["dnnzoo.vocab_hash"] == again_neighbours["dnnzoo.vocab_hash"] != main["dnnzoo.vocab_hash"]
    assert again["dnnzoo.export_id"] == again_neighbours["dnnzoo.export_id"] != main["dnnzoo.export_id"]
    assert again["dnnzoo.input.ids.range"] == f"0,{len(WORDS) - 1}"


def test_repo_check_finds_a_companion_from_another_export(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    export_run(_word2vec_run(tmp_path / "run", WORDS), first, "w")
    export_run(_word2vec_run(tmp_path / "run2", list(reversed(WORDS)), seed=1), second, "w")
    assert cli.main(["repo", "check", str(first)]) == 0
    capsys.readouterr()
    shutil.rmtree(first / "w_neighbors")
    shutil.copytree(second / "w_neighbors", first / "w_neighbors")
    assert cli.main(["repo", "check", str(first)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  w: companion model 'w_neighbors' comes from another export (dnnzoo.vocab_hash " in out
    assert "re-export both" in out

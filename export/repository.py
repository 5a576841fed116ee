"""Writing model folders into a repository so that a watching server never sees half a model, nor
half of a model's set (a main model beside a companion from another export).

Every folder of an export (a main model and its companions such as `NAME_neighbors`) is staged
complete (config.pbtxt, side files, every version) in a hidden folder beside its target,
`.NAME.tmp-XXXX`, before any is moved. Then each is moved into place with one rename; when the model
already exists, the staged folder and the live one are swapped atomically (Linux `renameat2` with
RENAME_EXCHANGE, two renames elsewhere). The replaced folders stay aside, hidden, until every new one
is in place, and are put back if a later move fails, so a failure leaves the old set as it was and a
reader sees a mixed set only for as long as the renames take. Versions that are kept are hard links,
so staging costs no copy. Servers ignore folders whose names start with ".".
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from protos import contract

from dnnzoo.errors import UserError


def check_name(name: str) -> str:
    """The contract's model-name rule, so that export never writes a folder serving would skip."""
    if not contract.is_model_name(name or ""):
        raise UserError(f"invalid model name {name!r}: use {contract.MODEL_NAME_RULE}")
    return name


def next_version(repository: Path, names: list[str]) -> int:
    """One past the highest version of any of `names`, so a model and its companions stay aligned."""
    return max((v for name in names for v in contract.versions(repository / name)), default=0) + 1


@dataclass
class ModelFolder:
    """The files of one model version to be written: config.pbtxt text, ONNX bytes, side files."""

    name: str
    version: int
    config: str
    onnx: bytes
    side_files: dict[str, bytes] = field(default_factory=dict)

    def target(self, repository: Path) -> Path:
        return repository / self.name


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stage(folder: ModelFolder, live: Path, stage: Path) -> None:
    for version in contract.versions(live):
        if version != folder.version:
            shutil.copytree(live / str(version), stage / str(version), copy_function=_link_or_copy)
    (stage / str(folder.version)).mkdir()
    (stage / str(folder.version) / contract.MODEL_FILE).write_bytes(folder.onnx)
    for filename, data in folder.side_files.items():
        (stage / filename).write_bytes(data)
    (stage / contract.CONFIG_FILE).write_text(folder.config, encoding="utf-8")


@dataclass
class _Move:
    """One staged folder put in place; `aside` holds the folder it replaced until the whole set is in."""

    live: Path
    stage: Path
    aside: Path | None = None  # a private folder holding the old model as `model` (no renameat2)
    exchanged: bool = False  # renameat2 swapped them: `stage` now holds the old model

    def undo(self) -> None:
        """Put the old folder back (or take the new one away when there was none); the new one ends at `stage`."""
        if self.exchanged:
            if not _exchange(self.stage, self.live):
                raise OSError(f"cannot swap {self.live.name} back")
        elif self.aside is not None:
            os.rename(self.live, self.stage)
            os.rename(self.aside / "model", self.live)
            shutil.rmtree(self.aside, ignore_errors=True)
        else:
            os.rename(self.live, self.stage)

    def finish(self) -> None:
        """Delete the replaced folder (hidden, so a leftover after a crash is never served)."""
        if self.exchanged:
            shutil.rmtree(self.stage, ignore_errors=True)
        elif self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)


def _put_in_place(repository: Path, live: Path, stage: Path) -> _Move:
    if not live.exists():
        os.rename(stage, live)
        return _Move(live, stage)
    if _exchange(stage, live):
        return _Move(live, stage, exchanged=True)
    aside = Path(tempfile.mkdtemp(prefix=f".{live.name}.old-", dir=repository))
    os.rename(live, aside / "model")
    try:
        os.rename(stage, live)
    except BaseException:
        os.rename(aside / "model", live)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    return _Move(live, stage, aside=aside)


@dataclass
class Staged:
    """Complete model folders of one export, each in a hidden folder beside its target."""

    repository: Path
    folders: list[ModelFolder]
    stages: list[Path]

    def discard(self) -> None:
        for stage in self.stages:
            shutil.rmtree(stage, ignore_errors=True)

    def swap(self) -> list[Path]:
        """Rename every staged folder into place, one after another; the replaced folders are deleted
        only once all new ones are in. On a failure the ones already moved are put back, so the
        repository holds the old set again, and nothing staged is left behind."""
        moves: list[_Move] = []
        try:
            for folder, stage in zip(self.folders, self.stages):
                moves.append(_put_in_place(self.repository, folder.target(self.repository), stage))
        except BaseException:
            for move in reversed(moves):
                move.undo()
            self.discard()
            raise
        for move in moves:
            move.finish()
        return [folder.target(self.repository) / str(folder.version) / contract.MODEL_FILE for folder in self.folders]


def stage(repository: Path, folders: list[ModelFolder]) -> Staged:
    """Write every folder complete into a hidden `.NAME.tmp-XXXX` beside its target; on a failure the
    folders staged so far are removed and the repository is as it was."""
    repository.mkdir(parents=True, exist_ok=True)
    staged = Staged(repository, list(folders), [])
    try:
        for folder in folders:
            path = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=repository))
            staged.stages.append(path)
            path.chmod(0o755)  # mkdtemp makes it private; a server may run as another user
            _stage(folder, folder.target(repository), path)
    except BaseException:
        staged.discard()
        raise
    return staged


def refuse_overwrite(repository: Path, names: list[str], version: int, force: bool) -> None:
    """Checked for every model of an export before any is written."""
    for name in names:
        existing = repository / check_name(name) / str(version)
        if existing.exists() and not force:
            raise UserError(f"{existing} already exists; choose another --version or pass --force to replace it")


def write_all(repository: Path, folders: list[ModelFolder]) -> list[Path]:
    """A model and its companions as one set: all staged first, then swapped in together (see `Staged.swap`)."""
    names = [folder.name for folder in folders]
    if len(set(names)) != len(names):
        raise ValueError(f"a model folder is named twice in one write: {names}")
    return stage(repository, folders).swap()


def write(repository: Path, folder: ModelFolder) -> Path:
    """One model folder staged beside its target, then moved into place in one step."""
    return write_all(repository, [folder])[0]

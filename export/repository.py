"""Writing model folders into a repository so that a watching server never sees half a model.

A model folder is staged complete (config.pbtxt, side files, every version) in a hidden folder
beside the target, `.NAME.tmp-XXXX`, and then moved into place with one rename; when the model
already exists, the staged folder and the live one are swapped atomically (Linux `renameat2` with
RENAME_EXCHANGE, two renames elsewhere) and the old one is deleted. Versions that are kept are
hard links, so staging costs no copy. Servers should ignore folders whose names start with ".".
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dnnzoo.errors import UserError

MODEL_FILENAME = "model.onnx"
CONFIG_FILENAME = "config.pbtxt"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(name: str) -> str:
    """Letters, digits, `_`, `-` and `.`, not starting with `.` (so no `..` and no hidden folders)."""
    if not _NAME.fullmatch(name or "") or name.startswith("."):
        raise UserError(f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.'")
    return name


def versions(model_dir: Path) -> list[int]:
    """Numeric version folders, as Triton reads them (names starting with 0 are ignored)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))


def next_version(repository: Path, names: list[str]) -> int:
    """One past the highest version of any of `names`, so a model and its companions stay aligned."""
    return max((v for name in names for v in versions(repository / name)), default=0) + 1


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
    for version in versions(live):
        if version != folder.version:
            shutil.copytree(live / str(version), stage / str(version), copy_function=_link_or_copy)
    (stage / str(folder.version)).mkdir()
    (stage / str(folder.version) / MODEL_FILENAME).write_bytes(folder.onnx)
    for filename, data in folder.side_files.items():
        (stage / filename).write_bytes(data)
    (stage / CONFIG_FILENAME).write_text(folder.config, encoding="utf-8")


def refuse_overwrite(repository: Path, names: list[str], version: int, force: bool) -> None:
    """Checked for every model of an export before any is written."""
    for name in names:
        existing = repository / check_name(name) / str(version)
        if existing.exists() and not force:
            raise UserError(f"{existing} already exists; choose another --version or pass --force to replace it")


def write(repository: Path, folder: ModelFolder) -> Path:
    """Stage the complete model folder beside the target, then move it into place in one step."""
    repository.mkdir(parents=True, exist_ok=True)
    live = folder.target(repository)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=repository))
    try:
        stage.chmod(0o755)  # mkdtemp makes it private; a server may run as another user
        _stage(folder, live, stage)
        if not live.exists():
            os.rename(stage, live)
        elif _exchange(stage, live):
            shutil.rmtree(stage)
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=repository))
            os.rename(live, old / "model")
            os.rename(stage, live)
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return live / str(folder.version) / MODEL_FILENAME

"""Reading a model folder's files as hostile input.

A file the server reads itself (config.pbtxt, label and vocabulary files, warm-up data) must be:
- a regular file: a FIFO would block the loader (and with it polling, loads and shutdown) forever,
  and /dev/zero would never end;
- inside the repository once symlinks are resolved: a link may point elsewhere inside it (as a
  Kubernetes ConfigMap mount's do), never outside (labels.txt -> /etc/passwd would be served to
  clients as class names);
- no larger than its bound, checked before it is read.
Model files (model.onnx) are opened by ONNX Runtime, so only the second rule applies to them here:
`inside`. Each refusal is a ValueError naming the file, which leaves that model UNAVAILABLE.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_TEXT_BYTES = 16 << 20  # config.pbtxt, labels, vocabularies: the largest export writes is ~0.1 MB
MAX_WARMUP_BYTES = 256 << 20  # one model_warmup input_data_file


def inside(path: Path, root: Path) -> Path:
    """`path` with its symlinks resolved; ValueError if that leaves `root`."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(root)):
        raise ValueError(f"{path.name} points outside the model repository")
    return real


def read_bytes(path: Path, root: Path, limit: int) -> bytes:
    """A regular file inside `root`, at most `limit` bytes. FileNotFoundError when it is missing."""
    real = inside(path, root)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path.name} is {info.st_size:,} bytes, above the {limit:,} this server reads")
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew while being read
        raise ValueError(f"{path.name} is larger than the {limit:,} bytes this server reads")
    return data


def read_text(path: Path, root: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """read_bytes as UTF-8 text (UnicodeDecodeError when it is not)."""
    return read_bytes(path, root, limit).decode("utf-8")

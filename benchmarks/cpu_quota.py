"""A cgroup with a CPU quota, for measuring servers as a container CPU limit runs them (`docker run
--cpus N`, a Kubernetes `limits.cpu`): the kernel throttles a process's threads together to N cores'
worth of time per period, however many threads it starts. Needs root and a writable cgroup mount
(v2 with the cpu controller delegated, or v1's cpu hierarchy).

Why not `taskset`: ONNX Runtime, when it picks its own thread count, pins one worker to each
physical core and so leaves a taskset mask (peers.py notes it), and a mask is not what a container
limit is.
"""

from __future__ import annotations

import os
from pathlib import Path

MOUNT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def create(cores: float, name: str) -> Path:
    """A new cgroup `name` limited to `cores` CPUs; SystemExit saying why when it cannot be made."""
    v2 = (MOUNT / "cgroup.controllers").exists()
    parent = MOUNT if v2 else MOUNT / "cpu"
    if v2 and "cpu" not in (MOUNT / "cgroup.subtree_control").read_text().split():
        raise SystemExit(f"{MOUNT}: the cpu controller is not enabled for child cgroups (cgroup.subtree_control)")
    if not parent.is_dir():
        raise SystemExit(f"no cgroup cpu hierarchy at {parent}")
    folder = parent / name
    quota = max(1000, round(cores * PERIOD_US))
    try:
        folder.mkdir(exist_ok=True)
        if v2:
            (folder / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            (folder / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (folder / "cpu.cfs_quota_us").write_text(str(quota))
    except OSError as error:
        raise SystemExit(f"cannot make a cgroup with a CPU quota at {folder} ({error.strerror}); run as root") from None
    return folder


def join(folder: Path | None) -> None:
    """Move this process (and the threads and children it starts later) into `folder`; None: stay."""
    if folder is not None:
        (Path(folder) / "cgroup.procs").write_text(str(os.getpid()))


def remove(folder: Path) -> None:
    """Delete the cgroup once its processes are gone (the kernel refuses while any is left)."""
    try:
        folder.rmdir()
    except OSError as error:
        print(f"note: could not remove cgroup {folder}: {error.strerror}")

"""How many cores this process may use: its CPU affinity, lowered by a cgroup CPU quota.

Why: `os.cpu_count()`, and ONNX Runtime's own default, see the host's cores. A container limited to
2 of a 64-core host's CPUs (`docker run --cpus 2`, a Kubernetes CPU limit) that sized its thread
pools from 64 would be throttled by the quota mid-run. A cpuset (`docker --cpuset-cpus`, the
Kubernetes static CPU manager, `taskset`) shows in the affinity mask; a quota only in the cgroup
files: `cpu.max` on cgroup v2, `cpu.cfs_quota_us` / `cpu.cfs_period_us` on v1 (older hosts, and
hybrid ones such as this project's build machine).

The quota is read on the process's own cgroup (from /proc/self/cgroup) and on each folder above it,
since a limit on a parent (a Kubernetes pod, a systemd slice) binds its children; the smallest
applies. Inside a container the named path may not exist under the mount (the container's cgroup is
mounted as the root), which is why the mount root itself is always read too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

CGROUP_MOUNT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cores(mount: Path = CGROUP_MOUNT, membership: Path = PROC_SELF_CGROUP) -> int:
    """The affinity mask's size, lowered to the cgroup CPU quota rounded up (a 2.5-CPU limit: 3)."""
    cores = _affinity()
    quota = cgroup_cpu_quota(mount, membership)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def describe(mount: Path = CGROUP_MOUNT, membership: Path = PROC_SELF_CGROUP) -> str:
    """The server's startup line on cores: what plans are made for, and from what, so that an operator
    sees a container limit taken (or not)."""
    quota = cgroup_cpu_quota(mount, membership)
    limit = "no cgroup CPU quota" if quota is None else f"cgroup CPU quota {quota:g}"
    cores = usable_cores(mount, membership)
    return f"execution plans use {cores} core{'s' if cores != 1 else ''} (CPU affinity {_affinity()}, {limit})"


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_cpu_quota(mount: Path = CGROUP_MOUNT, membership: Path = PROC_SELF_CGROUP) -> float | None:
    """The smallest CPU quota, in cores, on this process's cgroup or a folder above it; None when none is set."""
    quotas = [quota for folder in _cpu_folders(mount, membership) if (quota := _quota_in(folder)) is not None]
    return min(quotas, default=None)


def _cpu_folders(mount: Path, membership: Path) -> list[Path]:
    """The folders whose CPU quota binds this process: its cgroup and every folder above it, v2 and v1."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    folders = [mount, mount / "cpu", mount / "cpu,cpuacct"]  # the roots, also when /proc/self/cgroup is unreadable
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: "0::/path"
            base = mount
        elif "cpu" in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            base = mount / controllers if (mount / controllers).is_dir() else mount / "cpu"
        else:
            continue
        parts = PurePosixPath(path).parts[1:]
        if ".." in parts:  # a cgroup outside this namespace's view: only the mount root is ours to read
            continue
        folders += [base.joinpath(*parts[:depth]) for depth in range(len(parts), 0, -1)]
    return folders


def _quota_in(folder: Path) -> float | None:
    """A folder's CPU quota in cores (v2 `cpu.max`, else v1 `cpu.cfs_*`); None when unset or unreadable."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        cores = int(quota) / int(period)  # v2 "max" and v1 "-1" (no limit) fail or come out <= 0
    except (ValueError, ZeroDivisionError):
        return None
    return cores if cores > 0 else None

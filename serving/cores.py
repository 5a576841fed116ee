"""How many cores this process may use: the physical cores of its CPU affinity, lowered by a cgroup
CPU quota; and which logical CPUs make up each of those cores.

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

Cores, not logical CPUs: on a host with SMT (Hyper-Threading), two logical CPUs share one core's
execution units. ONNX Runtime's own default is one intra-op thread per physical core, each pinned to
its core's logical CPUs (its threading guide: "6-core machine (with 12 HT logical processors) = 6
total INTRA threads"), and that is the default every peer runs with. Counting logical CPUs would
give the plan twice the threads on the same execution units, and could pin a pool's worker to its
caller's sibling. The cores are read from sysfs topology (package and core id per logical CPU); a
CPU whose topology cannot be read counts as a core of its own, as on this project's build machine,
which has one thread per core.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path, PurePosixPath

CGROUP_MOUNT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
SYSFS_CPUS = Path("/sys/devices/system/cpu")


def usable_cores(mount: Path = CGROUP_MOUNT, membership: Path = PROC_SELF_CGROUP, topology: Path = SYSFS_CPUS) -> int:
    """The physical cores in the affinity mask, lowered to the cgroup CPU quota rounded up (a 2.5-CPU
    limit: 3)."""
    cores = len(core_groups(topology))
    quota = cgroup_cpu_quota(mount, membership)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def describe(mount: Path = CGROUP_MOUNT, membership: Path = PROC_SELF_CGROUP, topology: Path = SYSFS_CPUS) -> str:
    """The server's startup line on cores: what plans are made for, and from what, so that an operator
    sees a container limit (and SMT) taken into account, or not."""
    quota = cgroup_cpu_quota(mount, membership)
    limit = "no cgroup CPU quota" if quota is None else f"cgroup CPU quota {quota:g}"
    cores = usable_cores(mount, membership, topology)
    logical, physical = len(_affinity()), len(core_groups(topology))
    mask = f"CPU affinity {logical}" + (f" logical CPUs on {physical} cores" if physical != logical else "")
    return f"execution plans use {cores} core{'s' if cores != 1 else ''} ({mask}, {limit})"


def core_groups(topology: Path = SYSFS_CPUS) -> list[tuple[int, ...]]:
    """The affinity mask's logical CPUs grouped by the physical core they share, each group sorted,
    the groups in the order of their first CPU. Without readable topology, each CPU is its own core."""
    groups: dict[object, list[int]] = {}
    for cpu in sorted(_affinity()):
        groups.setdefault(_core_of(cpu, topology), []).append(cpu)
    return sorted(tuple(group) for group in groups.values())


@functools.lru_cache(maxsize=4096)
def _core_of(cpu: int, topology: Path) -> object:
    """(package, core) ids of a logical CPU, or the CPU itself where sysfs does not say. Read once:
    a CPU's core does not change while the server runs."""
    folder = topology / f"cpu{cpu}" / "topology"
    try:
        return int((folder / "physical_package_id").read_text()), int((folder / "core_id").read_text())
    except (OSError, ValueError):
        return ("cpu", cpu)


def _affinity() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


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

"""Usable cores: the affinity mask, lowered by a cgroup CPU quota on the process's cgroup or above it,
on cgroup v2 and v1, as the files lie in a container, on a host and in a Kubernetes pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving import cores


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _v1_quota(root: Path, folder: str, quota: str, period: str = "100000") -> None:
    _write(root, f"{folder}/cpu.cfs_quota_us", quota + "\n")
    _write(root, f"{folder}/cpu.cfs_period_us", period + "\n")


@pytest.fixture
def sixteen_cores(monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(16)))


@pytest.mark.parametrize("cpu_max, expected", [("max 100000\n", 16), ("250000 100000\n", 3), ("50000 100000\n", 1)])
def test_a_v2_quota_at_the_mount_root_as_a_container_sees_it(tmp_path, sixteen_cores, cpu_max, expected):
    _write(tmp_path, "fs/cpu.max", cpu_max)
    _write(tmp_path, "self", "0::/\n")
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == expected


def test_a_v2_quota_on_a_parent_binds_its_children(tmp_path, sixteen_cores):
    """A Kubernetes pod's limit sits on the pod's folder; the container's own folder says "max"."""
    _write(tmp_path, "fs/cpu.max", "max 100000\n")
    _write(tmp_path, "fs/kubepods/pod1/cpu.max", "200000 100000\n")
    _write(tmp_path, "fs/kubepods/pod1/c1/cpu.max", "max 100000\n")
    _write(tmp_path, "self", "0::/kubepods/pod1/c1\n")
    assert cores.cgroup_cpu_quota(tmp_path / "fs", tmp_path / "self") == 2.0
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == 2


def test_the_smallest_quota_on_the_way_up_wins(tmp_path, sixteen_cores):
    _write(tmp_path, "fs/system.slice/cpu.max", "800000 100000\n")
    _write(tmp_path, "fs/system.slice/dnnzoo.service/cpu.max", "150000 100000\n")
    _write(tmp_path, "self", "0::/system.slice/dnnzoo.service\n")
    assert cores.cgroup_cpu_quota(tmp_path / "fs", tmp_path / "self") == 1.5
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == 2


@pytest.mark.parametrize("controllers", ["cpu,cpuacct", "cpu"])
def test_a_v1_quota_in_the_cpu_hierarchy(tmp_path, sixteen_cores, controllers):
    _v1_quota(tmp_path, f"fs/{controllers}/batch/job", "300000")
    _write(tmp_path, "self", f"5:memory:/batch/job\n4:{controllers}:/batch/job\n0::/\n")
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == 3


def test_a_v1_container_whose_named_path_is_not_mounted_reads_the_root(tmp_path, sixteen_cores):
    """Docker on cgroup v1 mounts the container's own cgroup as the root, while /proc/self/cgroup
    still names the host's path."""
    _v1_quota(tmp_path, "fs/cpu,cpuacct", "100000")
    _write(tmp_path, "self", "4:cpu,cpuacct:/docker/0123abcd\n")
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == 1


def test_v1_minus_one_means_no_limit(tmp_path, sixteen_cores):
    _v1_quota(tmp_path, "fs/cpu", "-1")
    _write(tmp_path, "self", "1:cpu:/\n")
    assert cores.cgroup_cpu_quota(tmp_path / "fs", tmp_path / "self") is None
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == 16


@pytest.mark.parametrize("membership", ["", "garbage\n", "0::/../../elsewhere\n"])
def test_odd_or_missing_files_leave_the_affinity(tmp_path, sixteen_cores, membership):
    _write(tmp_path, "fs/cpu.max", "not numbers\n")
    _v1_quota(tmp_path, "fs/cpu", "0", "0")
    _write(tmp_path, "self", membership)
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == 16
    assert cores.usable_cores(tmp_path / "absent", tmp_path / "absent-too") == 16


def test_the_affinity_mask_caps_a_larger_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1})
    _write(tmp_path, "fs/cpu.max", "400000 100000\n")
    _write(tmp_path, "self", "0::/\n")
    assert cores.usable_cores(tmp_path / "fs", tmp_path / "self") == 2


def test_the_startup_line_names_the_cores_and_the_quota(tmp_path, sixteen_cores):
    _write(tmp_path, "fs/cpu.max", "150000 100000\n")
    _write(tmp_path, "self", "0::/\n")
    line = cores.describe(tmp_path / "fs", tmp_path / "self")
    assert line == "execution plans use 2 cores (CPU affinity 16, cgroup CPU quota 1.5)"
    assert cores.describe(tmp_path / "absent", tmp_path / "absent") == (
        "execution plans use 16 cores (CPU affinity 16, no cgroup CPU quota)")

"""Usable cores: the physical cores of the affinity mask, lowered by a cgroup CPU quota on the process's
cgroup or above it, on cgroup v2 and v1, as the files lie in a container, on a host and in a
Kubernetes pod; SMT siblings counted once."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving import cores


class FakeHost:
    """A cgroup mount (`fs/`), a /proc/self/cgroup (`self`) and a sysfs cpu folder (`cpu/`, empty
    unless `smt` writes it: each CPU a core of its own) in a temp folder, and `serving.cores` asked
    about them."""

    def __init__(self, root: Path) -> None:
        self.mount, self.membership, self.topology = root / "fs", root / "self", root / "cpu"

    def write(self, relative: str, text: str) -> None:
        path = self.mount / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def v2_quota(self, folder: str, text: str) -> None:
        self.write(f"{folder}/cpu.max", text + "\n")

    def v1_quota(self, folder: str, quota: str, period: str = "100000") -> None:
        self.write(f"{folder}/cpu.cfs_quota_us", quota + "\n")
        self.write(f"{folder}/cpu.cfs_period_us", period + "\n")

    def member_of(self, lines: str) -> None:
        self.membership.write_text(lines)

    def smt(self, physical: int) -> None:
        smt_topology(self.topology, physical)

    def usable_cores(self) -> int:
        return cores.usable_cores(self.mount, self.membership, self.topology)

    def quota(self) -> float | None:
        return cores.cgroup_cpu_quota(self.mount, self.membership)

    def describe(self) -> str:
        return cores.describe(self.mount, self.membership, self.topology)


def smt_topology(root: Path, physical: int) -> Path:
    """A sysfs cpu folder for `physical` cores of two logical CPUs each, CPU n and n + physical on core n."""
    for cpu in range(2 * physical):
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text("0\n")
        (folder / "core_id").write_text(f"{cpu % physical}\n")
    return root


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


@pytest.fixture
def sixteen_cores(monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(16)))


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", 16), ("250000 100000", 3), ("50000 100000", 1)])
def test_a_v2_quota_at_the_mount_root_as_a_container_sees_it(host, sixteen_cores, cpu_max, expected):
    host.v2_quota(".", cpu_max)
    host.member_of("0::/\n")
    assert host.usable_cores() == expected


def test_a_v2_quota_on_a_parent_binds_its_children(host, sixteen_cores):
    """A Kubernetes pod's limit sits on the pod's folder; the container's own folder says "max"."""
    host.v2_quota(".", "max 100000")
    host.v2_quota("kubepods/pod1", "200000 100000")
    host.v2_quota("kubepods/pod1/c1", "max 100000")
    host.member_of("0::/kubepods/pod1/c1\n")
    assert host.quota() == 2.0
    assert host.usable_cores() == 2


def test_the_smallest_quota_on_the_way_up_wins(host, sixteen_cores):
    host.v2_quota("system.slice", "800000 100000")
    host.v2_quota("system.slice/dnnzoo.service", "150000 100000")
    host.member_of("0::/system.slice/dnnzoo.service\n")
    assert host.quota() == 1.5
    assert host.usable_cores() == 2


@pytest.mark.parametrize("controllers", ["cpu,cpuacct", "cpu"])
def test_a_v1_quota_in_the_cpu_hierarchy(host, sixteen_cores, controllers):
    host.v1_quota(f"{controllers}/batch/job", "300000")
    host.member_of(f"5:memory:/batch/job\n4:{controllers}:/batch/job\n0::/\n")
    assert host.usable_cores() == 3


def test_a_v1_container_whose_named_path_is_not_mounted_reads_the_root(host, sixteen_cores):
    """Docker on cgroup v1 mounts the container's own cgroup as the root, while /proc/self/cgroup
    still names the host's path."""
    host.v1_quota("cpu,cpuacct", "100000")
    host.member_of("4:cpu,cpuacct:/docker/0123abcd\n")
    assert host.usable_cores() == 1


def test_v1_minus_one_means_no_limit(host, sixteen_cores):
    host.v1_quota("cpu", "-1")
    host.member_of("1:cpu:/\n")
    assert host.quota() is None
    assert host.usable_cores() == 16


@pytest.mark.parametrize("membership", ["", "garbage\n", "0::/../../elsewhere\n"])
def test_odd_or_missing_files_leave_the_affinity(host, tmp_path, sixteen_cores, membership):
    host.v2_quota(".", "not numbers")
    host.v1_quota("cpu", "0", "0")
    host.member_of(membership)
    assert host.usable_cores() == 16
    assert FakeHost(tmp_path / "absent").usable_cores() == 16


def test_the_affinity_mask_caps_a_larger_quota(host, monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1})
    host.v2_quota(".", "400000 100000")
    host.member_of("0::/\n")
    assert host.usable_cores() == 2


def test_the_startup_line_names_the_cores_and_the_quota(host, tmp_path, sixteen_cores):
    host.v2_quota(".", "150000 100000")
    host.member_of("0::/\n")
    assert host.describe() == "execution plans use 2 cores (CPU affinity 16, cgroup CPU quota 1.5)"
    assert FakeHost(tmp_path / "absent").describe() == (
        "execution plans use 16 cores (CPU affinity 16, no cgroup CPU quota)")


def test_smt_siblings_count_as_one_core_as_onnx_runtime_counts_them(host, monkeypatch):
    """8 logical CPUs on 4 cores: ONNX Runtime's default is 4 intra-op threads, and so is the plan's."""
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(8)))
    host.smt(4)
    assert cores.core_groups(host.topology) == [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert host.usable_cores() == 4
    assert host.describe() == "execution plans use 4 cores (CPU affinity 8 logical CPUs on 4 cores, no cgroup CPU quota)"
    host.v2_quota(".", "300000 100000")
    host.member_of("0::/\n")
    assert host.usable_cores() == 3  # a quota below the cores still binds


def test_a_cpuset_of_one_sibling_per_core_counts_each_core(host, monkeypatch):
    """As the Kubernetes static CPU manager or `taskset -c 0-3` leaves a process on an SMT host."""
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    host.smt(4)
    assert cores.core_groups(host.topology) == [(0,), (1,), (2,), (3,)]
    assert host.usable_cores() == 4
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 4, 1})
    assert cores.core_groups(host.topology) == [(0, 4), (1,)]
    assert host.usable_cores() == 2


def test_unreadable_topology_counts_each_cpu_as_a_core(host, monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    host.smt(2)
    (host.topology / "cpu1" / "topology" / "core_id").write_text("not a number\n")
    assert cores.core_groups(host.topology) == [(0, 2), (1,)]  # cpu2 is core 0's sibling; cpu1 stands alone

"""Session fixtures shared across the suite.

`quick_build` trains the quick profile of every family at most once per session (only when a slow
test asks for it) with `dnnzoo build`'s own code, and exports the default repository from it; the
quality-bar tests and the end-to-end serving tests on quick models all read that one build.
`shared_build` is how every such build is made: once per run, however many pytest-xdist workers
ask (the first trains under a file lock; the others then find it up to date, as `dnnzoo build` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from dnnzoo.openmp import passive_wait

passive_wait()  # before any test module imports torch


@dataclass
class QuickBuild:
    runs: Path
    repository: Path
    steps: list

    def run(self, family: str) -> Path:
        return self.runs / f"{family}-quick"


_timings: list[tuple[str, float, float]] = []


def shared_build(tmp_path_factory, profile: str) -> tuple[Path, Path, list]:
    """(runs, repository, build steps) of `profile`, built once for the whole test run: a folder
    beside the session's own temp folder, which every xdist worker of this run shares."""
    import torch

    from export.build import build

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if base.name.startswith("popen-gw") else base) / f"build-{profile}"
    with FileLock(f"{root}.lock"):
        previous = torch.get_num_threads()
        # one thread for the tiny runs, as their tests use; the quick profile gets every core
        torch.set_num_threads(1 if profile == "tiny" else len(os.sched_getaffinity(0)))
        runs, repository = root / "runs", root / "repository"
        steps = build(profile, repository, runs, opset=17, force=False, instance_kind="auto", progress=False, out=lambda _: None)
        if profile != "tiny":
            torch.set_num_threads(previous)
    return runs, repository, steps


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory) -> QuickBuild:
    runs, repository, steps = shared_build(tmp_path_factory, "quick")
    _timings.extend((s.family, s.trained_seconds or 0.0, s.export_seconds) for s in steps if s.trained_seconds)
    return QuickBuild(runs, repository, steps)


def pytest_terminal_summary(terminalreporter):
    """Print what the quick profile cost, so CI logs carry the figures the notes quote."""
    if not _timings:
        return
    terminalreporter.section("quick profile: training and export seconds")
    for family, trained, exported in _timings:
        terminalreporter.write_line(f"{family:<12} train {trained:7.1f}s  export {exported:5.1f}s")
    total = sum(t for _, t, _ in _timings)
    terminalreporter.write_line(f"{'total':<12} train {total:7.1f}s  export {sum(e for *_, e in _timings):5.1f}s")

"""Measuring plans: each candidate on a fresh `dnnzoo serve`, or the plan a running server has.

A fresh server per plan (a child process on free loopback ports, serving a temporary copy of the
model folder whose config.pbtxt holds the plan) means no plan inherits another's threads, caches or
queue. The copy hard-links the model files where it can; only config.pbtxt is rewritten, and always
by replacing the file, never by writing into it (a hard link would carry the write back to the
user's folder). With `rounds` > 1 the grid is measured again in a rotated order and each figure is
the median of the rounds, so that drifting load on a shared machine hits every plan alike.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from protos.config_text import format_config
from protos.model_config_pb2 import ModelConfig

from serving import child_server, loadgen
from serving.analyze.grid import Plan, apply_plan
from protos.contract import CONFIG_FILE

FIGURES = ("items_s", "p50_ms", "p99_ms", "cpu")


def write_config(path: Path, config: ModelConfig) -> None:
    """Replace `path` with `config` as text, atomically: a reader sees the old file or the new one."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(format_config(config))
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class LocalServers:
    """Serves one model under one plan at a time from a private copy of its folder."""

    def __init__(self, folder: Path, config: ModelConfig, workdir: Path, providers: str) -> None:
        self.name = folder.name
        self.config = config
        self.providers = providers
        self.repository = workdir / "repository"
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True)
        shutil.copytree(folder, self.repository / self.name, copy_function=_link_or_copy)
        (self.repository / self.name / CONFIG_FILE).unlink()  # never written through a link
        self.started = 0

    def measure(self, plan: Plan, run: Callable[[str], dict]) -> dict:
        """Start a server with `plan`, wait until the model is ready, `run(address)`, stop it."""
        write_config(self.repository / self.name / CONFIG_FILE, apply_plan(self.config, plan))
        self.started += 1
        log = self.logs / f"plan-{self.started}.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # this process's dnnzoo
        server = child_server.start_dnnzoo(self.repository, log, providers=self.providers, env=env)
        try:
            child_server.wait_ready(server, self.name)
            row = run(server.address)
            if not server.alive():
                raise child_server.ServerFailed(f"the server died while measuring plan {plan.label}:\n"
                                                f"{server.log_tail(10)}")
            return row
        finally:
            server.stop(grace=5.0)


def load(payload: bytes, batch: int, concurrency: int, seconds: float, warmup: float) -> Callable[[str], dict]:
    """The measurement each plan gets: `loadgen.measure` at `address`."""
    def run(address: str) -> dict:
        return asyncio.run(loadgen.measure(address, payload, batch, concurrency, seconds, warmup))

    return run


def sweep(plans: list[Plan], measure: Callable[[Plan], dict], rounds: int = 1) -> list[tuple[Plan, dict]]:
    """Every plan measured `rounds` times (rotated order), tqdm progress; median figures per plan."""
    from tqdm import tqdm

    rows: dict[Plan, list[dict]] = {plan: [] for plan in plans}
    with tqdm(total=len(plans) * rounds, unit="plan", desc="analyze", file=sys.stderr, leave=False) as progress:
        for round_ in range(rounds):
            shift = round_ % len(plans)
            for plan in plans[shift:] + plans[:shift]:
                progress.set_postfix_str(f"round {round_ + 1} plan {plan.label}")
                rows[plan].append(measure(plan))
                progress.update()
    return [(plan, {k: statistics.median(r[k] for r in found) for k in FIGURES} | {"rounds": len(found)})
            for plan, found in rows.items()]

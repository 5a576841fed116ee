"""Triton's GPU instance placement on a real GPU: each KIND_GPU instance its own session on its GPU.

A model of REPOSITORY is copied three times into a scratch repository, its instance_group set to
`KIND_GPU count: 1` and `count: 2` on every visible GPU, and the count-2 copy again with
`io_binding: "true"`. Each is loaded by the server's model manager (--providers cuda), then checked:
as many sessions as instances, each on CUDA with its GPU's device_id, and 64 concurrent one-item
requests through the batcher answered as the CPU answers them (1e-3). Then items/s at 16 requests
in flight for count 1 against count 2 (and count 2 with IOBinding), in interleaved rounds.

    python benchmarks/gpu_instances.py REPOSITORY [--model digits_classifier] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from protos.config_text import format_config, parse_config
from protos.model_config_pb2 import ModelInstanceGroup

from benchmarks.gpu_check import inputs
from serving import gpu
from serving.models import ModelManager
from serving.repository import Repository
from serving.sessions import ProviderChoice, session_options


def variant(source: Path, root: Path, name: str, count: int, bind: bool) -> None:
    folder = root / name
    shutil.copytree(source, folder)
    config = parse_config((folder / "config.pbtxt").read_text())
    config.name = name
    del config.instance_group[:]
    config.instance_group.add(kind=ModelInstanceGroup.KIND_GPU, count=count, gpus=list(range(gpu.count())))
    if bind:
        config.parameters["io_binding"].string_value = "true"
    (folder / "config.pbtxt").write_text(format_config(config))


async def rate(loaded, feeds: list[dict[str, np.ndarray]], seconds: float) -> float:
    done, started = 0, time.perf_counter()

    async def client(feed):
        nonlocal done
        while time.perf_counter() - started < seconds:
            await loaded.batcher.submit(feed)
            done += 1

    await asyncio.gather(*(client(feed) for feed in feeds))
    return done / (time.perf_counter() - started)


async def main_async(args) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="dnnzoo-gpu-instances-"))
    names = {"count1": (1, False), "count2": (2, False), "count2_bound": (2, True)}
    for name, (count, bind) in names.items():
        variant(args.repository / args.model, scratch, name, count, bind)
    manager = ModelManager(Repository(scratch), providers=ProviderChoice("cuda"))
    await manager.start()
    failed = 0
    try:
        source = Repository(scratch).read("count1")
        cpu = ort.InferenceSession(str(source.versions[max(source.versions)]), session_options(source.spec), providers=["CPUExecutionProvider"])
        feeds = [inputs(source.spec, 1) for _ in range(64)]
        for i, feed in enumerate(feeds):  # different items: a mixed-up answer would show
            for key, value in feed.items():
                feed[key] = np.roll(value, i)
        rates: dict[str, list[float]] = {name: [] for name in names}
        for name, (count, bind) in names.items():
            loaded = manager.resolve(name)
            sessions = {id(s) for s in loaded.instances}
            placed = [(s.device, s.providers[0], s.bind_outputs) for s in loaded.instances]
            expected = count * gpu.count()
            answers = await asyncio.gather(*(loaded.batcher.submit(feed) for feed in feeds))
            same = all(np.allclose(got, want, atol=1e-3, rtol=1e-3)
                       for (outputs, _), feed in zip(answers, feeds)
                       for got, want in zip(outputs.values(), cpu.run(None, feed)))
            ok = same and len(sessions) == len(loaded.instances) == expected and all(p[1] == "CUDAExecutionProvider" for p in placed)
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(loaded.instances)} instances (expected {expected}), "
                  f"{len(sessions)} sessions, (device, provider, io binding) {placed}; answers as the CPU's: {same}", flush=True)
        for round_ in range(args.rounds):
            order = list(names) if round_ % 2 == 0 else list(reversed(names))
            for name in order:
                rates[name].append(await rate(manager.resolve(name), feeds[:16], args.seconds))
        print("items/s at 16 in flight, batch 1 each (median of rounds): "
              + ", ".join(f"{name} {statistics.median(r):,.0f}" for name, r in rates.items()), flush=True)
    finally:
        await manager.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="digits_classifier")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not gpu.present():
        print("no GPU: nothing to place")
        return 1
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

"""Data-parallel training on PyTorch's own engine: torchrun starts the processes, DDP averages the gradients.

Every process runs the whole `dnnzoo train` command. The fit loop wraps the model in
DistributedDataParallel and gives each rank its own shard of every epoch (a DistributedSampler, reseeded
each epoch with `set_epoch`, for a DataLoader; every world-th batch for the families' own batch
iterables); `--batch-size` is per process, so N processes train on a global batch N times larger for
the same number of optimiser steps. Rank 0 alone evaluates, writes the run folder and shows progress;
the other ranks receive its evaluation so every rank takes the same early-stopping decision. gloo on
CPU, NCCL on CUDA. Multi-node runs use torchrun's rendezvous flags unchanged (README).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler



@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def is_leader() -> bool:
    return world().leader


def is_leader_process() -> bool:
    """Rank 0, or a single process (also after the process group is gone)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def quiet_followers():
    """Rank 0 alone prints (summaries, baseline warnings); an error still reaches every rank's stderr."""
    if is_leader():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def launched() -> bool:
    """Whether torchrun (or another launcher setting WORLD_SIZE) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device_name: str) -> None:
    """Join the process group torchrun set up: NCCL when training on CUDA, gloo otherwise."""
    if not launched() or dist.is_initialized():
        return
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # torch.device("cuda") is now this rank's GPU
    dist.init_process_group("nccl" if cuda else "gloo")


def stop() -> None:
    """Leave the process group. The DistributedDataParallel wrapper ends in a reference cycle; left to
    interpreter exit, gloo's threads were torn down during finalization and about 1 run in 10 ended
    in SIGABRT ("terminate called without an active exception") after training had finished, so
    the cycle is collected first (0 of 90 runs since; `tests/training/test_distributed.py`)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """`dnnzoo train … --nproc N`: run torchrun's elastic agent here, starting N workers of `python -m dnnzoo train …`."""
    from torch.distributed.run import parse_args, run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        run(parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "dnnzoo", "train", *argv]))
    except ChildFailedError as exc:
        failures = ", ".join(f"rank {rank} exit code {f.exitcode}" for rank, f in sorted(exc.failures.items()))
        print(f"dnnzoo train: a worker failed ({failures}); its error is above", flush=True)
        return 2
    return 0


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


class Shard:
    """This rank's part of each epoch. The loop calls `set_epoch(epoch)` before iterating."""

    def __init__(self, batches: Any, world_: World, seed: int):
        self.world = world_
        self.source = batches
        if isinstance(batches, DataLoader):
            self.sampler = DistributedSampler(batches.dataset, world_.size, world_.rank, shuffle=True, seed=seed)
            self.loader: Any = DataLoader(batches.dataset, batch_size=batches.batch_size, sampler=self.sampler,
                                          num_workers=batches.num_workers, collate_fn=batches.collate_fn,
                                          pin_memory=batches.pin_memory, drop_last=batches.drop_last)
        else:
            self.sampler, self.loader = None, None

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        return len(self.source) // self.world.size  # equal counts: a rank with one more batch would wait forever

    def __iter__(self) -> Iterator:
        if self.loader is not None:
            yield from self.loader
            return
        count = len(self)
        for i, batch in enumerate(self.source):  # every rank draws the same batches and keeps its own
            if i // self.world.size >= count:
                break
            if i % self.world.size == self.world.rank:
                yield batch


def _collective_device() -> torch.device:
    """Where a tensor collective's tensors must live: NCCL reduces CUDA tensors only (this rank's GPU)."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean(total: float, count: int, world_: World) -> float:
    """The mean of a per-rank sum over every rank's items."""
    if world_.size == 1:
        return total / max(count, 1)
    both = torch.tensor([total, float(count)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(both)
    return float(both[0] / max(float(both[1]), 1.0))


def from_leader(value: Any, world_: World) -> Any:
    """Rank 0's `value` on every rank."""
    if world_.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, world_: World) -> list[Any]:
    """Every rank's `value`, in rank order (on every rank)."""
    if world_.size == 1:
        return [value]
    values: list[Any] = [None] * world_.size
    dist.all_gather_object(values, value)
    return values

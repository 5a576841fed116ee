"""Data-parallel training on 2 CPU processes (gloo): the same weights as one process with the same global
batch, and `dnnzoo train --nproc 2` writes one run folder from rank 0."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from training import distributed
from training import fit as fit_module
from training.config import TrainConfig
from training.fit import fit

ROOT = Path(__file__).resolve().parents[2]
SEED, N, PER_RANK = 3, 64, 8


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(N, 1, generator=g)


def _model() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _config() -> TrainConfig:
    return TrainConfig(family="t", seed=SEED, epochs=3, lr=0.1, optimizer="momentum", schedule="constant", progress=False)


def _mse(m, batch):
    return nn.functional.mse_loss(m(batch[0]), batch[1])


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = _model()
        loader = DataLoader(TensorDataset(*_data()), batch_size=PER_RANK, shuffle=True, generator=torch.Generator().manual_seed(SEED))
        history = fit(model, loader, _config(), _mse, lambda m: {"val_loss": 0.0}, torch.device("cpu"))
        if rank == 0:
            torch.save({"state": model.state_dict(), "steps": history[-1]["step"]}, out)
    finally:
        distributed.stop()


class Killed(Exception):
    """Stands for both processes dying right after round 1's state reached the disk."""


def _fit_with_dropout(folder: Path, resume: bool) -> None:
    """Two rounds of 4 epochs each (16 steps per epoch), dropout drawing from each rank's own RNG."""
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    x, y = _data()
    loader = DataLoader(TensorDataset(x.repeat(4, 1), y.repeat(4, 1)), batch_size=PER_RANK, shuffle=True, generator=torch.Generator().manual_seed(SEED))
    config = replace(_config(), epochs=8, lr=0.01, out=folder, resume=folder if resume else None)
    fit(model, loader, config, _mse, lambda m: {"val_loss": float(_mse(m, (x, y)))}, torch.device("cpu"))
    if dist.get_rank() == 0:
        torch.save(model.state_dict(), folder / "final.pt")


def _resume_worker(rank: int, port: int, root: str, phase: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        if phase == "resume":
            _fit_with_dropout(Path(root) / "killed", resume=True)
            return
        _fit_with_dropout(Path(root) / "through", resume=False)
        save_round = fit_module._save_round

        def save_then_die(*args, **kwargs):
            save_round(*args, **kwargs)
            raise Killed

        fit_module._save_round = save_then_die
        try:
            _fit_with_dropout(Path(root) / "killed", resume=False)
        except Killed:
            pass
        finally:
            fit_module._save_round = save_round
    finally:
        distributed.stop()


def test_a_two_process_run_killed_after_a_round_resumes_to_the_same_weights(tmp_path):
    for name in ("through", "killed"):
        (tmp_path / name).mkdir()
    mp.spawn(_resume_worker, args=(_free_port(), str(tmp_path), "first"), nprocs=2, join=True)
    state = torch.load(tmp_path / "killed" / "resume.pt", weights_only=True)
    assert (state["epoch"], state["finished"], len(state["rng"])) == (4, False, 2)
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    mp.spawn(_resume_worker, args=(_free_port(), str(tmp_path), "resume"), nprocs=2, join=True)
    through, resumed = (torch.load(tmp_path / name / "final.pt", weights_only=True) for name in ("through", "killed"))
    for name, value in through.items():
        assert torch.equal(value, resumed[name]), name
    histories = [torch.load(tmp_path / name / "resume.pt", weights_only=True)["history"] for name in ("through", "killed")]
    assert histories[0] == histories[1] and len(histories[0]) == 2


class _GlobalBatches:
    """One process's view of the same run: step k's batch is the union of every rank's batch k."""

    def __init__(self):
        self.x, self.y = _data()
        self.epoch = 0

    def __len__(self):
        return N // (2 * PER_RANK)

    def __iter__(self):
        self.epoch += 1  # DistributedSampler: randperm seeded with seed + epoch, rank r takes every 2nd index from r
        order = torch.randperm(N, generator=torch.Generator().manual_seed(SEED + self.epoch))
        ranks = [order[r::2] for r in range(2)]
        for k in range(len(self)):
            index = torch.cat([r[k * PER_RANK : (k + 1) * PER_RANK] for r in ranks])
            yield self.x[index], self.y[index]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_the_weights_one_process_does_on_the_same_global_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)

    model = _model()
    history = fit(model, _GlobalBatches(), _config(), _mse, lambda m: {"val_loss": 0.0}, torch.device("cpu"))
    assert ddp["steps"] == history[-1]["step"] == 3 * N // (2 * PER_RANK)
    untrained = _model().state_dict()
    for name, value in model.state_dict().items():
        assert not torch.allclose(value, untrained[name])  # it trained
        torch.testing.assert_close(ddp["state"][name], value, rtol=1e-5, atol=1e-6)


def test_nproc_2_trains_on_gloo_and_rank_0_alone_writes_the_run_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "dnnzoo", "train", "classifier", "--profile", "tiny", "--steps", "6", "--nproc", "2",
                           "--device", "cpu", "--no-progress", "--out", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert done.stdout.count("classifier: test_acc=") == 1, done.stdout
    assert done.stderr.count("does NOT beat the linear_pixels baseline") == 1, done.stderr  # 6 steps cannot; rank 0 alone says so
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["history"] and metrics["final"]["steps"] == 6
    assert {"checkpoint.pt", "resume.pt", "config.json", "curves.png"} <= {p.name for p in (tmp_path / "run").iterdir()}

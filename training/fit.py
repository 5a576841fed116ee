"""The one supervised fit loop: optimiser, schedule, penalties, clipping, max-norm, early stopping, tqdm.

Families give it two callables: `loss_step(model, batch) -> loss` for a training batch and
`evaluate(model) -> dict` run after each epoch (it must return the monitored key). Families whose
training is not one loss on one model (the GAN, word2vec) reuse the pieces instead of this loop.

The loop is also where scale lives, so every family on it gets it: `--precision` (training.precision),
a resumable state after every round (training.resume) and data parallelism when torchrun started
several processes (training.distributed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from dnnzoo.errors import UserError

from training import distributed, regularization, resume
from training.budget import plan
from training.config import TrainConfig
from training.optim import Schedule, make_optimizer
from training.precision import Precision
from training.transfer import hold_frozen

Batch = Any


def to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def fit(
    model: nn.Module,
    train_batches: Iterable[Batch],
    config: TrainConfig,
    loss_step: Callable[[nn.Module, Batch], torch.Tensor],
    evaluate: Callable[[nn.Module], dict[str, float]],
    device: torch.device,
    monitor: str = "val_loss",
    mode: str = "min",
    steps_per_epoch: int | None = None,
) -> list[dict[str, Any]]:
    """Train `model` for the budget of `config` (training.budget); returns the history (one dict per evaluation).

    The model is evaluated once per round (an epoch, or enough epochs for MIN_STEPS_PER_ROUND steps);
    early stopping counts rounds. With early stopping the best weights (by `monitor`) are restored at
    the end; without it the last weights are kept.
    """
    world = distributed.world()
    batches = distributed.Shard(train_batches, world, config.seed) if world.size > 1 else train_batches
    budget = plan(config, steps_per_epoch or len(batches))  # type: ignore[arg-type]
    optimizer = make_optimizer(model.parameters(), config)
    schedule = Schedule(optimizer, config, total_steps=budget.steps)
    stopper = regularization.EarlyStopping(config.early_stopping, mode)
    amp = Precision(config.precision, device)
    history: list[dict[str, Any]] = []
    first, steps, finished = 1, 0, False
    if world.rank > 0:  # its own dropout masks and augmentations (rank 0 keeps the single-process stream)
        torch.manual_seed(config.seed * 1009 + world.rank)
    if config.resume is not None:
        state = resume.load(config.run_dir())
        first, steps, finished, history = _restore(state, model, optimizer, schedule, stopper, amp, train_batches, world)
    trained = distributed.wrap(model, device) if world.size > 1 else model
    bar = tqdm(total=budget.steps, initial=steps, desc=config.family, unit="step", disable=not (config.progress and world.leader), leave=False)
    total, count = 0.0, 0
    for epoch in range(first, 0 if finished else budget.epochs + 1):
        model.train()
        hold_frozen(model, config.freeze)
        if world.size > 1:
            batches.set_epoch(epoch)
        for batch in batches:
            batch = to_device(batch, device)
            with amp.autocast():
                loss = loss_step(trained, batch).float()
            objective = loss + regularization.penalty(model, config.l1, config.l2)
            optimizer.zero_grad(set_to_none=True)
            amp.backward(objective)
            amp.unscale(optimizer)
            regularization.clip_gradients(model, config.clip_norm, config.clip_value)
            amp.step(optimizer)
            if config.max_norm:
                regularization.apply_max_norm(model, config.max_norm)
            schedule.after_step()
            total += float(loss.detach())
            count += 1
            steps += 1
            bar.update()
        if not budget.evaluates_after(epoch):
            continue
        train_loss = distributed.mean(total, count, world)
        model.eval()
        with torch.no_grad():
            scores = evaluate(model) if world.leader else None
        row = {"epoch": epoch, "step": steps, "loss": train_loss, "lr": schedule.lr, **distributed.from_leader(scores, world)}
        total, count = 0.0, 0
        history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("epoch", "step", "lr") and isinstance(v, float)})
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"{config.family}: the training loss became {row['loss']} at epoch {epoch}; lower --lr")
        schedule.after_epoch(row.get("val_loss"))
        stop = stopper.update(model, row[monitor], epoch)
        _save_round(config, world, epoch, steps, stop or epoch == budget.epochs, history, model, optimizer, schedule, stopper, amp, train_batches)
        if stop:
            break
    bar.close()
    if config.early_stopping:
        stopper.restore(model)
    model.eval()
    return history


def _save_round(config: TrainConfig, world: distributed.World, epoch: int, steps: int, finished: bool, history: list,
                model: nn.Module, optimizer, schedule: Schedule, stopper: regularization.EarlyStopping, amp: Precision, batches) -> None:
    """The loop's whole state after a round, written by rank 0 (each rank's RNG states gathered into it) into
    the run folder that training.runs.Run made; a bare fit (no run folder) keeps no state."""
    rngs = distributed.gather(resume.rng_state(), world)
    if not world.leader or not Path(config.run_dir()).is_dir():
        return
    resume.save(config.run_dir(), {
        "family": config.family, "epoch": epoch, "steps": steps, "finished": finished, "world_size": world.size,
        "history": history, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": schedule.scheduler.state_dict(), "precision": amp.state_dict(),
        "stopper": {"best": stopper.best, "best_epoch": stopper.best_epoch, "bad_epochs": stopper.bad_epochs, "best_state": stopper.best_state},
        "rng": rngs, "loader": resume.loader_state(batches),
    })


def _restore(state: dict, model: nn.Module, optimizer, schedule: Schedule, stopper: regularization.EarlyStopping,
             amp: Precision, batches, world: distributed.World) -> tuple[int, int, bool, list]:
    """Put the loop back where `state` left it; returns (next epoch, steps, finished, history)."""
    if state["world_size"] != world.size:
        raise UserError(f"--resume: this run trained on {state['world_size']} process(es); resume it on as many (this is {world.size})")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.scheduler.load_state_dict(state["scheduler"])
    amp.load_state_dict(state["precision"])
    s = state["stopper"]
    stopper.best, stopper.best_epoch, stopper.bad_epochs, stopper.best_state = s["best"], s["best_epoch"], s["bad_epochs"], s["best_state"]
    resume.set_rng_state(state["rng"][world.rank])
    resume.set_loader_state(batches, state["loader"])
    return state["epoch"] + 1, state["steps"], state["finished"], state["history"]

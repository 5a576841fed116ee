"""The one supervised fit loop: optimiser, schedule, penalties, clipping, max-norm, early stopping, tqdm.

Families give it two callables: `loss_step(model, batch) -> loss` for a training batch and
`evaluate(model) -> dict` run after each epoch (it must return the monitored key). Families whose
training is not one loss on one model (the GAN, word2vec) reuse the pieces instead of this loop.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from training import regularization
from training.budget import plan
from training.config import TrainConfig
from training.optim import Schedule, make_optimizer
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
    budget = plan(config, steps_per_epoch or len(train_batches))  # type: ignore[arg-type]
    optimizer = make_optimizer(model.parameters(), config)
    schedule = Schedule(optimizer, config, total_steps=budget.steps)
    stopper = regularization.EarlyStopping(config.early_stopping, mode)
    history: list[dict[str, Any]] = []
    bar = tqdm(total=budget.steps, desc=config.family, unit="step", disable=not config.progress, leave=False)
    total, count, steps = 0.0, 0, 0
    for epoch in range(1, budget.epochs + 1):
        model.train()
        hold_frozen(model, config.freeze)
        for batch in train_batches:
            batch = to_device(batch, device)
            loss = loss_step(model, batch)
            objective = loss + regularization.penalty(model, config.l1, config.l2)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            regularization.clip_gradients(model, config.clip_norm, config.clip_value)
            optimizer.step()
            if config.max_norm:
                regularization.apply_max_norm(model, config.max_norm)
            schedule.after_step()
            total += float(loss.detach())
            count += 1
            steps += 1
            bar.update()
        if not budget.evaluates_after(epoch):
            continue
        model.eval()
        with torch.no_grad():
            row = {"epoch": epoch, "step": steps, "loss": total / max(count, 1), "lr": schedule.lr, **evaluate(model)}
        total, count = 0.0, 0
        history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("epoch", "step", "lr") and isinstance(v, float)})
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"{config.family}: the training loss became {row['loss']} at epoch {epoch}; lower --lr")
        schedule.after_epoch(row.get("val_loss"))
        if stopper.update(model, row[monitor], epoch):
            break
    bar.close()
    if config.early_stopping:
        stopper.restore(model)
    model.eval()
    return history

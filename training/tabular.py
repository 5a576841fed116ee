"""Tabular MLP on numeric and categorical columns: one-hot vectors with OOV buckets, or learned embeddings.

Why this family: the survey's chapter 13 encodes categorical features (a vocabulary, an extra slot for
out-of-vocabulary values such as `DESERT`, embeddings as the alternative); real users hold CSV tables
with string columns. Cells become inputs by training.tabular_encoding's rule (vocabulary, OOV
buckets, a missing slot; numbers standardised with training-split statistics and a missing
indicator). The network takes raw numbers (NaN where missing) and slot indices, and does the
standardisation, indicators, one-hot or embedding lookups inside `forward`, so the exported graph
only has to map strings to slots.

The task follows the target: classification for a text column or a few integer codes, regression
otherwise (`--task` overrides). The test split (20%, stratified) is scored once at the end; the
validation split carved from the training rows drives monitoring, early stopping and the baselines
(majority class or mean, gradient boosting, a one-hot linear model: training.tabular_baselines), and
the test figures of the same references are reported beside the network's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from dnnzoo.errors import UserError
from training import baselines, plots, tabular_baselines
from training.autoencoder import dense_stack
from training.arguments import int_list
from training.config import TrainConfig, apply_profile
from training.data import tables
from training.device import pick, seed_everything, set_threads
from training.fit import fit
from training.initialization import initialize
from training.runs import Run
from training.tabular_encoding import Schema, fit_categorical, fit_numeric
from training.transfer import freeze, init_from

TASKS = ("auto", "classification", "regression")
ENCODINGS = ("onehot", "embedding")
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
SAMPLE_ROWS = 64
BLANK_CELLS = 0.15  # --augment's default rate of blanked training cells (README: "Rows with missing cells")
BLANK_TEST_RATE = 1 / 3  # the test rows are also scored with this share of their cells missing


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass
class Options:
    target: str | None = None  # default: species on the penguins table; required with --data
    task: str | None = None
    categorical: tuple[str, ...] | None = None  # forced categorical columns (text columns always are)
    ignore: tuple[str, ...] | None = None  # columns left out of the features
    encoding: str | None = None
    oov_buckets: int | None = None
    min_count: int | None = None  # training values seen fewer times go to a hashed OOV bucket
    embedding_dim: str | None = None  # "auto", a width, or col=width,... (with --encoding embedding)
    hidden: tuple[int, ...] | None = None
    wide: bool | None = None  # add a linear path from the features to the output (Wide & Deep)
    val_fraction: float | None = None
    blank_cells: float | None = None  # with --augment: the rate at which training cells are blanked


# Budgets in optimiser steps (training.budget): the quick profile's 500 steps are about 65 passes
# over the penguins' 247 training rows at batch 32 (seconds on this CPU); longer runs overfit the tiny table
# (seed 42: 2,000 steps lost a test row the linear model gets).
PROFILES = {
    "tiny": {"steps": 80, "batch_size": 32, "lr": 1e-2, "optimizer": "adamw", "schedule": "constant", "activation": "relu",
             "batch_norm": False, "dropout": 0.0, "augment": None, "task": "auto", "encoding": "onehot", "oov_buckets": 1,
             "min_count": 1, "embedding_dim": "auto", "hidden": (32,), "wide": True, "val_fraction": VAL_FRACTION, "blank_cells": BLANK_CELLS},
    "quick": {"steps": 500, "batch_size": 32, "lr": 3e-3, "optimizer": "adamw", "schedule": "1cycle", "activation": "relu",
              "batch_norm": False, "dropout": 0.1, "augment": None, "task": "auto", "encoding": "onehot", "oov_buckets": 1,
              "min_count": 1, "embedding_dim": "auto", "hidden": (64, 32), "wide": True, "val_fraction": VAL_FRACTION, "blank_cells": BLANK_CELLS},
    "full": {"steps": 6000, "batch_size": 64, "lr": 2e-3, "optimizer": "adamw", "schedule": "1cycle", "activation": "relu",
             "batch_norm": True, "dropout": 0.2, "augment": None, "task": "auto", "encoding": "onehot", "oov_buckets": 2,
             "min_count": 1, "embedding_dim": "auto", "hidden": (256, 128, 64), "wide": True, "val_fraction": VAL_FRACTION, "blank_cells": BLANK_CELLS},
}


def add_arguments(group) -> None:
    group.add_argument("--target", help=f"the column to predict (default {tables.PENGUINS_TARGET} on the embedded penguins table; required with --data)")
    group.add_argument("--task", choices=TASKS, help="auto (default): classification for a text target or ≤ 10 integer codes, else regression")
    group.add_argument("--categorical", type=_names, help="comma-separated columns to treat as categorical even if numeric (text columns always are)")
    group.add_argument("--ignore", type=_names, help="comma-separated columns to leave out of the features (ids, leaks)")
    group.add_argument("--encoding", choices=ENCODINGS, help="categorical columns as one-hot vectors (default) or learned embeddings")
    group.add_argument("--oov-buckets", type=int, help="extra slots per categorical column for values outside its vocabulary (default 1)")
    group.add_argument("--min-count", type=int, help="training values seen fewer times are hashed (crc32) into the OOV buckets (default 1: all in the vocabulary)")
    group.add_argument("--embedding-dim", help="with --encoding embedding: auto (1.6·slots^0.56, ≤ 50), a width, or col=width,...")
    group.add_argument("--hidden", type=int_list, help="hidden layer widths, e.g. 64,32")
    group.add_argument("--wide", action=argparse.BooleanOptionalAction, default=None,
                       help="Wide & Deep: a linear path from the encoded features to the output beside the MLP (default on)")
    group.add_argument("--val-fraction", type=float, help=f"fraction of the training rows held out for validation (default {VAL_FRACTION})")
    group.add_argument("--blank-cells", type=float,
                       help=f"with --augment (the default for a class target): each training cell is made missing at this rate, "
                            f"so that rows with empty cells are answered from the cells they have (default {BLANK_CELLS})")


class TabularNet(nn.Module):
    """numbers float [N, Dn] (NaN = missing) and slot indices int64 [N, Dc] -> logits [N, C] or values [N, 1].

    Standardisation, missing indicators and the one-hot/embedding lookups are inside, as buffers and
    layers, so an exported graph needs nothing but the string-to-slot mapping in front of it.
    """

    def __init__(self, means: list[float], stds: list[float], slots: list[int], embedding_dims: list[int], hidden: list[int],
                 outputs: int, activation: str = "relu", batch_norm: bool = False, dropout: float = 0.0,
                 target_mean: float = 0.0, target_std: float = 1.0, wide: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))
        self.slots = [int(s) for s in slots]
        self.embedding_dims = [int(d) for d in embedding_dims]
        self.embeddings = nn.ModuleDict({str(j): nn.Embedding(s, d) for j, (s, d) in enumerate(zip(self.slots, self.embedding_dims)) if d > 0})
        width = 2 * len(means) + sum(d if d > 0 else s for s, d in zip(self.slots, self.embedding_dims))
        if width == 0:
            raise UserError("the table has no feature columns left: give columns besides --target and --ignore")
        self.mlp = dense_stack([width, *hidden, outputs], activation, None, dropout, batch_norm)
        self.wide = nn.Linear(width, outputs) if wide else None

    def features(self, numbers: torch.Tensor | None, indices: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if numbers is not None and numbers.shape[1] > 0:
            missing = torch.isnan(numbers)
            standard = (torch.where(missing, self.mean, numbers) - self.mean) / self.std
            parts += [standard, missing.to(torch.float32)]
        if indices is not None and indices.shape[1] > 0:
            for j, (slots, dim) in enumerate(zip(self.slots, self.embedding_dims)):
                column = indices[:, j]
                parts.append(self.embeddings[str(j)](column) if dim > 0 else F.one_hot(column, slots).to(torch.float32))
        return torch.cat(parts, dim=1)

    def forward(self, numbers: torch.Tensor | None, indices: torch.Tensor | None) -> torch.Tensor:
        """Logits (classification) or values in target units (regression: `outputs` is 1)."""
        features = self.features(numbers, indices)
        out = self.mlp(features) if self.wide is None else self.mlp(features) + self.wide(features)
        return out * self.target_std + self.target_mean


def build_model(**model_args) -> TabularNet:
    return TabularNet(**model_args)


# ---- data --------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    schema: Schema
    task: str
    labels: list[str]  # class names (classification)
    parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # split -> (numbers, indices, y)
    target: str
    sample_rows: dict[str, list]  # raw cells of the first training rows: export's parity inputs


def _embedding_dims(spec: str, names: list[str]) -> dict[str, int | str]:
    """--embedding-dim as a width per categorical column ("auto", 8, or a=4,b=auto)."""
    if "=" not in spec:
        return {name: spec for name in names}
    out: dict[str, int | str] = {name: "auto" for name in names}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in out:
            raise UserError(f"--embedding-dim names {name!r}, which is not a categorical column ({', '.join(names) or 'none'})")
        out[name] = value.strip()
    return out


def _width(value: int | str, column: str) -> int | str:
    if value == "auto":
        return "auto"
    try:
        width = int(value)
    except ValueError:
        raise UserError(f"--embedding-dim for {column!r}: expected auto or a positive integer, got {value!r}") from None
    if width < 1:
        raise UserError(f"--embedding-dim for {column!r} must be at least 1, got {width}")
    return width


def _resolve_columns(table: tables.Table, options: Options) -> tuple[str, list[str], list[str]]:
    target = options.target or (tables.PENGUINS_TARGET if table.source == tables.PENGUINS else None)
    if target is None:
        raise UserError(f"--data {table.source}: name the column to predict with --target (columns: {', '.join(table.columns)})")
    named = [target, *(options.categorical or ()), *(options.ignore or ())]
    unknown = [name for name in named if name not in table.columns]
    if unknown:
        raise UserError(f"no column {', '.join(map(repr, unknown))} in {table.source} (columns: {', '.join(table.columns)})")
    features = [c for c in table.columns if c != target and c not in (options.ignore or ())]
    forced = set(options.categorical or ())
    categorical = [c for c in features if c in forced or not table.numeric(c)]
    numeric = [c for c in features if c not in categorical]
    return target, numeric, categorical


def _label_order(label: str) -> tuple:
    """Class codes in numeric order (2 before 10), names alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def prepare(config: TrainConfig, options: Options) -> Prepared:
    """Read the table, choose the task, split test/validation/train, fit the encoding on the training rows."""
    table = tables.load(config.data)
    target, numeric, categorical = _resolve_columns(table, options)
    keep = np.array([v is not None for v in table.columns[target]])
    if not keep.any():
        raise UserError(f"column {target!r} has no values to learn from")
    table = table.take(np.flatnonzero(keep))
    task = tables.infer_task(table, target) if options.task == "auto" else options.task
    cells = table.columns[target]
    if task == "classification":
        labels = sorted({tables.label_text(c) for c in cells}, key=_label_order)
        if len(labels) < 2:
            raise UserError(f"column {target!r} has a single class ({labels[0]}); nothing to classify")
        index = {label: i for i, label in enumerate(labels)}
        y_all = np.array([index[tables.label_text(c)] for c in cells], np.int64)
        strata = y_all
    else:
        labels = []
        try:
            y_all = np.array([float(c) for c in cells], np.float32)
        except ValueError:
            raise UserError(f"--task regression needs a numeric --target; {target!r} holds text") from None
        strata = None
    rest, test = tables.split(table.rows, TEST_FRACTION, config.seed, strata)
    train, val = tables.split(len(rest), options.val_fraction, config.seed, None if strata is None else strata[rest])
    train, val = rest[train], rest[val]

    train_table = table.take(train)
    if options.encoding == "onehot" and options.embedding_dim not in (None, "auto"):
        raise UserError("--embedding-dim applies to --encoding embedding; leave it out or add --encoding embedding")
    widths = _embedding_dims(options.embedding_dim or "auto", categorical) if options.encoding == "embedding" else {c: 0 for c in categorical}
    schema = Schema([], [fit_categorical(c, train_table.columns[c], options.oov_buckets, options.min_count, _width(widths[c], c) if widths[c] else 0)
                         for c in categorical])  # fmt: skip
    schema.numeric = [fit_numeric(c, _column_numbers(train_table, c)) for c in numeric]
    parts = {}
    for name, index in (("train", train), ("val", val), ("test", test)):
        part = table.take(index)
        parts[name] = (schema.numbers(part), schema.indices(part), y_all[index])
    samples = {name: train_table.columns[name][:SAMPLE_ROWS] for name in schema.names}
    return Prepared(schema, task, labels, parts, target, samples)


def _column_numbers(table: tables.Table, column: str) -> np.ndarray:
    try:
        return np.array([tables.as_number(c) for c in table.columns[column]], np.float64)
    except ValueError as exc:
        raise UserError(f"column {column!r}: {exc}") from None


# ---- evaluation ---------------------------------------------------------------------------------------

def _tensors(part: tuple[np.ndarray, np.ndarray, np.ndarray], task: str) -> tuple[torch.Tensor, ...]:
    numbers, indices, y = part
    return torch.from_numpy(numbers), torch.from_numpy(indices), torch.from_numpy(y if task == "classification" else y.reshape(-1, 1))


@torch.no_grad()
def predict(model: TabularNet, numbers: torch.Tensor, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    model.eval()
    return model(numbers.to(device), indices.to(device)).cpu()


def blank_cells(numbers: torch.Tensor, indices: torch.Tensor, missing_slots: torch.Tensor, rate: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each cell made missing at `rate`: NaN for a number, the missing slot for a category, as a served
    row with empty cells arrives. Why: a table has few such rows, so without this the network answers
    them by extrapolation (penguins: a Dream row with no measurements came out Gentoo, which never
    lives on Dream), where it should answer from the cells it has."""
    def draw(t: torch.Tensor) -> torch.Tensor:
        return torch.rand(t.shape, generator=generator, device=t.device) < rate

    if numbers.shape[1]:
        numbers = numbers.masked_fill(draw(numbers), float("nan"))
    if indices.shape[1]:
        indices = torch.where(draw(indices), missing_slots.to(indices.device), indices)
    return numbers, indices


def _loss(model: TabularNet, out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss((out - model.target_mean) / model.target_std, (y - model.target_mean) / model.target_std)


def scores(task: str, predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """accuracy and log loss (probabilities [N, C]), or RMSE and MAE (values [N]) in target units."""
    if task == "classification":
        p = np.clip(predicted[np.arange(len(y)), y], 1e-15, 1.0)
        return {"acc": float(np.mean(predicted.argmax(1) == y)), "log_loss": float(-np.mean(np.log(p)))}
    error = predicted.reshape(-1) - y.reshape(-1)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def _answers(task: str, out: torch.Tensor) -> np.ndarray:
    return torch.softmax(out, 1).numpy().astype(np.float64) if task == "classification" else out.numpy().reshape(-1).astype(np.float64)


def _trivial(task: str, y_train: np.ndarray, rows: int, classes: int) -> np.ndarray:
    if task == "classification":
        prior = np.bincount(y_train, minlength=classes) / len(y_train)
        return np.tile(prior, (rows, 1))
    return np.full(rows, float(np.mean(y_train)))


# ---- training -------------------------------------------------------------------------------------------

def train(config: TrainConfig, options: Options | None = None) -> dict:
    config, options = apply_profile(config, options or Options(), PROFILES[config.profile])
    if options.task not in TASKS:
        raise UserError(f"unknown --task {options.task!r}; choose from {', '.join(TASKS)}")
    set_threads(config.threads)
    generator = seed_everything(config.seed)
    device = pick(config.device)
    data = prepare(config, options)
    schema, task = data.schema, data.task
    run = Run(config, options)

    y_train = data.parts["train"][2]
    classification = task == "classification"
    model_args = {
        "means": [c.mean for c in schema.numeric], "stds": [c.std for c in schema.numeric],
        "slots": [c.slots for c in schema.categorical], "embedding_dims": [c.embedding_dim for c in schema.categorical],
        "hidden": list(options.hidden), "outputs": len(data.labels) if classification else 1,
        "activation": config.activation, "batch_norm": bool(config.batch_norm), "dropout": float(config.dropout or 0.0),
        "target_mean": 0.0 if classification else float(np.mean(y_train)),
        "target_std": 1.0 if classification else float(np.std(y_train) or 1.0), "wide": bool(options.wide),
    }  # fmt: skip
    model = build_model(**model_args)
    initialize(model, config.activation, config.init, config.init_distribution)
    if config.init_from:
        init_from(model, config.init_from, ["tabular"])
    freeze(model, config.freeze)
    model.to(device)

    train_t, val_t, test_t = (_tensors(data.parts[p], task) for p in ("train", "val", "test"))
    metric = "acc" if classification else "rmse"

    missing_slots = torch.tensor([c.missing_index for c in schema.categorical], dtype=torch.int64)
    # --augment's default (None): on for a class target, off for a regression, as measured on the
    # penguins (README, "Rows with missing cells"): blanking cost the body-mass regression its lead
    # over ridge on the clean test rows at one seed of three, at every rate tried
    augment = config.augment if config.augment is not None else classification
    rate = options.blank_cells if augment else 0.0
    if not 0.0 <= rate < 1.0:
        raise UserError(f"--blank-cells must be at least 0 and below 1, got {rate}")

    def loss_step(m, batch):
        numbers, indices, y = batch
        if rate:
            numbers, indices = blank_cells(numbers, indices, missing_slots, rate)
        return _loss(m, m(numbers, indices), y, task)

    def evaluate(m):  # validation only: the test split is scored once, below
        out = predict(m, val_t[0], val_t[1], device)
        return {"val_loss": float(_loss(m, out.to(device), val_t[2].to(device), task)), f"val_{metric}": scores(task, _answers(task, out), data.parts["val"][2])[metric]}

    batches = DataLoader(TensorDataset(*train_t), batch_size=config.batch_size, shuffle=True, generator=generator)
    history = fit(model, batches, config, loss_step, evaluate, device)

    # The test rows again with cells missing, as served rows can arrive: a third of all cells
    # (seeded), and every number (a row of categories only, e.g. a penguin seen but not measured)
    blanked = {}
    if schema.numeric or schema.categorical:
        third = blank_cells(test_t[0], test_t[1], missing_slots, BLANK_TEST_RATE, torch.Generator().manual_seed(config.seed))
        blanked["blank_third"] = third
    if schema.numeric and schema.categorical:
        blanked["no_numbers"] = (torch.full_like(test_t[0], float("nan")), test_t[1])
    answers = {split: _answers(task, predict(model, t[0], t[1], device)) for split, t in
               (("train", train_t), ("val", val_t), ("test", test_t), *blanked.items())}
    truth = {**{split: data.parts[split][2] for split in ("train", "val", "test")}, **{k: data.parts["test"][2] for k in blanked}}
    ours = {split: scores(task, answers[split], truth[split]) for split in answers}
    held_out = ["val", "test", *blanked]
    references = tabular_baselines.fit_predict(task, schema, data.parts["train"],
                                               [data.parts["val"][:2], data.parts["test"][:2], *((n.numpy(), i.numpy()) for n, i in blanked.values())],
                                               config.seed, len(data.labels))
    classes = len(data.labels)
    references["majority_class" if classification else "mean"] = [_trivial(task, y_train, len(truth[s]), classes) for s in held_out]
    higher = classification
    records, final = [], {}
    for name, reference_answers in references.items():
        answer = dict(zip(held_out, reference_answers))
        val_score = scores(task, answer["val"], truth["val"])[metric]
        records.append(baselines.compare(name, f"val_{metric}", ours["val"][metric], val_score, higher_is_better=higher, or_equal=True))
        final[f"{name}_test_{metric}"] = scores(task, answer["test"], truth["test"])[metric]
        final |= {f"{name}_test_{metric}_{k}": scores(task, answer[k], truth[k])[metric] for k in blanked}
    final |= {f"test_{metric}_{k}": ours[k][metric] for k in blanked}
    final = {
        "task": task, "target": data.target, f"test_{metric}": ours["test"][metric], f"val_{metric}": ours["val"][metric],
        f"train_{metric}": ours["train"][metric], **{f"test_{k}": v for k, v in ours["test"].items() if k != metric}, **final,
        "train_rows": len(y_train), "val_rows": len(data.parts["val"][2]), "test_rows": len(data.parts["test"][2]),
        "numeric_columns": len(schema.numeric), "categorical_columns": len(schema.categorical),
        "encoding": options.encoding, "epochs": history[-1]["epoch"], "steps": history[-1]["step"],
        "parameters": sum(p.numel() for p in model.parameters()),
        baselines.BASELINES: baselines.speak("tabular", records),
    }  # fmt: skip
    run.save_checkpoint(model_args, model.state_dict(), {
        "task": task, "target": data.target, "labels": data.labels, "schema": schema.to_plain(), "sample_rows": data.sample_rows,
        "metric": metric, f"test_{metric}": final[f"test_{metric}"],
    })
    plots.curves(history, run.file("curves.png"), keys=["loss", "val_loss"], title=f"tabular ({task}, {data.target})")
    return run.save_metrics(history, final)


def best_reference(final: dict) -> tuple[str, float]:
    """The strongest reference's test figure in a metrics.json final record: (name, value)."""
    metric = "acc" if final["task"] == "classification" else "rmse"
    figures = {name: final[f"{name}_test_{metric}"] for name in ("hgb", "linear") if f"{name}_test_{metric}" in final}
    pick_best = max if metric == "acc" else min
    name = pick_best(figures, key=figures.get)
    return name, figures[name]


"""The one explicit table of model families: name -> module implementing it.

Each module exposes `Options` (a dataclass of its own flags), `PROFILES` (tiny/quick/full defaults),
`add_arguments(parser)`, `build_model(**model_args)` and `train(config, options) -> dict` (the
metrics record it also writes to the run folder).

`NOT_APPLIED` is the one list of shared technique flags a family's loop never applies, each with the
reason; `refuse_unsupported` turns a given one into a UserError instead of a run that silently ignores it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping

from dnnzoo.errors import UserError

FAMILIES: dict[str, str] = {
    "classifier": "training.classifier",
    "detector": "training.detector",
    "word2vec": "training.word2vec",
    "sequence": "training.sequence",
    "gan": "training.gan",
    "autoencoder": "training.autoencoder",
    "tabular": "training.tabular",
}


def module(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise UserError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])


_NO_PENALTY = "its loop has no weight penalty"
_NO_MAX_NORM = "its loop applies no max-norm"

# family -> {TrainConfig field of a shared flag: why that family's training never applies it}.
# A family not listed here (classifier, detector) applies every shared flag.
NOT_APPLIED: dict[str, dict[str, str]] = {
    "word2vec": {
        "momentum": "it trains with plain SGD or SparseAdam, neither with a momentum term",
        "clip_norm": "its sparse updates are not clipped",
        "clip_value": "its sparse updates are not clipped",
        "activation": "skip-gram has no activation layers",
        "init": "the vectors start as in word2vec.c: uniform in ±0.5/dim and zero",
        "init_distribution": "the vectors start as in word2vec.c: uniform in ±0.5/dim and zero",
        "batch_norm": "skip-gram has no layers to normalise",
        "dropout": "skip-gram has no dropout layers",
        "l1": _NO_PENALTY,
        "l2": _NO_PENALTY,
        "max_norm": _NO_MAX_NORM,
        "early_stopping": "it has no validation loss to stop on",
        "augment": "its text is not augmented",
        "init_from": "skip-gram has no transferable layers",
        "freeze": "skip-gram has no transferable layers",
    },
    "gan": {
        "activation": "the DCGAN uses ReLU in the generator and LeakyReLU in the discriminator",
        "batch_norm": "the DCGAN always has batch norm",
        "dropout": "neither network has dropout layers",
        "l1": _NO_PENALTY,
        "l2": _NO_PENALTY,
        "max_norm": _NO_MAX_NORM,
        "early_stopping": "a GAN has no validation loss to stop on",
        "augment": "its loop trains on the images as they are",
    },
    "sequence": {
        "activation": "the recurrent cells use their own tanh and sigmoid gates",
        "batch_norm": "the recurrent stack has no batch norm",
        "augment": "its loop trains on the series as they are",
    },
    "autoencoder": {
        "augment": "it reconstructs the images as they are; --noise adds input noise",
    },
    "tabular": {"augment": "its loop trains on the table's rows as they are"},
}


def _flag(field: str, value: Any) -> str:
    name = field.replace("_", "-")
    return f"--no-{name}" if value is False else f"--{name}"


def refuse_unsupported(name: str, given: Mapping[str, Any]) -> None:
    """Raise a UserError naming every flag in `given` (field -> value the user set) that family `name` never applies."""
    refused = [(field, value) for field, value in given.items() if field in NOT_APPLIED.get(name, {})]
    if not refused:
        return
    clauses = [f"{_flag(f, v)} is not applied by the {name} family ({NOT_APPLIED[name][f]})" for f, v in refused]
    raise UserError("; ".join(clauses) + ("; leave it out" if len(refused) == 1 else "; leave them out"))

"""The one explicit table of model families: each family's training module, the export module that
describes its exported graphs, its default model name in a repository and its place in `dnnzoo build`.

Each training module exposes `Options` (a dataclass of its own flags), `PROFILES` (tiny/quick/full
defaults), `add_arguments(parser)`, `build_model(**model_args)` and `train(config, options) -> dict`
(the metrics record it also writes to the run folder). Each graphs module exposes
`specs(checkpoint, run_dir) -> list[ExportSpec]`: the main model first, then its companions. Modules
are named, not imported: importing this table loads neither torch nor onnx.

`NOT_APPLIED` is the one list of shared technique flags a family's loop never applies, each with the
reason; `refuse_unsupported` turns a given one into a UserError instead of a run that silently ignores it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping

from dnnzoo.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    training: str  # module with Options, PROFILES, build_model, train
    graphs: str  # export module with specs(checkpoint, run_dir)
    model_name: str  # the main model's name in a repository built by `dnnzoo build`
    build: int  # place in `dnnzoo build`: the classifier comes before the GAN, which it judges


TABLE: tuple[Family, ...] = (
    Family("classifier", "training.classifier", "export.graphs.classifier", "digits_classifier", 0),
    Family("detector", "training.detector", "export.graphs.detector", "digits_detector", 2),
    Family("word2vec", "training.word2vec", "export.graphs.word2vec", "pydoc_word2vec", 4),
    Family("sequence", "training.sequence", "export.graphs.sequence", "waves_sequence", 3),
    Family("gan", "training.gan", "export.graphs.gan", "digits_gan", 5),
    Family("autoencoder", "training.autoencoder", "export.graphs.autoencoder", "digits_autoencoder", 1),
    Family("tabular", "training.tabular", "export.graphs.tabular", "penguins_tabular", 6),
)
FAMILIES: dict[str, Family] = {family.name: family for family in TABLE}
BUILD_ORDER: tuple[str, ...] = tuple(family.name for family in sorted(TABLE, key=lambda family: family.build))
DEFAULT_NAMES: dict[str, str] = {family.name: family.model_name for family in TABLE}


def module(name: str) -> ModuleType:
    """The training module of family `name`."""
    if name not in FAMILIES:
        raise UserError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name].training)


def graphs(name: str) -> ModuleType:
    """The export module of family `name` (a run's checkpoint names its family)."""
    if name not in FAMILIES:
        raise UserError(f"the run is of family {name!r}, which export does not know; known: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name].graphs)


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

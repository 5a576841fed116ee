"""The one explicit table of model families: name -> module implementing it.

Each module exposes `Options` (a dataclass of its own flags), `PROFILES` (tiny/quick/full defaults),
`add_arguments(parser)`, `build_model(**model_args)` and `train(config, options) -> dict` (the
metrics record it also writes to the run folder).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dnnzoo.errors import UserError

FAMILIES: dict[str, str] = {
    "classifier": "training.classifier",
    "detector": "training.detector",
    "word2vec": "training.word2vec",
    "sequence": "training.sequence",
    "gan": "training.gan",
    "autoencoder": "training.autoencoder",
}


def module(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise UserError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])

"""The one table of export graphs: training family -> module that describes its exported models,
and the default model name of each family in a repository built by `dnnzoo build`.

Each module exposes `specs(checkpoint: dict, run_dir: Path) -> list[ModelSpec]`: the main model
first (suffix ""), then its companions.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dnnzoo.errors import UserError

GRAPHS: dict[str, str] = {
    "classifier": "export.graphs.classifier",
    "detector": "export.graphs.detector",
    "word2vec": "export.graphs.word2vec",
    "sequence": "export.graphs.sequence",
    "gan": "export.graphs.gan",
    "autoencoder": "export.graphs.autoencoder",
    "tabular": "export.graphs.tabular",
}

DEFAULT_NAMES: dict[str, str] = {
    "classifier": "digits_classifier",
    "detector": "digits_detector",
    "word2vec": "pydoc_word2vec",
    "sequence": "waves_sequence",
    "gan": "digits_gan",
    "autoencoder": "digits_autoencoder",
    "tabular": "penguins_tabular",
}


def graphs(family: str) -> ModuleType:
    if family not in GRAPHS:
        raise UserError(f"the run is of family {family!r}, which export does not know; known: {', '.join(GRAPHS)}")
    return importlib.import_module(GRAPHS[family])

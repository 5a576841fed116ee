"""How a table's raw cells become the tabular network's inputs: vocabularies, OOV buckets, missing values.

A categorical column with vocabulary V (training values seen at least `min_count` times, most
frequent first) and N out-of-vocabulary buckets has V + N + 1 slots:

    0 .. V-1      the vocabulary, in order
    V .. V+N-1    OOV buckets: a training value rarer than `min_count` goes to V + crc32(utf-8) mod N
                  (a stable hash, not Python's salted hash()); a value never seen in training goes to V
    V+N           missing (a MISSING_TOKENS cell): its own slot, an explicit indicator

Why unseen values take the fixed slot V rather than a hashed one: the exported ONNX graph maps
strings with ONNX-ML's LabelEncoder, which can hold the rare training values' hashed buckets as keys
but cannot hash a string it has never seen. Training, the PyTorch reference and the graph all use
this one rule, so they agree on every row. (The survey's ocean_proximity example: `DESERT` -> slot V.)

A numeric column keeps NaN for a missing cell; the network standardises with the training split's
mean and std and adds one 0/1 "missing" indicator per numeric column (so a missing value is not a
silent mean). Everything here is plain data, so it goes into the checkpoint and the model folder.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from dnnzoo.errors import UserError
from training.data.tables import MISSING_TOKENS, Table, as_number

MAX_AUTO_EMBEDDING = 50


def stable_bucket(value: str, buckets: int) -> int:
    """The OOV bucket of a value: the same on every run and machine (crc32 of its UTF-8 bytes)."""
    return zlib.crc32(value.encode("utf-8")) % buckets


def auto_embedding_dim(slots: int) -> int:
    """The embedding width for a column of `slots` values: 1.6·slots^0.56 (fast.ai's rule), at most 50."""
    return max(1, min(MAX_AUTO_EMBEDDING, round(1.6 * slots**0.56)))


@dataclass
class CategoricalColumn:
    name: str
    vocabulary: list[str]
    oov_buckets: int
    rare: dict[str, int] = field(default_factory=dict)  # rare training value -> its OOV bucket (0..N-1)
    embedding_dim: int = 0  # 0: one-hot

    @property
    def slots(self) -> int:
        return len(self.vocabulary) + self.oov_buckets + 1

    @property
    def unseen_index(self) -> int:
        return len(self.vocabulary)

    @property
    def missing_index(self) -> int:
        return len(self.vocabulary) + self.oov_buckets

    def mapping(self) -> dict[str, int]:
        """Every string with a slot of its own choosing (vocabulary, rare values, missing tokens); any other -> unseen_index."""
        table = {token: self.missing_index for token in MISSING_TOKENS}
        table |= {value: len(self.vocabulary) + bucket for value, bucket in self.rare.items()}
        table |= {value: i for i, value in enumerate(self.vocabulary)}
        return table

    def encode(self, cells) -> np.ndarray:
        """Slot indices (int64) of raw cells (str, or None for missing)."""
        table = self.mapping()
        return np.fromiter((self.missing_index if c is None else table.get(str(c), self.unseen_index) for c in cells),
                           dtype=np.int64, count=len(cells))  # fmt: skip


@dataclass
class NumericColumn:
    name: str
    mean: float
    std: float


@dataclass
class Schema:
    """The feature columns, in the order the network and the exported graph take them."""

    numeric: list[NumericColumn]
    categorical: list[CategoricalColumn]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    def numbers(self, table: Table) -> np.ndarray:
        """float32 [N, numeric columns], NaN where missing."""
        out = np.empty((table.rows, len(self.numeric)), np.float32)
        for j, column in enumerate(self.numeric):
            try:
                out[:, j] = [as_number(c) for c in table.columns[column.name]]
            except ValueError as exc:
                raise UserError(f"column {column.name!r} is numeric but holds a cell that is not a number ({exc})") from None
        return out

    def indices(self, table: Table) -> np.ndarray:
        """int64 [N, categorical columns] of slot indices."""
        out = np.empty((table.rows, len(self.categorical)), np.int64)
        for j, column in enumerate(self.categorical):
            out[:, j] = column.encode(table.columns[column.name])
        return out

    def to_plain(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_plain(data: dict) -> "Schema":
        return Schema([NumericColumn(**c) for c in data["numeric"]], [CategoricalColumn(**c) for c in data["categorical"]])


def fit_categorical(name: str, cells, oov_buckets: int, min_count: int, embedding_dim: int | str) -> CategoricalColumn:
    """A column's vocabulary from its training cells; `embedding_dim` 0 (one-hot), "auto" or a width."""
    if oov_buckets < 1:
        raise UserError(f"--oov-buckets must be at least 1 (got {oov_buckets}): unseen values need a slot")
    if min_count < 1:
        raise UserError(f"--min-count must be at least 1 (got {min_count})")
    counts = Counter(c for c in cells if c is not None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocabulary = [value for value, count in ranked if count >= min_count]
    rare = {value: stable_bucket(value, oov_buckets) for value, count in ranked if count < min_count}
    column = CategoricalColumn(name, vocabulary, oov_buckets, rare)
    column.embedding_dim = auto_embedding_dim(column.slots) if embedding_dim == "auto" else int(embedding_dim)
    return column


def fit_numeric(name: str, values: np.ndarray) -> NumericColumn:
    present = values[~np.isnan(values)]
    if present.size == 0:
        return NumericColumn(name, 0.0, 1.0)
    std = float(present.std())
    return NumericColumn(name, float(present.mean()), std if std > 1e-12 and math.isfinite(std) else 1.0)


def design_matrix(schema: Schema, numbers: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The one-hot linear baseline's features: standardised numbers (0 where missing), missing indicators, one-hot slots."""
    parts = []
    if schema.numeric:
        mean = np.array([c.mean for c in schema.numeric], np.float32)
        std = np.array([c.std for c in schema.numeric], np.float32)
        missing = np.isnan(numbers)
        parts += [np.where(missing, 0.0, (numbers - mean) / std), missing.astype(np.float32)]
    for j, column in enumerate(schema.categorical):
        parts.append(np.eye(column.slots, dtype=np.float32)[indices[:, j]])
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(numbers), 0), np.float32)

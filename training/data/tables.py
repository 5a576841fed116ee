"""CSV tables for the tabular family: raw text cells, column kinds, the embedded penguins table, splits.

Why cells stay text until encoding: a column is numeric only if every present cell parses as a
number, a missing cell is one of MISSING_TOKENS (the penguins file writes "NA", census files "?"),
and the encoder, the exported graph and the serving client must agree on exactly that rule. The
default data is the Palmer penguins table shipped inside the `palmerpenguins` wheel, read with
importlib.resources: nothing is downloaded.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnzoo.errors import UserError

# Cells read as "missing" in any column (compared after stripping spaces). One definition: the encoder
# maps these strings to the missing slot, and the exported graph's LabelEncoders carry them as keys.
MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?")
PENGUINS = "palmerpenguins:penguins.csv"
PENGUINS_TARGET = "species"
MAX_CLASS_CODES = 10  # a numeric target with at most this many distinct integers is a class label (0/1, 1..5)


def is_missing(cell: str | None) -> bool:
    return cell is None or cell.strip() in MISSING_TOKENS


def as_number(cell: str | None) -> float:
    """A cell as a float; NaN when missing. ValueError when present and not a number."""
    if is_missing(cell):
        return math.nan
    return float(cell)


def _numeric(values: list[str | None]) -> bool:
    present = [v for v in values if not is_missing(v)]
    if not present:
        return False
    try:
        for v in present:
            float(v)
    except ValueError:
        return False
    return True


@dataclass
class Table:
    """Columns of raw cells (None where the cell is missing), in file order."""

    columns: dict[str, list[str | None]]
    source: str

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def numeric(self, name: str) -> bool:
        return _numeric(self.columns[name])

    def take(self, index: np.ndarray) -> "Table":
        return Table({k: [v[i] for i in index] for k, v in self.columns.items()}, self.source)


def parse_csv(text: str, source: str) -> Table:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{source} is empty: a CSV table needs a header row") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise UserError(f"{source}: the header needs unique, non-empty column names (got {header})")
    cells: list[list[str | None]] = [[] for _ in header]
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(f"{source}: line {line} has {len(row)} cells, the header {len(header)}")
        for column, cell in zip(cells, row):
            column.append(None if is_missing(cell) else cell.strip())
    if not cells or not cells[0]:
        raise UserError(f"{source} has a header but no rows")
    return Table(dict(zip(header, cells)), source)


def penguins_text() -> str:
    """The penguins CSV from the installed `palmerpenguins` package (a `train` extra)."""
    from importlib import resources

    try:
        return resources.files("palmerpenguins").joinpath("data", "penguins.csv").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        raise UserError("the default tabular data is the palmerpenguins package: pip install 'dnnzoo[train]' (or give --data FILE.csv)") from None


def load(path: Path | None) -> Table:
    """A user CSV file, or the embedded penguins table when `path` is None."""
    if path is None:
        return parse_csv(penguins_text(), PENGUINS)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--data {path}: no such file (the tabular family reads a CSV file with a header row)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--data {path}: not readable as UTF-8 text ({exc})") from None
    return parse_csv(text, str(path))


def label_text(cell: str) -> str:
    """A class label as shown: integer-valued numbers without a trailing .0 ("1.0" -> "1")."""
    try:
        number = float(cell)
    except ValueError:
        return cell
    return str(int(number)) if number.is_integer() else cell


def infer_task(table: Table, target: str) -> str:
    """classification for a text target or a few integer codes; regression for other numbers."""
    values = [v for v in table.columns[target] if v is not None]
    if not _numeric(values):
        return "classification"
    numbers = {float(v) for v in values}
    return "classification" if len(numbers) <= MAX_CLASS_CODES and all(n.is_integer() for n in numbers) else "regression"


def split(n: int, fraction: float, seed: int, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) row indices: `fraction` held out, stratified by `labels` when every class has two rows."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise UserError(f"a split fraction must be between 0 and 1 (exclusive), got {fraction}")
    held = max(1, math.ceil(fraction * n))
    stratify = None
    if labels is not None:
        counts = np.unique(labels, return_counts=True)[1]
        if counts.min() >= 2 and min(held, n - held) >= len(counts):
            stratify = labels
    if n - held < 2:
        raise UserError(f"{n} rows are too few to hold out {fraction:.0%} and still train")
    kept, out = train_test_split(np.arange(n), test_size=held, random_state=seed, stratify=stratify)
    return np.sort(kept), np.sort(out)

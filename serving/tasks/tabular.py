"""Predict with a tabular model: rows (column -> text, number or missing) or CSV text in, classes or values out.

The model's inputs are its columns (config.pbtxt: TYPE_FP32 for numbers, TYPE_STRING for text, each
[1] per row), so the rows are checked against the config before anything runs: an unknown column,
a column left out, or text that is not a number in a numeric column is INVALID_ARGUMENT naming the
row and the column. Missing cells become NaN (numbers) or the empty string (text), which the graph
maps to its missing slot; which CSV cells count as missing comes from the model folder's schema
file (`dnnzoo.tabular.schema_file`), the list training used.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from protos import contract
from serving.errors import InvalidInput, Unsupported
from serving.limits import FLOAT32_MAX, shown
from serving.tasks.catalog import Catalog
from serving.tasks.classification import ClassScore

TASK = contract.TABULAR
SERVICE = "Predict"
MISSING = None  # a cell value meaning "missing"
SHOWN_COLUMNS = 12  # column names listed in an error message, at most
MAX_COLUMN_VALUES = 1000  # values of one text column that Columns answers (the most frequent)


@dataclass(frozen=True)
class Row:
    label: str
    classes: list[ClassScore]
    value: float


@dataclass(frozen=True)
class Predicted:
    model: str
    version: str
    kind: str
    target: str
    rows: list[Row]


def _listed(names: Sequence[str]) -> str:
    more = f", … ({len(names)} in all)" if len(names) > SHOWN_COLUMNS else ""
    return ", ".join(shown(n) for n in names[:SHOWN_COLUMNS]) + more


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool
    mean: float = math.nan  # numeric: the training rows' mean and standard deviation
    std: float = math.nan
    values: tuple[str, ...] = ()  # text: the vocabulary training saw, most frequent first


@dataclass(frozen=True)
class Columns:
    model: str
    version: str
    kind: str
    target: str
    columns: list[Column]
    missing_tokens: list[str]


@dataclass(frozen=True)
class Schema:
    """What serving reads of a tabular model's schema file (export/graphs/tabular.py writes it)."""

    missing_tokens: frozenset[str]
    numeric: dict[str, tuple[float, float]]  # column -> (mean, std) of the training rows
    vocabularies: dict[str, tuple[str, ...]]  # text column -> its values, most frequent first


def _schema(catalog: Catalog, handle) -> Schema:
    """The model's schema file, read and checked once per version (a model folder may be hostile:
    anything but what export writes is refused, never a 500); a model without one has none."""

    def read() -> Schema:
        name = handle.parameter(contract.TABULAR_SCHEMA_FILE)
        if not name:
            return Schema(frozenset({""}), {}, {})
        try:
            document = json.loads(catalog.plane.side_file(handle, name))
            return Schema(
                frozenset(_texts(document.get("missing_tokens", [""]))),
                {_text_of(c["name"]): (float(c["mean"]), float(c["std"])) for c in _items(document.get("numeric", []))},
                {_text_of(c["name"]): tuple(_texts(c["vocabulary"]))[:MAX_COLUMN_VALUES] for c in _items(document.get("categorical", []))},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            raise Unsupported(f"model {handle.name!r}: its schema file {name!r} is not the JSON export writes") from None

    return catalog.cached(handle, "tabular:schema", read)


def _items(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise TypeError("not a list of objects")
    return value


def _texts(value) -> list[str]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return [_text_of(item) for item in value]


def _text_of(value) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def missing_tokens(catalog: Catalog, handle) -> frozenset[str]:
    """The cells training read as missing, from the model's schema file."""
    return _schema(catalog, handle).missing_tokens


def describe(catalog: Catalog, model: str, version: str) -> Columns:
    """The model's columns as a form needs them (inputs from its config, the rest from its schema file)."""
    handle = catalog.find(model, version, TASK, "Columns")
    schema = _schema(catalog, handle)
    found = []
    for tensor in handle.spec.inputs:
        if tensor.datatype.name == "FP32":
            mean, std = schema.numeric.get(tensor.name, (math.nan, math.nan))
            found.append(Column(tensor.name, True, mean, std))
        else:
            found.append(Column(tensor.name, False, values=schema.vocabularies.get(tensor.name, ())))
    kind = handle.parameter(contract.TABULAR_KIND, "classification")
    tokens = sorted(t for t in schema.missing_tokens if t)
    return Columns(handle.name, handle.version, kind, handle.parameter(contract.TABULAR_TARGET, ""), found, tokens)


def parse_csv(text: str) -> list[dict[str, str]]:
    """CSV text with a header row -> rows as column -> cell text. Any line ending (\n, \r\n, \r)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise InvalidInput(f"{SERVICE}: the CSV payload has no header row")
        header = [h.strip() for h in header]
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise InvalidInput(f"{SERVICE}: the CSV header names {', '.join(map(repr, repeated))[:200]} more than once")
        rows = []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                raise InvalidInput(f"{SERVICE}: CSV line {reader.line_num} has {len(cells)} cells, the header {len(header)}")
            rows.append(dict(zip(header, (c.strip() for c in cells))))
    except csv.Error as exc:  # an unterminated quote, a cell over the csv module's field limit, a NUL
        raise InvalidInput(f"{SERVICE}: the CSV payload cannot be read at line {reader.line_num}: {exc}") from None
    return rows


def _text(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def columns(rows: Sequence[Mapping[str, object]], inputs, missing: frozenset[str]) -> dict[str, np.ndarray]:
    """Row maps -> one [N, 1] array per model input (float32 NaN-for-missing, or text), checked."""
    names = [t.name for t in inputs]
    known = set(names)
    arrays = {t.name: (np.empty((len(rows), 1), np.float32) if t.datatype.name == "FP32" else np.empty((len(rows), 1), dtype=object)) for t in inputs}
    for i, row in enumerate(rows):
        unknown = [c for c in row if c not in known]
        if unknown:
            raise InvalidInput(f"{SERVICE}: row {i}: unknown column {shown(unknown[0])}; the model's columns are {_listed(names)}")
        absent = [n for n in names if n not in row]
        if absent:
            raise InvalidInput(f"{SERVICE}: row {i}: no value for column {shown(absent[0])} (a missing value is sent as missing, null in JSON, "
                               f"or an empty CSV cell); the model's columns are {_listed(names)}")  # fmt: skip
        for tensor in inputs:
            value = row[tensor.name]
            if tensor.datatype.name == "FP32":
                arrays[tensor.name][i, 0] = _number(value, missing, i, tensor.name)
            else:
                arrays[tensor.name][i, 0] = "" if value is MISSING else _text(value)
    return arrays


def _number(value, missing: frozenset[str], row: int, column: str) -> float:
    """A numeric cell as the model's float32: NaN for a missing one; an infinite number, or one beyond
    float32's range, is refused (it would turn every probability of the row into NaN)."""
    if value is MISSING:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if not isinstance(value, int) or abs(value) <= FLOAT32_MAX else math.inf
    else:
        text = str(value).strip()
        if text in missing:
            return math.nan
        try:
            number = float(text)
        except ValueError:
            raise InvalidInput(f"{SERVICE}: row {row}: column {shown(column)} is numeric; got {shown(text)}") from None
    if abs(number) > FLOAT32_MAX:
        raise InvalidInput(f"{SERVICE}: row {row}: column {shown(column)} holds {shown(str(value))}, outside float32's finite range")
    return number


async def predict(catalog: Catalog, model: str, version: str, rows: Sequence[Mapping[str, object]] | None, csv_text: str = "",
                  top_k: int | None = None, deadline: float | None = None) -> Predicted:  # fmt: skip
    if rows and csv_text:
        raise InvalidInput(f"{SERVICE}: send rows or a CSV payload, not both")
    handle = catalog.find(model, version, TASK, SERVICE)
    table = parse_csv(csv_text) if csv_text else list(rows or [])
    if not table:
        raise InvalidInput(f"{SERVICE}: no rows to predict")
    catalog.cap("max_rows", len(table), SERVICE, "rows in one call")
    if top_k is not None and top_k < 1:
        raise InvalidInput(f"{SERVICE}: top_k must be at least 1, got {top_k}")
    inputs = handle.spec.inputs
    arrays = columns(table, inputs, missing_tokens(catalog, handle))
    kind = handle.parameter(contract.TABULAR_KIND, "classification")
    output = handle.parameter(contract.TABULAR_OUTPUT, "probabilities" if kind == "classification" else "value")
    values = np.asarray((await catalog.run(handle, arrays, [output], deadline))[output], np.float64)
    target = handle.parameter(contract.TABULAR_TARGET, "")
    if kind != "classification":
        answers = [Row("", [], float(v)) for v in values.reshape(len(table), -1)[:, 0]]
        return Predicted(handle.name, handle.version, kind, target, answers)
    labels = catalog.labels(handle, output, values.shape[1])
    k = min(top_k or values.shape[1], values.shape[1])
    answers = []
    for probabilities in values:
        order = np.argsort(-probabilities, kind="stable")[:k]
        scores = [ClassScore(labels[c], int(c), float(probabilities[c])) for c in order]
        answers.append(Row(scores[0].label, scores, math.nan))
    return Predicted(handle.name, handle.version, kind, target, answers)

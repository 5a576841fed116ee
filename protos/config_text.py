"""config.pbtxt as text, and the one table of tensor datatypes that export and serving share.

A model config is Triton's ``ModelConfig`` message in protobuf text format. Parsing is strict, as in
Triton (an unknown field is an error, not something to skip), so a config that parses here also
loads there. The datatype table ties together the four spellings of one element type that meet in
this project: the config's ``DataType`` enum (``TYPE_FP32``), the Open Inference Protocol string
(``FP32``), the numpy dtype of the decoded tensor (``float32``) and ONNX's element type (``FLOAT``,
``tensor(float)`` in ONNX Runtime). Keeping it in one place means export writes the types serving
expects. Nothing here imports torch or onnxruntime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from google.protobuf import text_format

from .model_config_pb2 import DataType, ModelConfig


def parse_config(text: str, source: str = "config.pbtxt") -> ModelConfig:
    """Parse config.pbtxt text; a ValueError names ``source``, the line and column, and shows the line."""
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as error:
        line, column = error.GetLine(), error.GetColumn()
        detail = re.sub(r"^\d+:\d+ : ", "", str(error))
        if line is None:
            raise ValueError(f"{source}: {detail}") from None
        lines = text.splitlines()
        shown = f"\n    {lines[line - 1].strip()}" if 0 < line <= len(lines) else ""
        raise ValueError(f"{source}: line {line}, column {column}: {detail}{shown}") from None


def format_config(config: ModelConfig) -> str:
    """Text format in field-number order, maps sorted by key, `dims: [1, 28, 28]`: same config, same text."""
    return text_format.MessageToString(config, as_utf8=True, use_short_repeated_primitives=True)


@dataclass(frozen=True)
class Datatype:
    """One element type in every spelling; ``itemsize`` is None for BYTES (length-prefixed elements)."""

    config: int  # model_config_pb2.DataType value
    name: str  # Open Inference Protocol datatype string
    numpy: np.dtype | None  # None for BF16: numpy has no bfloat16
    itemsize: int | None
    onnx: int  # onnx.TensorProto.DataType value (the graph's elem_type)
    onnxruntime: str  # what onnxruntime's NodeArg.type reports

    @property
    def config_name(self) -> str:
        return DataType.Name(self.config)


def _row(config: str, name: str, numpy: str | None, itemsize: int | None, onnx: int, ort: str) -> Datatype:
    return Datatype(DataType.Value(config), name, None if numpy is None else np.dtype(numpy), itemsize, onnx, ort)


DATATYPES: tuple[Datatype, ...] = (
    _row("TYPE_BOOL", "BOOL", "bool", 1, 9, "tensor(bool)"),
    _row("TYPE_UINT8", "UINT8", "uint8", 1, 2, "tensor(uint8)"),
    _row("TYPE_UINT16", "UINT16", "uint16", 2, 4, "tensor(uint16)"),
    _row("TYPE_UINT32", "UINT32", "uint32", 4, 12, "tensor(uint32)"),
    _row("TYPE_UINT64", "UINT64", "uint64", 8, 13, "tensor(uint64)"),
    _row("TYPE_INT8", "INT8", "int8", 1, 3, "tensor(int8)"),
    _row("TYPE_INT16", "INT16", "int16", 2, 5, "tensor(int16)"),
    _row("TYPE_INT32", "INT32", "int32", 4, 6, "tensor(int32)"),
    _row("TYPE_INT64", "INT64", "int64", 8, 7, "tensor(int64)"),
    _row("TYPE_FP16", "FP16", "float16", 2, 10, "tensor(float16)"),
    _row("TYPE_FP32", "FP32", "float32", 4, 1, "tensor(float)"),
    _row("TYPE_FP64", "FP64", "float64", 8, 11, "tensor(double)"),
    _row("TYPE_STRING", "BYTES", "object", None, 8, "tensor(string)"),
    _row("TYPE_BF16", "BF16", None, 2, 16, "tensor(bfloat16)"),
)


def _lookup(kind: str, value: object, rows: dict) -> Datatype:
    try:
        return rows[value]
    except (KeyError, TypeError):
        names = [key for key in rows if isinstance(key, str)] or [str(key) for key in rows]
        known = ", ".join(names)
        raise ValueError(f"unknown {kind} datatype {value!r}; known: {known}") from None


_BY_CONFIG = {row.config: row for row in DATATYPES} | {row.config_name: row for row in DATATYPES}
_BY_NAME = {row.name: row for row in DATATYPES}
_BY_ONNX = {row.onnx: row for row in DATATYPES} | {row.onnxruntime: row for row in DATATYPES}
_BY_NUMPY = {row.numpy: row for row in DATATYPES if row.numpy is not None}


def from_config(data_type: int | str) -> Datatype:
    """From a ModelConfig data_type: the enum value (``DataType.TYPE_FP32``) or its name."""
    return _lookup("config", data_type, _BY_CONFIG)


def from_name(name: str) -> Datatype:
    """From an Open Inference Protocol datatype string such as ``"FP32"`` or ``"BYTES"``."""
    return _lookup("protocol", name, _BY_NAME)


def from_onnx(elem_type: int | str) -> Datatype:
    """From an ONNX elem_type (``onnx.TensorProto.FLOAT``) or an onnxruntime type (``"tensor(float)"``)."""
    return _lookup("ONNX", elem_type, _BY_ONNX)


def from_numpy(dtype: np.dtype | type | str) -> Datatype:
    """From a numpy dtype; any object, bytes or str array is BYTES (elements travel length-prefixed)."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"{dtype!r} is not a numpy dtype") from None
    if resolved.kind in "OSU":
        return _BY_NAME["BYTES"]
    return _lookup("numpy", resolved, _BY_NUMPY)

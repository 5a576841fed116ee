"""Small ONNX models and a model repository built with onnx.helper (no torch) for serving tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto as T
from onnx import helper as h

LABELS = ["zero", "one", "two", "three"]
HOLD_DELAY_US = 60_000_000  # "held" models: a batch only runs when full (or on shutdown)


def _save(graph, path: Path) -> None:
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def doubler_graph(width: int = 4, factor: float = 2.0):
    """x [N,width] FP32 -> y = x * factor, probabilities = softmax(x)."""
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", width])
    y = h.make_tensor_value_info("y", T.FLOAT, ["N", width])
    p = h.make_tensor_value_info("probabilities", T.FLOAT, ["N", width])
    k = h.make_tensor("k", T.FLOAT, [], [factor])
    nodes = [h.make_node("Mul", ["x", "k"], ["y"]), h.make_node("Softmax", ["x"], ["probabilities"], axis=1)]
    return h.make_graph(nodes, "doubler", [x], [y, p], [k])


def plus_one_graph():
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 2])
    y = h.make_tensor_value_info("y", T.FLOAT, ["N", 2])
    one = h.make_tensor("one", T.FLOAT, [], [1.0])
    return h.make_graph([h.make_node("Add", ["x", "one"], ["y"])], "plus_one", [x], [y], [one])


def uint8_graph():
    """images [N,3] UINT8 -> total [N,1] FP32 (sum of the pixels)."""
    x = h.make_tensor_value_info("images", T.UINT8, ["N", 3])
    y = h.make_tensor_value_info("total", T.FLOAT, ["N", 1])
    axes = h.make_tensor("axes", T.INT64, [1], [1])
    nodes = [h.make_node("Cast", ["images"], ["f"], to=T.FLOAT), h.make_node("ReduceSum", ["f", "axes"], ["total"], keepdims=1)]
    return h.make_graph(nodes, "uint8_sum", [x], [y], [axes])


def int64_graph():
    """No batch dimension (max_batch_size 0): v [2,2] INT64 -> tripled [2,2] INT64."""
    x = h.make_tensor_value_info("v", T.INT64, [2, 2])
    y = h.make_tensor_value_info("tripled", T.INT64, [2, 2])
    k = h.make_tensor("k", T.INT64, [], [3])
    return h.make_graph([h.make_node("Mul", ["v", "k"], ["tripled"])], "int64_triple", [x], [y], [k])


def strings_graph():
    x = h.make_tensor_value_info("text", T.STRING, ["N", 1])
    y = h.make_tensor_value_info("echo", T.STRING, ["N", 1])
    return h.make_graph([h.make_node("Identity", ["text"], ["echo"])], "echo", [x], [y])


def lookup_graph():
    """ids [N,-1] INT64 -> same [N,-1] INT64: an index input of any length, as word2vec's ids."""
    x = h.make_tensor_value_info("ids", T.INT64, ["N", "L"])
    y = h.make_tensor_value_info("same", T.INT64, ["N", "L"])
    return h.make_graph([h.make_node("Identity", ["ids"], ["same"])], "lookup", [x], [y])


LOOKUP_RANGE = (0, 99)  # the valid ids the lookup model declares
LOOKUP_MAX_ELEMENTS = 4096  # its own cap on one request, below the server's

CONFIGS = {
    "doubler": """
name: "doubler"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "y" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "probabilities" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" }
]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { kind: KIND_CPU count: 2 } ]
""",
    "merger": f"""
name: "merger"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: {HOLD_DELAY_US} }}
""",
    "held": f"""
name: "held"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: {HOLD_DELAY_US} default_queue_policy {{ max_queue_size: 2 }} }}
""",
    "pixels": """
name: "pixels"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "images" data_type: TYPE_UINT8 dims: [ 3 ] } ]
output [ { name: "total" data_type: TYPE_FP32 dims: [ 1 ] } ]
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
""",
    "fixed": """
name: "fixed"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "v" data_type: TYPE_INT64 dims: [ 2, 2 ] } ]
output [ { name: "tripled" data_type: TYPE_INT64 dims: [ 2, 2 ] } ]
""",
    "strings": """
name: "strings"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "text" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "echo" data_type: TYPE_STRING dims: [ 1 ] } ]
dynamic_batching { }
""",
    "lookup": f"""
name: "lookup"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "ids" data_type: TYPE_INT64 dims: [ -1 ] }} ]
output [ {{ name: "same" data_type: TYPE_INT64 dims: [ -1 ] }} ]
parameters {{ key: "dnnzoo.input.ids.range" value {{ string_value: "{LOOKUP_RANGE[0]},{LOOKUP_RANGE[1]}" }} }}
parameters {{ key: "dnnzoo.max_request_elements" value {{ string_value: "{LOOKUP_MAX_ELEMENTS}" }} }}
""",
    "corrupt": """
name: "corrupt"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
""",
    "badconfig": """
name: "badconfig"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] no_such_field: 1 } ]
""",
}
GRAPHS = {
    "doubler": doubler_graph,
    "merger": plus_one_graph,
    "held": plus_one_graph,
    "pixels": uint8_graph,
    "fixed": int64_graph,
    "strings": strings_graph,
    "lookup": lookup_graph,
}
HEALTHY = tuple(GRAPHS)
BROKEN = ("corrupt", "badconfig")


def write_model(root: Path, name: str, version: int = 1, graph=None, config: str | None = None) -> Path:
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config if config is not None else CONFIGS[name], encoding="utf-8")
    if name == "doubler":
        (folder / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    _save((graph or GRAPHS[name])(), folder / str(version) / "model.onnx")
    return folder


def add_version_atomically(folder: Path, version: int, graph) -> None:
    """As export does: write beside, then rename into place, so a polling server never sees half."""
    staging = folder / f".staging-{version}"
    _save(graph, staging / "model.onnx")
    os.replace(staging, folder / str(version))


def build_repository(root: Path) -> Path:
    root = Path(root)
    for name in HEALTHY:
        write_model(root, name)
    corrupt = root / "corrupt"
    (corrupt / "1").mkdir(parents=True)
    (corrupt / "config.pbtxt").write_text(CONFIGS["corrupt"], encoding="utf-8")
    (corrupt / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    (root / "badconfig" / "1").mkdir(parents=True)
    (root / "badconfig" / "config.pbtxt").write_text(CONFIGS["badconfig"], encoding="utf-8")
    shutil.copy(root / "doubler" / "1" / "model.onnx", root / "badconfig" / "1" / "model.onnx")
    return root

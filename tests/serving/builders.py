"""Small ONNX models and a model repository built with onnx.helper (no torch) for serving tests."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

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


def plus_one_graph(batch: int | str = "N"):
    """x [batch,2] FP32 -> y = x + 1; an int `batch` fixes the first dimension, as an export without a
    dynamic batch dimension does."""
    x = h.make_tensor_value_info("x", T.FLOAT, [batch, 2])
    y = h.make_tensor_value_info("y", T.FLOAT, [batch, 2])
    one = h.make_tensor("one", T.FLOAT, [], [1.0])
    return h.make_graph([h.make_node("Add", ["x", "one"], ["y"])], "plus_one", [x], [y], [one])


def tile_graph():
    """x [1,4] FP32, reps [2] INT64 -> y = Tile(x, reps): an answer as large as the caller asks."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4])
    reps = h.make_tensor_value_info("reps", T.INT64, [2])
    y = h.make_tensor_value_info("y", T.FLOAT, ["R", "C"])
    return h.make_graph([h.make_node("Tile", ["x", "reps"], ["y"])], "tile", [x, reps], [y])


TILE_CONFIG = """
name: "tile"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1, 4 ] }, { name: "reps" data_type: TYPE_INT64 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
"""


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
    # plus_one with a plain config (the adaptive plan, no queue delay); not in the shared repository
    "plain": """
name: "plain"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { }
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


def unpadded_conv_graph(kernel: int):
    """image [N,1,H,W] FP32 (H and W set by each request) -> mean [N,1,1,1] of a kernel x kernel
    convolution without padding: it runs only on images at least `kernel` pixels high and wide, as a
    CNN exported with a dynamic height and width does."""
    x = h.make_tensor_value_info("image", T.FLOAT, ["N", 1, "H", "W"])
    y = h.make_tensor_value_info("mean", T.FLOAT, ["N", 1, 1, 1])
    w = numpy_helper.from_array(np.full((1, 1, kernel, kernel), 1.0 / kernel**2, np.float32), "w")
    nodes = [h.make_node("Conv", ["image", "w"], ["c"]), h.make_node("GlobalAveragePool", ["c"], ["mean"])]
    return h.make_graph(nodes, "unpadded_conv", [x], [y], [w])


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


# -- a word2vec pair: NAME (ids -> vectors) and its companion NAME_neighbors, as export writes them ---

WORDS = ["king", "queen", "man", "woman", "child", "crown"]
WORD_VECTORS = np.random.default_rng(7).standard_normal((len(WORDS), 3)).astype(np.float32)
WORD_UNIT = WORD_VECTORS / np.linalg.norm(WORD_VECTORS, axis=1, keepdims=True)
VOCAB_TEXT = "".join(f"{w}\n" for w in WORDS)
VOCAB_HASH = hashlib.sha256(VOCAB_TEXT.encode()).hexdigest()[:16]
EXPORT_ID = "0123456789abcdef"


def word_lookup_graph():
    """ids [N,1] INT64 -> vectors, unit_vectors [N,D] FP32 (rows of two tables)."""
    dim = WORD_VECTORS.shape[1]
    ids = h.make_tensor_value_info("ids", T.INT64, ["N", 1])
    outs = [h.make_tensor_value_info(n, T.FLOAT, ["N", dim]) for n in ("vectors", "unit_vectors")]
    inits = [numpy_helper.from_array(WORD_VECTORS, "table"), numpy_helper.from_array(WORD_UNIT, "unit"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]  # fmt: skip
    nodes = []
    for table, out in (("table", "vectors"), ("unit", "unit_vectors")):
        nodes += [h.make_node("Gather", [table, "ids"], [f"{out}_rows"], axis=0), h.make_node("Squeeze", [f"{out}_rows", "axis1"], [out])]
    return h.make_graph(nodes, "word_lookup", [ids], outs, inits)


def word_neighbors_graph():
    """queries [Q,D], k [1] -> top-k ids and cosine scores over WORDS."""
    dim = WORD_VECTORS.shape[1]
    inputs = [h.make_tensor_value_info("queries", T.FLOAT, ["Q", dim]), h.make_tensor_value_info("k", T.INT64, [1])]
    outputs = [h.make_tensor_value_info("ids", T.INT64, ["Q", "K"]), h.make_tensor_value_info("scores", T.FLOAT, ["Q", "K"])]
    nodes = [
        h.make_node("LpNormalization", ["queries"], ["unit_queries"], axis=1, p=2),
        h.make_node("MatMul", ["unit_queries", "unit_t"], ["cosines"]),
        h.make_node("TopK", ["cosines", "k"], ["scores", "ids"], axis=-1),
    ]
    return h.make_graph(nodes, "word_neighbors", inputs, outputs, [numpy_helper.from_array(np.ascontiguousarray(WORD_UNIT.T), "unit_t")])


def _parameters_text(parameters: dict[str, str | None]) -> str:
    return "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in parameters.items() if v is not None)


def write_word_pair(root: Path, name: str, main: dict[str, str | None] | None = None,
                    neighbors: dict[str, str | None] | None = None) -> None:  # fmt: skip
    """`name` and `name_neighbors` with export's facts; `main`/`neighbors` override parameters (None drops one)."""
    dim = WORD_VECTORS.shape[1]
    shared = {"dnnzoo.vocab_file": "vocab.txt", "dnnzoo.vocab_size": str(len(WORDS)), "dnnzoo.vector_size": str(dim),
              "dnnzoo.vocab.lowercase": "true", "dnnzoo.vocab_hash": VOCAB_HASH, "dnnzoo.export_id": EXPORT_ID}  # fmt: skip
    main_parameters = {"dnnzoo.task": "word_vectors", "dnnzoo.companion.neighbors": f"{name}_neighbors",
                       "dnnzoo.input.ids.range": f"0,{len(WORDS) - 1}", **shared, **(main or {})}  # fmt: skip
    neighbor_parameters = {"dnnzoo.task": "word_neighbors", "dnnzoo.companion_of": name, "dnnzoo.max_k": str(len(WORDS)),
                           **shared, **(neighbors or {})}  # fmt: skip
    lookup = f"""
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "ids" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "vectors" data_type: TYPE_FP32 dims: [ {dim} ] }}, {{ name: "unit_vectors" data_type: TYPE_FP32 dims: [ {dim} ] }} ]
""" + _parameters_text(main_parameters)
    neighbours = f"""
name: "{name}_neighbors"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ {{ name: "queries" data_type: TYPE_FP32 dims: [ -1, {dim} ] }}, {{ name: "k" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "ids" data_type: TYPE_INT64 dims: [ -1, -1 ] }}, {{ name: "scores" data_type: TYPE_FP32 dims: [ -1, -1 ] }} ]
""" + _parameters_text(neighbor_parameters)
    for folder_name, config, graph in ((name, lookup, word_lookup_graph), (f"{name}_neighbors", neighbours, word_neighbors_graph)):
        folder = write_model(root, folder_name, graph=graph, config=config)
        (folder / "vocab.txt").write_text(VOCAB_TEXT, encoding="utf-8")

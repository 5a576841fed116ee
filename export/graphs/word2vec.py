"""Word2Vec: `NAME` maps `ids` INT64 [N,1] to `vectors` and `unit_vectors` FP32 [N,D]; the companion
`NAME_neighbors` maps `queries` FP32 [Q,D] and `k` INT64 [1] to the top-k `ids` and cosine `scores`
over the whole vocabulary.

The neighbour graph is written with onnx.helper rather than traced: k is an input, and a traced
`torch.topk` would freeze it into a constant. Queries are L2-normalised inside the graph, so a client
may send a sum of unit vectors (an analogy, as gensim's most_similar forms it) as it is. k is not
batched, so that model has max_batch_size 0 and its dims are full shapes. Both folders carry
`vocab.txt` (word id i on line i), the tokenisation facts serving must repeat, and `dnnzoo.vocab_hash`
(of vocab.txt), which serving compares before it maps the neighbour ids through the main model's
vocabulary. `dnnzoo.input.ids.range` bounds the ids, so a server refuses an id past the vocabulary
before it reaches the graph.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from protos import contract

from dnnzoo.errors import UserError
from export.graphs.common import fact, rebuild
from export.spec import ExportSpec, TensorSpec
from training import word2vec, word2vec_eval

EPSILON = 1e-12
MAX_BATCH = 256
VOCAB_HASH_CHARS = 16


def vocab_hash(vocab_file: bytes) -> str:
    """sha256 of vocab.txt's bytes, hex, cut to 16 characters: enough to tell two vocabularies apart."""
    return hashlib.sha256(vocab_file).hexdigest()[:VOCAB_HASH_CHARS]


class Lookup(nn.Module):
    def __init__(self, model: word2vec.SkipGram):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vectors = self.model(ids[:, 0])
        return vectors, vectors / vectors.norm(dim=1, keepdim=True).clamp(min=EPSILON)


def neighbour_graph(unit: np.ndarray, opset: int) -> onnx.ModelProto:
    """queries [Q,D], k [1] -> ids [Q,k] INT64, scores [Q,k] FP32: TopK(normalised queries · unitᵀ)."""
    dim = unit.shape[1]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(unit.T.astype(np.float32)), "unit_vectors_t"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(EPSILON, np.float32), "epsilon"),
    ]
    nodes = [
        helper.make_node("Mul", ["queries", "queries"], ["squares"]),
        helper.make_node("ReduceSum", ["squares", "axis1"], ["sum_squares"], keepdims=1),
        helper.make_node("Sqrt", ["sum_squares"], ["norms"]),
        helper.make_node("Max", ["norms", "epsilon"], ["safe_norms"]),
        helper.make_node("Div", ["queries", "safe_norms"], ["unit_queries"]),
        helper.make_node("MatMul", ["unit_queries", "unit_vectors_t"], ["cosines"]),
        helper.make_node("TopK", ["cosines", "k"], ["scores", "ids"], axis=-1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes, "word_neighbors",
        [helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["queries", dim]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["queries", "k"]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["queries", "k"])],
        initializer=inits,
    )  # fmt: skip
    imports = [helper.make_opsetid("", opset)]
    # The oldest IR version that carries this opset: a newer one than ONNX Runtime knows would not load.
    return helper.make_model(graph, opset_imports=imports, ir_version=helper.find_min_ir_version_for(imports))


def neighbour_reference(unit: np.ndarray):
    """The same computation in PyTorch: the parity reference for the hand-built graph."""
    matrix = torch.from_numpy(unit.astype(np.float32))

    def run(case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        queries = torch.from_numpy(case["queries"])
        queries = queries / queries.norm(dim=1, keepdim=True).clamp(min=EPSILON)
        scores, ids = torch.topk(queries @ matrix.T, int(case["k"][0]), dim=1)
        return {"ids": ids.numpy(), "scores": scores.numpy()}

    return run


def specs(checkpoint: dict, run_dir: Path) -> list[ExportSpec]:
    model = rebuild(word2vec, checkpoint)
    vocab = [str(w) for w in fact(checkpoint, "vocab")]
    vectors = model.vectors.detach().numpy()
    size, dim = vectors.shape
    if len(vocab) != size:
        raise UserError(f"the checkpoint's vocabulary has {len(vocab)} words but its embedding {size} rows")
    if any("\n" in w or "\r" in w for w in vocab):
        raise UserError("a vocabulary word contains a line break and cannot go into vocab.txt")
    unit = word2vec_eval.unit_rows(vectors)
    vocab_file = "".join(f"{w}\n" for w in vocab).encode("utf-8")
    extra = checkpoint.get("extra", {})
    text = {
        contract.VOCAB_FILE_KEY: contract.VOCAB_FILE,
        contract.VOCAB_HASH: vocab_hash(vocab_file),
        contract.VOCAB_SIZE: str(size),
        contract.VECTOR_SIZE: str(dim),
        contract.VOCAB_LOWERCASE: str(bool(extra.get("lowercase", True))).lower(),
        contract.VOCAB_UNICODE_NORMALIZATION: str(extra.get("unicode_normalisation", "NFKC")),
        contract.VOCAB_TOKEN_PATTERN: str(extra.get("token_pattern", "")),
    }

    def ids(n: int) -> dict[str, np.ndarray]:
        return {"ids": np.random.default_rng(n).integers(0, size, size=(n, 1), dtype=np.int64)}

    def queries(n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(50 + n)
        rows = unit[rng.integers(0, size, size=n)] + 0.1 * rng.standard_normal((n, dim))
        return {"queries": rows.astype(np.float32), "k": np.array([min(10, size)], np.int64)}

    lookup = ExportSpec(
        suffix="",
        module=Lookup(model).eval(),
        inputs=[TensorSpec("ids", np.int64, (1,))],
        outputs=[TensorSpec("vectors", np.float32, (dim,)), TensorSpec("unit_vectors", np.float32, (dim,))],
        max_batch_size=MAX_BATCH,
        samples=ids,
        side_files={contract.VOCAB_FILE: vocab_file},
        parameters={contract.TASK: contract.WORD_VECTORS, contract.input_range_key("ids"): f"0,{size - 1}", **text},
    )
    neighbours = ExportSpec(
        suffix="_neighbors",
        graph=lambda opset: neighbour_graph(unit, opset),
        inputs=[TensorSpec("queries", np.float32, (-1, dim)), TensorSpec("k", np.int64, (1,))],
        outputs=[TensorSpec("ids", np.int64, (-1, -1)), TensorSpec("scores", np.float32, (-1, -1))],
        max_batch_size=0,
        samples=queries,
        reference=neighbour_reference(unit),
        side_files={contract.VOCAB_FILE: vocab_file},
        parameters={contract.TASK: contract.WORD_NEIGHBORS, contract.MAX_K: str(size), **text},
    )
    return [lookup, neighbours]

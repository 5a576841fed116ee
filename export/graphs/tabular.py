"""Tabular: one input per raw column (text as BYTES/tensor(string) [N,1], numbers FP32 [N,1], NaN or a
missing token for a missing cell) -> `probabilities` [N,C] and `label` BYTES [N,1], or `value` [N,1].

The vocabularies are inside the graph: each text column goes through an ONNX-ML `LabelEncoder`
whose keys are the vocabulary (slot i), the rare training values (their hashed OOV bucket) and the
missing tokens (the missing slot), with every other string defaulting to the first OOV bucket: the
rule of training.tabular_encoding, which the PyTorch reference applies too, so parity holds on
unseen and missing values. ONNX has no string hash, hence the fixed slot for never-seen values.
The network itself (standardisation, missing indicators, one-hot/embeddings, MLP, softmax) is traced
from PyTorch; this module builds the string front and the label back around it.

The folder also holds what a person reads: `labels.txt`, one `vocab.<i>.<column>.txt` per text
column (line k = slot k, OOV buckets and the missing slot marked) and `tabular.json` (every column,
its statistics or vocabulary, and the rule).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from dnnzoo.errors import UserError
from export.convert import torch_to_onnx
from export.graphs.common import fact, labels_file, rebuild
from export.spec import ExportSpec, TensorSpec
from protos import contract
from training import tabular
from training.data.tables import MISSING_TOKENS
from training.tabular_encoding import Schema

TASK = contract.TABULAR
MAX_BATCH = 256
ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3  # LabelEncoder-2: keys_strings/values_int64s and keys_int64s/values_strings, which ONNX Runtime runs
CORE_NUMBERS, CORE_INDICES = "dnnzoo_numbers", "dnnzoo_indices"
SCHEMA_FILE = "tabular.json"
UNSEEN_SAMPLE = "dnnzoo-unseen-category"


class Core(nn.Module):
    """The trained network on the tensors it takes, whichever of the two the table has: softmax or values."""

    def __init__(self, model: tabular.TabularNet, numbers: bool, indices: bool, classification: bool):
        super().__init__()
        self.model, self.numbers, self.indices, self.classification = model, numbers, indices, classification

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        tensors = list(tensors)
        numbers = tensors.pop(0) if self.numbers else None
        indices = tensors.pop(0) if self.indices else None
        out = self.model(numbers, indices)
        return torch.softmax(out, dim=-1) if self.classification else out


def vocab_file_name(index: int, column: str) -> str:
    return f"vocab.{index}.{re.sub(r'[^A-Za-z0-9_.-]', '_', column)}.txt"


def vocab_text(column) -> bytes:
    lines = [*column.vocabulary, *(f"[OOV bucket {b}]" for b in range(column.oov_buckets)), "[missing]"]
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def schema_text(schema: Schema, task: str, target: str, labels: list[str]) -> bytes:
    doc = {
        "task": task, "target": target, "labels": labels,
        "rule": "text cell -> its vocabulary slot; a rare training value -> its hashed OOV bucket (crc32 mod buckets, listed under rare); "
                "any other string -> the first OOV bucket (slot = len(vocabulary)); a missing token -> the last slot. "
                "Numbers: (x - mean) / std, NaN -> 0 plus a missing indicator.",
        "missing_tokens": list(MISSING_TOKENS),
        "numeric": [{"name": c.name, "mean": c.mean, "std": c.std} for c in schema.numeric],
        "categorical": [{"name": c.name, "vocabulary": c.vocabulary, "oov_buckets": c.oov_buckets, "rare": c.rare,
                         "missing_slot": c.missing_index, "unseen_slot": c.unseen_index, "embedding_dim": c.embedding_dim,
                         "file": vocab_file_name(j, c.name)} for j, c in enumerate(schema.categorical)],
    }  # fmt: skip
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _front_and_back(core: onnx.ModelProto, schema: Schema, labels: list[str], output: str, opset: int) -> onnx.ModelProto:
    """Raw column inputs -> the core's tensors; probabilities -> a `label` string output."""
    nodes = []
    numbers = [c.name for c in schema.numeric]
    if numbers:
        nodes.append(helper.make_node("Concat", numbers, [CORE_NUMBERS], axis=1) if len(numbers) > 1 else helper.make_node("Identity", numbers, [CORE_NUMBERS]))
    slots = []
    for j, column in enumerate(schema.categorical):
        mapping = column.mapping()
        keys = sorted(mapping)
        name = f"dnnzoo_slots_{j}"
        nodes.append(helper.make_node("LabelEncoder", [column.name], [name], domain=ML_DOMAIN, keys_strings=keys,
                                      values_int64s=[mapping[k] for k in keys], default_int64=column.unseen_index))  # fmt: skip
        slots.append(name)
    if slots:
        nodes.append(helper.make_node("Concat", slots, [CORE_INDICES], axis=1) if len(slots) > 1 else helper.make_node("Identity", slots, [CORE_INDICES]))
    graph = core.graph
    inputs = [helper.make_tensor_value_info(c.name, TensorProto.FLOAT, ["batch", 1]) for c in schema.numeric]
    inputs += [helper.make_tensor_value_info(c.name, TensorProto.STRING, ["batch", 1]) for c in schema.categorical]
    outputs = list(graph.output)
    if labels:
        nodes_back = [
            helper.make_node("ArgMax", [output], ["dnnzoo_class"], axis=1, keepdims=1),
            helper.make_node("LabelEncoder", ["dnnzoo_class"], ["label"], domain=ML_DOMAIN, keys_int64s=list(range(len(labels))),
                             values_strings=labels, default_string=""),
        ]  # fmt: skip
        outputs.append(helper.make_tensor_value_info("label", TensorProto.STRING, ["batch", 1]))
    else:
        nodes_back = []
    merged = helper.make_graph(nodes + list(graph.node) + nodes_back, "tabular", inputs, outputs, initializer=list(graph.initializer))
    imports = [helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ML_OPSET)]
    return helper.make_model(merged, opset_imports=imports, ir_version=core.ir_version)


def _sample_rows(checkpoint: dict) -> dict[str, list]:
    rows = fact(checkpoint, "sample_rows")
    if not rows or not all(rows.values()):
        raise UserError("the tabular checkpoint holds no sample rows for the parity check; retrain it")
    return rows


def _case(schema: Schema, rows: dict[str, list], pick: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Raw column arrays of the chosen sample rows; with `rng`, a third of the cells unseen or missing."""
    case = {}
    for column in schema.numeric:
        values = np.array([np.nan if rows[column.name][i] is None else float(rows[column.name][i]) for i in pick], np.float32)
        if rng is not None:
            values[rng.random(len(values)) < 0.3] = np.nan
        case[column.name] = values.reshape(-1, 1)
    for column in schema.categorical:
        cells = ["" if rows[column.name][i] is None else rows[column.name][i] for i in pick]
        if rng is not None:
            for i in range(len(cells)):
                draw = rng.random()
                if draw < 0.2:
                    cells[i] = f"{UNSEEN_SAMPLE}-{i}"
                elif draw < 0.35:
                    cells[i] = MISSING_TOKENS[int(rng.integers(0, len(MISSING_TOKENS)))]
        case[column.name] = np.array(cells, dtype=object).reshape(-1, 1)
    return case


def reference(model: tabular.TabularNet, schema: Schema, output: str, labels: list[str]):
    """PyTorch on raw columns, strings mapped to slots by training.tabular_encoding: what the graph must compute."""

    def run(case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(case.values())))
        numbers = np.concatenate([case[c.name] for c in schema.numeric], axis=1) if schema.numeric else np.zeros((rows, 0), np.float32)
        indices = np.stack([c.encode([str(v) for v in case[c.name][:, 0]]) for c in schema.categorical], axis=1) if schema.categorical \
            else np.zeros((rows, 0), np.int64)  # fmt: skip
        with torch.no_grad():
            out = model(torch.from_numpy(numbers), torch.from_numpy(indices))
        if not labels:
            return {output: out.numpy()}
        probabilities = torch.softmax(out, dim=-1).numpy()
        return {output: probabilities, "label": np.array([labels[i] for i in probabilities.argmax(1)], dtype=object).reshape(-1, 1)}

    return run


def comparator(scale: float):
    """Parity on probabilities (and the label they imply), or on values in units of the target's std:
    a regression value of 4,000 g carries float32 rounding of 5e-4 g, which an absolute 1e-4 would fail."""
    return lambda expected, actual: compare(expected, actual, scale)


def compare(expected, actual, scale: float = 1.0) -> tuple[float, str | None]:
    """Largest float difference in the target's own units, and the first disagreement."""
    from export.parity import compare_arrays

    labels_want, labels_got = expected.get("label"), actual.get("label")
    floats = {k: v / np.float32(scale) for k, v in expected.items() if k != "label"}
    scaled, problem = compare_arrays(floats, {k: np.asarray(v) / np.float32(scale) if k in floats else v for k, v in actual.items()})
    largest = scaled * scale
    if problem:
        return largest, problem
    if labels_want is not None:
        got = np.asarray(labels_got).astype(str)
        want = labels_want.astype(str)
        if got.shape != want.shape:
            return largest, f"output 'label' has shape {list(got.shape)}, expected {list(want.shape)}"
        # A label may differ only where two classes tie within the float tolerance.
        bad = np.flatnonzero(got[:, 0] != want[:, 0])
        if bad.size:
            p = np.sort(expected[next(iter(floats))][bad], axis=1)
            if np.any(p[:, -1] - p[:, -2] > 1e-4):
                return largest, f"output 'label' differs at row {int(bad[0])} ({got[bad[0], 0]!r}, expected {want[bad[0], 0]!r})"
    return largest, None


def specs(checkpoint: dict, run_dir: Path) -> list[ExportSpec]:
    model = rebuild(tabular, checkpoint)
    schema = Schema.from_plain(fact(checkpoint, "schema"))
    task, target = fact(checkpoint, "task"), str(fact(checkpoint, "target"))
    classification = task == "classification"
    labels = [str(label) for label in fact(checkpoint, "labels")] if classification else []
    output = "probabilities" if classification else "value"
    reserved = {output, "label", CORE_NUMBERS, CORE_INDICES}
    clash = [name for name in schema.names if name in reserved or name.startswith("dnnzoo_")]
    if clash:
        raise UserError(f"column {clash[0]!r} has a name the exported graph uses itself; rename it in the CSV and retrain")
    rows = _sample_rows(checkpoint)
    count = len(next(iter(rows.values())))

    core_inputs = ([TensorSpec(CORE_NUMBERS, np.float32, (len(schema.numeric),))] if schema.numeric else []) + \
        ([TensorSpec(CORE_INDICES, np.int64, (len(schema.categorical),))] if schema.categorical else [])  # fmt: skip
    encode = reference(model, schema, output, labels)

    def core_samples(n: int) -> dict[str, np.ndarray]:
        case = _case(schema, rows, np.arange(n) % count)
        parts = {}
        if schema.numeric:
            parts[CORE_NUMBERS] = np.concatenate([case[c.name] for c in schema.numeric], axis=1)
        if schema.categorical:
            parts[CORE_INDICES] = np.stack([c.encode([str(v) for v in case[c.name][:, 0]]) for c in schema.categorical], axis=1)
        return parts

    core_out = TensorSpec(output, np.float32, (len(labels),) if classification else (1,))
    core = ExportSpec(suffix="", module=Core(model, bool(schema.numeric), bool(schema.categorical), classification).eval(),
                     inputs=core_inputs, outputs=[core_out], max_batch_size=MAX_BATCH, samples=core_samples)  # fmt: skip

    def samples(n: int) -> dict[str, np.ndarray]:
        return _case(schema, rows, np.random.default_rng(n).integers(0, count, size=n))

    unseen = _case(schema, rows, np.arange(min(count, 64)), np.random.default_rng(7))
    inputs = [TensorSpec(c.name, np.float32, (1,)) for c in schema.numeric] + [TensorSpec(c.name, np.object_, (1,)) for c in schema.categorical]
    outputs = [TensorSpec(output, np.float32, core_out.dims, label_filename=contract.LABELS_FILE if labels else None)]
    side = {SCHEMA_FILE: schema_text(schema, task, target, labels)}
    side |= {vocab_file_name(j, c.name): vocab_text(c) for j, c in enumerate(schema.categorical)}
    params = {contract.TASK: TASK, contract.TABULAR_KIND: task, contract.TABULAR_TARGET: target,
              contract.TABULAR_SCHEMA_FILE: SCHEMA_FILE, contract.TABULAR_OUTPUT: output}  # fmt: skip
    if labels:
        outputs.append(TensorSpec("label", np.object_, (1,)))
        side[contract.LABELS_FILE] = labels_file(labels)
        params |= {contract.LABELS_FILE_KEY: contract.LABELS_FILE, contract.CLASSES: str(len(labels))}
    return [
        ExportSpec(
            suffix="",
            graph=lambda opset: _front_and_back(torch_to_onnx(core, opset), schema, labels, output, opset),
            inputs=inputs,
            outputs=outputs,
            max_batch_size=MAX_BATCH,
            samples=samples,
            reference=encode,
            compare=comparator(1.0 if classification else float(checkpoint["model_args"].get("target_std", 1.0))),
            side_files=side,
            parameters=params,
            extra_cases=[unseen],
        )
    ]

"""torch module -> checked ONNX model.

Why the TorchScript-based exporter (`dynamo=False`): the dynamo exporter needs `onnxscript`, which
is not a dependency here, and the families are plain feed-forward and recurrent modules that trace
without data-dependent control flow; parity checks on every export decide whether that holds.

The module must be in eval mode before export, and is checked again afterwards: an exporter or a
wrapper that restores a `train` flag recursively would leave BatchNorm on batch statistics, and the
graph would differ from the module that was checked.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch

from dnnzoo.errors import UserError
from export.options import DEFAULT_OPSET  # noqa: F401  (the converter's default, read as convert.DEFAULT_OPSET)
from export.spec import ExportSpec

PRODUCER = "dnnzoo"


def _in_training_mode(module: torch.nn.Module) -> list[str]:
    return [name or "<root>" for name, m in module.named_modules() if m.training]


def _dynamic_axes(spec: ExportSpec, tensors: list[tuple[str, tuple[int, ...]]]) -> dict[str, dict[int, str]]:
    """Axis 0 is the batch when the model batches; every -1 in a config dim is dynamic too."""
    axes: dict[str, dict[int, str]] = {}
    offset = 1 if spec.max_batch_size > 0 else 0
    for name, dims in tensors:
        named = {0: "batch"} if offset else {}
        named |= {i + offset: f"{name}_dim{i + offset}" for i, d in enumerate(dims) if d < 0}
        if named:
            axes[name] = named
    return axes


def torch_to_onnx(spec: ExportSpec, opset: int) -> onnx.ModelProto:
    module = spec.module
    busy = _in_training_mode(module)
    if busy:
        raise ValueError(f"module not in eval mode before export: {', '.join(busy[:5])}")
    example = spec.samples(2)
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[t.name])) for t in spec.inputs)
    input_names = [t.name for t in spec.inputs]
    # Outputs that `finish` replaces have no config dims: only their batch axis is declared.
    outputs = [(n, ()) for n in spec.export_outputs] if spec.export_outputs else [(t.name, t.dims) for t in spec.outputs]
    output_names = [n for n, _ in outputs]
    axes = _dynamic_axes(spec, [(t.name, t.dims) for t in spec.inputs] + outputs)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation and tracer constants on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # "variable length with LSTM ... different batch size": parity on batches of 1 and 16 checks it.
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*", category=UserWarning)
        with torch.no_grad():
            torch.onnx.export(
                module, args, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                output_names=output_names, dynamic_axes=axes, do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
            )  # fmt: skip
    busy = _in_training_mode(module)
    if busy:
        raise ValueError(f"module left in training mode by export: {', '.join(busy[:5])}")
    return onnx.load_from_string(buffer.getvalue())


def build(spec: ExportSpec, opset: int, doc: str = "") -> tuple[onnx.ModelProto, onnx.ModelProto | None]:
    """The spec's graph as a checked ONNX model: converted or built, finished, checked, shape-inferred.

    Also returns the checked graph as it was before `finish` (None without one), so the pipeline can
    check the traced part on its own, where its outputs are still continuous (boxes and scores
    before NMS) and parity there is not hidden by a threshold.
    """
    try:
        model = torch_to_onnx(spec, opset) if spec.module is not None else spec.graph(opset)
        before = None
        if spec.finish is not None:
            before = onnx.ModelProto()
            before.CopyFrom(model)
            model = spec.finish(model, opset)
    except UserError:
        raise
    except Exception as exc:  # the exporters raise many types; name the opset, which is the usual cause
        raise UserError(f"ONNX conversion failed at opset {opset}: {str(exc).strip().splitlines()[0]}") from exc
    model.producer_name = PRODUCER
    model.doc_string = doc
    return check(model), (check(before) if before is not None else None)


def check(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker with full checks, then strict shape inference; returns the inferred model."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise UserError(f"the exported graph is not valid ONNX: {str(exc).strip().splitlines()[0]}") from exc

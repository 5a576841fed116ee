"""Reduced-precision variants of an exported model: FP16 and INT8, each judged on held-out data.

Why these converters: INT8 is ONNX Runtime's own static quantisation (`onnxruntime.quantization`,
QDQ format, per-channel weights, calibrated on the run's training inputs), so the runtime that
serves the model is the one that chose its scales; FP16 is ONNX Runtime's float16 tool (the
converter onnxconverter-common ships, maintained inside onnxruntime), with `keep_io_types` so the
inputs and outputs keep their types and the in-graph pre- and post-processing (uint8 pixels in,
`NonMaxSuppression`, which its block list keeps in float) stays as it is.

A variant is written only when its held-out figure, measured through ONNX Runtime exactly as the
FP32 model's is, loses at most the family's stated tolerance (`export.precision_data`), unless the
caller allows a degraded one; either way the figures go into the variant's config.pbtxt parameters
(keys below, in one place) and `dnnzoo repo check --report` prints them.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx

from dnnzoo.errors import UserError
from export.spec import Arrays
from protos import contract

PRECISIONS = ("fp32", "fp16", "int8")
# The config parameters a variant carries (the lead moves them into protos/contract.py).
KEY = contract.PRECISION
KEY_OF = contract.PRECISION_OF
KEY_METRIC = contract.PRECISION_METRIC
KEY_HELD_OUT = contract.PRECISION_HELD_OUT
KEY_TOLERANCE = contract.PRECISION_TOLERANCE
KEY_DEGRADED = contract.PRECISION_DEGRADED
KEY_LATENCY_THREADS = contract.PRECISION_LATENCY_THREADS
# Per precision P (fp32 and the variant's own): dnnzoo.precision.P.metric, .bytes, .latency_ms.b1, .latency_ms.b32
FIGURES = ("metric", "bytes", "latency_ms.b1", "latency_ms.b32")
LATENCY_BATCHES = (1, 32)
LATENCY_THREADS = 1  # one intra-op thread: comparable on a shared machine, and what one instance gets under load
LATENCY_REPEATS = 15

# ONNX Runtime's quantisable compute: weights per channel, activations per tensor. Everything else
# (pixel scaling, the YOLO decode, softmax, NMS) stays in float between DequantizeLinear nodes.
INT8_OPS = ("Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "MaxPool", "ReduceMean", "Relu")
# A convolution whose reduction (in-channels x kernel area) is this small stays in float: the
# 1-channel 3x3 stem's int8 kernel ran slower than its float one (9 products per output do not pay
# for quantising), and keeping it in float also kept the pixels' first layer exact.
MIN_INT8_REDUCTION = 32


def key(precision: str, figure: str) -> str:
    return f"{KEY}.{precision}.{figure}"


Runner = Callable[[Arrays], Arrays]


@dataclass(frozen=True)
class Judge:
    """How one family's variants are judged: a held-out metric through ONNX Runtime, its tolerance,
    and the training inputs that calibrate INT8 scales."""

    metric: str
    higher_is_better: bool
    tolerance: float  # the largest loss of `metric` against FP32 that is accepted
    held_out: str  # what `evaluate` measures on, in words
    evaluate: Callable[[Runner], float]
    calibration: Callable[[], Iterable[Arrays]]

    def loss(self, fp32: float, variant: float) -> float:
        return fp32 - variant if self.higher_is_better else variant - fp32


@dataclass
class Figures:
    metric: float
    bytes: int
    latency_ms: dict[int, float]


@dataclass
class Variant:
    precision: str
    onnx: bytes
    figures: Figures
    fp32: Figures
    degraded: bool

    def parameters(self, judge: Judge, of: str) -> dict[str, str]:
        params = {KEY: self.precision, KEY_OF: of, KEY_METRIC: judge.metric, KEY_HELD_OUT: judge.held_out,
                  KEY_TOLERANCE: format(judge.tolerance, "g"), KEY_DEGRADED: str(self.degraded).lower(),
                  KEY_LATENCY_THREADS: str(LATENCY_THREADS)}  # fmt: skip
        for precision, figures in (("fp32", self.fp32), (self.precision, self.figures)):
            params[key(precision, "metric")] = format(figures.metric, ".6g")
            params[key(precision, "bytes")] = str(figures.bytes)
            for batch, ms in figures.latency_ms.items():
                params[key(precision, f"latency_ms.b{batch}")] = format(ms, ".4g")
        return params


def session(model_bytes: bytes, threads: int = LATENCY_THREADS):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own Fail/NotImplemented types
        raise UserError(f"ONNX Runtime cannot load the converted graph: {str(exc).strip().splitlines()[0][:300]}") from exc


def runner(model_bytes: bytes) -> Runner:
    sess = session(model_bytes)
    names = [o.name for o in sess.get_outputs()]
    return lambda case: dict(zip(names, sess.run(names, case)))


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float tensors to float16 inside; inputs, outputs and the default block list (NMS, TopK...) kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return convert_float_to_float16(copy, keep_io_types=True)


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader protocol over an iterable of input batches."""

    def __init__(self, batches: Iterable[Arrays]):
        self._batches = iter(batches)

    def get_next(self) -> Arrays | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # the MinMax calibrator reads once
        pass


@dataclass(frozen=True)
class Int8Recipe:
    """How `to_int8` quantises: the knobs of onnxruntime.quantization that change speed or accuracy
    on a CPU. benchmarks/int8_variants.py measures each against FP32 in one interleaved run; the
    defaults are the fastest within tolerance there (README, "Reduced precision")."""

    quant_format: str = "QDQ"  # "QOperator" writes QLinearConv directly: ORT fuses QDQ into the same kernels
    ops: tuple[str, ...] = INT8_OPS  # Conv/Gemm alone breaks the int8 chain at every Add and Relu (slower)
    reduce_range: bool = True  # full-range weights were no faster and lost more held-out mAP
    weight_type: str = "QInt8"  # QUInt8: u8xu8 kernels, slower
    activation_type: str = "QUInt8"
    per_channel: bool = True
    min_reduction: int = MIN_INT8_REDUCTION  # convolutions with a smaller reduction stay in float
    keep_last_gemm: bool = False  # leave the classifier's final Gemm in float
    # What follows the last Conv/Gemm/MatMul (the detector's box decode) stays float: int8 Adds there
    # cost a Quantize/Dequantize pair each and rounded the boxes; float was faster at batch 1 and 32.
    float_tail: bool = True
    preprocess: bool = True  # quant_pre_process: ORT's optimiser before quantising
    extra_options: tuple[tuple[str, object], ...] = ()


def to_int8(model: onnx.ModelProto, calibration: Iterable[Arrays], recipe: Int8Recipe | None = None) -> onnx.ModelProto:
    """Static quantisation: per-channel int8 weights, uint8 activations with MinMax scales from
    `calibration`. reduce_range (7-bit weights) because this machine's AVX2 has no VNNI: its u8×s8
    kernels add pairs of products in 16 bits, which full-range weights can saturate."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = recipe or INT8
    with tempfile.TemporaryDirectory(prefix="dnnzoo-int8-") as tmp:
        source, prepared, out = Path(tmp, "fp32.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        onnx.save(model, source)
        if recipe.preprocess:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        else:
            prepared = source
        graph = onnx.load(prepared)
        excluded = _small_convolutions(graph, recipe.min_reduction) + (_last_gemm(graph) if recipe.keep_last_gemm else [])
        excluded += _tail(graph) if recipe.float_tail else []
        quantize_static(
            str(prepared), str(out), _Reader(calibration), quant_format=QuantFormat[recipe.quant_format],
            per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
            activation_type=QuantType[recipe.activation_type], weight_type=QuantType[recipe.weight_type],
            op_types_to_quantize=list(recipe.ops), nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
            extra_options=dict(recipe.extra_options),
        )  # fmt: skip
        return onnx.load(out)


INT8 = Int8Recipe()  # what `--precision int8` writes


def _small_convolutions(model: onnx.ModelProto, min_reduction: int = MIN_INT8_REDUCTION) -> list[str]:
    weights = {i.name: i.dims for i in model.graph.initializer}
    small = []
    for node in model.graph.node:
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if dims is not None and len(dims) >= 3 and int(np.prod(dims[1:])) < min_reduction:
            small.append(node.name)
    return small


def _tail(model: onnx.ModelProto) -> list[str]:
    """The nodes after the last matrix product (graph order is topological): post-processing."""
    nodes = list(model.graph.node)
    last = max((i for i, node in enumerate(nodes) if node.op_type in ("Conv", "Gemm", "MatMul")), default=len(nodes))
    return [node.name for node in nodes[last + 1 :]]


def _last_gemm(model: onnx.ModelProto) -> list[str]:
    gemms = [node.name for node in model.graph.node if node.op_type in ("Gemm", "MatMul")]
    return gemms[-1:]


def latency_ms(model_bytes: list[bytes], sample: Callable[[int], Arrays], batches=LATENCY_BATCHES,
               repeats: int = LATENCY_REPEATS) -> list[dict[int, float]]:  # fmt: skip
    """Median CPU milliseconds per call of each model at each batch size.

    With one intra-op thread ONNX Runtime runs the whole graph on the calling thread, so that
    thread's CPU time is the model's cost, and it does not count the time a busy neighbour holds
    the core (wall time on this shared 2-core machine varied 2x between identical runs). The models
    are interleaved call by call, so what disturbance remains (caches) falls on all of them alike."""
    sessions = [session(b) for b in model_bytes]
    out: list[dict[int, list[float]]] = [{b: [] for b in batches} for _ in sessions]
    for batch in batches:
        feeds = sample(batch)
        for s in sessions:
            s.run(None, feeds)  # warm-up: kernels and arena
        for _ in range(repeats):
            for i, s in enumerate(sessions):
                started = time.thread_time()
                s.run(None, feeds)
                out[i][batch].append((time.thread_time() - started) * 1000)
    return [{b: statistics.median(times) for b, times in per.items()} for per in out]


def convert(precision: str, model: onnx.ModelProto, judge: Judge) -> onnx.ModelProto:
    if precision == "fp16":
        return to_fp16(model)
    if precision == "int8":
        return to_int8(model, judge.calibration())
    raise ValueError(f"no conversion to {precision}")


def make_variants(model: onnx.ModelProto, precisions: list[str], judge: Judge, sample: Callable[[int], Arrays],
                  allow_degraded: bool, name: str) -> list[Variant]:  # fmt: skip
    """Convert the checked FP32 model to each precision, judge each against FP32 on held-out data,
    and refuse (UserError) one that loses more than the tolerance unless `allow_degraded`."""
    fp32_bytes = model.SerializeToString()
    fp32_metric = judge.evaluate(runner(fp32_bytes))
    converted = []
    for precision in precisions:
        try:
            data = convert(precision, model, judge).SerializeToString()
        except UserError:
            raise
        except Exception as exc:  # the converters raise many types
            raise UserError(f"{name}: conversion to {precision} failed: {str(exc).strip().splitlines()[0][:300]}") from exc
        metric = judge.evaluate(runner(data))
        loss = judge.loss(fp32_metric, metric)
        degraded = loss > judge.tolerance
        if degraded and not allow_degraded:
            raise UserError(
                f"{name}_{precision}: {judge.metric} {metric:.4g} against FP32's {fp32_metric:.4g} on {judge.held_out} "
                f"loses {loss:.4g}, more than the tolerance {judge.tolerance:g}; nothing written (--allow-degraded writes it anyway)"
            )
        converted.append((precision, data, metric, degraded))
    timings = latency_ms([fp32_bytes] + [data for _, data, _, _ in converted], sample)
    fp32 = Figures(fp32_metric, len(fp32_bytes), timings[0])
    return [Variant(p, data, Figures(metric, len(data), t), fp32, degraded)
            for (p, data, metric, degraded), t in zip(converted, timings[1:])]  # fmt: skip


def report_rows(configs: dict[str, object]) -> list[list[str]]:
    """`dnnzoo repo check --report`: one row per (model, precision) whose config records figures:
    metric, its change against FP32, size, CPU latency at batch 1 and 32 and the speed-up at 32.
    `configs` maps model name -> parsed ModelConfig."""
    rows = []
    for name in sorted(configs):
        params = configs[name].parameters
        if KEY not in params:
            continue
        value = lambda k: params[k].string_value if k in params else ""  # noqa: E731
        own = value(KEY)
        fp32_metric, fp32_b32 = value(key("fp32", "metric")), value(key("fp32", "latency_ms.b32"))
        metric, b32 = value(key(own, "metric")), value(key(own, "latency_ms.b32"))
        delta = f"{float(metric) - float(fp32_metric):+.4f}" if own != "fp32" and metric and fp32_metric else ""
        speed = f"{float(fp32_b32) / float(b32):.2f}x" if b32 and fp32_b32 and float(b32) > 0 else ""
        size = value(key(own, "bytes"))
        rows.append([name, own, f"{value(KEY_METRIC)} {metric}", delta, f"{int(size) / 1024:.1f}" if size else "",
                     value(key(own, "latency_ms.b1")), b32, speed, value(KEY_DEGRADED) or "-"])  # fmt: skip
    return rows


REPORT_HEADER = ["model", "precision", "held-out metric", "vs fp32", "KiB", "CPU ms b1", "CPU ms b32", "b32 speed-up", "degraded"]


def report_table(configs: dict[str, object]) -> str:
    rows = report_rows(configs)
    if not rows:
        return "no model records precision figures (export with --precision fp32,int8 to judge variants)"
    table = [REPORT_HEADER] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(REPORT_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    note = f"CPU ms: median CPU time per call on one intra-op thread (dnnzoo.precision.latency_threads), measured at export"
    return "\n".join(lines + [note])

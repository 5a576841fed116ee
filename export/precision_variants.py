"""The export pipeline's side of reduced precision: which models an export writes, and the
folders and config parameters of its FP16/INT8 variants (NAME_fp16, NAME_int8 beside NAME)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from dnnzoo.errors import UserError
from export import precision, precision_data, repository
from export.spec import ExportSpec
from protos import contract

# Parameters of the FP32 model that do not describe its variant.
NOT_INHERITED = (contract.EXPORT_PARITY,)


@dataclass
class Request:
    precisions: list[str]  # the reduced ones, e.g. ["int8"]
    judge: precision.Judge
    allow_degraded: bool
    keep_fp32: bool  # fp32 was asked for too: the FP32 models are written beside the variants


def parse(text: str) -> tuple[str, ...]:
    """`--precision fp32,int8` -> ("fp32", "int8"), in the order given, each once."""
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [p for p in chosen if p not in precision.PRECISIONS]
    if unknown or not chosen:
        raise UserError(f"--precision {text!r}: choose from {', '.join(precision.PRECISIONS)}, comma-separated")
    return chosen


def requested(precisions: tuple[str, ...]) -> list[str]:
    unknown = [p for p in precisions if p not in precision.PRECISIONS]
    if unknown:
        raise UserError(f"unknown precision {unknown[0]!r}; choose from {', '.join(precision.PRECISIONS)}")
    return [p for p in precisions if p != "fp32"]


def judge_for(family: str, run_dir: Path, metrics: dict, checkpoint: dict) -> precision.Judge:
    return precision_data.judge(family, run_dir, metrics, checkpoint)


def variant_name(main: str, precision_name: str) -> str:
    return repository.check_name(f"{main}_{precision_name}")


def names(main: str, fp32_names: dict[str, str], request: Request | None) -> list[str]:
    """Every model folder the export writes."""
    if request is None:
        return list(fp32_names.values())
    variants = [variant_name(main, p) for p in request.precisions]
    return (list(fp32_names.values()) if request.keep_fp32 else []) + variants


def make(model: onnx.ModelProto, spec: ExportSpec, request: Request, main: str) -> list[precision.Variant]:
    if spec.max_batch_size < max(precision.LATENCY_BATCHES):
        raise UserError(f"{main}: its max_batch_size {spec.max_batch_size} is below the latency batch {max(precision.LATENCY_BATCHES)}")
    return precision.make_variants(model, request.precisions, request.judge, spec.samples, request.allow_degraded, main)


def fp32_parameters(variants: list[precision.Variant], judge: precision.Judge) -> dict[str, str]:
    """What the FP32 model's config records when it is judged beside its variants."""
    fp32 = variants[0].fp32
    params = {precision.KEY: "fp32", precision.KEY_METRIC: judge.metric, precision.KEY_HELD_OUT: judge.held_out,
              precision.KEY_LATENCY_THREADS: str(precision.LATENCY_THREADS),
              precision.key("fp32", "metric"): format(fp32.metric, ".6g"), precision.key("fp32", "bytes"): str(fp32.bytes)}  # fmt: skip
    for batch, ms in fp32.latency_ms.items():
        params[precision.key("fp32", f"latency_ms.b{batch}")] = format(ms, ".4g")
    return params


def folders(variants: list[precision.Variant], spec: ExportSpec, fp32_folder: repository.ModelFolder, base: dict[str, str],
            judge: precision.Judge, main: str, instance_kind: str) -> list[repository.ModelFolder]:  # fmt: skip
    """One model folder per variant: the FP32 model's tensors, side files and facts, its own graph
    and precision figures."""
    from export import config as model_config

    out = []
    for variant in variants:
        name = variant_name(main, variant.precision)
        params = {k: v for k, v in base.items() if k not in NOT_INHERITED} | variant.parameters(judge, main)
        folder = repository.ModelFolder(name, fp32_folder.version, "", variant.onnx, dict(spec.side_files))
        folder.config = model_config.config_text_of(model_config.model_config(name, spec, params, instance_kind))
        out.append(folder)
    return out


def judged(variant: precision.Variant, judge: precision.Judge) -> str:
    """One line for `dnnzoo export`: the variant's figures against FP32's."""
    speed = variant.fp32.latency_ms[32] / variant.figures.latency_ms[32] if variant.figures.latency_ms.get(32) else float("nan")
    flag = ", DEGRADED" if variant.degraded else ""
    return (f"{variant.precision}: {judge.metric} {variant.figures.metric:.4g} vs fp32 {variant.fp32.metric:.4g} on {judge.held_out}, "
            f"{speed:.2f}x fp32's speed at batch 32 on one CPU thread{flag}")  # fmt: skip

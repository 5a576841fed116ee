"""Export one training run: checkpoint -> ExportSpecs -> checked ONNX -> parity -> repository.

The steps run in that order for every model of the run (a main model and its companions) before
anything is written, so a failure at any step leaves the repository as it was. The models of one
run are written as one set and share `dnnzoo.export_id` (a hash of everything written), which
serving compares before it pairs a model with a companion.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from protos import contract

from dnnzoo.errors import UserError
from export import config as model_config
from export import convert, parity, precision_variants, repository
from export.families import DEFAULT_NAMES, graphs
from export.spec import Arrays, ExportSpec
from training import baselines
from training import checkpoint as checkpoints

EXPORT_ID_CHARS = 16


@dataclass
class Exported:
    name: str
    version: int
    path: Path  # the model.onnx written
    bytes: int
    parity_max_abs_diff: float
    task: str
    judged: str = ""  # a reduced-precision variant: its held-out figure against FP32's (replaces parity)


@dataclass
class Source:
    """Where the specs came from: recorded in each config's parameters."""

    family: str
    run_dir: Path
    metrics: dict
    digest: str


def module_reference(spec: ExportSpec, names: list[str] | None = None):
    """The PyTorch module itself, on the same numpy inputs, as named outputs."""
    names = names or [t.name for t in spec.outputs]

    def run(case: Arrays) -> Arrays:
        with torch.no_grad():
            outs = spec.module(*[torch.from_numpy(np.ascontiguousarray(case[t.name])) for t in spec.inputs])
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        return dict(zip(names, (o.numpy() for o in outs)))

    return run


def session_runner(model_bytes: bytes, threads: int = 1):
    """ONNX Runtime on the CPU, as a serving runtime would load the file."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UserError(f"ONNX Runtime cannot load the exported graph: {str(exc).strip().splitlines()[0]}") from exc
    names = [o.name for o in session.get_outputs()]

    def run(case: Arrays) -> Arrays:
        return dict(zip(names, session.run(names, case)))

    return run


def _metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise UserError(f"{run_dir} has no metrics.json: the training run did not finish")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc})") from None


def _scalar_parameters(prefix: str, values: dict) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or isinstance(value, (int, str)):
            out[f"{prefix}{key}"] = str(value)
        elif isinstance(value, float):
            out[f"{prefix}{key}"] = format(value, ".6g")
    return out


def _baseline_parameters(final: dict) -> dict[str, str]:
    """dnnzoo.baseline.<baseline>.<metric> = the baseline's figure and .<metric>.beaten = true|false: a
    model that lost to a trivial baseline says so in its config, where an operator looks."""
    out = {}
    for record in final.get(baselines.BASELINES, []):
        key = f"{contract.BASELINE_PREFIX}{record['baseline']}.{record['metric']}"
        out[key] = format(record["value"], ".6g")
        out[f"{key}.beaten"] = "true" if record["beats"] else "false"
    return out


def checkpoint_digest(run_dir: Path) -> str:
    return hashlib.sha256((Path(run_dir) / checkpoints.FILENAME).read_bytes()).hexdigest()


def export_id(folders: list[repository.ModelFolder]) -> str:
    """One id for the models of an export: equal exactly when their graphs and side files are."""
    digest = hashlib.sha256()
    for folder in folders:
        parts = [folder.name.encode(), folder.onnx]
        for filename in sorted(folder.side_files):
            parts += [filename.encode(), folder.side_files[filename]]
        for part in parts:  # length-prefixed, so no two different sets hash the same bytes
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()[:EXPORT_ID_CHARS]


def _parameters(spec: ExportSpec, source: Source, main: str, names: dict[str, str], opset: int,
                report: parity.Report, run_id: str) -> dict[str, str]:  # fmt: skip
    params = {
        contract.FAMILY: source.family,
        contract.EXPORT_ID: run_id,
        **spec.parameters,
        **_scalar_parameters(contract.METRICS_PREFIX, source.metrics.get("final", {})),
        **_baseline_parameters(source.metrics.get("final", {})),
        contract.SOURCE_RUN: source.run_dir.name,
        contract.SOURCE_PROFILE: str(source.metrics.get("profile", "")),
        contract.SOURCE_CHECKPOINT: source.digest,
        contract.EXPORT_OPSET: str(opset),
        contract.EXPORT_PARITY: format(report.max_abs_diff, ".3g"),
    }
    if spec.suffix:
        params[contract.COMPANION_OF] = main
    else:
        params |= {contract.companion_key(suffix.lstrip('_')): name for suffix, name in names.items() if suffix}
    return params


def export_run(run_dir: Path, repository_dir: Path, name: str | None = None, version: int | None = None,
               opset: int = convert.DEFAULT_OPSET, force: bool = False, instance_kind: str = "auto",
               precisions: tuple[str, ...] = ("fp32",), allow_degraded: bool = False) -> list[Exported]:  # fmt: skip
    """Export a run folder's checkpoint into the repository; returns what was written.

    `precisions` names the models written: fp32 is NAME, fp16 and int8 are NAME_fp16 and NAME_int8
    (export.precision), each judged on the run's held-out data before anything is written."""
    run_dir, repository_dir = Path(run_dir), Path(repository_dir)
    if not run_dir.is_dir():
        raise UserError(f"no run folder at {run_dir}")
    ckpt = checkpoints.load(run_dir)
    family = ckpt["family"]
    builder = graphs(family)
    metrics = _metrics(run_dir)
    main = repository.check_name(name or DEFAULT_NAMES[family])
    if version is not None and version < 1:
        raise UserError(f"--version must be a positive integer, not {version}")

    reduced = precision_variants.requested(precisions)
    judge = precision_variants.judge_for(family, run_dir, metrics, ckpt) if reduced else None  # refused before any work
    source = Source(family, run_dir, metrics, checkpoint_digest(run_dir))
    for record in baselines.lost(metrics.get("final", {})):
        print(f"WARNING: exporting {run_dir.name}: its {baselines.describe(record)}", file=sys.stderr)
    variants = precision_variants.Request(reduced, judge, allow_degraded, "fp32" in precisions) if reduced else None
    return export_specs(builder.specs(ckpt, run_dir), source, repository_dir, main, version, opset, force, instance_kind, variants)


def export_specs(specs: list[ExportSpec], source: Source, repository_dir: Path, main: str, version: int | None = None,
                 opset: int = convert.DEFAULT_OPSET, force: bool = False, instance_kind: str = "auto",
                 variants: "precision_variants.Request | None" = None) -> list[Exported]:  # fmt: skip
    """Convert, check and parity-test every spec, then write them all; nothing is written on any failure.

    With `variants`, the main model is also converted to each reduced precision and judged
    (export.precision_variants), and the FP32 models are written only when asked for too."""
    names = {spec.suffix: repository.check_name(main + spec.suffix) for spec in specs}
    written = precision_variants.names(main, names, variants)
    version = version or repository.next_version(repository_dir, written)
    repository.refuse_overwrite(repository_dir, written, version, force)

    built = []
    for spec in specs:
        model_name = names[spec.suffix]
        onnx_model, before = convert.build(spec, opset, doc=f"dnnzoo {source.family} model {model_name}, exported from {source.run_dir.name}")
        traced = None
        if before is not None and spec.module is not None:
            reference = module_reference(spec, spec.export_outputs)
            traced = parity.check(f"{model_name} (before post-processing)", reference, session_runner(before.SerializeToString()), spec.cases())
        data = onnx_model.SerializeToString()
        reference = spec.reference or module_reference(spec)
        report = parity.check(model_name, reference, session_runner(data), spec.cases(), spec.compare)
        if traced is not None:
            report = parity.Report(max(report.max_abs_diff, traced.max_abs_diff), report.cases + traced.cases)
        built.append((spec, repository.ModelFolder(model_name, version, "", data, spec.side_files), report))
        if variants is not None and not spec.suffix:
            made = precision_variants.make(onnx_model, spec, variants, main)

    run_id = export_id([folder for _, folder, _ in built])
    for spec, folder, report in built:
        params = _parameters(spec, source, main, names, opset, report, run_id)
        if variants is not None and not spec.suffix:
            params |= precision_variants.fp32_parameters(made, variants.judge)
        folder.config = model_config.config_text_of(model_config.model_config(folder.name, spec, params, instance_kind))
    if variants is not None:
        spec, fp32_folder, report = built[0]
        base = _parameters(spec, source, main, {}, opset, report, run_id)
        folders = precision_variants.folders(made, spec, fp32_folder, base, variants.judge, main, instance_kind)
        built = (built if variants.keep_fp32 else []) + [(spec, folder, report) for folder in folders]
        judged = {folder.name: precision_variants.judged(v, variants.judge) for folder, v in zip(folders, made)}

    paths = repository.write_all(repository_dir, [folder for _, folder, _ in built])
    judged = judged if variants is not None else {}
    return [
        Exported(folder.name, version, path, len(folder.onnx), report.max_abs_diff, spec.parameters.get(contract.TASK, ""),
                 judged.get(folder.name, ""))
        for (spec, folder, report), path in zip(built, paths)
    ]  # fmt: skip

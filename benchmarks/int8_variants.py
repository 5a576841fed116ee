"""INT8 quantisation recipes against FP32 on this CPU, in one interleaved run: speed-up at batch 1 and
32 and the held-out metric of each, so the recipe `--precision int8` uses is chosen by measurement.

Each recipe (export.precision.Int8Recipe) quantises the run's exported FP32 graph with its own
calibration (training images), is judged on the run's held-out data as `dnnzoo export` judges it,
then every model is timed call by call in turn: on one intra-op thread (the thread's CPU time, which
a busy neighbour does not inflate) and on the server's pool (all usable cores, wall time). With
--profile, ONNX Runtime's profiler gives each model's kernel time per operator at batch 32; it
times each node in wall time, so on a loaded machine a long float convolution is preempted more
often than a short int8 one: read its table for where each model's time goes, and the CPU-time
speed-ups for how the models compare.

    python benchmarks/int8_variants.py RUN [RUN ...] [--recipes a,b] [--repeats 15] [--profile RUNS]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.precision import kernel_ms_by_op, print_kernel_table  # noqa: E402 - one reading of ORT's profile
from export import convert, precision, precision_data  # noqa: E402
from export.families import graphs  # noqa: E402
from export.pipeline import _metrics  # noqa: E402
from training import checkpoint as checkpoints  # noqa: E402

CONV_ONLY = ("Conv", "Gemm", "MatMul")
R = precision.Int8Recipe
RECIPES: dict[str, precision.Int8Recipe] = {
    "default": precision.INT8,
    "conv-only": R(ops=CONV_ONLY),
    "qoperator": R(quant_format="QOperator"),
    "u8u8": R(weight_type="QUInt8", reduce_range=False),
    "s8s8": R(activation_type="QInt8", reduce_range=False),
    "full-range": R(reduce_range=False),
    "per-tensor": R(per_channel=False),
    "int8-stem": R(min_reduction=0),
    "float-gemm": R(keep_last_gemm=True),
    "int8-tail": R(float_tail=False),
    "no-preprocess": R(preprocess=False),
    "act-symmetric": R(extra_options=(("ActivationSymmetric", True),)),
    "keep-relu": R(extra_options=(("QDQKeepRemovableActivations", True),)),
}


def recipe(name: str) -> precision.Int8Recipe:
    """A named recipe, or several joined by '+' (each one's changes from the default, combined)."""
    changes = {}
    for part in name.split("+"):
        changed = RECIPES[part]
        changes |= {f.name: getattr(changed, f.name) for f in dataclasses.fields(changed)
                    if getattr(changed, f.name) != getattr(precision.INT8, f.name)}  # fmt: skip
    return dataclasses.replace(precision.INT8, **changes)


def _session(model: bytes, threads: int, profile: str = "") -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, profile
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _timed(models: list[bytes], sample, threads: int, batch: int, repeats: int) -> list[float]:
    """The first model's median ms per call, then each other's speed-up over it: the median over rounds
    of the two calls' ratio within a round. Models run interleaved call by call (CPU time on one
    thread, else wall), so a neighbour's burst falls on both calls of a ratio or on neither."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    sessions, feeds = [_session(m, threads) for m in models], sample(batch)
    for s in sessions:
        s.run(None, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeats):
        for i, s in enumerate(sessions):
            started = clock()
            s.run(None, feeds)
            times[i].append((clock() - started) * 1000)
    return [statistics.median(times[0])] + [statistics.median(a / b for a, b in zip(times[0], t)) for t in times[1:]]


def _profile(models: dict[str, bytes], sample, batch: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {n: _session(m, 1, f"{tmp}/{n}") for n, m in models.items()}
        feeds = sample(batch)
        for _ in range(runs + 1):
            for s in sessions.values():
                s.run(None, feeds)
        tables = {n: kernel_ms_by_op(s.end_profiling(), runs + 1) for n, s in sessions.items()}
    print(f"  kernel ms per call at batch {batch}, one thread (ORT profiler; wall time per node, median of {runs})")
    print_kernel_table({n: tables[n] for n in models}, rows=14, indent="    ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="classifier or detector run folders")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {', '.join(RECIPES)}, or several joined by '+'")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="the pool's threads (the server's)")
    parser.add_argument("--profile", type=int, default=0, metavar="RUNS", help="profile this many calls of each at batch 32")
    args = parser.parse_args()
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    print(f"load average {os.getloadavg()[0]:.2f}; onnxruntime {ort.__version__}; {len(os.sched_getaffinity(0))} cores")
    for run in args.runs:
        ckpt = checkpoints.load(run)
        family, metrics = ckpt["family"], _metrics(run)
        spec = graphs(family).specs(ckpt, run)[0]
        fp32, _ = convert.build(spec, convert.DEFAULT_OPSET)
        judge = precision_data.judge(family, run, metrics, ckpt)
        models = {"fp32": fp32.SerializeToString()}
        figures = {"fp32": judge.evaluate(precision.runner(models["fp32"]))}
        for name in names:
            try:
                models[name] = precision.to_int8(fp32, judge.calibration(), recipe(name)).SerializeToString()
            except Exception as exc:  # a recipe ORT cannot build is a result too
                print(f"  {name}: failed: {str(exc).splitlines()[0][:200]}")
                continue
            figures[name] = judge.evaluate(precision.runner(models[name]))
        ms = {(t, b): _timed(list(models.values()), spec.samples, t, b, args.repeats) for t in (1, args.threads) for b in (1, 32)}
        print(f"\n{run.name} ({family}): speed-up over fp32 (fp32 ms/call in brackets), {judge.metric} on {judge.held_out}")
        head = "".join(f"{f'{t} thr b{b}':>14s}" for t, b in ms)
        print(f"  {'recipe':16s}{head}{judge.metric:>10s}{'change':>9s}  within {judge.tolerance:g}")
        for i, name in enumerate(models):
            cells = "".join(f"{f'({v[0]:.3g} ms)':>14s}" if not i else f"{v[i]:13.2f}x" for v in ms.values())
            loss = judge.loss(figures["fp32"], figures[name])
            print(f"  {name:16s}{cells}{figures[name]:10.4f}{-loss:+9.4f}  {'yes' if loss <= judge.tolerance else 'NO'}")
        if args.profile:
            _profile(models, spec.samples, 32, args.profile)


if __name__ == "__main__":
    main()

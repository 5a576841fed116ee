"""FP32 against its INT8 (and FP16) variant on this CPU: where the time goes, from ONNX Runtime's own profiler.

`dnnzoo export RUN --precision fp32,fp16,int8` records each variant's held-out metric and CPU time per
call in its config (`dnnzoo repo check --report` prints them). This script explains those figures: it
runs each model of a repository that has variants on one intra-op thread, batch 32, with ORT's
profiler on, the models interleaved call by call, and prints the kernel time per operator type.

    python benchmarks/precision.py REPOSITORY [--batch 32] [--runs 40]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort


def _session(path: Path, prefix: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def print_kernel_table(tables: dict[str, dict[str, float]], rows: int, indent: str = "  ") -> None:
    """One column per model (its heading the dict key), one row per operator type, costliest first."""
    ops = sorted({op for t in tables.values() for op in t}, key=lambda op: -max(t.get(op, 0) for t in tables.values()))
    print(f"{indent}{'operator':26s}" + "".join(f"{name[:13]:>14s}" for name in tables))
    for op in ops[:rows]:
        print(f"{indent}{op:26s}" + "".join(f"{t.get(op, 0):14.3f}" for t in tables.values()))
    print(f"{indent}{'total':26s}" + "".join(f"{sum(t.values()):14.3f}" for t in tables.values()))


def kernel_ms_by_op(profile: str, runs: int) -> dict[str, float]:
    """Milliseconds per run spent in each operator type's kernels: each node's median over the runs
    (a neighbour's burst inflates some runs, not the median), summed by operator type."""
    per_node: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for event in json.loads(Path(profile).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node[(event["args"]["op_name"], event["name"])].append(event["dur"])
    per = collections.Counter()
    for (op, _), durations in per_node.items():
        per[op] += statistics.median(durations) * len(durations) / runs
    return {op: us / 1000 for op, us in per.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for folder in sorted(p for p in args.repository.iterdir() if p.is_dir() and not p.name.startswith(".")):
        base = folder.name.removesuffix("_int8").removesuffix("_fp16")
        groups[base].append(folder.name)
    with tempfile.TemporaryDirectory() as tmp:
        for base, names in groups.items():
            if len(names) < 2:
                continue
            sessions = {n: _session(max((args.repository / n).glob("*/model.onnx")), f"{tmp}/{n}") for n in names}
            first = next(iter(sessions.values())).get_inputs()[0]
            shape = [args.batch] + [d if isinstance(d, int) else 1 for d in first.shape[1:]]
            feeds = {first.name: np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)}
            for session in sessions.values():
                session.run(None, feeds)
            for _ in range(args.runs):
                for session in sessions.values():
                    session.run(None, feeds)
            tables = {n: kernel_ms_by_op(s.end_profiling(), args.runs + 1) for n, s in sessions.items()}
            print(f"\n{base}: kernel ms per run at batch {args.batch}, one thread (ORT profiler)")
            print_kernel_table({n.removeprefix(base) or "_fp32": tables[n] for n in names}, rows=12)


if __name__ == "__main__":
    main()

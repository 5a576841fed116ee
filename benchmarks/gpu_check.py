"""GPU against CPU on every model of a repository: outputs agree, and in-process throughput per precision.

For each model: the same inputs (random pixels for uint8 inputs, zeros for integer ids and sizes,
standard normal floats) through ONNX Runtime on the CPU and on `--provider` (cuda or tensorrt); the
largest difference of each float output is printed and the run fails when it exceeds the tolerance
(1e-3 plus 1e-3 relative; FP16/INT8 variants are compared with their own CPU run). Then in-process
items/s at batch 1 and 32 on the GPU provider, per model, so FP32, FP16 and INT8 variants sit side by side.

    python benchmarks/gpu_check.py REPOSITORY [--provider cuda|tensorrt] [--seconds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.repository import Repository
from serving.sessions import PREFERENCES, session_options

ATOL, RTOL = 1e-3, 1e-3


def inputs(spec, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    out = {}
    for tensor in spec.inputs:
        shape = ([batch] if spec.max_batch_size > 0 else []) + [1 if d == -1 else d for d in tensor.dims]
        dtype = tensor.datatype.numpy
        if dtype is None:
            out[tensor.name] = np.full(shape, "the", dtype=object)
        elif dtype == np.uint8:
            out[tensor.name] = rng.integers(0, 256, shape).astype(dtype)
        elif dtype.kind in "iu":
            out[tensor.name] = np.zeros(shape, dtype) + (1 if tensor.name in ("k", "horizon") else 0)
        else:
            out[tensor.name] = rng.standard_normal(shape).astype(dtype)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--provider", choices=("cuda", "tensorrt"), default="cuda")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    repository, failed = Repository(args.repository), 0
    for name in repository.scan():
        source = repository.read(name)
        if source.error or not source.versions:
            print(f"{name}: skipped ({source.error or 'no version'})")
            continue
        spec, path = source.spec, source.versions[max(source.versions)]
        cpu = ort.InferenceSession(str(path), session_options(spec), providers=["CPUExecutionProvider"])
        gpu = ort.InferenceSession(str(path), session_options(spec), providers=list(PREFERENCES[args.provider]))
        batch = min(4, spec.max_batch_size) if spec.max_batch_size > 0 else 0
        feeds = inputs(spec, batch or 1)
        worst, ok = 0.0, True
        for meta, a, b in zip(cpu.get_outputs(), cpu.run(None, feeds), gpu.run(None, feeds)):
            if np.asarray(a).dtype.kind == "f":
                diff = float(np.max(np.abs(a - b))) if a.size else 0.0
                worst = max(worst, diff)
                ok &= bool(np.allclose(a, b, atol=ATOL, rtol=RTOL))
            else:
                ok &= bool(np.array_equal(a, b))
        failed += not ok
        rates = []
        for size in ((1, 32) if spec.max_batch_size >= 32 else (1,)):
            feed = inputs(spec, size)
            for _ in range(5):
                gpu.run(None, feed)
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                gpu.run(None, feed)
                calls += 1
            rates.append(f"b{size} {calls * size / (time.perf_counter() - started):,.0f} items/s")
        print(f"{'ok  ' if ok else 'FAIL'} {name}: on {gpu.get_providers()[0]}, max |gpu - cpu| {worst:.3g}; in-process {', '.join(rates)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""IOBinding against plain `run`, on the session serving builds: same outputs, and items/s at batch 1 and 32.

The serving path (serving.sessions.LoadedSession) runs GPU sessions through an IOBinding, outputs
bound on the device and copied once to the host, and CPU sessions through plain `run`. This checks
both paths on the same session: outputs must agree (to 1e-6; the same kernels run), and the two are
timed in interleaved rounds (each round runs both, the order alternating) so that a noisy machine
moves both alike; the ratio bound/plain is what to read.

On a GPU it also asks whether this onnxruntime hands Python pinned host memory for the CUDA provider
(an OrtEpDevice's HOST_ACCESSIBLE memory; `OrtValue.ortvalue_from_numpy` offers no pinned device
type) and, where it does, times inputs bound from pinned buffers against plain host arrays.

    python benchmarks/io_binding.py REPOSITORY [--providers cpu|cuda|tensorrt] [--model NAME ...] [--seconds 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.gpu_check import inputs
from serving.repository import Repository
from serving.sessions import BOUND_RUN_OPTIONS, ProviderChoice, open_session


def rate(loaded, feed: dict[str, np.ndarray], rows: int, seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        loaded.run(dict(feed))
        calls += 1
    return calls * rows / (time.perf_counter() - started)


def pinned_probe(loaded, feed: dict[str, np.ndarray], seconds: float) -> str:
    """Whether pinned host memory is reachable from Python here, and what binding inputs from it gives."""
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "CUDAExecutionProvider"]
    info = devices[0].memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE) if devices else None
    if info is None:
        return "pinned: no CUDA device with HOST_ACCESSIBLE memory listed by get_ep_devices()"
    session, names = loaded.session, [t.name for t in loaded.spec.outputs]
    try:
        pinned = {}
        for name, array in feed.items():
            pinned[name] = ort.OrtValue.ortvalue_from_shape_and_type(list(array.shape), array.dtype.type, memory_info=info)
            pinned[name].update_inplace(array)
    except Exception as exc:  # noqa: BLE001 - the probe reports what this build does
        return f"pinned: allocation failed ({str(exc).splitlines()[0][:200]})"

    def run(from_pinned: bool) -> list[np.ndarray]:
        binding = session.io_binding()
        for name, array in feed.items():
            if from_pinned:
                pinned[name].update_inplace(array)  # the copy a server would make into its pinned buffer
                binding.bind_ortvalue_input(name, pinned[name])
            else:
                binding.bind_cpu_input(name, array)
        for name in names:
            binding.bind_output(name, "cuda", loaded.device or 0)
        session.run_with_iobinding(binding, BOUND_RUN_OPTIONS)
        return binding.copy_outputs_to_cpu()

    same = all(np.array_equal(a, b) for a, b in zip(run(True), run(False)))
    rates = {}
    for label, flag in (("host", False), ("pinned", True), ("host", False), ("pinned", True)):
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            run(flag)
            calls += 1
        rates.setdefault(label, []).append(calls / (time.perf_counter() - started))
    host, pin = statistics.median(rates["host"]), statistics.median(rates["pinned"])
    return f"pinned: {pin:,.0f} runs/s from pinned inputs, {host:,.0f} from host arrays (ratio {pin / host:.3f}); same outputs: {same}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--providers", choices=("cpu", "cuda", "tensorrt"), default="cpu")
    parser.add_argument("--model", action="append", help="models to run (default: every one without string tensors)")
    parser.add_argument("--seconds", type=float, default=1.0, help="per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    repository, choice, failed = Repository(args.repository), ProviderChoice(args.providers), 0
    for name in args.model or repository.scan():
        source = repository.read(name)
        if source.error or not source.versions:
            print(f"{name}: skipped ({source.error or 'no version'})")
            continue
        spec = source.spec
        if any(t.datatype.name == "BYTES" for t in (*spec.inputs, *spec.outputs)):
            print(f"{name}: skipped (string tensors cannot be bound)")
            continue
        loaded = open_session(source.versions[max(source.versions)], spec, choice, f"model {name!r}")
        plain, bound = replace(loaded, bind_outputs=False), replace(loaded, bind_outputs=True)
        sizes = (1, 32) if spec.max_batch_size >= 32 else (1,)
        for size in sizes:
            feed = inputs(spec, size)
            worst = 0.0
            for a, b in zip(plain.run(dict(feed)).values(), bound.run(dict(feed)).values()):
                if a.dtype.kind == "f":
                    worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
                elif not np.array_equal(a, b):
                    worst = float("inf")
            ok = worst <= 1e-6
            failed += not ok
            rates: dict[str, list[float]] = {"plain": [], "bound": []}
            for round_ in range(args.rounds):
                order = (("plain", plain), ("bound", bound)) if round_ % 2 == 0 else (("bound", bound), ("plain", plain))
                for label, variant in order:
                    rates[label].append(rate(variant, feed, size, args.seconds))
            p, q = statistics.median(rates["plain"]), statistics.median(rates["bound"])
            print(f"{'ok  ' if ok else 'FAIL'} {name} b{size} on {loaded.providers[0]}: max |bound - plain| {worst:.3g}; "
                  f"run {p:,.0f} items/s, IOBinding {q:,.0f} items/s, ratio {q / p:.3f}", flush=True)
            if loaded.providers[0] == "CUDAExecutionProvider":
                print(f"     {name} b{size} {pinned_probe(loaded, feed, args.seconds)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""ONNX Runtime (CPU) latency of every exported model against PyTorch eager on the same input.

    python benchmarks/onnx_vs_torch.py --repository model_repository --runs runs [--threads 1 2] [--batches 1 32]

Each model of the repository is rebuilt in PyTorch from the run folder its config names
(`dnnzoo.source.run` under --runs), with the same wrapper export traced (uint8 scaling, softmax,
decode; for the detector the training module's own decode + NMS; for the neighbour model the same
matmul + top-k). Both runtimes get the same thread count, and their calls are interleaved so noise
from a shared machine falls on both. Printed: median milliseconds per call and torch/onnxruntime.
OMP_WAIT_POLICY=PASSIVE (PyTorch) and allow_spinning=0 (ONNX Runtime) keep idle threads from spinning.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dnnzoo.openmp import passive_wait  # noqa: E402

passive_wait()  # before torch loads

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from export.families import graphs  # noqa: E402
from export.pipeline import module_reference  # noqa: E402
from protos.config_text import parse_config  # noqa: E402
from training import checkpoint  # noqa: E402


def torch_runner(repository: Path, name: str, runs: Path):
    """The PyTorch computation behind a repository model, and its input sampler."""
    config = parse_config((repository / name / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in config.parameters.items()}
    run_dir = runs / params["dnnzoo.source.run"]
    main = params.get("dnnzoo.companion_of", name)
    ckpt = checkpoint.load(run_dir)
    spec = next(s for s in graphs(ckpt["family"]).specs(ckpt, run_dir) if main + s.suffix == name)
    return spec.reference or module_reference(spec), spec.samples, config


def ort_runner(path: Path, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def median_ms(calls: list[float]) -> float:
    return statistics.median(calls) * 1000


def measure(a, b, feeds, seconds: float, warmup: int = 3) -> tuple[float, float]:
    """Interleaved timing of a(feeds) and b(feeds): median seconds of each."""
    for _ in range(warmup):
        a(feeds)
        b(feeds)
    times_a, times_b = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times_a) < 5:
        for fn, out in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn(feeds)
            out.append(time.perf_counter() - start)
    return median_ms(times_a), median_ms(times_b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing budget per (model, threads, batch)")
    parser.add_argument("--models", nargs="*", help="only these models")
    args = parser.parse_args()

    names = sorted(p.name for p in args.repository.iterdir() if (p / "config.pbtxt").is_file() and not p.name.startswith("."))
    names = [n for n in names if not args.models or n in args.models]
    header = f"{'model':<26} {'threads':>7} {'batch':>5} {'onnxruntime ms':>14} {'torch ms':>9} {'torch/ort':>9}"
    print(header)
    print("-" * len(header))
    for name in names:
        reference, samples, config = torch_runner(args.repository, name, args.runs)
        version = max(int(p.name) for p in (args.repository / name).iterdir() if p.name.isdigit())
        for threads in args.threads:
            torch.set_num_threads(threads)
            session = ort_runner(args.repository / name / str(version) / "model.onnx", threads)
            for batch in args.batches:
                if config.max_batch_size and batch > config.max_batch_size:
                    continue
                feeds = samples(batch)
                with torch.inference_mode():
                    ort_ms, torch_ms = measure(session, reference, feeds, args.seconds)
                print(f"{name:<26} {threads:>7} {batch:>5} {ort_ms:>14.3f} {torch_ms:>9.3f} {torch_ms / ort_ms:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Server over gRPC against in-process ONNX Runtime, on the same model, in one run.

    python benchmarks/serving_throughput.py [--repository model_repository] [--model digits_classifier]
    python benchmarks/serving_throughput.py --synthetic      # a small MLP built here, no training needed

Scenarios (items/s, p50/p99 latency): batch 1 at concurrency 1; batch 1 at concurrency 16 with and
without dynamic batching; batch 32 at concurrency 2. The in-process figures use the same session
options the server gives the model, and are the physical limit the server is compared with
(ratios). Also printed: what ONNX Runtime itself gains from batch 16 over batch 1, which is all
dynamic batching can win on a CPU. The server runs in its own process so the load generator does
not share its GIL; clients use grpc.aio. Works on any repository model with one input.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protos.config_text import format_config  # noqa: E402
from serving.repository import Repository  # noqa: E402


def synthetic_repository(root: Path) -> str:
    """A digits-classifier-sized MLP: uint8 [N,1,28,28] -> probabilities [N,10]."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    rng = np.random.default_rng(0)
    weights = [("w1", (784, 256)), ("b1", (256,)), ("w2", (256, 128)), ("b2", (128,)), ("w3", (128, 10)), ("b3", (10,))]
    inits = [h.make_tensor(n, T.FLOAT, s, (rng.normal(size=s) * 0.05).astype(np.float32).ravel()) for n, s in weights]
    inits += [h.make_tensor("scale", T.FLOAT, [], [1 / 255]), h.make_tensor("flat", T.INT64, [2], [-1, 784])]
    nodes = [
        h.make_node("Cast", ["images"], ["f"], to=T.FLOAT), h.make_node("Mul", ["f", "scale"], ["g"]),
        h.make_node("Reshape", ["g", "flat"], ["x"]),
        h.make_node("Gemm", ["x", "w1", "b1"], ["h1"]), h.make_node("Relu", ["h1"], ["r1"]),
        h.make_node("Gemm", ["r1", "w2", "b2"], ["h2"]), h.make_node("Relu", ["h2"], ["r2"]),
        h.make_node("Gemm", ["r2", "w3", "b3"], ["logits"]), h.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = h.make_graph(
        nodes, "mlp", [h.make_tensor_value_info("images", T.UINT8, ["N", 1, 28, 28])],
        [h.make_tensor_value_info("probabilities", T.FLOAT, ["N", 10])], inits,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    folder = root / "synthetic_classifier"
    (folder / "1").mkdir(parents=True)
    onnx.save(model, str(folder / "1" / "model.onnx"))
    (folder / "config.pbtxt").write_text(
        'name: "synthetic_classifier"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 64\n'
        'input [ { name: "images" data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] } ]\n'
        'output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
        "dynamic_batching { max_queue_delay_microseconds: 500 }\n"
        "instance_group [ { kind: KIND_CPU count: 2 } ]\n"
    )
    return "synthetic_classifier"


def bench_repository(source: Path, model: str, target: Path) -> tuple[str, str]:
    """Copy the model twice: `<model>` with dynamic batching and `<model>_nobatch` without."""
    spec = Repository(source).read(model)
    if spec.error or spec.spec is None:
        raise SystemExit(f"cannot read model {model!r} in {source}: {spec.error}")
    if len(spec.spec.inputs) != 1:
        raise SystemExit(f"model {model!r} has {len(spec.spec.inputs)} inputs; this benchmark needs exactly one")
    for name, batching in ((model, True), (f"{model}_nobatch", False)):
        shutil.copytree(source / model, target / name)
        config = spec.spec.config.__class__()
        config.CopyFrom(spec.spec.config)
        config.name = name
        if batching and not config.HasField("dynamic_batching"):
            config.dynamic_batching.max_queue_delay_microseconds = 500
        if not batching:
            config.ClearField("dynamic_batching")
        (target / name / "config.pbtxt").write_text(format_config(config))
    return model, f"{model}_nobatch"


def make_input(spec, batch: int) -> np.ndarray:
    tensor = spec.inputs[0]
    shape = [batch, *[1 if d == -1 else d for d in tensor.dims]]
    if tensor.datatype.numpy.kind == "f":
        return np.random.default_rng(0).random(shape).astype(tensor.datatype.numpy)
    return np.random.default_rng(0).integers(0, 255, shape).astype(tensor.datatype.numpy)


def summarise(latencies: list[float], items: int, seconds: float) -> dict:
    ms = np.array(latencies) * 1000
    return {"items_s": items / seconds, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def in_process(path: Path, spec, batch: int, threads: int, seconds: float) -> dict:
    import onnxruntime as ort

    from serving.sessions import session_options

    session = ort.InferenceSession(str(path), session_options(spec), providers=["CPUExecutionProvider"])
    feed = {spec.inputs[0].name: make_input(spec, batch)}
    session.run(None, feed)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    end = time.perf_counter() + seconds

    def work(out: list[float]) -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            session.run(None, feed)
            out.append(time.perf_counter() - t)

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(out,)) for out in latencies]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    flat = [x for out in latencies for x in out]
    return summarise(flat, len(flat) * batch, time.perf_counter() - start)


async def over_grpc(address: str, model: str, spec, batch: int, concurrency: int, seconds: float) -> dict:
    import grpc

    from protos import grpc_service_pb2 as pb
    from protos import grpc_service_pb2_grpc as pb_grpc

    array = make_input(spec, batch)
    request = pb.ModelInferRequest(model_name=model, raw_input_contents=[array.tobytes()])
    request.inputs.add(name=spec.inputs[0].name, datatype=spec.inputs[0].datatype.name, shape=array.shape)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(5):
            await stub.ModelInfer(request)
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                t = time.perf_counter()
                await stub.ModelInfer(request)
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return summarise(latencies, len(latencies) * batch, elapsed)


def start_server(repository: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DNNZOO_PROVIDERS=os.environ.get("DNNZOO_PROVIDERS", "cpu"))
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", "0", "--metrics-port", "-1"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        match = re.search(r"on 127\.0\.0\.1:(\d+) \(gRPC\)", line)
        if match:  # keep draining the log so the child never blocks on a full pipe
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, f"127.0.0.1:{match.group(1)}"
    raise SystemExit("server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="digits_classifier")
    parser.add_argument("--synthetic", action="store_true", help="benchmark a small MLP built here instead")
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source, model = args.repository, args.model
        if args.synthetic:
            source = tmp / "source"
            model = synthetic_repository(source)
        repo = tmp / "bench"
        repo.mkdir()
        batched, unbatched = bench_repository(source, model, repo)
        loaded = Repository(repo).read(batched)
        spec, path = loaded.spec, loaded.versions[max(loaded.versions)]

        local = {
            (1, 1): in_process(path, spec, 1, 1, args.seconds),
            (16, 1): in_process(path, spec, 16, 1, args.seconds),
            (16, 2): in_process(path, spec, 16, 2, args.seconds),
            (32, 1): in_process(path, spec, 32, 1, args.seconds),
            (32, 2): in_process(path, spec, 32, 2, args.seconds),
        }
        process, address = start_server(repo)
        try:
            remote = {
                "b1 c1": asyncio.run(over_grpc(address, batched, spec, 1, 1, args.seconds)),
                "b1 c16 batching": asyncio.run(over_grpc(address, batched, spec, 1, 16, args.seconds)),
                "b1 c16 no batching": asyncio.run(over_grpc(address, unbatched, spec, 1, 16, args.seconds)),
                "b32 c2": asyncio.run(over_grpc(address, batched, spec, 32, 2, args.seconds)),
            }
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)

    limit16 = max(local[(16, 1)]["items_s"], local[(16, 2)]["items_s"])
    limit32 = max(local[(32, 1)]["items_s"], local[(32, 2)]["items_s"])
    print(f"model {model}; {os.cpu_count()} CPU cores; {args.seconds:g} s per scenario\n")
    print(f"{'scenario':34} {'items/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}")
    rows = [
        ("in-process batch 1", local[(1, 1)], None),
        ("in-process batch 16 (best of 1-2 threads)", max(local[(16, 1)], local[(16, 2)], key=lambda r: r["items_s"]), None),
        ("in-process batch 32 (best of 1-2 threads)", max(local[(32, 1)], local[(32, 2)], key=lambda r: r["items_s"]), None),
        ("server batch 1, concurrency 1", remote["b1 c1"], remote["b1 c1"]["items_s"] / local[(1, 1)]["items_s"]),
        ("server b1 c16, dynamic batching", remote["b1 c16 batching"], remote["b1 c16 batching"]["items_s"] / limit16),
        ("server b1 c16, no batching", remote["b1 c16 no batching"], remote["b1 c16 no batching"]["items_s"] / limit16),
        ("server batch 32, concurrency 2", remote["b32 c2"], remote["b32 c2"]["items_s"] / limit32),
    ]
    for name, row, ratio in rows:
        shown = f"{ratio:7.2f}" if ratio is not None else ""
        print(f"{name[:34]:34} {row['items_s']:10.0f} {row['p50']:8.3f} {row['p99']:8.3f} {shown}")
    gain = limit16 / local[(1, 1)]["items_s"]
    print(f"\nONNX Runtime's own gain, batch 16 over batch 1: {gain:.2f}x items/s")
    print(f"added median latency at batch 1: {remote['b1 c1']['p50'] - local[(1, 1)]['p50']:.3f} ms")
    print("ratios: b1 c1 vs in-process b1; b1 c16 vs in-process b16; b32 c2 vs in-process b32")
    return 0


if __name__ == "__main__":
    sys.exit(main())

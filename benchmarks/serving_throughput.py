"""Server over gRPC against in-process ONNX Runtime, on the same model, in one run.

    python benchmarks/serving_throughput.py [--repository model_repository] [--model digits_classifier]
    python benchmarks/serving_throughput.py --synthetic      # a small MLP built here, no training needed

Scenarios (items/s, p50/p99 latency): batch 1 at concurrency 1; batch 1 at concurrency 16 with and
without dynamic batching; batch 32 at concurrency 2. The in-process figures use the same session
options the server gives the model, and are the physical limit the server is compared with
(ratios). Also printed: what ONNX Runtime itself gains from batch 16 over batch 1, which is all
dynamic batching can win on a CPU. Works on any repository model with one input.

Beside each server scenario, the same load on `bare_server.py`'s server (pygrpc-native's front
and the model's ONNX Runtime session, with nothing between them: no validation, statistics,
metrics or asyncio): the ceiling any Python server on this front reaches on this machine, so a
missed target can be told apart from a limit of the machine (h2load only; `--no-bare` skips it).

Method, so that neither side is favoured: the server runs in its own process and the load generator
in another (neither shares a GIL with the other or with the in-process runs). The load generator is
h2load (nghttp2's C HTTP/2 benchmark, `apt install nghttp2-client`) when it is on PATH, as Triton's
perf_analyzer is a C++ client: it posts the gRPC-framed request, serialised once, on `concurrency`
connections, one call in flight on each. h2load sees HTTP status only, so the server's own
ModelStatistics must count every call it made as a success and none as a failure, or the run
stops. Without h2load (or with `--client python`) it is the cheapest Python client: blocking calls
of a sync channel, raw bytes in and out, one thread per concurrent client. Each server scenario is
measured right after its in-process counterpart, so that the load other programs put on a shared
machine drifts as little as possible between the two halves of a ratio. On a machine with few cores
the load generator's own CPU time competes with the server's; it is printed as a share of one core,
beside the server's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import resource
import signal
import struct
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


def bench_repository(source: Path, model: str, target: Path, delay_us: int | None = None,
                     instances: int | None = None) -> tuple[str, str]:
    """Copy the model twice: `<model>` with dynamic batching and `<model>_nobatch` without.

    `delay_us` and `instances` override the config's queue delay and instance count when given."""
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
            config.dynamic_batching.SetInParent()
        if batching and delay_us is not None:
            config.dynamic_batching.max_queue_delay_microseconds = delay_us
        if not batching:
            config.ClearField("dynamic_batching")
        if instances is not None:
            if not config.instance_group:
                config.instance_group.add()
            for group in config.instance_group:
                group.count = instances
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

    from serving.sessions import PREFERENCES, session_options

    # DNNZOO_PROVIDERS (the server's own variable, which its process inherits) picks the same providers here.
    session = ort.InferenceSession(str(path), session_options(spec), providers=list(PREFERENCES[os.environ.get("DNNZOO_PROVIDERS", "cpu")]))
    feed = {spec.inputs[0].name: make_input(spec, batch)}
    for _ in range(5):
        session.run(None, feed)
    return closed_loop(lambda: session.run(None, feed), batch, threads, seconds)


def closed_loop(call, batch: int, threads: int, seconds: float) -> dict:
    """`threads` threads calling `call` back to back for `seconds`; items/s and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    go = threading.Barrier(threads + 1)
    end = 0.0

    def work(out: list[float]) -> None:
        go.wait()
        clock = time.perf_counter
        while (t := clock()) < end:
            call()
            out.append(clock() - t)

    workers = [threading.Thread(target=work, args=(out,)) for out in latencies]
    for w in workers:
        w.start()
    start = time.perf_counter()
    end = start + seconds
    cpu = time.process_time()
    go.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    flat = [x for out in latencies for x in out]
    result = summarise(flat, len(flat) * batch, elapsed)
    result["cpu"] = (time.process_time() - cpu) / elapsed
    return result


def load_generator(address: str, model: str, tensor: tuple[str, str], array: np.ndarray, concurrency: int,
                   seconds: float, results) -> None:
    """In its own process: `concurrency` blocking clients of the server, one thread each."""
    import grpc

    from protos import grpc_service_pb2 as pb

    batch = array.shape[0]
    request = pb.ModelInferRequest(model_name=model, raw_input_contents=[array.tobytes()])
    request.inputs.add(name=tensor[0], datatype=tensor[1], shape=array.shape)
    payload = request.SerializeToString()
    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
        for _ in range(20):
            answer = pb.ModelInferResponse.FromString(infer(payload, timeout=30))
        if len(answer.raw_output_contents) != len(answer.outputs) or answer.outputs[0].shape[0] != batch:
            raise SystemExit(f"unexpected answer from {model}: {answer.outputs}")
        results.put(closed_loop(lambda: infer(payload, timeout=30), batch, concurrency, seconds))


def grpc_frame(model: str, tensor: tuple[str, str], array: np.ndarray) -> bytes:
    """One ModelInfer request as it travels in an HTTP/2 DATA frame: flag, length, message."""
    from protos import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model, raw_input_contents=[array.tobytes()])
    request.inputs.add(name=tensor[0], datatype=tensor[1], shape=array.shape)
    message = request.SerializeToString()
    return b"\0" + struct.pack(">I", len(message)) + message


def call_counts(address: str, model: str) -> tuple[int, int]:
    """(successes, failures) the server has recorded for `model`."""
    import grpc

    from protos import grpc_service_pb2 as pb
    from protos import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        stats = pb_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
            pb.ModelStatisticsRequest(name=model), timeout=30).model_stats
    return sum(s.inference_stats.success.count for s in stats), sum(s.inference_stats.fail.count for s in stats)


def h2load(arguments: list[str]) -> tuple[int, float]:
    """Run h2load; (calls made, seconds taken) from its summary."""
    text = subprocess.run(["h2load", *arguments], check=True, capture_output=True, text=True).stdout
    finished = re.search(r"finished in ([\d.]+)(ms|s)", text)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", text)
    if not finished or not done:
        raise SystemExit(f"cannot read h2load's summary:\n{text}")
    return int(done.group(1)), float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)


def with_h2load(address: str, model: str, spec, batch: int, concurrency: int, seconds: float,
                counts=None) -> dict:
    """h2load as the load generator; the server's statistics vouch that every call succeeded.

    A fixed number of calls (sized from a warm-up so the run lasts about `seconds`) rather than a
    duration, so that no call is cut off at the end and the counts must match exactly. `counts()`
    gives (successes, failures) so far; by default the server's ModelStatistics."""
    counts = counts or (lambda: call_counts(address, model))
    with tempfile.TemporaryDirectory() as tmp:
        body, log = Path(tmp) / "request.bin", Path(tmp) / "calls.tsv"
        body.write_bytes(grpc_frame(model, (spec.inputs[0].name, spec.inputs[0].datatype.name), make_input(spec, batch)))
        url = f"http://{address}/inference.GRPCInferenceService/ModelInfer"
        common = ["-c", str(concurrency), "-m", "1", "-t", "1", "-d", str(body),
                  "-H", "content-type: application/grpc", "-H", "te: trailers"]
        warm_calls, warm_seconds = h2load(["-n", str(50 * concurrency), *common, url])
        total = max(10 * concurrency, round(warm_calls / warm_seconds * seconds))
        before = counts()
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        calls_made, elapsed = h2load(["-n", str(total), f"--log-file={log}", *common, url])
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = counts()
        calls = np.loadtxt(log, ndmin=2)  # start (us since epoch), HTTP status, duration (us)
    statuses = set(calls[:, 1].astype(int)) if len(calls) else set()
    succeeded, failed = after[0] - before[0], after[1] - before[1]
    if statuses != {200} or calls_made != total or len(calls) != total or succeeded != total or failed:
        raise SystemExit(f"{model}: h2load made {calls_made} of {total} calls (HTTP {sorted(statuses)}); "
                         f"the server counted {succeeded} successes and {failed} failures")
    result = summarise(list(calls[:, 2] / 1e6), total * batch, elapsed)
    result["cpu"] = (used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime) / elapsed
    return result


def over_grpc(address: str, model: str, spec, batch: int, concurrency: int, seconds: float) -> dict:
    if CLIENT == "h2load":
        return with_h2load(address, model, spec, batch, concurrency, seconds)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    tensor = (spec.inputs[0].name, spec.inputs[0].datatype.name)
    client = context.Process(
        target=load_generator, args=(address, model, tensor, make_input(spec, batch), concurrency, seconds, results)
    )
    client.start()
    try:
        return results.get(timeout=seconds + 120)
    finally:
        client.join(30)


CLIENT = "python"  # set by main from --client


def process_cpu(pid: int) -> float:
    """CPU seconds a process has used so far (Linux); 0 where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_bare_server(repository: Path, model: str):
    """`bare_server.py`'s server in its own process: (process, address)."""
    from bare_server import bare_server

    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    process = context.Process(target=bare_server, args=(str(repository), model, ready), daemon=True)
    process.start()
    return process, f"127.0.0.1:{ready.get(timeout=120)}"


def start_server(repository: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DNNZOO_PROVIDERS=os.environ.get("DNNZOO_PROVIDERS", "cpu"))
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", "0", "--metrics-port", "-1", "--http-port", "-1"]
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
    parser.add_argument("--queue-delay-us", type=int, default=None,
                        help="override the config's max_queue_delay_microseconds (default: keep the config's)")
    parser.add_argument("--instances", type=int, default=None,
                        help="override the config's instance_group count (default: keep the config's)")
    parser.add_argument("--client", choices=("auto", "h2load", "python"), default="auto",
                        help="load generator: h2load (C, from nghttp2-client), the Python client, or h2load when installed")
    parser.add_argument("--no-bare", dest="bare", action="store_false",
                        help="skip the bare server (benchmarks/bare_server.py), the ceiling measured beside dnnzoo's")
    parser.add_argument("--grpc-front", choices=("native", "grpcio"), default=None,
                        help="the server's --grpc-front (default: the server's own choice)")
    args = parser.parse_args()
    global CLIENT
    CLIENT = args.client if args.client != "auto" else ("h2load" if shutil.which("h2load") else "python")
    if CLIENT == "h2load" and not shutil.which("h2load"):
        raise SystemExit("--client h2load: h2load is not on PATH (apt install nghttp2-client)")
    if args.grpc_front:
        os.environ["DNNZOO_GRPC_FRONT"] = args.grpc_front

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source, model = args.repository, args.model
        if args.synthetic:
            source = tmp / "source"
            model = synthetic_repository(source)
        repo = tmp / "bench"
        repo.mkdir()
        batched, unbatched = bench_repository(source, model, repo, args.queue_delay_us, args.instances)
        loaded = Repository(repo).read(batched)
        spec, path = loaded.spec, loaded.versions[max(loaded.versions)]
        policy = spec.batch_policy()
        s = args.seconds

        process, address = start_server(repo)
        bare = start_bare_server(repo, batched) if CLIENT == "h2load" and args.bare else None
        try:
            # Each group back to back: in-process first, then the same work through the servers.
            def served(model: str, batch: int, concurrency: int) -> dict:
                before, start = process_cpu(process.pid), time.perf_counter()
                row = over_grpc(address, model, spec, batch, concurrency, s)
                row["server_cpu"] = (process_cpu(process.pid) - before) / (time.perf_counter() - start)
                return row

            def bare_served(batch: int, concurrency: int) -> dict:
                from bare_server import answered

                pid, bare_address = bare[0].pid, bare[1]
                before, start = process_cpu(pid), time.perf_counter()
                row = with_h2load(bare_address, batched, spec, batch, concurrency, s,
                                  counts=lambda: (answered(bare_address), 0))
                row["server_cpu"] = (process_cpu(pid) - before) / (time.perf_counter() - start)
                return row

            rows = {}
            rows["in-process batch 1"] = in_process(path, spec, 1, 1, s)
            rows["server b1 c1"] = served(batched, 1, 1)
            if bare:
                rows["bare b1 c1"] = bare_served(1, 1)
            local16 = [in_process(path, spec, 16, t, s) for t in (1, 2)]
            rows["in-process batch 16"] = max(local16, key=lambda r: r["items_s"])
            rows["server b1 c16 batching"] = served(batched, 1, 16)
            rows["server b1 c16 no batching"] = served(unbatched, 1, 16)
            if bare:
                rows["bare b1 c16"] = bare_served(1, 16)
            local32 = [in_process(path, spec, 32, t, s) for t in (1, 2)]
            rows["in-process batch 32"] = max(local32, key=lambda r: r["items_s"])
            rows["server b32 c2"] = served(batched, 32, 2)
            if bare:
                rows["bare b32 c2"] = bare_served(32, 2)
            rows["in-process batch 1 (again)"] = in_process(path, spec, 1, 1, s)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            if bare:
                bare[0].terminate()
                bare[0].join(10)

    b1 = max(rows["in-process batch 1"], rows["in-process batch 1 (again)"], key=lambda r: r["items_s"])
    limit16, limit32 = rows["in-process batch 16"]["items_s"], rows["in-process batch 32"]["items_s"]
    ratios = {
        "server b1 c1": rows["server b1 c1"]["items_s"] / b1["items_s"],
        "server b1 c16 batching": rows["server b1 c16 batching"]["items_s"] / limit16,
        "server b1 c16 no batching": rows["server b1 c16 no batching"]["items_s"] / limit16,
        "server b32 c2": rows["server b32 c2"]["items_s"] / limit32,
    }
    if "bare b1 c1" in rows:
        ratios.update({
            "bare b1 c1": rows["bare b1 c1"]["items_s"] / b1["items_s"],
            "bare b1 c16": rows["bare b1 c16"]["items_s"] / limit16,
            "bare b32 c2": rows["bare b32 c2"]["items_s"] / limit32,
        })
    threads16 = 1 + int(local16[1]["items_s"] > local16[0]["items_s"])
    threads32 = 1 + int(local32[1]["items_s"] > local32[0]["items_s"])
    print(f"model {model}; {os.cpu_count()} CPU cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{s:g} s per scenario")
    front = os.environ.get("DNNZOO_GRPC_FRONT", "the server's default")
    print(f"load generator: {CLIENT}; gRPC front: {front}")
    print(f"server config: max_batch_size {policy.max_batch_size}, dynamic batching "
          f"{'max_queue_delay ' + format(policy.max_queue_delay_s * 1e6, 'g') + ' us' if policy.dynamic else 'off'}, "
          f"{policy.instances} instance(s)\n")
    names = {
        "in-process batch 1": "in-process batch 1",
        "in-process batch 1 (again)": "in-process batch 1 (again, at the end)",
        "in-process batch 16": f"in-process batch 16 ({threads16} thread{'s' * (threads16 > 1)}, best)",
        "in-process batch 32": f"in-process batch 32 ({threads32} thread{'s' * (threads32 > 1)}, best)",
        "server b1 c1": "server batch 1, concurrency 1",
        "server b1 c16 batching": "server b1 c16, dynamic batching",
        "server b1 c16 no batching": "server b1 c16, no batching",
        "server b32 c2": "server batch 32, concurrency 2",
        "bare b1 c1": "  bare server b1 c1 (the ceiling)",
        "bare b1 c16": "  bare server b1 c16 (the ceiling)",
        "bare b32 c2": "  bare server b32 c2 (the ceiling)",
    }
    print(f"{'scenario':40} {'items/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'client CPU':>10} {'server CPU':>10} {'ratio':>6}")
    for key, row in rows.items():
        ratio = f"{ratios[key]:6.2f}" if key in ratios else ""
        client = f"{row['cpu']:9.0%} " if "cpu" in row and "server_cpu" in row else ""
        server = f"{row['server_cpu']:9.0%} " if "server_cpu" in row else ""
        print(f"{names[key]:40} {row['items_s']:9.0f} {row['p50']:8.3f} {row['p99']:8.3f} {client:>10} {server:>10} {ratio}")
    gain = limit16 / b1["items_s"]
    added = rows["server b1 c1"]["p50"] - b1["p50"]
    print(f"\nONNX Runtime's own gain, batch 16 over batch 1: {gain:.2f}x items/s")
    print(f"added median latency at batch 1, concurrency 1: {added:.3f} ms   (target <= 0.5 ms)")
    print(f"b1 c16 with dynamic batching / in-process batch 16: {ratios['server b1 c16 batching']:.2f}   (target >= 0.9)")
    print(f"b32 c2 / in-process batch 32: {ratios['server b32 c2']:.2f}   (target >= 0.9)")
    if "bare b1 c1" in rows:
        print(f"the bare server, same run: added median {rows['bare b1 c1']['p50'] - b1['p50']:.3f} ms; "
              f"b1 c16 {ratios['bare b1 c16']:.2f}; b32 c2 {ratios['bare b32 c2']:.2f}   "
              "(no data plane: see benchmarks/bare_server.py)")
    print("ratios: b1 c1 vs in-process batch 1 (best of the two runs); b1 c16 vs in-process batch 16; "
          "b32 c2 vs in-process batch 32. client/server CPU: each process's CPU time, in cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What one REST call costs on each candidate HTTP stack, beside dnnzoo's own REST route, in one run.

    python benchmarks/http_stacks.py                      # 3 interleaved rounds x 5 s, c1 and c16
    python benchmarks/http_stacks.py --rounds 1 --seconds 2
    python benchmarks/http_stacks.py --targets dnnzoo-rest,dnnzoo-grpc --tree base=../main   # a change, A/B

Every stack serves the same minimal KServe-style app (`http_stacks_apps.py`: parse a small JSON or
binary request, answer ten floats per item, no model) in a process of its own:
- raw ASGI on uvicorn (asyncio loop, httptools parser) and on uvicorn with uvloop (MLServer's setup),
- Starlette on uvicorn (what MLServer uses, through FastAPI),
- aiohttp's web server (what dnnzoo's REST front is built on),
- granian (Rust), with its ASGI and its own RSGI interface.
Beside them, dnnzoo itself (`dnnzoo serve`) on a model that only slices its input (no compute to
speak of), over REST with binary tensors, REST with JSON tensors and gRPC: the same work plus
dnnzoo's validation, scheduling and statistics.

One load generator drives every REST server (`rest_loadgen.py`: closed loop, pre-serialised
requests, one kept-alive connection per caller, every answer checked), here in this process; gRPC
is driven by `serving.loadgen`. Batch 1, concurrency 1 and 16, 784 float32 values per request. The
targets run in a rotated order in each round; the table shows medians of the rounds, with the CPU
the client and the server used (in cores).

The stacks run in a virtual environment of their own (~/.cache/dnnzoo-bench/http-stacks-venv,
installed on first use with the versions below), so nothing is added to dnnzoo's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import rest_loadgen  # noqa: E402
from serving import child_server  # noqa: E402
from serving.child_server import ChildServer, free_port, launch, stop_on_signals  # noqa: E402

VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dnnzoo-bench" / "http-stacks-venv"
SPECS = ["uvicorn==0.55.0", "httptools", "uvloop", "starlette==1.10.0", "granian==2.8.9", "aiohttp==3.14.5", "numpy",
         "orjson"]
STACKS = {
    "asgi-uvicorn": "ASGI/uvicorn",
    "asgi-uvicorn-uvloop": "ASGI/uvicorn+uvloop",
    "starlette-uvicorn": "Starlette/uvicorn",
    "aiohttp": "aiohttp",
    "granian-asgi": "ASGI/granian",
    "granian-rsgi": "RSGI/granian",
}
DNNZOO = {"dnnzoo-rest": "dnnzoo REST bin", "dnnzoo-rest-json": "dnnzoo REST JSON", "dnnzoo-grpc": "dnnzoo gRPC"}
DNNZOO_KIND = {"dnnzoo-rest": "binary", "dnnzoo-rest-json": "json", "dnnzoo-grpc": "binary"}  # the body it is measured with
MODEL, DIMS, CLASSES = "slicer", (1, 28, 28), 10


def ensure_venv(venv: Path = VENV) -> None:
    python = venv / "bin" / "python"
    probe = "import uvicorn, starlette, granian, aiohttp, httptools, uvloop, numpy, orjson"
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True, cwd="/").returncode == 0:
        return
    print(f"installing the HTTP stacks into {venv} (first run: a minute) ...", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SPECS], check=True, cwd="/")


def slicer_model(repository: Path) -> None:
    """A model with next to no compute: input [B,1,28,28] -> its first ten values per item [B,10]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
         helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["y"])],
        MODEL, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *DIMS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES])],
        [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", CLASSES), ("axes", 1))])
    folder = repository / MODEL
    (folder / "1").mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(
        f'name: "{MODEL}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 32\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] } ]\n')


def start_stack(stack: str, logs: Path, cpus: str | None, venv: Path) -> ChildServer:
    port = free_port()
    command = [str(venv / "bin" / "python"), str(HERE / "http_stacks_apps.py"), stack, str(port)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    process = launch(command, logs / f"{stack}.log", cpus, cwd=HERE, env=env)
    return ChildServer(STACKS[stack], "", process, logs / f"{stack}.log", 60, f"127.0.0.1:{port}")


def wait_http(server: ChildServer) -> None:
    """Until the server accepts connections (a failed first call fails the measurement); ServerFailed with its log."""
    host, port = server.http_address.rsplit(":", 1)
    deadline = time.monotonic() + server.startup_s
    while True:
        if not server.alive():
            raise child_server.ServerFailed(f"{server.label} exited:\n{server.log_tail()}")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise child_server.ServerFailed(f"{server.label} not up after {server.startup_s} s:\n{server.log_tail()}")
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per target, shape and round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--targets", default=",".join([*STACKS, *DNNZOO]), help="default: all")
    parser.add_argument("--server-cpus", help="taskset list for the servers (default: not pinned)")
    parser.add_argument("--venv", type=Path, default=VENV)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="also the dnnzoo targets served by the dnnzoo of another checkout (to compare a change "
                             "with what it replaces in one run), as targets dnnzoo-rest@NAME and so on")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",")]
    if unknown := set(targets) - set(STACKS) - set(DNNZOO):
        parser.error(f"unknown targets {sorted(unknown)}")
    trees = {"": ROOT}
    for text in args.tree:
        name, _, path = text.partition("=")
        trees[name] = Path(path).resolve()
        if not (trees[name] / "serving").is_dir():
            parser.error(f"--tree {text}: not a dnnzoo checkout")
        targets += [f"{t}@{name}" for t in DNNZOO if t in targets]
    stop_on_signals()
    from tqdm import tqdm

    from serving import loadgen

    if set(targets) & set(STACKS):
        ensure_venv(args.venv)
    array = np.random.default_rng(0).random((1, *DIMS), dtype=np.float32)
    bodies = {"binary": rest_loadgen.binary_body(MODEL, "x", "FP32", array),
              "json": rest_loadgen.json_body(MODEL, "x", "FP32", array)}
    expected = {"y": [1, CLASSES]}
    load_before = os.getloadavg()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dnnzoo-stacks-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        servers: dict[str, ChildServer] = {}
        for name in targets:
            if name in STACKS:
                servers[name] = start_stack(name, tmp, args.server_cpus, args.venv)
                stack.callback(servers[name].stop)
        if set(targets) & set(DNNZOO):
            (tmp / "repository").mkdir()
            slicer_model(tmp / "repository")
            for tree, root in trees.items():
                dnnzoo = child_server.start_dnnzoo(tmp / "repository", tmp / f"dnnzoo{tree}.log", args.server_cpus,
                                                   http=True, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
                stack.callback(dnnzoo.stop)
                for name in DNNZOO:
                    servers[f"{name}@{tree}" if tree else name] = dnnzoo
        for name, server in servers.items():
            if name in STACKS:
                wait_http(server)
        for server in {id(s): s for n, s in servers.items() if n not in STACKS}.values():
            child_server.wait_ready(server, MODEL)
        grpc_request = loadgen.request_for(_config(), 1)

        check = rest_loadgen.checker(expected, "server")
        with tqdm(total=args.rounds * len(args.concurrency) * len(targets) * 2, unit="run", desc="measuring",
                  file=sys.stderr) as progress:
            for round_ in range(args.rounds):
                for concurrency in args.concurrency:
                    for kind in ("binary", "json"):
                        shift = round_ % len(targets)
                        for name in targets[shift:] + targets[:shift]:
                            progress.update()
                            base = name.partition("@")[0]
                            if base in DNNZOO and DNNZOO_KIND[base] != kind:
                                continue
                            server = servers[name]
                            progress.set_postfix_str(f"round {round_ + 1} c{concurrency} {kind} {name}")
                            before, start = server.cpu_seconds(), time.perf_counter()
                            if base == "dnnzoo-grpc":
                                row = asyncio.run(loadgen.measure(server.address, grpc_request, 1, concurrency,
                                                                  args.seconds, args.warmup))
                            else:
                                body, headers = bodies[kind]
                                request = rest_loadgen.request_bytes(server.http_address, f"/v2/models/{MODEL}/infer",
                                                                     body, headers)
                                row = asyncio.run(rest_loadgen.measure(server.http_address, request, 1, concurrency,
                                                                       args.seconds, args.warmup, check))
                            row["server_cpu"] = (server.cpu_seconds() - before) / (time.perf_counter() - start)
                            if not server.alive():
                                raise SystemExit(f"{server.label} died:\n{server.log_tail()}")
                            rows.append({"target": name, "kind": kind, "concurrency": concurrency, **row})
    load_after = os.getloadavg()
    print(f"\n{os.cpu_count()} CPU cores; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{args.rounds} interleaved round(s) x {args.seconds:g} s ({args.warmup:g} s warm-up); batch 1, "
          f"784 float32 in, 10 out; {time.strftime('%Y-%m-%d')}")
    print_table(rows, targets, args.concurrency)
    return 0



def _config():
    from protos.model_config_pb2 import ModelConfig, ModelInput
    from protos.model_config_pb2 import DataType

    config = ModelConfig(name=MODEL, max_batch_size=32)
    config.input.append(ModelInput(name="x", data_type=DataType.TYPE_FP32, dims=list(DIMS)))
    return config


def print_table(rows: list[dict], targets: list[str], concurrencies: list[int]) -> None:
    labels = {**STACKS, **DNNZOO}
    for name in targets:
        base, _, tree = name.partition("@")
        if tree:
            labels[name] = f"{labels[base]}@{tree}"
    for concurrency in concurrencies:
        print(f"\nconcurrency {concurrency}")
        print(f"  {'server':24} {'body':6} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'client CPU':>10} {'server CPU':>10}"
              f" {'server CPU ms/call':>18}")
        for kind in ("binary", "json"):
            for name in targets:
                mine = [r for r in rows if r["target"] == name and r["kind"] == kind and r["concurrency"] == concurrency]
                if not mine:
                    continue
                med = {k: statistics.median(r[k] for r in mine) for k in ("items_s", "p50_ms", "p99_ms", "cpu", "server_cpu")}
                per_call = statistics.median(r["server_cpu"] / r["items_s"] * 1000 for r in mine)
                print(f"  {labels[name]:24} {kind:6} {med['items_s']:8.0f} {med['p50_ms']:7.3f} {med['p99_ms']:7.3f} "
                      f"{med['cpu']:10.2f} {med['server_cpu']:10.2f} {per_call:18.3f}")
    print("\nmedians of the rounds; CPU in cores (1.00 = one core busy); server CPU ms/call: the server's CPU "
          "time per call, the stack's cost with the machine's noise mostly taken out; gRPC's client is grpc.aio.")


if __name__ == "__main__":
    child_server.exit_with(main)

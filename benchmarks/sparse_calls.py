"""What a lone client's calls cost the server at several paces: p50 and server CPU per call.

    python benchmarks/sparse_calls.py [--pauses-ms 0,0.5,2,10] [--rounds 3 --seconds 3]
    python benchmarks/sparse_calls.py --tree before=../base      # also another checkout, same rounds
    python benchmarks/sparse_calls.py --thin                     # also the grpc.aio + ORT peer
    python benchmarks/sparse_calls.py --model-repo REPO --model NAME

One grpc.aio client sends batch-1 calls to the foreign CNN (`peers.py`'s model, plain config), or to
a model of your own, and pauses after each answer for the given time before the next call. Reported
per pause and server: p50 latency and the server's CPU time per call (from its process, children
included), medians of interleaved rounds.

Why: most callers of a service are not a closed loop; they pause. Two things here depend on the
pause: after answering a call itself the gRPC front's dispatch thread polls for the next one instead
of sleeping (serving/native_front.py `POLL_AFTER_ANSWER_S`), and a model's all-core ONNX Runtime
pool, idle for the pause, must get its second core back (serving/sessions.py `worker_affinities`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import grpc  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from peers_model import foreign_model, repository_model  # noqa: E402
from peers_servers import start_thin  # noqa: E402
from protos.model_config_pb2 import ModelConfig  # noqa: E402
from serving import child_server  # noqa: E402
from serving.loadgen import CHANNEL_OPTIONS, INFER, request_for  # noqa: E402


async def paced(address: str, payload: bytes, pause_s: float, seconds: float) -> list[float]:
    """Latencies (s) of calls sent one at a time, `pause_s` after each answer, for `seconds`."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        infer = channel.unary_unary(INFER)
        for _ in range(20):  # warm the connection and the model
            await infer(payload, timeout=60)
        latencies, clock = [], time.perf_counter
        end = clock() + seconds
        while (start := clock()) < end:
            await infer(payload, timeout=60)
            latencies.append(clock() - start)
            if pause_s:
                time.sleep(pause_s)  # the only caller: blocking is fine, and finer than asyncio.sleep
        return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pauses-ms", default="0,0.5,2,10")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="also serve the model with the dnnzoo of another checkout at PATH")
    parser.add_argument("--thin", action="store_true", help="also the grpc.aio + ORT peer (peers.py's thin server)")
    parser.add_argument("--model-repo", type=Path, help="serve a model from this repository instead of the foreign CNN")
    parser.add_argument("--model", help="with --model-repo: the model's name (one input, max_batch_size > 0)")
    args = parser.parse_args()
    if bool(args.model_repo) != bool(args.model):
        parser.error("--model-repo and --model go together")
    pauses = [float(p) / 1000 for p in args.pauses_ms.split(",")]
    checkouts = {"dnnzoo": HERE.parent}
    for name, path in (tree.split("=", 1) for tree in args.tree):
        if not (Path(path) / "serving").is_dir():
            parser.error(f"--tree {name}={path}: not a dnnzoo checkout (no serving/ folder)")
        checkouts[f"dnnzoo@{name}"] = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="dnnzoo-sparse-") as tmp:
        tmp = Path(tmp)
        (tmp / "repo").mkdir()
        model = repository_model(args.model_repo, args.model, tmp / "repo") if args.model else foreign_model(tmp / "repo")
        config = text_format.Parse((tmp / "repo" / model.name / "config.pbtxt").read_text(), ModelConfig())
        payload = request_for(config, 1)
        servers = {}
        names = [*checkouts, *(["grpc.aio + ORT"] if args.thin else [])]
        figures = {(name, pause): {"p50": [], "cpu": []} for name in names for pause in pauses}
        try:
            for number, (name, checkout) in enumerate(checkouts.items()):
                servers[name] = child_server.start_dnnzoo(tmp / "repo", tmp / f"server{number}.log", cwd=checkout,
                                                          env=dict(os.environ, PYTHONPATH=str(checkout)))
                child_server.wait_ready(servers[name], model.name)
            if args.thin:
                servers["grpc.aio + ORT"] = start_thin(model.onnx, model.name, tmp, None)
                child_server.wait_ready(servers["grpc.aio + ORT"], model.name)
            names = list(servers)
            for round_number in range(args.rounds):
                for name in names[round_number % len(names):] + names[:round_number % len(names)]:
                    for pause in pauses:
                        cpu = servers[name].cpu_seconds()
                        latencies = asyncio.run(paced(servers[name].address, payload, pause, args.seconds))
                        cpu = servers[name].cpu_seconds() - cpu
                        figures[name, pause]["p50"].append(float(np.median(latencies)) * 1000)
                        figures[name, pause]["cpu"].append(cpu / len(latencies) * 1e6)
                print(f"round {round_number + 1} done", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    print(f"\nbatch-1 calls one at a time, a pause after each answer; medians of {args.rounds} rounds x {args.seconds:g} s")
    print(f"  {'pause ms':>8}  {'server':20s} {'p50 ms':>7}  {'server CPU per call (us)':>24}")
    for pause in pauses:
        for name in names:
            cell = figures[name, pause]
            print(f"  {pause * 1000:8g}  {name:20s} {statistics.median(cell['p50']):7.3f}  {statistics.median(cell['cpu']):24.0f}")
    return 0


if __name__ == "__main__":
    child_server.exit_with(main)

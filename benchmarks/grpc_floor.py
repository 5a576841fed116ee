"""What a gRPC call costs before any model runs: servers with an empty handler, driven by h2load.

    python benchmarks/grpc_floor.py [--seconds 3]      # needs h2load (apt install nghttp2-client)

Three servers, each in its own process, answer ModelInfer-sized unary calls (850 bytes in, 40 out)
without looking at them:

- `grpc.aio`: grpcio's asyncio server, what `--grpc-front grpcio` serves with.
- `native front, thread`: pygrpc-native's Rust front answering on its dispatch thread, no asyncio.
- `native front, event loop`: the same front handing each batch of calls to an asyncio loop, which
  answers: the path `--grpc-front native` takes before dnnzoo's data plane does any work.

For each, at concurrency 1 and 16: calls/s, median and p99 latency, and the server's CPU time per
call. These are the floor under `benchmarks/serving_throughput.py`'s server figures on the same
machine: whatever the data plane and the model add comes on top.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_throughput import h2load, process_cpu  # noqa: E402

PATH = "/inference.GRPCInferenceService/ModelInfer"
ANSWER = b"\0" * 40


def grpc_aio(ready) -> None:
    import grpc

    async def echo(request, context):
        return ANSWER

    async def main():
        server = grpc.aio.server()
        service, method = PATH.strip("/").split("/")
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {method: grpc.unary_unary_rpc_method_handler(echo)}),)
        )
        ready.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def native_thread(ready) -> None:
    from pygrpc_native import EVENT_CALL, NativeGrpcFront

    front = NativeGrpcFront("127.0.0.1:0", [(PATH, False)], io_threads=1)
    front.start()
    ready.put(front.bound_port)
    while (events := front.recv_batch(256)) is not None:
        for kind, call_id, _method, _payload, _client in events:
            if kind == EVENT_CALL:
                front.respond(call_id, ANSWER)


def native_loop(ready) -> None:
    from pygrpc_native import EVENT_CALL, NativeGrpcFront

    async def main():
        loop = asyncio.get_running_loop()
        front = NativeGrpcFront("127.0.0.1:0", [(PATH, False)], io_threads=1)
        front.start()

        def answer(events) -> None:
            for kind, call_id, _method, _payload, _client in events:
                if kind == EVENT_CALL:
                    front.respond(call_id, ANSWER)

        def dispatch() -> None:
            while (events := front.recv_batch(256)) is not None:
                loop.call_soon_threadsafe(answer, events)

        threading.Thread(target=dispatch, daemon=True).start()
        ready.put(front.bound_port)
        await asyncio.Event().wait()

    asyncio.run(main())


SERVERS = {"grpc.aio": grpc_aio, "native front, thread": native_thread, "native front, event loop": native_loop}


def measure(port: int, pid: int, concurrency: int, seconds: float, body: Path) -> dict:
    common = ["-c", str(concurrency), "-m", "1", "-t", "1", "-d", str(body),
              "-H", "content-type: application/grpc", "-H", "te: trailers"]
    url = f"http://127.0.0.1:{port}{PATH}"
    calls, elapsed = h2load(["-n", str(100 * concurrency), *common, url])  # warm-up, and the pace
    total = max(100, round(calls / elapsed * seconds))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "calls.tsv"
        before = process_cpu(pid)
        done, elapsed = h2load(["-n", str(total), f"--log-file={log}", *common, url])
        cpu = process_cpu(pid) - before
        table = np.loadtxt(log, ndmin=2)
    if done != total or set(table[:, 1].astype(int)) != {200}:
        raise SystemExit(f"h2load: {done} of {total} calls done, HTTP {sorted(set(table[:, 1].astype(int)))}")
    ms = table[:, 2] / 1000
    return {"calls_s": total / elapsed, "p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99),
            "cpu_us": cpu / total * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("h2load is not on PATH (apt install nghttp2-client)")
    context = multiprocessing.get_context("spawn")
    print(f"{'server':26} {'clients':>7} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'server CPU us/call':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "request.bin"
        body.write_bytes(b"\0" + (850).to_bytes(4, "big") + b"\1" * 850)  # one gRPC message frame
        for name, target in SERVERS.items():
            ready = context.Queue()
            server = context.Process(target=target, args=(ready,), daemon=True)
            server.start()
            try:
                port = ready.get(timeout=60)
                for concurrency in (1, 16):
                    row = measure(port, server.pid, concurrency, args.seconds, body)
                    print(f"{name:26} {concurrency:7d} {row['calls_s']:8.0f} {row['p50']:7.3f} {row['p99']:7.3f} "
                          f"{row['cpu_us']:19.0f}")
            finally:
                server.terminate()
                server.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

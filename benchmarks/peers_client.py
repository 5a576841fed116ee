"""The one load client `peers.py` drives every server with, and the in-process ONNX Runtime reference.

Both run as worker processes that take jobs over a pipe, so that neither shares a GIL with the
harness nor with each other, and so that the client's channels (one per server) stay open between
rounds. REST targets are driven by `rest_loadgen` (raw HTTP/1.1 on kept-alive connections, one per
caller, the same closed loop and checks). The gRPC client is grpc.aio: `concurrency` coroutines on one channel, each sending the same
serialised KServe v2 ModelInferRequest (raw_input_contents) as soon as its previous answer is in
(closed loop, `serving.loadgen`). It parses every answer and checks each output's name, shape and size; the first
answer of each measurement is also compared with in-process ONNX Runtime's values. Any RPC error
or wrong answer fails the measurement.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving.loadgen import CHANNEL_OPTIONS, INFER, closed_loop, summarise  # noqa: E402
ITEMSIZE = {"FP32": 4, "FP64": 8, "FP16": 2, "UINT8": 1, "INT8": 1, "INT16": 2, "UINT16": 2, "INT32": 4,
            "INT64": 8, "BOOL": 1}
TYPED = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents",
         "INT16": "int_contents", "INT8": "int_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
         "BOOL": "bool_contents"}


def pin(cpus: str | None) -> None:
    """Restrict this process (and threads it starts later) to `cpus`, e.g. "1" or "0-1"."""
    if not cpus:
        return
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    os.sched_setaffinity(0, chosen)


def outputs_of(response) -> dict[str, tuple[list[int], int]]:
    """name -> (shape, element count sent) for every output of a ModelInferResponse."""
    found = {}
    for i, tensor in enumerate(response.outputs):
        if response.raw_output_contents:
            count = len(response.raw_output_contents[i]) // ITEMSIZE[tensor.datatype]
        else:
            count = len(getattr(tensor.contents, TYPED[tensor.datatype]))
        found[tensor.name] = (list(tensor.shape), count)
    return found


def values_of(response, name: str) -> np.ndarray:
    for i, tensor in enumerate(response.outputs):
        if tensor.name == name:
            if response.raw_output_contents:
                return np.frombuffer(response.raw_output_contents[i], np.dtype(_numpy(tensor.datatype)))
            return np.array(getattr(tensor.contents, TYPED[tensor.datatype]))
    raise AssertionError(f"no output {name!r}")


def _numpy(datatype: str) -> str:
    return {"FP32": "float32", "FP64": "float64", "FP16": "float16", "UINT8": "uint8", "INT8": "int8",
            "INT16": "int16", "UINT16": "uint16", "INT32": "int32", "INT64": "int64", "BOOL": "bool"}[datatype]


def checker(expected: dict[str, list[int]], server: str):
    """A function that raises unless a serialised answer has exactly the expected outputs' shapes."""
    from protos import grpc_service_pb2 as pb

    want = {name: (shape, int(np.prod(shape))) for name, shape in expected.items()}

    def check(answer: bytes):
        response = pb.ModelInferResponse.FromString(answer)
        got = outputs_of(response)
        if got != want:
            raise AssertionError(f"{server}: answer has outputs {got}, expected {want}")
        return response

    return check


async def drive_rest(job: dict) -> dict:
    """A REST job: `payload` is a whole prepared HTTP request (`rest_loadgen.request_bytes`)."""
    import rest_loadgen

    check = rest_loadgen.checker(job["expected"], job["server"])

    def check_first(answer):
        for name, reference in job["reference"].items():
            got = check(answer)[name][1].astype(np.float64)
            if not np.allclose(got, reference.ravel(), rtol=1e-3, atol=1e-4):
                worst = float(np.max(np.abs(got - reference.ravel())))
                raise AssertionError(f"{job['server']}: output {name!r} differs from in-process ONNX Runtime by {worst:g}")

    return await rest_loadgen.measure(job["address"], job["payload"], job["batch"], job["concurrency"],
                                      job["seconds"], job["warmup"], check, check_first)


async def drive(channels: dict, job: dict) -> dict:
    import grpc

    if job.get("protocol") == "rest":
        return await drive_rest(job)

    address = job["address"]
    if address not in channels:
        channels[address] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    infer = channels[address].unary_unary(INFER)  # bytes in, bytes out: the client parses answers itself
    check = checker(job["expected"], job["server"])
    try:
        first = check(await infer(job["payload"], timeout=60))
    except grpc.aio.AioRpcError as error:  # the server refuses this request (e.g. its size): a finding, not a crash
        return {"refused": f"{error.code().name}: {(error.details() or '')[:100]}"}
    for name, reference in job["reference"].items():
        got = values_of(first, name)
        if not np.allclose(got, reference.ravel(), rtol=1e-3, atol=1e-4):
            worst = float(np.max(np.abs(got - reference.ravel())))
            raise AssertionError(f"{job['server']}: output {name!r} differs from in-process ONNX Runtime by {worst:g}")
    await closed_loop(infer, job["payload"], job["concurrency"], job["warmup"], check)
    cpu = time.process_time()
    latencies, seconds = await closed_loop(infer, job["payload"], job["concurrency"], job["seconds"], check)
    return summarise(latencies, len(latencies) * job["batch"], seconds, time.process_time() - cpu)


def client_worker(connection, cpus: str | None, root: str) -> None:
    """Process body: answer each job dict from `drive`; None ends it."""
    sys.path.insert(0, root)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    pin(cpus)
    loop = asyncio.new_event_loop()
    channels: dict = {}
    try:
        while (job := connection.recv()) is not None:
            try:
                connection.send(("ok", loop.run_until_complete(drive(channels, job))))
            except Exception as error:  # noqa: BLE001 - reported to the harness, which stops
                connection.send(("error", f"{type(error).__name__}: {error}"))
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        for channel in channels.values():
            loop.run_until_complete(channel.close())


def in_process_worker(connection, model_file: str, input_name: str, cpus: str | None, cgroup: str | None = None) -> None:
    """Process body: one InferenceSession with default SessionOptions, as the peers have; `cgroup`: a
    cgroup to run in (`cpu_quota.py`).

    Jobs: ("reference", array) -> {output name: values}; ("run", array, concurrency, warmup, seconds)
    -> summary, `concurrency` threads calling `run` back to back."""
    import threading

    import onnxruntime as ort

    import cpu_quota

    pin(cpus)
    cpu_quota.join(cgroup)
    session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def loop(feed: dict, concurrency: int, seconds: float) -> tuple[list[float], float]:
        latencies: list[list[float]] = [[] for _ in range(concurrency)]
        clock = time.perf_counter
        end = clock() + seconds

        def caller(out: list[float]) -> None:
            while (t := clock()) < end:
                session.run(None, feed)
                out.append(clock() - t)

        start = clock()
        threads = [threading.Thread(target=caller, args=(out,)) for out in latencies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [x for out in latencies for x in out], clock() - start

    try:
        while (job := connection.recv()) is not None:
            try:
                kind, array = job[0], job[1]
                feed = {input_name: array}
                if kind == "reference":
                    connection.send(("ok", dict(zip(names, session.run(None, feed)))))
                    continue
                concurrency, warmup, seconds = job[2:]
                loop(feed, concurrency, warmup)
                cpu = time.process_time()
                latencies, elapsed = loop(feed, concurrency, seconds)
                connection.send(("ok", summarise(latencies, len(latencies) * len(array), elapsed,
                                                 time.process_time() - cpu)))
            except Exception as error:  # noqa: BLE001
                connection.send(("error", f"{type(error).__name__}: {error}"))
    except (KeyboardInterrupt, EOFError):
        pass


class Worker:
    """A worker process and its end of the pipe: `ask(job)` returns its answer or raises."""

    def __init__(self, target, *args) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=target, args=(theirs, *args), daemon=True)
        self.process.start()
        theirs.close()

    def ask(self, job, timeout: float = 600):
        self.connection.send(job)
        deadline = time.monotonic() + timeout
        while not self.connection.poll(1.0):
            if not self.process.is_alive():
                raise SystemExit(f"worker {self.process.pid} died (exit code {self.process.exitcode})")
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {self.process.pid} did not answer in {timeout:.0f} s")
        status, answer = self.connection.recv()
        if status != "ok":
            raise SystemExit(answer)
        return answer

    def close(self) -> None:
        try:
            self.connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


"""A closed-loop load generator for the Open Inference Protocol: `dnnzoo analyze` and the benchmarks
drive servers with it.

`concurrency` coroutines on one grpc.aio channel each send the same serialised ModelInferRequest as
soon as their previous answer is in, for a fixed time; every call is timed. Sending pre-serialised
bytes (and reading answers as bytes) keeps the client's own Python work per call small, so that on
a small machine the client is not what is measured. Any RPC error ends the measurement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np

from protos import grpc_service_pb2 as pb
from protos.config_text import from_config
from protos.model_config_pb2 import ModelConfig

INFER = "/inference.GRPCInferenceService/ModelInfer"
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]


def summarise(latencies: list[float], items: int, seconds: float, cpu: float) -> dict:
    """items/s, p50 and p99 in ms, calls, and the CPU the measuring process used (in cores)."""
    ms = np.array(latencies) * 1000
    return {"items_s": items / seconds, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "calls": len(latencies), "seconds": seconds, "cpu": cpu / seconds}


async def closed_loop(infer: Callable[..., Awaitable[bytes]], payload: bytes, concurrency: int, seconds: float,
                      check: Callable[[bytes], object] = lambda answer: None) -> tuple[list[float], float]:
    """Every call's latency (s), and the wall time all callers took, `concurrency` callers back to back."""
    latencies: list[float] = []
    clock = time.perf_counter
    end = clock() + seconds

    async def caller() -> None:
        while (t := clock()) < end:
            answer = await infer(payload, timeout=60)
            latencies.append(clock() - t)
            check(answer)

    start = clock()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies, clock() - start


def _example(data_type: int, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[str, bytes]:
    """(protocol datatype, raw bytes) of one input: uniform floats, zeros for integers and booleans (a
    valid index into any table), and one-character strings."""
    datatype = from_config(data_type)
    count = int(np.prod(shape))
    if datatype.name == "BYTES":
        return datatype.name, b"".join(len(b"0").to_bytes(4, "little") + b"0" for _ in range(count))
    if datatype.numpy is None:
        raise ValueError(f"input datatype {datatype.name} cannot be generated (numpy has no such type)")
    if datatype.numpy.kind == "f":
        return datatype.name, rng.random(shape, dtype=np.float32).astype(datatype.numpy).tobytes()
    return datatype.name, np.zeros(shape, datatype.numpy).tobytes()


def request_for(config: ModelConfig, batch: int, seed: int = 0,
                shapes: dict[str, tuple[int, ...]] | None = None) -> bytes:
    """A serialised ModelInferRequest for `config`'s model carrying `batch` items. `shapes` gives an
    input's dimensions without the batch (perf_analyzer's --shape); other variable dimensions are 1."""
    if config.max_batch_size <= 0 and batch != 1:
        raise ValueError(f"model {config.name!r} does not batch (max_batch_size 0): use batch 1")
    if config.max_batch_size > 0 and batch > config.max_batch_size:
        raise ValueError(f"batch {batch} is above model {config.name!r}'s max_batch_size {config.max_batch_size}")
    shapes = shapes or {}
    names = [tensor.name for tensor in config.input]
    for name in shapes:
        if name not in names:
            raise ValueError(f"--shape names input {name!r}, but model {config.name!r} has inputs {names}")
    rng = np.random.default_rng(seed)
    request = pb.ModelInferRequest(model_name=config.name)
    for tensor in config.input:
        dims = tuple(1 if d < 0 else int(d) for d in tensor.dims)
        given = shapes.get(tensor.name)
        if given is not None:
            if len(given) != len(dims) or any(d >= 0 and d != g for d, g in zip(tensor.dims, given)):
                raise ValueError(f"--shape {tensor.name}:{','.join(map(str, given))} does not fit the config's dims "
                                 f"{list(tensor.dims)} (-1: any size; the batch dimension is not given)")
            dims = given
        shape = (batch, *dims) if config.max_batch_size > 0 else dims
        datatype, raw = _example(tensor.data_type, shape, rng)
        request.inputs.add(name=tensor.name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request.SerializeToString()


async def measure(address: str, payload: bytes, batch: int, concurrency: int, seconds: float,
                  warmup: float = 1.0) -> dict:
    """Drive the server at `address` for `warmup` (unmeasured) then `seconds`; `summarise`'s figures.

    The first answer must parse as a ModelInferResponse with outputs; a failed call raises grpc.RpcError."""
    import grpc

    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        infer = channel.unary_unary(INFER)
        first = pb.ModelInferResponse.FromString(await infer(payload, timeout=60))
        if not first.outputs:
            raise ValueError(f"the server at {address} answered with no outputs")
        if warmup > 0:
            await closed_loop(infer, payload, concurrency, warmup)
        cpu = time.process_time()
        latencies, elapsed = await closed_loop(infer, payload, concurrency, seconds)
        return summarise(latencies, len(latencies) * batch, elapsed, time.process_time() - cpu)

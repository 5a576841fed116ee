"""The ceiling under `serving_throughput.py`: a bare gRPC server with no data plane.

`serving_throughput.py` starts it beside dnnzoo's server and measures both in one run. Why: the serving targets are ratios to in-process ONNX Runtime. This asks how close *any* Python
server on this machine can get before dnnzoo adds anything, so a missed target can be told apart
from a limit of the machine. The bare server is the least a networked server can do:

- pygrpc-native's front (the one dnnzoo serves with), one dispatch thread that parses each
  ModelInfer message and wraps its raw input with `np.frombuffer`;
- one thread per instance (the config's instance_group count) that takes every queued request
  (its share of them when several instances are idle), concatenates, runs the same ONNX Runtime
  session options the server uses, slices, encodes and answers;
- no validation, no statistics, no metrics, no deadlines, no asyncio, no shutdown.

It counts its answers (method `/bare.Bare/Count`), so a benchmark can check that every call made
was answered.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

import numpy as np

INFER = "/inference.GRPCInferenceService/ModelInfer"
COUNT = "/bare.Bare/Count"  # answers the number of inferences answered so far, as 8 bytes


def bare_server(repository: str, model: str, ready) -> None:
    """In its own process: serve `model` with nothing between the front and the session."""
    import onnxruntime as ort
    from pygrpc_native import EVENT_CALL, NativeGrpcFront

    from protos import grpc_service_pb2 as pb
    from serving.repository import Repository
    from serving.sessions import session_options

    loaded = Repository(Path(repository)).read(model)
    spec = loaded.spec
    session = ort.InferenceSession(str(loaded.versions[max(loaded.versions)]), session_options(spec),
                                   providers=["CPUExecutionProvider"])
    tensor = spec.inputs[0]
    dtype, outputs = tensor.datatype.numpy, [t.name for t in spec.outputs]
    instances = max(1, spec.batch_policy().instances)
    limit = max(1, spec.max_batch_size)
    front = NativeGrpcFront("127.0.0.1:0", [(INFER, False), (COUNT, False)], io_threads=1)
    queue: deque[tuple[int, np.ndarray]] = deque()
    changed = threading.Condition()
    state = {"idle": instances, "answered": 0}

    def take() -> list[tuple[int, np.ndarray]]:
        with changed:
            while not queue:
                changed.wait()
            share = -(-sum(len(a) for _, a in queue) // state["idle"])  # idle instances split the queue
            batch = [queue.popleft()]
            rows = len(batch[0][1])
            while queue and rows + len(queue[0][1]) <= min(share, limit):
                rows += len(queue[0][1])
                batch.append(queue.popleft())
            state["idle"] -= 1
            return batch

    def instance() -> None:
        while True:
            batch = take()
            arrays = [a for _, a in batch]
            merged = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            values = session.run(outputs, {tensor.name: merged})
            start = 0
            for call_id, array in batch:
                answer = pb.ModelInferResponse(model_name=model, model_version="1")
                for name, value in zip(outputs, values):
                    part = value[start:start + len(array)]
                    answer.outputs.add(name=name, datatype="FP32", shape=part.shape)
                    answer.raw_output_contents.append(part.tobytes())
                start += len(array)
                front.respond(call_id, answer.SerializeToString())
            with changed:
                state["idle"] += 1
                state["answered"] += len(batch)
                if queue:
                    changed.notify()

    for _ in range(instances):
        threading.Thread(target=instance, daemon=True).start()
    front.start()
    ready.put(front.bound_port)
    while (events := front.recv_batch(256)) is not None:
        arrived = []
        for kind, call_id, method, payload, _client in events:
            if kind != EVENT_CALL:
                continue
            if method == 1:
                front.respond(call_id, state["answered"].to_bytes(8, "little"))
                continue
            request = pb.ModelInferRequest.FromString(payload)
            shape = tuple(request.inputs[0].shape)
            arrived.append((call_id, np.frombuffer(request.raw_input_contents[0], dtype=dtype).reshape(shape)))
        if arrived:
            with changed:
                queue.extend(arrived)
                changed.notify(len(arrived))


def answered(address: str) -> int:
    """How many inferences the bare server at `address` has answered."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        return int.from_bytes(channel.unary_unary(COUNT)(b"", timeout=30), "little")

"""The thinnest useful peer for `peers.py`: grpc.aio + one ONNX Runtime session, KServe v2 ModelInfer.

    python benchmarks/thin_server.py --model-file model.onnx --name NAME --port P

What anyone would write in an afternoon: one `InferenceSession` with default SessionOptions, run
inline on the event loop (so calls take turns), raw_input_contents in, raw_output_contents out. No
batching, no validation beyond the tensor's size, no statistics, no metrics. ServerLive,
ServerReady and ModelReady answer so that the harness can wait for it as for any server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from protos import grpc_service_pb2 as pb  # noqa: E402
from protos import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

ORT_TO_KSERVE = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
                 "tensor(uint8)": "UINT8", "tensor(int8)": "INT8", "tensor(int16)": "INT16",
                 "tensor(uint16)": "UINT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
                 "tensor(bool)": "BOOL"}
NUMPY_TO_KSERVE = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "uint8": "UINT8", "int8": "INT8",
                   "int16": "INT16", "uint16": "UINT16", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}
KSERVE_TO_NUMPY = {v: k for k, v in NUMPY_TO_KSERVE.items()}


class ThinInference(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, model_file: str, name: str) -> None:
        self.session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
        self.name = name
        self.inputs = [i.name for i in self.session.get_inputs()]

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=request.name == self.name)

    async def ModelInfer(self, request, context):
        if request.model_name != self.name:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_name!r}")
        if len(request.raw_input_contents) != len(request.inputs):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send every input in raw_input_contents")
        feed = {}
        for tensor, raw in zip(request.inputs, request.raw_input_contents):
            dtype = np.dtype(KSERVE_TO_NUMPY[tensor.datatype])
            if len(raw) != dtype.itemsize * int(np.prod(tensor.shape)):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{tensor.name}: size does not match shape")
            feed[tensor.name] = np.frombuffer(raw, dtype).reshape(tensor.shape)
        names = [o.name for o in self.session.get_outputs()]
        arrays = self.session.run(None, feed)
        response = pb.ModelInferResponse(model_name=self.name, id=request.id)
        for name, array in zip(names, arrays):
            response.outputs.add(name=name, datatype=NUMPY_TO_KSERVE[str(array.dtype)], shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


async def serve(model_file: str, name: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                      ("grpc.max_send_message_length", 64 << 20)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(ThinInference(model_file, name), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.model_file, args.name, args.port))


if __name__ == "__main__":
    main()

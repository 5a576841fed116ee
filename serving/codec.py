"""Open Inference Protocol tensors <-> numpy, and nothing else.

Inputs come either all as `raw_input_contents` (one little-endian buffer per input, in input
order) or all as typed `contents`; mixing is refused, as the protocol says. Outputs always go back
in `raw_output_contents`, one per output, in order, because tritonclient reads only those. BYTES
elements travel as a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from protos import grpc_service_pb2 as pb
from protos.config_text import Datatype, from_name

from serving.errors import InvalidInput
from serving.requests import InferInput, InferRequest, InferResponse, RequestedOutput

# Datatype name -> the InferTensorContents field that carries it.
TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _parameter(value: pb.InferParameter):
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def _datatype(name: str, tensor: str) -> Datatype:
    try:
        datatype = from_name(name)
    except ValueError:
        raise InvalidInput(f"input {tensor!r}: unknown datatype {name!r}") from None
    if datatype.numpy is None:
        raise InvalidInput(f"input {tensor!r}: datatype {name} is not supported by this server")
    return datatype


def _shape(values, tensor: str) -> tuple[int, ...]:
    shape = tuple(values)
    if shape and min(shape) < 0:
        raise InvalidInput(f"input {tensor!r}: shape {list(shape)} has a negative dimension")
    return shape


def decode_bytes(buffer: bytes, count: int, tensor: str) -> np.ndarray:
    """Length-prefixed BYTES elements -> a flat object array of `count` bytes objects."""
    out = np.empty(count, dtype=object)
    view, offset = memoryview(buffer), 0
    for i in range(count):
        if offset + 4 > len(view):
            raise InvalidInput(f"input {tensor!r}: BYTES content ends before element {i} of {count}")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(f"input {tensor!r}: BYTES element {i} claims {length} bytes, only {len(view) - offset} left")
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidInput(f"input {tensor!r}: {len(view) - offset} bytes left over after {count} BYTES elements")
    return out


def encode_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def _decode_raw(tensor: pb.ModelInferRequest.InferInputTensor, datatype: Datatype, raw: bytes) -> np.ndarray:
    shape = _shape(tensor.shape, tensor.name)
    count = math.prod(shape)  # Python ints: exact, and far cheaper than np.prod for a few dims
    if datatype.name == "BYTES":
        return decode_bytes(raw, count, tensor.name).reshape(shape)
    expected = count * datatype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input {tensor.name!r}: raw content is {len(raw)} bytes, but shape {list(shape)} of "
            f"{datatype.name} needs {expected} bytes"
        )
    return np.frombuffer(raw, dtype=datatype.numpy.newbyteorder("<")).reshape(shape)


def _decode_typed(tensor: pb.ModelInferRequest.InferInputTensor, datatype: Datatype) -> np.ndarray:
    shape = _shape(tensor.shape, tensor.name)
    count = math.prod(shape)
    field = TYPED_FIELDS.get(datatype.name)
    if field is None:
        raise InvalidInput(f"input {tensor.name!r}: {datatype.name} can only be sent as raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input {tensor.name!r}: {len(values)} values in contents.{field}, but shape {list(shape)} needs {count}"
        )
    if datatype.name == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    return np.array(values, dtype=datatype.numpy).reshape(shape)


def decode_request(message: pb.ModelInferRequest) -> InferRequest:
    raw = message.raw_input_contents
    if raw:
        typed = [t.name for t in message.inputs if t.HasField("contents")]
        if typed:
            raise InvalidInput(
                f"input {typed[0]!r} has typed contents while raw_input_contents is used: send all inputs one way"
            )
        if len(raw) != len(message.inputs):
            raise InvalidInput(f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs; they must pair up in order")
    inputs = []
    for i, tensor in enumerate(message.inputs):
        datatype = _datatype(tensor.datatype, tensor.name)
        data = _decode_raw(tensor, datatype, raw[i]) if raw else _decode_typed(tensor, datatype)
        inputs.append(InferInput(tensor.name, datatype.name, data))
    outputs = []
    for requested in message.outputs:
        count = _parameter(requested.parameters["classification"]) if "classification" in requested.parameters else 0
        if not isinstance(count, int) or isinstance(count, bool):
            raise InvalidInput(f"output {requested.name!r}: the classification parameter must be an integer count")
        outputs.append(RequestedOutput(requested.name, count))
    timeout = _parameter(message.parameters["timeout"]) if "timeout" in message.parameters else None
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        raise InvalidInput("the timeout parameter must be a non-negative integer (microseconds)")
    return InferRequest(message.model_name, inputs, message.model_version, message.id, outputs, timeout or None)


def encode_response(response: InferResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(model_name=response.model, model_version=response.version, id=response.id)
    raw = message.raw_output_contents
    for output in response.outputs:
        tensor = message.outputs.add(name=output.name, datatype=output.datatype)
        tensor.shape.extend(output.data.shape)
        if output.datatype == "BYTES":
            raw.append(encode_bytes(output.data))
        else:
            data = output.data
            if data.dtype.byteorder == ">":
                data = data.astype(data.dtype.newbyteorder("<"))
            raw.append(np.ascontiguousarray(data).tobytes())
    return message

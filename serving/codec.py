"""Open Inference Protocol tensors <-> numpy, and nothing else.

Inputs come either all as `raw_input_contents` (one little-endian buffer per input, in input
order) or all as typed `contents`; mixing is refused, as the protocol says. Outputs always go back
in `raw_output_contents`, one per output, in order, because tritonclient reads only those. BYTES
elements travel as a 4-byte little-endian length followed by the bytes.

Every size a message claims is checked before anything is allocated or converted: the rank first
(on the repeated field's length, before any tuple is built), then each dimension, then the element
count (multiplied out only up to the largest count that could be valid) against the payload that
came with it, and only then against the server's caps (`RequestLimits`). A shape that the payload
cannot hold is malformed (InvalidInput); a request that really carries more than a cap allows is
TooLarge. So a tiny message can never make the server reserve memory for what it only claims.
"""

from __future__ import annotations

import struct

import numpy as np

from protos import grpc_service_pb2 as pb
from protos.config_text import DATATYPES, Datatype, from_name

from serving.errors import InvalidInput, TooLarge
from serving.limits import MAX_RANK, MAX_TENSORS, RequestLimits, shown
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


DEFAULT_LIMITS = RequestLimits()
LENGTH_PREFIX = 4  # bytes before each BYTES element: the least one element can take


def _parameter(value: pb.InferParameter):
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


# The datatypes this server decodes, by protocol name, and the little-endian dtype of each: looked
# up once here, not per request.
_SERVED = {d.name: d for d in DATATYPES if d.numpy is not None}
_LITTLE_ENDIAN = {d.name: d.numpy.newbyteorder("<") for d in _SERVED.values()}


def _datatype(name: str, tensor: str) -> Datatype:
    served = _SERVED.get(name)
    if served is not None:
        return served
    try:
        datatype = from_name(name)
    except ValueError:
        raise InvalidInput(f"input {shown(tensor)}: unknown datatype {shown(name)}") from None
    if datatype.numpy is None:
        raise InvalidInput(f"input {shown(tensor)}: datatype {name} is not supported by this server")
    return datatype


def shape_text(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def _shape(dims, tensor: str) -> tuple[int, ...]:
    if len(dims) > MAX_RANK:  # before the dims are read: a message may claim half a million of them
        raise InvalidInput(f"input {shown(tensor)}: {len(dims)} dimensions, at most {MAX_RANK} are accepted")
    shape = tuple(dims[:])  # a slice: iterating a protobuf repeated field ends in a raised IndexError
    if shape and min(shape) < 0:
        raise InvalidInput(f"input {shown(tensor)}: shape {shape_text(shape)} has a negative dimension")
    return shape


def elements(shape: tuple[int, ...], bound: int) -> int | None:
    """How many elements `shape` holds, or None if more than `bound`: the product stops growing
    once past it, so a claimed size costs nothing to refuse."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > bound:
            return None
    return count


def _count_text(count: int | None, bound: int) -> str:
    return str(count) if count is not None else f"more than {bound}"


class Budget:
    """What one request may still hold, over all its inputs: the serve flags' caps."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.elements = 0
        self.strings = 0

    @property
    def cap(self) -> int:
        return self.limits.max_request_elements

    def take(self, tensor: str, shape: tuple[int, ...], count: int, strings: bool) -> None:
        """Count an input in, once its payload is known to hold `count` elements; TooLarge above a cap.
        A zero dimension does not excuse the others: numpy refuses a shape whose other dims overflow."""
        cap = self.limits.max_request_elements
        if self.elements + count > cap or count == 0 and elements(tuple(d for d in shape if d), cap) is None:
            raise TooLarge(
                f"input {shown(tensor)}: shape {shape_text(shape)} takes the request above {cap} elements, "
                f"the server's limit (--max-request-elements)"
            )
        if strings and self.strings + count > self.limits.max_string_elements:
            raise TooLarge(
                f"input {shown(tensor)}: shape {shape_text(shape)} takes the request above "
                f"{self.limits.max_string_elements} BYTES elements, the server's limit (--max-string-elements)"
            )
        self.elements += count
        if strings:
            self.strings += count


_LENGTH = struct.Struct("<I")


def decode_bytes(buffer: bytes, count: int, tensor: str) -> np.ndarray:
    """Length-prefixed BYTES elements -> a flat object array of `count` bytes objects."""
    most = len(buffer) // LENGTH_PREFIX
    if count > most:  # before np.empty: each element takes at least its length prefix
        raise InvalidInput(
            f"input {shown(tensor)}: {count} BYTES elements claimed, but {len(buffer)} bytes of content hold at most "
            f"{most} (each element starts with a 4-byte length)"
        )
    items: list = [None] * count  # a list, then one array: cheaper than setting object slots
    unpack, size, offset = _LENGTH.unpack_from, len(buffer), 0
    for i in range(count):
        if offset + LENGTH_PREFIX > size:
            raise InvalidInput(f"input {shown(tensor)}: BYTES content ends before element {i} of {count}")
        start = offset + LENGTH_PREFIX
        offset = start + unpack(buffer, offset)[0]
        if offset > size:
            raise InvalidInput(
                f"input {shown(tensor)}: BYTES element {i} claims {offset - start} bytes, only {size - start} left")
        items[i] = buffer[start:offset]
    if offset != size:
        raise InvalidInput(f"input {shown(tensor)}: {size - offset} bytes left over after {count} BYTES elements")
    out = np.empty(count, dtype=object)
    out[:] = items
    return out


def encode_bytes(array: np.ndarray) -> bytes:
    """Elements (str as UTF-8, or bytes) -> the length-prefixed layout; the one encoder, client's included."""
    parts = []
    for item in array.reshape(-1):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _decode_raw(tensor: str, shape: tuple[int, ...], datatype: Datatype, raw: bytes | memoryview,
                budget: Budget) -> np.ndarray:
    if datatype.name == "BYTES":
        raw = bytes(raw)  # its elements become bytes objects of their own
        most = len(raw) // LENGTH_PREFIX
        bound = max(most, budget.cap)
        count = elements(shape, bound)
        if count is None or count > most:
            raise InvalidInput(
                f"input {shown(tensor)}: shape {shape_text(shape)} needs {_count_text(count, bound)} BYTES elements, but "
                f"{len(raw)} bytes of raw content hold at most {most} (each starts with a 4-byte length)"
            )
        budget.take(tensor, shape, count, strings=True)
        return decode_bytes(raw, count, tensor).reshape(shape)
    size = datatype.itemsize
    bound = max(len(raw) // size, budget.cap)
    count = elements(shape, bound)
    if count is None or count * size != len(raw):
        needs = f"{count * size} bytes" if count is not None else f"more than {bound * size} bytes"
        raise InvalidInput(
            f"input {shown(tensor)}: raw content is {len(raw)} bytes, but shape {shape_text(shape)} of "
            f"{datatype.name} needs {needs}"
        )
    budget.take(tensor, shape, count, strings=False)
    # A read-only view of the bytes (the message's, or the payload's: serving.wire): no copy.
    return np.frombuffer(raw, dtype=_LITTLE_ENDIAN[datatype.name]).reshape(shape)


def _decode_typed(message: pb.ModelInferRequest.InferInputTensor, tensor: str, shape: tuple[int, ...],
                  datatype: Datatype, budget: Budget) -> np.ndarray:
    field = TYPED_FIELDS.get(datatype.name)
    if field is None:
        raise InvalidInput(f"input {shown(tensor)}: {datatype.name} can only be sent as raw_input_contents")
    stray = [f.name for f, _ in message.contents.ListFields() if f.name != field]
    if stray:
        raise InvalidInput(f"input {shown(tensor)}: {datatype.name} values go in contents.{field}, "
                           f"but contents.{stray[0]} is set too")
    values = getattr(message.contents, field)
    bound = max(len(values), budget.cap)
    count = elements(shape, bound)
    if count != len(values):  # counted before anything is converted
        raise InvalidInput(
            f"input {shown(tensor)}: {len(values)} values in contents.{field}, but shape {shape_text(shape)} "
            f"needs {_count_text(count, bound)}"
        )
    strings = datatype.name == "BYTES"
    budget.take(tensor, shape, count, strings)
    if strings:
        array = np.empty(count, dtype=object)
        array[:] = values[:]
        return array.reshape(shape)
    try:
        return np.array(values[:], dtype=datatype.numpy).reshape(shape)
    except (OverflowError, ValueError):  # e.g. 300 in int_contents for a UINT8 input
        raise InvalidInput(f"input {shown(tensor)}: a value in contents.{field} is out of range for {datatype.name}") from None


def decode_request(message: pb.ModelInferRequest, limits: RequestLimits = DEFAULT_LIMITS,
                   raw_views: list[memoryview] | None = None) -> InferRequest:
    """The request as numpy arrays; InvalidInput if malformed, TooLarge if above a cap of `limits`.
    `raw_views`: the message's raw_input_contents as views of the bytes it was parsed from
    (`serving.wire.split_raw_inputs`), read instead of copies of them."""
    for kind, tensors in (("inputs", message.inputs), ("outputs", message.outputs)):
        if len(tensors) > MAX_TENSORS:
            raise InvalidInput(f"{len(tensors)} {kind} in one request, at most {MAX_TENSORS} are accepted")
    # Repeated fields are read as slices (lists), once counted: iterating one directly ends in a
    # raised and formatted IndexError, which costs more than the rest of decoding a small request.
    given, requested_outputs = message.inputs[:], message.outputs[:]
    raw = message.raw_input_contents if raw_views is None else raw_views
    if raw:
        if any(t.HasField("contents") for t in given):
            typed = next(t.name for t in given if t.HasField("contents"))
            raise InvalidInput(
                f"input {shown(typed)} has typed contents while raw_input_contents is used: send all inputs one way"
            )
        if len(raw) != len(given):
            raise InvalidInput(f"{len(raw)} raw_input_contents for {len(given)} inputs; they must pair up in order")
    budget = Budget(limits)
    inputs, names = [], set()
    for i, tensor in enumerate(given):
        name = tensor.name
        if name in names:
            raise InvalidInput(f"input {shown(name)} appears more than once")
        names.add(name)
        datatype = _datatype(tensor.datatype, name)
        shape = _shape(tensor.shape, name)
        if raw:
            data = _decode_raw(name, shape, datatype, raw[i], budget)
        else:
            data = _decode_typed(tensor, name, shape, datatype, budget)
        inputs.append(InferInput(name, datatype.name, data))
    outputs = []
    for requested in requested_outputs:
        count = _parameter(requested.parameters["classification"]) if "classification" in requested.parameters else 0
        if not isinstance(count, int) or isinstance(count, bool):
            raise InvalidInput(f"output {shown(requested.name)}: the classification parameter must be an integer count")
        outputs.append(RequestedOutput(requested.name, count))
    timeout = None
    if message.parameters and "timeout" in message.parameters:
        timeout = _parameter(message.parameters["timeout"])
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
            raw.append(data.tobytes())  # C order, whatever the array's layout
    return message

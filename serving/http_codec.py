"""KServe v2 REST bodies <-> the data plane's types, as Triton reads and writes them, and nothing else.

An inference body is a JSON header, optionally followed by binary tensors (Triton's binary tensor
extension): the `Inference-Header-Content-Length` header says where the JSON ends, each binary input
says its size in `parameters.binary_data_size`, and the binary parts follow in input order. Inputs
sent in JSON carry `data`, flat or nested, row-major. An output is answered in binary when its
`parameters.binary_data` (or else the request's `parameters.binary_data_output`) is true.

Every field of a body may be wrong, so each is checked for its JSON type before it is used, and every
size is checked the way `serving.codec` checks gRPC's (its helpers do the counting and the BYTES
parsing), before anything is allocated: a wrong body is InvalidInput, a body above a cap TooLarge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from protos import grpc_service_pb2 as pb
from protos.config_text import Datatype

from serving.codec import Budget, _datatype, _decode_raw, elements, encode_bytes, shape_text
from serving.errors import InvalidInput, TooLarge, Unsupported
from serving.limits import MAX_RANK, MAX_TENSORS, RequestLimits, shown
from serving.requests import InferInput, InferRequest, InferResponse, RequestedOutput

HEADER_LENGTH = "Inference-Header-Content-Length"
_JSON_SLACK = 4096  # commas a header may hold beyond its values (between fields, in names)


# -- helpers that read one JSON field and say what was wrong with it ------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def _string(value, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {_kind(value)}")
    return value


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _flag(parameters: dict, key: str, what: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{what}: parameter {key!r} must be true or false, got {_kind(value)}")
    return value


def _count(parameters: dict, key: str, what: str, default: int | None = None) -> int | None:
    value = parameters.get(key, default)
    if value is not default and (not _is_int(value) or value < 0):
        raise InvalidInput(f"{what}: parameter {key!r} must be a non-negative integer, got {shown(value, 40)}")
    return value


def parse_json(text: bytes, what: str = "the request body"):
    """JSON, or InvalidInput that says why not (bad UTF-8, bad syntax, nesting too deep).

    orjson reads it (numbers ten times faster than json); what orjson refuses goes to json, which
    accepts a little more (NaN, integers past 64 bits, UTF-16) and names the fault as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidInput(f"{what} is JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not UTF-8 text (byte {exc.start}); JSON must be UTF-8") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


# -- inference requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputChoice:
    """How each output is to be answered: binary (after the JSON header) or as JSON `data`."""

    binary_default: bool = False
    binary: dict[str, bool] = field(default_factory=dict)

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def _header_length(value: str | None, size: int) -> int:
    if value is None:
        return size
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(f"the {HEADER_LENGTH} header must be a non-negative integer, got {shown(value, 40)}")
    length = int(text)
    if length > size:
        raise InvalidInput(f"the {HEADER_LENGTH} header says the JSON takes {length} bytes, but the body has {size}")
    return length


def decode_infer(body: bytes, header_length: str | None, model: str, version: str,
                 limits: RequestLimits) -> tuple[InferRequest, OutputChoice]:
    """An inference body as the data plane's request, and how its outputs are to be answered."""
    length = _header_length(header_length, len(body))
    header, binary = body[:length], memoryview(body)[length:]
    if not length:
        raise InvalidInput("the request body holds no JSON inference request")
    if header.count(b",") > limits.max_request_elements + _JSON_SLACK:  # before parsing a huge array
        raise TooLarge(f"the JSON request holds more than {limits.max_request_elements} values, "
                       "the server's limit (--max-request-elements)")
    document = _object(parse_json(header), "the request body")
    parameters = _object(document.get("parameters", {}), "the request's parameters")
    request_id = _string(document.get("id", ""), "the request's id")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput(f"the request must have 'inputs', a non-empty array, got {_kind(raw_inputs)}")
    raw_outputs = document.get("outputs", [])
    if not isinstance(raw_outputs, list):
        raise InvalidInput(f"the request's 'outputs' must be an array, got {_kind(raw_outputs)}")
    for kind, tensors in (("inputs", raw_inputs), ("outputs", raw_outputs)):
        if len(tensors) > MAX_TENSORS:
            raise InvalidInput(f"{len(tensors)} {kind} in one request, at most {MAX_TENSORS} are accepted")
    budget, offset, names, inputs = Budget(limits), 0, set(), []
    for i, tensor in enumerate(raw_inputs):
        item, offset = _input(tensor, i, binary, offset, budget)
        if item.name in names:
            raise InvalidInput(f"input {shown(item.name)} appears more than once")
        names.add(item.name)
        inputs.append(item)
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data after the JSON belong to no input "
                           f"(the inputs' binary_data_size add up to {offset})")
    choice = OutputChoice(_flag(parameters, "binary_data_output", "the request", False))
    outputs = []
    for i, tensor in enumerate(raw_outputs):
        tensor = _object(tensor, f"outputs[{i}]")
        name = _string(tensor.get("name"), f"outputs[{i}].name")
        own = _object(tensor.get("parameters", {}), f"output {shown(name)}: parameters")
        if "shared_memory_region" in own:
            raise Unsupported(f"output {shown(name)}: shared memory is not supported by this server")
        if "binary_data" in own:
            choice.binary[name] = _flag(own, "binary_data", f"output {shown(name)}", False)
        outputs.append(RequestedOutput(name, _count(own, "classification", f"output {shown(name)}", 0)))
    timeout = _count(parameters, "timeout", "the request")
    return InferRequest(model, inputs, version, request_id, outputs, timeout or None), choice


def _input(tensor, i: int, binary: memoryview, offset: int, budget: Budget) -> tuple[InferInput, int]:
    tensor = _object(tensor, f"inputs[{i}]")
    name = _string(tensor.get("name"), f"inputs[{i}].name")
    datatype = _datatype(_string(tensor.get("datatype"), f"input {shown(name)}: datatype"), name)
    shape = _shape(tensor.get("shape"), name)
    parameters = _object(tensor.get("parameters", {}), f"input {shown(name)}: parameters")
    if "shared_memory_region" in parameters:
        raise Unsupported(f"input {shown(name)}: shared memory is not supported by this server")
    size = _count(parameters, "binary_data_size", f"input {shown(name)}")
    if size is not None:
        if "data" in tensor:
            raise InvalidInput(f"input {shown(name)} has both 'data' and binary data; send one")
        if offset + size > len(binary):
            raise InvalidInput(f"input {shown(name)}: binary_data_size is {size}, but only "
                               f"{len(binary) - offset} bytes of binary data are left after the JSON")
        raw = binary[offset:offset + size]  # numbers are read in place; BYTES elements become bytes objects
        data = _decode_raw(name, shape, datatype, bytes(raw) if datatype.name == "BYTES" else raw, budget)
        return InferInput(name, datatype.name, data), offset + size
    if "data" not in tensor:
        raise InvalidInput(f"input {shown(name)} has neither 'data' nor parameters.binary_data_size")
    return InferInput(name, datatype.name, _json_data(name, shape, datatype, tensor["data"], budget)), offset


def _shape(value, tensor: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"input {shown(tensor)}: shape must be an array of integers, got {_kind(value)}")
    if len(value) > MAX_RANK:
        raise InvalidInput(f"input {shown(tensor)}: {len(value)} dimensions, at most {MAX_RANK} are accepted")
    if not all(_is_int(d) and d >= 0 for d in value):
        raise InvalidInput(f"input {shown(tensor)}: shape must hold non-negative integers, got {shown(value, 80)}")
    return tuple(value)


def _flatten(data, depth: int, tensor: str) -> list:
    """Row-major values of flat or nested `data`, at most `depth` arrays deep (the tensor's rank)."""
    if not isinstance(data, list):
        raise InvalidInput(f"input {shown(tensor)}: data must be an array, got {_kind(data)}")
    if not any(isinstance(item, list) for item in data):
        return data
    if depth <= 1:
        raise InvalidInput(f"input {shown(tensor)}: data is nested deeper than the tensor's shape")
    flat: list = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item, depth - 1, tensor))
        else:
            flat.append(item)
    return flat


_KINDS = {"b": "true or false", "i": "integers", "u": "integers", "f": "numbers"}


def _json_data(tensor: str, shape: tuple[int, ...], datatype: Datatype, data, budget: Budget) -> np.ndarray:
    strings = datatype.name == "BYTES"
    depth = max(1, len(shape))
    array = None if strings else _regular_numbers(data, depth, tensor)
    values = _flatten(data, depth, tensor) if array is None else None  # the slow path says what is wrong
    size = array.size if array is not None else len(values)
    bound = max(size, budget.cap)
    count = elements(shape, bound)
    if count != size:
        needs = str(count) if count is not None else f"more than {bound}"
        raise InvalidInput(f"input {shown(tensor)}: {size} values in data, but shape {shape_text(shape)} needs {needs}")
    budget.take(tensor, shape, count, strings)
    if strings:
        if not all(isinstance(v, str) for v in values):
            raise InvalidInput(f"input {shown(tensor)}: BYTES data must be strings (binary data can carry any bytes)")
        out = np.empty(count, dtype=object)
        out[:] = [v.encode("utf-8", "surrogatepass") for v in values]
        return out.reshape(shape)
    target = np.dtype(datatype.numpy)
    wanted = _KINDS[target.kind]
    if array is None:
        try:
            array = np.array(values)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(f"input {shown(tensor)}: {datatype.name} data must be {wanted}") from None
    allowed = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[target.kind]
    if count and array.dtype.kind not in allowed:
        raise InvalidInput(f"input {shown(tensor)}: {datatype.name} data must be {wanted}")
    if count and target.kind in "iu":
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(f"input {shown(tensor)}: a value is out of range for {datatype.name}")
    with np.errstate(over="ignore"):
        return array.astype(target).reshape(shape)


def _regular_numbers(data, depth: int, tensor: str) -> np.ndarray | None:
    """`data` as one numpy array when it is numbers nested regularly (the common case, converted in C);
    None when it is anything else, for `_flatten` and the checks after it to name the fault."""
    if not isinstance(data, list):
        raise InvalidInput(f"input {shown(tensor)}: data must be an array, got {_kind(data)}")
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.dtype.kind not in "biuf":
        return None
    if array.ndim > depth:
        raise InvalidInput(f"input {shown(tensor)}: data is nested deeper than the tensor's shape")
    return array


# -- inference responses -----------------------------------------------------------------------------------


def encode_infer(response: InferResponse, choice: OutputChoice) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    outputs, parts = [], []
    for output in response.outputs:
        entry = {"name": output.name, "datatype": output.datatype, "shape": list(output.data.shape)}
        if choice.is_binary(output.name):
            raw = encode_bytes(output.data) if output.datatype == "BYTES" else _little_endian(output.data)
            entry["parameters"] = {"binary_data_size": len(raw)}
            parts.append(raw)
        else:
            entry["data"] = _json_values(output.name, output.data)
        outputs.append(entry)
    document = {"model_name": response.model, "model_version": response.version}
    if response.id:
        document["id"] = response.id
    document["outputs"] = outputs
    header = json.dumps(document, separators=(",", ":")).encode()
    if not parts:
        return header, None
    return b"".join([header, *parts]), len(header)


def _little_endian(data: np.ndarray) -> bytes:
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    return np.ascontiguousarray(data).tobytes()


def _json_values(name: str, data: np.ndarray) -> list:
    if data.dtype != object:
        return data.reshape(-1).tolist()
    try:
        return [v if isinstance(v, str) else bytes(v).decode("utf-8") for v in data.reshape(-1)]
    except UnicodeDecodeError:
        raise InvalidInput(f"output {shown(name)} holds bytes that are not UTF-8 text; "
                           "ask for it with parameters.binary_data true") from None


# -- metadata, configuration, statistics, repository ---------------------------------------------------------


def message_json(message) -> dict:
    """A protobuf message as Triton's HTTP API writes it: proto field names, every field, and 64-bit
    integers as JSON numbers (protobuf's own JSON mapping writes them as strings)."""
    return _numbers(json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                              preserving_proto_field_name=True), message.DESCRIPTOR)


_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def _numbers(value: dict, descriptor) -> dict:
    for key, item in value.items():
        fd = descriptor.fields_by_name.get(key)
        if fd is None:
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            inner = fd.message_type.fields_by_name["value"]
            if inner.message_type is not None:
                value[key] = {k: _numbers(v, inner.message_type) for k, v in item.items()}
            elif inner.type in _INT64:
                value[key] = {k: int(v) for k, v in item.items()}
        elif fd.message_type is not None:
            value[key] = [_numbers(v, fd.message_type) for v in item] if isinstance(item, list) else _numbers(item, fd.message_type)
        elif fd.type in _INT64:
            value[key] = [int(v) for v in item] if isinstance(item, list) else int(item)
    return value


def load_request(model: str, body: bytes) -> pb.RepositoryModelLoadRequest:
    """A REST load body ({"parameters": {"config": "<JSON>"}}) as the gRPC request it stands for, so
    that one implementation checks both."""
    request = pb.RepositoryModelLoadRequest(model_name=model)
    document = _object(parse_json(body), "the load request") if body.strip() else {}
    parameters = _object(document.get("parameters", {}), "the load request's parameters")
    for key, value in parameters.items():
        target = request.parameters[key]
        if isinstance(value, bool):
            target.bool_param = value
        elif _is_int(value) and -(1 << 63) <= value < (1 << 63):
            target.int64_param = value
        elif isinstance(value, str):
            target.string_param = value
        else:
            raise InvalidInput(f"load parameter {shown(key)} must be a string, a 64-bit integer or a boolean, got {_kind(value)}")
    return request


def index_ready_only(body: bytes) -> bool:
    document = _object(parse_json(body), "the index request") if body.strip() else {}
    return _flag(document, "ready", "the index request", False)

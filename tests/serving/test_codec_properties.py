"""Property tests of the request codec and validation: whatever a message claims, decoding it raises
nothing but ServingError subclasses, never holds more elements than its payload carries, and never
allocates more than a small multiple of the message's own size."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protos import grpc_service_pb2 as pb
from serving.codec import TYPED_FIELDS, decode_bytes, decode_request, encode_bytes
from serving.errors import InvalidInput, ServingError, TooLarge
from serving.limits import MAX_RANK, RequestLimits
from serving.repository import Repository
from serving.validation import check_inputs, check_outputs
from tests.serving.builders import HEALTHY

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES"]
ITEMSIZE = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "UINT32": 4, "INT32": 4,
            "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
NAMES = ["x", "text", "ids", "images", "v", "z", ""]
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dims_strategy = st.one_of(
    st.integers(-2, 6),
    st.sampled_from([0, 1, 4, 1000, 2**31, 300_000_000, 2**62, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
shapes = st.lists(dims_strategy, min_size=0, max_size=40)


@st.composite
def bytes_payloads(draw) -> bytes:
    """Length-prefixed elements, sometimes with a lying length or stray bytes."""
    items = draw(st.lists(st.binary(max_size=8), max_size=12))
    data = b"".join(struct.pack("<I", len(i)) + i for i in items)
    spoil = draw(st.sampled_from(["none", "none", "cut", "extra", "lie"]))
    if spoil == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif spoil == "extra":
        data += draw(st.binary(min_size=1, max_size=5))
    elif spoil == "lie":
        data = struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + data
    return data


@st.composite
def tensors(draw, typed: bool):
    datatype = draw(st.one_of(st.sampled_from(DATATYPES), st.sampled_from(["FLOAT", "", "BF16", "STRING"])))
    shape = draw(st.one_of(shapes, st.just([draw(st.integers(0, 5))])))
    if typed:
        field = TYPED_FIELDS.get(datatype, "fp32_contents")
        count = draw(st.integers(0, 12))
        if field == "bytes_contents":
            values = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
        elif field == "bool_contents":
            values = draw(st.lists(st.booleans(), min_size=count, max_size=count))
        elif field.startswith(("fp32", "fp64")):
            values = draw(st.lists(st.floats(width=32), min_size=count, max_size=count))
        elif field.startswith("uint64"):
            values = draw(st.lists(st.integers(0, 2**64 - 1), min_size=count, max_size=count))
        elif field.startswith("uint"):
            values = draw(st.lists(st.integers(0, 2**32 - 1), min_size=count, max_size=count))
        elif field.startswith("int64"):
            values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=count, max_size=count))
        else:
            values = draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=count, max_size=count))
        return datatype, shape, (field, values)
    if datatype == "BYTES" and draw(st.booleans()):
        payload = draw(bytes_payloads())
    else:
        payload = draw(st.binary(max_size=64))
    return datatype, shape, payload


@st.composite
def messages(draw) -> pb.ModelInferRequest:
    typed = draw(st.booleans())
    message = pb.ModelInferRequest(model_name=draw(st.sampled_from(HEALTHY)))
    for _ in range(draw(st.integers(0, 3))):
        datatype, shape, content = draw(tensors(typed))
        tensor = message.inputs.add(name=draw(st.sampled_from(NAMES)), datatype=datatype, shape=shape)
        if typed:
            field, values = content
            getattr(tensor.contents, field).extend(values)
        else:
            message.raw_input_contents.append(content)
    for name in draw(st.lists(st.sampled_from(["y", "same", "echo", "total", "tripled", "nope"]), max_size=3)):
        message.outputs.add(name=name)
    return message


# model -> (input, datatype, dims after the batch dimension, batched): what a valid request sends.
VALID = {
    "doubler": ("x", "FP32", [4], True), "merger": ("x", "FP32", [2], True), "held": ("x", "FP32", [2], True),
    "pixels": ("images", "UINT8", [3], True), "fixed": ("v", "INT64", [2, 2], False),
    "strings": ("text", "BYTES", [1], True), "lookup": ("ids", "INT64", [-1], True),
}


@st.composite
def plausible_messages(draw) -> pb.ModelInferRequest:
    """A request that fits its model, or nearly: so that the checks past decoding are reached too."""
    model = draw(st.sampled_from(sorted(VALID)))
    name, datatype, dims, batched = VALID[model]
    shape = [draw(st.integers(1, 10)) if d == -1 else d for d in dims]
    if batched:
        shape = [draw(st.integers(0, 10)), *shape]
    count = int(np.prod(shape))
    typed = draw(st.booleans())
    message = pb.ModelInferRequest(model_name=model)
    tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
        if typed:
            tensor.contents.bytes_contents.extend(items)
        else:
            message.raw_input_contents.append(b"".join(struct.pack("<I", len(i)) + i for i in items))
    else:
        low, high = (-5, 120) if datatype == "INT64" else (0, 255)
        values = draw(st.lists(st.integers(low, high), min_size=count, max_size=count))
        array = np.array(values, dtype={"FP32": np.float32, "UINT8": np.uint8, "INT64": np.int64}[datatype])
        if typed:
            getattr(tensor.contents, TYPED_FIELDS[datatype]).extend(array.tolist())
        else:
            message.raw_input_contents.append(array.tobytes())
    if draw(st.integers(0, 3)) == 0:  # one lie about the shape
        tensor.shape[draw(st.integers(0, len(shape) - 1))] = draw(dims_strategy)
    return message


limits = st.builds(RequestLimits, st.integers(1, 5000), st.integers(1, 500))


@pytest.fixture(scope="module")
def specs(repository):
    source = Repository(repository)
    return {name: source.read(name).spec for name in HEALTHY}


def payload_bound(message: pb.ModelInferRequest, index: int) -> int:
    """The most elements input `index` can hold, given what came with it."""
    tensor = message.inputs[index]
    if message.raw_input_contents:
        raw = message.raw_input_contents[index]
        return len(raw) // 4 if tensor.datatype == "BYTES" else len(raw) // ITEMSIZE[tensor.datatype]
    field = TYPED_FIELDS[tensor.datatype]
    return len(getattr(tensor.contents, field))


@PROPERTY
@given(message=st.one_of(messages(), plausible_messages()), caps=limits)
def test_decoding_raises_only_serving_errors_and_never_holds_more_than_the_payload(specs, message, caps):
    size = len(message.SerializeToString())
    tracemalloc.start()
    try:
        try:
            request = decode_request(message, caps)
        except ServingError as exc:
            event(f"decode: {type(exc).__name__}")
            return
        finally:
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 64 * size + 200_000, f"{peak} bytes traced decoding a {size}-byte message"
    total = strings = 0
    for index, tensor in enumerate(request.inputs):
        assert tensor.data.ndim <= MAX_RANK
        assert tensor.data.size <= payload_bound(message, index)
        total += tensor.data.size
        strings += tensor.data.size if tensor.datatype == "BYTES" else 0
    assert total <= caps.max_request_elements and strings <= caps.max_string_elements
    spec = specs[request.model]
    try:
        arrays = check_inputs(spec, request, caps)
        check_outputs(spec, request.outputs)
    except ServingError as exc:
        event(f"validation: {type(exc).__name__}")
        return
    event("accepted")
    assert set(arrays) <= {t.name for t in spec.inputs}


@PROPERTY
@given(buffer=st.one_of(bytes_payloads(), st.binary(max_size=40)), count=st.integers(0, 2**40))
def test_decode_bytes_refuses_counts_the_buffer_cannot_hold(buffer, count):
    tracemalloc.start()
    try:
        try:
            out = decode_bytes(buffer, count, "t")
        except InvalidInput:
            out = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 64 * len(buffer) + 10_000
    if out is not None:
        assert out.size == count <= len(buffer) // 4


@PROPERTY
@given(items=st.lists(st.binary(max_size=20), max_size=30))
def test_bytes_round_trip(items):
    array = np.array(items + [b""], dtype=object)[: len(items)]
    assert decode_bytes(encode_bytes(array), len(items), "t").tolist() == items


def test_rank_is_refused_before_the_dims_are_read():
    message = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b""])
    message.inputs.add(name="x", datatype="FP32", shape=[2**62] * (MAX_RANK + 1))
    with pytest.raises(InvalidInput, match=f"{MAX_RANK + 1} dimensions"):
        decode_request(message)


def test_a_zero_dimension_does_not_excuse_huge_others():
    message = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b""])
    message.inputs.add(name="x", datatype="FP32", shape=[0, 2**40, 2**40])
    with pytest.raises(TooLarge, match="--max-request-elements"):
        decode_request(message)
    message.inputs[0].ClearField("shape")
    message.inputs[0].shape.extend([0, 4])
    assert decode_request(message).inputs[0].data.shape == (0, 4)


def test_caps_count_over_all_inputs():
    message = pb.ModelInferRequest(model_name="doubler")
    for name in ("a", "b"):
        message.inputs.add(name=name, datatype="FP32", shape=[3]).contents.fp32_contents.extend([1, 2, 3])
    assert len(decode_request(message, RequestLimits(6, 1)).inputs) == 2
    with pytest.raises(TooLarge, match="input 'b'.* above 5 elements"):
        decode_request(message, RequestLimits(5, 1))

"""Raw inputs split off a ModelInfer payload (serving.wire): for any payload, the split must mean
exactly what protobuf's own parse of the whole payload means, and the inputs must be the payload's
own bytes, not copies."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos import grpc_service_pb2 as pb
from serving.codec import decode_request
from serving.wire import RAW_INPUT_CONTENTS, split_field, split_raw_inputs

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNKNOWN_FIELD = bytes([99 << 3 & 0x7F | 0x80, 99 >> 4, 5])  # field 99, a varint: what a newer client may add


def _parse(data: bytes) -> pb.ModelInferRequest | None:
    try:
        return pb.ModelInferRequest.FromString(data)
    except Exception:  # noqa: BLE001 - any parse failure
        return None


def _joined(body: bytes, views) -> pb.ModelInferRequest | None:
    """What a split means: the body parsed, with the views as its raw inputs."""
    message = _parse(body)
    if message is not None and views:
        message.raw_input_contents.extend(bytes(v) for v in views)
    return message


@st.composite
def requests(draw) -> bytes:
    """Valid requests: names, ids, parameters, typed or raw inputs, with the fields in any order
    (a serialized message is the merge of its pieces) and an unknown field anywhere."""
    head = pb.ModelInferRequest(model_name=draw(st.text(max_size=8)), id=draw(st.text(max_size=8)))
    if draw(st.booleans()):
        head.parameters["timeout"].int64_param = draw(st.integers(0, 10**6))
    pieces = [head.SerializeToString()]
    for _ in range(draw(st.integers(0, 3))):
        holder = pb.ModelInferRequest()
        tensor = holder.inputs.add(name=draw(st.text(max_size=4)), datatype="FP32",
                                   shape=draw(st.lists(st.integers(-1, 5), max_size=3)))
        tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=5)))
        pieces.append(holder.SerializeToString())
    if draw(st.booleans()):
        pieces.append(UNKNOWN_FIELD)
    pieces = list(draw(st.permutations(pieces)))
    for value in draw(st.lists(st.binary(max_size=300), max_size=4)):  # raw inputs keep their order
        at = draw(st.integers(0, len(pieces)))
        later = [i for i, p in enumerate(pieces) if isinstance(p, tuple)]
        at = max([at, *(i + 1 for i in later)])
        pieces.insert(at, (pb.ModelInferRequest(raw_input_contents=[value]).SerializeToString(),))
    return b"".join(p[0] if isinstance(p, tuple) else p for p in pieces)


@PROPERTY
@given(requests())
def test_a_split_request_means_what_the_whole_payload_means(data):
    body, views = split_raw_inputs(data)
    whole = _parse(data)
    assert whole is not None and _joined(body, views) == whole
    if whole.raw_input_contents:
        assert views is not None and len(body) < len(data)  # split off, not left in what is parsed
    else:
        assert (body, views) == (data, None)


@PROPERTY
@given(st.one_of(st.binary(max_size=200), requests().flatmap(lambda d: st.integers(0, len(d)).map(lambda n: d[:n])),
                 requests().flatmap(lambda d: st.binary(min_size=1, max_size=8).map(lambda junk: d + junk))))
def test_a_split_accepts_nothing_protobuf_refuses_and_changes_nothing_it_reads(data):
    """Random, cut-short and padded payloads: where the walk gives up, the payload is parsed whole;
    where it splits, the parts parse exactly as the whole does, or both fail."""
    split = split_field(data, RAW_INPUT_CONTENTS)
    if split is None:
        assert split_raw_inputs(data) == (data, None)
        return
    whole, parts = _parse(data), _joined(*split)
    assert (whole is None) == (parts is None)
    assert parts == whole


def test_raw_inputs_are_read_in_place_from_the_payload():
    """The decoded arrays share the payload's memory: no copy of the tensor is made."""
    image = np.arange(3 * 64 * 64, dtype=np.float32)
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[1, 3, 64, 64])
    message.raw_input_contents.append(image.tobytes())
    payload = message.SerializeToString()
    body, views = split_raw_inputs(payload)
    decoded = decode_request(_parse(body), raw_views=views).inputs[0].data
    np.testing.assert_array_equal(decoded.reshape(-1), image)
    assert np.shares_memory(decoded, np.frombuffer(payload, np.uint8))
    copied = decode_request(_parse(payload)).inputs[0].data  # the message's own field: a copy
    assert not np.shares_memory(copied, np.frombuffer(payload, np.uint8))

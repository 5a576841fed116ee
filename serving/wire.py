"""A ModelInfer request's raw inputs read in place from the bytes it arrived in, never copied.

Why: protobuf's Python parser copies a message's bytes fields twice: `FromString` copies the payload
(1.5 ms for a 19 MB batch of 32 224x224 images), and reading `request.raw_input_contents[i]`
builds a new bytes object (0.29 ms for one 600 KB image, 8.5 ms for the batch of 32), each into
freshly mapped memory. Here the raw inputs are split off the payload first: the rest of the message
(names, shapes, parameters: a few hundred bytes) is parsed as usual, and each raw input is a
memoryview of the payload that numpy wraps and ONNX Runtime reads as it is. So parsing a request
costs the same for any tensor size, and the gRPC front's dispatch thread decodes large numeric
requests itself instead of handing them to another thread (serving/native_front.py). Strings
(BYTES) still cost a Python object per element to decode: a request with many of them
(`converted_bytes`) still goes to the decoder thread, as do large typed `contents`.

Only the top level of the message is walked: each field's key, then its value skipped by wire type.
Every length is checked against the payload; on anything the walk does not read (groups, a field
cut short) it gives up, and the payload is parsed whole, as protobuf does. Dropping the raw inputs
from what protobuf parses cannot hide an error there: a bytes field's content is never checked.
"""

from __future__ import annotations

from protos import grpc_service_pb2 as pb

RAW_INPUT_CONTENTS = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5  # wire types (groups, 3 and 4, are not read)


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(value, position after it), or None if it runs past `end` or over 10 bytes."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None


def split_field(payload: bytes, number: int) -> tuple[bytes, list[memoryview]] | None:
    """(the payload without its top-level LEN fields `number`, those fields' contents as views of
    the payload, in order: a repeated bytes field's elements as the parser would list them); None if
    the walk cannot account for every byte."""
    end, pos, views, kept, start = len(payload), 0, [], [], 0
    whole = memoryview(payload)
    while pos < end:
        field_start = pos
        key = _varint(payload, pos, end)
        if key is None:
            return None
        key, pos = key
        wire = key & 7
        if wire == _LEN:
            size = _varint(payload, pos, end)
            if size is None or size[1] + size[0] > end:
                return None
            size, pos = size
            if key >> 3 == number:
                views.append(whole[pos:pos + size])
                kept.append(whole[start:field_start])
                start = pos + size
            pos += size
        elif wire == _VARINT:
            skipped = _varint(payload, pos, end)
            if skipped is None:
                return None
            pos = skipped[1]
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:
            return None
    if pos != end:
        return None
    if not views:
        return payload, views
    kept.append(whole[start:end])
    return b"".join(kept), views


def split_raw_inputs(payload: bytes) -> tuple[bytes, list[memoryview] | None]:
    """(what to parse as the ModelInferRequest, its raw_input_contents as views of `payload`, or
    None where they stay in what is parsed)."""
    split = split_field(payload, RAW_INPUT_CONTENTS)
    if split is None or not split[1]:
        return payload, None
    return split


def converted_bytes(request: pb.ModelInferRequest, raw_views: list[memoryview] | None) -> int:
    """Bytes of raw inputs that decoding converts element by element (BYTES: a Python object per
    element), not just wraps; what makes a request with a small body slow to decode all the same."""
    if not raw_views:
        return 0
    return sum(len(view) for tensor, view in zip(request.inputs[:], raw_views) if tensor.datatype == "BYTES")

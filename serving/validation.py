"""Checking a decoded request against the model's config, with messages that say what was expected.

Malformed requests are InvalidInput naming the tensor: unknown, repeated or missing inputs, a
datatype other than the config's, a shape that does not fit the config's dims (-1 matches any
size), a batch above max_batch_size, an index outside the range the model declares, and requested
outputs the model does not have. A request that fits the config but holds more elements than the
server or the model allows is TooLarge: `-1` dims would otherwise accept any size. The typed task
services build their requests without the codec, so the caps are checked here as well.

Model parameters read here (config.pbtxt `parameters`, string values):
- `dnnzoo.max_request_elements`: lowers the server's --max-request-elements for this model.
- `dnnzoo.input.<input>.range`: "LOW,HIGH", the inclusive range of an integer input's values
  (embedding ids, class indices); anything outside would index past a table inside the graph.
"""

from __future__ import annotations

import numpy as np
from protos import contract

from serving.errors import InvalidInput, ModelNotReady, TooLarge
from serving.limits import RequestLimits, shown
from serving.repository import ModelSpec, TensorSpec
from serving.requests import InferRequest, RequestedOutput

DEFAULT_LIMITS = RequestLimits()


def _shape_text(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def _describe(spec: ModelSpec, tensor: TensorSpec) -> str:
    return f"{tensor.name!r} ({tensor.datatype.name} {_shape_text(spec.full_shape(tensor))})"


def _parameter(spec: ModelSpec, key: str) -> str | None:
    parameters = spec.config.parameters
    return parameters[key].string_value if key in parameters else None


def element_cap(spec: ModelSpec, limits: RequestLimits) -> tuple[int, str]:
    """The most elements one request to this model may hold, and what sets that number."""
    text = _parameter(spec, contract.MAX_REQUEST_ELEMENTS)
    if text is None:
        return limits.max_request_elements, "the server's --max-request-elements"
    own = contract.positive_integer(text)
    if own is None:
        raise ModelNotReady(f"model {spec.name!r} cannot serve: its {contract.MAX_REQUEST_ELEMENTS} parameter {text[:40]!r} "
                            "is not a positive integer")
    if own < limits.max_request_elements:
        return own, f"the model's {contract.MAX_REQUEST_ELEMENTS} parameter"
    return limits.max_request_elements, "the server's --max-request-elements"


def value_range(spec: ModelSpec, tensor: TensorSpec) -> tuple[int, int] | None:
    """The inclusive range the model declares for an integer input, if it declares one."""
    key = contract.input_range_key(tensor.name)
    text = _parameter(spec, key)
    if text is None:
        return None
    bounds = contract.inclusive_range(text)
    if bounds is None:
        raise ModelNotReady(f"model {spec.name!r} cannot serve: its {key} parameter {text[:40]!r} is not 'LOW,HIGH'")
    return bounds


def check_inputs(spec: ModelSpec, request: InferRequest, limits: RequestLimits = DEFAULT_LIMITS) -> dict[str, np.ndarray]:
    """The request's arrays by name, once each matches the config and the caps."""
    by_name = {t.name: t for t in spec.inputs}
    arrays: dict[str, np.ndarray] = {}
    batch_sizes = set()
    max_batch = spec.max_batch_size
    cap, cap_source = element_cap(spec, limits)
    total = strings = 0
    for given in request.inputs:
        tensor = by_name.get(given.name)
        if tensor is None:
            expected = ", ".join(_describe(spec, t) for t in spec.inputs)
            raise InvalidInput(f"model {spec.name!r} has no input {shown(given.name)}; its inputs are {expected}")
        if given.name in arrays:
            raise InvalidInput(f"input {shown(given.name)} appears more than once")
        if given.datatype != tensor.datatype.name:
            raise InvalidInput(f"input {given.name!r}: datatype {shown(given.datatype)}, expected {tensor.datatype.name}")
        _check_shape(spec, tensor, given.data.shape, max_batch)
        total += given.data.size
        if total > cap:
            raise TooLarge(
                f"input {given.name!r}: shape {_shape_text(given.data.shape)} takes the request to model "
                f"{spec.name!r} above {cap} elements, the limit set by {cap_source}"
            )
        if given.datatype == "BYTES":
            strings += given.data.size
            if strings > limits.max_string_elements:
                raise TooLarge(
                    f"input {given.name!r}: shape {_shape_text(given.data.shape)} takes the request above "
                    f"{limits.max_string_elements} BYTES elements, the server's limit (--max-string-elements)"
                )
        _check_range(spec, tensor, given.data)
        if max_batch > 0:
            batch_sizes.add(given.data.shape[0])
        arrays[given.name] = given.data
    missing = [t for t in spec.inputs if t.name not in arrays and not t.optional]
    if missing:
        wanted = ", ".join(_describe(spec, t) for t in missing)
        raise InvalidInput(f"model {spec.name!r} is missing input {wanted}")
    if len(batch_sizes) > 1:
        raise InvalidInput(f"inputs of model {spec.name!r} disagree on the batch size (dim 0): {sorted(batch_sizes)}")
    return arrays


def _check_shape(spec: ModelSpec, tensor: TensorSpec, shape: tuple[int, ...], max_batch: int) -> None:
    dims, given = tensor.dims, shape[1:] if max_batch > 0 else shape  # dim 0 of a batched model: below
    fits = len(shape) == len(dims) + (max_batch > 0) and all(e == -1 or e == s for e, s in zip(dims, given))
    if not fits:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {_shape_text(shape)} does not match the model's {_shape_text(spec.full_shape(tensor))}"
        )
    if max_batch > 0:
        if shape[0] < 1:
            raise InvalidInput(f"input {tensor.name!r}: batch size (dim 0) must be at least 1")
        if shape[0] > max_batch:
            raise InvalidInput(
                f"input {tensor.name!r}: batch size {shape[0]} exceeds the model's max_batch_size {max_batch}"
            )


def _check_range(spec: ModelSpec, tensor: TensorSpec, data: np.ndarray) -> None:
    """Vectorised: two reductions, and the offending value is looked for only once one is known."""
    if data.size == 0 or data.dtype.kind not in "iu":
        return
    bounds = value_range(spec, tensor)
    if bounds is None:
        return
    low, high = bounds
    if low <= data.min() and data.max() <= high:
        return
    flat = data.reshape(-1)
    first = int(np.flatnonzero((flat < low) | (flat > high))[0])
    raise InvalidInput(
        f"input {tensor.name!r}: value {int(flat[first])} at flat index {first} is outside the model's range "
        f"[{low}, {high}] ({contract.input_range_key(tensor.name)})"
    )


def check_outputs(spec: ModelSpec, requested: list[RequestedOutput]) -> list[RequestedOutput]:
    """The outputs to return, in order: those requested, or every configured output."""
    if not requested:
        return [RequestedOutput(t.name) for t in spec.outputs]
    names = {t.name for t in spec.outputs}
    seen = set()
    for output in requested:
        if output.name not in names:
            raise InvalidInput(
                f"model {spec.name!r} has no output {shown(output.name)}; its outputs are {', '.join(repr(n) for n in sorted(names))}"
            )
        if output.name in seen:
            raise InvalidInput(f"output {output.name!r} is requested more than once")
        if output.classification < 0:
            raise InvalidInput(f"output {output.name!r}: classification count must be positive")
        seen.add(output.name)
    return requested

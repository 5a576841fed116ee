"""Checking a decoded request against the model's config, with messages that say what was expected.

Every failure is InvalidInput naming the tensor: unknown or missing inputs, a datatype other than the
config's, a shape that does not fit the config's dims (-1 matches any size), a batch above
max_batch_size, and requested outputs the model does not have.
"""

from __future__ import annotations

import numpy as np

from serving.errors import InvalidInput
from serving.repository import ModelSpec, TensorSpec
from serving.requests import InferRequest, RequestedOutput


def _shape_text(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def _describe(spec: ModelSpec, tensor: TensorSpec) -> str:
    return f"{tensor.name!r} ({tensor.datatype.name} {_shape_text(spec.full_shape(tensor))})"


def check_inputs(spec: ModelSpec, request: InferRequest) -> dict[str, np.ndarray]:
    """The request's arrays by name, once each matches the config."""
    by_name = {t.name: t for t in spec.inputs}
    arrays: dict[str, np.ndarray] = {}
    batch_sizes = set()
    for given in request.inputs:
        tensor = by_name.get(given.name)
        if tensor is None:
            expected = ", ".join(_describe(spec, t) for t in spec.inputs)
            raise InvalidInput(f"model {spec.name!r} has no input {given.name!r}; its inputs are {expected}")
        if given.name in arrays:
            raise InvalidInput(f"input {given.name!r} appears more than once")
        if given.datatype != tensor.datatype.name:
            raise InvalidInput(f"input {given.name!r}: datatype {given.datatype}, expected {tensor.datatype.name}")
        _check_shape(spec, tensor, given.data.shape)
        if spec.max_batch_size > 0:
            batch_sizes.add(given.data.shape[0])
        arrays[given.name] = given.data
    missing = [t for t in spec.inputs if t.name not in arrays and not t.optional]
    if missing:
        wanted = ", ".join(_describe(spec, t) for t in missing)
        raise InvalidInput(f"model {spec.name!r} is missing input {wanted}")
    if len(batch_sizes) > 1:
        raise InvalidInput(f"inputs of model {spec.name!r} disagree on the batch size (dim 0): {sorted(batch_sizes)}")
    return arrays


def _check_shape(spec: ModelSpec, tensor: TensorSpec, shape: tuple[int, ...]) -> None:
    expected = spec.full_shape(tensor)
    fits = len(shape) == len(expected) and all(e == -1 or e == s for e, s in zip(expected, shape))
    if not fits:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {_shape_text(shape)} does not match the model's {_shape_text(expected)}"
        )
    if spec.max_batch_size > 0:
        if shape[0] < 1:
            raise InvalidInput(f"input {tensor.name!r}: batch size (dim 0) must be at least 1")
        if shape[0] > spec.max_batch_size:
            raise InvalidInput(
                f"input {tensor.name!r}: batch size {shape[0]} exceeds the model's max_batch_size {spec.max_batch_size}"
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
                f"model {spec.name!r} has no output {output.name!r}; its outputs are {', '.join(repr(n) for n in sorted(names))}"
            )
        if output.name in seen:
            raise InvalidInput(f"output {output.name!r} is requested more than once")
        if output.classification < 0:
            raise InvalidInput(f"output {output.name!r}: classification count must be positive")
        seen.add(output.name)
    return requested

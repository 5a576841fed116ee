"""Transport-free inference requests and responses: what the data plane takes and gives.

The Open Inference Protocol servicer decodes protobuf into these, and the typed task services of
the next layer build them directly from images, words or series; neither touches the other's wire
format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class InferInput:
    name: str
    datatype: str  # Open Inference Protocol name: "FP32", "UINT8", "BYTES", ...
    data: np.ndarray  # already shaped; BYTES as an object array of bytes


@dataclass
class RequestedOutput:
    name: str
    classification: int = 0  # > 0: answer the top-k as "score:index:label" BYTES instead of values


@dataclass
class InferRequest:
    model: str
    inputs: list[InferInput]
    version: str = ""
    id: str = ""
    outputs: list[RequestedOutput] = field(default_factory=list)  # empty: every output, config order
    timeout_us: int | None = None  # the request's own `timeout` parameter, on top of any deadline


@dataclass
class InferOutput:
    name: str
    datatype: str
    data: np.ndarray


@dataclass
class InferResponse:
    model: str
    version: str
    id: str
    outputs: list[InferOutput]

"""What one exported model is, before it is ONNX: its tensors, its graph source, its parity cases.

A family's graph module (`export/graphs/<family>.py`) turns a checkpoint into one or more
`ExportSpec`s (a main model plus companions such as `NAME_neighbors`); the pipeline then converts,
checks parity and writes each of them the same way. Keeping the description as plain data is what
lets the config, the ONNX conversion and the parity check be written once. Its tensors are the
contract's `TensorSpec`s, the same class serving reads a config into; serving's `ModelSpec` is the
config as read, this is the recipe that writes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from protos.contract import TensorSpec

Arrays = dict[str, np.ndarray]
# A comparator returns (largest float difference it saw, None) when the outputs agree, else
# (…, a one-line description of the worst difference): the figure goes into the exported config.
Comparator = Callable[[Arrays, Arrays], "tuple[float, str | None]"]


@dataclass
class ExportSpec:
    """Everything needed to produce one model folder of the repository.

    Exactly one of `module` (a torch module in eval mode, exported with torch.onnx) and `graph` (a
    function building an `onnx.ModelProto` for an opset, for graphs torch cannot trace, such as a
    top-k whose k is an input) is set. `reference` computes the expected outputs from numpy inputs
    (by default the module itself in PyTorch); `samples(n)` gives a deterministic input batch of n
    items; `compare` replaces the element-wise check where outputs need another notion of equal
    (detections after NMS). `finish` may rewrite the exported graph (append post-processing nodes).
    """

    suffix: str  # appended to the model name: "" for the main model, "_neighbors" for a companion
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int
    samples: Callable[[int], Arrays]
    parameters: dict[str, str] = field(default_factory=dict)
    side_files: dict[str, bytes] = field(default_factory=dict)
    module: object | None = None  # torch.nn.Module
    graph: Callable[[int], object] | None = None  # opset -> onnx.ModelProto
    finish: Callable[[object, int], object] | None = None  # (onnx.ModelProto, opset) -> onnx.ModelProto
    export_outputs: list[str] | None = None  # the torch module's output names when `finish` renames them
    reference: Callable[[Arrays], Arrays] | None = None
    compare: Comparator | None = None
    batches: tuple[int, ...] = (1, 16)
    extra_cases: list[Arrays] = field(default_factory=list)  # e.g. another series length

    def __post_init__(self):
        if (self.module is None) == (self.graph is None):
            raise ValueError("a ExportSpec needs exactly one of module and graph")

    def cases(self) -> list[Arrays]:
        return [self.samples(n) for n in self.batches] + list(self.extra_cases)

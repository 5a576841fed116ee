"""The inputs both tritonclient checks send (gRPC and HTTP): one full batch of every input a model's
metadata lists, BYTES as b"a", numbers as 1, 2, 3, 1, … (not all equal, so an answer shows order).
Plain numpy: each check wraps them in its own client's InferInput."""

from __future__ import annotations

import numpy as np
from tritonclient.utils import triton_to_np_dtype


def sample_inputs(metadata: dict, max_batch_size: int) -> list[tuple[str, list[int], str, np.ndarray]]:
    samples = []
    for spec in metadata["inputs"]:
        shape = [int(d) for d in spec["shape"]]
        if max_batch_size:
            shape[0] = max_batch_size  # a full batch runs at once, whatever the model's queue delay
        shape = [1 if d == -1 else d for d in shape]
        if spec["datatype"] == "BYTES":
            values = np.full(shape, b"a", dtype=object)
        else:
            values = (np.arange(int(np.prod(shape))).reshape(shape) % 3 + 1).astype(triton_to_np_dtype(spec["datatype"]))
        samples.append((spec["name"], shape, spec["datatype"], values))
    return samples

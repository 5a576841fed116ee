"""Triton's classification extension: an output's top-k as "score:index[:label]" BYTES.

The label comes from the output's `label_filename` (line i = class i). The output must hold one
score vector per batch item; the answer has shape [batch, k] (or [k] for a model without batching).
"""

from __future__ import annotations

import numpy as np

from serving.errors import InvalidInput


def classify(values: np.ndarray, count: int, labels: tuple[str, ...], batched: bool, name: str) -> np.ndarray:
    if values.dtype.kind not in "iufb":
        raise InvalidInput(f"output {name!r}: classification needs a numeric output, it is {values.dtype}")
    rows = values.reshape(values.shape[0] if batched else 1, -1) if values.size else values.reshape(0, 0)
    k = min(count, rows.shape[1])
    order = np.argsort(-rows.astype(np.float64, copy=False), axis=1, kind="stable")[:, :k]
    result = np.empty(order.shape, dtype=object)
    for r, indices in enumerate(order):
        for c, index in enumerate(indices):
            text = f"{float(rows[r, index]):f}:{int(index)}"
            if index < len(labels):
                text += f":{labels[index]}"
            result[r, c] = text.encode("utf-8")
    return result if batched else result[0]

"""Bounds on what one request or one model config may ask of the server, in one place.

Every size a request claims is checked against these before anything is allocated, so that no
request can cost more memory or time than the operator allows; config values (from config.pbtxt or
a load override) are checked against the model bounds so that one folder cannot exhaust the host.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_RANK = 16  # dimensions of one tensor (Triton's own limit is far above what any model here uses)
MAX_MESSAGE_CHARS = 1000  # an error message sent to a client is cut to this
MAX_NAME_CHARS = 120  # a client-given name (model, tensor, word) is cut to this inside a message
MAX_TENSORS = 64  # inputs, and requested outputs, of one inference request

# Bounds on config values, wherever they come from (config.pbtxt or RepositoryModelLoad's override).
MAX_INSTANCES = 64  # instance threads of one model version
MAX_THREADS = 64  # ONNX Runtime intra-/inter-op threads of one session
MAX_QUEUE_DELAY_US = 10_000_000  # dynamic_batching.max_queue_delay_microseconds: 10 s
MAX_BATCH_SIZE = 1 << 20


@dataclass(frozen=True)
class RequestLimits:
    """What one inference request may hold (serve flags; a model parameter may lower the first)."""

    max_request_elements: int = 16 * 1024 * 1024
    max_string_elements: int = 1024 * 1024


def shown(text: object, limit: int = MAX_NAME_CHARS) -> str:
    """repr() of a client-given name for a message, cut so that a huge name cannot bloat the answer."""
    text = str(text)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)

"""Bounds on what one request or one model config may ask of the server, in one place.

Every size a request claims is checked against these before anything is allocated, so that no
request can cost more memory or time than the operator allows; config values (from config.pbtxt or
a load override) are checked against the model bounds so that one folder cannot exhaust the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RANK = 16  # dimensions of one tensor (Triton's own limit is far above what any model here uses)
MAX_MESSAGE_CHARS = 1000  # an error message sent to a client is cut to this
MAX_NAME_CHARS = 120  # a client-given name (model, tensor, word) is cut to this inside a message
INLINE_PAYLOAD_BYTES = 256 * 1024  # a request up to this size is parsed on the thread that received it
INLINE_ANSWER_ELEMENTS = 4096  # a REST answer with more elements is encoded off the event loop
MAX_TENSORS = 64  # inputs or outputs of one model, and of one inference request

# Bounds on config values, wherever they come from (config.pbtxt or RepositoryModelLoad's override).
MAX_INSTANCES = 64  # instance threads of one model version
MAX_THREADS = 64  # ONNX Runtime intra-/inter-op threads of one session
MAX_VERSIONS = 16  # versions of one model loaded at once (each has its sessions and instance threads)
WARM_UP_SECONDS = 300.0  # one warm-up run at load; generous because TensorRT builds its engines in the first run
MAX_QUEUE_DELAY_US = 3_600_000_000  # dynamic_batching.max_queue_delay_microseconds: an hour
MAX_BATCH_SIZE = 1 << 20
MAX_TENSOR_ELEMENTS = 1 << 26  # fixed dims of one configured tensor (warm-up allocates them)

# ONNX Runtime session config entries a model config may set (Triton's ORT backend passes such
# parameters through): tuning switches only. Others, some of which name files for ORT to write,
# are refused when a model is read (serving.repository).
ORT_SESSION_ENTRIES = frozenset({
    "session.intra_op.allow_spinning", "session.inter_op.allow_spinning", "session.force_spinning_stop",
    "session.set_denormal_as_zero", "session.disable_prepacking", "session.use_device_allocator_for_initializers",
    "session.dynamic_block_base", "session.disable_cpu_ep_fallback", "session.disable_quant_qdq",
    "session.enable_quant_qdq_cleanup", "session.disable_aot_function_inlining",
    "memory.enable_memory_arena_shrinkage",
})

FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max: a number above it is inf in a model input


@dataclass(frozen=True)
class RequestLimits:
    """What one inference request may hold (serve flags; a model parameter may lower the first)."""

    max_request_elements: int = 16 * 1024 * 1024
    max_string_elements: int = 1024 * 1024
    max_queued_bytes: int = 512 << 20  # inputs of every accepted, unanswered request together


def shown(text: object, limit: int = MAX_NAME_CHARS) -> str:
    """repr() of a client-given name for a message, cut so that a huge name cannot bloat the answer."""
    text = str(text)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


# An absolute path of two or more components (/home/x/repo/m/1/model.onnx, ~/repo/m): the last one
# is what a client can act on; the folders above it are the server's business.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])~?(?:/[^\s/'\"`(),;:<>\[\]{}]+)+/([^\s/'\"`(),;:<>\[\]{}]+)")


def without_paths(text: str) -> str:
    """`text` with absolute file paths cut to their last component: a client (or the index) learns
    which file was wrong, never where the server keeps it."""
    return _ABSOLUTE_PATH.sub(r"\1", text)

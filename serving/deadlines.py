"""A call's deadline as the data plane takes it: `time.monotonic()` seconds, read from the front's
call context (grpc.aio's, or the native front's, which answers `time_remaining` alike)."""

from __future__ import annotations

import time


def deadline_of(context) -> float | None:
    """None when the client set no deadline."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining

"""PyTorch's OpenMP threads spin-wait by default, which made small models 10-25x slower on a shared
2-core machine (design.md's toolchain facts). The policy is read once, when torch is first imported,
so every entry point that trains or exports calls `passive_wait()` before it imports torch. Nothing
sets it on import: importing a package never changes the process's environment."""

from __future__ import annotations

import os


def passive_wait() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless the user chose a policy."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

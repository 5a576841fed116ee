"""Keeps idle cores from halting while calls arrive close together, where the process may ask.

On a virtual machine a core with nothing to run halts, and the next thread woken on it pays the
host's exit from halt. One b1c1 call wakes threads four times (the front's network thread for the
request, the ONNX Runtime worker, the network thread again for the answer, and the client), and on
this 2-core VM those exits cost about 0.15 ms of its 0.9 ms (peers.py b1c1, foreign CNN: p50 0.80
against 0.94 ms with idle cores polling; README "Where b1c1's last half millisecond goes").

Linux lets a process bound that latency: a PM QoS request written to /dev/cpu_dma_latency holds
while the file stays open, and the cpuidle governor then skips idle states slower to leave than
the bound (Documentation/power/pm_qos_interface.rst). Bound 0 leaves only polling. The front holds
it from a call's arrival until `HOLD_S` passes without one, so an idle server changes nothing and
a busy one polls only in the gaps between its calls. The device is root's: where it cannot be
opened (a container without it, another user) nothing changes. Closing the file (or the process
ending) withdraws the request.
"""

from __future__ import annotations

import logging
import os
import struct

log = logging.getLogger(__name__)

DEVICE = "/dev/cpu_dma_latency"
HOLD_S = 0.002  # held this long after the last call: a closed-loop client's next call comes ~0.5 ms later
_AWAKE = struct.pack("i", 0)  # microseconds: no idle state but polling
_DEFAULT = struct.pack("i", 2_000_000_000)  # the kernel's "no constraint" (PM_QOS_CPU_LATENCY_DEFAULT_VALUE)


class WakeLatency:
    """`hold()` when a call arrives (one attribute test when already held), `release()` once calls
    stop; `close()` at shutdown. Inert when the device cannot be opened."""

    def __init__(self, enabled: bool = True, device: str | None = None) -> None:
        self.held = False
        self._fd = None
        if not enabled:
            return
        device = device or DEVICE
        try:
            # O_APPEND: the device ignores it; a plain file standing in for the device (tests) keeps every value
            self._fd = os.open(device, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.write(self._fd, _DEFAULT)
        except OSError as exc:
            log.debug("idle cores are left to halt: %s cannot be used (%s)", device, exc.strerror)
            self.close()
            return
        log.info("idle cores poll instead of halting while calls arrive within %g ms of each other (%s)", HOLD_S * 1e3, device)

    @property
    def active(self) -> bool:
        return self._fd is not None

    def hold(self) -> None:
        if self.held or self._fd is None:
            return
        self._write(_AWAKE)
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._write(_DEFAULT)

    def close(self) -> None:
        fd, self._fd, self.held = self._fd, None, False
        if fd is not None:
            os.close(fd)

    def _write(self, value: bytes) -> None:
        try:
            os.write(self._fd, value)
        except OSError as exc:  # not expected once open; never worth a failed call
            log.warning("cannot update %s (%s); idle cores are left to halt", DEVICE, exc.strerror)
            self.close()

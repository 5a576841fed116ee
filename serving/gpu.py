"""Is there an NVIDIA GPU this process can use? Asked of the CUDA driver itself, not of ONNX Runtime.

onnxruntime-gpu lists CUDA and TensorRT as available on any machine; asking it for them where no
GPU (or no driver) is present costs a failed provider start and a coloured multi-line warning from
ONNX Runtime's own logger at the first model load. The driver library answers in microseconds and
prints nothing: `cuInit` and `cuDeviceGetCount` through ctypes.
"""

from __future__ import annotations

import ctypes
import functools

_DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


@functools.cache
def present() -> bool:
    """True when the CUDA driver loads and counts at least one device (cached for the process)."""
    for name in _DRIVER_LIBRARIES:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
        except AttributeError:  # not the driver after all
            return False
    return False

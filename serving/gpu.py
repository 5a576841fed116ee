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


def present() -> bool:
    """True when the CUDA driver loads and counts at least one device (cached for the process)."""
    return count() > 0


@functools.cache
def count() -> int:
    """GPUs the CUDA driver shows this process (CUDA_VISIBLE_DEVICES applies); 0 without a driver."""
    for name in _DRIVER_LIBRARIES:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        number = ctypes.c_int(0)
        try:
            ok = driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(number)) == 0
        except AttributeError:  # not the driver after all
            return 0
        return max(0, number.value) if ok else 0
    return 0

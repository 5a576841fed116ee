"""Training stage: model families, shared techniques, the fit loop, run folders."""

import os

# PyTorch's OpenMP threads spin-wait by default, which makes small models 10-25x slower on a shared
# 2-core machine; this must be set before torch is first imported, and every training module is
# imported through this package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

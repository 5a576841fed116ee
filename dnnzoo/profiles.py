"""The training profiles, one list for every stage: `dnnzoo train --profile`, `dnnzoo build --profile`
and `dnnzoo serve --build-profile` (which runs build). Here rather than in training/ because serving
must not import training."""

PROFILES = ("tiny", "quick", "full")  # seconds (tests), this CPU, a GPU

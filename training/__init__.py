"""Training stage: model families, shared techniques, the fit loop, run folders.

Importing it changes nothing in the process: entry points that train call
`dnnzoo.openmp.passive_wait()` before torch loads."""

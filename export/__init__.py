"""The export stage: training runs -> parity-checked ONNX models in a Triton-compatible repository.

Entry points: `export.pipeline.export_run` (one run), `export.build.build` (every default model),
`export.check.check_repository` (validation). Nothing is imported here, so `dnnzoo export --help`
and `dnnzoo repo check` do not load torch.
"""

"""Serving: a model repository on ONNX Runtime behind the Open Inference Protocol over gRPC.

Never imports torch, training/ or export/. Start at `serving.server.create_server` (the composition
root) or `dnnzoo serve` (`serving.cli`). Kept empty so that `dnnzoo serve --help` stays cheap.
"""

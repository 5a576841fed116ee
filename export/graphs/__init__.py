"""One module per training family, each describing the ONNX models exported from its checkpoints."""

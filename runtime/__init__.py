"""lmstep.runtime: the spec's equation exported to ONNX and run by onnxruntime; the command-line interface."""

"""lmstep.runtime: the spec's equation exported to ONNX and run by onnxruntime; the command-line interface.

from lmstep.runtime import load
model = load("tiny-llama", provider="cpu", temperature=0.8)   # same API as lmstep.spec.load's models
"""


def load(*args, **kwargs):  # imported lazily: the CLI must start without importing onnxruntime
    from .loading import load as _load

    return _load(*args, **kwargs)

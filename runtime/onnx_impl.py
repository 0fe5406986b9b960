"""The onnxruntime backend as an implementation under check (``--impl onnx`` / ``--impl onnx:DIR``).

Its states are values (OnnxState), so it announces "immutable": the checker resumes old states directly.
No "batch": the exported graphs take a batch dimension, but sequences with different cache lengths would need
their caches padded, which the single-sequence OnnxModel does not do.
"""

from __future__ import annotations

from lmstep.spec import Model
from lmstep.spec.errors import InputError

from .check.adapters import ModelImpl


def open_onnx_impl(model: Model, folder: str | None, provider: str = "auto") -> ModelImpl:
    from lmstep.runtime.folder import is_export_folder
    from lmstep.runtime.loading import load

    s = model.sampler
    if folder is not None and not is_export_folder(folder):
        raise InputError(f"onnx:{folder}: not an exported lmstep folder (run `lmstep export --out {folder}` first)")
    m = load(
        folder if folder is not None else model,
        provider=provider,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
    )
    if m.arch != model.arch or m.vocab_size != model.vocab_size:
        raise InputError(
            f"onnx:{folder}: holds a {m.arch} model with vocabulary {m.vocab_size}, "
            f"not the {model.arch} model {model.name!r} ({model.vocab_size}) it is checked against"
        )
    return ModelImpl(m, f"onnx:{folder}" if folder else f"onnx ({m.provider})")

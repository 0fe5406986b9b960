"""``load(name_or_path, **sampler)``: a built-in model by name, or a checkpoint directory."""

from __future__ import annotations

import os

from . import builtin
from .errors import InputError
from .model import Model
from .sampler import Sampler

BUILTIN_MODELS: dict[str, str] = {name: desc for name, (_, _, desc) in builtin.CONFIGS.items()}
_CACHE: dict[str, Model] = {}


def load(name_or_path: str | os.PathLike, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0) -> Model:
    """A model value. ``name_or_path``: a built-in name (see ``BUILTIN_MODELS``) or a checkpoint directory.

    Sampler settings are part of the value: temperature 0 is greedy; top_k 0 and top_p 1 keep every token.
    """
    sampler = Sampler(temperature=temperature, top_k=top_k, top_p=top_p)
    key = str(name_or_path)
    if key in builtin.CONFIGS:
        if key not in _CACHE:
            arch, cfg, _ = builtin.CONFIGS[key]
            _CACHE[key] = Model(arch, cfg, builtin.init_weights(arch, cfg), name=key)
        return _CACHE[key].with_sampler(**_settings(sampler))
    if os.path.isdir(key):
        from .checkpoint import load_checkpoint

        return load_checkpoint(key, sampler)
    raise InputError(
        f"no built-in model or checkpoint directory named {key!r}; "
        f"use one of {', '.join(BUILTIN_MODELS)} or a folder with config.json"
    )


def _settings(s: Sampler) -> dict[str, float]:
    return {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p}

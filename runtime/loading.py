"""``load(name_or_path, provider=..., **sampler)``: the onnxruntime model for a built-in name, a checkpoint
folder (exported on first use, then cached) or an exported folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmstep.spec import BUILTIN_MODELS
from lmstep.spec import load as load_spec
from lmstep.spec.model import Model
from lmstep.spec.sampler import Sampler

from .cache import cached_export, known_export, remember_export
from .folder import is_export_folder
from .onnx_model import OnnxModel
from .session import resolve_provider

# Sessions are costly to create; models opened on the same folder with the same provider and threads share them.
_SESSIONS: dict[tuple[str, str, int], OnnxModel] = {}


def load(
    name_or_path: str | os.PathLike | Model,
    *,
    provider: str = "auto",
    threads: int = 1,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    progress: Any = None,
) -> OnnxModel:
    """An :class:`OnnxModel` with the spec's API. ``name_or_path``: a built-in name, a checkpoint folder, an
    exported folder (``lmstep export``), or an ``lmstep.spec.Model`` value."""
    sampler = Sampler(temperature=temperature, top_k=top_k, top_p=top_p)
    resolve_provider(provider)  # a bad or unavailable provider fails before any export work
    if isinstance(name_or_path, Model):
        folder = cached_export(name_or_path, progress)
    elif is_export_folder(name_or_path):
        folder = Path(name_or_path)
    elif str(name_or_path) not in BUILTIN_MODELS and os.path.isdir(
        name_or_path
    ):  # a checkpoint: exported before (as its files are now), or export it
        folder = known_export(name_or_path)
        if folder is None:
            folder = cached_export(load_spec(name_or_path), progress)
            remember_export(name_or_path, folder)
    else:
        folder = cached_export(load_spec(name_or_path), progress)
    key = (str(Path(folder).resolve()), provider, threads)
    if key not in _SESSIONS:
        _SESSIONS[key] = OnnxModel(folder, provider, Sampler(), threads)
    return _SESSIONS[key].with_sampler(temperature=sampler.temperature, top_k=sampler.top_k, top_p=sampler.top_p)

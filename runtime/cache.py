"""Exports cached on disk, keyed by what determines them (arch, config, weights digest, exporter version):
``$LMSTEP_CACHE/onnx/<key>`` (default ``~/.cache/lmstep``). Each entry is written atomically by
``folder.write_folder``; a concurrent writer that loses the rename uses the winner's identical folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lmstep.spec.model import Model

from .folder import export_key, is_export_folder, read_manifest, write_folder


def cache_root() -> Path:
    base = os.environ.get("LMSTEP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lmstep")
    return Path(base) / "onnx"


def cached_export(model: Model, progress: Callable[[str], None] | None = None) -> Path:
    """The export folder of ``model``, exporting it on the first use."""
    path = cache_root() / export_key(model)
    if is_export_folder(path):
        read_manifest(path)  # a complete entry, or a one-line error naming the folder
        return path
    path.parent.mkdir(parents=True, exist_ok=True)  # lmstep's own cache: its folders are lmstep's to create
    try:
        write_folder(model, path, progress=progress)
    except OSError:
        if not is_export_folder(path):  # not a lost race: a real failure (disk full, permissions)
            raise
    return path

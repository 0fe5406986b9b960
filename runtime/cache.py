"""Exports cached on disk, keyed by what determines them (arch, config, weights digest, exporter version):
``$LMSTEP_CACHE/onnx/<key>`` (default ``~/.cache/lmstep``). Each entry is written atomically by
``folder.write_folder``; a concurrent writer that loses the rename uses the winner's identical folder.

The key needs the weights digest, which means loading the checkpoint and hashing every weight as float32 (about
20 s for a 1.1B-parameter bf16 checkpoint). So a checkpoint folder also gets a note,
``$LMSTEP_CACHE/onnx/sources/<fingerprint>``, naming its export: the fingerprint covers every file in the folder
as the file system describes it (name, size, modification time in ns, inode) and the exporting code, so a later
run opens the export without reading a weight. Any write to a file, or a file replaced, changes the fingerprint,
and the next run falls back to loading and hashing (which finds the same export if the weights did not change).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import onnx

from lmstep.spec.model import Model

from .folder import (
    EXPORTER_VERSION,
    code_digest,
    export_key,
    is_export_folder,
    read_manifest,
    spox_version,
    write_folder,
)
from .graph_ops import OPSET


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


def known_export(checkpoint: str | os.PathLike) -> Path | None:
    """The cached export of checkpoint folder ``checkpoint`` if a note names one for its files as they are now."""
    note = _note(checkpoint)
    try:
        key = note.read_text().strip()
    except OSError:
        return None
    path = cache_root() / key
    if os.path.basename(key) != key or not is_export_folder(path):
        return None
    read_manifest(path)
    return path


def remember_export(checkpoint: str | os.PathLike, export: Path) -> None:
    """Note that ``export`` is the export of ``checkpoint`` as its files are now (written atomically)."""
    note = _note(checkpoint)
    note.parent.mkdir(parents=True, exist_ok=True)
    tmp = note.with_name(f".{note.name}.{os.getpid()}")
    tmp.write_text(export.name + "\n")
    os.replace(tmp, note)


def _note(checkpoint: str | os.PathLike) -> Path:
    folder = Path(checkpoint).resolve()
    files = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            files.append([entry.name, st.st_size, st.st_mtime_ns, st.st_ino])
    desc = {
        "folder": str(folder),
        "files": files,
        "exporter": EXPORTER_VERSION,
        "code": code_digest(),
        "opset": OPSET,
        "onnx": onnx.__version__,
        "spox": spox_version(),
    }
    fingerprint = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "sources" / fingerprint

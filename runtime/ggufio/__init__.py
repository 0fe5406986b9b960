"""Write a model as a float32 GGUF file that llama.cpp loads (``lmstep export --format gguf``), with the ``gguf``
package alone: no torch, no converter script. families.py says how each architecture is laid out, vocab.py which
vocabulary goes with it.

Besides llama.cpp's own keys, the file records where it came from (``lmstep.*``: the spec architecture, the
weights digest of ``Model.weights_digest()``, the vocabulary kind, the exporter version), so that the llama.cpp
adapter can tell whether a GGUF holds the model it is checked against.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmstep.spec.errors import InputError
from lmstep.spec.model import Model

from .families import FAMILIES, family, family_key, gguf_tensors, keys_to_spec
from .vocab import Vocab, ids_vocab, model_vocab

EXPORTER_VERSION = 1  # bump when the written layout changes: cached files are keyed by it
VOCABS = ("model", "ids")


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise InputError("GGUF export needs the gguf package: pip install -e '.[llamacpp]'") from None
    return gguf


def vocabulary(model: Model, vocab: str = "model") -> Vocab:
    from lmstep.runtime.text import checkpoint_folder

    if vocab not in VOCABS:
        raise InputError(f"unknown vocabulary {vocab!r}; use model (the model's own) or ids (one character per id)")
    return ids_vocab(model.vocab_size) if vocab == "ids" else model_vocab(model, checkpoint_folder(model))


def write_gguf(
    model: Model,
    out: str | os.PathLike,
    *,
    vocab: str = "model",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[Path, Vocab]:
    """Write ``model`` to ``out`` (float32 tensors). The file appears whole or not at all; an existing file is
    replaced only with ``force``."""
    from lmstep.runtime.files import check_writable

    fam_key = family_key(model)
    fam = family(fam_key)
    reason = fam.refuse(model.config)
    if reason:
        raise InputError(f"{model.name or model.arch}: cannot be written for llama.cpp: {reason}")
    voc = vocabulary(model, vocab)
    target = check_writable(out, force)
    gguf = _gguf()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, fam.gguf_arch)
        w.add_name(os.path.basename(str(model.name)) or model.arch)
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        for key, value in fam.metadata(model.config).items():
            _add(w, f"{fam.gguf_arch}.{key}", value)
        for key, value in voc.metadata().items():
            _add(w, f"tokenizer.ggml.{key}", value)
        for key, value in provenance(model, voc).items():
            _add(w, f"lmstep.{key}", value)
        for name, array in gguf_tensors(fam_key, model.config, model.named_weights()):
            w.add_tensor(name, array)
        if progress:
            progress(f"writing {target.name}")
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.chmod(tmp, 0o666 & ~_umask())
        if force or not target.exists():
            os.replace(tmp, target)
        else:
            raise InputError(f"{target} exists; pass --force to overwrite it")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target, voc


def provenance(model: Model, voc: Vocab) -> dict[str, Any]:
    return {
        "arch": model.arch,
        "weights_digest": model.weights_digest(),
        "vocab": voc.kind,
        "exporter_version": EXPORTER_VERSION,
        "key_layout": "interleaved" if family(family_key(model)).rope_interleaved else "as_spec",
    }


def _add(w: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    elif isinstance(value, list):
        w.add_array(key, value)
    else:  # pragma: no cover - the tables above hold only these types
        raise TypeError(f"{key}: {type(value).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cache_root() -> Path:
    base = os.environ.get("LMSTEP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lmstep")
    return Path(base) / "gguf"


def cached_gguf(model: Model, vocab: str = "model") -> Path:
    """The GGUF of ``model`` in lmstep's cache, written on first use (``llamacpp:`` without a file)."""
    key = {"arch": model.arch, "config": repr(model.config), "weights": model.weights_digest(), "vocab": vocab}
    key["exporter"] = EXPORTER_VERSION
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / f"{model.arch}-{digest}-{vocab}.gguf"
    if path.is_file() and stat.S_ISREG(path.stat().st_mode):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)  # lmstep's own cache
    try:
        write_gguf(model, path, vocab=vocab, force=True)
    except InputError:
        if not path.is_file():
            raise
    return path


__all__ = ["FAMILIES", "VOCABS", "cached_gguf", "keys_to_spec", "vocabulary", "write_gguf"]

"""Text <-> token ids for a model: its folder's ``tokenizer.json`` (Hugging Face ``tokenizers``) for a checkpoint,
UTF-8 bytes for the built-in byte-level models (vocabulary 256).

A checkpoint model's ``name`` is its folder (spec/checkpoint.py sets it), which is how the tokenizer is found;
a checkpoint without tokenizer.json has no text form, and a text prompt is refused rather than guessed.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from lmstep.spec.errors import InputError

TOKENIZER_FILE = "tokenizer.json"


def checkpoint_folder(model: Any) -> str | None:
    """The folder a checkpoint model was loaded from. Its name is then an absolute path; a built-in's name is
    not, so a folder in the working directory that happens to be called "tiny-llama" is never mistaken for it."""
    name = getattr(model, "name", "")
    return name if isinstance(name, str) and os.path.isabs(name) and os.path.isdir(name) else None


@functools.lru_cache(maxsize=8)
def _load_tokenizer(path: str, mtime: float) -> Any:  # mtime in the key: a rewritten file is read again
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # the library raises a bare Exception for malformed files
        raise InputError(
            f"{path}: cannot be read as a tokenizers file ({err}); regenerate it with save_pretrained"
        ) from None


def tokenizer(model: Any) -> Any | None:
    """The model's tokenizers.Tokenizer, or None when its folder has no tokenizer.json (or it is not a folder)."""
    folder = checkpoint_folder(model)
    path = os.path.join(folder, TOKENIZER_FILE) if folder else None
    if path is None or not os.path.isfile(path):
        return None
    return _load_tokenizer(path, os.path.getmtime(path))


def encode(model: Any, text: str) -> list[int]:
    tok = tokenizer(model)
    if tok is not None:
        ids = tok.encode(text).ids  # with the tokenizer's own special tokens (e.g. BOS), as transformers does
        bad = [i for i in ids if i >= model.vocab_size]
        if bad:
            raise InputError(
                f"{TOKENIZER_FILE} produced token id {bad[0]}, outside the model's vocabulary of {model.vocab_size}; "
                "the tokenizer does not belong to this checkpoint"
            )
        return ids
    folder = checkpoint_folder(model)
    if folder is not None:
        raise InputError(
            f"{folder} has no {TOKENIZER_FILE}, so text cannot be turned into tokens; use --tokens instead of --prompt"
        )
    if model.vocab_size < 256:
        raise InputError(
            f"this model's vocabulary ({model.vocab_size}) is not byte-level; use --tokens instead of --prompt"
        )
    return list(text.encode("utf-8"))


def decode(model: Any, ids: list[int]) -> str:
    """Token ids -> text. Byte-level models replace invalid UTF-8 (they may emit partial characters); a
    checkpoint without a tokenizer shows each id as <id>."""
    tok = tokenizer(model)
    if tok is not None:
        return tok.decode(list(ids), skip_special_tokens=True)
    if checkpoint_folder(model) is not None:
        return "".join(f"<{i}>" for i in ids)
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

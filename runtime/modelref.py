"""Resolve what the user named on the command line into a model with the spec's API, and text <-> tokens."""

from __future__ import annotations

from typing import Any

from lmstep.spec import load as load_spec
from lmstep.spec.errors import InputError

from . import text as text_codec

RUNTIMES = ("spec",)


def open_model(name_or_path: str, runtime: str = "spec", provider: str = "auto", **sampler: Any) -> Any:
    """A model with init_state / step / prefill / unrolled, on the chosen runtime."""
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; use one of: {', '.join(RUNTIMES)}")
    return load_spec(name_or_path, **sampler)


def parse_token_list(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3], with a one-line error for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InputError("--tokens is empty: give comma-separated token ids, e.g. --tokens 72,101,108")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise InputError(f"--tokens must be comma-separated integers, e.g. 72,101,108; got {text!r}") from None


def encode_prompt(model: Any, text: str) -> list[int]:
    """Text -> token ids: the checkpoint's tokenizer.json, or UTF-8 bytes for the byte-level built-ins."""
    return text_codec.encode(model, text)


def decode_tokens(model: Any, ids: list[int]) -> str:
    """Token ids -> text (see runtime/text.py)."""
    return text_codec.decode(model, ids)

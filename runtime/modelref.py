"""Resolve what the user named on the command line into a model with the spec's API, and text <-> tokens."""

from __future__ import annotations

from typing import Any

from lmstep.spec import load as load_spec
from lmstep.spec.errors import InputError

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
    """Text -> token ids: bytes (UTF-8) for the built-in byte-level models."""
    ids = list(text.encode("utf-8"))
    if model.vocab_size < 256:
        raise InputError(f"this model's vocabulary ({model.vocab_size}) is not byte-level; use --tokens instead of --prompt")
    return ids


def decode_tokens(model: Any, ids: list[int]) -> str:
    """Token ids -> text, replacing invalid UTF-8 (a byte-level model may emit partial characters)."""
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

"""Tokens and floats as people and other programs read them."""

from __future__ import annotations

from typing import Any

# Escapes a reader expects; every other non-printable byte is written \xNN.
_NAMED = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x5C: "\\\\"}


def token_text(model: Any, token: int) -> str:
    """One token as readable text: byte-level models show the byte (non-printables escaped), others '#id'."""
    if model.vocab_size <= 256 and 0 <= token < 256:
        if token in _NAMED:
            return _NAMED[token]
        return chr(token) if 0x20 <= token < 0x7F else f"\\x{token:02x}"
    return f"#{token}"


def tokens_text(model: Any, tokens: list[int]) -> str:
    return "".join(token_text(model, t) for t in tokens)

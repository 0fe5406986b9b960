"""Tokens and floats as people and other programs read them."""

from __future__ import annotations

from typing import Any

# Escapes a reader expects; every other non-printable byte is written \xNN.
_NAMED = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x5C: "\\\\"}


def token_text(model: Any, token: int) -> str:
    """One token as readable text: a checkpoint's tokenizer names it; a byte-level model (a built-in, or a
    checkpoint of 256 tokens without a tokenizer) shows the byte, non-printables escaped; anything else '#id'."""
    from lmstep.runtime.text import checkpoint_folder, tokenizer

    tok = tokenizer(model)
    if tok is not None:
        # decode() undoes byte-level BPE's markers (GPT-2's 'Ġ' is a space); a token with no text of its own
        # (a special token, a partial character) is shown by its vocabulary entry.
        text = tok.decode([token], skip_special_tokens=False) or tok.id_to_token(token)
        return f"#{token}" if text is None else "".join(_escape(ord(c)) if ord(c) < 0x80 else c for c in text)
    if model.vocab_size == 256 or (model.vocab_size < 256 and checkpoint_folder(model) is None):
        if 0 <= token < 256:
            return _escape(token)
    return f"#{token}"


def _escape(byte: int) -> str:
    if byte in _NAMED:
        return _NAMED[byte]
    return chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"


def tokens_text(model: Any, tokens: list[int]) -> str:
    return "".join(token_text(model, t) for t in tokens)

"""Options of an engine implementation, written after its target in the ``--impl`` value:

    llamacpp:model.gguf kv=f16 fa=on threads=2 sampler=native
    openai:http://127.0.0.1:8000/v1 logprobs=20 timeout=10
    genai:out/tiny-llama

The first word is the target (a file, a folder or a URL; quote it if it has spaces: ``llamacpp:"my model.gguf"``),
the rest ``key=value`` words. The whole string is what a counterexample records as its implementation, so a
replay opens the engine with the same options.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from lmstep.spec.errors import InputError

Parser = Callable[[str], Any]


def choice(*values: str) -> Parser:
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"use one of {', '.join(values)}")
        return text

    return parse


def integer(low: int, high: int) -> Parser:
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise ValueError(f"use an integer in [{low}, {high}]")
        return int(text)

    return parse


def number(low: float, high: float) -> Parser:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"use a number in [{low}, {high}]") from None
        if not low <= value <= high:
            raise ValueError(f"use a number in [{low}, {high}]")
        return value

    return parse


def parse_options(kind: str, arg: str, table: dict[str, tuple[Parser, Any]]) -> tuple[str, dict[str, Any]]:
    """``arg`` (after ``kind:``) -> (target, {key: value}) with every key of ``table`` filled (its default)."""
    try:
        words = shlex.split(arg)
    except ValueError as err:
        raise InputError(f"{kind}: cannot split {arg[:80]!r} into words ({err})") from None
    target = ""
    if words and "=" not in words[0]:
        target = words.pop(0)
    out = {key: default for key, (_, default) in table.items()}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise InputError(f"{kind}: {word!r} is not key=value; options: {', '.join(table) or 'none'}")
        if key not in table:
            raise InputError(f"{kind}: unknown option {key!r}; options: {', '.join(table) or 'none'}")
        try:
            out[key] = table[key][0](value)
        except ValueError as err:
            raise InputError(f"{kind}: {key}={value!r}: {err}") from None
    return target, out

"""Resolve what the user named on the command line into a model with the spec's API, and text <-> tokens."""

from __future__ import annotations

from typing import Any

from lmstep.spec import load as load_spec
from lmstep.spec.errors import InputError

from . import text as text_codec

RUNTIMES = ("spec", "onnx")


def open_model(name_or_path: str, runtime: str | None = "spec", provider: str = "auto", **sampler: Any) -> Any:
    """A model with init_state / step / prefill / unrolled, on the chosen runtime (None: onnx for an exported
    folder, else spec).

    ``runtime="onnx"``: a built-in name or checkpoint is exported on first use (cached), an exported folder is
    opened as is. An exported folder has no numpy weights, so it runs only with ``runtime="onnx"``.
    """
    from lmstep.runtime.folder import is_export_folder

    if runtime is None:
        runtime = "onnx" if is_export_folder(name_or_path) else "spec"
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; use one of: {', '.join(RUNTIMES)}")

    if runtime == "spec":
        if is_export_folder(name_or_path):
            raise InputError(f"{name_or_path} is an exported ONNX folder: run it with --runtime onnx")
        if provider not in ("auto", "cpu"):
            raise InputError(f"--provider {provider} applies to --runtime onnx; the spec runs in numpy on the CPU")
        return load_spec(name_or_path, **sampler)
    from lmstep.runtime.loading import load as load_onnx

    return load_onnx(name_or_path, provider=provider, progress=_export_progress(), **sampler)


def _export_progress() -> Any:
    """Progress lines on stderr for an export made on the fly (first use of a model with --runtime onnx)."""
    from rich.console import Console

    console = Console(stderr=True)

    def say(msg: str) -> None:
        console.print(f"[dim]lmstep: export: {msg}[/dim]", highlight=False)

    return say


def parse_token_list(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3], with a one-line error for anything else."""
    if not text.strip():
        raise InputError("--tokens is empty: give comma-separated token ids, e.g. --tokens 72,101,108")
    ids = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        digits = part.removeprefix("-")
        # ASCII digits only: int() also takes '٣', '1_000' and ' 7 '; and at most 20 of them (ids are small).
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
            what = "is empty" if not part else f"{part[:30]!r} is not an integer"
            raise InputError(f"--tokens must be comma-separated integers, e.g. 72,101,108; entry {i + 1} {what}")
        ids.append(int(part))
    return ids


def encode_prompt(model: Any, text: str) -> list[int]:
    """Text -> token ids: the checkpoint's tokenizer.json, or UTF-8 bytes for the byte-level built-ins."""
    return text_codec.encode(model, text)


def decode_tokens(model: Any, ids: list[int]) -> str:
    """Token ids -> text (see runtime/text.py)."""
    return text_codec.decode(model, ids)

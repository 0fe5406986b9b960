"""Options shared by several subcommands, so every command spells them the same way."""

from __future__ import annotations

from typing import Any

import typer

from lmstep.runtime.modelref import encode_prompt, parse_token_list
from lmstep.spec.errors import InputError

Model = typer.Option(
    ..., "--model", "-m", help="Built-in name (see `lmstep models`), checkpoint folder or exported folder."
)
Prompt = typer.Option(None, "--prompt", "-p", help="Prompt text.")
Tokens = typer.Option(None, "--tokens", "-t", help="Prompt token ids, comma-separated, e.g. 72,105.")
Steps = typer.Option(8, "--steps", "-n", min=0, help="Number of tokens to generate.")
Seed = typer.Option(0, "--seed", "-s", help="Seed of the rand stream, in [0, 2**64).")
Temperature = typer.Option(0.0, "--temperature", "-T", help="0 = greedy.")
TopK = typer.Option(0, "--top-k", help="Keep the k most likely tokens (0 = all).")
TopP = typer.Option(1.0, "--top-p", help="Keep the smallest set with this much probability (1 = all).")
Json = typer.Option(False, "--json", help="Machine-readable output.")
Runtime = typer.Option(
    None, "--runtime", "-r", help="spec (numpy) or onnx (onnxruntime). Default: onnx for an exported folder, else spec."
)
Provider = typer.Option("auto", "--provider", help="onnx runtime device: cpu, cuda or auto (cuda if available).")
Force = typer.Option(False, "--force", help="Overwrite an existing output file.")


DEFAULT_PROMPT = "Hello"  # what `lmstep step -m M` starts from when given neither --prompt nor --tokens


def prompt_ids(model: Any, prompt: str | None, tokens: str | None, default: str | None = None) -> list[int]:
    if prompt is not None and tokens is not None:
        raise InputError("give either --prompt TEXT or --tokens IDS, not both")
    if prompt is None and tokens is None:
        if default is None:
            raise InputError("give a prompt: --prompt TEXT or --tokens IDS")
        prompt = default
    ids = parse_token_list(tokens) if tokens is not None else encode_prompt(model, prompt)
    if not ids:
        raise InputError("the prompt is empty: give at least one character or token id")
    return ids


def check_context(model: Any, prompt: int, consumed: int) -> None:
    """Refuse, before any work, a run that would consume ``consumed`` tokens (prompt included) beyond the model's
    context: the spec would otherwise fail only when it reaches that position (trace -n 5000 on a 4096-token
    model ran ~60 s first)."""
    limit = getattr(model, "context_limit", None)
    if limit is not None and consumed > limit:
        raise InputError(
            f"a prompt of {prompt} token(s) and these --steps run through {consumed} positions, beyond the "
            f"model's context of {limit}; use at most {max(limit - prompt + 1, 0)} steps or a shorter prompt"
        )


def seed_value(seed: int) -> int:
    """The seed, or a one-line InputError naming --seed."""
    from lmstep.runtime.stepper.session import checked_seed

    return checked_seed(seed)


def open_for_command(model: str, runtime: str | None, provider: str, **sampler: Any) -> Any:
    """open_model for a subcommand; says on stderr which onnxruntime provider runs."""
    from lmstep.runtime.modelref import open_model

    m = open_model(model, runtime=runtime, provider=provider, **sampler)
    note = getattr(m, "provider_note", None)
    if note:
        typer.echo(f"lmstep: {note}", err=True)
    return m

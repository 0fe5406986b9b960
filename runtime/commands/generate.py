"""``lmstep generate``: N new tokens after a prompt."""

from __future__ import annotations

import json

import typer

from . import options as opt

HELP = """Generate tokens after a prompt.

\b
Examples:
  lmstep generate -m tiny-llama --prompt "Hello" --steps 16
  lmstep generate -m tiny-gpt2 --tokens 72,105 --steps 8 --seed 3 -T 0.8 --top-k 40 --json
  lmstep generate -m tiny-llama --prompt "Hello" --runtime onnx --provider auto
  lmstep generate -m out/tiny-llama --prompt "Hello"      (an exported folder runs on onnx)
"""


def register(app: typer.Typer) -> None:
    @app.command("generate", help=HELP)
    def generate(
        model: str = opt.Model,
        prompt: str | None = opt.Prompt,
        tokens: str | None = opt.Tokens,
        steps: int = opt.Steps,
        seed: int = opt.Seed,
        temperature: float = opt.Temperature,
        top_k: int = opt.TopK,
        top_p: float = opt.TopP,
        as_json: bool = opt.Json,
        runtime: str | None = opt.Runtime,
        provider: str = opt.Provider,
    ) -> None:
        from lmstep.runtime.modelref import decode_tokens

        opt.seed_value(seed)
        m = opt.open_for_command(model, runtime, provider, temperature=temperature, top_k=top_k, top_p=top_p)
        ids = opt.prompt_ids(m, prompt, tokens)
        opt.check_context(m, len(ids), len(ids) + max(steps, 1) - 1)  # the last token sampled is not consumed
        out = m.generate(ids, steps, seed=seed)
        if as_json:
            typer.echo(json.dumps({"model": model, "prompt_tokens": ids, "seed": seed, "tokens": out}))
        elif prompt is not None:
            typer.echo(decode_tokens(m, ids + out))
        else:
            typer.echo(",".join(map(str, out)))

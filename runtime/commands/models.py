"""``lmstep models``: the built-in models and what each is."""

from __future__ import annotations

import json

import typer

HELP = """List the built-in models: family, size, state per layer, and what each is.

\b
They are tiny, byte-level (vocabulary 256: --prompt text is UTF-8 bytes), and their
weights are generated bit-exactly from a seed, so any implementation can rebuild them.
\b
Examples:
  lmstep models
  lmstep models --json
"""


def register(app: typer.Typer) -> None:
    @app.command("models", help=HELP, short_help="List the built-in models.")
    def models(as_json: bool = typer.Option(False, "--json", help="One JSON object per model.")) -> None:
        rows = [_describe(name, desc) for name, desc in _builtin().items()]
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row))
            return
        for r in rows:  # two lines per model, so it reads well at 80 columns and in a pipe
            state = ", ".join(f"{k} [{', '.join(map(str, v))}]" for k, v in r["state_per_layer"].items())
            typer.echo(
                f"{r['name']:<12} {r['family']:<7} {r['params']:>9,} params  {r['layers']} layers  state/layer: {state}"
            )
            typer.echo(f"{'':<12} {r['description']}")


def _builtin() -> dict[str, str]:
    from lmstep.spec import BUILTIN_MODELS

    return BUILTIN_MODELS


def _describe(name: str, desc: str) -> dict:
    from lmstep.spec import load
    from lmstep.spec.arrays import tree_leaves

    m = load(name)
    before = m.init_state()
    after, _ = m.step(before, 0, 0.0)
    # The axis that grows with each token (a KV cache's sequence axis) is written "T"; a sliding window bounds it.
    keep = getattr(m.config, "kept_keys", None)
    grows = "T" if keep is None else f"min(T, {keep})"
    layer0 = {
        k.split(".", 2)[2]: [d if d == e else grows for d, e in zip(a.shape, after.arrays()[k].shape)]
        for k, a in before.arrays().items()
        if k.startswith("past_key_values.0.")
    }
    return {
        "name": name,
        "arch": m.arch,
        "family": m.config.model_type if m.arch == "llama" else m.arch,  # the Llama-style decoder's families
        "params": int(sum(a.size for _, a in tree_leaves(m.weights))),
        "layers": len(m.weights.layers),
        "vocab_size": m.vocab_size,
        "context": m.context_limit,
        "state_per_layer": layer0,
        "description": desc,
    }

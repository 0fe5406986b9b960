"""``lmstep models``: the built-in models and what each is."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("models", help="List the built-in models.\n\nExample: lmstep models")
    def models() -> None:
        from lmstep.spec import BUILTIN_MODELS, load

        for name, desc in BUILTIN_MODELS.items():
            m = load(name)
            n = sum(a.size for a in _leaves(m.weights))
            typer.echo(f"{name:<12} {n:>8,} params  {desc}")


def _leaves(w):
    from lmstep.spec.arrays import tree_leaves

    return [a for _, a in tree_leaves(w)]

"""``lmstep step``: show each transition state -> state' of a generation, interactively on a terminal."""

from __future__ import annotations

import json
import sys

import typer

from . import options as opt

HELP = """Step through a generation, one transition at a time.

\b
Each transition shows the position, input token, rand, top candidates with
probabilities, sampled token, and the state (per-layer shapes, L2 norms, digest).
On a terminal it is interactive: n/space/→ step, b/← back, f fork (new seed or
forced token), t branch, d diff, ? help, q quit. Piped, it prints the
transitions up to --steps tokens; --json prints one object per line.
\b
Examples:
  lmstep step -m tiny-llama --prompt "Hi"
  lmstep step -m tiny-gpt2 --prompt "Hi" --steps 4 | less
  lmstep step -m tiny-mamba --tokens 1,2,3 -T 0.8 --seed 7 --json
  lmstep step -m tiny-gpt2 --prompt "Hi" --runtime onnx --provider cpu
"""


def register(app: typer.Typer) -> None:
    @app.command("step", help=HELP)
    def step(
        model: str = opt.Model,
        prompt: str | None = opt.Prompt,
        tokens: str | None = opt.Tokens,
        steps: int | None = typer.Option(
            None, "--steps", "-n", min=0, help="Tokens to generate [piped: 8; interactive: start at 0]."
        ),
        seed: int = opt.Seed,
        temperature: float = opt.Temperature,
        top_k: int = opt.TopK,
        top_p: float = opt.TopP,
        runtime: str | None = opt.Runtime,
        as_json: bool = opt.Json,
        provider: str = opt.Provider,
        interactive: bool | None = typer.Option(
            None, "--interactive/--no-interactive", "-i/-I", help="[default: interactive on a terminal]"
        ),
    ) -> None:
        from lmstep.runtime.stepper.session import Session
        from lmstep.spec.errors import InputError

        if interactive and as_json:
            raise InputError("--json prints the transitions of a piped run; it does not apply with --interactive")
        if interactive and not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise InputError(
                "--interactive needs a terminal on stdin and stdout; run it in one, or drop -i to print the transitions"
            )
        m = opt.open_for_command(model, runtime, provider, temperature=temperature, top_k=top_k, top_p=top_p)
        ids = opt.prompt_ids(m, prompt, tokens, default=opt.DEFAULT_PROMPT)
        session = Session.start(m, ids, opt.seed_value(seed))
        if interactive is None:
            interactive = not as_json and sys.stdin.isatty() and sys.stdout.isatty()
        transitions = len(ids) - 1 + (8 if steps is None and not interactive else steps or 0)
        opt.check_context(m, len(ids), transitions)
        if interactive:
            _interactive(session, steps or 0)
        else:
            _piped(session, transitions, as_json)


def _interactive(session, steps: int) -> None:
    from rich.console import Console

    from lmstep.runtime.stepper import keys

    # Start where the first token is sampled only if the user asked for steps; else at the initial state.
    keys.run(session.advance(len(session.branches[0].prompt) - 1 + steps) if steps else session, Console())


def _piped(session, transitions: int, as_json: bool) -> None:
    from lmstep.runtime.stepper import render

    for _ in range(transitions):
        session = session.forward()
        e = session.current
        if as_json:
            typer.echo(json.dumps(render.json_record(session.model, e, session.seed)))
        else:
            typer.echo(render.plain_block(session.model, e, session.seed))

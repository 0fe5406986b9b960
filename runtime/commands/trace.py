"""``lmstep trace``: record a golden trace (docs/trace-format.md) that another implementation can check."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opt

HELP = """Record a golden trace: inputs, rand, logits digest and top-k, tokens and state
digests per op, as versioned JSON lines (docs/trace-format.md).

\b
By default the prompt is one prefill op and each further token one step op,
exactly what `lmstep generate` computes; --stepwise feeds the prompt through
step one token at a time, as `lmstep step` shows it. Check a trace with
`lmstep replay FILE`.
\b
Examples:
  lmstep trace -m tiny-llama --prompt "Hello" --steps 16 --out hello.jsonl
  lmstep trace -m tiny-mamba --tokens 1,2,3 -T 0.8 --seed 7 --stepwise -o t.jsonl
"""


def register(app: typer.Typer) -> None:
    @app.command("trace", help=HELP, short_help="Record a golden trace another implementation can check.")
    def trace(
        model: str = opt.Model,
        prompt: str | None = opt.Prompt,
        tokens: str | None = opt.Tokens,
        out: Path = typer.Option(..., "--out", "-o", help="The trace file to write (.jsonl)."),
        steps: int = opt.Steps,
        seed: int = opt.Seed,
        temperature: float = opt.Temperature,
        top_k: int = opt.TopK,
        top_p: float = opt.TopP,
        runtime: str = opt.Runtime,
        top: int = typer.Option(5, "--top", min=1, help="Logits recorded per op (the largest, exactly)."),
        stepwise: bool = typer.Option(False, "--stepwise", help="Consume the prompt with step, not prefill."),
        force: bool = opt.Force,
    ) -> None:
        from lmstep.runtime.files import check_writable
        from lmstep.runtime.modelref import open_model
        from lmstep.runtime.progress import progress
        from lmstep.runtime.stepper.session import Session
        from lmstep.runtime.trace import record

        check_writable(out, force)  # fail before the work, not after it
        m = open_model(model, runtime=runtime, temperature=temperature, top_k=top_k, top_p=top_p)
        ids = opt.prompt_ids(m, prompt, tokens, default=opt.DEFAULT_PROMPT)
        seed = opt.seed_value(seed)
        if stepwise:
            session = Session.start(m, ids, seed)
            n = len(ids) - 1 + steps
            with progress("tracing", n) as advance:
                for _ in range(n):
                    session = session.forward()
                    advance()
            ops = record.session_ops(session, top)
        else:
            with progress("tracing", max(steps, 1)) as advance:
                ops = record.generation_ops(m, ids, steps, seed, top, on_op=advance)
        record.save(out, m, seed, top, ops, force=force)
        typer.echo(f"wrote {out}: {len(ops)} ops ({m.name}, seed {seed}); check it with: lmstep replay {out}")

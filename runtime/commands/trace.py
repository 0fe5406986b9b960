"""``lmstep trace``: record a golden trace (docs/trace-format.md) that another implementation can check."""

from __future__ import annotations

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
        out_name: str = typer.Option(..., "--out", "-o", help="The trace file to write (.jsonl)."),
        steps: int = opt.Steps,
        seed: int = opt.Seed,
        temperature: float = opt.Temperature,
        top_k: int = opt.TopK,
        top_p: float = opt.TopP,
        runtime: str = opt.Runtime,
        provider: str = opt.Provider,
        top: int = typer.Option(5, "--top", min=1, help="Logits recorded per op (the largest, exactly)."),
        stepwise: bool = typer.Option(False, "--stepwise", help="Consume the prompt with step, not prefill."),
        force: bool = opt.Force,
    ) -> None:
        from lmstep.runtime.files import check_writable
        from lmstep.runtime.progress import progress
        from lmstep.runtime.stepper.session import Session
        from lmstep.runtime.trace import record
        from lmstep.spec.errors import InputError

        out = check_writable(out_name, force)  # before the work, not after it; a str: typer reads '' as Path('.')
        seed = opt.seed_value(seed)
        m = opt.open_for_command(model, runtime, provider, temperature=temperature, top_k=top_k, top_p=top_p)
        ids = opt.prompt_ids(m, prompt, tokens, default=opt.DEFAULT_PROMPT)
        for t in ids:  # before any work, as the stepper does
            if not 0 <= t < m.vocab_size:
                raise InputError(f"token id {t} is outside the vocabulary [0, {m.vocab_size}); use ids below it")
        # --stepwise consumes every prompt token and steps - 1 more; a generation the same (the last not fed back)
        opt.check_context(m, len(ids), len(ids) + max(steps, 1) - 1 if not stepwise else len(ids) - 1 + steps)
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

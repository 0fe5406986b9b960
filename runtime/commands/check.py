"""``lmstep check``: drive an implementation and the spec in lockstep; report the level reached per law."""

from __future__ import annotations

import json

import typer

from . import options as opt

HELP = """Check an implementation against the spec, law by law.

\b
IMPL: spec | onnx | onnx:DIR | cmd:"program args" | python:module:factory |
      hf[:FOLDER] | mutant:NAME | llamacpp:[FILE.gguf] [opts] | genai:[DIR] |
      openai:URL [opts]    (docs/checking.md, Engines)
Levels: L0 bitwise, L1 numeric (10x the spec's own float32 error), L2 tokens
(near ties), L3 distribution. A law never exercised fails unless dropped
with --skip-law. A coverage run passes position 512 (thorough: 2048), then
random programs explore; a failure is shrunk, written with --out, replayed by
`lmstep replay FILE`. Exit status 0 pass, 1 fail, 2 usage or input error.
\b
Examples:
  lmstep check -m tiny-llama --impl onnx --skip-law batch
  lmstep check -m tiny-gpt2 --impl cmd:"python my_engine.py" --level L2 --out cex.json
  lmstep check -m tiny-llama --impl "llamacpp: kv=f16 fa=on" --level L2
"""

PROFILES = {"quick": (30, 10, 512), "thorough": (300, 25, 2048)}


def register(app: typer.Typer) -> None:
    @app.command("check", help=HELP, short_help="Check an implementation against the spec, law by law.")
    def check(
        model: str = opt.Model,
        impl: str = typer.Option(..., "--impl", help="What to check (see above)."),
        level: str = typer.Option("L1", "--level", help="Required level: L0, L1, L2 or L3."),
        profile: str = typer.Option("quick", "--profile", help="quick (512 deep, 30 runs) or thorough (2048, 300)."),
        examples: int | None = typer.Option(None, "--examples", min=1, help="Explored runs (overrides the profile)."),
        steps: int | None = typer.Option(None, "--steps", min=1, help="Operations per run (overrides)."),
        depth: int | None = typer.Option(None, "--depth", min=1, help="Position to pass (overrides)."),
        skip_law: list[str] = typer.Option([], "--skip-law", help="Drop a law on purpose (repeatable)."),
        temperature: float = opt.Temperature,
        top_k: int = opt.TopK,
        top_p: float = opt.TopP,
        timeout: float | None = typer.Option(None, "--timeout", min=0.1, help="cmd: seconds per reply [30]."),
        provider: str | None = typer.Option(None, "--provider", help="onnx: cpu, cuda or auto [auto]."),
        out_name: str | None = typer.Option(None, "--out", "-o", help="Write a counterexample here on failure."),
        force: bool = opt.Force,
        as_json: bool = opt.Json,
    ) -> None:
        from lmstep.runtime.check import check as run_check
        from lmstep.runtime.check import open_impl, parse_level, parse_skip
        from lmstep.runtime.check.cetrace import to_json
        from lmstep.runtime.check.report import render
        from lmstep.runtime.files import check_writable, write_atomic
        from lmstep.runtime.modelref import open_model
        from lmstep.spec.errors import InputError

        kind = impl.partition(":")[0]
        if timeout is not None and kind != "cmd":
            raise InputError(f"--timeout applies to cmd: implementations, not {impl!r}")
        if provider is not None and kind != "onnx":
            raise InputError(f"--provider applies to onnx implementations, not {impl!r}")
        if profile not in PROFILES:
            raise InputError(f"unknown profile {profile!r}; use quick or thorough")
        required = parse_level(level)
        skipped = parse_skip(skip_law)
        out = None if out_name is None else check_writable(out_name, force)  # a str: typer reads '' as Path('.')
        m = open_model(model, temperature=temperature, top_k=top_k, top_p=top_p)
        n_examples, n_steps, n_depth = examples or PROFILES[profile][0], steps or PROFILES[profile][1], depth
        n_depth = n_depth or PROFILES[profile][2]
        implementation = open_impl(impl, m, timeout=timeout or 30.0, provider=provider or "auto")
        try:
            report = _run(run_check, m, implementation, required, n_examples, n_steps, n_depth, skipped)
        finally:
            getattr(implementation, "close", lambda: None)()
        if out is not None and not report.passed:
            write_atomic(out, json.dumps(to_json(m, impl, report), indent=1) + "\n", force)
        if as_json:
            typer.echo(json.dumps(_as_dict(report, out)))
        else:
            render(report, out if not report.passed else None)
        raise typer.Exit(0 if report.passed else 1)


# Without a terminal (a log, CI) progress is a plain line on stderr this often, once a check runs that long: a
# quick profile on a 1B-parameter checkpoint takes minutes (docs/checking.md has the cost per operation).
PROGRESS_EVERY_S = 30.0


def _run(run_check, model, impl, required, examples, steps, depth, skipped):
    import sys
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tty = sys.stderr.isatty()
    columns = (
        TextColumn("checking {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs, {task.fields[ops]} operations"),
        TimeElapsedColumn(),
    )
    t0 = last = time.perf_counter()
    state = {"example": 0}

    def on_op(n: int) -> None:
        nonlocal last
        bar.update(task, ops=n)
        now = time.perf_counter()
        if not tty and now - last >= PROGRESS_EVERY_S:
            last = now
            print(
                f"lmstep: checking {impl.name}: run {state['example']}/{examples + 1}, {n} operations, "
                f"{now - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    def on_example(n: int) -> None:
        state["example"] = min(n, examples + 1)  # run 1 is the coverage run
        bar.update(task, completed=state["example"])

    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not tty) as bar:
        task = bar.add_task(impl.name, total=examples + 1, ops=0)
        return run_check(
            model,
            impl,
            required=required,
            max_examples=examples,
            steps=steps,
            depth=depth,
            skip_laws=skipped,
            on_example=on_example,
            on_op=on_op,
        )


def _as_dict(report, out) -> dict:
    return {
        "model": report.model,
        "impl": report.impl,
        "required": report.required.name,
        "passed": report.passed,
        "laws": {
            law: {
                "level": "not exercised" if s["level"] is None else s["level"].name,
                "worst_rel_err": s.get("worst_err", 0.0),
                "worst_err_over_bound": s.get("worst_ratio", 0.0),
                "excused": s.get("excused", 0),
                "coverage": report.coverage.get(law, {}),
            }
            for law, s in report.laws.items()
        },
        "skipped_laws": list(report.skipped),
        "operations": report.operations,
        "notes": list(report.notes),
        "runs": report.examples,
        "seconds": round(report.seconds, 3),
        "message": report.message,
        "failed_law": report.failed_law,
        "counterexample_ops": len(report.counterexample or []),
        "counterexample_file": str(out) if out is not None and not report.passed else None,
    }

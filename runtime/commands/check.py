"""``lmstep check``: drive an implementation and the spec in lockstep; report the level reached per law."""

from __future__ import annotations

import json

import typer

from . import options as opt

HELP = """Check an implementation against the spec, law by law.

\b
IMPL: spec | onnx[:DIR] | cmd:"program args" | python:module:factory | mutant:NAME | hf[:DIR]
      | llamacpp:[FILE.gguf] [opts] | genai:[DIR] | openai:URL [opts]    (docs/checking.md)
Levels: L0 bitwise, L1 numeric (measured tolerance), L2 tokens (margin rule).
A failure is shrunk to a short op sequence (--out; `lmstep replay FILE` re-runs it).
Exit status 0 pass, 1 fail, 2 usage or input error (the check could not run).
\b
Examples:
  lmstep check -m tiny-llama --impl onnx
  lmstep check -m tiny-gpt2 --impl cmd:"python my_engine.py" --level L2 --out cex.json
  lmstep check -m tiny-llama --impl "llamacpp: kv=f16 fa=on" --level L2
"""

PROFILES = {"quick": (30, 10), "thorough": (300, 25)}


def register(app: typer.Typer) -> None:
    @app.command("check", help=HELP, short_help="Check an implementation against the spec, law by law.")
    def check(
        model: str = opt.Model,
        impl: str = typer.Option(..., "--impl", help="The implementation to check (see above)."),
        level: str = typer.Option("L1", "--level", help="Required conformance level: L0, L1 or L2."),
        profile: str = typer.Option("quick", "--profile", help="quick (30 runs x 10 ops) or thorough (300 x 25)."),
        examples: int | None = typer.Option(None, "--examples", min=1, help="Runs (overrides the profile)."),
        steps: int | None = typer.Option(None, "--steps", min=1, help="Operations per run (overrides the profile)."),
        temperature: float = opt.Temperature,
        top_k: int = opt.TopK,
        top_p: float = opt.TopP,
        timeout: float | None = typer.Option(
            None, "--timeout", min=0.1, help="cmd: implementations: seconds the program may take per reply [30]."
        ),
        provider: str | None = typer.Option(
            None, "--provider", help="onnx implementations: cpu, cuda or auto (cuda if available) [auto]."
        ),
        out_name: str | None = typer.Option(None, "--out", "-o", help="Write a counterexample here on failure."),
        force: bool = opt.Force,
        as_json: bool = opt.Json,
    ) -> None:
        from lmstep.runtime.check import check as run_check
        from lmstep.runtime.check import open_impl, parse_level
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
        out = None if out_name is None else check_writable(out_name, force)  # a str: typer reads '' as Path('.')
        m = open_model(model, temperature=temperature, top_k=top_k, top_p=top_p)
        n_examples, n_steps = examples or PROFILES[profile][0], steps or PROFILES[profile][1]
        implementation = open_impl(impl, m, timeout=timeout or 30.0, provider=provider or "auto")
        try:
            report = _run(run_check, m, implementation, required, n_examples, n_steps)
        finally:
            getattr(implementation, "close", lambda: None)()
        if out is not None and not report.passed:
            write_atomic(out, json.dumps(to_json(m, impl, report), indent=1) + "\n", force)
        if as_json:
            typer.echo(json.dumps(_as_dict(report, out)))
        else:
            render(report, out if not report.passed else None)
        raise typer.Exit(0 if report.passed else 1)


def _run(run_check, model, impl, required, examples, steps):
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("checking {task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(impl.name, total=examples)
        return run_check(
            model,
            impl,
            required=required,
            max_examples=examples,
            steps=steps,
            on_example=lambda n: bar.update(task, completed=min(n, examples)),
        )


def _as_dict(report, out) -> dict:
    return {
        "model": report.model,
        "impl": report.impl,
        "required": report.required.name,
        "passed": report.passed,
        "laws": {
            law: {
                "level": s["level"].name if s["level"] else "FAIL",
                "worst_rel_err": s["worst_err"],
                "excused": s["excused"],
                "comparisons": s["n"],
            }
            for law, s in report.laws.items()
        },
        "examples": report.examples,
        "seconds": round(report.seconds, 3),
        "message": report.message,
        "failed_law": report.failed_law,
        "counterexample_ops": len(report.counterexample or []),
        "counterexample_file": str(out) if out is not None and not report.passed else None,
    }

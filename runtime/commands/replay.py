"""``lmstep replay``: re-run a golden trace and report, per op, bitwise / close / diverged."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = """Check a trace: re-run the model named in its header and compare every op.

A golden trace (lmstep trace) is replayed on the runtime and provider it was
recorded with (or --runtime / --provider); a counterexample (lmstep check --out)
is replayed on the spec and the implementation it was found on (or --impl),
naming the first divergent op and state tensor.

\b
Each op is "bitwise" (tokens, rand, logits and state digests equal), "close"
(same token, top logits within atol + rtol*|x|), or "diverged". Bits are
compared when the numeric environment matches the one the trace records
(runtime, provider, library versions, BLAS kernel and threads, CPU features);
otherwise at the checker's L1 tolerance for the architecture, and the first
line says which and why. --atol/--rtol set a tolerance, --bitwise insists on bits.
Exit status: 0 no op diverged, 1 one did, 2 the file cannot be read or an
option does not apply to it.
\b
Examples:
  lmstep replay hello.jsonl
  lmstep replay hello.jsonl --runtime spec --atol 1e-4 --rtol 1e-4
  lmstep replay cex.json --impl onnx
"""


def register(app: typer.Typer) -> None:
    @app.command("replay", help=HELP, short_help="Re-run a trace; report bitwise / close / diverged per op.")
    def replay(
        file: Path = typer.Argument(..., help="A trace written by `lmstep trace` (or any implementation)."),
        runtime: str | None = typer.Option(
            None, "--runtime", "-r", help="Traces: spec or onnx [default: the runtime the trace records, else spec]."
        ),
        provider: str | None = typer.Option(
            None, "--provider", help="Traces on onnx: cpu, cuda or auto [default: the recorded one if available]."
        ),
        atol: float | None = typer.Option(None, "--atol", min=0.0, help="Traces: absolute logit tolerance."),
        rtol: float | None = typer.Option(None, "--rtol", min=0.0, help="Traces: relative logit tolerance."),
        bitwise: bool = typer.Option(False, "--bitwise", help="Traces: compare bits even if the environment differs."),
        impl: str | None = typer.Option(None, "--impl", help="Counterexamples: replay on this implementation instead."),
    ) -> None:
        from lmstep.runtime.check import cetrace
        from lmstep.spec.errors import InputError

        trace_only = {"--runtime": runtime, "--provider": provider, "--atol": atol, "--rtol": rtol}
        if cetrace.is_counterexample(file):
            given = [name for name, v in trace_only.items() if v is not None] + (["--bitwise"] if bitwise else [])
            if given:
                raise InputError(
                    f"{', '.join(given)} apply to golden traces; {file} is a counterexample, replayed at its "
                    "required level (choose the implementation with --impl)"
                )
            raise typer.Exit(_replay_counterexample(file, impl))
        if impl is not None:
            raise InputError(f"--impl applies to counterexamples; {file} is a golden trace (use --runtime)")
        if bitwise and (atol or rtol):
            raise InputError("--bitwise and --atol/--rtol contradict each other: give one")
        raise typer.Exit(_replay_trace(file, runtime, provider, atol, rtol, bitwise))


def _replay_trace(file: Path, runtime: str | None, provider: str | None, atol, rtol, bitwise: bool) -> int:
    from lmstep.runtime.progress import progress
    from lmstep.runtime.trace import replay as rp
    from lmstep.runtime.trace import schema

    meta, ops = schema.read(file)
    model = rp.open_traced_model(meta, runtime, provider)
    tol, why = rp.comparison(meta, model, atol, rtol, bitwise)
    where = f"runtime {'onnx, provider ' + model.provider if hasattr(model, 'provider') else 'spec'}"
    typer.echo(f"replaying {file}: {meta['model']['name']}, {len(ops)} ops, {where}")
    typer.echo(why)
    wrong = rp.identity_problems(meta, model)
    if wrong:
        typer.echo(f"DIVERGED at the header: {wrong[0]}")
        return 1
    with progress("replaying", len(ops)) as advance:
        results = rp.replay(meta, ops, model, tol, on_op=advance)
    for r in results:
        note = "" if r.level == rp.BITWISE else f"  {r.headline}"
        typer.echo(
            f"  op {r.index:>4}  {r.kind:<7}  pos {r.pos:>4}  "
            f"{r.level.upper() if r.level == rp.DIVERGED else r.level}{note}"
        )
    bad = [r for r in results if r.level == rp.DIVERGED]
    if bad:
        first = bad[0]
        typer.echo(
            f"FAIL: {len(bad)} of {len(results)} ops diverged; first: op "
            f"{first.index} ({first.kind} at position {first.pos}): {first.headline}"
        )
        return 1
    close = sum(r.level == rp.CLOSE for r in results)
    typer.echo(
        f"OK: {len(results) - close} of {len(results)} ops bitwise" + (f", {close} within tolerance" if close else "")
    )
    return 0


def _replay_counterexample(file: Path, impl_spec: str | None) -> int:
    from lmstep.runtime.check import cetrace, open_impl

    doc = cetrace.read(file)
    model = cetrace.open_model(doc)
    impl_spec = impl_spec or doc["impl"]
    typer.echo(
        f"replaying counterexample {file}: {impl_spec} vs spec on {model.name}, {len(doc['ops'])} ops, "
        f"required {doc.get('required_level', 'L1')}"
    )
    note = cetrace.environment_note(doc, model)
    if note:
        typer.echo(note)
    cetrace.validate_ops(doc["ops"], model.vocab_size)  # before starting an implementation
    impl = open_impl(impl_spec, model)
    try:
        results = cetrace.replay(doc, model, impl)
    finally:
        getattr(impl, "close", lambda: None)()
    for r in results:
        typer.echo(
            f"  op {r.index:>3}  {r.op:<10} {r.status.upper() if r.status != 'ok' else r.status}"
            + (f"  {r.detail}" if r.detail else "")
        )
    bad = [r for r in results if r.status in ("diverged", "error")]
    if not bad:
        typer.echo("OK: every op agrees with the spec at the required level")
        return 0
    typer.echo(f"FAIL: first divergence at op {bad[0].index} ({bad[0].op})")
    if bad[0].layer:
        typer.echo(f"first state tensor that differs: {bad[0].layer}")
    return 1

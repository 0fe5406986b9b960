"""``lmstep replay``: re-run a golden trace and report, per op, bitwise / close / diverged."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opt

HELP = """Check a trace: re-run the model named in its header and compare every op.

A golden trace (lmstep trace) is replayed on --runtime; a counterexample
(lmstep check --out) is replayed on the spec and the implementation it was
found on (or --impl), naming the first divergent op and state tensor.

\b
Each op is "bitwise" (tokens, rand, logits and state digests equal), "close"
(with --atol/--rtol: same token, top logits within atol + rtol*|x|), or
"diverged". Prints the first divergent op and tensor. Exit status 0 when no
op diverged, 1 when one did, 2 when the file cannot be read.
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
        runtime: str = opt.Runtime,
        atol: float = typer.Option(0.0, "--atol", min=0.0, help="Absolute logit tolerance (0 with rtol 0 = bitwise)."),
        rtol: float = typer.Option(0.0, "--rtol", min=0.0, help="Relative logit tolerance."),
        impl: str = typer.Option("", "--impl", help="Counterexamples: replay on this implementation instead."),
    ) -> None:
        from lmstep.runtime.check import cetrace

        if cetrace.is_counterexample(file):
            raise typer.Exit(_replay_counterexample(file, impl))
        from lmstep.runtime.progress import progress
        from lmstep.runtime.trace import replay as rp
        from lmstep.runtime.trace import schema

        meta, ops = schema.read(file)
        model = rp.open_traced_model(meta, runtime)
        mode = "bitwise" if atol == 0 and rtol == 0 else f"atol {atol:g}, rtol {rtol:g}"
        typer.echo(f"replaying {file}: {meta['model']['name']}, {len(ops)} ops, runtime {runtime}, {mode}")
        wrong = rp.identity_problems(meta, model)
        if wrong:
            typer.echo(f"DIVERGED at the header: {wrong[0]}")
            raise typer.Exit(1)
        with progress("replaying", len(ops)) as advance:
            results = rp.replay(meta, ops, model, rp.Tolerance(atol, rtol), on_op=advance)
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
            raise typer.Exit(1)
        close = sum(r.level == rp.CLOSE for r in results)
        typer.echo(
            f"OK: {len(results) - close} of {len(results)} ops bitwise"
            + (f", {close} within tolerance" if close else "")
        )


def _replay_counterexample(file: Path, impl_spec: str) -> int:
    from lmstep.runtime.check import cetrace, open_impl

    doc = cetrace.read(file)
    model = cetrace.open_model(doc)
    impl_spec = impl_spec or doc["impl"]
    typer.echo(
        f"replaying counterexample {file}: {impl_spec} vs spec on {model.name}, {len(doc['ops'])} ops, "
        f"required {doc.get('required_level', 'L1')}"
    )
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

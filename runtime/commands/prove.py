"""``lmstep prove``: discharge the proof obligations (lmstep.proofs) with Z3 and report each verdict."""

from __future__ import annotations

import json
import os
import sys
import time

import typer

HELP = """Prove the spec's laws with Z3: each obligation is proved, refuted (with a counterexample) or unknown.

Mutants (names with ~) are broken variants that must come back refuted. Exits 1 if any verdict differs
from the expected one.

\b
Examples:
  lmstep prove
  lmstep prove --only scan/                  # every obligation whose name contains scan/
  lmstep prove --only floats/add-assoc-float32 --json
  lmstep prove --smt2 out/smt2       # also write each query as SMT-LIB 2 (recheck: cvc5)
  lmstep prove --long --jobs 2               # include the slow ones
  lmstep prove --list
"""


def register(app: typer.Typer) -> None:
    @app.command("prove", help=HELP)
    def prove(
        only: str | None = typer.Option(
            None, "--only", help="Run the obligation with this name, or every one whose name contains it."
        ),
        smt2: str | None = typer.Option(None, "--smt2", help="Write each query as SMT-LIB 2 into this folder."),
        long: bool = typer.Option(False, "--long", help="Include the slow obligations (minutes)."),
        jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Worker processes (0 = one per CPU, at most 2)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output: one JSON object."),
        list_only: bool = typer.Option(False, "--list", help="List the obligations without running them."),
    ) -> None:
        from lmstep.proofs.obligations import run_all, select

        obligations = select(only, long)
        if list_only:
            _list(obligations, as_json)
            return
        workers = jobs or min(2, os.cpu_count() or 1)
        start = time.perf_counter()
        results = run_all(obligations, workers, smt2, on_result=None if as_json else _progress)
        wall = time.perf_counter() - start
        if as_json:
            typer.echo(
                json.dumps(
                    {"wall_seconds": round(wall, 3), "jobs": workers, "results": [r.to_json() for r in results]},
                    default=str,
                )
            )
        else:
            _table(results, wall, workers, smt2)
        if not all(r.ok for r in results):
            raise typer.Exit(1)


def _progress(result: object) -> None:
    print(".", end="", file=sys.stderr, flush=True)


def _list(obligations: list, as_json: bool) -> None:
    rows = [
        {
            "name": ob.name,
            "expected": ob.expected,
            "long": ob.long,
            "bounds": ob.bounds,
            "via": ob.via,
            "statement": ob.statement,
        }
        for ob in obligations
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        typer.echo(f"{r['name']:52s} {r['expected']:8s} {'long ' if r['long'] else ''}{r['statement']}")


def _table(results: list, wall: float, workers: int, smt2: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    print(file=sys.stderr)
    table = Table(show_edge=False, pad_edge=False)
    for col, justify in (
        ("obligation", "left"),
        ("verdict", "left"),
        ("expected", "left"),
        ("seconds", "right"),
        ("", "left"),
    ):
        table.add_column(col, justify=justify)
    for r in results:
        mark = "ok" if r.ok else "FAIL"
        table.add_row(r.name, r.verdict, r.expected, f"{r.seconds:.2f}", mark if r.ok else f"[bold red]{mark}[/]")
    console = Console(highlight=False)
    console.print(table)
    for r in results:
        if not r.ok or r.replay:
            console.print(f"[bold]{r.name}[/]: {r.detail}", markup=True)
            if r.model:
                console.print(f"  inputs: {_short(r.model)}", markup=False)
            for line in r.replay:
                console.print(f"  replay: {line}", markup=False)
    failed = sum(not r.ok for r in results)
    cpu = sum(r.seconds for r in results)
    summary = (
        f"{len(results)} obligations, {len(results) - failed} as expected, {failed} "
        f"not; {wall:.1f} s wall ({cpu:.1f} s in solvers, {workers} workers)"
    )
    console.print(summary + (f"; SMT-LIB 2 in {smt2}" if smt2 else ""), markup=False)


def _short(model: dict) -> str:
    text = json.dumps(model, default=str)
    return text if len(text) <= 300 else text[:297] + "..."

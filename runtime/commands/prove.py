"""``lmstep prove``: discharge the proof obligations (lmstep.proofs) with Z3 and report each verdict."""

from __future__ import annotations

import json
import os
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
        smt2: str | None = typer.Option(
            None, "--smt2", help="Write each query as SMT-LIB 2 into this folder (created if its parent exists)."
        ),
        force: bool = typer.Option(False, "--force", help="With --smt2: overwrite .smt2 files of the same names."),
        long: bool = typer.Option(False, "--long", help="Include the slow obligations (minutes)."),
        jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Worker processes (0 = one per CPU, at most 2)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output: one JSON object."),
        list_only: bool = typer.Option(False, "--list", help="List the obligations without running them."),
    ) -> None:
        from lmstep.proofs.obligations import run_all, select
        from lmstep.runtime.progress import progress
        from lmstep.spec.errors import InputError

        obligations = select(only, long)
        if list_only:
            if smt2 is not None or force:
                raise InputError("--list runs nothing: --smt2 and --force do not apply")
            _list(obligations, as_json)
            return
        if force and smt2 is None:
            raise InputError("--force applies to --smt2 DIR (overwrite its .smt2 files); give --smt2 or drop --force")
        if smt2 is not None:
            smt2 = str(_smt2_folder(smt2, obligations, force))
        workers = jobs or min(2, os.cpu_count() or 1)
        start = time.perf_counter()
        with progress("proving", len(obligations)) as advance:
            results = run_all(obligations, workers, smt2, on_result=lambda _: advance())
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


def _smt2_folder(text: str, obligations: list, force: bool):
    """The --smt2 folder, checked before any proof runs: a folder (created if only it is missing; never a tree),
    holding no .smt2 file this run would write, unless --force."""
    import re
    from pathlib import Path

    from lmstep.proofs.smt2 import file_name
    from lmstep.spec.errors import InputError

    if not text.strip():
        raise InputError("--smt2 needs a folder name, e.g. --smt2 out/smt2")
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"--smt2 {folder}: a file, not a folder; --smt2 names a folder to write one .smt2 file per query"
        )
    if not folder.exists():
        if not folder.parent.is_dir():
            raise InputError(
                f"--smt2 {folder}: folder {folder.parent} does not exist; create it first (mkdir -p {folder.parent})"
            )
        folder.mkdir()
        return folder
    stems = "|".join(re.escape(file_name(ob, 0, 1)[: -len(".smt2")]) for ob in obligations)
    ours = re.compile(rf"(?:{stems})(?:\.\d+)?\.smt2")  # file_name(): STEM.smt2, or STEM.I.smt2 for several queries
    clash = sorted(p.name for p in folder.iterdir() if ours.fullmatch(p.name))
    if clash and not force:
        raise InputError(
            f"--smt2 {folder} already holds {len(clash)} file(s) this run writes (e.g. {clash[0]}); "
            "pass --force to overwrite them, or choose another folder"
        )
    return folder


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

"""What a check prints: the verdict, one row per law with the level reached and the coverage behind it, and the
first failure with its shrunk counterexample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .levels import Level

# law, level reached, worst error / the comparison's L1 bound, comparisons, deepest position compared, longest
# chunk, comparisons on forked or resumed handles, inside run_batch, sampled draws (temperature > 0)
COLUMNS = ("law", "level", "err/bound", "compared", "deepest", "chunk", "forks", "batched", "draws")
LEGEND = "levels: L0 bitwise, L1 numeric, L2 tokens, L3 distribution; err/bound: worst error over its L1 bound"


def render(report: Any, counterexample_file: Path | None = None, console: Console | None = None) -> None:
    console = console or Console(highlight=False, soft_wrap=True)  # long paths stay whole, copyable
    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    console.print(
        f"{verdict}  {report.impl} vs spec on {report.model}: required {report.required.label()}, "
        f"{report.examples} runs (1 coverage run + {max(report.examples - 1, 0)} explored), {report.seconds:.1f} s"
    )
    table = Table(show_edge=False, pad_edge=False, padding=(0, 1))
    for col in COLUMNS:
        table.add_column(
            col,
            justify="left" if col in ("law", "level") else "right",
            no_wrap=True,
            min_width=11 if col == "law" else len(col),
        )
    for law, s in report.laws.items():
        cov = report.coverage.get(law, {})
        lvl: Level | None = s["level"]
        if lvl is None:
            level, ratio = "[red]not exercised[/]", "-"
        else:
            style = "green" if lvl >= report.required or law == "causality" and lvl >= Level.L1 else "red"
            level, ratio = f"[{style}]{lvl.name if lvl else 'fail'}[/]", f"{s.get('worst_ratio', 0.0):.2g}"
        deepest = cov.get("deepest", -1)
        table.add_row(
            law,
            level,
            ratio,
            str(cov.get("n", 0)),
            str(deepest) if deepest >= 0 else "-",
            str(cov.get("longest", 0) or "-"),
            str(cov.get("forks", 0)),
            str(cov.get("batches", 0)),
            str(cov.get("draws", 0)),
        )
    console.print(table)
    console.print(LEGEND, markup=False)
    ops = report.operations
    if ops:
        console.print("operations: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())), markup=False)
    if report.skipped:
        console.print(f"skipped on request (--skip-law): {', '.join(report.skipped)}", markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    if not report.passed:
        console.print(f"[red]first failure[/]: {report.message}")
        if report.stderr_tail:
            what = "traceback" if report.tail_kind == "traceback" else "stderr"
            console.print(f"{what} of the implementation (last lines):")
            console.print(report.stderr_tail, markup=False)
        if report.counterexample:
            console.print(f"shrunk counterexample: {len(report.counterexample)} operations")
            for op in report.counterexample:
                console.print("  " + _op_line(op), markup=False)
        if counterexample_file is not None:
            console.print(f"written to {counterexample_file}; replay with: lmstep replay {counterexample_file}")


def _op_line(op: dict[str, Any]) -> str:
    body = {k: v for k, v in op.items() if k not in ("op",)}
    if "rands" in body:
        body["rands"] = f"[{len(body['rands'])} rands]"
    return f"{op['op']:<12} " + " ".join(f"{k}={v}" for k, v in body.items())

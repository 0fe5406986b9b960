"""The summary table a check prints: one row per law with the level reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .levels import Level


def render(report: Any, counterexample_file: Path | None = None, console: Console | None = None) -> None:
    console = console or Console(highlight=False, soft_wrap=True)  # long paths stay whole, copyable
    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    console.print(
        f"{verdict}  {report.impl} vs spec on {report.model}: required {report.required.label()}, "
        f"{report.examples} runs, {report.seconds:.1f} s"
    )
    table = Table(show_edge=False, pad_edge=False)
    for col in ("law", "level reached", "worst rel err", "compared"):
        table.add_column(col)
    for law, s in report.laws.items():
        lvl: Level = s["level"]
        style = "green" if lvl >= report.required else "red"
        table.add_row(law, f"[{style}]{lvl.label()}[/]", f"{s['worst_err']:.2g}", str(s["n"]))
    console.print(table)
    if not report.passed:
        console.print(f"[red]first failure[/]: {report.message}")
        if report.stderr_tail:
            console.print("stderr of the implementation (last lines):")
            console.print(report.stderr_tail, markup=False)
        if report.counterexample:
            console.print(f"shrunk counterexample: {len(report.counterexample)} operations")
            for op in report.counterexample:
                console.print("  " + _op_line(op), markup=False)
        if counterexample_file is not None:
            console.print(f"written to {counterexample_file}; replay with: lmstep replay {counterexample_file}")


def _op_line(op: dict[str, Any]) -> str:
    body = {k: v for k, v in op.items() if k not in ("op",)}
    return f"{op['op']:<10} " + " ".join(f"{k}={v}" for k, v in body.items())

"""Recheck exported SMT-LIB 2 files with cvc5 (an independent solver), through its Python API.

    python -m lmstep.proofs.recheck DIR [--timeout SECONDS]

cvc5 is optional (``pip install 'lmstep[proofs]'``). Each file's ``(set-info :status ...)`` is what Z3 answered;
cvc5 agrees, disagrees (a soundness bug in one of the solvers or in the export) or gives up (unknown / timeout:
neither solver is uniformly faster, docs/design.md §8).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

_STATUS = re.compile(r"^\(set-info :status (\w+)\)", re.M)


def available() -> bool:
    try:
        import cvc5  # noqa: F401
    except ImportError:
        return False
    return True


def recheck(path: Path, timeout_s: float = 10.0) -> tuple[str, str, float]:
    """(status Z3 found, cvc5's answer, seconds) for one exported file, in a child process killed after
    ``timeout_s`` (cvc5's own time limit covers check-sat only: preprocessing a whole-model query ran for
    minutes past it)."""
    import multiprocessing as mp

    expected = _expected(path.read_text())
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start = time.perf_counter()
    child = ctx.Process(target=lambda: out.put(_cvc5(path, timeout_s)), daemon=True)
    child.start()
    child.join(timeout_s + 5)
    if child.is_alive():
        child.kill()
        child.join()
        return expected, "timeout", time.perf_counter() - start
    answer = out.get() if not out.empty() else "crashed"
    return expected, answer, time.perf_counter() - start


def _expected(text: str) -> str:
    found = _STATUS.search(text)
    return found.group(1) if found else "unknown"


def _cvc5(path: Path, timeout_s: float) -> str:
    import cvc5

    text = path.read_text()
    tm = cvc5.TermManager()
    solver = cvc5.Solver(tm)
    solver.setOption("fp-exp", "true")  # float16 and bfloat16 are not among cvc5's default float sizes
    solver.setOption("tlimit-per", str(int(timeout_s * 1000)))
    parser = cvc5.InputParser(solver)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, path.name)
    symbols = parser.getSymbolManager()
    answer = "no check-sat"
    while True:
        cmd = parser.nextCommand()
        if cmd.isNull():
            break
        out = cmd.invoke(solver, symbols).strip()
        if out:
            answer = out.split()[0]
    return answer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per file (default 10)")
    args = ap.parse_args(argv)
    if not available():
        print("cvc5 is not installed: pip install 'lmstep[proofs]'", file=sys.stderr)
        return 2
    disagree = 0
    for path in sorted(args.directory.glob("*.smt2")):
        expected, answer, seconds = recheck(path, args.timeout)
        verdict = "agrees" if answer == expected else ("gave up" if answer in ("unknown", "timeout") else "DISAGREES")
        disagree += verdict == "DISAGREES"
        print(f"{path.name:60s} z3 {expected:7s} cvc5 {answer:8s} {seconds:7.2f}s {verdict}")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())

"""SMT-LIB 2 export of obligations, so an independent solver can recheck every verdict.

Each query becomes one self-contained file: ``(set-logic ALL)``, the declarations, the assumptions and the
claim Z3 checked (the negated law, or the law itself for a witness), ``(check-sat)``, and ``:status`` saying
what Z3 answered is expected (unsat = proved, sat = refuted or witnessed). Z3's ``to_smt2()`` can print text
other solvers reject (docs/design.md §8); :func:`lint` rewrites it to standard SMT-LIB 2.6:
- unary ``(+ x)`` / ``(* x)`` become ``x``, and empty ``(and)`` / ``(or)`` become ``true`` / ``false``;
- Z3's own ``(set-info :status ...)`` is dropped (ours is written instead);
- ``define-funs-rec`` and other Z3-only commands are refused (no obligation here uses recursive functions:
  they timed out from T = 4, docs/design.md §8).
cvc5 needs ``--fp-exp`` for the non-standard float sizes (float16 and bfloat16).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import z3

from .obligations import Obligation, Query

Sexp = Any  # str | list[Sexp]

_TOKEN = re.compile(r'\s+|;[^\n]*|\|[^|]*\||"(?:[^"]|"")*"|[()]|[^\s()|";]+')
_REFUSED = {"define-funs-rec", "define-fun-rec", "declare-datatypes"}


def parse(text: str) -> list[Sexp]:
    """SMT-LIB text -> a list of s-expressions (atoms as their exact source text)."""
    stack: list[list[Sexp]] = [[]]
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok.isspace() or tok.startswith(";"):
            continue
        if tok == "(":
            stack.append([])
        elif tok == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise ValueError("unbalanced parentheses in SMT-LIB text")
    return stack[0]


def show(e: Sexp) -> str:
    """Print an s-expression (iteratively: a T = 64 scan nests thousands of levels deep)."""
    out: list[str] = []
    stack: list[Any] = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, tuple):  # a closing marker
            out.append(")")
        else:
            out.append("(")
            stack.append(())
            for i, item in enumerate(reversed(x)):
                stack.append(item)
                if i < len(x) - 1:
                    stack.append(" ")
    return "".join(out)


def _fix(e: Sexp) -> Sexp:
    """The standard form of one command: unary + and * dropped, empty and/or replaced (post-order, iterative)."""
    if isinstance(e, str):
        return e
    done: dict[int, Sexp] = {}
    stack: list[tuple[list[Sexp], bool]] = [(e, False)]
    while stack:
        node, visited = stack.pop()
        if not visited:
            stack.append((node, True))
            stack.extend((c, False) for c in node if isinstance(c, list))
            continue
        new = [done.pop(id(c)) if isinstance(c, list) else c for c in node]
        if len(new) == 2 and new[0] in ("+", "*"):
            new = new[1]
        elif new == ["and"]:
            new = "true"
        elif new == ["or"]:
            new = "false"
        done[id(node)] = new
    return done[id(e)]


def lint(text: str) -> list[str]:
    """Z3's SMT-LIB output as standard commands, one per line."""
    out = []
    for cmd in parse(text):
        if isinstance(cmd, list) and cmd and cmd[0] in _REFUSED:
            raise ValueError(f"{cmd[0]} is not supported by every solver; restate the obligation without it")
        if isinstance(cmd, list) and cmd[:2] == ["set-info", ":status"]:
            continue
        out.append(show(_fix(cmd)))
    return out


def query_status(q: Query, verdict: str | None) -> str:
    """The answer a solver must give on the exported query for ``verdict``: a proof is unsat (sat for a witness),
    a refutation sat (unsat: no witness); anything else is unknown."""
    if verdict == "proved":
        return "sat" if q.exists else "unsat"
    if verdict == "refuted":
        return "unsat" if q.exists else "sat"
    return "unknown"


def to_smt2(ob: Obligation, q: Query, verdict: str | None) -> str:
    s = z3.Solver()
    for _, f in q.assumptions:
        s.add(f)
    s.add(q.claim())
    header = [
        f"; lmstep proof obligation {ob.name}" + (f" [{q.label}]" if q.label else ""),
        f"; {ob.statement}",
        f"; assumes: {ob.assumes}; bounds: {ob.bounds}; via {ob.via}",
        f"; expected verdict: {ob.expected}; z3 verdict on this query: {verdict or 'not run'}",
        "(set-logic ALL)",
        f"(set-info :status {query_status(q, verdict)})",
    ]
    return "\n".join(header + lint(s.to_smt2())) + "\n"


def file_name(ob: Obligation, index: int, count: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.~-]+", "_", ob.name.replace("/", "__"))
    return f"{stem}.smt2" if count == 1 else f"{stem}.{index}.smt2"


def export(ob: Obligation, queries: list[Query], verdicts: list[str | None], directory: Path) -> list[Path]:
    """Write each query as SMT-LIB 2 with the status Z3 found for it (``verdicts``, None where not run)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, q in enumerate(queries):
        path = directory / file_name(ob, i, len(queries))
        path.write_text(to_smt2(ob, q, verdicts[i] if i < len(verdicts) else None))
        paths.append(path)
    return paths

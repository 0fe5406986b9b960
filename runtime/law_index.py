"""The law index: per law of the registry (lmstep.spec.laws), everything that refers to it, found in the code.

- tests: functions marked ``@pytest.mark.law(ID)``, ``control(ID)`` or ``export(ID)`` in tests/test_*.py, read
  with ``ast`` (nothing is imported or run; ``*NAME`` of a module-level tuple of ids is resolved);
- proofs: obligations whose ``law`` is the id (lmstep.proofs.obligations);
- the checker: its laws that check the id (runtime/check/lockstep.py ``LAWS``);
- mutants: the catalogue's entries that break the id (lmstep/mutants.py), with where each is run: the spec-level
  checks (tests/test_spec_mutants.py), the checker, and the proof obligations built on it.

``lmstep laws`` prints it; :func:`markdown` is docs/laws.md, whose committed copy tests/test_laws_index.py
compares with a fresh one, and :func:`missing` is the evidence a law needs (``Law.needs``) and lacks.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import attrs

from lmstep.spec.laws import BY_ID, LAWS, Law

ROLES = ("law", "control", "export")
ROOT = Path(__file__).resolve().parent.parent  # the source checkout (runtime/ is lmstep.runtime)


@attrs.frozen
class TestRef:
    path: str  # relative to the checkout, e.g. "tests/test_spec_properties.py"
    name: str  # the test function, "Class.test_x" for a method
    role: str  # law | control | export
    laws: tuple[str, ...]
    mutants: tuple[str, ...] = ()  # catalogue mutants the test names


@attrs.frozen
class MutantRef:
    name: str
    bug: str
    runs: tuple[str, ...]  # "spec-level check", "checker", and the names of proof obligations


@attrs.frozen
class Entry:
    law: Law
    tests: tuple[TestRef, ...]
    proofs: tuple[tuple[str, str, str], ...]  # (obligation name, expected verdict, file)
    checker: tuple[str, ...]
    exports: tuple[TestRef, ...]
    controls: tuple[TestRef, ...]
    mutants: tuple[MutantRef, ...]


def build(root: Path | None = ROOT) -> dict[str, Entry]:
    """The index of every law; the tests columns are empty when ``root`` has no tests/ (an installed package)."""
    from lmstep.mutants import MUTANTS
    from lmstep.proofs.obligations import load_all
    from lmstep.runtime.check.lockstep import LAWS as CHECKER

    tests = discover_tests(root / "tests") if root is not None and (root / "tests").is_dir() else []
    obligations = load_all().values()
    index = {}
    for law in LAWS:
        marked = {role: tuple(t for t in tests if t.role == role and law.id in t.laws) for role in ROLES}
        proofs = tuple(
            (ob.name, ob.expected, _module_file(ob.build))
            for ob in obligations
            if ob.law == law.id and not ob.mutant_of
        )
        mutants = tuple(
            MutantRef(m.name, m.bug, _runs(m, law.id, obligations, tests))
            for m in MUTANTS.values()
            if law.id in m.breaks
        )
        checker = tuple(name for name, (ids, _) in CHECKER.items() if law.id in ids)
        index[law.id] = Entry(law, marked["law"], proofs, checker, marked["export"], marked["control"], mutants)
    return index


def _runs(mutant: Any, law: str, obligations: Any, tests: list[TestRef]) -> tuple[str, ...]:
    """Where a mutant is run: the spec-level checks, the checker, proof obligations, control tests naming it."""
    runs = ["spec-level check"] if law in mutant.spec_level_laws() else []
    runs += ["checker"] if mutant.checked else []
    runs += [ob.name for ob in obligations if ob.mutant == mutant.name]
    named = {f"{t.path}::{t.name}" for t in tests if t.role == "control" and mutant.name in t.mutants}
    return (*runs, *sorted(named))


def _module_file(fn: Any) -> str:
    """proofs/scan.py for a function defined in lmstep.proofs.scan."""
    parts = fn.__module__.split(".")
    return "/".join(parts[1:]) + ".py" if parts[0] == "lmstep" else fn.__module__


def missing(index: dict[str, Entry]) -> dict[str, list[str]]:
    """Per law, the kinds of evidence it needs (Law.needs) and has none of."""
    out = {}
    for law_id, e in index.items():
        has = {
            "test": bool(e.tests),
            "control": bool(e.controls) or any(m.runs for m in e.mutants),
            "proof": bool(e.proofs),
            "checker": bool(e.checker),
            "export": bool(e.exports),
        }
        lacking = [need for need in e.law.needs if not has[need]]
        if lacking:
            out[law_id] = lacking
    return out


# -- tests, read from source ----------------------------------------------------------------------------------
def discover_tests(tests_dir: Path) -> list[TestRef]:
    from lmstep.mutants import MUTANTS

    refs = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _string_tuples(tree)
        rel = f"{tests_dir.name}/{path.name}"
        for qual, fn in _test_functions(tree):
            mentioned = tuple(sorted({c for c in _strings(fn) if c in MUTANTS}))
            for dec in fn.decorator_list:
                role = _marker(dec)
                if role is not None:
                    ids = tuple(_marker_ids(dec, names, f"{rel}::{qual}"))
                    refs.append(TestRef(rel, qual, role, ids, mentioned))
    return refs


def _test_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef]]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            out.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            out += [
                (f"{node.name}.{f.name}", f)
                for f in node.body
                if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")
            ]
    return out


def _marker(dec: ast.expr) -> str | None:
    """ "law" for ``@pytest.mark.law(...)``, and so on; None for any other decorator."""
    if not isinstance(dec, ast.Call) or not isinstance(dec.func, ast.Attribute) or dec.func.attr not in ROLES:
        return None
    mark = dec.func.value
    if isinstance(mark, ast.Attribute) and mark.attr == "mark":
        return dec.func.attr
    return None


def _marker_ids(dec: ast.Call, names: dict[str, tuple[str, ...]], where: str) -> list[str]:
    ids = []
    for arg in dec.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            ids.append(arg.value)
        elif isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name) and arg.value.id in names:
            ids += names[arg.value.id]
        else:
            raise ValueError(f"{where}: a law marker takes law ids as strings (or *NAME of a module-level tuple)")
    unknown = [i for i in ids if i not in BY_ID]
    if unknown or not ids:
        raise ValueError(f"{where}: unknown law id(s) {unknown or '(none given)'}; see lmstep.spec.laws")
    return ids


def _string_tuples(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Module-level ``NAME = ("a", "b")`` (tuples or lists of string constants)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Tuple | ast.List) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
            ):
                out[node.targets[0].id] = tuple(e.value for e in value.elts)  # type: ignore[attr-defined]
    return out


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


# -- rendering ------------------------------------------------------------------------------------------------
def _test_link(t: TestRef, up: str) -> str:
    return f"[`{t.name}`]({up}{t.path}) ({Path(t.path).name})"


def markdown(index: dict[str, Entry]) -> str:
    """docs/laws.md (links relative to docs/)."""
    up = "../"
    lines = [
        "# Laws",
        "",
        "<!-- Generated by `lmstep laws --markdown > docs/laws.md`; tests/test_laws_index.py checks it is current. -->",
        "",
        "Every law has one id ([spec/laws.py](../spec/laws.py)); its statement is normative in [SPEC.md](../SPEC.md).",
        "Tests name it with `@pytest.mark.law` / `control` / `export`, proof obligations with `Obligation.law`, the",
        "checker's laws map to it in [runtime/check/lockstep.py](../runtime/check/lockstep.py) and mutants of the",
        "[catalogue](../lmstep/mutants.py) list the laws they break. This file is generated from those, so each",
        "column is one hop from the law. Kinds: *law* (the spec obeys it, so a mutant of the spec breaks it),",
        "*conformance* (an implementation compared with the spec), *fact* (mathematics only the proofs establish).",
        "",
        "| law | kind | SPEC | tests | proofs | checker law | export tests | negative controls |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for law_id, e in index.items():
        checker = ", ".join(f"`{c}`" for c in e.checker) or "-"
        controls = len(e.controls) + sum(1 for m in e.mutants if m.runs)
        lines.append(
            f"| [`{law_id}`](#{law_id}) | {e.law.kind} | [{e.law.section}]({up}{e.law.anchor}) | {len(e.tests)} | "
            f"{len(e.proofs)} | {checker} | {len(e.exports)} | {controls} |"
        )
    for law_id, e in index.items():
        lines += ["", f"## `{law_id}`", "", e.law.statement, ""]
        lines.append(f"- **SPEC**: [SPEC.md {e.law.section}]({up}{e.law.anchor})")
        lines.append("- **tests**: " + (", ".join(_test_link(t, up) for t in e.tests) or "none"))
        proofs = ", ".join(f"[`{n}`]({up}{f}) ({v})" for n, v, f in e.proofs)
        lines.append("- **proofs** (`lmstep prove --only NAME`): " + (proofs or "none"))
        checker = ", ".join(f"`{c}`" for c in e.checker)
        lines.append(
            "- **checker law**: "
            + (f"{checker} ([docs/checking.md](checking.md#laws-and-levels))" if checker else "none")
        )
        lines.append("- **export tests**: " + (", ".join(_test_link(t, up) for t in e.exports) or "none"))
        lines.append("- **negative controls**:" + ("" if e.controls or e.mutants else " none"))
        for t in e.controls:
            named = f": mutants {', '.join(f'`{m}`' for m in t.mutants)}" if t.mutants else ""
            lines.append(f"  - test {_test_link(t, up)}{named}")
        for m in e.mutants:
            runs = "; ".join(_run_link(r, up) for r in m.runs) or "not run"
            lines.append(f"  - mutant [`{m.name}`]({up}lmstep/mutants.py) ({runs}): {m.bug}")
    return "\n".join(lines) + "\n"


RUN_FILES = {"spec-level check": "tests/test_spec_mutants.py", "checker": "tests/test_check_catalogue.py"}


def _run_link(run: str, up: str) -> str:
    if run in RUN_FILES:
        return f"[{run}]({up}{RUN_FILES[run]})"
    if "::" in run:  # a control test
        path, name = run.split("::")
        return f"[`{name}`]({up}{path})"
    return f"`{run}`"  # a proof obligation


def text(index: dict[str, Entry], tests_found: bool = True) -> str:
    """The terminal form of ``lmstep laws``."""
    out = []
    for law_id, e in index.items():
        out.append(f"{law_id} ({e.law.kind}, SPEC.md {e.law.section}, {e.law.anchor})")
        out.append(f"  {e.law.statement}")
        if tests_found:
            out.append("  tests:    " + (", ".join(f"{t.path}::{t.name}" for t in e.tests) or "none"))
        out.append("  proofs:   " + (", ".join(n for n, _, _ in e.proofs) or "none"))
        out.append("  checker:  " + (", ".join(e.checker) or "none"))
        if tests_found:
            out.append("  export:   " + (", ".join(f"{t.path}::{t.name}" for t in e.exports) or "none"))
            out.append("  controls: " + (", ".join(f"{t.path}::{t.name}" for t in e.controls) or "none"))
        out.append("  mutants:  " + (", ".join(m.name for m in e.mutants) or "none"))
        out.append("")
    if not tests_found:
        out.append("(tests are listed from a source checkout of lmstep: docs/laws.md there has them all)")
    return "\n".join(out)


def as_json(index: dict[str, Entry]) -> dict[str, Any]:
    return {law_id: attrs.asdict(e) for law_id, e in index.items()}

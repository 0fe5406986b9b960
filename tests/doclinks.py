"""Internal references of the repository, checked: markdown links, section references and file paths.

- a relative markdown link in README.md, SPEC.md or docs/*.md resolves to a file, and its ``#anchor`` (for a
  markdown target) to a heading (GitHub's slug) or an explicit ``<a id>``;
- "SPEC.md §N", "SPEC §N", "docs/x.md §N" (and a bare "§N" inside SPEC.md) name a file of the repository that
  has a heading numbered N;
- a path of the repository written in backticks (``spec/ops.py``, ```tests/laws.py```, with an optional ``:line``)
  in a document or in code exists; a ``*`` pattern must match something;
- a dotted name ``lmstep.x.y`` in backticks in a document imports (a module, then attributes).

Used by tests/test_doc_links.py on the repository, and on a scratch folder for its negative control.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path

TOP = ("spec", "runtime", "proofs", "tests", "benchmarks", "tools", "docs", "lmstep", ".ci")
TOP_FILES = ("SPEC.md", "README.md", "pyproject.toml")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
SECTION = re.compile(r"((?:docs/)?[\w.-]+\.md|SPEC) §(\d+)")
BARE_SECTION = re.compile(r"(?<![\w.§])§(\d+)(?![\d.]*\w)")
BACKTICKED = re.compile(r"`{1,2}([^`\s]+)`{1,2}")
PATH = re.compile(
    rf"^(?:\.\./)*((?:{'|'.join(re.escape(t) for t in TOP)})/[\w./*<>-]*|{'|'.join(TOP_FILES)})(?::\d+)?$"
)
FENCE = re.compile(r"(?ms)^```.*?^```")
DOTTED = re.compile(r"^lmstep\.(spec|runtime|proofs|mutants|mutation)(\.\w+)*$")
EXAMPLES = ("tests/doclinks.py", "tests/test_doc_links.py")  # they hold broken references on purpose


def default_files(root: Path) -> list[Path]:
    docs = [root / "README.md", root / "SPEC.md", *sorted((root / "docs").glob("*.md"))]
    code = [p for top in TOP if (root / top).is_dir() for p in sorted((root / top).rglob("*.py"))]
    keep = [p for p in docs + code if p.is_file() and "fixtures" not in p.parts]
    return [p for p in keep if p.relative_to(root).as_posix() not in EXAMPLES]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    out: set[str] = set()
    for heading in re.findall(r"(?m)^#{1,6} (.+)$", text):
        base, n = slug(heading), 0
        while (base if n == 0 else f"{base}-{n}") in out:
            n += 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out | set(re.findall(r'<a (?:id|name)="([^"]+)"', text))


def sections(md: Path) -> set[str]:
    """The numbers of the numbered headings ("## 3. The sampler" -> "3")."""
    return set(re.findall(r"(?m)^#{1,6} (\d+)[.\s]", md.read_text(encoding="utf-8")))


def problems(root: Path, files: Iterable[Path]) -> list[str]:
    out = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        if path.suffix == ".md":
            out += [f"{rel}: {p}" for p in _links(root, path, FENCE.sub(lambda m: "\n" * m[0].count("\n"), text))]
        for no, line in enumerate(lines, 1):
            out += [f"{rel}:{no}: {p}" for p in _sections(root, path, line)]
            out += [f"{rel}:{no}: {p}" for p in _paths(root, line)]
            if path.suffix == ".md":
                out += [f"{rel}:{no}: {p}" for p in _dotted(line)]
    return out


def _links(root: Path, md: Path, text: str) -> list[str]:
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (md.parent / file).resolve() if file else md
        if not dest.exists():
            out.append(f"link to {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            out.append(f"link to {target}: no heading or anchor #{anchor} in {dest.name}")
    return out


def _sections(root: Path, path: Path, line: str) -> list[str]:
    out = []
    refs = [(name, n) for name, n in SECTION.findall(line)]
    if path.name == "SPEC.md":
        refs += [("SPEC.md", n) for n in BARE_SECTION.findall(SECTION.sub("", line))]
    for name, n in refs:
        name = "SPEC.md" if name == "SPEC" else name
        candidates = [root / name, root / "docs" / name, path.parent / name]
        md = next((c for c in candidates if c.is_file()), None)
        if md is None:
            out.append(f"{name} §{n}: no such file in the repository")
        elif n not in sections(md):
            out.append(f"{name} §{n}: {md.relative_to(root).as_posix()} has no section {n}")
    return out


def _paths(root: Path, line: str) -> list[str]:
    out = []
    for token in BACKTICKED.findall(line):
        m = PATH.match(token)
        if not m or "<" in token:  # <placeholders> are not paths
            continue
        rel = m.group(1)
        if "*" in rel:
            if not list(root.glob(rel)):
                out.append(f"`{token}`: matches no file")
        elif not (root / rel).exists():
            out.append(f"`{token}`: no such path in the repository")
    return out


def _dotted(line: str) -> list[str]:
    out = []
    for token in BACKTICKED.findall(line):
        if not DOTTED.match(token):
            continue
        parts, obj, i = token.split("."), None, 1
        while i <= len(parts):  # the longest importable module prefix
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                break
            i += 1
        rest = parts[i - 1 :]
        for name in rest:
            if not hasattr(obj, name):
                out.append(f"`{token}`: {'.'.join(parts[: len(parts) - len(rest)])} has no {name!r}")
                break
            obj = getattr(obj, name)
    return out

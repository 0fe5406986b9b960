"""The repository explains itself: every relative link in README.md, SPEC.md and docs/, every "SPEC.md §N" /
"docs/x.md §N" reference, every repository path and ``lmstep.`` name written in backticks resolves (tests/doclinks.py).
Negative control: a scratch repository with one broken reference of each kind, all reported."""

from __future__ import annotations

from pathlib import Path

import doclinks

ROOT = Path(__file__).resolve().parent.parent


def test_the_repository_references_resolve():
    assert doclinks.problems(ROOT, doclinks.default_files(ROOT)) == []


def test_design_document_is_in_the_repository_and_cited():
    """The design notes code cites are docs/design.md (nothing outside the repository is cited)."""
    assert (ROOT / "docs" / "design.md").is_file()
    cited = [p for p in doclinks.default_files(ROOT) if "docs/design.md §" in p.read_text(encoding="utf-8")]
    assert len(cited) >= 10


def test_broken_references_of_each_kind_are_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "ops.py").write_text('"""See SPEC.md §2 and docs/a.md §1; DESIGN.md §4; SPEC.md §9."""\n')
    (tmp_path / "SPEC.md").write_text("# Spec\n\n## 1. One\n\nSee §1 and §7.\n\n## 2. Two\n")
    (tmp_path / "docs" / "a.md").write_text(
        '# A\n\n## 1. First part\n\n<a id="law-x"></a>\n'
        "[ok](../SPEC.md#2-two) [ok](#1-first-part) [ok](../SPEC.md) [ok](a.md#law-x) [web](https://example.org/x)\n"
        "[missing file](b.md) [missing anchor](../SPEC.md#3-three) [missing here](#nowhere)\n"
        "`spec/ops.py` `spec/ops.py:1` `spec/*.py` exist; `spec/gone.py` and `tests/*.py` do not;"
        " `lmstep.spec.load` imports, `lmstep.spec.no_such_name` does not\n"
        "```\n[inside a code block](nowhere.md)\n```\n"
    )
    (tmp_path / "README.md").write_text("[spec](SPEC.md) and [design](docs/design.md)\n")
    found = doclinks.problems(tmp_path, doclinks.default_files(tmp_path))
    expected = [
        "docs/a.md: link to b.md: no such file",
        "docs/a.md: link to ../SPEC.md#3-three: no heading or anchor #3-three in SPEC.md",
        "docs/a.md: link to #nowhere: no heading or anchor #nowhere in a.md",
        "docs/a.md:8: `spec/gone.py`: no such path in the repository",
        "docs/a.md:8: `tests/*.py`: matches no file",
        "docs/a.md:8: `lmstep.spec.no_such_name`: lmstep.spec has no 'no_such_name'",
        "README.md: link to docs/design.md: no such file",
        "SPEC.md:5: SPEC.md §7: SPEC.md has no section 7",
        "spec/ops.py:1: DESIGN.md §4: no such file in the repository",
        "spec/ops.py:1: SPEC.md §9: SPEC.md has no section 9",
    ]
    assert sorted(found) == sorted(expected)

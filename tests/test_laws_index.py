"""One law registry (spec/laws.py): every test marker, proof obligation, checker law and mutant names a law by its
id, every law keeps the evidence it needs (Law.needs), SPEC.md has each law's anchor in its section, and
docs/laws.md is what `lmstep laws --markdown` generates now."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from lmstep.mutants import MUTANTS
from lmstep.proofs.obligations import load_all
from lmstep.runtime import law_index
from lmstep.runtime.check.lockstep import LAWS as CHECKER
from lmstep.runtime.cli import main
from lmstep.spec.laws import BY_ID, EVIDENCE, KINDS, LAWS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def index():
    return law_index.build(ROOT)


def test_docs_laws_md_is_current(index):
    committed = (ROOT / "docs" / "laws.md").read_text(encoding="utf-8")
    assert committed == law_index.markdown(index), "docs/laws.md is stale: run `lmstep laws --markdown > docs/laws.md`"


def test_every_law_keeps_the_evidence_it_needs(index):
    assert law_index.missing(index) == {}


def test_a_law_that_loses_its_proof_or_tests_is_reported(index):
    """Negative control of the evidence check: the same index with evidence removed."""
    stripped = dict(index)
    stripped["causality"] = attrs.evolve(index["causality"], proofs=(), controls=(), mutants=())
    stripped["sampler"] = attrs.evolve(index["sampler"], tests=(), exports=())
    assert law_index.missing(stripped) == {"causality": ["control", "proof"], "sampler": ["test", "export"]}


def test_the_registry_is_well_formed():
    assert len(BY_ID) == len(LAWS)
    for law in LAWS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", law.id), law.id
        assert law.anchor == f"SPEC.md#law-{law.id}" and set(law.needs) <= set(EVIDENCE) and law.kind in KINDS
        assert law.kind != "law" or {"test", "control"} <= set(law.needs), f"{law.id}: a law needs a test and a control"


def test_spec_md_has_each_laws_anchor_in_its_section():
    spec = (ROOT / "SPEC.md").read_text(encoding="utf-8")
    sections = re.split(r"(?m)^## ", spec)
    where = {}
    for sec in sections[1:]:
        number = sec.split(".", 1)[0]
        for anchor in re.findall(r'<a id="(law-[a-z0-9-]+)"></a>', sec):
            where[anchor] = f"§{number}"
    assert {law.anchor.split("#")[1]: law.section for law in LAWS} == where


def test_every_obligation_names_a_law_and_its_mutant_breaks_it():
    for ob in load_all().values():
        assert ob.law in BY_ID, ob.name
        if "mutated" in ob.via:  # runs broken spec code: it must be the catalogue's
            assert ob.mutant in MUTANTS, f"{ob.name}: mutated spec code outside the catalogue"
        if ob.mutant is not None:
            assert ob.mutant_of and ob.law in MUTANTS[ob.mutant].breaks, ob.name


def test_checker_laws_map_to_registry_ids():
    assert all(ids and set(ids) <= set(BY_ID) for ids, _ in CHECKER.values())


def test_every_mutant_is_run_somewhere(index):
    """A mutant of the catalogue is a spec-level control, a checker mutant or a proof's mutant (else it is dead);
    one that float32 cannot show must be a proof's."""
    runs = {m.name: set() for e in index.values() for m in e.mutants}
    for e in index.values():
        for m in e.mutants:
            runs[m.name] |= set(m.runs)
    assert set(runs) == set(MUTANTS)
    assert not [name for name, r in runs.items() if not r]
    for name, m in MUTANTS.items():
        if not m.observable:
            assert any("/" in r and "::" not in r for r in runs[name]), f"{name}: invisible in float32 and in no proof"


def test_test_discovery_reads_markers_and_refuses_unknown_ids(tmp_path):
    """The discovery the index is built on, on a scratch tests folder: markers with literal ids and *NAME tuples are
    found with the mutants they name; an unknown id is an error, not a silently missing row."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_text(
        "import pytest\n"
        'IDS = ("causality", "sampler")\n'
        "@pytest.mark.law(*IDS)\ndef test_one():\n    pass\n"
        '@pytest.mark.control("causality")\n@pytest.mark.parametrize("n", ["scan-swapped"])\ndef test_two(n):\n'
        "    pass\n"
        "def test_unmarked():\n    pass\n"
    )
    refs = law_index.discover_tests(tests)
    assert [(r.name, r.role, r.laws, r.mutants) for r in refs] == [
        ("test_one", "law", ("causality", "sampler"), ()),
        ("test_two", "control", ("causality",), ("scan-swapped",)),
    ]
    (tests / "test_b.py").write_text('import pytest\n@pytest.mark.law("causalty")\ndef test_typo():\n    pass\n')
    with pytest.raises(ValueError, match="causalty"):
        law_index.discover_tests(tests)


def test_lmstep_laws_command(capsys):
    assert main(["laws", "causality"]) == 0
    out = capsys.readouterr().out
    assert "attention/append-keeps-prefix" in out and "test_causality" in out and "causal-mask-off-by-one" in out
    assert main(["laws", "no-such-law"]) == 2
    assert "unknown law 'no-such-law'" in capsys.readouterr().err


def test_docs_checking_md_names_the_law_each_checker_law_checks():
    rows = {}
    for line in (ROOT / "docs" / "checking.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] in CHECKER:
            rows[cells[0]] = re.findall(r"\[`([a-z-]+)`\]", cells[1])
    assert rows == {name: [ids[0]] for name, (ids, _) in CHECKER.items()}

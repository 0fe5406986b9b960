"""The default proof suite: every obligation comes back with its expected verdict, and the registry keeps its
promises (every proved law has a mutant that is refuted; nothing passes vacuously)."""

from __future__ import annotations

import pytest
from proofs_helpers import default_results

from lmstep.proofs.obligations import REGISTRY, load_all, select

DEFAULT = [ob.name for ob in select()]


@pytest.mark.parametrize("name", DEFAULT)
def test_verdict_is_expected(name):
    result = default_results()[name]
    assert result.verdict == REGISTRY[name].expected, f"{name}: {result.verdict} ({result.detail})"
    assert result.seconds > 0


def test_every_proved_law_has_a_refuted_mutant():
    obligations = load_all()
    laws = [ob for ob in obligations.values() if ob.expected == "proved" and ob.mutant_of is None]
    mutants = {ob.mutant_of for ob in obligations.values() if ob.mutant_of}
    assert not [ob.name for ob in laws if ob.name not in mutants]
    for ob in obligations.values():
        if ob.mutant_of:
            assert ob.expected == "refuted" and ob.mutant_of in obligations and "~" in ob.name


def test_mutants_in_the_default_suite_are_refuted():
    refuted = [n for n in DEFAULT if REGISTRY[n].mutant_of]
    assert len(refuted) >= 20
    assert all(default_results()[n].verdict == "refuted" for n in refuted)


def test_no_proof_is_vacuous_and_results_record_time():
    for name, result in default_results().items():
        assert result.verdict != "vacuous", name
        assert all(q["seconds"] >= 0 for q in result.queries), name
        if result.verdict == "proved":  # the vacuity check found a model of the assumptions
            assert "not shown consistent" not in result.detail, name


def test_default_suite_covers_the_issue():
    names = set(DEFAULT)
    for required in [
        "scan/combine-assoc-scalar",
        "scan/combine-assoc-diagonal",
        "scan/combine-assoc-matrix",
        "scan/brackets-T6",
        "scan/reference-T64",
        "scan/reference-lengths",
        "scan/initial-state",
        "scan/pairing-T64",
        "scan/pairing-odd-lengths",
        "scan/pairing-initial-state",
        "scan/hillis-steele-T64",
        "scan/blelloch-T64",
        "scan/closed-form",
        "attention/decode-eq-unrolled",
        "attention/append-keeps-prefix",
        "attention/softmax-shift",
        "attention/online-softmax",
        "attention/decode-eq-unrolled~additive-mask",
        "sampler/brackets-u",
        "sampler/zero-prob-never-chosen",
        "sampler/kept-set",
        "sampler/greedy-lowest-max",
        "floats/add-assoc-float32",
        "floats/add-assoc-float16",
        "floats/add-assoc-bfloat16",
        "floats/scan-vs-recurrence-float32",
        "integers/chunked-scan-wrap16",
        "integers/chunked-scan-saturate8",
        "integers/chunked-scan-q4.4",
        "linear/depth-collapse",
        "linear/xor-not-linear",
        "linear/xor-one-relu-layer",
        "ssd/chunked-eq-recurrence",
        "ssd/carried-state",
        "model/mamba2-prefill-eq-decode",
    ]:
        assert required in names, required
    assert any(REGISTRY[n].via.startswith("spec:") for n in names)


def test_select_by_substring_and_exact_name():
    assert [ob.name for ob in select("scan/closed-form")] == ["scan/closed-form"]
    assert {ob.name for ob in select("xor")} == {n for n in DEFAULT if "xor" in n}
    assert all(not ob.long for ob in select("floats/"))
    assert any(ob.long for ob in select("floats/", long=True))

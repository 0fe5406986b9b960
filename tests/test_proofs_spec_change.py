"""The proofs are about the spec's own code: change a spec function and the proof that runs it fails.

Each test installs one mutant of the catalogue (lmstep/mutants.py: the kind of bug a refactor introduces) in place
of the live function and checks that the obligation built on it is no longer proved: refuted where Z3 finds a
counterexample at the obligation's size, at least not proved where it cannot (the attention laws at their sizes
leave Z3 without a model of exp within seconds; the small mutant obligations in attention.py show such bugs
refuted). The obligations run in this process (``run``), so they see the change."""

from __future__ import annotations

import dataclasses

import pytest

from lmstep.mutants import MUTANTS
from lmstep.proofs.obligations import REGISTRY, load_all, run

load_all()


def install(monkeypatch, name: str) -> None:
    for obj, attr, fn in MUTANTS[name].patches():
        monkeypatch.setattr(obj, attr, fn)


def _verdict(name, timeout_s=None):
    ob = REGISTRY[name]
    return run(dataclasses.replace(ob, timeout_s=timeout_s) if timeout_s else ob).verdict


def test_baseline_is_proved():
    assert _verdict("scan/pairing-T64") == "proved"
    assert _verdict("scan/reference-T64") == "proved"


@pytest.mark.control("unrolled-eq-recurrent")
def test_an_odd_length_padded_with_a_real_element_breaks_the_pairing_scan(monkeypatch):
    # Pairs past the end must take the identity row: with < instead of <=, an even length loses its last element.
    install(monkeypatch, "pairing-last-pair-padded")
    assert _verdict("scan/pairing-T64") == "refuted"
    assert _verdict("scan/reference-T64") == "proved"  # the spec's own scan does not use the runtime's plan


@pytest.mark.control("unrolled-eq-recurrent", "split-invariance")
def test_a_down_sweep_merging_evens_and_odds_the_wrong_way_breaks_the_scan(monkeypatch):
    install(monkeypatch, "pairing-down-sweep-early")
    assert _verdict("scan/pairing-T64") == "refuted"
    assert _verdict("scan/pairing-initial-state") == "refuted"


@pytest.mark.control("unrolled-eq-recurrent")
def test_a_reference_scan_with_too_few_rounds_breaks_the_spec_laws(monkeypatch):
    # The spec's scan written for 32 tokens: the reference obligations see it; the runtime's pairing schedule is a
    # separate function and stays proved.
    install(monkeypatch, "scan-rounds-capped")
    assert _verdict("scan/reference-T64") == "refuted"
    assert _verdict("scan/pairing-T64") == "proved"


@pytest.mark.control("unrolled-eq-recurrent")
def test_a_recurrence_swapped_in_the_scan_breaks_associativity(monkeypatch):
    install(monkeypatch, "scan-swapped")
    assert _verdict("scan/combine-assoc-scalar") == "refuted"


@pytest.mark.control("unrolled-eq-recurrent")
def test_a_wrong_gqa_head_mapping_in_decode_breaks_decode_eq_unrolled(monkeypatch):
    install(monkeypatch, "gqa-wrong-mapping")  # h -> h % K, not h // G
    assert _verdict("attention/decode-eq-unrolled", timeout_s=5) != "proved"


@pytest.mark.control("causality")
def test_a_causal_mask_that_sees_the_future_breaks_causality(monkeypatch):
    install(monkeypatch, "causal-mask-off-by-one")
    assert _verdict("attention/append-keeps-prefix", timeout_s=5) != "proved"


@pytest.mark.control("sampler-keep-set")
@pytest.mark.parametrize("name", ["top-k-off-by-one", "top-p-inclusive"])
def test_a_sampler_that_keeps_too_much_breaks_the_kept_set(monkeypatch, name):
    install(monkeypatch, name)
    assert _verdict("sampler/kept-set") == "refuted"

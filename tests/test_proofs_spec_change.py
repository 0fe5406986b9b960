"""The proofs are about the spec's own code: change a spec function and the proof that runs it fails.

Each test replaces one function of lmstep.spec with a broken variant (the kind of bug a refactor introduces)
and checks that the obligation built on it is no longer proved: refuted where Z3 finds a counterexample at the
obligation's size, at least not proved where it cannot (the attention laws at their sizes leave Z3 without a
model of exp within seconds; the small mutant obligations in attention.py show such bugs refuted)."""

from __future__ import annotations

import dataclasses

import pytest

from lmstep.proofs.mutants import mutate
from lmstep.proofs.obligations import REGISTRY, load_all, run
from lmstep.proofs.scan import ROUNDS_CAPPED
from lmstep.runtime import mamba_scan
from lmstep.spec import layers, mamba, sampler

load_all()


def _verdict(name, timeout_s=None):
    ob = REGISTRY[name]
    return run(dataclasses.replace(ob, timeout_s=timeout_s) if timeout_s else ob).verdict


def test_baseline_is_proved():
    assert _verdict("scan/pairing-T64") == "proved"
    assert _verdict("scan/reference-T64") == "proved"


def test_an_odd_length_padded_with_a_real_element_breaks_the_pairing_scan(monkeypatch):
    # Pairs past the end must take the identity row: with < instead of <=, an even length loses its last element.
    broken = mutate(mamba_scan.scan_plan, "o.less_equal(twice, n)", "o.less(twice, n)")
    monkeypatch.setattr(mamba_scan, "scan_plan", broken)
    assert _verdict("scan/pairing-T64") == "refuted"
    assert _verdict("scan/reference-T64") == "proved"  # the spec's own scan does not use the runtime's plan


def test_a_down_sweep_merging_evens_and_odds_the_wrong_way_breaks_the_scan(monkeypatch):
    broken = mutate(mamba_scan.scan_plan, "o.add(half, 2)", "o.add(half, 1)")  # odd rows one even element early
    monkeypatch.setattr(mamba_scan, "scan_plan", broken)
    assert _verdict("scan/pairing-T64") == "refuted"
    assert _verdict("scan/pairing-initial-state") == "refuted"


def test_a_reference_scan_with_too_few_rounds_breaks_the_spec_laws(monkeypatch):
    # The spec's scan written for 32 tokens: the reference obligations and the chunked integer scan (run through
    # mamba._scan) see it; the runtime's pairing schedule is a separate function and stays proved.
    monkeypatch.setattr(mamba, "_scan", mutate(mamba._scan, *ROUNDS_CAPPED))
    assert _verdict("scan/reference-T64") == "refuted"
    assert _verdict("scan/pairing-T64") == "proved"


def test_a_recurrence_swapped_in_the_scan_breaks_associativity(monkeypatch):
    monkeypatch.setattr(mamba, "_scan", mutate(mamba._scan, "o.add(o.mul(a, b_prev), b)", "o.add(o.mul(a, b), b_prev)"))
    assert _verdict("scan/combine-assoc-scalar") == "refuted"


def test_a_wrong_gqa_head_mapping_in_decode_breaks_decode_eq_unrolled(monkeypatch):
    broken = mutate(
        layers.attention_decode,
        "qg = o.reshape(q, (0, n_kv, group, d))",
        "qg = o.transpose(o.reshape(q, (0, group, n_kv, d)), (0, 2, 1, 3))",
    )  # h -> h % K, not h // G
    monkeypatch.setattr(layers, "attention_decode", broken)
    assert _verdict("attention/decode-eq-unrolled", timeout_s=5) != "proved"


def test_a_causal_mask_that_sees_the_future_breaks_causality(monkeypatch):
    monkeypatch.setattr(
        layers,
        "causal_mask",
        mutate(layers.causal_mask, "o.unsqueeze(query_slot, -1)", "o.unsqueeze(o.add(query_slot, 1), -1)"),
    )
    assert _verdict("attention/append-keeps-prefix", timeout_s=5) != "proved"


@pytest.mark.parametrize(
    "old,new",
    [
        ("in_top_k = o.less(rank, k)", "in_top_k = o.less_equal(rank, k)"),
        ("o.less(c_prev, p_threshold)", "o.less_equal(c_prev, p_threshold)"),
    ],
)
def test_a_sampler_that_keeps_too_much_breaks_the_kept_set(monkeypatch, old, new):
    monkeypatch.setattr(sampler, "sample", mutate(sampler.sample, old, new))
    assert _verdict("sampler/kept-set") == "refuted"

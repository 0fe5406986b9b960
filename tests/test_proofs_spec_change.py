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
from lmstep.spec import layers, mamba, sampler

load_all()


def _verdict(name, timeout_s=None):
    ob = REGISTRY[name]
    return run(dataclasses.replace(ob, timeout_s=timeout_s) if timeout_s else ob).verdict


def test_baseline_is_proved():
    assert _verdict("scan/hillis-steele-T64") == "proved"


def test_a_scan_with_the_wrong_stride_breaks_hillis_steele(monkeypatch):
    monkeypatch.setattr(mamba, "_scan", mutate(mamba._scan, "d *= 2", "d *= 3"))  # skips distances 2, 4, 8, ...
    assert _verdict("scan/hillis-steele-T64") == "refuted"
    assert _verdict("integers/chunked-scan-wrap16") == "refuted"


def test_a_recurrence_swapped_in_the_scan_breaks_associativity(monkeypatch):
    monkeypatch.setattr(mamba, "_scan", mutate(mamba._scan, "o.add(o.mul(a, b_prev), b)", "o.add(o.mul(a, b), b_prev)"))
    assert _verdict("scan/combine-assoc-scalar") == "refuted"


def test_a_wrong_gqa_head_mapping_in_decode_breaks_decode_eq_unrolled(monkeypatch):
    broken = mutate(layers.attention_decode, "qg = o.reshape(q, (0, n_kv, group, d))",
                    "qg = o.transpose(o.reshape(q, (0, group, n_kv, d)), (0, 2, 1, 3))")  # h -> h % K, not h // G
    monkeypatch.setattr(layers, "attention_decode", broken)
    assert _verdict("attention/decode-eq-unrolled", timeout_s=5) != "proved"


def test_a_causal_mask_that_sees_the_future_breaks_causality(monkeypatch):
    monkeypatch.setattr(layers, "causal_mask", mutate(layers.causal_mask, "o.unsqueeze(query_slot, -1)", "o.unsqueeze(o.add(query_slot, 1), -1)"))
    assert _verdict("attention/append-keeps-prefix", timeout_s=5) != "proved"


@pytest.mark.parametrize("old,new", [
    ("in_top_k = o.less(rank, k)", "in_top_k = o.less_equal(rank, k)"),
    ("o.less(c_prev, p_threshold)", "o.less_equal(c_prev, p_threshold)"),
])
def test_a_sampler_that_keeps_too_much_breaks_the_kept_set(monkeypatch, old, new):
    monkeypatch.setattr(sampler, "sample", mutate(sampler.sample, old, new))
    assert _verdict("sampler/kept-set") == "refuted"

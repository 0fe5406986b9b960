"""The runtime's Mamba scan schedule (lmstep.runtime.mamba_scan, what model.onnx computes) against the spec's
reference scan (spec/mamba.py, SPEC.md §7), both run on numpy: the same model at L1, within FORMS["mamba"].

The two bracket the scan differently, so they differ by float32 rounding only (proved equal over the reals:
``lmstep prove --only scan/``). Compared over random Mamba configs and batches of 2-3 sequences up to 129 tokens,
prefilled in two chunks so the second starts from a carried state, with explicit examples at the power-of-two
lengths where the pairing schedule's levels and top rounds change. (That model.onnx equals this schedule bit for
bit is tests/test_runtime_reference.py.) Negative controls: a pairing plan whose top Hillis-Steele round reads
the wrong row - it only runs past 32 tokens - is caught by the property test under the quick profile; the
runtime schedule is not the reference bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import BOUNDARY_LENGTHS, models, token_batches
from tolerances import FORMS, rel_err

from lmstep.mutants import MUTANTS
from lmstep.runtime import mamba_scan
from lmstep.spec import NP, Model, builtin, mamba

SMALL = mamba.Config(
    vocab_size=32, hidden_size=8, state_size=4, num_hidden_layers=2, intermediate_size=8, time_step_rank=2
)


def small_mamba(seed: int = 0) -> Model:
    return Model("mamba", SMALL, builtin.init_weights("mamba", SMALL, seed), name=f"small-mamba-{seed}")


def batch(n: int, b: int = 2) -> np.ndarray:
    return np.random.default_rng(n).integers(0, SMALL.vocab_size, (b, n)).astype(np.int64)


def two_chunks(forward, model: Model, tokens: np.ndarray, cut: int):
    """Logits [B, T, V] and the final state tensors, prefilling tokens[:, :cut] then the rest from that state."""
    cfg, w = model.config, model.weights
    cache, logits = mamba.empty_cache(cfg, tokens.shape[0]), []
    for chunk in (tokens[:, :cut], tokens[:, cut:]):
        if chunk.shape[1]:
            out, cache = forward(NP, cfg, w, chunk, None, cache)
            logits.append(out)
    return np.concatenate(logits, axis=1), [t for pair in cache for t in pair]


def schedule_vs_reference(model: Model, tokens: np.ndarray, cut: int) -> float:
    """rel_err of the runtime schedule against the spec's reference: logits and every state tensor."""
    ref_logits, ref_state = two_chunks(mamba.forward, model, tokens, cut)
    run_logits, run_state = two_chunks(mamba_scan.forward, model, tokens, cut)
    return max([rel_err(run_logits, ref_logits)] + [rel_err(a, b) for a, b in zip(run_state, ref_state)])


@st.composite
def cases(draw):
    model = draw(models(("mamba",)))
    tokens = draw(token_batches(model.vocab_size))
    return model, tokens, draw(st.integers(0, tokens.shape[1]))


@pytest.mark.export("numeric-tolerance", "split-invariance")
@given(cases())
@example((small_mamba(1), batch(33), 0))  # past 32 tokens the pairing schedule's top rounds run: 1 at 33,
@example((small_mamba(2), batch(65), 31))  # 2 at 65 (a carried state from 31 tokens), 3 at 129
@example((small_mamba(3), batch(129, 3), 64))
def test_runtime_schedule_equals_the_spec_reference_at_l1(case):
    model, tokens, cut = case
    assert schedule_vs_reference(model, tokens, cut) <= FORMS["mamba"]


@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
def test_runtime_schedule_equals_the_spec_reference_at_scan_boundaries(n):
    assert schedule_vs_reference(small_mamba(n), batch(n), n // 2) <= FORMS["mamba"]


@pytest.mark.control("unrolled-eq-recurrent")
def test_a_mutated_top_round_is_caught_by_the_quick_profile(monkeypatch):
    """A top Hillis-Steele round that reads one row too far back (the catalogue's pairing-top-round-off-by-one):
    the top rounds run only past 32 tokens, so shorter sequences cannot see it; the @given test, under the active
    (default quick) profile, catches it."""
    for obj, attr, fn in MUTANTS["pairing-top-round-off-by-one"].patches():
        monkeypatch.setattr(obj, attr, fn)
    assert schedule_vs_reference(small_mamba(), batch(32), 16) <= FORMS["mamba"]  # 32 tokens: invisible
    with pytest.raises(AssertionError):
        test_runtime_schedule_equals_the_spec_reference_at_l1()


def test_negative_control_the_schedules_differ_in_bits():
    model, tokens = small_mamba(), batch(33)
    ref, _ = two_chunks(mamba.forward, model, tokens, 10)
    run, _ = two_chunks(mamba_scan.forward, model, tokens, 10)
    assert 0 < rel_err(run, ref) <= FORMS["mamba"]

"""Sampler laws (spec/sampler.py) over random logits, rands and settings, checked against an independent
scalar implementation of SPEC.md (tests/reference_sampler.py). The negative controls are the catalogue's sampling
mutants (edits of spec/sampler.py in lmstep/mutants.py), each caught by the same checks in test_spec_mutants.py."""

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from laws import HARD_CASES, check_laws, sampler_violations
from reference_sampler import reference_sample

from lmstep.spec import InputError, Sampler, load
from lmstep.spec import sampler as spec_sampler
from lmstep.spec.sampler import sample_one

F32 = np.float32

# Logits with ties, large spreads (so exp underflows to exactly 0) and masked (-inf) entries.
logit_values = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 2.5, -100.0, 50.0, float("-inf"), 3e38, -3e38]),
    st.floats(-30, 30, width=32),
)


@st.composite
def sampler_cases(draw):
    v = draw(st.integers(1, 24))
    z = np.array(draw(st.lists(logit_values, min_size=v, max_size=v)), np.float32)
    assume(np.isfinite(z).any())
    u = draw(st.one_of(st.sampled_from([0.0, 0.5, 1 - 2**-24]), st.integers(0, 2**24 - 1).map(lambda i: i / 2**24)))
    t = draw(st.sampled_from([0.0, 0.0, 1.0, 0.7, 2.0, 1e-3, 1e-30]))  # 1e-30: z / T overflows for |z| > 3.4e8
    k = draw(st.sampled_from([0, 0, 1, 2, 5, 40]))
    p = draw(st.sampled_from([1.0, 1.0, 0.9, 0.5, 0.1, 1e-6]))
    return z, u, Sampler(temperature=t, top_k=k, top_p=p)


SAMPLER_LAWS = ("sampler", "sampler-bracket", "sampler-keep-set", "sampler-no-zero-prob", "sampler-greedy")


@pytest.mark.law(*SAMPLER_LAWS)
@given(sampler_cases())
@settings(max_examples=300)
@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning"
)
@example((np.array([0.0, 0.0], np.float32), 0.5, Sampler(temperature=1.0)))  # exact boundary: c = [1, 2]
@example((np.array([-3e38], np.float32), 0.0, Sampler(temperature=0.7)))  # every z / T overflows to -inf: greedy
def test_sampler_laws_and_agreement_with_reference(case):
    z, u, s = case
    token = sample_one(z, u, s)
    assert check_laws(z, u, s, token) == []
    assert token == reference_sample(z, u, s.temperature, s.top_k, s.top_p)


@pytest.mark.law(*SAMPLER_LAWS)
def test_the_spec_passes_the_hard_cases():
    """Positive control of the sampling mutants' check (laws.sampler_violations): draws exactly on a bucket
    boundary, on the top-p threshold, at rank k, with ties, an overflowing z / T and u = 1 break no law."""
    assert sampler_violations(spec_sampler.sample) == set()
    assert len(HARD_CASES) >= 8


@pytest.mark.law("sampler-no-zero-prob")
@given(st.integers(0, 2**24 - 1), st.floats(1.0, float(np.finfo(np.float32).max), width=32))
def test_fallback_is_unreachable_with_float32_rands(bits, total):
    """Step 7 never fires for a spec rand: u = i / 2^24 < 1 and c_{m-1} >= e_0 = 1 give fl(u * c) < c, so
    some kept bucket always exceeds the target. (The rule exists for implementations whose target is computed
    differently; the catalogue's 'normalised-fallback-last' mutant shows why it must be explicit.)"""
    assert F32(F32(bits / 2**24) * F32(total)) < F32(total)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_invalid_settings_are_clear_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        load("tiny-llama", **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_logits_are_refused(bad):
    z = np.zeros(4, np.float32)
    z[2] = bad
    with pytest.raises(InputError, match="logits contain"):
        sample_one(z, 0.5, Sampler(temperature=1.0))


@pytest.mark.parametrize("u", [1.0, -0.1, 1 - 1e-9, float("nan")])
def test_rand_outside_unit_interval_is_refused(u):
    with pytest.raises(InputError, match="rand"):
        sample_one(np.zeros(4, np.float32), u, Sampler(temperature=1.0))


@pytest.mark.law("sampler-greedy")
def test_overflowing_temperature_is_greedy():
    """Found by the proofs work: T = 1e-30 with a logit of 3e38 used to make every e_r NaN and return the least
    likely token. SPEC.md §3 step 1 makes it the T -> 0 limit: greedy. (Without the rule: the catalogue's
    'no-overflow-rule' mutant, which picks token 3 here.)"""
    z = np.array([3e38, 1, 0, -1], np.float32)
    for top_p in (0.9, 1.0):
        assert sample_one(z, 0.5, Sampler(temperature=1e-30, top_p=top_p)) == 0
    assert reference_sample(z, 0.5, 1e-30, 0, 0.9) == 0

"""Sampler laws (spec/sampler.py) over random logits, rands and settings, checked against an independent
scalar implementation of SPEC.md (tests/reference_sampler.py); each law has a broken variant it catches."""

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from reference_sampler import reference_sample

from lmstep.spec import InputError, Sampler, load
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


def ranks(z, s: Sampler):
    """Descending order of z / T with ties by lower index, the kept-prefix size m, e and c (float32)."""
    y = z / F32(s.temperature if s.temperature else 1.0)
    order = sorted(range(len(z)), key=lambda i: (-float(y[i]), i))
    ys = np.array([y[i] for i in order], np.float32)
    k = len(z) if s.top_k == 0 else min(s.top_k, len(z))
    e = np.where(np.arange(len(z)) < k, np.exp(ys - ys[0]), F32(0)).astype(np.float32)
    return order, k, e, np.cumsum(e, dtype=np.float32)


def check_laws(z, u, s: Sampler, token: int) -> list[str]:
    """Every law of SPEC.md's sampler section that the chosen token must satisfy; returns the violations."""
    if not 0 <= token < len(z):
        return [f"token {token} outside vocabulary"]
    with np.errstate(over="ignore"):
        overflow = s.temperature > 0 and np.isinf((z / F32(s.temperature)).max())  # +inf, or -inf everywhere
    if s.temperature == 0 or overflow:
        top = int(np.flatnonzero(z == z.max())[0])
        return [] if token == top else [f"greedy chose {token}, lowest argmax is {top}"]
    order, k, e, c = ranks(z, s)
    threshold = F32(c[-1] * F32(s.top_p))
    m = k if s.top_p >= 1 else sum(1 for i in range(k) if (c[i - 1] if i else F32(0)) < threshold)
    r, bad = order.index(token), []
    if r >= m:
        bad.append(f"rank {r} outside the kept set (top-k {k}, top-p prefix {m})")
    if e[r] == 0:
        bad.append(f"zero-probability token {token} (rank {r})")
    prev, target = (c[r - 1] if r else F32(0)), F32(F32(u) * c[m - 1])
    if not prev <= target < c[r]:
        bad.append(f"rank {r} bucket [{prev}, {c[r]}) does not contain target {target}")
    return bad


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


# -- negative controls: broken readings of the spec that the same checks catch ------------------------------
BROKEN = {
    # (variant, input that exposes it)
    "greedy-last": (np.array([1.0, 3.0, 3.0], np.float32), 0.0, Sampler()),
    "top-p-inclusive": (np.array([0.0, 0.0, 0.0, 0.0], np.float32), 0.9, Sampler(temperature=1.0, top_p=0.5)),
    "bracket-inclusive": (np.array([0.0, 0.0], np.float32), 0.5, Sampler(temperature=1.0)),
    # 12 fl(1/12) sum to 0.9999999 < u, so the normalised sampler runs past its CDF onto a zero-probability token
    "normalised-fallback-last": (
        np.array([0.0] * 12 + [-200.0], np.float32),
        1 - 2**-24,
        Sampler(temperature=1.0),
    ),
}


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_broken_sampler_is_caught(variant):
    z, u, s = BROKEN[variant]
    broken = reference_sample(z, u, s.temperature, s.top_k, s.top_p, variant=variant)
    assert broken != sample_one(z, u, s) or check_laws(z, u, s, broken)
    assert broken != reference_sample(z, u, s.temperature, s.top_k, s.top_p)


@given(st.integers(0, 2**24 - 1), st.floats(1.0, float(np.finfo(np.float32).max), width=32))
def test_fallback_is_unreachable_with_float32_rands(bits, total):
    """Step 7 never fires for a spec rand: u = i / 2^24 < 1 and c_{m-1} >= e_0 = 1 give fl(u * c) < c, so
    some kept bucket always exceeds the target. (The rule exists for implementations whose target is computed
    differently; the negative control 'normalised-fallback-last' shows why it must be explicit.)"""
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


def test_overflowing_temperature_is_greedy():
    """Found by the proofs work: T = 1e-30 with a logit of 3e38 used to make every e_r NaN and return the least
    likely token. SPEC.md §3 step 0 makes it the T -> 0 limit: greedy."""
    z = np.array([3e38, 1, 0, -1], np.float32)
    for top_p in (0.9, 1.0):
        assert sample_one(z, 0.5, Sampler(temperature=1e-30, top_p=top_p)) == 0
    assert reference_sample(z, 0.5, 1e-30, 0, 0.9) == 0


def test_without_the_overflow_rule_the_least_likely_token_comes_out():
    """Negative control: the same computation without step 0's overflow branch picks token 3."""
    from lmstep.spec import sampler as sampler_mod
    from lmstep.spec.ops import NP

    src = __import__("inspect").getsource(sampler_mod.sample)
    broken_src = src.replace("token = o.where(o.squeeze(o.equal(o.sub(top, top), 0.0), -1), token, greedy)", "pass")
    assert broken_src != src
    ns = dict(sampler_mod.__dict__)
    exec(__import__("textwrap").dedent(broken_src), ns)
    z = np.array([[3e38, 1, 0, -1]], np.float32)
    with np.errstate(all="ignore"):
        assert int(ns["sample"](NP, z, np.array([0.5], np.float32), 1e-30, 0, 0.9)[0]) == 3

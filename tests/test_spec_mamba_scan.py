"""SPEC.md §7's unrolled Mamba scan, re-derived from the text alone, equals the spec's ``mamba._scan`` bit for bit.

``scan_from_spec_text`` below is written from §7's three numbered steps (read as a second implementer would, with
plain Python lists and numpy float32 scalars-by-array arithmetic, no op vocabulary), so a sentence of §7 that
does not pin the bracketing down would show up here as a bitwise difference. Inputs are random float32 elements
at the scan's power-of-two lengths and from random carried states. Negative control: the same comparison tells
apart a scan that is equal over the reals but brackets differently (the carried state applied after the rounds).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import BOUNDARY_LENGTHS

from lmstep.spec import NP, mamba


def scan_from_spec_text(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    """SPEC.md §7, steps 1-3: a, b [T, E, N] float32, carried state h [E, N] -> h_t [T, E, N]."""

    def combine(first, second):  # (a1, b1) . (a2, b2) = (a2 * a1, (a2 * b1) + b2), the earlier one first
        (a1, b1), (a2, b2) = first, second
        return a2 * a1, (a2 * b1) + b2

    T = len(a)
    x = [(a[0], (a[0] * h) + b[0])] + [(a[t], b[t]) for t in range(1, T)]  # step 1
    d = 1
    while d < T:  # step 2: a new sequence from the previous round's values
        x = [x[t] if t < d else combine(x[t - d], x[t]) for t in range(T)]
        d *= 2
    return np.stack([bt for _, bt in x])  # step 3


def spec_h(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    return mamba._scan(NP, a[None], b[None], h[None])[1][0]


def elements(seed: int, T: int, e: int = 3, n: int = 2):
    """Mamba-like float32 elements: decays in (0, 1], drives and state of either sign."""
    rng = np.random.default_rng(seed)
    a = np.exp(-rng.exponential(0.3, (T, e, n))).astype(np.float32)
    b = rng.standard_normal((T, e, n)).astype(np.float32)
    h = (rng.standard_normal((e, n)) * 3).astype(np.float32)
    return a, b, h


@given(st.sampled_from(BOUNDARY_LENGTHS) | st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_spec_text_reproduces_the_scan_bitwise(T, seed):
    a, b, h = elements(seed, T)
    want = spec_h(a, b, h)
    assert want.dtype == np.float32
    assert scan_from_spec_text(a, b, h).tobytes() == want.tobytes()


@pytest.mark.parametrize("T", BOUNDARY_LENGTHS)
def test_spec_text_reproduces_the_scan_bitwise_at_every_boundary(T):
    a, b, h = elements(T, T)
    assert scan_from_spec_text(a, b, h).tobytes() == spec_h(a, b, h).tobytes()


@given(st.sampled_from(BOUNDARY_LENGTHS), st.integers(0, 2**32 - 1))
def test_spec_text_reproduces_the_selective_scan(T, seed):
    """The elements too (§7: a_t = exp(A * dt_t[:, None]), b_t = (dt_t * u'_t)[:, None] * B_t[None, :]): the new
    state h_{T-1} from u, dt, A, B is bitwise the spec's; y_t = h_t C_t is a matrix-vector product, whose
    summation order §7 leaves to the implementation (as every matmul), so it is compared to float32 rounding."""
    rng = np.random.default_rng(seed)
    e, n = 6, 3
    u, B, C = (rng.standard_normal(shape).astype(np.float32) for shape in ((T, e), (T, n), (T, n)))
    dt = rng.exponential(0.5, (T, e)).astype(np.float32)
    A = -np.exp(rng.standard_normal((e, n))).astype(np.float32)
    h = rng.standard_normal((e, n)).astype(np.float32)
    a = np.stack([np.exp(A * dt[t][:, None]) for t in range(T)])
    b = np.stack([(dt[t] * u[t])[:, None] * B[t][None, :] for t in range(T)])
    hs = scan_from_spec_text(a, b, h)
    y, h_last = mamba.selective_scan(NP, u[None], dt[None], A, B[None], C[None], h[None])
    assert h_last[0].tobytes() == hs[-1].tobytes()
    want_y = np.stack([hs[t] @ C[t] for t in range(T)])
    assert np.allclose(y[0], want_y, rtol=1e-6, atol=1e-6 * np.abs(want_y).max())


def test_one_token_is_the_recurrent_update_bitwise():
    """T = 1: no rounds; h_0 is the recurrent form's own update (a_0 * h) + b_0."""
    a, b, h = elements(0, 1)
    assert spec_h(a, b, h).tobytes() == ((a[0] * h) + b[0])[None].tobytes()


def h0_after_the_rounds(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Equal over the reals, bracketed differently: scan from zero, then h_t += (a_t ... a_0) h."""
    zero = np.zeros_like(h)
    prods, hs = mamba._scan(NP, a[None], b[None], zero[None])
    return hs[0] + prods[0] * h


def test_negative_control_another_bracketing_is_caught():
    a, b, h = elements(1, 33)
    other = h0_after_the_rounds(a, b, h)
    assert np.allclose(other, spec_h(a, b, h), rtol=1e-5, atol=1e-5)  # the same numbers up to rounding...
    assert other.tobytes() != spec_h(a, b, h).tobytes()  # ...but not the same bits: the comparison sees it

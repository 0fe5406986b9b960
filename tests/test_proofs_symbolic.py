"""The symbolic interpretation is faithful: Z3Ops run on the spec and then evaluated at concrete inputs gives
numpy's answer bit for bit (IEEE and bit-vector domains), and its encodings (TopK, ArgMax, the -inf mask)
mean what the ONNX ops mean."""

from __future__ import annotations

import numpy as np
import pytest
import z3
from hypothesis import given
from hypothesis import strategies as st

from lmstep.proofs.domains import FLOAT16, FLOAT32, BitVec, fp_value
from lmstep.proofs.integers import IntNumpyOps
from lmstep.proofs.symbolic import NEG_INF, Z3Ops, term
from lmstep.runtime import mamba_scan
from lmstep.spec import layers, mamba
from lmstep.spec.ops import NP

T = 4
# The spec's reference scan (slices and concats) and the runtime's pairing schedule (gathers, where, max).
SCANS = {"reference": mamba._scan, "pairing": mamba_scan.scan}


def _scan_terms(dom, scan):
    o = Z3Ops(dom)
    a, b = o.var("a", (1, T, 1, 1)), o.var("b", (1, T, 1, 1))
    pa, pb = scan(o, a, b)
    return list(a.flat), list(b.flat), list(pa.flat) + list(pb.flat)


F32_TERMS = {name: _scan_terms(FLOAT32, scan) for name, scan in SCANS.items()}
F16_TERMS = {name: _scan_terms(FLOAT16, scan) for name, scan in SCANS.items()}
BV_TERMS = {name: _scan_terms(BitVec(16, "wrap"), scan) for name, scan in SCANS.items()}


def _evaluate(terms, values):
    a, b, outs = terms
    pairs = list(zip(a + b, values))
    return [z3.simplify(z3.substitute(t, *pairs)) for t in outs]


def _same_float(x, y):
    return np.asarray(x).tobytes() == np.asarray(y).tobytes() or (np.isnan(x) and np.isnan(y))


def _bit_patterns(dtype, bits):
    """Every bit pattern but NaN: normals, subnormals, zeros of both signs and infinities alike."""
    one = (
        st.integers(0, (1 << bits) - 1)
        .map(lambda b: np.array(b, f"uint{bits}").view(dtype))
        .filter(lambda x: not np.isnan(x))
    )
    return st.lists(one, min_size=2 * T, max_size=2 * T)


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize(
    "dom,dtype,bits,terms", [(FLOAT32, np.float32, 32, F32_TERMS), (FLOAT16, np.float16, 16, F16_TERMS)]
)
@given(data=st.data())
def test_ieee_scan_terms_evaluate_to_the_numpy_spec_bitwise(scan, dom, dtype, bits, terms, data):
    values = np.array(data.draw(_bit_patterns(dtype, bits)), dtype)
    got = [dtype(fp_value(v)) for v in _evaluate(terms[scan], [dom.const(float(x)) for x in values])]
    with np.errstate(all="ignore"):
        pa, pb = SCANS[scan](NP, values[:T].reshape(1, T, 1, 1), values[T:].reshape(1, T, 1, 1))
    want = list(pa.ravel()) + list(pb.ravel())
    assert all(_same_float(g, w) for g, w in zip(got, want)), (got, want)


@pytest.mark.parametrize("scan", SCANS)
@given(st.lists(st.integers(-(2**15), 2**15 - 1), min_size=2 * T, max_size=2 * T))
def test_wraparound_scan_terms_evaluate_to_int16_numpy(scan, xs):
    dom = BitVec(16, "wrap")
    got = [v.as_signed_long() for v in _evaluate(BV_TERMS[scan], [z3.BitVecVal(x, 16) for x in xs])]
    values = np.array(xs, np.int16)
    pa, pb = SCANS[scan](IntNumpyOps(dom), values[:T].reshape(1, T, 1, 1), values[T:].reshape(1, T, 1, 1))
    assert got == [int(v) for v in list(pa.ravel()) + list(pb.ravel())]


@given(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0]), min_size=5, max_size=5))
def test_topk_encoding_has_exactly_the_stable_descending_order(xs):
    o = Z3Ops(FLOAT32, shift="exact")
    x = o.var("x", (1, 5))
    _, idx = o.topk(x, 5)
    s = z3.Solver()
    s.add(*[f for _, f in o.facts], *[v == FLOAT32.const(c) for v, c in zip(x.flat, xs)])
    assert s.check() == z3.sat
    got = [s.model().eval(i).as_long() for i in idx.flat]
    assert got == list(NP.topk(np.array([xs], np.float32), 5)[1][0])
    s.add(z3.Or(*[i != g for i, g in zip(idx.flat, got)]))
    assert s.check() == z3.unsat  # the only permutation satisfying the encoding


@given(st.lists(st.sampled_from([-1.0, 0.0, 3.0]), min_size=4, max_size=4))
def test_argmax_picks_the_lowest_index_among_maxima(xs):
    o = Z3Ops(FLOAT32, shift="exact")
    x = o.var("x", (1, 4))
    i = term(o.argmax(x, axis=-1))
    value = z3.simplify(z3.substitute(i, *[(v, FLOAT32.const(c)) for v, c in zip(x.flat, xs)]))
    assert value.as_long() == int(np.argmax(xs))


def test_masked_is_minus_infinity_and_a_row_without_keys_stays_uniform():
    o = Z3Ops()
    assert term(o.const(layers.MASKED, np.float32)) is NEG_INF
    x = o.var("x", (1, 3))
    visible = np.array([[True, False, False]])
    p = layers.softmax(o, o.where(visible, x, o.const(layers.MASKED, np.float32)))
    assert [str(v) for v in p.flat[1:]] == ["0", "0"]  # exp(-inf - c) = 0 exactly
    blind = layers.softmax(o, o.where(np.zeros((1, 3), bool), x, o.const(layers.MASKED, np.float32)))
    s = z3.Solver()
    s.add(z3.Not(z3.And(*[v == z3.RealVal(1) / 3 for v in blind.flat])), *[f for _, f in o.facts])
    assert s.check() == z3.unsat  # MASKED - MASKED = 0, as in float32


def test_exp_lemmas_relate_shifted_rows():
    o = Z3Ops()
    x, c = o.var("x", (1, 2)), o.var("c")
    layers.softmax(o, o.add(x, c))
    labels = {label for label, _ in o.facts}
    assert {"exp > 0", "exp(a-b) exp(b) = exp(a)", "exp(a+b) = exp(a) exp(b)"} <= labels
    assert {label for label, _ in Z3Ops(exp="positive").facts} == set()

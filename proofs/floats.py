"""Floating point: where the real-number laws stop holding, found by Z3's IEEE 754 theory and replayed for real.

Over the reals the scan equals the recurrence (scan.py); in float32/float16/bfloat16 it does not, because
rounding makes + and * non-associative. Z3 finds concrete inputs; each is replayed through the numpy spec
(``mamba._scan(NP, ...)`` against the recurrence loop, ``NP.add`` both ways) and through onnxruntime, running
the same operation DAG. Also two float32 facts the sampler laws (proved over the reals) rely on.
Error *bounds* are not promised here: they do not close for float32 (docs/design.md §8), so tolerances are measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import z3

from lmstep.spec import mamba
from lmstep.spec.ops import NP

from . import scan
from .domains import BFLOAT16, FLOAT16, FLOAT32, Float
from .obligations import Obligation, Query, register
from .replay import replay_both
from .symbolic import Z3Ops, all_equal, term

FORMATS = (FLOAT32, FLOAT16, BFLOAT16)


def finite(*xs: Any) -> Any:
    return z3.And(*[z3.Not(z3.Or(z3.fpIsNaN(x), z3.fpIsInf(x))) for x in xs])


# -- (a + b) + c = a + (b + c) ----------------------------------------------------------------------------------
def _assoc_terms(dom: Float) -> tuple[Z3Ops, dict[str, Any], Any, Any]:
    o = Z3Ops(dom)
    v = {n: term(o.var(n)) for n in ("a", "b", "c")}
    left = term(o.add(o.add(v["a"], v["b"]), v["c"]))
    right = term(o.add(v["a"], o.add(v["b"], v["c"])))
    return o, v, left, right


def assoc_query(dom: Float) -> Query:
    o, v, left, right = _assoc_terms(dom)
    return Query(
        all_equal(o, left, right), [("finite inputs and results", finite(*v.values(), left, right))], o.checks, v
    )


def assoc_replay(dom: Float, model: dict[str, Any]) -> list[str]:
    _, v, left, right = _assoc_terms(dom)
    both = lambda x: (NP.add(NP.add(x["a"], x["b"]), x["c"]), NP.add(x["a"], NP.add(x["b"], x["c"])))  # noqa: E731
    return replay_both(dom, model, both, left, right, v, "(a+b)+c vs a+(b+c)")


# -- the spec's scan against the recurrence, T = 4 ----------------------------------------------------------------
T_FLOAT = 4


def _scan_terms(dom: Float) -> tuple[Z3Ops, dict[str, Any], Any, Any]:
    o = Z3Ops(dom)
    elems = scan.elements(o, T_FLOAT)
    parallel = term(scan.spec_scan(o, elems)[-1][1])
    sequential = term(scan.recurrence(o, elems)[-1][1])
    names = {f"a{t}": term(a) for t, (a, _) in enumerate(elems)} | {f"b{t}": term(b) for t, (_, b) in enumerate(elems)}
    return o, names, parallel, sequential


def scan_query(dom: Float) -> Query:
    """Realistic inputs - Mamba's decays exp(dt A) in [1/2, 1], drives |b| <= 1, normal or zero - so the
    counterexample is one a model could meet, not an overflow or subnormal corner. The decays lie on a 1/256
    grid: short significands keep the bit-blasted multipliers small (measured for float32: 3-15 s per seed
    instead of 6 s to over 30 s); a counterexample on the grid is still one in the full format."""
    o, v, parallel, sequential = _scan_terms(dom)
    half, one, grid = dom.const(0.5), dom.const(1.0), dom.const(256.0)

    def on_grid(x: Any) -> Any:
        scaled = z3.fpMul(dom.RNE, x, grid)
        return z3.fpEQ(z3.fpRoundToIntegral(dom.RNE, scaled), scaled)

    decays = z3.And(
        *[z3.And(z3.fpGEQ(x, half), z3.fpLEQ(x, one), on_grid(x)) for k, x in v.items() if k.startswith("a")]
    )
    drives = z3.And(
        *[
            z3.And(z3.fpLEQ(z3.fpAbs(x), one), z3.Or(z3.fpIsNormal(x), z3.fpIsZero(x)))
            for k, x in v.items()
            if k.startswith("b")
        ]
    )
    assume = [("1/2 <= a_t <= 1, multiples of 1/256", decays), ("|b_t| <= 1, normal or 0", drives)]
    return Query(all_equal(o, parallel, sequential), assume, o.checks, v, attempt_s=8.0)


def scan_replay(dom: Float, model: dict[str, Any]) -> list[str]:
    _, v, parallel, sequential = _scan_terms(dom)

    def both(x: dict[str, np.ndarray]) -> tuple[Any, Any]:
        a = np.stack([x[f"a{t}"] for t in range(T_FLOAT)]).reshape(1, T_FLOAT, 1, 1)
        b = np.stack([x[f"b{t}"] for t in range(T_FLOAT)]).reshape(1, T_FLOAT, 1, 1)
        h = np.zeros((), a.dtype)
        for t in range(T_FLOAT):  # the recurrence of mamba._mixer_step, from the zero state
            h = NP.add(NP.mul(a[0, t, 0, 0], h), b[0, t, 0, 0])
        return mamba._scan(NP, a, b)[1][0, -1, 0, 0], h

    return replay_both(dom, model, both, parallel, sequential, v, f"mamba._scan vs recurrence, h_{T_FLOAT - 1}")


# -- float32 facts behind the sampler's laws -----------------------------------------------------------------
def cdf_monotone_query(dom: Float, nonneg_e: bool = True) -> Query:
    """The spec's CumSum step c' = c + e with c, e >= 0: c' >= c, and c' == c exactly when e == 0."""
    o = Z3Ops(dom)
    c, e = term(o.var("c")), term(o.var("e"))
    c2 = term(o.cumsum(np.array([c, e], dtype=object), axis=0)[1])
    zero = dom.const(0.0)
    assume = z3.And(finite(c, e), z3.fpGEQ(c, zero), *([z3.fpGEQ(e, zero)] if nonneg_e else []))
    goal = z3.And(z3.fpGEQ(c2, c), z3.Implies(z3.fpIsZero(e), z3.fpEQ(c2, c)))
    return Query(goal, [("finite c >= 0, e" + (" >= 0" if nonneg_e else ""), assume)], o.checks, {"c": c, "e": e})


def target_query(dom: Float, u_le_1: bool = False) -> Query:
    """The sampler's target u * total stays below total for every u < 1 (total >= 1, as e_0 = exp(0) = 1)."""
    o = Z3Ops(dom)
    u, total = term(o.var("u")), term(o.var("total"))
    target = term(o.mul(u, total))
    one = dom.const(1.0)
    assume = z3.And(
        finite(u, total), z3.fpGEQ(u, dom.const(0.0)), (z3.fpLEQ if u_le_1 else z3.fpLT)(u, one), z3.fpGEQ(total, one)
    )
    label = "0 <= u " + ("<=" if u_le_1 else "<") + " 1, finite total >= 1"
    return Query(z3.fpLT(target, total), [(label, assume)], o.checks, {"u": u, "total": total}, bitblast=not u_le_1)


# -- the registry -----------------------------------------------------------------------------------------
for dom in FORMATS:
    fmt = dom.name
    register(
        Obligation(
            f"floats/add-assoc-{fmt}",
            "floats",
            f"{fmt} addition is associative (it is not: Z3 finds a, b, c)",
            f"{fmt}, RNE; finite inputs and results",
            "3 scalars",
            "spec: the ops vocabulary's add (Z3Ops over IEEE)",
            "refuted",
            lambda dom=dom: assoc_query(dom),
            replay=lambda m, dom=dom: assoc_replay(dom, m),
            law="numeric-tolerance",
        )
    )
    register(
        Obligation(
            f"floats/scan-vs-recurrence-{fmt}",
            "floats",
            f"in {fmt}, mamba._scan equals the sequential recurrence (it does not)",
            f"{fmt}, RNE, no FMA; decays a_t in [1/2, 1] (1/256 grid), |b_t| <= 1",
            f"T={T_FLOAT}, scalar",
            "spec: mamba._scan",
            "refuted",
            lambda dom=dom: scan_query(dom),
            replay=lambda m, dom=dom: scan_replay(dom, m),
            timeout_s=120,
            law="numeric-tolerance",
        )
    )
register(
    Obligation(
        "floats/cdf-add-monotone-float32",
        "floats",
        "a float32 CumSum step c + e (c, e >= 0) never decreases, and adds exactly 0 for e = 0",
        "float32, RNE; finite c >= 0, e >= 0",
        "one step (covers every step of the sampler's CDF)",
        "spec: Z3Ops.cumsum",
        "proved",
        lambda: cdf_monotone_query(FLOAT32),
        law="sampler-no-zero-prob",
    )
)
register(
    Obligation(
        "floats/cdf-add-monotone-float32~negative-e",
        "floats",
        "mutant: without e >= 0 the CDF can decrease",
        "float32; finite c >= 0, any finite e",
        "one step",
        "spec: Z3Ops.cumsum",
        "refuted",
        lambda: cdf_monotone_query(FLOAT32, nonneg_e=False),
        mutant_of="floats/cdf-add-monotone-float32",
    )
)
for dom in FORMATS:
    fmt = dom.name
    register(
        Obligation(
            f"floats/target-below-total-{fmt}",
            "floats",
            f"u * total < total in {fmt} for 0 <= u < 1: the sampler's fallback needs u = 1",
            f"{fmt}, RNE; finite total >= 1",
            "scalars",
            "spec: Z3Ops.mul",
            "proved",
            lambda dom=dom: target_query(dom),
            law="sampler-no-zero-prob",
            long=dom is FLOAT32,
            timeout_s=300 if dom is FLOAT32 else 60,
        )
    )  # float32: 6 s to > 120 s by seed
    register(
        Obligation(
            f"floats/target-below-total-{fmt}~u-le-1",
            "floats",
            "mutant: with u = 1 allowed, the target reaches the total",
            f"{fmt}; 0 <= u <= 1",
            "scalars",
            "spec: Z3Ops.mul",
            "refuted",
            lambda dom=dom: target_query(dom, u_le_1=True),
            mutant_of=f"floats/target-below-total-{fmt}",
        )
    )

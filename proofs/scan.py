"""The selective-scan laws (Mamba, Gu & Dao 2023, §3.3 "parallel scan"; Blelloch 1990; Hillis & Steele 1986).

The recurrence h_t = a_t h_{t-1} + b_t (mamba._mixer_step: ``h = decay * h + drive``) is a fold of the operator
    (a1, b1) . (a2, b2) = (a2 a1, a2 b1 + b2)
and any scan of it equals the recurrence because the operator is associative. The operator used here is the
spec's own: :func:`combine` runs ``mamba._scan`` on a two-element sequence, whose last element is exactly
(x . y), so a change to ``_scan`` changes every law below. Two scans are run as they are, at their true lengths:
the spec's reference (``mamba._scan``: Hillis-Steele rounds, SPEC.md §7; the ``scan/reference-*`` obligations)
and the schedule of the exported graph (``lmstep.runtime.mamba_scan.scan``: a Ladner-Fischer pairing up/down-sweep
with Hillis-Steele rounds on its short top; ``scan/pairing-*``). Blelloch's tree scan and a whole Hillis-Steele
scan are written here over the spec's combine (other schedules an engine may use).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import z3

from lmstep.runtime import mamba_scan
from lmstep.spec import mamba

from .domains import Real
from .obligations import Obligation, Query, catalogue, register
from .symbolic import Z3Ops, all_equal

Pair = tuple[np.ndarray, np.ndarray]  # (a, b), each [E, N]: one scan element (a diagonal transition)

SCHEDULE = "lmstep.runtime.mamba_scan"


def swapped_scan() -> Callable[..., Any]:
    """mamba._scan with b_prev and b exchanged in the combine: (a1,b1).(a2,b2) = (a2 a1, a2 b2 + b1) (the mutant
    catalogue's scan-swapped)."""
    return catalogue("scan-swapped", "mamba._scan")


def pairing_scan(o: Any, a: Any, b: Any, h0: Any = None) -> Any:
    """The exported graph's schedule, ``mamba_scan.scan``, looked up at call time (so a test can patch it)."""
    return mamba_scan.scan(o, a, b, h0)


def swapped_pairing_scan() -> Callable[..., Any]:
    """mamba_scan.scan with the same operand swap in its combine (the catalogue's pairing-swapped)."""
    return catalogue("pairing-swapped", f"{SCHEDULE}.scan")


def spec_scan(o: Any, elems: list[Pair], scan: Callable[..., Any] | None = None, h0: Any = None) -> list[Pair]:
    """The spec's inclusive scan (``mamba._scan``, looked up at call time) over a list of [E, N] elements, from
    the state h0 [E, N] when given (the product part then starts from 1 as without it)."""
    scan = scan or mamba._scan
    a = np.stack([x[0] for x in elems])[None]  # [1, T, E, N]
    b = np.stack([x[1] for x in elems])[None]
    pa, pb = scan(o, a, b) if h0 is None else scan(o, a, b, np.asarray(h0)[None])
    return [(pa[0, t], pb[0, t]) for t in range(len(elems))]


def combine(o: Any, x: Pair, y: Pair, scan: Callable[..., Any] | None = None) -> Pair:
    """x . y as the spec computes it: the last element of its scan of [x, y]."""
    return spec_scan(o, [x, y], scan)[-1]


def recurrence(o: Any, elems: list[Pair], h0: Any = 0.0) -> list[Pair]:
    """The sequential recurrence of mamba._mixer_step: (prod a, h_t = a_t h_{t-1} + b_t) for every t."""
    out, p, h = [], None, h0
    for a, b in elems:
        p = a if p is None else o.mul(a, p)
        h = o.add(o.mul(a, h), b)
        out.append((p, h))
    return out


def elements(o: Z3Ops, n: int, shape: tuple[int, ...] = (1, 1), stem: str = "") -> list[Pair]:
    return [(o.var(f"{stem}a{t}", shape), o.var(f"{stem}b{t}", shape)) for t in range(n)]


def pairs_equal(o: Z3Ops, xs: list[Pair], ys: list[Pair]) -> Any:
    return z3.And(*[z3.And(all_equal(o, x[0], y[0]), all_equal(o, x[1], y[1])) for x, y in zip(xs, ys)])


def _query(o: Z3Ops, goal: Any, inputs: dict[str, Any], label: str = "") -> Query:
    return Query(goal, o.facts, o.checks, inputs, label=label)


def _inputs(elems: list[Pair]) -> dict[str, Any]:
    return {"a": [x[0] for x in elems], "b": [x[1] for x in elems]}


# -- associativity ---------------------------------------------------------------------------------------------
def assoc_query(shape: tuple[int, ...], scan: Callable[..., Any] | None = None) -> Query:
    o = Z3Ops(Real())
    x, y, z = elements(o, 3, shape)
    left = combine(o, combine(o, x, y, scan), z, scan)
    right = combine(o, x, combine(o, y, z, scan), scan)
    return _query(o, pairs_equal(o, [left], [right]), _inputs([x, y, z]))


def matrix_assoc_query(n: int, commuted: bool = False) -> Query:
    """(A1, b1) . (A2, b2) = (A2 A1, A2 b1 + b2) with full n x n matrices (restated: the spec's A is diagonal)."""
    o = Z3Ops(Real())
    elems = [(o.var(f"A{i}", (n, n)), o.var(f"b{i}", (n, 1))) for i in range(3)]

    def op(x: Pair, y: Pair) -> Pair:
        first = o.matmul(x[0], y[0]) if commuted else o.matmul(y[0], x[0])
        return first, o.add(o.matmul(y[0], x[1]), y[1])

    x, y, z = elems
    return _query(o, pairs_equal(o, [op(op(x, y), z)], [op(x, op(y, z))]), _inputs(elems))


# -- bounded scans ----------------------------------------------------------------------------------------
def bracketings(xs: list[Any], op: Callable[[Any, Any], Any]) -> list[Any]:
    """Every way to parenthesise the fold of xs (Catalan(len - 1) of them)."""
    if len(xs) == 1:
        return [xs[0]]
    out = []
    for cut in range(1, len(xs)):
        for left, right in itertools.product(bracketings(xs[:cut], op), bracketings(xs[cut:], op)):
            out.append(op(left, right))
    return out


def brackets_query(n: int, scan: Callable[..., Any] | None = None) -> Query:
    o = Z3Ops(Real())
    elems = elements(o, n)
    last = recurrence(o, elems)[-1]
    memo: dict[tuple[int, int], Pair] = {}

    def op(x: Pair, y: Pair) -> Pair:  # memoised on identity: the same sub-bracketing is built once
        key = (id(x), id(y))
        if key not in memo:
            memo[key] = combine(o, x, y, scan)
        return memo[key]

    trees = bracketings(elems, op)
    return _query(o, z3.And(*[pairs_equal(o, [t], [last]) for t in trees]), _inputs(elems))


def spec_scan_query(n: int, shape: tuple[int, ...] = (1, 1), scan: Callable[..., Any] | None = None) -> Query:
    o = Z3Ops(Real())
    elems = elements(o, n, shape)
    return _query(o, pairs_equal(o, spec_scan(o, elems, scan), recurrence(o, elems)), _inputs(elems))


def hillis_steele(elems: list[Pair], op: Callable[[Pair, Pair], Pair], stride: int = 2) -> list[Pair]:
    """Hillis & Steele's scan (1986): in the round with distance d every element t >= d becomes x[t-d] . x[t]."""
    x, d = list(elems), 1
    while d < len(x):
        x = [x[t] if t < d else op(x[t - d], x[t]) for t in range(len(x))]
        d *= stride
    return x


def hillis_steele_query(n: int, stride: int = 2) -> Query:
    o = Z3Ops(Real())
    elems = elements(o, n)
    out = hillis_steele(elems, lambda x, y: combine(o, x, y), stride)
    return _query(o, pairs_equal(o, out, recurrence(o, elems)), _inputs(elems))


def blelloch(o: Any, elems: list[Pair], op: Callable[[Pair, Pair], Pair], swap_down: bool = False) -> list[Pair]:
    """Blelloch's work-efficient scan (1990, §1.2): up-sweep to a reduction tree, down-sweep of exclusive prefixes,
    then one combine per element for the inclusive result. The down-sweep keeps time order (prefix . left sum)
    because the operator does not commute. len(elems) must be a power of two."""
    n = len(elems)
    if n & (n - 1):
        raise ValueError("Blelloch's tree scan needs a power-of-two length")
    x = list(elems)
    d = 1
    while d < n:  # up-sweep: x[i] becomes the sum of its subtree
        for i in range(2 * d - 1, n, 2 * d):
            x[i] = op(x[i - d], x[i])
        d *= 2
    shape = np.shape(elems[0][0])
    x[n - 1] = (o.const(np.ones(shape, np.float32)), o.const(np.zeros(shape, np.float32)))  # the identity (1, 0)
    d = n // 2
    while d >= 1:  # down-sweep: a left child gets its parent's prefix, a right child prefix . left sum
        for i in range(2 * d - 1, n, 2 * d):
            left_sum, prefix = x[i - d], x[i]
            x[i - d] = prefix
            x[i] = op(left_sum, prefix) if swap_down else op(prefix, left_sum)
        d //= 2
    return [op(x[i], elems[i]) for i in range(n)]


def blelloch_query(n: int, swap_down: bool = False) -> Query:
    o = Z3Ops(Real())
    elems = elements(o, n)
    out = blelloch(o, elems, lambda x, y: combine(o, x, y), swap_down)
    return _query(o, pairs_equal(o, out, recurrence(o, elems)), _inputs(elems))


# -- all T, by induction ---------------------------------------------------------------------------------------
def initial_state_query(n: int, scan: Callable[..., Any] | None = None) -> Query:
    """``scan(o, a, b, h0)`` (default ``mamba._scan``) equals the recurrence from h0 at every t: the
    prefill-after-cache path. The reference folds h0 into the first element; the pairing schedule puts (1, h0)
    in front of its down-sweep, so every prefix starts from the carried state."""
    o = Z3Ops(Real())
    elems = elements(o, n)
    h0 = o.var("h0", (1, 1))
    a = np.stack([x[0] for x in elems])[None]
    b = np.stack([x[1] for x in elems])[None]
    _, h = (scan or mamba._scan)(o, a, b, h0[None])
    want = recurrence(o, elems, h0)
    goal = z3.And(*[all_equal(o, h[0, t], want[t][1]) for t in range(n)])
    return _query(o, goal, {**_inputs(elems), "h0": h0})


def closed_form_queries(drop_lemma: bool = False) -> list[Query]:
    """h_t = sum_{s<=t} (prod_{s<r<=t} a_r) b_s for all t >= 0, restated as algebra (a sum over a symbolic range
    cannot run through the spec). Definitions, instantiated where the proof uses them:
        W(t,t) = 1,  W(s,t+1) = a(t+1) W(s,t)          (the weight prod_{s<r<=t} a_r)
        F(-1,t) = 0, F(n,t) = F(n-1,t) + W(n,t) b(n)    (the partial sum up to n)
        h(-1) = 0,   h(t) = a(t) h(t-1) + b(t)          (the recurrence)
    Lemma (induction on n): F(n,t+1) = a(t+1) F(n,t) for n <= t. Theorem (induction on t): F(t,t) = h(t)."""
    I, R = z3.IntSort(), z3.RealSort()
    a, b, h = (z3.Function(n, I, R) for n in ("a", "b", "h"))
    W, F = z3.Function("W", I, I, R), z3.Function("F", I, I, R)
    n, t = z3.Ints("n t")
    lemma_base = Query(
        F(-1, t + 1) == a(t + 1) * F(-1, t),
        [("F(-1,t) = 0", z3.And(F(-1, t) == 0, F(-1, t + 1) == 0))],
        label="lemma base n=-1",
    )
    lemma_step = Query(
        F(n + 1, t + 1) == a(t + 1) * F(n + 1, t),
        [
            ("n + 1 <= t", z3.And(n >= -1, n + 1 <= t)),
            ("lemma hypothesis F(n,t+1) = a(t+1) F(n,t)", F(n, t + 1) == a(t + 1) * F(n, t)),
            (
                "def F at n+1",
                z3.And(
                    F(n + 1, t + 1) == F(n, t + 1) + W(n + 1, t + 1) * b(n + 1),
                    F(n + 1, t) == F(n, t) + W(n + 1, t) * b(n + 1),
                ),
            ),
            ("def W at (n+1, t+1)", W(n + 1, t + 1) == a(t + 1) * W(n + 1, t)),
        ],
        label="lemma step n -> n+1",
    )
    base = Query(
        F(0, 0) == h(0),
        [
            ("def F at 0", z3.And(F(-1, 0) == 0, F(0, 0) == F(-1, 0) + W(0, 0) * b(0))),
            ("W(0,0) = 1", W(0, 0) == 1),
            ("def h at 0", z3.And(h(-1) == 0, h(0) == a(0) * h(-1) + b(0))),
        ],
        label="base t=0",
    )
    step_facts = [
        ("t >= 0", t >= 0),
        ("induction hypothesis F(t,t) = h(t)", F(t, t) == h(t)),
        ("def F at t+1", F(t + 1, t + 1) == F(t, t + 1) + W(t + 1, t + 1) * b(t + 1)),
        ("W(t+1,t+1) = 1", W(t + 1, t + 1) == 1),
        ("def h at t+1", h(t + 1) == a(t + 1) * h(t) + b(t + 1)),
    ]
    if not drop_lemma:
        step_facts.append(("lemma at n = t", F(t, t + 1) == a(t + 1) * F(t, t)))
    inputs = {"t": t, "a(t+1)": a(t + 1), "h(t)": h(t), "F(t,t+1)": F(t, t + 1)}
    step = Query(F(t + 1, t + 1) == h(t + 1), step_facts, inputs=inputs, label="step t -> t+1")
    return [step] if drop_lemma else [lemma_base, lemma_step, base, step]


# -- the registry -----------------------------------------------------------------------------------------
REAL = "the reals (exact)"
register(
    Obligation(
        "scan/combine-assoc-scalar",
        "scan",
        "the spec's combine is associative: (x.y).z = x.(y.z)",
        REAL,
        "scalar elements",
        "spec: mamba._scan on 2 elements",
        "proved",
        lambda: assoc_query((1, 1)),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/combine-assoc-diagonal",
        "scan",
        "the spec's combine is associative for diagonal transitions",
        REAL,
        "elements [E=2, N=2] (a 4x4 diagonal A)",
        "spec: mamba._scan on 2 elements",
        "proved",
        lambda: assoc_query((2, 2)),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/combine-assoc-diagonal~swapped",
        "scan",
        "mutant: the swapped _scan is not associative for diagonal transitions",
        REAL,
        "elements [2, 2]",
        "spec: mutated mamba._scan",
        "refuted",
        lambda: assoc_query((2, 2), swapped_scan()),
        mutant_of="scan/combine-assoc-diagonal",
        mutant="scan-swapped",
    )
)
register(
    Obligation(
        "scan/combine-assoc-matrix",
        "scan",
        "(A1,b1).(A2,b2) = (A2 A1, A2 b1 + b2) is associative for full matrices",
        REAL,
        "3x3 matrices",
        "algebra: the spec's transition is diagonal (elementwise), full matrices are not in it",
        "proved",
        lambda: matrix_assoc_query(3),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/combine-assoc-matrix~commuted",
        "scan",
        "mutant: A1 A2 instead of A2 A1 is not associative",
        REAL,
        "3x3 matrices",
        "algebra",
        "refuted",
        lambda: matrix_assoc_query(3, commuted=True),
        mutant_of="scan/combine-assoc-matrix",
    )
)
register(
    Obligation(
        "scan/combine-assoc~swapped",
        "scan",
        "mutant: _scan with b and b_prev swapped is not associative",
        REAL,
        "scalar elements",
        "spec: mutated mamba._scan",
        "refuted",
        lambda: assoc_query((1, 1), swapped_scan()),
        mutant_of="scan/combine-assoc-scalar",
        mutant="scan-swapped",
    )
)
register(
    Obligation(
        "scan/brackets-T6",
        "scan",
        "every bracketing of the fold equals the sequential recurrence",
        REAL,
        "T=6: all 42 bracketings",
        "spec: mamba._scan as combine",
        "proved",
        lambda: brackets_query(6),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/brackets~swapped",
        "scan",
        "mutant: with the swapped _scan as combine, bracketings differ from the recurrence",
        REAL,
        "T=4: all 5 bracketings",
        "spec: mutated mamba._scan as combine",
        "refuted",
        lambda: brackets_query(4, swapped_scan()),
        mutant_of="scan/brackets-T6",
        mutant="scan-swapped",
    )
)
register(
    Obligation(
        "scan/reference-T64",
        "scan",
        "mamba._scan (the spec's Hillis-Steele reference) equals the sequential recurrence at every t",
        REAL,
        "T=64, scalar",
        "spec: mamba._scan",
        "proved",
        lambda: spec_scan_query(64),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/reference~rounds-capped",
        "scan",
        "mutant: the reference with its rounds stopped at distance 16 (written for 32 tokens) differs",
        REAL,
        "T=64, scalar",
        "spec: mutated mamba._scan",
        "refuted",
        lambda: spec_scan_query(64, scan=catalogue("scan-rounds-capped", "mamba._scan")),
        mutant_of="scan/reference-T64",
        mutant="scan-rounds-capped",
    )
)
register(
    Obligation(
        "scan/reference-T128-diagonal",
        "scan",
        "mamba._scan equals the recurrence, diagonal elements",
        REAL,
        "T=128, elements [2, 2]",
        "spec: mamba._scan",
        "proved",
        lambda: spec_scan_query(128, (2, 2)),
        timeout_s=120,
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/reference-diagonal~swapped",
        "scan",
        "mutant: the swapped mamba._scan differs from the recurrence, diagonal elements",
        REAL,
        "T=8, elements [2, 2]",
        "spec: mutated mamba._scan",
        "refuted",
        lambda: spec_scan_query(8, (2, 2), swapped_scan()),
        mutant_of="scan/reference-T128-diagonal",
        mutant="scan-swapped",
    )
)
register(
    Obligation(
        "scan/reference-lengths",
        "scan",
        "mamba._scan equals the recurrence at every length 1..33 (every round count up to 6)",
        REAL,
        "T=1..33, scalar",
        "spec: mamba._scan",
        "proved",
        lambda: [spec_scan_query(n) for n in range(1, 34)],
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/reference-lengths~swapped",
        "scan",
        "mutant: mamba._scan with b and b_prev swapped differs from the recurrence",
        REAL,
        "T=1..4, scalar",
        "spec: mutated mamba._scan",
        "refuted",
        lambda: [spec_scan_query(n, scan=swapped_scan()) for n in range(1, 5)],
        mutant_of="scan/reference-lengths",
        mutant="scan-swapped",
    )
)
register(
    Obligation(
        "scan/pairing-T64",
        "scan",
        "mamba_scan.scan (the exported graph's pairing scan) equals the sequential recurrence at every t",
        REAL,
        "T=64, scalar",
        "runtime: lmstep.runtime.mamba_scan.scan (op vocabulary, run on Z3 terms)",
        "proved",
        lambda: spec_scan_query(64, scan=pairing_scan),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/pairing-T128-diagonal",
        "scan",
        "mamba_scan.scan equals the recurrence, diagonal elements",
        REAL,
        "T=128, elements [2, 2]",
        "runtime: lmstep.runtime.mamba_scan.scan",
        "proved",
        lambda: spec_scan_query(128, (2, 2), pairing_scan),
        timeout_s=120,
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/pairing-odd-lengths",
        "scan",
        "mamba_scan.scan equals the recurrence at every length 1..33 (odd padding, all levels)",
        REAL,
        "T=1..33, scalar",
        "runtime: lmstep.runtime.mamba_scan.scan",
        "proved",
        lambda: [spec_scan_query(n, scan=pairing_scan) for n in range(1, 34)],
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/pairing-odd-lengths~last-pair-padded",
        "scan",
        "mutant: a plan that pads the last pair of an even length "
        "with the identity (drops x_T-1) differs from the recurrence",
        REAL,
        "T=1..4, scalar",
        "runtime: mutated mamba_scan.scan_plan",
        "refuted",
        lambda: [
            spec_scan_query(n, scan=catalogue("pairing-last-pair-padded", f"{SCHEDULE}.scan")) for n in range(1, 5)
        ],
        mutant_of="scan/pairing-odd-lengths",
        mutant="pairing-last-pair-padded",
    )
)
register(
    Obligation(
        "scan/pairing~swapped",
        "scan",
        "mutant: mamba_scan.scan with b and b_prev swapped differs from the recurrence",
        REAL,
        "T=8, scalar",
        "runtime: mutated mamba_scan.scan",
        "refuted",
        lambda: spec_scan_query(8, scan=swapped_pairing_scan()),
        mutant_of="scan/pairing-T64",
        mutant="pairing-swapped",
    )
)
register(
    Obligation(
        "scan/pairing-diagonal~swapped",
        "scan",
        "mutant: the swapped mamba_scan.scan differs from the recurrence, diagonal elements",
        REAL,
        "T=8, elements [2, 2]",
        "runtime: mutated mamba_scan.scan",
        "refuted",
        lambda: spec_scan_query(8, (2, 2), swapped_pairing_scan()),
        mutant_of="scan/pairing-T128-diagonal",
        mutant="pairing-swapped",
    )
)
register(
    Obligation(
        "scan/pairing-initial-state",
        "scan",
        "mamba_scan.scan from a carried state h0 equals the recurrence from h0 at every t",
        REAL,
        "T=1..17, scalar, h0 symbolic",
        "runtime: lmstep.runtime.mamba_scan.scan(a, b, h0)",
        "proved",
        lambda: [initial_state_query(n, pairing_scan) for n in range(1, 18)],
        law="split-invariance",
    )
)
register(
    Obligation(
        "scan/pairing-initial-state~undecayed",
        "scan",
        "mutant: h0 put in front of the down-sweep without its decay differs from the recurrence",
        REAL,
        "T=1..4",
        "runtime: mutated mamba_scan.scan",
        "refuted",
        lambda: [initial_state_query(n, catalogue("pairing-h0-undecayed", f"{SCHEDULE}.scan")) for n in range(1, 5)],
        mutant_of="scan/pairing-initial-state",
        mutant="pairing-h0-undecayed",
    )
)
register(
    Obligation(
        "scan/hillis-steele-T64",
        "scan",
        "Hillis-Steele over the spec's combine equals the recurrence",
        REAL,
        "T=64, scalar",
        "spec: mamba._scan as combine; the rounds are written here",
        "proved",
        lambda: hillis_steele_query(64),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/hillis-steele~stride-3",
        "scan",
        "mutant: Hillis-Steele with distances 1, 3, 9, ... differs from the recurrence",
        REAL,
        "T=8, scalar",
        "spec: mamba._scan as combine",
        "refuted",
        lambda: hillis_steele_query(8, stride=3),
        mutant_of="scan/hillis-steele-T64",
    )
)
register(
    Obligation(
        "scan/blelloch-T64",
        "scan",
        "Blelloch's up/down-sweep scan over the spec's combine equals the recurrence",
        REAL,
        "T=64, scalar",
        "spec: mamba._scan as combine; the sweep itself is written here",
        "proved",
        lambda: blelloch_query(64),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/blelloch~down-sweep-order",
        "scan",
        "mutant: down-sweep as (left sum . prefix) differs from the recurrence",
        REAL,
        "T=8, scalar",
        "spec: mamba._scan as combine",
        "refuted",
        lambda: blelloch_query(8, swap_down=True),
        mutant_of="scan/blelloch-T64",
    )
)
register(
    Obligation(
        "scan/initial-state",
        "scan",
        "mamba._scan from a carried state h0 equals the recurrence from h0 at every t",
        REAL,
        "T=1..17, scalar, h0 symbolic",
        "spec: mamba._scan(a, b, h0)",
        "proved",
        lambda: [initial_state_query(n) for n in range(1, 18)],
        law="split-invariance",
    )
)
register(
    Obligation(
        "scan/initial-state~undecayed",
        "scan",
        "mutant: h0 added to the first drive without its decay differs from the recurrence",
        REAL,
        "T=1..4",
        "spec: mutated mamba._scan",
        "refuted",
        lambda: [initial_state_query(n, catalogue("scan-h0-undecayed", "mamba._scan")) for n in range(1, 5)],
        mutant_of="scan/initial-state",
        mutant="scan-h0-undecayed",
    )
)
register(
    Obligation(
        "scan/closed-form",
        "scan",
        "h_t = sum_{s<=t} (prod_{s<r<=t} a_r) b_s for all t",
        REAL,
        "all T (induction on t, with a lemma by induction on n)",
        "algebra: a sum over a symbolic range",
        "proved",
        closed_form_queries,
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "scan/closed-form~dropped-lemma",
        "scan",
        "mutant: the step without the linearity lemma is not provable",
        REAL,
        "all T (step)",
        "algebra",
        "refuted",
        lambda: closed_form_queries(drop_lemma=True),
        mutant_of="scan/closed-form",
    )
)

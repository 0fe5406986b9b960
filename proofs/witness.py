"""Countermodels found by concrete evaluation and checked by Z3, so a refutation does not hang on a search.

A universal law is refuted by *one* model of its assumptions and negated goal. Z3 finds one by search, and for
some queries that search is heavy-tailed: the whole-model mutants mix nonlinear real arithmetic with
uninterpreted functions (exp, sqrt, ...), a combination Z3 has no decision procedure for, and
``model/llama-prefill-eq-decode~scale`` went from seconds to past its 120 s limit on one machine, with every
z3 version tried. A model is easy to *check*, though, so before (and after) the search the runner tries cheap
candidates:

- every free constant gets a concrete value: 0 first (the natural value of a fresh term such as a softmax
  shift, which symbolic.py leaves unconstrained), then small random values of its sort;
- every application of an uninterpreted real function gets the value of the real function it stands for
  (exp, sqrt, tanh, ...) at its argument's value, rounded to a float64 and taken as an exact rational; the
  argument is evaluated by Z3 (substitution and simplification), and applications to equal arguments get equal
  values, so the values define a function, as the theory requires;
- Z3 then evaluates every assumption and the claim with all these values substituted: ground arithmetic on
  exact rationals (or IEEE/bit-vector numerals), which its simplifier reduces to true or false.

If all of them are true, the candidate *is* a model: the verdict is as sound as a model Z3 found itself (it
only relies on Z3's ground evaluation). Where no candidate passes (e.g. an exp lemma exp(a + b) = exp(a) exp(b)
with both a, b nonzero, which rounded values break), the search decides as before. Proofs (unsat) never come
from here.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import z3

# The real functions behind the uninterpreted ones (symbolic.py names them f"{name}_{domain}").
REAL_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "exp": math.exp,
    "log": lambda x: math.log(x) if x > 0 else 0.0,
    "sqrt": lambda x: math.sqrt(x) if x >= 0 else 0.0,
    "reciprocal": lambda x: 1.0 / x if x != 0 else 0.0,
    "tanh": math.tanh,
    "sin": math.sin,
    "cos": math.cos,
    "sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0,
    "softplus": lambda x: math.log1p(math.exp(x)) if x < 700 else x,
}
FLOAT_SPECIALS = (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 0.75, 1.5, 3.0, -2.0)
# Candidates per query: twice what the default suite needs (measured: every model found was among the first 32
# candidates, floats/target-below-total-*~u-le-1 the last; most within 2). A failed look costs 0.01-2 s.
TRIES = 64


class _Pinned:
    """A stand-in for a z3 model: ``eval`` substitutes the pinned values and simplifies (for domains.model_value)."""

    def __init__(self, pairs: list[tuple[z3.ExprRef, z3.ExprRef]]):
        self.pairs = pairs

    def eval(self, x: z3.ExprRef, model_completion: bool = True) -> z3.ExprRef:
        return z3.simplify(z3.substitute(x, *self.pairs)) if self.pairs else z3.simplify(x)


def _symbols(formulas: Sequence[z3.ExprRef]) -> tuple[list[z3.ExprRef], list[z3.ExprRef]]:
    """(free constants, uninterpreted applications in post-order: arguments before the application)."""
    consts: dict[int, z3.ExprRef] = {}
    apps: list[z3.ExprRef] = []
    seen: set[int] = set()
    for root in formulas:
        stack: list[tuple[z3.ExprRef, bool]] = [(root, False)]
        while stack:
            e, done = stack.pop()
            key = e.get_id()
            if done:
                if z3.is_app(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED and e.num_args() > 0:
                    apps.append(e)
                continue
            if key in seen:
                continue
            seen.add(key)
            if z3.is_quantifier(e) or z3.is_var(e):
                raise _Unsupported
            if z3.is_app(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED and e.num_args() == 0:
                consts[key] = e
                continue
            stack.append((e, True))
            stack.extend((c, False) for c in e.children())
    return list(consts.values()), apps


class _Unsupported(Exception):
    pass


def _value(sort: z3.SortRef, rng: np.random.Generator | None, aux: bool) -> z3.ExprRef:
    """A candidate value of ``sort``: zero without ``rng``, else a small random one."""
    kind = sort.kind()
    if kind == z3.Z3_REAL_SORT:
        return z3.RealVal(0 if rng is None or aux else Fraction(int(rng.integers(-16, 17)), 8))
    if kind == z3.Z3_INT_SORT:
        return z3.IntVal(0 if rng is None else int(rng.integers(-2, 5)))
    if kind == z3.Z3_BOOL_SORT:
        return z3.BoolVal(False if rng is None else bool(rng.integers(0, 2)))
    if kind == z3.Z3_BV_SORT:
        n = sort.size()
        if rng is None:
            return z3.BitVecVal(0, n)
        special = [0, 1, (1 << n) - 1, 1 << (n - 1), (1 << (n - 1)) - 1]
        pick = special[int(rng.integers(0, len(special)))] if rng.random() < 0.3 else int(rng.integers(0, 1 << n))
        return z3.BitVecVal(pick, n)
    if kind == z3.Z3_FLOATING_POINT_SORT:
        if rng is None:
            return z3.FPVal(0.0, sort)
        u = rng.random()
        if u < 0.35:
            x = FLOAT_SPECIALS[int(rng.integers(0, len(FLOAT_SPECIALS)))]
        elif u < 0.7:  # short significands: the values a query restricted to a grid accepts
            x = int(rng.integers(-256, 257)) / 256
        else:
            x = rng.uniform(-2, 2)
        return z3.FPVal(float(x), sort)
    raise _Unsupported


def _as_fraction(v: z3.ExprRef) -> Fraction | None:
    return Fraction(v.numerator_as_long(), v.denominator_as_long()) if z3.is_rational_value(v) else None


def _interpret(apps: list[z3.ExprRef], pairs: list[tuple[z3.ExprRef, z3.ExprRef]]) -> bool:
    """Extend ``pairs`` with a value for every application (arguments first); False if one has no value."""
    table: dict[tuple[str, Fraction], z3.ExprRef] = {}
    for app in apps:
        decl = app.decl()
        fn = REAL_FUNCTIONS.get(decl.name().rsplit("_", 1)[0])
        if fn is None or app.num_args() != 1 or app.sort().kind() != z3.Z3_REAL_SORT:
            return False
        arg = _as_fraction(z3.simplify(z3.substitute(app.arg(0), *pairs) if pairs else app.arg(0)))
        if arg is None:
            return False
        key = (decl.name(), arg)
        if key not in table:
            try:
                y = fn(float(arg))
            except (OverflowError, ValueError, ZeroDivisionError):
                return False
            if not math.isfinite(y):
                return False
            table[key] = z3.RealVal(Fraction(y))
        pairs.append((app, table[key]))
    return True


def _conjuncts(f: z3.ExprRef) -> list[z3.ExprRef]:
    return [g for a in f.children() for g in _conjuncts(a)] if z3.is_and(f) else [f]


def _unary(formulas: Sequence[z3.ExprRef]) -> dict[int, list[z3.ExprRef]]:
    """Conjuncts about one free constant and no uninterpreted function (e.g. 1/2 <= a_t <= 1), by constant id:
    a candidate value is drawn until it satisfies them, instead of the whole candidate failing on them."""
    out: dict[int, list[z3.ExprRef]] = {}
    for f in formulas:
        for c in _conjuncts(f):
            consts, apps = _symbols([c])
            if len(consts) == 1 and not apps:
                out.setdefault(consts[0].get_id(), []).append(c)
    return out


def _draw(c: z3.ExprRef, rng: np.random.Generator | None, aux: bool, unary: list[z3.ExprRef]) -> z3.ExprRef:
    v = _value(c.sort(), rng, aux)
    for _ in range(64 if unary else 0):
        if all(z3.is_true(z3.simplify(z3.substitute(u, (c, v)))) for u in unary):
            break
        rng = rng if rng is not None else np.random.default_rng(zlib.crc32(c.decl().name().encode()))
        v = _value(c.sort(), rng, aux)
    return v


def search(formulas: Sequence[z3.ExprRef], tries: int = TRIES, seed: int = 0) -> _Pinned | None:
    """A model of every formula in ``formulas`` (checked by Z3's evaluation) among ``tries`` candidates, or None.

    Bounded by a count, not by time: the same query gets the same answer on a fast machine and a loaded one."""
    try:
        consts, apps = _symbols(formulas)
        unary = _unary(formulas)
        rng = np.random.default_rng(seed)
        for attempt in range(tries):
            r = None if attempt == 0 else rng
            aux = attempt % 2 == 1  # odd attempts keep fresh terms (shifts, permutations) at zero
            pairs = [(c, _draw(c, r, aux and "!" in c.decl().name(), unary.get(c.get_id(), []))) for c in consts]
            if not _interpret(apps, pairs):
                continue
            pinned = _Pinned(pairs)
            if all(z3.is_true(pinned.eval(f)) for f in formulas):
                return pinned
    except (_Unsupported, z3.Z3Exception):
        return None
    return None

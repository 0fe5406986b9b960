"""Z3Ops for constructed weights: GELU and sqrt carry the facts that make a hand-built network's behaviour
provable in linear arithmetic (used by proofs/algorithm.py).

The spec's ``layers.gelu_tanh`` computes ``(x * 0.5) * (tanh((x + x*x*x * 0.044715) * c) + 1)``. Left to Z3's
nonlinear arithmetic, a 45-unit MLP of these did not finish in 60 s (measured). Here the same code runs, but:

* ``tanh`` of a GELU argument is a fresh value t in [-1, 1], remembered with the GELU's input x (the argument's
  shape is checked, so a rewritten gelu_tanh fails loudly instead of getting the wrong facts);
* the product ``(x * 0.5) * (t + 1)`` is a fresh value g with the facts
      g between 0 and x                 (0.5 (1 + tanh) lies in (0, 1))
      x >= 6  ->  g >= x (1 - 1e-7)     (1 - tanh(c (6 + 0.044715 * 216)) = 1 - tanh(12.5) < 3e-11)
      x <= -6 ->  x 1e-7 <= g <= 0      (the same, by oddness of tanh)
      x = 0   ->  g = 0
  each true of the real function, so a proof from them holds for the spec's GELU over the reals;
* ``sqrt(y)`` is a fresh value r with r >= 0 and r * r = y, y put in sum-of-monomials form first (a LayerNorm
  variance; Z3 answered in 1.4 s instead of timing out at 60 s).

Everything else is Z3Ops over the reals (proofs/symbolic.py): the proofs are about the spec's own functions.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import z3

from .symbolic import Z3Ops

SATURATED = 6.0  # |x| >= this: GELU is x or 0 up to a relative 1e-7
SLACK = 1e-7


def gelu_input(z: Any) -> Any:
    """x when z is gelu_tanh's tanh argument ``(x + x*x*x*0.044715) * c`` (as Z3Ops builds it), else None."""
    if not (z3.is_expr(z) and z3.is_mul(z) and z.num_args() == 2 and z3.is_add(z.arg(0)) and z.arg(0).num_args() == 2):
        return None
    x, cube = z.arg(0).arg(0), z.arg(0).arg(1)
    if not (z3.is_mul(cube) and cube.num_args() == 2 and z3.is_mul(cube.arg(0))):
        return None
    xxx = cube.arg(0)
    ok = xxx.num_args() == 2 and z3.is_mul(xxx.arg(0)) and xxx.arg(0).num_args() == 2
    return x if ok and all(z3.eq(t, x) for t in (xxx.arg(1), xxx.arg(0).arg(0), xxx.arg(0).arg(1))) else None


def _fold_ground(x: Any) -> Any:
    """Terms without variables (a max of constant scores, 0 - 0) simplified to numerals, so that exp(0) = 1
    folds and a uniform head's weights are the constants 1/n."""
    if not (isinstance(x, np.ndarray) and x.dtype == object):
        return x
    out, seen = x.copy(), {}
    for idx in np.ndindex(*x.shape):
        t = x[idx]
        if z3.is_expr(t) and not z3.is_rational_value(t) and _ground(t, seen):
            out[idx] = z3.simplify(t)
    return out


def _ground(t: Any, seen: dict[int, bool]) -> bool:
    """No uninterpreted constant below t; memoized on term ids, since max terms share subterms (a DAG)."""
    key = t.get_id()
    if key not in seen:
        if z3.is_const(t):
            seen[key] = t.decl().kind() != z3.Z3_OP_UNINTERPRETED
        else:
            seen[key] = all(_ground(c, seen) for c in t.children())
    return seen[key]


class SaturationOps(Z3Ops):
    """Z3Ops (reals) with the GELU and sqrt encodings of the module docstring; ``roots`` lists (y, sqrt(y))."""

    def __init__(self, shift: str = "exact") -> None:
        super().__init__(shift=shift)  # "exact": a softmax over concrete scores folds (proofs/symbolic.py)
        self._gelu_of: dict[int, Any] = {}  # term id of t or t + 1 -> the GELU input x
        self.roots: list[tuple[Any, Any]] = []

    def sqrt(self, x: Any) -> np.ndarray:
        xs = self._objects(x)
        out = np.empty(xs.shape, dtype=object)
        for idx in np.ndindex(*xs.shape):
            y = z3.simplify(self._lift(xs[idx], self.dom.const(0.0)), som=True)
            r = self.fresh("sqrt")
            self.fact("sqrt: r >= 0, r * r = y", z3.And(r >= 0, r * r == y))
            self.roots.append((y, r))
            out[idx] = r
        return out

    def tanh(self, x: Any) -> np.ndarray:
        xs = self._objects(x)
        out = np.empty(xs.shape, dtype=object)
        for idx in np.ndindex(*xs.shape):
            if z3.is_rational_value(xs[idx]):  # a unit whose input is a constant (no input weights)
                v = float(xs[idx].as_fraction())
                out[idx] = self.dom.const(0.0) if v == 0 else self._bounded(np.tanh(v), "tanh of a constant")
                continue
            g_in = gelu_input(xs[idx])
            if g_in is None:
                raise NotImplementedError(f"tanh outside gelu_tanh's pattern: {xs[idx]}")
            t = self.fresh("tanh")
            self.fact("tanh in [-1, 1]", z3.And(t >= -1, t <= 1))
            self._gelu_of[t.get_id()] = g_in
            out[idx] = t
        return out

    def matmul(self, a: Any, b: Any) -> Any:
        """Activations times a constant weight matrix: a sum over the weight's nonzero entries only (the reals
        do not care about the order, and 0 * x = 0 is what Z3Ops folds anyway). Constructed weights are sparse,
        so this builds ~10x fewer terms than the dense product."""
        if not (isinstance(b, np.ndarray) and b.dtype.kind == "f" and b.ndim == 2 and isinstance(a, np.ndarray)):
            return super().matmul(a, b)
        a = self._objects(a)
        rows = a.reshape(-1, a.shape[-1])
        out = np.empty((rows.shape[0], b.shape[1]), dtype=object)
        for j in range(b.shape[1]):
            nonzero = [(i, self.dom.const(float(b[i, j]))) for i in np.flatnonzero(b[:, j])]
            for r in range(rows.shape[0]):
                terms = [self._arith("mul", rows[r, i], w) for i, w in nonzero]
                out[r, j] = functools.reduce(functools.partial(self._arith, "add"), terms) if terms else 0.0
        return out.reshape(*a.shape[:-1], b.shape[1])

    def reduce_max(self, x: Any, axis: int, keepdims: bool = True) -> Any:
        return _fold_ground(super().reduce_max(x, axis, keepdims))

    def sub(self, a: Any, b: Any) -> Any:
        return _fold_ground(super().sub(a, b))

    def _bounded(self, value: float, label: str) -> Any:
        """A fresh term within 2^-40 of a float64 value computed by numpy (1 ulp there is 2^-52)."""
        t = self.fresh("c")
        self.fact(label, z3.And(t >= value - 2.0**-40, t <= value + 2.0**-40))
        return t

    def add(self, a: Any, b: Any) -> Any:
        out = super().add(a, b)
        if isinstance(a, np.ndarray) and a.dtype == object and isinstance(b, float) and b == 1.0:
            for t, s in zip(a.flat, np.asarray(out).flat):
                if z3.is_expr(t) and t.get_id() in self._gelu_of:
                    self._gelu_of[s.get_id()] = self._gelu_of[t.get_id()]
        return out

    def mul(self, a: Any, b: Any) -> Any:
        tracked = (
            isinstance(b, np.ndarray)
            and b.dtype == object
            and any(z3.is_expr(t) and t.get_id() in self._gelu_of for t in b.flat)
        )
        if not tracked:
            return super().mul(a, b)
        half, tanh1 = np.broadcast_arrays(self._objects(a), self._objects(b))
        out = np.empty(half.shape, dtype=object)
        for idx in np.ndindex(*half.shape):
            x = self._gelu_of.get(tanh1[idx].get_id()) if z3.is_expr(tanh1[idx]) else None
            if x is None:  # a constant unit: the plain product
                product = super().mul(half[idx], tanh1[idx])
                out[idx] = product.item() if isinstance(product, np.ndarray) else product
                continue
            if not z3.eq(z3.simplify(half[idx] - x * 0.5), z3.RealVal(0)):
                raise NotImplementedError(f"GELU product with {half[idx]} instead of x * 0.5")
            g = self.fresh("gelu")
            self.fact("gelu between 0 and x", z3.And(g >= z3.If(x >= 0, 0, x), g <= z3.If(x >= 0, x, 0)))
            self.fact(
                "gelu saturates",
                z3.And(
                    z3.Implies(x >= SATURATED, g >= x * (1 - SLACK)),
                    z3.Implies(x <= -SATURATED, g >= x * SLACK),
                    z3.Implies(x == 0, g == 0),
                ),
            )
            out[idx] = g
        return out

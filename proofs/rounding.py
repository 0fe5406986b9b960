"""A fourth interpretation of the ops vocabulary: float32 rounding-error enclosures (midpoint-radius arithmetic).

The spec's model code runs unchanged on :class:`RoundingOps` (as on numpy, on a graph builder and on Z3 terms,
docs/design.md §1); every float value becomes an :class:`Enclosure` ``mid +- rad`` (float64 arrays) that contains

* the exact real-number result of the computation on the model's float32 weights, and
* the result of **every** float32 evaluation of it in which each operation has the error IEEE-754 round-to-
  nearest allows: |fl(a op b) - (a op b)| <= u |a op b| for + - * / sqrt with u = 2^-24; sums and dot products
  of n terms **in any order** (numpy's pairwise sums, BLAS blocking, FMA, torch, onnxruntime) within
  gamma_n sum|terms|, gamma_n = n u / (1 - n u) (Higham 2002, *Accuracy and Stability of Numerical Algorithms*,
  §3.1, eq. 3.5); exp and tanh within LIBM relative (16 ulp, looser than glibc, Sleef or MLAS claim);
  and an absolute TINY per operation for underflow and flush-to-zero.

Propagation is first-order exact for each elementary op (midpoint-radius arithmetic, Rump 1999, "Fast and
parallel interval arithmetic", BIT 39): for y = f(x) with x in m +- r the new radius is max |f(x) - f(m)| over
the input box plus the rounding of the result. Errors of operands are treated as independent, so the bound is
conservative. The midpoint is computed in float64; its own error is covered by using U = 2^-24 + 2^-50 as the
unit roundoff throughout.

What it is for (docs/algorithms.md): a greedy decision is *robust* when the enclosure of the chosen logit lies
above the enclosure of every other logit. Then every float32 evaluation under this model (the spec's unrolled
and recurrent forms, onnxruntime, transformers) picks the same token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

U = 2.0**-24 + 2.0**-50  # float32 unit roundoff, plus slack for the float64 midpoint's own rounding
LIBM = 2.0**-20  # relative error allowed to exp and tanh (16 float32 ulp)
TINY = 2.0**-126  # absolute error per op: an underflow to a subnormal or to zero (flush-to-zero)


def gamma(n: int) -> float:
    """Higham's gamma_n: any order of n - 1 float additions errs by at most gamma_n * sum |terms|."""
    return n * U / (1.0 - n * U)


class Enclosure:
    """``mid +- rad`` elementwise (float64 arrays of one shape); ``rad >= 0``."""

    __slots__ = ("mid", "rad")

    def __init__(self, mid: Any, rad: Any = None):
        self.mid = np.asarray(mid, np.float64)
        self.rad = (
            np.zeros_like(self.mid) if rad is None else np.broadcast_to(np.asarray(rad, np.float64), self.mid.shape)
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mid.shape

    @property
    def lo(self) -> np.ndarray:
        return self.mid - self.rad

    @property
    def hi(self) -> np.ndarray:
        return self.mid + self.rad

    def contains(self, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return (self.lo <= x) & (x <= self.hi)

    def map(self, fn: Any) -> Enclosure:
        """A structural op (reshape, transpose, slice...) applied to both arrays: no arithmetic, no rounding."""
        return Enclosure(fn(self.mid), fn(np.asarray(self.rad)))

    def __repr__(self) -> str:
        return f"Enclosure(shape={self.shape}, max rad={float(np.max(self.rad, initial=0.0)):.3g})"


def _is_float(x: Any) -> bool:
    return isinstance(x, Enclosure) or isinstance(x, float) or np.issubdtype(np.asarray(x).dtype, np.floating)


def lift(x: Any) -> Enclosure:
    """A float value as an enclosure: float32 weights and constants are exact (radius 0)."""
    return x if isinstance(x, Enclosure) else Enclosure(np.asarray(x, np.float64))


def _rounded(mid: np.ndarray, rad: np.ndarray, rel: float | None = None) -> Enclosure:
    """Add the rounding of a result whose exact value lies in mid +- rad. An exact 0 (mid = rad = 0, e.g.
    0 * x or 0 - 0) stays exact: IEEE arithmetic on exact zeros has no rounding."""
    err = np.abs(mid)
    err += rad
    err *= U if rel is None else rel
    err += rad
    np.add(err, TINY, out=err, where=err != 0)
    return Enclosure(mid, err)


def _small_integers(x: Enclosure) -> np.ndarray:
    """Where x is exactly an integer of magnitude < 2^24: float32 sums of such values (partial sums included)
    below 2^24 are exact in any order, e.g. softmax's sum of exp(0) = 1 over a uniform head's keys."""
    return (x.rad == 0) & (x.mid == np.round(x.mid)) & (np.abs(x.mid) < 2.0**24)


class RoundingOps:
    """The ops vocabulary (spec/vocabulary.py) over enclosures; index data stays numpy. It implements the
    subset GPT-2's forward uses (ENCLOSURE_OPS, same signatures as ``Ops``: tests/test_algorithms.py)."""

    ENCLOSURE_OPS = frozenset(
        "const cast shape arange add sub mul div neg reciprocal sqrt exp tanh less less_equal logical_and where "
        "reduce_sum reduce_mean reduce_max matmul gather reshape transpose unsqueeze squeeze slice concat "
        "split".split()
    )

    # -- values and index data --------------------------------------------------------------------------------
    def const(self, value: Any, dtype: Any = None) -> Any:
        return value if isinstance(value, Enclosure) else np.asarray(value, dtype=dtype)

    def cast(self, x: Any, dtype: Any) -> Any:
        if isinstance(x, Enclosure):
            raise NotImplementedError("cast of a float value: not used by the transformer families")
        return np.asarray(x).astype(dtype)

    def shape(self, x: Any, axis: int) -> np.int64:
        return np.int64(x.shape[axis])

    def arange(self, start: Any, limit: Any) -> np.ndarray:
        return np.arange(int(start), int(limit), dtype=np.int64)

    # -- arithmetic -------------------------------------------------------------------------------------------
    def add(self, a: Any, b: Any) -> Any:
        if not (_is_float(a) or _is_float(b)):
            return np.add(a, b)
        a, b = lift(a), lift(b)
        return _rounded(a.mid + b.mid, a.rad + b.rad)

    def sub(self, a: Any, b: Any) -> Any:
        if not (_is_float(a) or _is_float(b)):
            return np.subtract(a, b)
        out = _rounded(lift(a).mid - lift(b).mid, lift(a).rad + lift(b).rad)
        if isinstance(b, MaxEnclosure) and b.source is a:
            # softmax's x - max(x): where one element's low end is above every other's high end, it *is* the
            # max for every value in the box, and x_i - x_i = 0 exactly (the dependency independent radii lose)
            top = b.dominant
            out = Enclosure(np.where(top, 0.0, out.mid), np.where(top, 0.0, out.rad))
        return out

    def mul(self, a: Any, b: Any) -> Any:
        a, b = lift(a), lift(b)
        mid = a.mid * b.mid
        rad = np.abs(a.mid) * b.rad + a.rad * np.abs(b.mid) + a.rad * b.rad
        return _rounded(mid, rad)

    def div(self, a: Any, b: Any) -> Any:
        a, b = lift(a), lift(b)
        gap = np.abs(b.mid) - b.rad
        if np.any(gap <= 0):
            raise ArithmeticError("a divisor's enclosure contains 0: no bound")
        mid = a.mid / b.mid
        return _rounded(mid, (a.rad + np.abs(mid) * b.rad) / gap)

    def neg(self, x: Any) -> Enclosure:
        x = lift(x)
        return Enclosure(-x.mid, x.rad)

    def reciprocal(self, x: Any) -> Enclosure:
        return self.div(1.0, x)

    def sqrt(self, x: Any) -> Enclosure:
        x = lift(x)
        if np.any(x.lo < 0):
            raise ArithmeticError("sqrt of an enclosure reaching below 0: no bound")
        mid = np.sqrt(x.mid)
        return _rounded(mid, mid - np.sqrt(x.lo))  # sqrt is concave: the largest change is downwards

    def exp(self, x: Any) -> Enclosure:
        x = lift(x)
        with np.errstate(over="ignore", under="ignore"):
            mid = np.exp(x.mid)
            # exp(m + r) - exp(m) bounds the change on the box; expm1 keeps it accurate for small r
            rad = np.where(x.rad < 1.0, mid * np.expm1(np.minimum(x.rad, 1.0)), np.exp(x.mid + x.rad) - mid)
        out = _rounded(mid, rad, LIBM)
        exact = (x.mid == 0) & (x.rad == 0)  # exp(+-0) = 1 exactly (C11 Annex F.10.3.1, IEEE 754 §9.2.1)
        return Enclosure(np.where(exact, 1.0, out.mid), np.where(exact, 0.0, out.rad))

    def tanh(self, x: Any) -> Enclosure:
        x = lift(x)
        nearest = np.maximum(np.abs(x.mid) - x.rad, 0.0)  # tanh' = 1 - tanh^2 is largest nearest to 0
        slope = 1.0 - np.tanh(nearest) ** 2
        return _rounded(np.tanh(x.mid), slope * x.rad, LIBM)

    # -- comparisons and selection (on index data only) -----------------------------------------------------
    def less(self, a: Any, b: Any) -> np.ndarray:
        return np.less(self._index(a), self._index(b))

    def less_equal(self, a: Any, b: Any) -> np.ndarray:
        return np.less_equal(self._index(a), self._index(b))

    def logical_and(self, a: Any, b: Any) -> np.ndarray:
        return np.logical_and(a, b)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        cond = self._index(cond)
        if not (_is_float(a) or _is_float(b)):
            return np.where(cond, a, b)
        a, b = lift(a), lift(b)
        return Enclosure(np.where(cond, a.mid, b.mid), np.where(cond, a.rad, b.rad))

    @staticmethod
    def _index(x: Any) -> Any:
        if isinstance(x, Enclosure):
            raise NotImplementedError("a comparison of float values: its outcome could depend on rounding")
        return x

    # -- reductions -----------------------------------------------------------------------------------------
    def reduce_sum(self, x: Any, axis: int, keepdims: bool = True) -> Enclosure:
        x = lift(x)
        n = x.shape[axis]
        mid = np.sum(x.mid, axis=axis, keepdims=keepdims)
        rad = np.sum(x.rad, axis=axis, keepdims=keepdims)
        spread = np.sum(np.abs(x.mid) + x.rad, axis=axis, keepdims=keepdims)
        exact = np.all(_small_integers(x), axis=axis, keepdims=keepdims) & (spread < 2.0**24)
        return Enclosure(mid, np.where(exact, 0.0, rad + gamma(n) * spread + n * TINY))

    def reduce_mean(self, x: Any, axis: int, keepdims: bool = True) -> Enclosure:
        n = lift(x).shape[axis]
        return self.div(self.reduce_sum(x, axis, keepdims), float(n))

    def reduce_max(self, x: Any, axis: int, keepdims: bool = True) -> Enclosure:
        x = lift(x)  # max is exact: its enclosure is [max of lows, max of highs]
        lo, hi = np.max(x.lo, axis=axis, keepdims=keepdims), np.max(x.hi, axis=axis, keepdims=keepdims)
        return MaxEnclosure((lo + hi) / 2, (hi - lo) / 2, source=x, axis=axis) if keepdims else Enclosure(lo, hi)

    # -- linear algebra -------------------------------------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Enclosure:
        a, b = lift(a), lift(b)
        if b.mid.ndim == 2 and a.mid.ndim > 2:  # activations @ weights: one 2-D BLAS call, not one per row
            lead = a.shape[:-1]
            flat = self.matmul(Enclosure(a.mid.reshape(-1, a.shape[-1]), a.rad.reshape(-1, a.shape[-1])), b)
            return flat.map(lambda t: t.reshape(*lead, -1))
        g = gamma(a.shape[-1])
        abs_a, abs_b = np.abs(a.mid), np.abs(b.mid)
        # |a| rb + ra |b| + ra rb (the inputs' radii) + g (|a| + ra)(|b| + rb) (any-order rounding, Higham eq.
        # 3.5) = (1 + g)(|a| + ra)(|b| + rb) - |a||b|; one product when b is exact (the weights)
        if not np.any(b.rad):
            err = np.matmul((1 + g) * a.rad + g * abs_a, abs_b)
        else:
            err = (1 + g) * np.matmul(abs_a + a.rad, abs_b + b.rad) - np.matmul(abs_a, abs_b)
        err = np.maximum(err, 0.0)
        return Enclosure(np.matmul(a.mid, b.mid), np.where(err > 0, err + a.shape[-1] * TINY, 0.0))  # 0: exact

    def gather(self, data: Any, indices: Any, axis: int = 0) -> Any:
        if isinstance(data, Enclosure):
            return data.map(lambda t: np.take(t, indices, axis=axis))
        return np.take(data, indices, axis=axis)

    # -- shape (structural: applied to mid and rad alike) ---------------------------------------------------
    def _structural(self, x: Any, fn: Any) -> Any:
        return x.map(fn) if isinstance(x, Enclosure) else fn(np.asarray(x))

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        full = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return self._structural(x, lambda t: np.reshape(t, full))

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        return self._structural(x, lambda t: np.transpose(t, perm))

    def unsqueeze(self, x: Any, axis: int) -> Any:
        return self._structural(x, lambda t: np.expand_dims(t, axis))

    def squeeze(self, x: Any, axis: int) -> Any:
        return self._structural(x, lambda t: np.squeeze(t, axis))

    def slice(self, x: Any, axis: int, start: int, end: int | None = None) -> Any:
        def cut(t: np.ndarray) -> np.ndarray:
            index = [slice(None)] * t.ndim
            index[axis] = slice(start, end)
            return t[tuple(index)]

        return self._structural(x, cut)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        if not any(isinstance(x, Enclosure) for x in xs):
            return np.concatenate(list(xs), axis=axis)
        parts = [lift(x) for x in xs]
        return Enclosure(
            np.concatenate([p.mid for p in parts], axis=axis), np.concatenate([p.rad for p in parts], axis=axis)
        )

    def split(self, x: Any, axis: int, sizes: Sequence[int]) -> list[Any]:
        cuts = np.cumsum(sizes)[:-1]
        if not isinstance(x, Enclosure):
            return np.split(x, cuts, axis=axis)
        return [Enclosure(m, r) for m, r in zip(np.split(x.mid, cuts, axis=axis), np.split(x.rad, cuts, axis=axis))]


class MaxEnclosure(Enclosure):
    """The enclosure of max(x) along ``axis`` that remembers x, so ``sub(x, max(x))`` can use the dependency."""

    __slots__ = ("source", "dominant")

    def __init__(self, mid: Any, rad: Any, source: Enclosure, axis: int):
        super().__init__(mid, rad)
        self.source = source
        first = np.argmax(source.lo, axis=axis, keepdims=True)
        is_first = (
            np.arange(source.shape[axis]).reshape(
                [-1 if a == axis % source.mid.ndim else 1 for a in range(source.mid.ndim)]
            )
            == first
        )
        runner_up = np.max(np.where(is_first, -np.inf, source.hi), axis=axis, keepdims=True)
        self.dominant = is_first & (np.take_along_axis(source.lo, first, axis=axis) > runner_up)


class FreshCache:
    """An empty KV cache for one layer in any interpretation: appending returns the new rows themselves (what
    ``SeqBuffer.append`` returns for an empty buffer), so the unrolled form runs from the initial state."""

    def append(self, rows: Any) -> tuple[Any, FreshCache]:
        return rows, self


def fresh_cache(n_layer: int) -> tuple[tuple[FreshCache, FreshCache], ...]:
    return tuple((FreshCache(), FreshCache()) for _ in range(n_layer))

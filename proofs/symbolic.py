"""The symbolic interpretation of the ops vocabulary (docs/design.md §1): the spec's own functions run over numpy
object arrays of Z3 terms, so a proof is about *our* code, not a retyped formula.

:class:`Z3Ops` has the method names and signatures of :class:`lmstep.spec.ops.NumpyOps`. Conventions:
- float data (activations, scores, probabilities) are object arrays of terms of a :mod:`~lmstep.proofs.domains`
  domain (reals, IEEE floats or bit-vectors); concrete float arrays are lifted lazily, elementwise, exactly;
- index data (positions, ranks, counts, masks) stays concrete numpy where it is (so ``causal_mask`` selects and
  the scan's index plan gathers concretely) and becomes z3 ``Int``/``Bool`` terms only where it depends on
  symbolic data;
- everything an op must assume to be sound is recorded in :attr:`Z3Ops.facts` (lemma instances, the TopK
  permutation), and everything ONNX requires to be *defined* (a divisor != 0, a gather index in range) in
  :attr:`Z3Ops.checks`: the runner assumes the facts and proves the checks together with the law.

Encodings (each chosen so Z3 answers in milliseconds, docs/design.md §8):
- ``exp`` is an uninterpreted function with, per application, the facts of one of three models: ``field``
  (reals): exp(x) > 0 and the instances of exp(a + b) = exp(a) exp(b) along the top-level sums/differences of x
  (so exp(s - c) exp(c) = exp(s)); ``positive``: exp(x) > 0 only - the mutant that must make shift invariance
  unprovable; ``libm`` (always for IEEE domains): what any faithful float exp satisfies, including underflow to 0.
- ``reduce_max`` over domain values returns, with ``shift="fresh"``, a fresh term per distinct set of finite row
  values: a function of the row, as max is, but otherwise unconstrained. A law proved this way holds for *any*
  such shift function, in particular the max (sound: no property of max is assumed; cheap: no max-ite, which
  timed out, docs/design.md §8). Use it only where the max is a softmax shift; ``shift="exact"`` folds ``max``.
- ``layers.MASKED`` (the lowest finite float32) is read as -inf over the reals (``mask_as_neg_inf``): in float32
  exp(MASKED - max) underflows to exactly 0 whenever the row has a visible key (layers.py), which is what the
  extended-real -inf gives: exp(-inf) = 0, max(-inf, x) = x. A row with *no* visible key keeps float32's
  answer (MASKED - MASKED = 0: uniform weights). A finite additive mask stays finite, so the "additive mask"
  mutant really is refuted.
- ``topk`` (ONNX TopK sorted=1, stable) over symbolic values is a fresh permutation ``idx`` with s_r = x[idx_r],
  s_r >= s_{r+1} and s_r == s_{r+1} -> idx_r < idx_{r+1}: exactly one permutation satisfies this for non-NaN x
  (the stable descending sort), so the encoding is sound and complete. NaN inputs make it unsatisfiable, which
  the runner's vacuity check reports.
- sqrt, reciprocal, tanh, sin, cos, sigmoid, softplus are uninterpreted (congruence only; sqrt over the
  reals also >= 0 and > 0 on positive input). With ``normalize``, their arguments are put in sum-of-monomials
  form first, so two computations equal as polynomials (a scan and a recurrence) give the same application.
- Over the reals, x + 0, x - 0, 0 * x, 1 * x and 0 / y (y != 0 checked) fold as they are built: a masked key
  then leaves no trace, and the unrolled and recurrent forms of one computation become the same term.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import z3

from lmstep.spec.layers import MASKED
from lmstep.spec.ops import NP

from .domains import Float, Real


class _NegInf:
    """-inf of the extended reals (the value of ``layers.MASKED`` over the reals)."""

    def __repr__(self) -> str:
        return "-inf"


NEG_INF = _NegInf()


def _is_sym(x: Any) -> bool:
    return (isinstance(x, np.ndarray) and x.dtype == object) or z3.is_expr(x) or x is NEG_INF


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if z3.is_expr(x) or x is NEG_INF:
        out = np.empty((), dtype=object)
        out[()] = x
        return out
    return np.asarray(x)


def _is_num(x: Any) -> bool:
    return isinstance(x, (bool, int, float, np.number, np.bool_))


class Z3Ops:
    """Symbolic interpretation over ``domain`` (see the module docstring for the encodings)."""

    def __init__(
        self,
        domain: Any = None,
        *,
        shift: str = "fresh",
        exp: str = "field",
        mask_as_neg_inf: bool | None = None,
        normalize: bool = False,
    ) -> None:
        if exp not in ("field", "product", "positive", "libm"):
            raise ValueError(f"exp model must be field, product, positive or libm, not {exp!r}")
        self.dom = domain if domain is not None else Real()
        self.shift, self.exp_model = shift, exp
        self.exp_lemmas = exp == "field"
        self.normalize = normalize
        self.mask_as_neg_inf = isinstance(self.dom, Real) if mask_as_neg_inf is None else mask_as_neg_inf
        self.facts: list[tuple[str, z3.BoolRef]] = []
        self.checks: list[tuple[str, z3.BoolRef]] = []
        self._seen: set[tuple[str, int]] = set()
        self._counter = itertools.count()
        self._funcs: dict[str, z3.FuncDeclRef] = {}
        self._exp_args: list[z3.ExprRef] = []
        self._shifts: dict[tuple[int, ...], z3.ExprRef] = {}
        self.trace: dict[str, list[tuple[Any, Any]]] = {}  # (input, output) of cumsum and topk, for stating laws

    # -- bookkeeping -------------------------------------------------------------------------------------
    def fresh(self, stem: str, sort: Any = None) -> z3.ExprRef:
        return z3.Const(f"{stem}!{next(self._counter)}", sort if sort is not None else self.dom.sort())

    def fact(self, label: str, cond: Any) -> None:
        key = (label, z3.BoolVal(cond).get_id() if isinstance(cond, bool) else cond.get_id())
        if key not in self._seen:
            self._seen.add(key)
            self.facts.append((label, cond))

    def check(self, label: str, cond: Any) -> None:
        if not (isinstance(cond, bool) and cond):
            self.checks.append((label, z3.BoolVal(cond) if isinstance(cond, bool) else cond))

    def func(self, name: str) -> z3.FuncDeclRef:
        if name not in self._funcs:
            self._funcs[name] = z3.Function(f"{name}_{self.dom.name}", self.dom.sort(), self.dom.sort())
        return self._funcs[name]

    def var(self, name: str, shape: Sequence[int] = ()) -> np.ndarray:
        """An object array of fresh domain variables named ``name[i,j,...]``."""
        out = np.empty(tuple(shape), dtype=object)
        for idx in np.ndindex(*out.shape):
            out[idx] = self.dom.var(name + ("[" + ",".join(map(str, idx)) + "]" if idx else ""))
        return out

    # -- scalar semantics ---------------------------------------------------------------------------------
    def _lift(self, x: Any, like: Any) -> Any:
        """A Python/numpy number as a term of ``like``'s kind (domain value, Int or Bool)."""
        if not _is_num(x):
            return x
        if self.dom.owns(like):
            return self.dom.const(x)
        if z3.is_expr(like) and z3.is_bool(like):
            return z3.BoolVal(bool(x))
        return int(x) if isinstance(x, (bool, np.bool_, np.integer)) else x

    def _pair(self, a: Any, b: Any) -> tuple[Any, Any]:
        if self.dom.owns(a) and z3.is_expr(b) and z3.is_int(b):
            b = self.dom.from_int(b)
        if self.dom.owns(b) and z3.is_expr(a) and z3.is_int(a):
            a = self.dom.from_int(a)
        a, b = self._lift(a, b), self._lift(b, a)
        if (
            _is_num(a)
            and _is_num(b)
            and (
                isinstance(a, float) or isinstance(b, float) or isinstance(a, np.floating) or isinstance(b, np.floating)
            )
        ):
            a, b = self.dom.const(a), self.dom.const(b)
        return a, b

    def _arith(self, op: str, a: Any, b: Any) -> Any:
        if a is NEG_INF or b is NEG_INF:
            return self._arith_inf(op, a, b)
        a, b = self._pair(a, b)
        if self.dom.owns(a):
            if isinstance(self.dom, Real):
                folded = _fold_real(op, a, b)
                if folded is not None:
                    return folded
            return getattr(self.dom, op)(a, b)
        return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b}[op]()

    def _arith_inf(self, op: str, a: Any, b: Any) -> Any:
        # Extended reals: -inf + x = -inf - x = -inf, -inf * c = -inf for c > 0; anything else is not needed by
        # the spec and would be a NaN, so it is refused rather than guessed.
        other = b if a is NEG_INF else a
        if op == "sub" and a is NEG_INF and b is NEG_INF:
            return self.dom.const(
                0.0
            )  # MASKED - MASKED = 0 exactly: a row with no visible key is uniform, as in float32
        if op == "add" and other is not NEG_INF:
            return NEG_INF
        if op == "sub" and a is NEG_INF and b is not NEG_INF:
            return NEG_INF
        if op == "mul" and _is_num(other) and other > 0:
            return NEG_INF
        raise NotImplementedError(f"-inf {op} {other!r} is not a real number")

    def _cmp(self, op: str, a: Any, b: Any) -> Any:
        if a is NEG_INF or b is NEG_INF:
            if op == "lt":
                return a is NEG_INF and b is not NEG_INF
            if op == "le":
                return a is NEG_INF
            if op == "eq":
                return a is b
        a, b = self._pair(a, b)
        if self.dom.owns(a):
            return getattr(self.dom, op)(a, b)
        return {"lt": lambda: a < b, "le": lambda: a <= b, "eq": lambda: a == b}[op]()

    def _select(self, c: Any, a: Any, b: Any) -> Any:
        if isinstance(c, (bool, np.bool_)):
            return a if c else b
        if z3.is_true(c):
            return a
        if z3.is_false(c):
            return b
        if a is NEG_INF or b is NEG_INF:
            raise NotImplementedError("a symbolic choice involving -inf")
        a, b = self._pair(a, b)
        return z3.If(c, a, b)

    def _max(self, a: Any, b: Any) -> Any:
        if a is NEG_INF:
            return b
        if b is NEG_INF:
            return a
        a, b = self._pair(a, b)
        if self.dom.owns(a):
            return self.dom.max(a, b)
        if _is_num(a) and _is_num(b):
            return max(a, b)
        return z3.If(a >= b, a, b)

    def _min(self, a: Any, b: Any) -> Any:
        a, b = self._pair(a, b)
        if self.dom.owns(a):
            return self.dom.min(a, b)
        if _is_num(a) and _is_num(b):
            return min(a, b)
        return z3.If(a <= b, a, b)

    def _map(self, fn: Callable[..., Any], *xs: Any) -> np.ndarray:
        """Apply a scalar function elementwise with numpy broadcasting; concrete float inputs are lifted."""
        arrays = [self._objects(x) for x in xs]
        out = np.frompyfunc(fn, len(arrays), 1)(*arrays)
        return _as_array(out) if not isinstance(out, np.ndarray) else out

    def _objects(self, x: Any) -> np.ndarray:
        arr = _as_array(x)
        if arr.dtype == object:
            return arr
        out = np.empty(arr.shape, dtype=object)
        for idx in np.ndindex(*arr.shape):
            v = arr[idx]
            out[idx] = self.dom.const(v) if arr.dtype.kind == "f" else v.item()
        return out

    def _elementwise(self, numeric: Callable[..., Any], scalar: Callable[..., Any], *xs: Any) -> Any:
        if not any(_is_sym(x) for x in xs):
            return numeric(*xs)
        return self._map(scalar, *xs)

    # -- values ------------------------------------------------------------------------------------------
    def const(self, value: Any, dtype: Any = None) -> Any:
        if _is_sym(value):
            return _as_array(value)
        if self.mask_as_neg_inf and np.ndim(value) == 0 and _is_num(value) and float(value) == MASKED:
            return _as_array(NEG_INF)
        return np.asarray(value, dtype=dtype)

    def cast(self, x: Any, dtype: Any) -> Any:
        if not _is_sym(x):
            return np.asarray(x).astype(dtype)
        kind = np.dtype(dtype).kind

        def one(v: Any) -> Any:
            if z3.is_expr(v) and z3.is_bool(v):
                return z3.If(v, 1, 0) if kind in "iu" else z3.If(v, self.dom.const(1.0), self.dom.const(0.0))
            if z3.is_expr(v) and z3.is_int(v) and kind == "f":
                return self.dom.from_int(v)
            if _is_num(v):
                return self.dom.const(v) if kind == "f" else int(v)
            if kind == "f" and self.dom.owns(v):
                return v
            raise NotImplementedError(f"cast of {v} to {np.dtype(dtype)}")

        return self._map(one, x)

    def shape(self, x: Any, axis: int) -> np.ndarray:
        return np.int64(_as_array(x).shape[axis])

    def arange(self, start: Any, limit: Any) -> np.ndarray:
        return np.arange(int(start), int(limit), dtype=np.int64)

    # -- elementwise --------------------------------------------------------------------------------------
    def add(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.add, functools.partial(self._arith, "add"), a, b)

    def sub(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.subtract, functools.partial(self._arith, "sub"), a, b)

    def mul(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.multiply, functools.partial(self._arith, "mul"), a, b)

    def div(self, a: Any, b: Any) -> Any:
        def one(x: Any, y: Any) -> Any:
            x, y = self._pair(x, y)
            if isinstance(self.dom, Real):
                self.check("divisor != 0", y != 0)
                if _is_zero(x):
                    return x  # 0 / y = 0 for y != 0 (checked): a masked key's weight is exactly 0
            return self.dom.div(x, y)

        return self._elementwise(np.divide, one, a, b)

    def int_div(self, a: Any, b: Any) -> Any:
        if _is_sym(a) or _is_sym(b):
            raise NotImplementedError("integer division of symbolic values (only shape arithmetic uses it)")
        return NP.int_div(a, b)

    def neg(self, x: Any) -> Any:
        return self._elementwise(np.negative, lambda v: self.dom.neg(self._lift(v, self.dom.const(0))), x)

    def min(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.minimum, self._min, a, b)

    def max(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.maximum, self._max, a, b)

    def exp(self, x: Any) -> Any:
        return self._elementwise(np.exp, self._exp, x)

    def _exp(self, x: Any) -> Any:
        if x is NEG_INF:
            return self.dom.const(0.0)
        if _is_zero(x) or (_is_num(x) and float(x) == 0.0):
            return self.dom.const(1.0)  # exp(0) = 1, exactly in IEEE too: the scan's identity row is exp(0 A)
        x = self._lift(x, self.dom.const(0))  # not normalized: the exp lemmas split x along its own + and -
        if self.exp_model == "libm" or isinstance(self.dom, Float):
            return self._exp_libm(x)
        if self.exp_model == "product" and z3.is_add(x):  # exp(a + b) is the term exp(a) exp(b)
            return functools.reduce(lambda p, q: p * q, [self._exp(x.arg(i)) for i in range(x.num_args())])
        e = self.func("exp")(x)
        self.fact("exp > 0", e > 0)
        if self.exp_lemmas:
            self._exp_split(x)
        return e

    def _exp_split(self, x: z3.ExprRef) -> None:
        """Instances of exp(a + b) = exp(a) exp(b) along x's top-level + and - (what shift invariance needs)."""
        E = self.func("exp")
        if z3.is_add(x) or z3.is_sub(x):
            args = [x.arg(i) for i in range(x.num_args())]
            for a in args:
                self.fact("exp > 0", E(a) > 0)
                self._exp_split(a)
            if z3.is_add(x):
                self.fact(
                    "exp(a+b) = exp(a) exp(b)", E(x) == functools.reduce(lambda p, q: p * q, [E(a) for a in args])
                )
            else:
                self.fact(
                    "exp(a-b) exp(b) = exp(a)",
                    functools.reduce(lambda p, q: p * q, [E(x)] + [E(a) for a in args[1:]]) == E(args[0]),
                )

    def _exp_libm(self, x: z3.ExprRef) -> z3.ExprRef:
        """exp as any faithful libm computes it: >= 0 (it may underflow to 0) and not NaN on non-NaN input,
        exp(0) = 1, <= 1 for x <= 0, exp(-inf) = 0, monotone. No algebraic law: used where rounding matters."""
        dom, e = self.dom, self.func("exp")(x)
        one, zero = dom.const(1.0), dom.const(0.0)
        if isinstance(dom, Float):
            self.fact(
                "exp(x) >= 0, not NaN",
                z3.Implies(z3.Not(z3.fpIsNaN(x)), z3.And(z3.Not(z3.fpIsNaN(e)), z3.fpGEQ(e, zero))),
            )
            self.fact("exp(-inf) = 0", z3.Implies(z3.And(z3.fpIsInf(x), z3.fpIsNegative(x)), z3.fpIsZero(e)))
        else:
            self.fact("exp(x) >= 0", e >= 0)
        self.fact("exp(0) = 1", z3.Implies(dom.eq(x, zero), e == one))
        self.fact("exp(x <= 0) <= 1", z3.Implies(dom.le(x, zero), dom.le(e, one)))
        for y in self._exp_args:
            self.fact("exp monotone", z3.Implies(dom.le(x, y), dom.le(e, self.func("exp")(y))))
            self.fact("exp monotone", z3.Implies(dom.le(y, x), dom.le(self.func("exp")(y), e)))
        self._exp_args.append(x)
        return e

    def _uninterpreted(self, name: str, numeric: Callable[[Any], Any], x: Any) -> Any:
        # Congruence is all a law about *equal computations* needs: f(x) = f(y) whenever x = y.
        return self._elementwise(numeric, lambda v: self.func(name)(self._argument(v)), x)

    def _argument(self, v: Any) -> Any:
        """An uninterpreted function's argument; with ``normalize``, as a sum of monomials, so that arguments
        equal as polynomials (a scan and a recurrence, two summation orders) become the same term and
        congruence needs no arithmetic (Z3 could not find those equalities inside sqrt/sigmoid in 120 s)."""
        v = self._lift(v, self.dom.const(0))
        return z3.simplify(v, som=True) if self.normalize and z3.is_expr(v) else v

    def sqrt(self, x: Any) -> Any:
        out = self._uninterpreted("sqrt", np.sqrt, x)
        if isinstance(self.dom, Real) and _is_sym(out):
            for arg, root in zip(self._objects(x).flat, out.flat):  # enough to show a LayerNorm divisor is not 0
                self.fact("sqrt >= 0, > 0 on x > 0", z3.And(root >= 0, z3.Implies(self._lift(arg, root) > 0, root > 0)))
        return out

    def reciprocal(self, x: Any) -> Any:
        return self._uninterpreted("reciprocal", np.reciprocal, x)

    def tanh(self, x: Any) -> Any:
        return self._uninterpreted("tanh", np.tanh, x)

    def cos(self, x: Any) -> Any:
        return self._uninterpreted("cos", np.cos, x)

    def sin(self, x: Any) -> Any:
        return self._uninterpreted("sin", np.sin, x)

    def sigmoid(self, x: Any) -> Any:
        return self._uninterpreted("sigmoid", NP.sigmoid, x)

    def softplus(self, x: Any) -> Any:
        from lmstep.spec.ops import NP

        return self._uninterpreted("softplus", NP.softplus, x)

    # -- comparisons and selection ------------------------------------------------------------------------
    def less(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.less, functools.partial(self._cmp, "lt"), a, b)

    def less_equal(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.less_equal, functools.partial(self._cmp, "le"), a, b)

    def greater(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.greater, lambda x, y: self._cmp("lt", y, x), a, b)

    def equal(self, a: Any, b: Any) -> Any:
        return self._elementwise(np.equal, functools.partial(self._cmp, "eq"), a, b)

    def logical_and(self, a: Any, b: Any) -> Any:
        def one(x: Any, y: Any) -> Any:
            if isinstance(x, (bool, np.bool_)) or isinstance(y, (bool, np.bool_)):
                c, other = (x, y) if isinstance(x, (bool, np.bool_)) else (y, x)
                return other if c else False
            return z3.And(x, y)

        return self._elementwise(np.logical_and, one, a, b)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        if not _is_sym(cond):
            if not (_is_sym(a) or _is_sym(b)):
                a, b = np.asarray(a), np.asarray(b)
                return np.where(cond, a, b).astype(a.dtype)
            return np.where(np.asarray(cond), self._objects(a), self._objects(b))
        return self._map(self._select, cond, a, b)

    # -- reductions and scans -----------------------------------------------------------------------------
    def _fold(self, fn: Callable[[Any, Any], Any], x: Any, axis: int, keepdims: bool) -> np.ndarray:
        x = np.moveaxis(self._objects(x), axis, -1)
        acc = x[..., 0]
        for i in range(1, x.shape[-1]):
            acc = self._map(fn, acc, x[..., i])  # left to right, as a sequential kernel does
        acc = _as_array(acc)
        return np.expand_dims(acc, axis) if keepdims else acc

    def reduce_sum(self, x: Any, axis: int, keepdims: bool = True) -> Any:
        if not _is_sym(x):
            return np.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)
        return self._fold(functools.partial(self._arith, "add"), x, axis, keepdims)

    def reduce_mean(self, x: Any, axis: int, keepdims: bool = True) -> Any:
        n = _as_array(x).shape[axis]
        return self.div(self.reduce_sum(x, axis, keepdims), np.float32(n))

    def reduce_max(self, x: Any, axis: int, keepdims: bool = True) -> Any:
        if not _is_sym(x):
            return np.max(x, axis=axis, keepdims=keepdims)
        x = self._objects(x)
        if self.shift == "fresh" and any(self.dom.owns(v) for v in x.flat):
            rows = np.moveaxis(x, axis, -1)
            out = np.empty(rows.shape[:-1], dtype=object)
            for idx in np.ndindex(*out.shape):
                out[idx] = self._shift_for(rows[idx])
            return np.expand_dims(out, axis) if keepdims else out
        return self._fold(self._max, x, axis, keepdims)

    def _shift_for(self, row: np.ndarray) -> z3.ExprRef:
        # A function of the row's finite values, as max is (max ignores -inf and order), otherwise arbitrary:
        # two rows with the same values share their shift, any other pair is related only by the exp lemmas.
        key = tuple(sorted(self._lift(v, self.dom.const(0)).get_id() for v in row if v is not NEG_INF))
        if not key:
            return NEG_INF  # no visible key: max = MASKED, as in float32
        if key not in self._shifts:
            self._shifts[key] = self.fresh("shift")
        return self._shifts[key]

    def argmax(self, x: Any, axis: int) -> Any:
        if not _is_sym(x):
            return np.argmax(x, axis=axis).astype(np.int64)
        x = np.moveaxis(self._objects(x), axis, -1)
        best, where = x[..., 0], np.zeros(x.shape[:-1], dtype=object)
        for i in range(1, x.shape[-1]):
            better = self._map(lambda b, v: self._cmp("lt", b, v), best, x[..., i])  # strict: ties keep the lower index
            where = self._map(self._select, better, np.full(x.shape[:-1], i, dtype=object), where)
            best = self._map(self._select, better, x[..., i], best)
        return where

    def cumsum(self, x: Any, axis: int) -> Any:
        if not _is_sym(x):
            return np.cumsum(x, axis=axis, dtype=x.dtype)
        x = np.moveaxis(self._objects(x), axis, -1)
        out = np.empty(x.shape, dtype=object)
        out[..., 0] = x[..., 0]
        for i in range(1, x.shape[-1]):
            out[..., i] = self._map(functools.partial(self._arith, "add"), out[..., i - 1], x[..., i])
        out = np.moveaxis(out, -1, axis)
        self.trace.setdefault("cumsum", []).append((np.moveaxis(x, -1, axis), out))
        return out

    def topk(self, x: Any, k: Any) -> tuple[Any, Any]:
        if not _is_sym(x):
            from lmstep.spec.ops import NP

            return NP.topk(x, k)
        x, k = self._objects(x), int(k)
        n = x.shape[-1]
        values = np.empty(x.shape, dtype=object)
        order = np.empty(x.shape, dtype=object)
        for row in np.ndindex(*x.shape[:-1]):
            idx = [self.fresh("topk_idx", z3.IntSort()) for _ in range(n)]
            vals = [self._pick(list(x[row]), i) for i in idx]
            self.fact("topk: a permutation", z3.And(*[z3.And(0 <= i, i < n) for i in idx], z3.Distinct(*idx)))
            for r in range(n - 1):
                self.fact("topk: descending", self._cmp("le", vals[r + 1], vals[r]))
                self.fact("topk: stable ties", z3.Implies(self._cmp("eq", vals[r], vals[r + 1]), idx[r] < idx[r + 1]))
            values[row], order[row] = vals, idx
        self.trace.setdefault("topk", []).append((x, (values[..., :k], order[..., :k])))
        return values[..., :k], order[..., :k]

    def _pick(self, items: list[Any], i: Any) -> Any:
        """items[i] for a symbolic Int i (ONNX Gather*: negative i counts from the end); checks the range."""
        n = len(items)
        if _is_num(i):
            return items[int(i)]
        self.check("gather index in range", z3.And(-n <= i, i < n))
        out = items[n - 1]
        for j in range(n - 2, -1, -1):
            out = self._select(z3.Or(i == j, i == j - n), items[j], out)
        return out

    # -- linear algebra and indexing ----------------------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Any:
        if not (_is_sym(a) or _is_sym(b)):
            return np.matmul(a, b)
        a, b = self._objects(a), self._objects(b)
        prod = self.mul(a[..., :, :, None], b[..., None, :, :])  # [..., M, K, N]
        return self._fold(functools.partial(self._arith, "add"), prod, -2, keepdims=False)

    def gather(self, data: Any, indices: Any, axis: int = 0) -> Any:
        if _is_sym(indices):
            raise NotImplementedError("Gather with symbolic indices")
        return np.take(data, indices, axis=axis)

    def gather_last(self, data: Any, indices: Any) -> Any:
        if not _is_sym(indices):
            return np.take_along_axis(data, indices, axis=-1)
        data, indices = self._objects(data), self._objects(indices)
        out = np.empty(indices.shape, dtype=object)
        for idx in np.ndindex(*indices.shape):
            out[idx] = self._pick(list(data[idx[:-1]]), indices[idx])
        return out

    # -- shape: numpy's own functions work on object arrays unchanged -----------------------------------------
    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        x = _as_array(x)
        return np.reshape(x, [x.shape[i] if s == 0 else s for i, s in enumerate(shape)])

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        return np.transpose(_as_array(x), perm)

    def unsqueeze(self, x: Any, axis: int) -> Any:
        return np.expand_dims(_as_array(x), axis)

    def squeeze(self, x: Any, axis: int) -> Any:
        return np.squeeze(_as_array(x), axis)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        if any(_is_sym(x) for x in xs):
            xs = [self._objects(x) for x in xs]
        return np.concatenate(list(xs), axis=axis)

    def slice(self, x: Any, axis: int, start: int, end: int | None = None) -> Any:
        x = _as_array(x)
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, end)
        return x[tuple(index)]

    def pad_front(self, x: Any, axis: int, n: int, value: float) -> Any:
        x = self._objects(x)
        shape = list(x.shape)
        shape[axis] = n
        return np.concatenate([self._objects(np.full(shape, value, dtype=np.float32)), x], axis=axis)

    def split(self, x: Any, axis: int, sizes: Sequence[int]) -> list[Any]:
        return np.split(_as_array(x), np.cumsum(sizes)[:-1], axis=axis)

    def static_len(self, x: Any, axis: int, bound: int) -> int:
        return _as_array(x).shape[axis]  # the true length: symbolic shapes are concrete


def _is_zero(x: Any) -> bool:
    return z3.is_rational_value(x) and x.as_fraction() == 0


def _is_one(x: Any) -> bool:
    return z3.is_rational_value(x) and x.as_fraction() == 1


def _fold_real(op: str, a: Any, b: Any) -> Any:
    """x + 0 = x, x - 0 = x, 0 * x = 0, 1 * x = x over the reals, so a masked key (exp(-inf) = 0) leaves no
    trace and the two forms of a computation become the same term; None where nothing folds."""
    if op in ("add", "sub") and _is_zero(b):
        return a
    if op == "add" and _is_zero(a):
        return b
    if op == "mul":
        if _is_zero(a) or _is_zero(b):
            return z3.RealVal(0)
        if _is_one(a):
            return b
        if _is_one(b):
            return a
    return None


def term(x: Any) -> Any:
    """The single term in a 0-d or 1-element object array (or the term itself)."""
    arr = _as_array(x)
    if arr.size != 1:
        raise ValueError(f"expected one term, got shape {arr.shape}")
    return arr.reshape(())[()]


def all_equal(o: Z3Ops, a: Any, b: Any) -> z3.BoolRef:
    """The conjunction of elementwise equalities (domain equality: IEEE == for floats) of two same-shape arrays."""
    a, b = o._objects(a), o._objects(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return z3.And(*[_eq_term(o, x, y) for x, y in zip(a.flat, b.flat)])


def _eq_term(o: Z3Ops, x: Any, y: Any) -> Any:
    r = o._cmp("eq", x, y)
    return z3.BoolVal(bool(r)) if isinstance(r, (bool, np.bool_)) else r

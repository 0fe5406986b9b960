"""The numeric interpretation of the op vocabulary (spec/vocabulary.py): with :data:`NP` the model code *is* the
reference spec.

Each method evaluates the ONNX op its :class:`~lmstep.spec.vocabulary.Ops` docstring names with numpy, following
onnx's ReferenceEvaluator (onnx/reference/ops/op_*.py) op for op, so the spec and the exported graph run by that
evaluator agree bit for bit. Values are numpy arrays; numpy returns 0-d results as numpy scalars, which behave
as 0-d arrays everywhere here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .vocabulary import Ops

I64 = np.int64


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # onnx reference op_sigmoid: the branch that never overflows exp.
    with np.errstate(over="ignore"):
        e = np.exp(x)
        return np.where(x > 0, 1.0 / (1.0 + np.exp(-x)), e / (1.0 + e)).astype(x.dtype)


class NumpyOps:
    """Numeric interpretation: each method is the ONNX op of the same name (spec/vocabulary.py), with numpy."""

    # -- values -------------------------------------------------------------------------------------------
    def const(self, value: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
        """Constant."""
        return np.asarray(value, dtype=dtype)

    def cast(self, x: npt.ArrayLike, dtype: npt.DTypeLike) -> np.ndarray:
        """Cast."""
        return np.asarray(x).astype(dtype)

    def shape(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Shape(start=axis, end=axis+1) squeezed: one dimension as an int64 scalar."""
        return np.asarray(x.shape[axis], I64)

    def arange(self, start: float | np.ndarray, limit: float | np.ndarray) -> np.ndarray:
        """Range(start, limit, 1) over int64."""
        return np.arange(int(start), int(limit), dtype=I64)

    # -- elementwise --------------------------------------------------------------------------------------
    def add(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Add."""
        return np.add(a, b)

    def sub(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Sub."""
        return np.subtract(a, b)

    def mul(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Mul."""
        return np.multiply(a, b)

    def div(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Div (true division for floats)."""
        return np.divide(a, b)

    def int_div(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Div on int64: ONNX integer division truncates toward zero (C semantics), unlike numpy's ``//``."""
        a, b = np.asarray(a, I64), np.asarray(b, I64)
        return (np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)).astype(I64)

    def neg(self, x: npt.ArrayLike) -> np.ndarray:
        """Neg."""
        return np.negative(x)

    def min(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Min (two inputs)."""
        return np.minimum(a, b)

    def max(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Max (two inputs)."""
        return np.maximum(a, b)

    def exp(self, x: npt.ArrayLike) -> np.ndarray:
        """Exp."""
        return np.exp(x)

    def sqrt(self, x: npt.ArrayLike) -> np.ndarray:
        """Sqrt."""
        return np.sqrt(x)

    def reciprocal(self, x: npt.ArrayLike) -> np.ndarray:
        """Reciprocal."""
        return np.reciprocal(x)

    def tanh(self, x: npt.ArrayLike) -> np.ndarray:
        """Tanh."""
        return np.tanh(x)

    def cos(self, x: npt.ArrayLike) -> np.ndarray:
        """Cos."""
        return np.cos(x)

    def sin(self, x: npt.ArrayLike) -> np.ndarray:
        """Sin."""
        return np.sin(x)

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        """Sigmoid."""
        return _sigmoid(x)

    def softplus(self, x: np.ndarray) -> np.ndarray:
        """Softplus: log(1 + exp(x)), computed without overflow (onnx reference: logaddexp(0, x))."""
        return np.logaddexp(x.dtype.type(0), x).astype(x.dtype)

    # -- comparisons and selection ------------------------------------------------------------------------
    def less(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Less."""
        return np.less(a, b)

    def less_equal(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """LessOrEqual."""
        return np.less_equal(a, b)

    def greater(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Greater."""
        return np.greater(a, b)

    def equal(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Equal."""
        return np.equal(a, b)

    def logical_and(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """And."""
        return np.logical_and(a, b)

    def where(self, cond: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Where (a and b share a dtype)."""
        a, b = np.asarray(a), np.asarray(b)
        return np.where(cond, a, b).astype(a.dtype)

    # -- reductions and scans -----------------------------------------------------------------------------
    def reduce_sum(self, x: np.ndarray, axis: int, keepdims: bool = True) -> np.ndarray:
        """ReduceSum over one axis."""
        return np.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)

    def reduce_mean(self, x: np.ndarray, axis: int, keepdims: bool = True) -> np.ndarray:
        """ReduceMean over one axis."""
        return np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype)

    def reduce_max(self, x: np.ndarray, axis: int, keepdims: bool = True) -> np.ndarray:
        """ReduceMax over one axis."""
        return np.max(x, axis=axis, keepdims=keepdims)

    def argmax(self, x: np.ndarray, axis: int) -> np.ndarray:
        """ArgMax(keepdims=0, select_last_index=0): the first (lowest) index of the maximum."""
        return np.argmax(x, axis=axis).astype(I64)

    def cumsum(self, x: np.ndarray, axis: int) -> np.ndarray:
        """CumSum: sequential, in x's dtype (numpy accumulate is a left-to-right loop)."""
        return np.cumsum(x, axis=axis, dtype=x.dtype)

    def topk(self, x: np.ndarray, k: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TopK(axis=-1, largest=1, sorted=1): values descending, equal values by lower index first."""
        order = np.argsort(-x, axis=-1, kind="stable")[..., : int(k)]  # negation is exact; stable keeps index order
        return np.take_along_axis(x, order, axis=-1), order.astype(I64)

    # -- linear algebra and indexing ----------------------------------------------------------------------
    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """MatMul (numpy broadcasting rules)."""
        return np.matmul(a, b)

    def gather(self, data: np.ndarray, indices: np.ndarray, axis: int = 0) -> np.ndarray:
        """Gather."""
        return np.take(data, indices, axis=axis)

    def gather_last(self, data: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """GatherElements(axis=-1)."""
        return np.take_along_axis(data, indices, axis=-1)

    # -- shape ----------------------------------------------------------------------------------------------
    def reshape(self, x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """Reshape with ONNX semantics: 0 copies the input dimension, -1 is inferred."""
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return np.reshape(x, shape)

    def transpose(self, x: np.ndarray, perm: Sequence[int]) -> np.ndarray:
        """Transpose."""
        return np.transpose(x, perm)

    def unsqueeze(self, x: npt.ArrayLike, axis: int) -> np.ndarray:
        """Unsqueeze (one axis)."""
        return np.expand_dims(x, axis)

    def squeeze(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Squeeze (one axis)."""
        return np.squeeze(x, axis)

    def concat(self, xs: Sequence[np.ndarray], axis: int) -> np.ndarray:
        """Concat."""
        return np.concatenate(list(xs), axis=axis)

    def slice(self, x: np.ndarray, axis: int, start: int, end: int | None = None) -> np.ndarray:
        """Slice on one axis with static bounds (negative counts from the end; None = to the end)."""
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, end)
        return x[tuple(index)]

    def pad_front(self, x: np.ndarray, axis: int, n: int, value: float) -> np.ndarray:
        """Pad(mode=constant): n copies of ``value`` before the first element of ``axis`` (static n)."""
        widths = [(0, 0)] * x.ndim
        widths[axis] = (n, 0)
        return np.pad(x, widths, mode="constant", constant_values=value)

    def split(self, x: np.ndarray, axis: int, sizes: Sequence[int]) -> list[np.ndarray]:
        """Split with static sizes."""
        cuts = np.cumsum(sizes)[:-1]
        return np.split(x, cuts, axis=axis)

    def static_len(self, x: np.ndarray, axis: int, bound: int) -> int:
        """A Python int >= the length of ``axis``, for unrolling a log-depth loop: the true length here.

        A graph does not know T, so its interpretation returns ``bound`` (the model's context limit);
        code using this must be correct for any value >= the true length.
        """
        return x.shape[axis]


NP = NumpyOps()


def _widened(dtype: npt.DTypeLike | None) -> npt.DTypeLike | None:
    return np.float64 if dtype is not None and np.dtype(dtype) == np.float32 else dtype


class WideOps(NumpyOps):
    """The same vocabulary evaluated in float64: what the spec's float32 arithmetic approximates.

    Only the two ops that name a dtype differ: a float32 constant or cast becomes float64 (weights and states are
    widened by the caller, exactly: every float32 is a float64). Every other op follows numpy's dtype of its
    operands, so the model code runs unchanged in float64. spec/conformance.py compares the float32 spec with this
    evaluation of the same functions to bound, per comparison, how far a correct float32 computation may err
    (SPEC.md §8).
    """

    WIDENED_OPS = frozenset({"const", "cast"})  # the ops it reinterprets (tests/test_vocabulary.py)

    def const(self, value: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
        """Constant, float32 widened to float64."""
        a = np.asarray(value, dtype=_widened(dtype))
        return a.astype(np.float64) if a.dtype == np.float32 else a

    def cast(self, x: npt.ArrayLike, dtype: npt.DTypeLike) -> np.ndarray:
        """Cast, to float64 where the spec casts to float32."""
        return np.asarray(x).astype(_widened(dtype))


WIDE = WideOps()
if TYPE_CHECKING:
    _numpy_is_the_vocabulary: Ops[np.ndarray] = NP  # mypy checks NumpyOps against the Protocol (tests/test_types.py)
    _wide_is_the_vocabulary: Ops[np.ndarray] = WIDE

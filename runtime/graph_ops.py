"""The graph interpretation of the ops vocabulary: each method emits the one ONNX op named in
``lmstep.spec.ops.NumpyOps`` (same names, same signatures), through spox at a pinned opset.

Model code is not changed or retyped: ``llama.decode(GraphOps(), cfg, w, ...)`` builds the graph. Python
numbers that the model code passes become constants with the dtype of the other operand, which is what numpy's
weak-scalar rule (NEP 50) does in the numeric spec: ``x * 0.5`` is float32 when x is float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import spox.opset.ai.onnx.v21 as op
from spox import Var

OPSET = 21  # ai.onnx opset of every exported graph: ORT >= 1.18 and onnx's ReferenceEvaluator implement all of it
INT64_MAX = np.iinfo(np.int64).max


def _dtype(x: Any) -> np.dtype | None:
    """The element type of a graph value (None for a Python number)."""
    if isinstance(x, Var):
        return x.unwrap_tensor().dtype
    if isinstance(x, np.ndarray | np.generic):
        return x.dtype
    return None


def _lift(x: Any, like: Any = None) -> Var:
    """A graph value for ``x``: Vars unchanged; numpy values keep their dtype; Python numbers take the dtype
    of ``like`` (the other operand), as numpy's weak scalars do, else float32 / int64 / bool."""
    if isinstance(x, Var):
        return x
    if isinstance(x, np.ndarray | np.generic):
        return op.const(np.asarray(x))
    dtype = _dtype(like)
    if dtype is None:
        dtype = (
            np.dtype(bool)
            if isinstance(x, bool)
            else np.dtype(np.int64)
            if isinstance(x, int)
            else np.dtype(np.float32)
        )
    return op.const(np.asarray(x, dtype=dtype))


def _pair(a: Any, b: Any) -> tuple[Var, Var]:
    """Both operands as graph values; a Python number takes the other side's dtype."""
    return _lift(a, b), _lift(b, a)


def _ints(values: Sequence[int]) -> Var:
    return op.const(np.asarray(list(values), dtype=np.int64))


class GraphOps:
    """Graph interpretation: each method returns spox Vars for the ONNX op of the same name in ops.NumpyOps."""

    # -- values -------------------------------------------------------------------------------------------
    def const(self, value: Any, dtype: Any = None) -> Var:
        if isinstance(value, Var):  # already a graph value (a graph input such as temperature): used as is
            if dtype is not None and _dtype(value) != np.dtype(dtype):
                raise TypeError(f"graph value of type {_dtype(value)} used where the spec expects {np.dtype(dtype)}")
            return value
        return op.const(np.asarray(value, dtype=dtype))

    def cast(self, x: Any, dtype: Any) -> Var:
        return op.cast(_lift(x), to=np.dtype(dtype))

    def shape(self, x: Var, axis: int) -> Var:
        # Shape(start, end) gives a 1-element vector; Squeeze makes it the int64 scalar NumpyOps.shape returns.
        end = None if axis == -1 else axis + 1
        return op.squeeze(op.shape(x, start=axis, end=end), _ints([0]))

    def arange(self, start: Any, limit: Any) -> Var:
        start, limit = _lift(start, np.int64(0)), _lift(limit, np.int64(0))
        return op.range(start, limit, op.const(np.int64(1)))

    # -- elementwise --------------------------------------------------------------------------------------
    def add(self, a: Any, b: Any) -> Var:
        return op.add(*_pair(a, b))

    def sub(self, a: Any, b: Any) -> Var:
        return op.sub(*_pair(a, b))

    def mul(self, a: Any, b: Any) -> Var:
        return op.mul(*_pair(a, b))

    def div(self, a: Any, b: Any) -> Var:
        return op.div(*_pair(a, b))

    def int_div(self, a: Any, b: Any) -> Var:
        return op.div(_lift(a, np.int64(0)), _lift(b, np.int64(0)))

    def neg(self, x: Any) -> Var:
        return op.neg(_lift(x))

    def min(self, a: Any, b: Any) -> Var:
        return op.min(list(_pair(a, b)))

    def max(self, a: Any, b: Any) -> Var:
        return op.max(list(_pair(a, b)))

    def exp(self, x: Any) -> Var:
        return op.exp(_lift(x))

    def sqrt(self, x: Any) -> Var:
        return op.sqrt(_lift(x))

    def reciprocal(self, x: Any) -> Var:
        return op.reciprocal(_lift(x))

    def tanh(self, x: Any) -> Var:
        return op.tanh(_lift(x))

    def cos(self, x: Any) -> Var:
        return op.cos(_lift(x))

    def sin(self, x: Any) -> Var:
        return op.sin(_lift(x))

    def sigmoid(self, x: Any) -> Var:
        return op.sigmoid(_lift(x))

    def softplus(self, x: Any) -> Var:
        return op.softplus(_lift(x))

    # -- comparisons and selection ------------------------------------------------------------------------
    def less(self, a: Any, b: Any) -> Var:
        return op.less(*_pair(a, b))

    def less_equal(self, a: Any, b: Any) -> Var:
        return op.less_or_equal(*_pair(a, b))

    def greater(self, a: Any, b: Any) -> Var:
        return op.greater(*_pair(a, b))

    def equal(self, a: Any, b: Any) -> Var:
        return op.equal(*_pair(a, b))

    def logical_and(self, a: Any, b: Any) -> Var:
        return op.and_(_lift(a), _lift(b))

    def where(self, cond: Any, a: Any, b: Any) -> Var:
        a, b = _pair(a, b)
        return op.where(_lift(cond), a, b)

    # -- reductions and scans -----------------------------------------------------------------------------
    def reduce_sum(self, x: Var, axis: int, keepdims: bool = True) -> Var:
        return op.reduce_sum(x, _ints([axis]), keepdims=int(keepdims))

    def reduce_mean(self, x: Var, axis: int, keepdims: bool = True) -> Var:
        return op.reduce_mean(x, _ints([axis]), keepdims=int(keepdims))

    def reduce_max(self, x: Var, axis: int, keepdims: bool = True) -> Var:
        return op.reduce_max(x, _ints([axis]), keepdims=int(keepdims))

    def argmax(self, x: Var, axis: int) -> Var:
        return op.arg_max(x, axis=axis, keepdims=0, select_last_index=0)

    def cumsum(self, x: Var, axis: int) -> Var:
        return op.cum_sum(x, op.const(np.int64(axis)))

    def topk(self, x: Var, k: Any) -> tuple[Var, Var]:
        values, indices = op.top_k(x, op.reshape(_lift(k, np.int64(0)), _ints([1])), axis=-1, largest=1, sorted=1)
        return values, indices

    # -- linear algebra and indexing ----------------------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Var:
        return op.matmul(_lift(a), _lift(b))

    def gather(self, data: Any, indices: Any, axis: int = 0) -> Var:
        return op.gather(_lift(data), _lift(indices, np.int64(0)), axis=axis)

    def gather_last(self, data: Var, indices: Var) -> Var:
        # The last axis spelled as a positive number: onnx's ReferenceEvaluator (1.23) mishandles axis=-1 here.
        return op.gather_elements(data, indices, axis=len(data.unwrap_tensor().shape) - 1)

    # -- shape ----------------------------------------------------------------------------------------------
    def reshape(self, x: Any, shape: Sequence[int]) -> Var:
        return op.reshape(_lift(x), _ints(shape))

    def transpose(self, x: Any, perm: Sequence[int]) -> Var:
        return op.transpose(_lift(x), perm=list(perm))

    def unsqueeze(self, x: Any, axis: int) -> Var:
        return op.unsqueeze(_lift(x), _ints([axis]))

    def squeeze(self, x: Any, axis: int) -> Var:
        return op.squeeze(_lift(x), _ints([axis]))

    def concat(self, xs: Sequence[Any], axis: int) -> Var:
        return op.concat([_lift(x) for x in xs], axis=axis)

    def slice(self, x: Any, axis: int, start: int, end: int | None = None) -> Var:
        return op.slice(_lift(x), _ints([start]), _ints([INT64_MAX if end is None else end]), _ints([axis]))

    def pad_front(self, x: Any, axis: int, n: int, value: float) -> Var:
        x = _lift(x)
        # Pads for every axis, no ``axes`` input: onnxruntime's transpose optimizer (1.32) permutes a Pad's pads as
        # if they covered every axis, and corrupted the axes form when it pushed a Transpose through the Pad.
        rank = len(x.unwrap_tensor().shape)
        pads = [0] * (2 * rank)
        pads[axis % rank] = n
        return op.pad(x, _ints(pads), _lift(value, x), mode="constant")

    def split(self, x: Any, axis: int, sizes: Sequence[int]) -> list[Var]:
        return list(op.split(_lift(x), _ints(sizes), axis=axis))  # output count from the sizes' static length

    def static_len(self, x: Any, axis: int, bound: int) -> int:
        # A graph does not know the length; model code using this is correct for any bound >= the length.
        return bound


GRAPH = GraphOps()

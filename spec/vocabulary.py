"""The op vocabulary: the contract between the model code and the interpretations that run it.

Model code (layers.py, llama.py, gpt2.py, mamba.py, sampler.py) is written once against an ``o: Ops[T]``, where
``T`` is the value type of one interpretation, and runs unchanged on each:

    interpretation                         T (its values)                         where
    NumpyOps (the numeric spec)            numpy arrays (and numpy's 0-d scalars) spec/ops.py
    GraphOps (builds the ONNX graph)       spox ``Var``                           runtime/graph_ops.py
    Z3Ops (proofs)                         numpy object arrays of Z3 terms        proofs/symbolic.py
    IntNumpyOps (bit-vector replays)       integer numpy arrays                   proofs/integers.py
    RoundingOps (float32 error bounds)     Enclosure: float64 mid +- rad          proofs/rounding.py

Every op is exactly one ONNX operator (named first in its docstring) with ONNX semantics, which is what makes
the exported graph the spec. The contract is checked three ways: mypy checks the model code and NumpyOps
against :class:`Ops` (tests/test_types.py), and tests/test_vocabulary.py checks by introspection that every
interpretation has every op with the same parameters and defaults.

Rules for model code written against ``o``:
- arrays are float32 (activations, weights) or int64 (tokens, positions, indices); a Python number passed as an
  operand (:data:`Operand`) is weak (numpy >= 2, NEP 50): it takes the other operand's dtype and never widens;
- shapes are only touched through ``reshape`` (0 = keep that input dim, -1 = infer), ``shape`` and ``arange``,
  because a graph does not know T or B in advance;
- static arguments (axes, perms, slice bounds, split sizes) are Python ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias, TypeVar

import numpy.typing as npt

T = TypeVar("T")
"""The value type of one interpretation (see the table above)."""

Operand: TypeAlias = T | float
"""A value, or a Python number (int, float or bool: PEP 484's numeric tower) that takes the other operand's dtype."""


class Ops(Protocol[T]):
    """The op vocabulary over values of type ``T``; each method is the ONNX operator its docstring names."""

    # -- values -------------------------------------------------------------------------------------------
    def const(self, value: T | npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> T:
        """Constant (or an initializer). A value that already belongs to the interpretation (a graph input, a
        term) is returned unchanged, so model code may pass either a number or a value."""
        ...

    def cast(self, x: Operand[T], dtype: npt.DTypeLike) -> T:
        """Cast."""
        ...

    def shape(self, x: T, axis: int) -> T:
        """Shape(start=axis, end=axis+1), squeezed: one dimension as an int64 scalar."""
        ...

    def arange(self, start: Operand[T], limit: Operand[T]) -> T:
        """Range(start, limit, 1) over int64."""
        ...

    # -- elementwise --------------------------------------------------------------------------------------
    def add(self, a: Operand[T], b: Operand[T]) -> T:
        """Add."""
        ...

    def sub(self, a: Operand[T], b: Operand[T]) -> T:
        """Sub."""
        ...

    def mul(self, a: Operand[T], b: Operand[T]) -> T:
        """Mul."""
        ...

    def div(self, a: Operand[T], b: Operand[T]) -> T:
        """Div (true division on floats)."""
        ...

    def int_div(self, a: Operand[T], b: Operand[T]) -> T:
        """Div on int64: truncates toward zero (C semantics), unlike Python's ``//``."""
        ...

    def neg(self, x: Operand[T]) -> T:
        """Neg."""
        ...

    def min(self, a: Operand[T], b: Operand[T]) -> T:
        """Min (two inputs)."""
        ...

    def max(self, a: Operand[T], b: Operand[T]) -> T:
        """Max (two inputs)."""
        ...

    def exp(self, x: T) -> T:
        """Exp."""
        ...

    def sqrt(self, x: T) -> T:
        """Sqrt."""
        ...

    def reciprocal(self, x: T) -> T:
        """Reciprocal."""
        ...

    def tanh(self, x: T) -> T:
        """Tanh."""
        ...

    def cos(self, x: T) -> T:
        """Cos."""
        ...

    def sin(self, x: T) -> T:
        """Sin."""
        ...

    def sigmoid(self, x: T) -> T:
        """Sigmoid."""
        ...

    def softplus(self, x: T) -> T:
        """Softplus: log(1 + exp(x)), without overflow."""
        ...

    # -- comparisons and selection ------------------------------------------------------------------------
    def less(self, a: Operand[T], b: Operand[T]) -> T:
        """Less."""
        ...

    def less_equal(self, a: Operand[T], b: Operand[T]) -> T:
        """LessOrEqual."""
        ...

    def greater(self, a: Operand[T], b: Operand[T]) -> T:
        """Greater."""
        ...

    def equal(self, a: Operand[T], b: Operand[T]) -> T:
        """Equal."""
        ...

    def logical_and(self, a: T, b: T) -> T:
        """And."""
        ...

    def where(self, cond: T, a: Operand[T], b: Operand[T]) -> T:
        """Where (``a`` and ``b`` share a dtype)."""
        ...

    # -- reductions and scans -----------------------------------------------------------------------------
    def reduce_sum(self, x: T, axis: int, keepdims: bool = True) -> T:
        """ReduceSum over one axis."""
        ...

    def reduce_mean(self, x: T, axis: int, keepdims: bool = True) -> T:
        """ReduceMean over one axis."""
        ...

    def reduce_max(self, x: T, axis: int, keepdims: bool = True) -> T:
        """ReduceMax over one axis."""
        ...

    def argmax(self, x: T, axis: int) -> T:
        """ArgMax(keepdims=0, select_last_index=0): the first (lowest) index of the maximum."""
        ...

    def cumsum(self, x: T, axis: int) -> T:
        """CumSum: sequential, left to right, in x's dtype."""
        ...

    def topk(self, x: T, k: Operand[T]) -> tuple[T, T]:
        """TopK(axis=-1, largest=1, sorted=1): (values descending, their indices); equal values by lower index."""
        ...

    # -- linear algebra and indexing ----------------------------------------------------------------------
    def matmul(self, a: T, b: T) -> T:
        """MatMul (numpy broadcasting rules)."""
        ...

    def gather(self, data: T, indices: T, axis: int = 0) -> T:
        """Gather."""
        ...

    def gather_last(self, data: T, indices: T) -> T:
        """GatherElements(axis=-1)."""
        ...

    # -- shape ----------------------------------------------------------------------------------------------
    def reshape(self, x: T, shape: Sequence[int]) -> T:
        """Reshape: 0 copies the input dimension, -1 is inferred."""
        ...

    def transpose(self, x: T, perm: Sequence[int]) -> T:
        """Transpose."""
        ...

    def unsqueeze(self, x: T, axis: int) -> T:
        """Unsqueeze (one axis)."""
        ...

    def squeeze(self, x: T, axis: int) -> T:
        """Squeeze (one axis)."""
        ...

    def concat(self, xs: Sequence[T], axis: int) -> T:
        """Concat."""
        ...

    def slice(self, x: T, axis: int, start: int, end: int | None = None) -> T:
        """Slice on one axis with static bounds (negative counts from the end; None = to the end)."""
        ...

    def pad_front(self, x: T, axis: int, n: int, value: float) -> T:
        """Pad(mode=constant): n copies of ``value`` before the first element of ``axis`` (static n)."""
        ...

    def split(self, x: T, axis: int, sizes: Sequence[int]) -> list[T]:
        """Split with static sizes."""
        ...

    def static_len(self, x: T, axis: int, bound: int) -> int:
        """No op: a Python int >= the length of ``axis``, for unrolling a log-depth loop. The numeric and symbolic
        interpretations return the true length; a graph does not know it and returns ``bound``, so code using
        this must be correct for any value >= the true length."""
        ...


class Appendable(Protocol[T]):
    """A sequence buffer along one axis (a KV cache): ``append(rows) -> (all rows so far, the longer buffer)``.

    Numeric: arrays.SeqBuffer (amortized O(1), immutable); graph: a Concat (runtime/export.py GraphCache)."""

    def append(self, rows: T) -> tuple[T, Appendable[T]]: ...


KVCache = tuple[tuple[Appendable[T], Appendable[T]], ...]
"""A transformer's state: per layer, its key and its value buffer ([B, K, S, D] rows along axis 2)."""

"""Weights kept in the checkpoint's own number format and widened to float32 only where they are used.

A bfloat16 checkpoint of N parameters is 2N bytes on disk; widened to float32 it is 4N. Widening it all at load
time (as a plain float32 ``Weights`` would need) puts 5x the checkpoint in memory at the peak (the file's pages,
the float32 copy, the transposed copy) and 2x for as long as the model lives, so an 8B bf16 checkpoint (16 GB)
could not run on a 24 GB machine. A :class:`StoredArray` instead holds the stored bits (read-only: a memory-mapped
view of the file, or a copy in our layout) and hands out a float32 array that nothing else refers to each time
numpy asks for one (``__array__``; written into a reusable :class:`Scratch` buffer). The spec's numeric ops
(ops.NumpyOps) are numpy calls, so ``np.matmul(x, w)`` widens one matrix, uses it and drops it: at most one
widened matrix is alive at a time, and the values are exactly those of the eager float32 weights (widening bf16
and f16 is exact; f64 rounds to nearest, once, the same way).

A StoredArray is a value: read-only, compared by its float32 values (shape, dtype, elements), and it never
changes; it may only be shared, never written. Only formats that differ from float32 are wrapped: float32
tensors stay plain read-only arrays (``float32_leaf``).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Literal

import numpy as np

from . import safetensors_io


class StoredArray:
    """A read-only float32 tensor whose values live in ``raw``, stored as ``fmt`` ("BF16" | "F16" | "F64").

    Behaves as an array for the spec's numpy ops: ``np.asarray(a)`` (and so every ufunc and ``np.matmul``)
    widens; ``a.take(indices, axis)`` (numpy's ``np.take``, the spec's ``gather``) and ``a[index]`` widen only
    the rows asked for; ``a.T`` / ``a.transpose`` widen then transpose (a view of the fresh array).
    """

    __slots__ = ("raw", "fmt", "scratch", "__weakref__")
    dtype = np.dtype(np.float32)  # the value's dtype; ``raw.dtype`` is how it is stored

    def __init__(self, raw: np.ndarray, fmt: str, scratch: Scratch | None = None):
        if fmt not in ("BF16", "F16", "F64"):
            raise ValueError(f"StoredArray holds BF16, F16 or F64 data, not {fmt!r} (float32 needs no widening)")
        self.raw, self.fmt = _read_only(raw), fmt
        self.scratch = scratch  # where to widen (None: a fresh array each time)

    # -- what numpy reads -------------------------------------------------------------------------------------
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a StoredArray has no float32 buffer to share: it is widened on every use")
        out = None if self.scratch is None else self.scratch.get(self.raw.shape)
        out = safetensors_io.to_float32(self.raw, self.fmt, out=out)
        return out if dtype is None else out.astype(dtype, copy=False)

    def widen(self) -> np.ndarray:
        """A float32 array with this tensor's values, which nothing else refers to (a free scratch buffer, or new)."""
        return self.__array__()

    def take(
        self, indices: Any, axis: int | None = None, out: Any = None, mode: Literal["raise", "wrap", "clip"] = "raise"
    ) -> np.ndarray:
        rows = safetensors_io.to_float32(np.take(self.raw, indices, axis=axis, mode=mode), self.fmt)
        if out is not None:
            np.copyto(out, rows)
            return out
        return rows

    def __getitem__(self, index: Any) -> np.ndarray:
        return safetensors_io.to_float32(np.asarray(self.raw[index]), self.fmt)

    def transpose(self, *axes: Any) -> np.ndarray:
        return self.widen().transpose(*axes)

    @property
    def T(self) -> np.ndarray:  # noqa: N802 (numpy's name)
        return self.widen().T

    @property
    def shape(self) -> tuple[int, ...]:
        return self.raw.shape

    @property
    def ndim(self) -> int:
        return self.raw.ndim

    @property
    def size(self) -> int:
        return self.raw.size

    @property
    def nbytes(self) -> int:
        """Bytes of the float32 value (what ``np.asarray`` allocates), as for the plain array it stands for."""
        return self.raw.size * 4

    @property
    def stored_nbytes(self) -> int:
        return self.raw.nbytes

    def __len__(self) -> int:
        return len(self.raw)

    # -- a value --------------------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return values_equal(self, other)

    __hash__ = None  # type: ignore[assignment]  # equal values, not identity: unhashable, like an ndarray

    def __repr__(self) -> str:
        return f"StoredArray(shape={self.shape}, stored as {self.fmt}, widened to float32 on use)"


ArrayLike = np.ndarray | StoredArray


class Scratch(threading.local):
    """Buffers that widened tensors are written into, one per shape (and per thread), each reused once nothing
    refers to it any more: its reference count is back to the pool's own.

    A fresh 46 MB array costs 4.7 ms of page faults on top of 3.4 ms of widening (a 2048 x 5632 bf16 matrix,
    measured), which made the spec's decode step ~1.5x slower at 1.1B parameters (700 vs 475 ms). A caller that
    keeps a widened array (or any view of it) keeps it out of the pool: the next use widens into a new buffer, so
    an array handed out is never overwritten. One Scratch serves the StoredArrays of one model, and goes with it.
    Small tensors are cheap to allocate: not pooled."""

    MIN_BYTES = 1 << 20
    _FREE_REFS = 3  # the dict, the local name in get(), getrefcount's own argument

    def __init__(self) -> None:
        self.buffers: dict[tuple[int, ...], np.ndarray] = {}

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of ``shape`` that nothing else refers to: the pooled one when free, else a new one."""
        if 4 * int(np.prod(shape, dtype=np.int64)) < self.MIN_BYTES or not hasattr(sys, "getrefcount"):
            return np.empty(shape, np.float32)
        buf = self.buffers.get(shape)
        if buf is None or sys.getrefcount(buf) > self._FREE_REFS:
            buf = self.buffers[shape] = np.empty(shape, np.float32)
        return buf


def is_leaf(x: Any) -> bool:
    """A weight tensor: a numpy array or a StoredArray (what tree_leaves / tree_map visit)."""
    return isinstance(x, np.ndarray | StoredArray)


def values_equal(a: Any, b: Any, rows: int = 1 << 20) -> bool:
    """Equal float32 tensors: same shape, float32 values equal (as ``np.array_equal``; -0.0 == 0.0, NaN != NaN).

    Either side may be a StoredArray; the comparison widens at most ``rows`` leading-axis rows of each at once, so
    comparing two large weights never holds them widened."""
    if not (is_leaf(a) and is_leaf(b)) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    if a.ndim == 0:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    step = max(1, rows // max(1, a.size // max(1, a.shape[0])))
    return all(np.array_equal(_rows(a, i, i + step), _rows(b, i, i + step)) for i in range(0, a.shape[0], step))


def _rows(a: ArrayLike, start: int, stop: int) -> np.ndarray:
    return a[start:stop] if isinstance(a, StoredArray) else np.asarray(a[start:stop])


def float32_leaf(raw: np.ndarray, fmt: str, scratch: Scratch | None = None) -> ArrayLike:
    """The weight for stored data ``raw`` of safetensors dtype ``fmt``: float32 data as a read-only array used in
    place (no copy), anything else wrapped to be widened on use (into ``scratch``'s buffers)."""
    if fmt == "F32":
        if raw.dtype != np.float32:  # non-native byte order (a big-endian host): one converted copy
            raw = raw.astype(np.float32)
        return _read_only(raw)
    return StoredArray(raw, fmt, scratch)


def _read_only(raw: np.ndarray) -> np.ndarray:
    """``raw`` itself when it is read-only, else a read-only copy (a value never shares writable memory)."""
    if raw.flags.writeable:
        raw = raw.copy()
        raw.flags.writeable = False
    return raw

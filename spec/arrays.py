"""Immutable arrays for attrs classes, and the append-only sequence buffer behind every KV cache.

Two facts drive this file (docs/design.md §2):
- attrs ``frozen=True`` stops ``s.k = x`` but not ``s.k[0] = 5``, and ``==`` on arrays is elementwise, which
  breaks attrs equality. Every array field therefore goes through :func:`array_options`: one copy, then
  ``writeable=False``, compared with ``np.array_equal``.
- Immutability must not cost O(T) per step. :class:`SeqBuffer` is an append-only buffer with spare capacity:
  a buffer of length t only ever reads rows ``[:t]``, so writing row t in place changes no existing value's
  meaning. Only a second append at the same row (a fork) or a full buffer copies.
- A sliding-window cache (SPEC.md §5, Mistral) keeps only its newest ``keep`` rows. The same buffer drops rows
  from the front by moving an offset (``start``), and when its fixed store of ``2 * keep`` rows is full it moves
  the kept rows to the front of a new store: one copy of at most ``keep`` rows per ``keep`` appends, so a step
  stays amortized O(1) and the memory bounded, at position 10000 as at 64.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .stored import StoredArray, is_leaf, values_equal


def frozen_array(value: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """A read-only copy of ``value`` (always a copy, so the caller's array can never change ours)."""
    arr = np.array(value, dtype=dtype, copy=True)
    arr.flags.writeable = False
    return arr


def _array_eq(a: np.ndarray, b: object) -> bool:
    return isinstance(b, type(a)) and a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def array_options(dtype: npt.DTypeLike | None = None) -> dict[str, Any]:
    """Options for an attrs field holding a read-only numpy array, compared exactly (shape, dtype and values):
    ``logits: np.ndarray = attrs.field(**array_options(np.float32))`` (spelled as an attrs.field call so that
    type checkers see the field)."""

    def convert(v: npt.ArrayLike) -> np.ndarray:
        if isinstance(v, np.ndarray) and not v.flags.writeable and (dtype is None or v.dtype == dtype):
            return v  # already frozen: sharing it is safe and keeps construction O(1)
        return frozen_array(v, dtype)

    return {"converter": convert, "eq": attrs.cmp_using(eq=_array_eq)}


def _weight(v: object) -> object:
    if isinstance(v, np.ndarray) and v.flags.writeable:
        return frozen_array(v)
    return v


def _leaf_eq(a: object, b: object) -> bool:
    if isinstance(a, StoredArray) or isinstance(b, StoredArray):
        return values_equal(a, b)  # a stored tensor equals any tensor of the same float32 values
    if isinstance(a, np.ndarray):
        return _array_eq(a, b)
    return a is b


# require_same_type=False: a StoredArray (a checkpoint's bf16 weight, spec/stored.py) equals a plain array of the
# same float32 values.
WEIGHT: dict[str, Any] = {"converter": _weight, "eq": attrs.cmp_using(eq=_leaf_eq, require_same_type=False)}
"""Options for an attrs field holding a weight: a numpy array (frozen), a StoredArray (spec/stored.py), or another
interpretation's value (a graph or symbolic value) as is, so one ``Weights[T]`` class serves every
interpretation: :func:`tree_map` replaces each tensor by the other interpretation's value.
``w: T = attrs.field(**WEIGHT)``."""


def as_tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    """attrs converter: any iterable (a list of layers) to a tuple."""
    return tuple(items)


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """Apply ``fn`` to every tensor leaf (numpy array or StoredArray) of a tree of attrs instances, tuples and
    lists (any such tree: the result's type depends on ``fn``)."""
    if is_leaf(tree):
        return fn(tree)
    if attrs.has(type(tree)):
        changes = {}
        for f in attrs.fields(type(tree)):
            changes[f.name] = tree_map(fn, getattr(tree, f.name))
        return attrs.evolve(tree, **{k.lstrip("_"): v for k, v in changes.items()})
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, x) for x in tree)
    return tree


def tree_leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, leaf) for every tensor leaf (numpy array or StoredArray), in field order; names follow the
    attrs field names."""
    if is_leaf(tree) or not (attrs.has(type(tree)) or isinstance(tree, (tuple, list))):
        return [(prefix, tree)] if is_leaf(tree) else []
    out: list[tuple[str, Any]] = []
    if attrs.has(type(tree)):
        items = [(f.name, getattr(tree, f.name)) for f in attrs.fields(type(tree))]
    else:
        items = [(str(i), x) for i, x in enumerate(tree)]
    for name, value in items:
        out.extend(tree_leaves(value, f"{prefix}.{name}" if prefix else name))
    return out


class _Store:
    """The mutable storage behind one or more :class:`SeqBuffer` values. Private: never handed out writable."""

    __slots__ = ("data", "filled", "lock")

    def __init__(self, data: np.ndarray, filled: int) -> None:
        self.data = data  # rows [filled:] along the sequence axis are spare capacity
        self.filled = filled  # high-water mark: rows [:filled] are claimed by some SeqBuffer value
        self.lock = threading.Lock()


MIN_CAPACITY = 16


@attrs.frozen(eq=False, repr=False)
class SeqBuffer:
    """An immutable sequence of rows along ``axis`` with amortized O(1) append.

    ``view()`` is rows ``[start:length]`` of the store (read-only, no copy). ``append(rows)`` returns
    ``(view_of_all, new_buffer)`` and never changes ``self``: it writes in place only when this buffer is the
    longest value on its store (nobody else has claimed row ``length``) and there is capacity; otherwise it
    copies into a fresh store. A fork (two appends to the same value) therefore costs one copy.

    ``keep`` (None: unbounded) bounds the buffer to its newest ``keep`` rows, a sliding-window KV cache:
    ``view_of_all`` is still every row the append saw (the kept rows, then the new ones: what the new queries
    attend to), but ``new_buffer`` holds only the last ``keep`` of them, in a store of at most
    ``max(MIN_CAPACITY, 2 * keep)`` rows (a chunk longer than the store is concatenated instead of stored).
    """

    store: _Store
    length: int  # rows [start:length] of the store are this value (length: the end, not the row count)
    axis: int
    start: int = 0
    keep: int | None = None

    @staticmethod
    def empty(
        shape_without_seq: tuple[int, ...], axis: int, dtype: npt.DTypeLike = np.float32, keep: int | None = None
    ) -> SeqBuffer:
        return SeqBuffer.from_array(np.zeros(_with_len(shape_without_seq, axis, 0), dtype), axis, keep)

    @staticmethod
    def from_array(rows: np.ndarray, axis: int, keep: int | None = None) -> SeqBuffer:
        """A buffer holding ``rows`` (its last ``keep`` rows when bounded)."""
        if keep is not None:
            rows = _rows(rows, axis, rows.shape[axis] - min(keep, rows.shape[axis]), rows.shape[axis])
        n = rows.shape[axis]
        cap = max(MIN_CAPACITY, n if keep is None else 2 * keep)
        data = np.zeros(_with_len(_without(rows.shape, axis), axis, cap), rows.dtype)
        _rows(data, axis, 0, n)[...] = rows
        return SeqBuffer(_Store(data, n), n, axis, 0, keep)

    @property
    def shape(self) -> tuple[int, ...]:
        return _with_len(_without(self.store.data.shape, self.axis), self.axis, self.length - self.start)

    @property
    def capacity(self) -> int:
        return self.store.data.shape[self.axis]

    def view(self) -> np.ndarray:
        v = _rows(self.store.data, self.axis, self.start, self.length)
        v.flags.writeable = False
        return v

    def append(self, rows: np.ndarray) -> tuple[np.ndarray, SeqBuffer]:
        n = rows.shape[self.axis]
        end = self.length + n
        store = self.store
        with store.lock:
            in_place = store.filled == self.length and end <= store.data.shape[self.axis]
            if in_place:
                store.filled = end  # claim rows [length:end] before writing them
        if in_place:
            _rows(store.data, self.axis, self.length, end)[...] = rows
            start = self.start if self.keep is None else max(self.start, end - self.keep)
            seen = _rows(store.data, self.axis, self.start, end)
            seen.flags.writeable = False
            return seen, SeqBuffer(store, end, self.axis, start, self.keep)
        if self.keep is not None:
            return self._append_and_wrap(rows)
        cap = max(MIN_CAPACITY, 2 * end)
        data = np.zeros(_with_len(_without(store.data.shape, self.axis), self.axis, cap), store.data.dtype)
        _rows(data, self.axis, 0, self.length)[...] = _rows(store.data, self.axis, 0, self.length)
        store = _Store(data, end)
        _rows(store.data, self.axis, self.length, end)[...] = rows
        new = SeqBuffer(store, end, self.axis)
        return new.view(), new

    def _append_and_wrap(self, rows: np.ndarray) -> tuple[np.ndarray, SeqBuffer]:
        """A bounded buffer's append that does not fit in place (a fork, or a full store): every row seen is one
        concatenation, and the newest ``keep`` of them move to the front of a fresh store (the "wrap" of a ring
        buffer, done as one copy)."""
        seen = np.concatenate([self.view(), rows], axis=self.axis)
        seen.flags.writeable = False
        assert self.keep is not None
        kept = min(self.keep, seen.shape[self.axis])
        cap = max(MIN_CAPACITY, 2 * self.keep)
        data = np.zeros(_with_len(_without(seen.shape, self.axis), self.axis, cap), seen.dtype)
        total = seen.shape[self.axis]
        _rows(data, self.axis, 0, kept)[...] = _rows(seen, self.axis, total - kept, total)
        return seen, SeqBuffer(_Store(data, kept), kept, self.axis, 0, self.keep)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeqBuffer) and self.axis == other.axis and _array_eq(self.view(), other.view())

    def __repr__(self) -> str:
        bound = "" if self.keep is None else f", keep={self.keep}"
        return f"SeqBuffer(shape={self.shape}, capacity={self.capacity}{bound})"


def _without(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1 :]


def _with_len(shape_without: tuple[int, ...], axis: int, n: int) -> tuple[int, ...]:
    return shape_without[:axis] + (n,) + shape_without[axis:]


def _rows(data: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * data.ndim
    index[axis] = slice(start, stop)
    return data[tuple(index)]

"""Implementations built around the spec (or a mutant of it, lmstep/mutants.py) for the checker.

``model`` is the spec's API as an implementation (adapters.ModelImpl). The others add what a real engine has and
the spec does not: batching (the batch law's positive control, with immutable handles or mutable sessions),
mutable sessions, caches with a capacity or pages, per-session state. A mutant names one of them in
``Mutant.engine``; the bugs that live only in an engine (an aliased fork, a rand kept from an earlier call, a cache
that evicts, a page boundary that mis-indexes, a fork that copies one row short, batch positions taken from the
padded length) are these overrides, every other bug is an edit of the spec's own code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lmstep.spec import Model, Sampler, State
from lmstep.spec.arrays import SeqBuffer
from lmstep.spec.errors import InputError
from lmstep.spec.ops import NP

from .adapters import ModelImpl


class BatchedImpl(ModelImpl):
    """A correct batched transformer implementation (the positive control of the batch law): the sequences'
    caches are left-padded to a common length and so are their new chunks, one forward call runs the batch
    [B, T] with per-row positions and a key mask that hides every padding slot, and each sequence's state is
    cut back out of the batch.

        row i:  [pad (P - P_i) | past_i | pad (T - n_i) | new_i]      P = max P_i, T = max n_i

    P_i is the rows sequence i's cache holds: pos, or min(pos, W - 1) with a sliding window, whose band counts
    real keys only (layers.window_mask), so the padding between past_i and new_i takes no place in it. The
    batch runs on unbounded buffers (the batch's trailing W - 1 slots may be padding); each sequence's state
    keeps its own last W - 1 real rows.
    """

    capabilities = frozenset({"fork", "state", "immutable", "batch"})

    def positions(self, states: Sequence[State], chunks: Sequence[Sequence[int]], P: int, T: int) -> np.ndarray:
        """Row i: padding, then positions P_i .. P_i + n_i - 1 (each sequence's own)."""
        return np.array([[0] * (T - len(c)) + list(range(s.pos, s.pos + len(c))) for s, c in zip(states, chunks)])

    def run_batch(self, states: Sequence[Any], chunks: Sequence[Sequence[int]]) -> list[tuple[Any, np.ndarray]]:
        m = self.model
        held = [s.cache[0][0].shape[2] for s in states]  # P_i
        P, T = max(held), max(len(c) for c in chunks)
        toks = np.array([[0] * (T - len(c)) + list(c) for c in chunks], np.int64)
        positions = self.positions(states, chunks, P, T).astype(np.int64)
        real = np.array(
            [[False] * (P - p) + [True] * p + [False] * (T - len(c)) + [True] * len(c) for p, c in zip(held, chunks)]
        )
        cache = tuple(
            tuple(
                SeqBuffer.from_array(np.concatenate([_left_pad(s.cache[layer][kv].view(), P) for s in states]), 2)
                for kv in range(2)
            )
            for layer in range(len(states[0].cache))
        )
        logits, cache = m.module.forward(NP, m.config, m.weights, toks, positions, cache, real)
        out = []
        for i, (s, c) in enumerate(zip(states, chunks)):
            slots = np.flatnonzero(real[i])  # the sequence's own slots, in order
            mine = tuple(
                tuple(
                    SeqBuffer.from_array(buf.view()[i : i + 1][:, :, slots], 2, own.keep)
                    for buf, own in zip(pair, s.cache[layer])
                )
                for layer, pair in enumerate(cache)
            )
            out.append((type(s)(s.arch, s.pos + len(c), mine), np.asarray(logits[i, T - len(c) :], np.float32)))
        return out


def _left_pad(kv: np.ndarray, length: int) -> np.ndarray:
    """[1, K, S, D] -> [1, K, length, D] with zeros in front."""
    return np.concatenate([np.zeros(kv.shape[:2] + (length - kv.shape[2],) + kv.shape[3:], kv.dtype), kv], axis=2)


def mutable(engine: type[ModelImpl]) -> type[ModelImpl]:
    """``engine`` with mutable sessions, like most real engines: a handle is a box updated in place, fork copies
    the box, and old handles are never valid again (no "immutable")."""

    class Mutable(engine):  # type: ignore[valid-type,misc]
        capabilities = engine.capabilities - {"immutable"}

        def init(self) -> list[Any]:
            return [engine.init(self)]

        def run(self, box: list[Any], tokens: Sequence[int]) -> tuple[list[Any], np.ndarray]:
            box[0], logits = engine.run(self, box[0], tokens)
            return box, logits

        def decode(self, box: list[Any], token: int, rand: float, sampler: Sampler | None = None) -> Any:
            box[0], logits, tok = engine.decode(self, box[0], token, rand, sampler)
            return box, logits, tok

        def fork(self, box: list[Any]) -> list[Any]:
            return [engine.fork(self, box[0])]

        def state(self, box: list[Any]) -> dict[str, np.ndarray]:
            return engine.state(self, box[0])

        def run_batch(self, boxes: Sequence[list[Any]], chunks: Sequence[Sequence[int]]) -> list[Any]:
            results = engine.run_batch(self, [b[0] for b in boxes], chunks)  # type: ignore[attr-defined]
            for b, (s, _) in zip(boxes, results):
                b[0] = s
            return [(b, z) for b, (_, z) in zip(boxes, results)]

    Mutable.__name__ = f"Mutable{engine.__name__}"
    return Mutable


MutableImpl = mutable(ModelImpl)


class AliasedFork(MutableImpl):  # type: ignore[valid-type,misc]
    """fork() hands back the same session object, so the snapshot moves when the original does."""

    def fork(self, box: list[Any]) -> list[Any]:
        return box


class RandShifted(ModelImpl):
    """Decode samples with the rand it was given on the previous call of the session (a rand index off by one)."""

    def init(self) -> tuple[Any, float]:
        return (ModelImpl.init(self), 0.5)

    def run(self, handle: tuple[Any, float], tokens: Sequence[int]) -> tuple[tuple[Any, float], np.ndarray]:
        state, logits = ModelImpl.run(self, handle[0], tokens)
        return (state, handle[1]), logits

    def decode(self, handle: Any, token: int, rand: float, sampler: Sampler | None = None) -> Any:
        state, logits, _ = ModelImpl.decode(self, handle[0], token, rand, sampler)
        return (state, rand), logits, self.sampling(sampler).sample(logits, handle[1])

    def fork(self, handle: tuple[Any, float]) -> tuple[Any, float]:
        return handle

    def state(self, handle: tuple[Any, float]) -> dict[str, np.ndarray]:
        return handle[0].arrays()


class RandReused(RandShifted):
    """Every decode of a session samples with the rand of its first decode (the stream never advances)."""

    def init(self) -> tuple[Any, float | None]:  # type: ignore[override]
        return (ModelImpl.init(self), None)

    def decode(self, handle: Any, token: int, rand: float, sampler: Sampler | None = None) -> Any:
        state, logits, _ = ModelImpl.decode(self, handle[0], token, rand, sampler)
        first = rand if handle[1] is None else handle[1]
        return (state, first), logits, self.sampling(sampler).sample(logits, first)


def _map_kv(state: State, fn: Callable[[np.ndarray], np.ndarray]) -> State:
    """``state`` with every key/value buffer [1, K, S, D] replaced by ``fn`` of it."""
    cache = tuple(tuple(SeqBuffer.from_array(fn(buf.view()), 2) for buf in pair) for pair in state.cache)
    return State(state.arch, state.pos, cache)


class CacheTransform(ModelImpl):
    """An engine whose KV cache is stored differently from the spec's: ``after(state, start)`` is applied to the
    state after every call that consumed tokens from position ``start``."""

    def after(self, state: State, start: int) -> State:
        return state

    def run(self, handle: State, tokens: Sequence[int]) -> tuple[State, np.ndarray]:
        state, logits = ModelImpl.run(self, handle, tokens)
        return self.after(state, handle.pos), logits

    def decode(self, handle: State, token: int, rand: float, sampler: Sampler | None = None) -> Any:
        state, logits, tok = ModelImpl.decode(self, handle, token, rand, sampler)
        return self.after(state, handle.pos), logits, tok


def evicting(capacity: int, how: str) -> type[CacheTransform]:
    class Evicting(CacheTransform):
        __doc__ = (
            f"A KV cache of {capacity} slots ({how}): past {capacity} tokens the oldest keys are dropped silently."
        )

        def after(self, state: State, start: int) -> State:
            return _map_kv(state, lambda kv: kv[:, :, -capacity:])

    Evicting.__name__ = f"Evicting{capacity}"
    return Evicting


class PageBoundary(CacheTransform):
    """A paged KV cache (pages of 16 slots) whose multi-token write mis-indexes across a page boundary: the first
    token of the new page is written to the last slot of the previous page, and the new page's first slot is left
    empty."""

    PAGE = 16

    def run(self, handle: State, tokens: Sequence[int]) -> tuple[State, np.ndarray]:
        state, logits = ModelImpl.run(self, handle, tokens)
        start, end = handle.pos, state.pos
        boundaries = [b for b in range((start // self.PAGE + 1) * self.PAGE, end, self.PAGE) if b > start]

        def misplace(kv: np.ndarray) -> np.ndarray:
            kv = kv.copy()
            for b in boundaries:
                kv[:, :, b - 1], kv[:, :, b] = kv[:, :, b], 0.0
            return kv

        return (_map_kv(state, misplace) if boundaries else state), logits


class ForkDropsLast(ModelImpl):
    """fork copies the cache one row short (the last token's keys and values are lost; the position is kept)."""

    def fork(self, handle: State) -> State:
        return _map_kv(handle, lambda kv: kv[:, :, :-1]) if handle.pos > 0 else handle


class BatchPositions(BatchedImpl):
    """A batched engine that numbers each row's new tokens from the padded cache length P, not the row's own."""

    def positions(self, states: Sequence[State], chunks: Sequence[Sequence[int]], P: int, T: int) -> np.ndarray:
        return np.array([[0] * (T - len(c)) + list(range(P, P + len(c))) for c in chunks])


ENGINES: dict[str, type[ModelImpl]] = {
    "model": ModelImpl,
    "mutable": MutableImpl,
    "batched": BatchedImpl,
    "mutable-batched": mutable(BatchedImpl),
    "aliased-fork": AliasedFork,
    "rand-shifted": RandShifted,
    "rand-reused": RandReused,
    "kv-window-16": evicting(16, "a sliding window"),
    "kv-capacity-32": evicting(32, "a fixed-size buffer"),
    "kv-ring-256": evicting(256, "a ring buffer"),
    "kv-page-boundary": PageBoundary,
    "fork-drops-last": ForkDropsLast,
    "batch-positions": BatchPositions,
}


def mutant_impl(name: str, model: Model) -> ModelImpl:
    """``--impl mutant:NAME``: the catalogue's mutant NAME on ``model``, inside its engine."""
    from lmstep.mutants import MUTANTS

    if name not in MUTANTS:
        raise InputError(f"unknown mutant {name!r}; choose from: {', '.join(MUTANTS)}")
    mutant = MUTANTS[name]
    return ENGINES[mutant.engine](mutant.apply(model), f"mutant:{name}")

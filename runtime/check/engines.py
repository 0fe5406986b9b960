"""Implementations built around the spec (or a mutant of it, lmstep/mutants.py) for the checker.

``model`` is the spec's API as an implementation (adapters.ModelImpl). The others add what a real engine has and
the spec does not: batching (the batch law's positive control), mutable sessions, hidden per-session state. A
mutant names one of them in ``Mutant.engine``; the bugs that live only in an engine (an aliased fork, a rand kept
from the previous call) are these overrides, every other bug is an edit of the spec's own code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmstep.spec import Model
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

    def run_batch(self, states: Sequence[Any], chunks: Sequence[Sequence[int]]) -> list[tuple[Any, np.ndarray]]:
        m = self.model
        held = [s.cache[0][0].shape[2] for s in states]  # P_i
        P, T = max(held), max(len(c) for c in chunks)
        toks = np.array([[0] * (T - len(c)) + list(c) for c in chunks], np.int64)
        positions = np.array(
            [[0] * (T - len(c)) + list(range(s.pos, s.pos + len(c))) for s, c in zip(states, chunks)], np.int64
        )
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


class MutableImpl(ModelImpl):
    """Mutable sessions, like most real engines: handles are boxes updated in place."""

    capabilities = frozenset({"fork", "state"})

    def init(self) -> list[Any]:
        return [ModelImpl.init(self)]

    def run(self, box: list[Any], tokens: Sequence[int]) -> tuple[list[Any], np.ndarray]:
        box[0], logits = ModelImpl.run(self, box[0], tokens)
        return box, logits

    def decode(self, box: list[Any], token: int, rand: float) -> tuple[list[Any], np.ndarray, int]:
        box[0], logits, tok = ModelImpl.decode(self, box[0], token, rand)
        return box, logits, tok

    def fork(self, box: list[Any]) -> list[Any]:
        return [box[0]]

    def state(self, box: list[Any]) -> dict[str, np.ndarray]:
        return box[0].arrays()


class AliasedFork(MutableImpl):
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

    def decode(self, handle: tuple[Any, float], token: int, rand: float) -> tuple[tuple[Any, float], np.ndarray, int]:
        state, logits, _ = ModelImpl.decode(self, handle[0], token, rand)
        return (state, rand), logits, self.model.sample(logits, handle[1])

    def state(self, handle: tuple[Any, float]) -> dict[str, np.ndarray]:
        return handle[0].arrays()


ENGINES: dict[str, type[ModelImpl]] = {
    "model": ModelImpl,
    "batched": BatchedImpl,
    "aliased-fork": AliasedFork,
    "rand-shifted": RandShifted,
}


def mutant_impl(name: str, model: Model) -> ModelImpl:
    """``--impl mutant:NAME``: the catalogue's mutant NAME on ``model``, inside its engine."""
    from lmstep.mutants import MUTANTS

    if name not in MUTANTS:
        raise InputError(f"unknown mutant {name!r}; choose from: {', '.join(MUTANTS)}")
    mutant = MUTANTS[name]
    return ENGINES[mutant.engine](mutant.apply(model), f"mutant:{name}")

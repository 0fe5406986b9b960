"""Writing operations for the executor: session numbers, which sessions are still usable, aimed decodes.

Both the coverage run (coverage.py) and the exploration (explore.py) drive the executor through a
Driver, so every operation either runs or is skipped as not applicable, and is recorded as data for the shrinker
and the counterexample file."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from lmstep.spec import Sampler, rand_for

from ..codec import f32_hex
from .lockstep import Executor, NotApplicable, sampler_json
from .probes import DRAWS, SETTINGS, aim
from .recorder import Recorder


class Driver:
    def __init__(self, ex: Executor, rec: Recorder):
        self.ex, self.rec = ex, rec
        self.ids = itertools.count()
        self.live: list[int] = []  # usable sessions (with "immutable", consumed ones stay usable: resumes)
        self.decodes = 0

    @property
    def caps(self) -> frozenset[str]:
        return self.ex.caps

    @property
    def vocab(self) -> int:
        return self.ex.model.vocab_size

    def pos(self, sid: int) -> int:
        return self.ex.sessions[sid].spec.pos

    def room(self, sid: int) -> int:
        return self.ex.limit - self.pos(sid)

    def do(self, op: dict[str, Any]) -> bool:
        """Run one operation (recorded); False if it does not apply (then it is not recorded)."""
        self.rec.ops.append(op)
        try:
            self.ex.apply(op, f"op {len(self.rec.ops) - 1} {op['op']}")
        except NotApplicable:
            self.rec.ops.pop()
            return False
        self.rec.applied(op["op"])
        return True

    # -- operations, each keeping ``live`` right -----------------------------------------------------------
    def init(self) -> int:
        sid = next(self.ids)
        self.do({"op": "init", "new": sid})
        self.live.append(sid)
        return sid

    def _moved(self, old: int, new: int) -> int:
        if "immutable" not in self.caps and old in self.live:
            self.live.remove(old)
        self.live.append(new)
        return new

    def run(self, sid: int, tokens: list[int]) -> int:
        new = next(self.ids)
        if self.do({"op": "run", "session": sid, "new": new, "tokens": tokens}):
            return self._moved(sid, new)
        return sid

    def decode(self, sid: int, token: int, seed: int, pick: int | None = None) -> int:
        """One decode with the settings and aimed rand SETTINGS[pick] (cycling when None)."""
        if sid not in self.ex.sessions or self.room(sid) < 1:
            return sid
        settings, rand = self.aimed(sid, token, seed, pick)
        new = next(self.ids)
        op = {"op": "decode", "session": sid, "new": new, "token": token, "rand": f32_hex(rand)}
        if settings != self.ex.model.sampler:
            op["sampler"] = sampler_json(settings)
        return self._moved(sid, new) if self.do(op) else sid

    def aimed(self, sid: int, token: int, seed: int, pick: int | None) -> tuple[Sampler, float]:
        if pick is None:
            pick, self.decodes = self.decodes, self.decodes + 1
        settings, kind = SETTINGS[pick % len(SETTINGS)]
        if not self.ex.impl.v2:  # protocol 1: the model's settings only; the rands are still aimed
            settings = self.ex.model.sampler
        return aim(self.ex.spec_step(sid, token), settings, kind, seed, self.pos(sid))

    def fork(self, sid: int) -> int | None:
        new = next(self.ids)
        if self.do({"op": "fork", "session": sid, "new": new}):
            self.live.append(new)
            return new
        return None

    def release(self, sid: int) -> None:
        if self.do({"op": "release", "session": sid}) and sid in self.live:
            self.live.remove(sid)

    def batch(self, sids: list[int], chunks: list[list[int]]) -> list[int] | None:
        new = [next(self.ids) for _ in sids]
        if not self.do({"op": "run_batch", "sessions": sids, "new": new, "tokens": chunks}):
            return None
        for old, n in zip(sids, new):
            self._moved(old, n)
        return new

    def determinism(self, sid: int | None, tokens: list[int], token: int, seed: int, pick: int = 1) -> None:
        """The same decode twice: on one state when the engine can fork or resume, else from two fresh sessions."""
        if sid is not None and {"fork", "immutable"} & self.caps and sid in self.ex.sessions:
            settings, rand = self.aimed(sid, token, seed, pick)
            op: dict[str, Any] = {"op": "repeat", "session": sid, "token": token, "rand": f32_hex(rand)}
        else:
            settings = self.ex.model.sampler if not self.ex.impl.v2 else SETTINGS[pick % len(SETTINGS)][0]
            rand = rand_for(seed, len(tokens) + 1)
            op = {"op": "twice", "tokens": tokens, "token": token, "rand": f32_hex(rand)}
        if settings != self.ex.model.sampler:
            op["sampler"] = sampler_json(settings)
        self.do(op)

    def distribution(self, sid: int, token: int, seed: int, settings: Sampler) -> None:
        if settings.temperature == 0:
            return
        pos = self.pos(sid)
        rands = [f32_hex(rand_for((seed + i) % 2**64, pos + 1)) for i in range(DRAWS)]
        op = {"op": "distribution", "session": sid, "token": token, "rands": rands}
        if settings != self.ex.model.sampler:
            op["sampler"] = sampler_json(settings)
        self.do(op)

    def causality(self, prefix: list[int], extra: list[int]) -> None:
        self.do({"op": "causality", "tokens": prefix, "extra": extra})


def tokens(seed: int, n: int, vocab: int) -> list[int]:
    """``n`` token ids drawn from ``seed`` (chunks are described by a length and a seed, not n draws)."""
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, n)]


Step = Callable[[Driver], None]

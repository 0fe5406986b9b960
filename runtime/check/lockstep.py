"""Apply one operation to an implementation and to the spec, and grade what came back.

Operations are plain data (JSON-able dicts), so the same executor serves the coverage run (coverage.py), the
the exploration (explore.py), the counterexample shrinker (shrink.py) and ``lmstep replay``:

    {"op": "init", "new": s}
    {"op": "run", "session": s, "new": s2, "tokens": [...]}                   prefill a chunk
    {"op": "decode", "session": s, "new": s2, "token": t, "rand": {"f32": ...}, "sampler": SETTINGS}
    {"op": "fork", "session": s, "new": s2}                                    snapshot, resumed later
    {"op": "release", "session": s}                                           the checker drops a handle
    {"op": "run_batch", "sessions": [...], "new": [...], "tokens": [[...], ...]}
    {"op": "repeat", "session": s, "token": t, "rand": {...}, "sampler": SETTINGS}   one decode twice, one state
    {"op": "twice", "tokens": [...], "token": t, "rand": {...}, "sampler": SETTINGS}  the same from two fresh sessions
    {"op": "causality", "tokens": [...], "extra": [...]}                       a prefix vs its extension
    {"op": "distribution", "session": s, "token": t, "rands": [...], "sampler": SETTINGS}   many draws, one state

SETTINGS = {"temperature": {"f32": ...}, "top_k": k, "top_p": {"f32": ...}}, the sampler settings of that decode
(protocol 2); absent, the model's own. Every session carries three things in lockstep: the implementation's
handle, the float32 spec's state and the float64 evaluation of the same spec functions (spec/conformance.py
``Wide``), whose difference bounds each comparison (levels.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from lmstep.spec import Model, Sampler, State
from lmstep.spec.conformance import FACTOR, FLOOR, STATE_FACTOR, Wide, bound, rel_err

from ..codec import f32_hex, f32_value
from .levels import (
    Grade,
    Level,
    grade_against,
    grade_distribution,
    grade_logits,
    grade_numbers,
    grade_sample,
    plausible_excuses,
)
from .logprobs import TopLogprobs, grade_logprobs, grade_same
from .protocol import Guarded, guard

# The checker's laws by their user-facing names: the laws each checks (lmstep.spec.laws ids, `lmstep laws`; the
# first is the one it is about) and what one comparison is. Each compares the implementation with the spec on one
# kind of operation, so the spec's own laws carry over: an implementation that matches the spec on chunks from
# the initial state (unrolled), on chunks after a cache (split) and on single steps (recurrent) obeys unrolled =
# recurrent and split invariance within the tolerances. Every numeric comparison with the spec is also one of
# numeric-tolerance (L1: within the comparison's bound).
NUMERIC = "numeric-tolerance"
LAWS: dict[str, tuple[tuple[str, ...], str]] = {
    "unrolled": (("unrolled-eq-recurrent", NUMERIC), "a chunk from the initial state (prefill) = spec"),
    "split": (("split-invariance", NUMERIC), "a chunk after a cache (any prefill split) = spec"),
    "recurrent": (("unrolled-eq-recurrent", NUMERIC), "one decode step = spec"),
    "sampler": (("sampler",), "the token = SPEC.md §3 on the implementation's logits, same rand and settings"),
    "state": (("state-contract", NUMERIC), "the whole state after each operation = spec"),
    "fork": (("states-are-values", NUMERIC), "a forked or resumed handle continues like the spec"),
    "batch": (("batch-invariance", NUMERIC), "a sequence in a batch = the same sequence alone"),
    "determinism": (("determinism",), "the same operation twice gives the same bits"),
    "causality": (("causality",), "appending tokens never changes earlier logits"),
}

# Laws that compare two different computations inside the implementation (a prefix vs its extension runs
# matmuls of different shapes) hold only numerically even for the spec itself, so they never require L0.
CAPS = {"causality": Level.L1}


def needed(law: str, required: Level) -> Level:
    return min(required, CAPS.get(law, required))


def grade_output(got: Any, spec: np.ndarray, wide: np.ndarray) -> Grade:
    """Logits, or the top-N log-probabilities of an engine that exposes only those (logprobs.py), against the
    float32 spec with the bound of its own error against ``wide``."""
    if isinstance(got, TopLogprobs):
        return attrs.evolve(grade_logprobs(got, spec, bound(spec, wide)), wide_err=rel_err(spec, wide))
    return grade_logits(got, spec, wide)


def grade_twice(second: Any, first: Any, limit: float) -> Grade:
    """The same question asked twice of one implementation."""
    if isinstance(first, TopLogprobs) and isinstance(second, TopLogprobs):
        return grade_same(second, first, limit)
    return grade_numbers(second, first, limit)


def sampled_on(got: Any, spec: np.ndarray, g: Grade) -> tuple[np.ndarray, float]:
    """The logits the sampler law grades a token on, and the logit change that may excuse a near tie: the
    implementation's own logits within the comparison's bound; for an engine that shows only log-probabilities,
    the spec's logits within the error its log-probabilities showed."""
    if isinstance(got, TopLogprobs):
        return spec, max(g.bound, g.err if np.isfinite(g.err) else 0.0)
    return got, g.bound


@attrs.frozen
class Seen:
    """What one comparison covered (the coverage table, docs/checking.md)."""

    pos: int = 0  # the deepest position whose logits (or state) were compared
    chunk: int = 0  # tokens in the call
    forked: bool = False  # on a forked or resumed handle
    batch: bool = False  # inside run_batch
    draws: int = 0  # sampled draws (temperature > 0) graded


GradeFn = Callable[[str, Grade, str, Seen], None]


class NotApplicable(Exception):
    """The operation refers to a session that does not exist (or was consumed): skip it when shrinking."""


@attrs.frozen
class Session:
    handle: Any
    spec: State
    wide: State
    forked: bool = False  # made by fork, or descended from such a session
    lineage: frozenset[int] = frozenset()  # the sessions it descends from


def sampler_json(s: Sampler) -> dict[str, Any]:
    return {"temperature": f32_hex(s.temperature), "top_k": int(s.top_k), "top_p": f32_hex(s.top_p)}


def sampler_from(obj: Any) -> Sampler:
    return Sampler(temperature=f32_value(obj["temperature"]), top_k=obj["top_k"], top_p=f32_value(obj["top_p"]))


_WIDE: dict[int, tuple[Model, Wide]] = {}


def wide_of(model: Model) -> Wide:
    """The float64 twin of ``model`` (built once per model object; the widened weights are kept with it)."""
    hit = _WIDE.get(id(model))
    if hit is None or hit[0] is not model:
        if len(_WIDE) > 8:
            _WIDE.clear()
        hit = _WIDE[id(model)] = (model, Wide(model))
    return hit[1]


class Executor:
    def __init__(self, model: Model, impl: Any, grade: GradeFn, skip: frozenset[str] = frozenset()):
        self.model, self.impl, self.grade_fn, self.skip = model, guard(impl), grade, skip
        self.wide = wide_of(model)
        caps = self.impl.capabilities
        self.keep = "immutable" in caps
        self.sessions: dict[int, Session] = {}
        self.limit = model.context_limit or 10**9
        self.children: dict[int, int] = {}  # continuations (run, decode, batch, fork) taken from each session
        self.shared: set[int] = set()  # sessions continued more than once: two continuations of one state
        self.excused, self.expected = 0, 0.0  # the sampler's near-tie excuses in this run, and how many are plausible

    @property
    def caps(self) -> frozenset[str]:
        return self.impl.capabilities

    def apply(self, op: dict[str, Any], where: str) -> None:
        getattr(self, "_" + op["op"])(op, where)

    def close(self) -> None:
        """Release every handle still held (capability "release"), once each."""
        if "release" not in self.caps:
            return
        done: list[Any] = []
        for s in self.sessions.values():
            if not any(s.handle is h or (_plain(h) and h == s.handle) for h in done):
                done.append(s.handle)
                self.impl.release(s.handle)
        self.sessions.clear()

    # -- helpers -----------------------------------------------------------------------------------------
    def grade(self, law: str, g: Grade, where: str, seen: Seen) -> None:
        if law not in self.skip:
            self.grade_fn(law, g, where, seen)

    def _session(self, sid: int) -> Session:
        if sid not in self.sessions:
            raise NotApplicable(f"session {sid}")
        return self.sessions[sid]

    def _continue(self, sid: int) -> None:
        self.children[sid] = self.children.get(sid, 0) + 1
        if self.children[sid] > 1:
            self.shared.add(sid)

    def _take(self, sid: int) -> tuple[Session, bool]:
        """The session ``sid`` to continue, and whether the comparison is one of the fork law: the session was made
        by a fork, or it or a session it descends from has been continued twice (a fork and the original, or a
        resumed old handle: two continuations of one state, which must not disturb each other). Without
        "immutable" the session is consumed (its handle may no longer be used)."""
        s = self._session(sid)
        self._continue(sid)
        if not self.keep:
            del self.sessions[sid]
        return s, self._forked(sid, s)

    def _forked(self, sid: int, s: Session) -> bool:
        return s.forked or bool(({sid} | s.lineage) & self.shared)

    def _next(self, s: Session, sid: int, handle: Any, spec: State, wide: State) -> Session:
        return Session(handle, spec, wide, s.forked, s.lineage | {sid})

    def _fits(self, s: Session, n: int) -> None:
        if s.spec.pos + n > self.limit:
            raise NotApplicable("beyond the context")

    def settings(self, op: dict[str, Any]) -> Sampler:
        s = sampler_from(op["sampler"]) if "sampler" in op else self.model.sampler
        if s != self.model.sampler and not self.impl.v2:
            raise NotApplicable("per-decode sampler settings need protocol 2")
        return s

    def spec_step(self, sid: int, token: int) -> np.ndarray:
        """The float32 spec's logits for decoding ``token`` on session ``sid`` (to aim a probe)."""
        s = self._session(sid)
        return self.model.step(s.spec, token, 0.0)[1].logits

    def _check_state(self, s: Session, where: str) -> None:
        if "state" not in self.caps or "state" in self.skip:
            return
        got, want, wide = self.impl.state(s.handle), s.spec.arrays(), s.wide.arrays()
        seen = Seen(pos=s.spec.pos - 1, forked=s.forked or bool(s.lineage & self.shared))
        if set(got) != set(want):
            note = f"state tensors {sorted(got)} != spec {sorted(want)}"
            self.grade("state", Grade(Level.FAIL, float("inf"), note=note), where, seen)
        for name in sorted(want):
            g = grade_against(np.asarray(got[name]), want[name], wide[name], STATE_FACTOR)
            self.grade("state", attrs.evolve(g, note=f"{name}: {g.note}" if g.note else name), where, seen)

    def _sample(self, token: int, logits: np.ndarray, eps: float, u: float, s: Sampler, where: str, seen: Seen) -> None:
        g = grade_sample(token, logits, u, s, eps)
        self.excused += g.excused
        self.expected += g.plausible
        draws = 1 if s.temperature > 0 else 0
        self.grade("sampler", g, where, attrs.evolve(seen, draws=draws))
        if self.excused > plausible_excuses(self.expected):
            note = (
                f"{self.excused} tokens differ from SPEC.md §3 on the implementation's own logits at near ties, "
                f"where {self.expected:.2g} such draws are expected: a systematic difference"
            )
            self.grade("sampler", Grade(Level.FAIL, float("inf"), eps, note=note), where, seen)

    def _release_temp(self, handles: list[Any]) -> None:
        if "release" in self.caps:
            for h in handles:
                self.impl.release(h)

    # -- operations ----------------------------------------------------------------------------------------
    def _init(self, op: dict[str, Any], where: str) -> None:
        self.sessions[op["new"]] = Session(self.impl.init(), self.model.init_state(), self.wide.init_state())

    def _run(self, op: dict[str, Any], where: str) -> None:
        tokens = op["tokens"]
        self._fits(self._session(op["session"]), len(tokens))
        s, forked = self._take(op["session"])
        handle, logits = self.impl.run(s.handle, tokens)
        spec_state, spec_logits = self.model.prefill(s.spec, tokens)
        wide_state, wide_logits = self.wide.prefill(s.wide, tokens)
        new = self.sessions[op["new"]] = self._next(s, op["session"], handle, spec_state, wide_state)
        law = "fork" if forked else ("unrolled" if s.spec.pos == 0 else "split")
        seen = Seen(pos=spec_state.pos - 1, chunk=len(tokens), forked=forked)
        self.grade(law, grade_output(logits, spec_logits, wide_logits), where, seen)
        self._check_state(new, where)

    def _decode(self, op: dict[str, Any], where: str) -> None:
        self._fits(self._session(op["session"]), 1)
        settings, rand = self.settings(op), f32_value(op["rand"])
        s, forked = self._take(op["session"])
        handle, logits, token = self.impl.decode(s.handle, op["token"], rand, settings)
        spec_state, out = self.model.step(s.spec, op["token"], rand)
        wide_state, wide_logits = self.wide.step(s.wide, op["token"])
        new = self.sessions[op["new"]] = self._next(s, op["session"], handle, spec_state, wide_state)
        seen = Seen(pos=s.spec.pos, chunk=1, forked=forked)
        g = grade_output(logits, out.logits, wide_logits)
        self.grade("fork" if forked else "recurrent", g, where, seen)
        self._sample(token, *sampled_on(logits, out.logits, g), rand, settings, where, seen)
        self._check_state(new, where)

    def _fork(self, op: dict[str, Any], where: str) -> None:
        if "fork" not in self.caps or "fork" in self.skip:
            raise NotApplicable("fork")
        s = self._session(op["session"])
        handle = self.impl.fork(s.handle)
        self._continue(op["session"])
        self.sessions[op["new"]] = Session(handle, s.spec, s.wide, True, s.lineage | {op["session"]})

    def _release(self, op: dict[str, Any], where: str) -> None:
        if "release" not in self.caps:
            raise NotApplicable("release")
        s = self._session(op["session"])
        del self.sessions[op["session"]]
        if not any(o.handle is s.handle or (_plain(o.handle) and o.handle == s.handle) for o in self.sessions.values()):
            self.impl.release(s.handle)

    def _run_batch(self, op: dict[str, Any], where: str) -> None:
        ids, chunks = op["sessions"], op["tokens"]
        if "batch" not in self.caps or "batch" in self.skip or len(set(ids)) != len(ids):
            raise NotApplicable("batch")
        for i, c in zip(ids, chunks):
            self._fits(self._session(i), len(c))
        group = [self._take(i) for i in ids]
        results = self.impl.run_batch([s.handle for s, _ in group], chunks)
        graded = []
        for (s, forked), sid, c, (handle, logits), new_id in zip(group, ids, chunks, results, op["new"]):
            spec_state, spec_logits = self.model.prefill(s.spec, c)
            wide_state, wide_logits = self.wide.prefill(s.wide, c)
            self.sessions[new_id] = self._next(s, sid, handle, spec_state, wide_state)
            seen = Seen(pos=spec_state.pos - 1, chunk=len(c), forked=forked, batch=True)
            graded.append((grade_output(logits, spec_logits, wide_logits), seen))
        for k, (g, seen) in enumerate(graded):
            self.grade("batch", g, f"{where} [sequence {k}]", seen)
        for new_id in op["new"]:
            self._check_state(self.sessions[new_id], where)

    def _twice(self, op: dict[str, Any], where: str) -> None:
        """Determinism without fork: two fresh sessions given the same tokens, then the same decode."""
        if len(op["tokens"]) + 1 > self.limit:
            raise NotApplicable("beyond the context")
        settings, rand = self.settings(op), f32_value(op["rand"])
        outs = []
        for _ in range(2):
            h, _ = self.impl.run(self.impl.init(), op["tokens"])
            h, z, t = self.impl.decode(h, op["token"], rand, settings)
            outs.append((z, t))
            self._release_temp([h])
        self._same("determinism", outs, op, settings, where)

    def _repeat(self, op: dict[str, Any], where: str) -> None:
        if not ({"fork", "immutable"} & self.caps):
            raise NotApplicable("repeat")
        s = self._session(op["session"])
        self._fits(s, 1)
        settings, rand = self.settings(op), f32_value(op["rand"])
        outs = []
        self._continue(op["session"])
        self._continue(op["session"])
        for _ in range(2):
            h = s.handle if self.keep else self.impl.fork(s.handle)
            h2, z, t = self.impl.decode(h, op["token"], rand, settings)
            outs.append((z, t))
            self._release_temp([] if self.keep else [h2])
        self._same("determinism", outs, op, settings, where, s)

    def _same(self, law: str, outs: list[Any], op: dict[str, Any], s: Sampler, where: str, at: Any = None) -> None:
        (za, ta), (zb, tb) = outs
        if at is not None:
            spec_z, wide_z = (
                self.model.step(at.spec, op["token"], 0.0)[1].logits,
                self.wide.step(at.wide, op["token"])[1],
            )
            pos = at.spec.pos
        else:
            spec_z = self.model.step(self.model.prefill(self.model.init_state(), op["tokens"])[0], op["token"], 0.0)
            spec_z = spec_z[1].logits
            wide_z = self.wide.step(self.wide.prefill(self.wide.init_state(), op["tokens"])[0], op["token"])[1]
            pos = len(op["tokens"])
        g = grade_twice(zb, za, bound(spec_z, wide_z))
        if ta != tb:  # the same rand gave two tokens: a sampler not keyed by rand can at best agree in distribution
            level = Level.L3 if s.temperature > 0 else Level.FAIL
            g = Grade(min(level, g.level), g.err, g.bound, note=f"sampled {ta}, then {tb} with the same rand")
        self.grade(law, g, where, Seen(pos=pos, chunk=1))

    def _causality(self, op: dict[str, Any], where: str) -> None:
        prefix, extra = op["tokens"], op["extra"]
        if len(prefix) + len(extra) > self.limit:
            raise NotApplicable("beyond the context")
        h1, short = self.impl.run(self.impl.init(), prefix)
        self._release_temp([h1])
        h2, longer = self.impl.run(self.impl.init(), prefix + extra)
        self._release_temp([h2])
        s32, s64 = self.model.unrolled(prefix), self.wide.prefill(self.wide.init_state(), prefix)[1]
        l32 = self.model.unrolled(prefix + extra)[: len(prefix)]
        l64 = self.wide.prefill(self.wide.init_state(), prefix + extra)[1][: len(prefix)]
        limit = max(FLOOR, FACTOR * (rel_err(s32, s64) + rel_err(l32, l64)))  # two computations, each may err
        g = grade_twice(longer[: len(prefix)], short, limit)
        self.grade("causality", g, where, Seen(pos=len(prefix) - 1, chunk=len(prefix) + len(extra)))

    def _distribution(self, op: dict[str, Any], where: str) -> None:
        s = self._session(op["session"])
        if not ({"fork", "immutable"} & self.caps):
            raise NotApplicable("distribution")
        self._fits(s, 1)
        settings, rands = self.settings(op), [f32_value(r) for r in op["rands"]]
        tokens, logits = [], []
        forked = self._forked(op["session"], s)  # before its draws make it a shared state
        for rand in rands:
            self._continue(op["session"])
            h = s.handle if self.keep else self.impl.fork(s.handle)
            h2, z, t = self.impl.decode(h, op["token"], rand, settings)
            tokens.append(t)
            logits.append(z)
            self._release_temp([] if self.keep else [h2])
        spec_z = self.model.step(s.spec, op["token"], 0.0)[1].logits
        wide_z = self.wide.step(s.wide, op["token"])[1]
        seen = Seen(pos=s.spec.pos, chunk=1, forked=forked)
        g = grade_output(logits[0], spec_z, wide_z)
        self.grade("fork" if forked else "recurrent", g, where, seen)
        own, eps = sampled_on(logits[0], spec_z, g)
        draws = grade_distribution(
            tokens, [own if isinstance(z, TopLogprobs) else z for z in logits], rands, settings, eps
        )
        draws_seen = attrs.evolve(seen, draws=len(rands) if settings.temperature > 0 else 0)
        self.grade("sampler", draws, where, draws_seen)


def _plain(h: Any) -> bool:
    return isinstance(h, (str, int))


__all__ = [
    "CAPS",
    "TopLogprobs",
    "grade_output",
    "LAWS",
    "Executor",
    "Guarded",
    "NotApplicable",
    "Seen",
    "needed",
    "sampler_json",
    "sampler_from",
]

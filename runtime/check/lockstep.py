"""Apply one operation to an implementation and to the spec, and grade what came back.

Operations are plain data (JSON-able dicts), so the same executor serves the Hypothesis state machine
(machine.py), the counterexample shrinker (shrink.py) and ``lmstep replay`` of a counterexample trace:

    {"op": "init", "new": s}
    {"op": "run", "session": s, "new": s2, "tokens": [...]}                   prefill a chunk
    {"op": "decode", "session": s, "new": s2, "token": t, "rand": {"f32": ...}}
    {"op": "fork", "session": s, "new": s2}                                    snapshot, resumed later
    {"op": "run_batch", "sessions": [...], "new": [...], "tokens": [[...], ...]}
    {"op": "repeat", "session": s, "token": t, "rand": {...}}                  the same decode twice on forks
    {"op": "causality", "tokens": [...], "extra": [...]}                       a prefix vs its extension
    {"op": "distribution", "session": s, "token": t, "rands": [{"f32": ...}, ...]}   many draws, one state
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from lmstep.spec import Model, State
from lmstep.spec.conformance import FORMS

from ..codec import f32_value
from .levels import Grade, Level, grade_distribution, grade_logits, grade_numbers, grade_token, kept_distribution
from .logprobs import TopLogprobs, grade_logprobs, grade_same

# The checker's laws by their user-facing names: the laws each checks (lmstep.spec.laws ids, `lmstep laws`; the
# first is the one it is about) and what one comparison is. Each compares the implementation with the spec on one
# kind of operation, so the spec's own laws carry over: an implementation that matches the spec on chunks from
# the initial state (unrolled), on chunks after a cache (split) and on single steps (recurrent) obeys unrolled =
# recurrent and split invariance within the tolerances. Every numeric comparison with the spec is also one of
# numeric-tolerance (L1: within the measured tolerance).
NUMERIC = "numeric-tolerance"
LAWS: dict[str, tuple[tuple[str, ...], str]] = {
    "unrolled": (("unrolled-eq-recurrent", NUMERIC), "a chunk from the initial state (prefill) = spec"),
    "split": (("split-invariance", NUMERIC), "a chunk after a cache (any prefill split) = spec"),
    "recurrent": (("unrolled-eq-recurrent", NUMERIC), "one decode step = spec"),
    "sampler": (("sampler",), "the token sampled with the same rand = spec"),
    "state": (("state-contract", NUMERIC), "the whole state after each operation = spec"),
    "fork": (("states-are-values", NUMERIC), "a resumed snapshot continues like the spec"),
    "batch": (("batch-invariance", NUMERIC), "a sequence in a batch = the same sequence alone"),
    "determinism": (("determinism",), "the same operation twice gives the same bits"),
    "causality": (("causality",), "appending tokens never changes earlier logits"),
}

# Laws that compare two different computations inside the implementation (a prefix vs its extension runs
# matmuls of different shapes) hold only numerically even for the spec itself, so they never require L0.
CAPS = {"causality": Level.L1}

GradeFn = Callable[[str, Grade, str], None]


def grade_output(got: Any, spec_logits: np.ndarray, tol: float) -> Grade:
    """Logits, or the top-N log-probabilities of an engine that exposes only those (logprobs.py)."""
    if isinstance(got, TopLogprobs):
        return grade_logprobs(got, spec_logits, tol)
    return grade_logits(got, spec_logits, tol)


def grade_twice(second: Any, first: Any, tol: float) -> Grade:
    """The same question asked twice of one implementation."""
    if isinstance(first, TopLogprobs) and isinstance(second, TopLogprobs):
        return grade_same(second, first, tol)
    return grade_numbers(second, first, tol)


def needed(law: str, required: Level) -> Level:
    return min(required, CAPS.get(law, required))


class NotApplicable(Exception):
    """The operation refers to a session that does not exist (or was consumed): skip it when shrinking."""


@attrs.frozen
class Session:
    handle: Any
    spec: State
    forked: bool = False


class Executor:
    def __init__(self, model: Model, impl: Any, grade: GradeFn):
        self.model, self.impl, self.grade = model, impl, grade
        self.tol = FORMS[model.arch]
        self.keep = "immutable" in impl.capabilities
        self.sessions: dict[int, Session] = {}
        self.limit = model.context_limit or 10**9

    def apply(self, op: dict[str, Any], where: str) -> None:
        getattr(self, "_" + op["op"])(op, where)

    # -- helpers -----------------------------------------------------------------------------------------
    def _take(self, sid: int) -> Session:
        """The session ``sid``; without "immutable" it is consumed (its handle may no longer be used)."""
        if sid not in self.sessions:
            raise NotApplicable(f"session {sid}")
        return self.sessions[sid] if self.keep else self.sessions.pop(sid)

    def _fits(self, s: Session, n: int) -> None:
        if s.spec.pos + n > self.limit:
            raise NotApplicable("beyond the context")

    def _check_state(self, s: Session, where: str) -> None:
        if "state" not in self.impl.capabilities:
            return
        got, want = self.impl.state(s.handle), s.spec.arrays()
        if set(got) != set(want):
            note = f"state tensors {sorted(got)} != spec {sorted(want)}"
            self.grade("state", Grade(Level.FAIL, float("inf"), note=note), where)
        for name in sorted(want):
            g = grade_numbers(np.asarray(got[name]), want[name], self.tol)
            self.grade("state", attrs.evolve(g, note=f"{name}: {g.note}" if g.note else name), where)

    # -- operations ----------------------------------------------------------------------------------------
    def _init(self, op: dict[str, Any], where: str) -> None:
        self.sessions[op["new"]] = Session(self.impl.init(), self.model.init_state())

    def _run(self, op: dict[str, Any], where: str) -> None:
        if op["session"] not in self.sessions:
            raise NotApplicable(f"session {op['session']}")
        self._fits(self.sessions[op["session"]], len(op["tokens"]))
        s = self._take(op["session"])
        handle, logits = self.impl.run(s.handle, op["tokens"])
        spec_state, spec_logits = self.model.prefill(s.spec, op["tokens"])
        new = self.sessions[op["new"]] = Session(handle, spec_state)
        law = "fork" if s.forked else ("unrolled" if s.spec.pos == 0 else "split")
        self.grade(law, grade_output(logits, spec_logits, self.tol), where)
        self._check_state(new, where)

    def _decode(self, op: dict[str, Any], where: str) -> None:
        if op["session"] not in self.sessions:
            raise NotApplicable(f"session {op['session']}")
        self._fits(self.sessions[op["session"]], 1)
        s, rand = self._take(op["session"]), f32_value(op["rand"])
        handle, logits, token = self.impl.decode(s.handle, op["token"], rand)
        spec_state, out = self.model.step(s.spec, op["token"], rand)
        new = self.sessions[op["new"]] = Session(handle, spec_state)
        self.grade("fork" if s.forked else "recurrent", grade_output(logits, out.logits, self.tol), where)
        self.grade("sampler", grade_token(token, out.token, out.logits, rand, self.model.sampler), where)
        self._check_state(new, where)

    def _fork(self, op: dict[str, Any], where: str) -> None:
        if op["session"] not in self.sessions or "fork" not in self.impl.capabilities:
            raise NotApplicable("fork")
        s = self.sessions[op["session"]]
        self.sessions[op["new"]] = Session(self.impl.fork(s.handle), s.spec, forked=True)

    def _run_batch(self, op: dict[str, Any], where: str) -> None:
        ids, chunks = op["sessions"], op["tokens"]
        if (
            "batch" not in self.impl.capabilities
            or len(set(ids)) != len(ids)
            or any(i not in self.sessions for i in ids)
        ):
            raise NotApplicable("batch")
        for i, c in zip(ids, chunks):
            self._fits(self.sessions[i], len(c))
        group = [self._take(i) for i in ids]
        results = self.impl.run_batch([s.handle for s in group], chunks)
        graded = []
        for s, c, (handle, logits), new_id in zip(group, chunks, results, op["new"]):
            spec_state, spec_logits = self.model.prefill(s.spec, c)
            self.sessions[new_id] = Session(handle, spec_state)
            graded.append(grade_output(logits, spec_logits, self.tol))
        for k, g in enumerate(graded):
            self.grade("batch", g, f"{where} [sequence {k}]")

    def _repeat(self, op: dict[str, Any], where: str) -> None:
        if op["session"] not in self.sessions or not ({"fork", "immutable"} & self.impl.capabilities):
            raise NotApplicable("repeat")
        s, rand = self.sessions[op["session"]], f32_value(op["rand"])
        self._fits(s, 1)
        first = s.handle if self.keep else self.impl.fork(s.handle)
        second = s.handle if self.keep else self.impl.fork(s.handle)
        _, la, ta = self.impl.decode(first, op["token"], rand)
        _, lb, tb = self.impl.decode(second, op["token"], rand)
        g = grade_twice(lb, la, self.tol)
        if ta != tb:  # the same rand gave two tokens: a sampler not keyed by rand can at best agree in distribution
            level = Level.L3 if self.model.sampler.temperature > 0 else Level.FAIL
            g = Grade(min(level, g.level), g.err, note=f"sampled {ta}, then {tb} with the same rand")
        self.grade("determinism", g, where)

    def _causality(self, op: dict[str, Any], where: str) -> None:
        prefix, extra = op["tokens"], op["extra"]
        if len(prefix) + len(extra) > self.limit:
            raise NotApplicable("beyond the context")
        _, short = self.impl.run(self.impl.init(), prefix)
        _, longer = self.impl.run(self.impl.init(), prefix + extra)
        self.grade("causality", grade_twice(longer[: len(prefix)], short, self.tol), where)

    def _distribution(self, op: dict[str, Any], where: str) -> None:
        if op["session"] not in self.sessions or not ({"fork", "immutable"} & self.impl.capabilities):
            raise NotApplicable("distribution")
        s = self.sessions[op["session"]]
        self._fits(s, 1)
        rands = [f32_value(r) for r in op["rands"]]
        tokens = []
        for rand in rands:
            handle = s.handle if self.keep else self.impl.fork(s.handle)
            tokens.append(self.impl.decode(handle, op["token"], rand)[2])
        spec_logits = self.model.step(s.spec, op["token"], rands[0])[1].logits
        spec_tokens = [self.model.sample(spec_logits, rand) for rand in rands]
        probs = kept_distribution(spec_logits, self.model.sampler)
        self.grade(
            "sampler", grade_distribution(tokens, spec_tokens, probs, rands, spec_logits, self.model.sampler), where
        )

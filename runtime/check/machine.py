"""The lockstep state machine: Hypothesis chooses operations, executor.py applies each to the implementation and
to the spec and grades the results (full logits, and the whole state where the implementation exposes it).

Rules (Hypothesis ``RuleBasedStateMachine``, like its ``stateful.py``): start a session; prefill a chunk of random
size (1..max_chunk); decode one token with an explicit rand; fork (snapshot) a session to resume later (without
"immutable"; with it, every old session stays in play and is resumed directly); batch several sessions in one
call; repeat a decode on two forks (determinism); compare a prefix with its extension (causality).
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from lmstep.spec import Model, rand_for

from ..codec import f32_hex
from .levels import Grade, Level
from .lockstep import Executor, NotApplicable, needed
from .protocol import ImplementationError

DRAWS = 200  # draws per distribution test: enough for a G-test to see a 10-point probability shift


class Failure(AssertionError):
    def __init__(self, law: str, grade: Grade, where: str, required: Level):
        self.law, self.grade, self.where = law, grade, where
        need = needed(law, required).label()
        super().__init__(
            f"{law}: {grade.level.label()} (needs {need}) at {where}: {grade.note or f'rel err {grade.err:.3g}'}"
        )


class Recorder:
    """Grades across every example, the operations of the current example, and the first failure's details."""

    def __init__(self, required: Level):
        self.required = required
        self.grades: dict[str, list[Grade]] = defaultdict(list)
        self.ops: list[dict[str, Any]] = []
        self.examples = 0
        self.failing: list[dict[str, Any]] | None = None  # ops of the first failing example
        self.first_failure: tuple[int, float] | None = None  # (examples run, seconds) when first caught
        self.impl_error: ImplementationError | None = None
        self.on_example: Callable[[int], None] = lambda n: None
        self.on_op: Callable[[int], None] = lambda n: None  # operations started so far, over all examples
        self.n_ops = 0
        self.t0 = time.perf_counter()

    def new_example(self) -> None:
        self.ops = _Ops(self)
        self.examples += 1
        self.on_example(self.examples)

    def grade(self, law: str, g: Grade, where: str) -> None:
        self.grades[law].append(g)
        if g.level < needed(law, self.required):
            if self.failing is None:
                self.failing = list(self.ops)
                self.first_failure = (self.examples, time.perf_counter() - self.t0)
            raise Failure(law, g, where, self.required)


class _Ops(list):  # type: ignore[type-arg]
    """An example's operations; each one appended is counted and reported (``Recorder.on_op``: progress of a
    long check). Counted here rather than in the state machine's rules: Hypothesis derives its derandomized seed
    from the machine's source, so editing a rule would change every check's operation sequence."""

    def __init__(self, rec: Recorder):
        super().__init__()
        self.rec = rec

    def append(self, op: dict[str, Any]) -> None:
        super().append(op)
        self.rec.n_ops += 1
        self.rec.on_op(self.rec.n_ops)


def window_edges(model: Model, max_chunk: int) -> list[int]:
    """Chunk lengths that cross a sliding window inside one chunk or straddle it after a full one (SPEC.md §5):
    W - 1, W, W + 1, 2W + 1, those beyond what the plain prefill rule draws. Empty without a window."""
    window = getattr(model.config, "sliding_window", None)
    return sorted({n for n in (window - 1, window, window + 1, 2 * window + 1) if n > max_chunk} if window else ())


def build_machine(model: Model, impl: Any, rec: Recorder, max_chunk: int = 12) -> type[RuleBasedStateMachine]:
    caps = impl.capabilities
    keep = "immutable" in caps
    take = (lambda b: b) if keep else consumes
    tokens = st.integers(0, model.vocab_size - 1)
    seeds = st.integers(0, 2**64 - 1)
    ids = itertools.count()

    class Lockstep(RuleBasedStateMachine):
        sessions = Bundle("sessions")

        def __init__(self) -> None:
            super().__init__()
            rec.new_example()
            self.ex = Executor(model, impl, rec.grade)
            self.drawn = False

        def _do(self, op: dict[str, Any]) -> bool:
            if rec.impl_error is not None:
                raise rec.impl_error  # a dead implementation stays dead
            rec.ops.append(op)
            try:
                self.ex.apply(op, f"op {len(rec.ops) - 1} {op['op']}")
            except NotApplicable:
                rec.ops.pop()
                return False
            except ImplementationError as err:
                rec.impl_error = err
                if rec.failing is None:
                    rec.failing = list(rec.ops)
                raise
            return True

        def _pos(self, sid: int) -> int:
            return self.ex.sessions[sid].spec.pos if sid in self.ex.sessions else 0

        @initialize(target=sessions)
        def start(self) -> int:
            sid = next(ids)
            self._do({"op": "init", "new": sid})
            return sid

        @rule(target=sessions, sid=take(sessions), chunk=st.lists(tokens, min_size=1, max_size=max_chunk))
        def prefill(self, sid: int, chunk: list[int]) -> Any:
            new = next(ids)
            return new if self._do({"op": "run", "session": sid, "new": new, "tokens": chunk}) else multiple()

        @rule(target=sessions, sid=take(sessions), token=tokens, seed=seeds)
        def decode(self, sid: int, token: int, seed: int) -> Any:
            new, rand = next(ids), rand_for(seed, self._pos(sid) + 1)
            op = {"op": "decode", "session": sid, "new": new, "token": token, "rand": f32_hex(rand)}
            return new if self._do(op) else multiple()

        @precondition(lambda self: "fork" in caps and not keep)
        @rule(target=sessions, sid=sessions)
        def fork(self, sid: int) -> Any:
            new = next(ids)
            return new if self._do({"op": "fork", "session": sid, "new": new}) else multiple()

        @precondition(lambda self: "batch" in caps)
        @rule(target=sessions, group=st.lists(take(sessions), min_size=2, max_size=3, unique=True), data=st.data())
        def batch(self, group: list[int], data: st.DataObject) -> Any:
            chunks = [data.draw(st.lists(tokens, min_size=1, max_size=max_chunk)) for _ in group]
            new = [next(ids) for _ in group]
            ok = self._do({"op": "run_batch", "sessions": group, "new": new, "tokens": chunks})
            return multiple(*new) if ok else multiple()

        @precondition(lambda self: bool({"fork", "immutable"} & caps))
        @rule(sid=sessions, token=tokens, seed=seeds)
        def repeat(self, sid: int, token: int, seed: int) -> None:
            rand = rand_for(seed, self._pos(sid) + 1)
            self._do({"op": "repeat", "session": sid, "token": token, "rand": f32_hex(rand)})

        @precondition(
            lambda self: bool({"fork", "immutable"} & caps) and model.sampler.temperature > 0 and not self.drawn
        )
        @rule(sid=sessions, token=tokens, seed=seeds)
        def distribution(self, sid: int, token: int, seed: int) -> None:
            self.drawn = True  # DRAWS decodes: at most once per run, to keep runs cheap
            pos = self._pos(sid) + 1
            rands = [f32_hex(rand_for((seed + i) % 2**64, pos)) for i in range(DRAWS)]
            self._do({"op": "distribution", "session": sid, "token": token, "rands": rands})

        @rule(prefix=st.lists(tokens, min_size=1, max_size=8), extra=st.lists(tokens, min_size=1, max_size=4))
        def causality(self, prefix: list[int], extra: list[int]) -> None:
            self._do({"op": "causality", "tokens": prefix, "extra": extra})

        @invariant()
        def alive(self) -> None:
            if rec.impl_error is not None:
                raise rec.impl_error

    edges = window_edges(model, max_chunk)
    if not edges:
        return Lockstep

    class WindowLockstep(Lockstep):
        """A sliding-window model: also chunks that cross the window (a subclass, so the plain machine's source,
        from which Hypothesis derives its derandomized seed, and its runs stay as they are for other models)."""

        @rule(target=Lockstep.sessions, sid=take(Lockstep.sessions), n=st.sampled_from(edges), data=st.data())
        def prefill_across_window(self, sid: int, n: int, data: st.DataObject) -> Any:
            return self.prefill(sid, data.draw(st.lists(tokens, min_size=n, max_size=n)))

    return WindowLockstep

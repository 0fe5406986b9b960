"""What a check records: every grade per law, the coverage each law reached, and the first failure.

Coverage per law (the report's table, docs/checking.md "Coverage"): comparisons made, the deepest position
compared, the longest chunk, comparisons on forked or resumed handles, comparisons inside run_batch, and sampled
draws (temperature > 0). A law with no comparison was not exercised: the check cannot say anything about it, so
it fails any required level unless the user drops it (``--skip-law``).
"""

from __future__ import annotations

import collections
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import attrs

from .levels import Grade, Level
from .lockstep import Seen, needed
from .protocol import ImplementationError


class Failure(AssertionError):
    def __init__(self, law: str, grade: Grade, where: str, required: Level):
        self.law, self.grade, self.where = law, grade, where
        need = needed(law, required).label()
        super().__init__(
            f"{law}: {grade.level.label()} (needs {need}) at {where}: {grade.note or f'rel err {grade.err:.3g}'}"
        )


@attrs.define
class Coverage:
    n: int = 0
    deepest: int = -1
    longest: int = 0
    forks: int = 0
    batches: int = 0
    draws: int = 0

    def add(self, seen: Seen) -> None:
        self.n += 1
        self.deepest = max(self.deepest, seen.pos)
        self.longest = max(self.longest, seen.chunk)
        self.forks += int(seen.forked)
        self.batches += int(seen.batch)
        self.draws += seen.draws

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


class Recorder:
    """Grades and coverage across every run, the operations of the current run, and the first failure."""

    def __init__(self, required: Level):
        self.required = required
        self.grades: dict[str, list[Grade]] = defaultdict(list)
        self.coverage: dict[str, Coverage] = defaultdict(Coverage)
        self.ops: list[dict[str, Any]] = []
        self.counts: collections.Counter[str] = collections.Counter()  # operations applied, by kind, over all runs
        self.runs = 0
        self.failing: list[dict[str, Any]] | None = None  # ops of the first failing run, up to the failing op
        self.failure: Failure | ImplementationError | None = None
        self.first_failure: tuple[int, float] | None = None  # (runs so far, seconds) when first caught
        self.on_run: Callable[[int], None] = lambda n: None
        self.on_op: Callable[[int], None] = lambda n: None  # operations applied so far, over all runs (progress)
        self.t0 = time.perf_counter()

    def new_run(self) -> None:
        self.ops = []
        self.runs += 1
        self.on_run(self.runs)

    def applied(self, kind: str) -> None:
        self.counts[kind] += 1
        self.on_op(self.counts.total())

    def grade(self, law: str, g: Grade, where: str, seen: Seen) -> None:
        self.grades[law].append(g)
        self.coverage[law].add(seen)
        if g.level < needed(law, self.required):
            raise Failure(law, g, where, self.required)

    def failed(self, err: Failure | ImplementationError) -> None:
        if self.failing is None:
            self.failing, self.failure = list(self.ops), err
            self.first_failure = (self.runs, time.perf_counter() - self.t0)

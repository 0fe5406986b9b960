"""Replay an operation list against the spec and an implementation, and shrink a failing one.

The shrinker works on the operations themselves (they are data): it deletes operations, shortens token lists and
lowers token ids while the replay still fails, within a time budget. This is faster and more thorough than
shrinking the Hypothesis choices behind a stateful test, whose steps are expensive model calls.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

from lmstep.spec import Model

from .levels import Grade, Level
from .lockstep import Executor, NotApplicable, needed
from .machine import Failure
from .protocol import ImplementationError


def replay(
    model: Model, impl: Any, ops: list[dict[str, Any]], required: Level
) -> tuple[int, Failure | ImplementationError] | None:
    """(index of the first failing op, what failed), or None when every op passes at ``required``."""

    def grade(law: str, g: Grade, where: str) -> None:
        if g.level < needed(law, required):
            raise Failure(law, g, where, required)

    ex = Executor(model, impl, grade)
    for i, op in enumerate(ops):
        try:
            ex.apply(op, f"op {i} {op['op']}")
        except NotApplicable:
            return None  # an invalid sequence (a removed op made a session vanish) does not count as failing
        except (Failure, ImplementationError) as err:
            return i, err
    return None


def _candidates(ops: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(len(ops) - 1, -1, -1):  # drop one op (from the end: later ops depend on earlier ones)
        yield ops[:i] + ops[i + 1 :]
    for i, op in enumerate(ops):  # shorten and simplify token lists
        for key in ("tokens", "extra"):
            seq = op.get(key)
            if isinstance(seq, list) and seq and isinstance(seq[0], int):
                for j in range(len(seq)):
                    if len(seq) > 1:
                        yield _with(ops, i, key, seq[:j] + seq[j + 1 :])
                    if seq[j] != 0:
                        yield _with(ops, i, key, seq[:j] + [0] + seq[j + 1 :])
        if op.get("token"):
            yield _with(ops, i, "token", 0)


def _with(ops: list[dict[str, Any]], i: int, key: str, value: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(ops)
    out[i][key] = value
    return out


def shrink(
    model: Model, impl: Any, ops: list[dict[str, Any]], required: Level, budget_s: float = 10.0
) -> tuple[list[dict[str, Any]], Any]:
    """The smallest failing variant of ``ops`` found within ``budget_s`` seconds, and its failure."""
    found = replay(model, impl, ops, required)
    if found is None:
        return ops, None  # not reproducible by replay (e.g. a flaky implementation): keep what Hypothesis saw
    ops, failure = ops[: found[0] + 1], found
    deadline = time.monotonic() + budget_s
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for cand in _candidates(ops):
            if time.monotonic() >= deadline:
                break
            got = replay(model, impl, cand, required)
            if got is not None:
                ops, failure, improved = cand[: got[0] + 1], got, True
                break
    return ops, failure

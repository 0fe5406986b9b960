"""Replay an operation list against the spec and an implementation, and shrink a failing one.

The shrinker works on the operations themselves (they are data): it keeps the failing operation's lineage (the
operations that made the sessions it used) and drops the rest, deletes operations, halves and then shortens token
lists and lowers token ids, while the replay still fails for the same law, within a time budget. Deep coverage
runs are long, so cutting whole unrelated branches first and halving chunks (each replay gets cheaper) matter more
than one-token steps.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

from lmstep.spec import Model

from .levels import Grade, Level
from .lockstep import Executor, NotApplicable, Seen, needed
from .protocol import ImplementationError
from .recorder import Failure


def replay(
    model: Model, impl: Any, ops: list[dict[str, Any]], required: Level, skip: frozenset[str] = frozenset()
) -> tuple[int, Failure | ImplementationError] | None:
    """(index of the first failing op, what failed), or None when every op passes at ``required``."""

    def grade(law: str, g: Grade, where: str, seen: Seen) -> None:
        if g.level < needed(law, required):
            raise Failure(law, g, where, required)

    ex = Executor(model, impl, grade, skip)
    try:
        for i, op in enumerate(ops):
            try:
                ex.apply(op, f"op {i} {op['op']}")
            except NotApplicable:
                return None  # an invalid sequence (a removed op made a session vanish) does not count as failing
            except (Failure, ImplementationError) as err:
                return i, err
        return None
    finally:
        try:
            ex.close()
        except ImplementationError:
            pass


def _law(err: Failure | ImplementationError) -> str:
    return err.law if isinstance(err, Failure) else "protocol"


def lineage(ops: list[dict[str, Any]], last: int) -> list[dict[str, Any]]:
    """The operations ``ops[last]`` depends on: those that created the sessions it uses, transitively."""
    need: set[int] = set()

    def uses(op: dict[str, Any]) -> set[int]:
        s = op.get("sessions", [op["session"]] if "session" in op else [])
        return set(s)

    def makes(op: dict[str, Any]) -> set[int]:
        new = op.get("new")
        return set(new) if isinstance(new, list) else ({new} if isinstance(new, int) else set())

    keep = [last]
    need |= uses(ops[last])
    for i in range(last - 1, -1, -1):
        if makes(ops[i]) & need:
            keep.append(i)
            need |= uses(ops[i])
    return [ops[i] for i in sorted(keep)]


def _candidates(ops: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    sliced = lineage(ops, len(ops) - 1)
    if len(sliced) < len(ops):
        yield sliced
    for i in range(len(ops) - 2, -1, -1):  # splice out a step of a session's chain: its successor takes its input
        op = ops[i]
        if op["op"] in ("run", "decode", "fork") and isinstance(op.get("new"), int):
            yield _splice(ops, i)
    for i in range(len(ops) - 1, -1, -1):  # drop one op (from the end: later ops depend on earlier ones)
        yield ops[:i] + ops[i + 1 :]
    for i, op in enumerate(ops):  # halve long token lists (keep either half)
        for key in ("tokens", "extra"):
            seq = op.get(key)
            if isinstance(seq, list) and len(seq) > 2 and isinstance(seq[0], int):
                half = len(seq) // 2
                yield _with(ops, i, key, seq[:half])
                yield _with(ops, i, key, seq[half:])
        if op["op"] == "distribution" and len(op["rands"]) > 1:
            yield _with(ops, i, "rands", op["rands"][: len(op["rands"]) // 2])
    for i, op in enumerate(ops):  # shorten and simplify short token lists
        for key in ("tokens", "extra"):
            seq = op.get(key)
            if isinstance(seq, list) and seq and isinstance(seq[0], int) and len(seq) <= 16:
                for j in range(len(seq)):
                    if len(seq) > 1:
                        yield _with(ops, i, key, seq[:j] + seq[j + 1 :])
                    if seq[j] != 0:
                        yield _with(ops, i, key, seq[:j] + [0] + seq[j + 1 :])
        if op.get("token"):
            yield _with(ops, i, "token", 0)


def _splice(ops: list[dict[str, Any]], i: int) -> list[dict[str, Any]]:
    """``ops`` without op i, later uses of the session it made renamed to the session it consumed."""
    old, new = ops[i]["session"], ops[i]["new"]
    out = []
    for op in ops[:i] + ops[i + 1 :]:
        op = copy.deepcopy(op)
        if op.get("session") == new:
            op["session"] = old
        if isinstance(op.get("sessions"), list):
            op["sessions"] = [old if s == new else s for s in op["sessions"]]
        out.append(op)
    return out


def _with(ops: list[dict[str, Any]], i: int, key: str, value: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(ops)
    out[i][key] = value
    return out


def shrink(
    model: Model,
    impl: Any,
    ops: list[dict[str, Any]],
    required: Level,
    budget_s: float = 10.0,
    skip: frozenset[str] = frozenset(),
    law: str | None = None,
) -> tuple[list[dict[str, Any]], Any]:
    """The smallest variant of ``ops`` found within ``budget_s`` seconds that fails for the same law (``law``, or
    that of the first replay), and its failure."""
    found = replay(model, impl, ops, required, skip)
    if found is None or (law is not None and _law(found[1]) != law):
        return ops, None  # not reproducible by replay (e.g. a flaky implementation): keep what was seen
    law = _law(found[1])
    ops, failure = ops[: found[0] + 1], found
    deadline = time.monotonic() + budget_s
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for cand in _candidates(ops):
            if time.monotonic() >= deadline:
                break
            got = replay(model, impl, cand, required, skip)
            if got is not None and _law(got[1]) == law:
                ops, failure, improved = cand[: got[0] + 1], got, True
                break
    return renumber(ops), failure


def renumber(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Session numbers 0, 1, 2, ... in the order the operations make them (the same sequence, easier to read)."""
    names: dict[int, int] = {}

    def name(s: int) -> int:
        return names.setdefault(s, len(names))

    out = []
    for op in copy.deepcopy(ops):
        for key in ("session", "new"):
            if isinstance(op.get(key), int):
                op[key] = name(op[key])
        for key in ("sessions", "new"):
            if isinstance(op.get(key), list):
                op[key] = [name(s) for s in op[key]]
        out.append(op)
    return out

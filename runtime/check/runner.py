"""Run a check: the coverage run (coverage.py), then exploration (explore.py); shrink the first failure
(shrink.py); summarise per law, with the coverage each law reached.

report = check(model, impl, required=Level.L1, max_examples=30)
report.passed, report.laws, report.coverage, report.counterexample
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from lmstep.spec import Model
from lmstep.spec.errors import InputError

from . import coverage, explore
from .driver import Driver
from .levels import Level, summarize
from .lockstep import LAWS, Executor
from .protocol import ImplementationError, guard
from .recorder import Failure, Recorder
from .shrink import shrink

# Why a law can go without comparisons, by the capability it needs.
NEEDS = {"state": "state", "fork": "fork", "batch": "batch"}


@attrs.frozen
class Report:
    model: str
    impl: str
    required: Level
    passed: bool
    laws: dict[str, dict[str, Any]]  # law -> {level, worst_err, worst_ratio, excused, n}; level None: not exercised
    examples: int  # runs: the coverage run + the explored runs
    seconds: float
    message: str = ""
    counterexample: list[dict[str, Any]] | None = None  # the shrunk operation sequence
    failed_law: str = ""
    stderr_tail: str = ""
    tail_kind: str = "stderr"
    seconds_to_find: float | None = None
    coverage: dict[str, dict[str, int]] = attrs.field(factory=dict)  # law -> Coverage.as_dict()
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    operations: dict[str, int] = attrs.field(factory=dict)  # operations applied, by kind (init, run, fork, ...)

    def achieved(self) -> dict[str, str]:
        return {law: s["level"].label() if s["level"] is not None else "not exercised" for law, s in self.laws.items()}


def parse_skip(names: Iterable[str]) -> tuple[str, ...]:
    """``--skip-law`` values (repeated or comma-separated) -> law names, each known."""
    out: list[str] = []
    for item in names:
        for name in (n.strip() for n in str(item).split(",")):
            if not name:
                continue
            if name not in LAWS:
                raise InputError(f"--skip-law {name!r}: no such checker law; laws: {', '.join(LAWS)}")
            out.append(name) if name not in out else None
    return tuple(out)


def check(
    model: Model,
    impl: Any,
    *,
    required: Level = Level.L1,
    max_examples: int = 30,
    steps: int = 10,
    depth: int | None = None,
    skip_laws: Iterable[str] = (),
    shrink_seconds: float = 10.0,
    on_example: Callable[[int], None] | None = None,
    on_op: Callable[[int], None] | None = None,
    seed: int = 0,
) -> Report:
    """Drive ``impl`` and the spec in lockstep; shrink any failure to a short operation sequence.

    ``depth``: the position the coverage run passes (default 512; the thorough profile uses 2048), capped by the
    model's context. ``skip_laws``: checker laws dropped on purpose (reported; never required). ``seed``: the same
    seed explores the same operations, in any process and folder (the default 0 is what the CLI runs).
    ``on_example(n)`` / ``on_op(n)`` are told how many runs / operations have started (progress of a long check)."""
    skip = frozenset(parse_skip(skip_laws))
    impl = guard(impl)
    rec = Recorder(required)
    if on_example is not None:
        rec.on_run = on_example
    if on_op is not None:
        rec.on_op = on_op
    depth = coverage.DEPTH["quick"] if depth is None else depth

    def one_run(body: Callable[[Driver], None]) -> None:
        rec.new_run()
        ex = Executor(model, impl, rec.grade, skip)
        try:
            body(Driver(ex, rec))
            ex.close()
        except (Failure, ImplementationError) as err:
            rec.failed(err)
            raise

    try:
        one_run(lambda d: coverage.run(d, depth, seed))
        if max_examples > 0:
            _explore(impl, rec, steps, max_examples, one_run, seed)
    except (Failure, ImplementationError):
        pass
    return _report(model, impl, rec, required, skip, shrink_seconds)


def _explore(impl: Any, rec: Recorder, steps: int, examples: int, one_run: Callable[..., None], seed: int) -> None:
    """``examples`` programs after the coverage run, stopping at the first failure (explore.py)."""
    for index in range(examples):
        one_run(lambda d, program=explore.program(impl.capabilities, steps, seed, index): explore.run(d, program))


def _report(model: Model, impl: Any, rec: Recorder, required: Level, skip: frozenset[str], budget: float) -> Report:
    message, ops, law, tail, kind = "", None, "", "", "stderr"
    err = rec.failure
    if isinstance(err, ImplementationError):
        ops, law, message, tail, kind = rec.failing, "protocol", str(err), err.tail, err.tail_kind
        if err.alive and ops:  # a live implementation (an exception, an error reply) replays: shrink it
            ops, found = shrink(model, impl, ops, required, budget, skip, "protocol")
            if found is not None:
                message, tail = str(found[1]), getattr(found[1], "tail", tail)
    elif isinstance(err, Failure):
        message, ops, law = str(err).splitlines()[0], rec.failing, err.law
        if ops:
            ops, found = shrink(model, impl, ops, required, budget, skip, err.law)
            if found is not None:
                err = found[1]
                message = str(err).splitlines()[0]
        if isinstance(err, Failure):
            rec.grades[law].append(err.grade)  # the shrunk failure counts in its law's row
    laws: dict[str, dict[str, Any]] = {}
    for name in LAWS:
        if name in skip:
            continue
        laws[name] = summarize(rec.grades[name]) if rec.grades.get(name) else {"level": None, "n": 0}
    notes = []
    if not impl.v2:
        notes.append(
            "the implementation speaks protocol 1: every decode sampled with --model's settings "
            f"(T={model.sampler.temperature:g}); with protocol 2 (decode takes sampler settings) the checker varies "
            "them"
        )
    if not message:
        missing = [name for name, s in laws.items() if s["level"] is None]
        if missing:
            law = missing[0]
            why = (
                f"the implementation does not declare {NEEDS[law]!r}"
                if law in NEEDS and NEEDS[law] not in impl.capabilities
                else "no operation reached it"
            )
            message = (
                f"{', '.join(missing)}: not exercised ({why}); a law the check never compared is not conformance: "
                f"pass --skip-law {','.join(missing)} to drop {'it' if len(missing) == 1 else 'them'}"
            )
    return Report(
        model=model.name,
        impl=impl.name,
        required=required,
        passed=not message,
        laws=laws,
        examples=rec.runs,
        seconds=time.perf_counter() - rec.t0,
        message=message,
        counterexample=ops,
        failed_law=law,
        stderr_tail=tail,
        tail_kind=kind,
        seconds_to_find=rec.first_failure[1] if rec.first_failure else None,
        coverage={name: rec.coverage[name].as_dict() for name in laws},
        skipped=tuple(sorted(skip)),
        notes=tuple(notes),
        operations=dict(rec.counts),
    )

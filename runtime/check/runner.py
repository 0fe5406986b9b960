"""Run the lockstep machine against an implementation and summarise what it found.

report = check(model, impl, required=Level.L1, max_examples=30)
report.passed, report.laws, report.counterexample
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from lmstep.spec import Model

from .levels import Level, summarize
from .lockstep import LAWS
from .machine import Failure, Recorder, build_machine
from .protocol import ImplementationError
from .shrink import shrink


@attrs.frozen
class Report:
    model: str
    impl: str
    required: Level
    passed: bool
    laws: dict[str, dict[str, Any]]  # law -> {level, worst_err, excused, n}
    examples: int
    seconds: float
    message: str = ""
    counterexample: list[dict[str, Any]] | None = None  # the shrunk operation sequence
    failed_law: str = ""
    stderr_tail: str = ""
    seconds_to_find: float | None = None

    def achieved(self) -> dict[str, str]:
        return {law: s["level"].label() for law, s in self.laws.items()}


def check(
    model: Model,
    impl: Any,
    *,
    required: Level = Level.L1,
    max_examples: int = 30,
    steps: int = 10,
    max_chunk: int = 12,
    shrink_seconds: float = 10.0,
    on_example: Callable[[int], None] | None = None,
    on_op: Callable[[int], None] | None = None,
) -> Report:
    """Drive ``impl`` and the spec in lockstep; shrink any failure to a short operation sequence.
    ``on_example(n)`` / ``on_op(n)`` are told how many examples / operations have started (for progress)."""
    rec = Recorder(required)
    if on_example is not None:
        rec.on_example = on_example
    if on_op is not None:
        rec.on_op = on_op
    config = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
    )
    message, ops, law, tail = "", None, "", ""
    try:
        run_state_machine_as_test(build_machine(model, impl, rec, max_chunk=max_chunk), settings=config)
    except (Failure, ImplementationError, Flaky) as raised:
        if rec.impl_error is not None:  # the implementation crashed, hung or misspoke: report its first error
            err, ops, law = rec.impl_error, rec.failing, "protocol"  # no shrinking on a dead process
            message, tail = str(err), getattr(err, "stderr_tail", "")
        else:
            err = raised
            message, ops = str(err).splitlines()[0], rec.failing
            if ops is not None:
                ops, found = shrink(model, impl, ops, required, shrink_seconds)
                if found is not None:
                    err = found[1]
                    message = str(err).splitlines()[0]
            law = getattr(err, "law", "")
            if isinstance(err, Failure):
                rec.grades[law].append(err.grade)  # the shrunk failure counts in its law's row
    laws = {name: summarize(rec.grades[name]) for name in LAWS if rec.grades.get(name)}
    return Report(
        model=model.name,
        impl=getattr(impl, "name", type(impl).__name__),
        required=required,
        passed=not message,
        laws=laws,
        examples=rec.examples,
        seconds=time.perf_counter() - rec.t0,
        message=message,
        counterexample=ops,
        failed_law=law,
        stderr_tail=tail,
        seconds_to_find=rec.first_failure[1] if rec.first_failure else None,
    )

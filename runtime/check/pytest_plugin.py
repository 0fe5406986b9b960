"""pytest plugin (auto-registered by installing lmstep): a ``lmstep_check`` fixture for a user's test suite.

    def test_my_engine(lmstep_check):
        lmstep_check("tiny-llama", 'cmd:"./build/my_engine --jsonl"', level="L1", skip_laws=["batch"])

A failure fails the test with the law, the shrunk counterexample file and the command that replays it.
``pytest --lmstep-profile thorough`` runs a coverage run to position 2048 and 300 explored runs of 25 operations
instead of 512 and 30 x 10.
"""

from __future__ import annotations

from typing import Any

import pytest

PROFILES = {"quick": (30, 10, 512), "thorough": (300, 25, 2048)}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmstep")
    group.addoption("--lmstep-profile", default="quick", choices=sorted(PROFILES), help="lmstep_check effort")


@pytest.fixture
def lmstep_check(request: pytest.FixtureRequest, tmp_path: Any):
    """``lmstep_check(model, impl, level="L1", skip_laws=(), **sampler)`` -> Report; fails the test on a
    violation (a law the check could not exercise included, unless it is in ``skip_laws``)."""
    examples, steps, depth = PROFILES[request.config.getoption("--lmstep-profile")]

    def run(model: Any, impl: Any, level: str = "L1", skip_laws: Any = (), **sampler: Any):
        import json

        from lmstep.runtime.check import check, open_impl, parse_level
        from lmstep.runtime.check.cetrace import to_json
        from lmstep.runtime.threads import apply_policy
        from lmstep.spec import load

        apply_policy()  # one BLAS thread unless the user chose (runtime/threads.py), as on the command line

        m = load(model, **sampler) if isinstance(model, str) else model
        implementation = open_impl(impl, m) if isinstance(impl, str) else impl
        try:
            report = check(
                m,
                implementation,
                required=parse_level(level),
                max_examples=examples,
                steps=steps,
                depth=depth,
                skip_laws=skip_laws,
            )
        finally:
            if isinstance(impl, str):
                getattr(implementation, "close", lambda: None)()
        if not report.passed and not report.counterexample:  # a law not exercised: nothing to replay
            pytest.fail(f"lmstep: {report.impl} does not conform at {report.required.name}: {report.message}", False)
        if not report.passed:
            path = tmp_path / "lmstep-counterexample.json"
            path.write_text(json.dumps(to_json(m, impl if isinstance(impl, str) else report.impl, report), indent=1))
            pytest.fail(
                f"lmstep: {report.impl} does not conform at {report.required.name}: {report.message}\n"
                f"counterexample ({len(report.counterexample or [])} operations): {path}\n"
                f"replay it with: lmstep replay {path}"
                + (f"\nstderr of the implementation:\n{report.stderr_tail}" if report.stderr_tail else ""),
                pytrace=False,
            )
        return report

    return run

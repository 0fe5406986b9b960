"""Shared by the tests/test_proofs_*.py files: the default proof suite, run once per session in 2 workers."""

from __future__ import annotations

import functools

from lmstep.proofs.obligations import Result, run_all, select


@functools.cache
def default_results() -> dict[str, Result]:
    return {r.name: r for r in run_all(select(), jobs=2)}

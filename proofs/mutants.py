"""Mutants of the spec's own functions: the negative controls that show a proof is not vacuous.

A mutant is the spec function's source with one textual edit (a swapped operand, a finite mask instead of
-inf, an off-by-one), compiled in the spec module's namespace. Because the edit is applied to the current
source, a mutant always differs from the real function by exactly that edit; if the spec is rewritten so the
text no longer occurs, building the mutant fails loudly instead of silently testing something else.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any


@functools.cache
def mutate(fn: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    """``fn`` with the single occurrence of ``old`` in its source replaced by ``new``."""
    src = textwrap.dedent(inspect.getsource(fn))
    count = src.count(old)
    if count != 1:
        raise ValueError(f"mutant of {fn.__module__}.{fn.__qualname__}: {old!r} occurs {count} times (want 1)")
    namespace = dict(fn.__globals__)
    exec(compile(src.replace(old, new), f"<mutant of {fn.__qualname__}>", "exec"), namespace)
    return namespace[fn.__name__]

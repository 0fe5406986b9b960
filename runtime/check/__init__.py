"""The property tester: check any implementation against the spec (docs/checking.md).

from lmstep.runtime.check import check, open_impl
from lmstep.spec import load
model = load("tiny-llama")
report = check(model, open_impl('cmd:"./my_engine --jsonl"', model))
assert report.passed, report.message
"""

from .adapters import SpecImpl, open_impl
from .levels import Level, parse_level
from .protocol import Implementation, ImplementationError
from .runner import Report, check, parse_skip

__all__ = [
    "Implementation",
    "ImplementationError",
    "Level",
    "Report",
    "SpecImpl",
    "check",
    "open_impl",
    "parse_level",
    "parse_skip",
]

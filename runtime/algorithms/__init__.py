"""Transformers whose weights are constructed, not trained, to compute an algorithm (docs/algorithms.md).

    from lmstep.runtime.algorithms import compile_algorithm
    algo = compile_algorithm("sort", symbols=4, max_len=8)
    algo.model                      # an lmstep.spec Model (GPT-2 family), greedy
    algo.prompt([3, 1, 2])          # [BOS, 3, 1, 2, SEP]
    algo.answer([3, 1, 2])          # [1, 2, 3, EOS]: what greedy decoding must produce

The contract (also written to algorithm.json by :mod:`.folder`): the prompt is ``BOS x_1 .. x_n SEP`` with
0 <= n <= max_len symbols; greedy decoding continues with ``y_1 .. y_m EOS``. Token ids: symbols 0..k-1, then
BOS = k, SEP = k + 1, EOS = k + 2. Nothing here depends on anything but numpy and lmstep.spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmstep.spec import Model
from lmstep.spec.errors import InputError
from lmstep.spec.gpt2 import weights_from_dict

from . import reverse, sort
from .kit import Stream

# name -> (build(k, max_len) -> (config, params, stream), expected(xs) -> ys, one-line description)
ALGORITHMS: dict[str, tuple[Callable[..., Any], Callable[[list[int]], list[int]], str]] = {
    "sort": (sort.build, sort.expected, "sort a sequence of small integers (counting: uniform head + threshold MLP)"),
    "reverse": (reverse.build, reverse.expected, "reverse a sequence (hard positional heads + lookup-table MLP)"),
}
DEFAULTS = {"symbols": 4, "max_len": 8}
LIMITS = {"symbols": (1, 64), "max_len": (0, 64)}


@dataclass(frozen=True)
class Algorithm:
    name: str
    symbols: int  # k: symbol ids 0 .. k-1
    max_len: int  # the bound: prompts of 0 .. max_len symbols
    model: Model = field(repr=False)
    stream: Stream = field(repr=False)  # the named residual dimensions, for documentation and the stepper
    expected: Callable[[list[int]], list[int]] = field(repr=False)

    @property
    def bos(self) -> int:
        return self.symbols

    @property
    def sep(self) -> int:
        return self.symbols + 1

    @property
    def eos(self) -> int:
        return self.symbols + 2

    def prompt(self, xs: list[int]) -> list[int]:
        return [self.bos, *xs, self.sep]

    def answer(self, xs: list[int]) -> list[int]:
        """The greedy continuation the contract promises: y_1 .. y_m, EOS."""
        return [*self.expected(list(xs)), self.eos]

    def with_params(self, params: dict[str, np.ndarray]) -> Algorithm:
        """The same algorithm on other weights (a mutant), everything else unchanged."""
        cfg = self.model.config
        return Algorithm(
            self.name,
            self.symbols,
            self.max_len,
            Model("gpt2", cfg, weights_from_dict(cfg, params), name=f"{self.name}-mutant"),
            self.stream,
            self.expected,
        )


def compile_algorithm(name: str, symbols: int | None = None, max_len: int | None = None) -> Algorithm:
    """The constructed model for ``name`` (one of ALGORITHMS); one-line InputError for anything else."""
    if name not in ALGORITHMS:
        raise InputError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHMS)}")
    k = DEFAULTS["symbols"] if symbols is None else symbols
    n = DEFAULTS["max_len"] if max_len is None else max_len
    for label, value in (("symbols", k), ("max_len", n)):
        lo, hi = LIMITS[label]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            flag = "--" + label.replace("_", "-")
            raise InputError(f"{flag} must be an integer in [{lo}, {hi}], got {value!r}")
    build, expected, _ = ALGORITHMS[name]
    cfg, params, stream = build(k, n)
    return Algorithm(name, k, n, Model("gpt2", cfg, weights_from_dict(cfg, params), name=name), stream, expected)


def params_of(algo: Algorithm) -> dict[str, np.ndarray]:
    """The model's parameters by our dotted names (copies, so a mutant can change one)."""
    return {name: np.array(a) for name, a in algo.model.named_weights().items()}

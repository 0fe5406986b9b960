"""Tools for writing GPT-2 weights by hand: a named residual stream, LayerNorm made harmless, exact GELU switches.

The constructions (sort.py, reverse.py) follow the RASP / tracr recipe (Weiss et al. 2021, "Thinking Like
Transformers"; Lindner et al. 2023, "Tracr: Compiled Transformers as a Laboratory for Interpretability"): the
residual stream is cut into named blocks, and most blocks hold a *categorical* value, a one-hot vector (tracr's
"categorical encoding"). Heads move one-hot vectors between positions; MLPs compute lookup tables of them.
tracr's models have no LayerNorm. GPT-2 applies one before every block (SPEC.md §6), and three devices make it
harmless here (docs/algorithms.md explains each):

1. **Constant statistics.** Where every block of the residual is one-hot with entries exactly 1 (G active
   blocks in C dimensions), its mean G/C and variance G/C - (G/C)^2 are the same at every position and for
   every input, so LayerNorm's 1/sigma is a known constant: :func:`ln_sigma`. The LayerNorm weight is set to
   that sigma, so LayerNorm(x) = x - mean(x) exactly over the reals.
2. **Zero-sum reads.** Every column of a matrix that reads a LayerNorm output (c_attn, c_fc) sums to zero
   (:func:`zero_sum_reads` puts minus the column sum on the ``zero`` dimension, which the residual never
   writes). Then r . (x - mean(x)) = r . x: the mean drops out, whatever it is.
3. **Exact switches.** An MLP unit's pre-activation only ever takes values in {0} or |z| >= 8 (= SWITCH).
   There GELU's tanh is +-1 in float32 (tanh(z) rounds to 1 for z > 9.4, and the tanh argument at 8 is 24.6),
   so gelu(z) is exactly relu(z): 0 below, z above. A unit is a switch, not an approximation.

Heads are made hard by score gaps of HARD >= 104: exp(-104) is below half the smallest float32 subnormal, so
softmax gives the losing keys weight exactly 0 and the winner exactly 1 (SPEC.md §4's softmax).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SWITCH = 8.0  # MLP pre-activations are 0 or at least this far from 0; gelu is exactly relu there (see above)
HARD = 128.0  # the score gap of a hard head: exp(-128) rounds to 0 in float32 (smallest subnormal: 2^-149)
EPS = 1e-5  # GPT2Config.layer_norm_epsilon (transformers' default); part of the sigma of :func:`ln_sigma`


class Stream:
    """A residual stream of named blocks: ``s.at("tok", 3)`` is the index of dimension 3 of block ``tok``.

    The last dimension is always ``zero``: nothing ever writes it, so zero-sum reads can park their offset there.
    """

    def __init__(self, blocks: Sequence[tuple[str, int]]):
        self.blocks: dict[str, tuple[int, int]] = {}
        start = 0
        for name, size in [*blocks, ("zero", 1)]:
            self.blocks[name] = (start, size)
            start += size
        self.width = start

    def at(self, block: str, i: int = 0) -> int:
        start, size = self.blocks[block]
        if not 0 <= i < size:
            raise IndexError(f"block {block} has {size} dimensions, not {i + 1}")
        return start + i

    def span(self, block: str) -> slice:
        start, size = self.blocks[block]
        return slice(start, start + size)

    def names(self) -> list[str]:
        """One label per dimension, e.g. ``tok[3]`` (for documentation and the stepper)."""
        out = []
        for block, (_, size) in self.blocks.items():
            out += [f"{block}[{i}]" if size > 1 else block for i in range(size)]
        return out


def ln_sigma(active: int, width: int, eps: float = EPS) -> np.float32:
    """sqrt(var + eps) of LayerNorm on a residual of ``active`` one-hot blocks (entries 1) in ``width`` dims:
    var = mean(x^2) - mean(x)^2 = G/C - (G/C)^2 (SPEC.md §4, biased variance). Rounded once to float32."""
    g = active / width
    return np.float32(math.sqrt(g - g * g + eps))


def zero_sum_reads(w: np.ndarray, stream: Stream) -> np.ndarray:
    """``w`` [C, n] with row ``zero`` set so that every column sums to 0 (device 2 of the module docstring)."""
    out = w.copy()
    z = stream.at("zero")
    out[z] = 0.0
    out[z] = -out.sum(axis=0)
    return out


def gpt2_zeros(cfg: object) -> dict[str, np.ndarray]:
    """Every parameter of ``lmstep.spec.gpt2`` for ``cfg``, as float64 zeros (rounded to float32 at the end)."""
    from lmstep.spec import gpt2

    return {name: np.zeros(shape, np.float64) for name, shape in gpt2.param_shapes(cfg).items()}


def to_float32(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every value the constructions use (multiples of 1/8, sqrt(C) * 128, the sigmas) is rounded once here."""
    return {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in params.items()}

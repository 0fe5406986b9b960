"""Tolerances for comparing two float32 computations of the same quantity, measured, per architecture (SPEC.md §8).

Error metric: ``rel_err(a, b) = max|a - b| / max(1, max|b|)`` — the worst absolute error, scaled by the
magnitude of the reference ``b`` (logits here reach |z| ~ 13; below 1 the absolute error is used). It is the one
metric of the project: the tests, the checker (runtime/check/levels.py), the onnxruntime and checkpoint
comparisons (tests/runtime_helpers.py, tests/hf_fixtures.py) and the benchmarks all import it from here.

Measured with benchmarks/measure_tolerances.py (random configs from tests/strategies.py) and plain random
draws per architecture (numpy 2.4 + OpenBLAS, float32 throughout):

    unrolled vs recurrent         median    p99       worst seen
    llama                         4e-7      1.5e-6    2.2e-6      (818 draws, 1..129 tokens; earlier, 3000 draws
                                                                   of 1..40 tokens: 99.9% 1.5e-6, worst 1.9e-6)
    llama, every family switch    3.5e-7    2.2e-6    7.2e-6      (3 x 3000 draws, 1..129 tokens, random configs
                                                                   drawing each switch of SPEC.md §5: worst 7.2e-6,
                                                                   4.5e-6 and 4.5e-6; no switch stands out, the
                                                                   tail is small widths, 8 to 24)
    gpt2 (width >= 8)             3.6e-7    1.7e-6    3.2e-6      (682 draws, 1..129 tokens; earlier, 3000 draws
                                                                   of 1..40 tokens: 99.9% 3.0e-6, worst 4.2e-6)
    llama with a sliding window   2.3e-7    1.3e-6    1.8e-6      (Mistral: 400 draws, windows 1..16, 1..129 tokens)
    mamba (Hillis-Steele scan)    4.5e-7    7.3e-6    1.75e-5     (3000 draws, 1..129 tokens; earlier, 1..40
                                                                   tokens: 99.9% 2.2e-5, worst 3.1e-5)
    mamba runtime schedule        4.5e-7    5.4e-6    1.4e-5      (the same 3000 draws: runtime/mamba_scan.py's
                                                                   pairing scan, what model.onnx computes)
    runtime schedule vs reference 3.5e-7    4.7e-6    1.4e-5      (the same draws: two bracketings of one scan)
    (sequences of 1024 tokens on the built-in models: llama 2.3e-6, gpt2 1.3e-6, mamba 9.6e-6, runtime
    schedule 9.6e-6, schedule vs reference 2.7e-6, tiny-mistral 2.7e-6)

Why these sizes: a logit is a dot product of width C after L residual blocks; float32 rounding is eps = 6e-8
per op and the two forms sum in different orders (batched GEMM vs one row; masked softmax over S keys vs the
decode softmax; for Mamba, a parallel scan of decay products vs a sequential recurrence, and
y = h C cancels when h is large, ~50, against a small output). That gives ~10-500 eps with a long tail for
small widths. The tolerances are >= 5x the worst value seen (llama with the family switches: 2.8x the single
worst of 9000 draws, 9x their p99), so a correct implementation does not flake, while
every broken variant in the negative controls (RoPE off by one, mask off by one, conv window not shifted, ...)
errs by more than 100x the tolerance. Mamba's stays at 2e-4: its Hillis-Steele reference has the longer tail
(3.1e-5 worst seen over all measurements), and 1e-4 would leave less than 5x; the runtime's schedule and the
reference (tests/test_mamba_scan.py: L1) are as far apart as either is from the recurrence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .arrays import tree_map
from .interface import ModelState
from .ops import WideOps
from .stored import StoredArray

# Two forms of the same model (unrolled vs recurrent; any chunking of a prefill; prefix vs extended sequence).
FORMS = {"llama": 2e-5, "gpt2": 2e-5, "mamba": 2e-4, "mamba2": 1e-4}

# The checker's bound for one comparison of an implementation with the spec (SPEC.md §8, docs/checking.md
# "Tolerance"): FACTOR times the spec's own float32 error on exactly that quantity, measured against the float64
# evaluation of the same functions (:class:`Wide`), and never below FLOOR. FLOOR is 16 units of float32 rounding
# (2^-24) of the scale: rel_err divides by max(1, max|b|), so this is 8 ulps of the largest value, what two
# independent float32 dot products of width ~64 differ by; it covers a quantity the spec happens to compute almost
# exactly (an embedding row, a first conv window, a lucky max over few values). Both are measured, not assumed
# (benchmarks/measure_bounds.py; docs/checking.md has the table): every correct implementation we have stays within
# 0.30 of the bound (~3x the spec's own error), a margin of 3.3x; the bug classes the checker must catch at L1 (eps
# placement, constants wrong in the third digit) exceed it by 1.3-3.2x on some comparisons (eps, GELU cubic) up to
# 7000x (RoPE theta), so a factor twice as large would miss some of them.
FACTOR = 10.0
FLOOR = 16 * 2.0**-24
# A state tensor is an intermediate value (a row of keys, an SSM state h = dt u B): its error comes from a few
# upstream elements (one channel's silu and dt) instead of being averaged by an output projection, so correct
# implementations spread wider around the spec's own error there (onnxruntime's Mamba state: up to 15.6x, its
# logits at most 4.3x). The state law's factor leaves a margin of 2 over that; the bugs it exists for (cache layout,
# an unshifted window, a missing append) err by orders of magnitude, and the logits laws catch the subtle ones.
STATE_FACTOR = 32.0
# L2 (tokens) accepts a numeric error up to this fraction of the logit scale: a float16 KV cache or float16
# activation tables err by ~1e-3; the decisions then agree except at near ties (runtime/check/levels.py).
L2_REL = 1e-2
# The L1 bound never exceeds a fifth of L2's: float32 rounding of a correct evaluation stays orders of magnitude
# below it (the spec's own error is ~1e-6..1e-5 of the scale on every built-in and fixture), so a larger derived
# bound means the float64 twin does not compute what the spec does (e.g. a state that lost its sliding window),
# and trusting it would pass anything. The comparison is then graded against this ceiling instead.
CEILING = L2_REL / 5


def rel_err(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """max|a - b| / max(1, max|b|) in float64; inf when the shapes differ."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0 if np.array_equal(a, b, equal_nan=True) else float("inf")
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def bound(spec: npt.ArrayLike, wide: npt.ArrayLike, factor: float = FACTOR) -> float:
    """The L1 bound of one comparison with ``spec`` (float32): ``factor`` x its error against ``wide`` (the float64
    evaluation of the same functions), at least FLOOR and at most CEILING."""
    return min(CEILING, max(FLOOR, factor * rel_err(spec, wide)))


def arrays_err(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, str]:
    """The worst rel_err over named tensors and the name where it occurs (inf for missing names)."""
    if a.keys() != b.keys():
        missing = sorted(set(a) ^ set(b))
        return float("inf"), missing[0]
    worst, where = 0.0, ""
    for k in a:
        e = rel_err(a[k], b[k])
        if e > worst:
            worst, where = e, k
    return worst, where


def state_err(s1: ModelState, s2: ModelState) -> float:
    """The worst rel_err over every state tensor (inf when names, shapes or positions differ)."""
    if s1.pos != s2.pos:
        return float("inf")
    return arrays_err(s1.arrays(), s2.arrays())[0]


# -- the float64 evaluation of the spec's own functions (SPEC.md §8, "tolerance from the spec's own error") -------


def widen(tree: Any) -> Any:
    """A model's weights or a state's cache with every float32 array (KV buffer, weight kept as stored) widened to
    float64, exactly."""
    from .arrays import SeqBuffer

    if isinstance(tree, StoredArray):  # a checkpoint's bf16 / f16 weight: widened on use, like the spec's own
        return WideStored(tree.raw, tree.fmt)
    if isinstance(tree, SeqBuffer):
        return SeqBuffer.from_array(tree.view().astype(np.float64), tree.axis, tree.keep)  # a window keeps its bound
    if isinstance(tree, np.ndarray):
        return tree.astype(np.float64) if tree.dtype == np.float32 else tree
    if isinstance(tree, tuple):
        return tuple(widen(t) for t in tree)
    return tree_map(lambda a: widen(a) if isinstance(a, StoredArray) else _wide(a), tree)


def _wide(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if a.dtype == np.float32 else a


class WideStored(StoredArray):
    """A checkpoint's stored weight (spec/stored.py) as the float64 twin uses it: the same stored bits, widened on
    every use to the float32 value the spec computes with and then, exactly, to float64. Widening the whole
    checkpoint up front would hold 4x its bf16 size."""

    __slots__ = ()
    dtype = np.dtype(np.float64)  # type: ignore[assignment]  # the value it stands for is float64

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = _wide(super().__array__(None, copy))
        return out if dtype is None else out.astype(dtype, copy=False)

    def take(self, indices: Any, axis: int | None = None, out: Any = None, mode: Any = "raise") -> np.ndarray:
        rows = _wide(super().take(indices, axis=axis, mode=mode))
        if out is not None:
            np.copyto(out, rows)
            return out
        return rows

    def __getitem__(self, index: Any) -> np.ndarray:
        return _wide(super().__getitem__(index))

    @property
    def nbytes(self) -> int:
        return self.raw.size * 8


# A float32 sigmoid or tanh kernel is commonly accurate to about one ulp of its output range, not of its output:
# onnxruntime's (MLAS) sigmoid errs by up to 9e-8 absolute, 12000 ulps relative near x = -9 (measured), so x *
# sigmoid(x) of a negative x carries a relative error numpy's does not. The reference the bound is taken against
# gives sigmoid and tanh that absolute accuracy (benchmarks/measure_bounds.py: without it onnxruntime's Mamba state
# errs by up to 17x the spec's own error; with it by at most ~4.7x, like every other correct implementation).
KERNEL_ABS = 2.0**-23
_SIGNS = np.random.default_rng(20261126).choice(np.array([-1.0, 1.0]), size=1 << 16)


def _signs(shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    return np.resize(_SIGNS, n).reshape(shape)  # a fixed +-1 pattern: the same inputs give the same reference


class KernelOps(WideOps):
    """:class:`~lmstep.spec.ops.WideOps` (float64) whose sigmoid and tanh results are moved by KERNEL_ABS, with a fixed
    pattern of signs: the spec's functions as a float32 library with absolute-accurate kernels would give them,
    without float32's other roundings."""

    KERNEL_OPS = frozenset({"sigmoid", "tanh"})  # what it reinterprets beyond WideOps (tests/test_vocabulary.py)

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        """Sigmoid, within KERNEL_ABS."""
        y = super().sigmoid(x)
        return y + KERNEL_ABS * _signs(y.shape) if y.dtype == np.float64 else y

    def tanh(self, x: npt.ArrayLike) -> np.ndarray:
        """Tanh, within KERNEL_ABS."""
        y = super().tanh(x)
        return y + KERNEL_ABS * _signs(y.shape) if y.dtype == np.float64 else y


KERNEL = KernelOps()


class Wide:
    """``model``'s architecture functions run on float64 (:class:`KernelOps` by default; ``ops=WIDE`` for the
    exact evaluation) with the same weights: the same code, the same parameter values, only wider arithmetic. Its
    states are ``State`` values holding float64 tensors, carried beside the float32 spec's states through every
    operation."""

    def __init__(self, model: Any, ops: Any = None):
        self.model, self.weights, self.ops = model, widen(model.weights), ops or KERNEL

    def init_state(self) -> Any:
        s = self.model.init_state()
        return type(s)(s.arch, s.pos, widen(s.cache))

    def prefill(self, state: Any, tokens: Sequence[int]) -> tuple[Any, np.ndarray]:
        m = self.model
        toks = np.array([list(tokens)], np.int64)
        positions = np.arange(state.pos, state.pos + toks.shape[1], dtype=np.int64)[None, :]
        logits, cache = m.module.forward(self.ops, m.config, self.weights, toks, positions, state.cache)
        return type(state)(state.arch, state.pos + toks.shape[1], tuple(cache)), logits[0]

    def step(self, state: Any, token: int) -> tuple[Any, np.ndarray]:
        m = self.model
        logits, cache = m.module.decode(
            self.ops, m.config, self.weights, np.array([token], np.int64), np.array([state.pos], np.int64), state.cache
        )
        return type(state)(state.arch, state.pos + 1, tuple(cache)), logits[0]

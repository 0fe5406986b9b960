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
    gpt2 (width >= 8)             3.6e-7    1.7e-6    3.2e-6      (682 draws, 1..129 tokens; earlier, 3000 draws
                                                                   of 1..40 tokens: 99.9% 3.0e-6, worst 4.2e-6)
    mamba (Hillis-Steele scan)    4.5e-7    7.3e-6    1.75e-5     (3000 draws, 1..129 tokens; earlier, 1..40
                                                                   tokens: 99.9% 2.2e-5, worst 3.1e-5)
    mamba runtime schedule        4.5e-7    5.4e-6    1.4e-5      (the same 3000 draws: runtime/mamba_scan.py's
                                                                   pairing scan, what model.onnx computes)
    runtime schedule vs reference 3.5e-7    4.7e-6    1.4e-5      (the same draws: two bracketings of one scan)
    (sequences of 1024 tokens on the built-in models: llama 2.3e-6, gpt2 1.3e-6, mamba 9.6e-6, runtime
    schedule 9.6e-6, schedule vs reference 2.7e-6)

Why these sizes: a logit is a dot product of width C after L residual blocks; float32 rounding is eps = 6e-8
per op and the two forms sum in different orders (batched GEMM vs one row; masked softmax over S keys vs the
decode softmax; for Mamba, a parallel scan of decay products vs a sequential recurrence, and
y = h C cancels when h is large, ~50, against a small output). That gives ~10-500 eps with a long tail for
small widths. The tolerances are >= 5x the worst value seen, so a correct implementation does not flake, while
every broken variant in the negative controls (RoPE off by one, mask off by one, conv window not shifted, ...)
errs by more than 100x the tolerance. Mamba's stays at 2e-4: its Hillis-Steele reference has the longer tail
(3.1e-5 worst seen over all measurements), and 1e-4 would leave less than 5x; the runtime's schedule and the
reference (tests/test_mamba_scan.py: L1) are as far apart as either is from the recurrence.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .interface import ModelState

# Two forms of the same model (unrolled vs recurrent; any chunking of a prefill; prefix vs extended sequence).
FORMS = {"llama": 2e-5, "gpt2": 2e-5, "mamba": 2e-4, "mamba2": 1e-4}


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

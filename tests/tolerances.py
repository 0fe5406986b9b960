"""Tolerances for comparing two float32 computations of the same quantity, measured, per architecture.

Error metric: ``rel_err(a, b) = max|a - b| / max(1, max|b|)`` — the worst absolute error, scaled by the
magnitude of the values (logits here reach |z| ~ 13; below 1 the absolute error is used).

Measured (400 random configs from tests/strategies.py, sequences of 1..40 tokens, numpy 2.4 + OpenBLAS,
float32 throughout; see benchmarks/measure_tolerances.py to re-measure):

    unrolled vs recurrent logits    llama 1.1e-6   gpt2 0.9e-6   mamba 6.6e-6 (worst case)

Why these sizes: a logit is a dot product of width C (<= 64 here) after L residual blocks; float32 rounding is
eps = 6e-8 per op and the two forms sum in different orders (batched GEMM vs one row; masked softmax over S
keys vs the decode softmax; for Mamba, a log-depth Hillis-Steele scan of products vs a sequential recurrence,
whose decay products exp(dt A) compound over up to 40 steps), giving ~10-100 eps. The tolerances below are
~10x the worst measured value so that a correct implementation never flakes, while every broken variant in
the negative controls (RoPE off by one, mask off by one, conv window not shifted, ...) errs by > 1e-2.
"""

import numpy as np

# Two forms of the same model (unrolled vs recurrent; any chunking of a prefill; prefix vs extended sequence).
FORMS = {"llama": 1e-5, "gpt2": 1e-5, "mamba": 5e-5}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def state_err(s1, s2) -> float:
    """The worst rel_err over every state tensor (inf when names or shapes differ)."""
    a, b = s1.arrays(), s2.arrays()
    if a.keys() != b.keys() or s1.pos != s2.pos:
        return float("inf")
    return max((rel_err(a[k], b[k]) for k in a), default=0.0)

"""What the stepper shows about logits and states: top candidates, per-tensor summaries, state diffs.

Display numbers (probabilities, norms, diffs) are computed in float64 for reading only; anything compared
across implementations goes through the sha256 digests of the float32 bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import numpy as np


def le_bytes(a: np.ndarray) -> bytes:
    """The array's values as little-endian bytes in C order, whatever the machine's byte order."""
    a = np.asarray(a)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()


def array_sha256(a: np.ndarray) -> str:
    """sha256 of :func:`le_bytes` (the dtype and shape are recorded beside it)."""
    return hashlib.sha256(le_bytes(a)).hexdigest()


@attrs.frozen
class Candidate:
    token: int
    logit: float  # the float32 logit, as a Python float
    prob: float  # softmax(logits / T) (T = 1 when greedy), for reading


def top_candidates(logits: np.ndarray, temperature: float, k: int = 5) -> list[Candidate]:
    """The k most likely tokens, in the sampler's rank order (logit descending, lower id first on ties)."""
    z = np.asarray(logits, np.float32)
    order = np.argsort(-z, kind="stable")[:k]
    scaled = z.astype(np.float64) / (temperature if temperature > 0 else 1.0)
    p = np.exp(scaled - scaled.max())
    p /= p.sum()
    return [Candidate(int(i), float(z[i]), float(p[i])) for i in order]


@attrs.frozen
class TensorSummary:
    name: str  # ONNX contract name, e.g. past_key_values.0.key
    shape: tuple[int, ...]
    dtype: str
    norm: float  # L2 norm over all elements
    sha256: str


def summarize(state: Any) -> list[TensorSummary]:
    """For display: every tensor's L2 norm (float64, for reading) and digest."""
    return [
        TensorSummary(
            name, tuple(a.shape), str(a.dtype), float(np.linalg.norm(a.astype(np.float64).ravel())), array_sha256(a)
        )
        for name, a in state.arrays().items()
    ]


@attrs.frozen
class TensorDigest:
    name: str
    shape: tuple[int, ...]
    dtype: str
    sha256: str


def digests(state: Any) -> list[TensorDigest]:
    """What a trace records and compares per tensor: no norm. (The norm's float64 copy of a whole KV cache each
    op made ``lmstep trace`` of 1500 tokens take 6x as long as its replay, for a number nobody read.)"""
    return [TensorDigest(name, tuple(a.shape), str(a.dtype), array_sha256(a)) for name, a in state.arrays().items()]


def by_layer(summaries: list[TensorSummary]) -> dict[int, list[TensorSummary]]:
    """Group 'past_key_values.{i}.{kind}' summaries by layer i, keeping order."""
    layers: dict[int, list[TensorSummary]] = {}
    for s in summaries:
        layers.setdefault(int(s.name.split(".")[1]), []).append(s)
    return layers


@attrs.frozen
class TensorDiff:
    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    max_abs: float  # over the overlapping region (KV caches of different lengths overlap on their common prefix)
    equal: bool  # same shape, dtype and bits


def diff_states(a: Any, b: Any) -> list[TensorDiff]:
    arrays_a, arrays_b = a.arrays(), b.arrays()
    out = []
    for name in arrays_a.keys() | arrays_b.keys():
        x, y = arrays_a.get(name), arrays_b.get(name)
        if x is None or y is None:
            out.append(
                TensorDiff(name, () if x is None else x.shape, () if y is None else y.shape, float("inf"), False)
            )
            continue
        common = tuple(slice(0, min(m, n)) for m, n in zip(x.shape, y.shape))
        d = np.abs(x[common].astype(np.float64) - y[common].astype(np.float64))
        equal = x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
        out.append(TensorDiff(name, tuple(x.shape), tuple(y.shape), float(d.max()) if d.size else 0.0, equal))
    order = list(arrays_a) + [n for n in arrays_b if n not in arrays_a]
    return sorted(out, key=lambda t: order.index(t.name))

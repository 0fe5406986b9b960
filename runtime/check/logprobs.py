"""What an engine that exposes only its top-N log-probabilities returns instead of logits, and how it is graded.

An OpenAI-compatible server (openai_impl.py) answers a completion request with, per position, the N most likely
tokens and their log-probabilities log softmax(z)_i, never the logits z. ``run`` and ``decode`` of such an engine
return a :class:`TopLogprobs` in place of the logits array, and the checker compares it with the spec's own
log-softmax at the same token ids, on the logit scale ``max(1, max|z|)`` of rel_err (lmstep.spec.conformance):

L1  every returned log-probability is within ``2 bound + LOGSOFTMAX_ROUNDING`` of the spec's, where ``bound`` is
    the comparison's L1 bound on the logits (levels.py): a logit error e moves log softmax(z)_i by at most 2e (e in
    z_i, at most e in the log-sum-exp), and the server's own float32 log-softmax adds a few rounding errors of that
    scale. The returned ids must also be the spec's top N, up to near ties (within twice L2_REL of the scale of the
    N-th largest), or the server listed tokens that are not its most likely ones.
L2  within ``2 L2_REL`` (what a logit error within L2's 1% of the scale can do), and the most likely returned
    token is the spec's argmax or a near tie (a top-2 gap below twice that logit error).
L0  never: log-probabilities are not the logits, so the bitwise level does not apply to such an engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from lmstep.spec.conformance import L2_REL

from .levels import Grade, Level, top2_gap

# float32 log-softmax (z - max - log sum exp) done by the server: a few float32 ulps of the logit scale.
LOGSOFTMAX_ROUNDING = 8 * 2.0**-23


@attrs.frozen
class TopLogprobs:
    """Per row (one per token of a chunk, or one for a decode), the returned token ids and their log-probabilities."""

    ids: tuple[np.ndarray, ...]  # int64 [N_r] per row
    values: tuple[np.ndarray, ...]  # float64 [N_r] per row

    @classmethod
    def rows(cls, rows: Sequence[dict[int, float]]) -> TopLogprobs:
        ids = tuple(np.array(list(r), np.int64) for r in rows)
        return cls(ids, tuple(np.array(list(r.values()), np.float64) for r in rows))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: slice | int) -> TopLogprobs:
        if isinstance(index, int):
            return TopLogprobs((self.ids[index],), (self.values[index],))
        return TopLogprobs(self.ids[index], self.values[index])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.ids),)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def grade_logprobs(got: TopLogprobs, spec_logits: np.ndarray, limit: float) -> Grade:
    """``limit``: the comparison's L1 bound on the logits (relative to the logit scale)."""
    z = np.asarray(spec_logits, np.float32).reshape(-1, spec_logits.shape[-1])
    if len(got) != z.shape[0]:
        note = f"{len(got)} rows of log-probabilities, expected {z.shape[0]}"
        return Grade(Level.FAIL, float("inf"), limit, note=note)
    scale = max(1.0, float(np.abs(z).max()))
    near = 2 * L2_REL * scale  # what a logit error within L2's bound can move
    lp = log_softmax(z)
    err, level, excused, note = 0.0, Level.L1, 0, ""
    for r, (ids, values) in enumerate(zip(got.ids, got.values)):
        if ids.size == 0 or (ids < 0).any() or (ids >= z.shape[1]).any() or not np.isfinite(values).all():
            return Grade(Level.FAIL, float("inf"), limit, note=f"row {r}: no usable log-probabilities")
        err = max(err, float(np.abs(values - lp[r, ids]).max()) / scale)
        nth = np.sort(lp[r])[::-1][min(ids.size, z.shape[1]) - 1]
        outside = ids[lp[r, ids] < nth - near]
        if outside.size:
            note = f"row {r}: token {int(outside[0])} is not among the spec's top {ids.size}"
            return Grade(Level.FAIL, float("inf"), limit, note=note)
        top, want = int(ids[np.argmax(values)]), int(np.argmax(z[r]))
        if top != want:
            if top2_gap(z[r]) >= near:
                return Grade(Level.FAIL, err, limit, note=f"row {r}: most likely token {top} != spec {want}")
            excused += 1
    if err > 2 * limit + LOGSOFTMAX_ROUNDING:
        level = Level.L2 if err <= 2 * L2_REL else Level.FAIL
        note = f"log-probability error {err:.3g} > L1's {2 * limit + LOGSOFTMAX_ROUNDING:.3g}" + (
            "" if level == Level.L2 else f" (and > L2's {2 * L2_REL:g})"
        )
    return Grade(level if not excused else min(level, Level.L2), err, limit, excused, note=note)


def grade_same(a: TopLogprobs, b: TopLogprobs, limit: float) -> Grade:
    """Two answers of the same engine to the same question (determinism, causality): the same ids, and the same
    values bitwise (L0) or within the L1 bound."""
    if len(a) != len(b) or any(set(x.tolist()) != set(y.tolist()) for x, y in zip(a.ids, b.ids)):
        return Grade(Level.FAIL, float("inf"), limit, note="different tokens listed for the same question")
    diffs = [
        float(np.abs(va[np.argsort(ia)] - vb[np.argsort(ib)]).max())
        for ia, va, ib, vb in zip(a.ids, a.values, b.ids, b.values)
    ]
    err = max(diffs, default=0.0)
    if err == 0.0:
        return Grade(Level.L0, 0.0, limit)
    ok = err <= 2 * limit + LOGSOFTMAX_ROUNDING
    return Grade(
        Level.L1 if ok else Level.FAIL, err, limit, note="" if ok else f"log-probabilities differ by {err:.3g}"
    )

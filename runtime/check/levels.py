"""Conformance levels (docs/design.md §5) and how one observation is graded.

    L0 bitwise      the implementation's float32 logits (or state) have exactly the spec's bits
    L1 numeric      within the spec's measured tolerance: rel_err <= FORMS[arch] (lmstep.spec.conformance)
    L2 tokens       the decisions agree: argmax per row, and the sampled token for the same rand, except where
                    the spec's decision is within the margin (below) and a different token is excused
    L3 distribution tokens drawn with many rands from one state follow the spec's distribution (G-test,
                    p >= 0.001): what an implementation with its own RNG can reach

Margin rule for L2 (a stated margin, not the observed error, so a large error never excuses itself): let
delta = MARGIN * max(1, max|z_spec|). A different token is excused only where a logit change of delta could flip
the spec's decision: for argmax, the spec's top-2 gap is below 2 delta; for a sampled token, the target
u * c_{m-1} lies within (2 delta / T) * c_{m-1} of a bucket boundary c_r (shifting logits by delta scales each e_r
by at most exp(delta / T)). The checker then continues from the implementation's token and counts it as excused.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import attrs
import numpy as np

from lmstep.spec import Sampler
from lmstep.spec.conformance import rel_err

MARGIN = 1e-3  # relative logit change within which a token decision counts as a near tie


class Level(enum.IntEnum):
    FAIL = 0
    L3 = 1
    L2 = 2
    L1 = 3
    L0 = 4

    def label(self) -> str:
        return {0: "fail", 1: "L3 distribution", 2: "L2 tokens", 3: "L1 numeric", 4: "L0 bitwise"}[int(self)]


def parse_level(text: str) -> Level:
    key = text.strip().upper()
    if key in ("L0", "L1", "L2", "L3"):
        return Level[key]
    from lmstep.spec.errors import InputError

    raise InputError(f"unknown conformance level {text!r}; use L0, L1, L2 or L3")


@attrs.frozen
class Grade:
    level: Level
    err: float  # rel_err of the numbers compared (0 when bitwise)
    excused: int = 0  # token mismatches excused by the margin rule
    note: str = ""


def grade_numbers(impl: np.ndarray, spec: np.ndarray, tol: float) -> Grade:
    """L0 / L1 / FAIL for two float arrays (state tensors, or logits before the token check)."""
    impl = np.asarray(impl)
    if impl.shape != spec.shape:
        return Grade(Level.FAIL, float("inf"), note=f"shape {list(impl.shape)} != spec {list(spec.shape)}")
    if not np.isfinite(impl).all() and not np.array_equal(impl, spec, equal_nan=True):
        return Grade(Level.FAIL, float("inf"), note="non-finite values")
    if impl.dtype == spec.dtype and np.ascontiguousarray(impl).tobytes() == np.ascontiguousarray(spec).tobytes():
        return Grade(Level.L0, 0.0)
    err = rel_err(impl, spec)
    return Grade(Level.L1 if err <= tol else Level.FAIL, err)


def grade_logits(impl: np.ndarray, spec: np.ndarray, tol: float) -> Grade:
    """Logits [.., V]: L0/L1 by number, else L2 when every row's argmax agrees or is a near tie."""
    g = grade_numbers(impl, spec, tol)
    if g.level != Level.FAIL or not np.isfinite(g.err):
        return g
    excused = 0
    for zi, zs in zip(impl.reshape(-1, impl.shape[-1]), spec.reshape(-1, spec.shape[-1])):
        a, b = int(np.argmax(zi)), int(np.argmax(zs))
        if a != b:
            if top2_gap(zs) >= 2 * _delta(zs):
                return Grade(Level.FAIL, g.err, excused, note=f"argmax {a} != spec {b} (spec gap {top2_gap(zs):.3g})")
            excused += 1
    return Grade(Level.L2, g.err, excused)


def grade_token(token: int, spec_token: int, spec_logits: np.ndarray, u: float, sampler: Sampler) -> Grade:
    """The sampled token for the same rand: L0 when equal (the logits decide the level), L2 if a near tie.

    Otherwise greedy decoding has failed; a sampled token that differs only shows that the implementation does
    not reproduce the spec's draw (e.g. it uses its own RNG): L3 at best, decided by the distribution rule.
    """
    if token == spec_token:
        return Grade(Level.L0, 0.0)
    delta = _delta(spec_logits)
    if sampler.temperature == 0:
        if top2_gap(spec_logits) < 2 * delta:
            return Grade(Level.L2, 0.0, 1, note=f"token {token} != spec {spec_token}, a near tie")
        return Grade(Level.FAIL, float("inf"), note=f"greedy token {token} != spec {spec_token} (not a near tie)")
    if boundary_distance(spec_logits, u, sampler) < 2 * delta / sampler.temperature:
        return Grade(Level.L2, 0.0, 1, note=f"token {token} != spec {spec_token}, a near tie")
    return Grade(Level.L3, 0.0, note=f"sampled token {token} != spec {spec_token} for the same rand")


def grade_distribution(
    tokens: list[int],
    spec_tokens: list[int],
    probs: dict[int, float],
    u: list[float],
    spec_logits: np.ndarray,
    sampler: Sampler,
) -> Grade:
    """Many draws from one state with different rands: token by token (L0/L2), else a G-test of the
    implementation's token counts against the spec's probabilities (L3 when p >= 0.001, else FAIL)."""
    per_draw = [grade_token(t, s, spec_logits, x, sampler) for t, s, x in zip(tokens, spec_tokens, u)]
    best = min(g.level for g in per_draw)
    if best >= Level.L2:
        return Grade(best, 0.0, sum(g.excused for g in per_draw))
    outside = [t for t in tokens if probs.get(t, 0.0) == 0.0]
    if outside:
        return Grade(Level.FAIL, float("inf"), note=f"token {outside[0]} has probability 0 under the spec")
    p_value = g_test(tokens, probs)
    if p_value >= 1e-3:
        return Grade(Level.L3, 0.0, note=f"distribution agrees (G-test p = {p_value:.3g}, {len(tokens)} draws)")
    return Grade(
        Level.FAIL, float("inf"), note=f"token distribution differs (G-test p = {p_value:.2g}, {len(tokens)} draws)"
    )


def kept_distribution(z: np.ndarray, s: Sampler) -> dict[int, float]:
    """The spec's probability of each token under the sampler (SPEC.md §3): bucket width e_r / c_{m-1}."""
    if s.temperature == 0:
        return {int(np.argmax(z)): 1.0}
    order, e, c, m = _buckets(z, s)
    return {int(order[r]): float(e[r]) / float(c[m - 1]) for r in range(m) if e[r] > 0}


def g_test(tokens: list[int], probs: dict[int, float]) -> float:
    """p-value of the likelihood-ratio (G) test of observed token counts against ``probs``; bins with an
    expected count below 5 are pooled into one. Chi-square tail by the Wilson-Hilferty approximation."""
    n = len(tokens)
    counts: dict[int, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    big = [t for t, p in probs.items() if p * n >= 5]
    obs = [counts.get(t, 0) for t in big] + [n - sum(counts.get(t, 0) for t in big)]
    exp = [probs[t] * n for t in big] + [n * (1.0 - sum(probs[t] for t in big))]
    if exp[-1] <= 1e-9:
        obs, exp = obs[:-1], exp[:-1]
    dof = len(obs) - 1
    if dof < 1:
        return 1.0
    g = 2.0 * sum(o * math.log(o / e) for o, e in zip(obs, exp) if o > 0)
    z = ((g / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _delta(z: np.ndarray) -> float:
    return MARGIN * max(1.0, float(np.abs(z).max()))


def top2_gap(z: np.ndarray) -> float:
    if z.size < 2:
        return float("inf")
    top = np.sort(z.astype(np.float64))[-2:]
    return float(top[1] - top[0])


def _buckets(z: np.ndarray, s: Sampler):
    """SPEC.md §3 steps 1-5 in float32: the rank order, e, the cumulative c and the kept-prefix size m."""
    f32 = np.float32
    y = z.astype(np.float32) / f32(s.temperature)
    order = np.argsort(-y, kind="stable")
    sy = y[order]
    k = len(z) if s.top_k == 0 else min(s.top_k, len(z))
    e = np.where(np.arange(len(z)) < k, np.exp(sy - sy[0]), f32(0)).astype(np.float32)
    c = np.cumsum(e, dtype=np.float32)
    prev = np.concatenate([[f32(0)], c[:-1]])
    m = k if s.top_p >= 1 else int(np.sum((prev < c[-1] * f32(s.top_p)) & (np.arange(len(z)) < k)))
    return order, e, c, m


def boundary_distance(z: np.ndarray, u: float, s: Sampler) -> float:
    """|target - nearest bucket boundary| / c_{m-1} for the spec's draw with rand u."""
    _, _, c, m = _buckets(z, s)
    total = float(c[m - 1])
    target = float(np.float32(u) * np.float32(total))
    return float(np.min(np.abs(c[:m].astype(np.float64) - target))) / total


def worst(levels: list[Level]) -> Level:
    return min(levels) if levels else Level.L0


def summarize(grades: list[Grade]) -> dict[str, Any]:
    return {
        "level": worst([g.level for g in grades]),
        "worst_err": max((g.err for g in grades), default=0.0),
        "excused": sum(g.excused for g in grades),
        "n": len(grades),
    }

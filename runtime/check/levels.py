"""Conformance levels (DESIGN.md §4) and how one observation is graded.

    L0 bitwise      the implementation's float32 logits (or state) have exactly the spec's bits
    L1 numeric      within the spec's measured tolerance: rel_err <= FORMS[arch] (lmstep.spec.conformance)
    L2 tokens       the decisions agree: argmax per row, and the sampled token for the same rand, except where
                    the spec's decision is within the margin (below) and a different token is excused
    L3 distribution tokens drawn over many rands follow the spec's distribution (chi-square test)

Margin rule for L2: let eps = max(max|logits_impl - logits_spec|, 1e-6), the numeric error actually observed.
A different token is excused when that error could flip the spec's decision: for argmax, the spec's top-2 gap is
below 2 eps; for a sampled token, the target u * c_{m-1} lies within (2 eps / T) * c_{m-1} of a bucket boundary
c_r (a logit shift of eps changes each e_r by a factor of at most exp(eps / T)).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import numpy as np

from lmstep.spec import Sampler
from lmstep.spec.conformance import rel_err


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
    """Logits [.., V]: L0/L1 by number, else L2 when every row's argmax agrees or is excused."""
    g = grade_numbers(impl, spec, tol)
    if g.level != Level.FAIL or not np.isfinite(g.err):
        return g
    eps = max(float(np.abs(impl.astype(np.float64) - spec).max()), 1e-6)
    rows_i, rows_s = impl.reshape(-1, impl.shape[-1]), spec.reshape(-1, spec.shape[-1])
    excused = 0
    for zi, zs in zip(rows_i, rows_s):
        a, b = int(np.argmax(zi)), int(np.argmax(zs))
        if a != b:
            if top2_gap(zs) >= 2 * eps:
                return Grade(Level.FAIL, g.err, excused, note=f"argmax {a} != spec {b} (gap {top2_gap(zs):.3g} >= 2 eps)")
            excused += 1
    return Grade(Level.L2, g.err, excused)


def grade_token(token: int, spec_token: int, logits_err_abs: float, spec_logits: np.ndarray, u: float, sampler: Sampler) -> Grade:
    """The sampled token for the same rand: L0 when equal (the numbers decide the level), else L2 if excused."""
    if token == spec_token:
        return Grade(Level.L0, 0.0)
    eps = max(logits_err_abs, 1e-6)
    if sampler.temperature == 0:
        excused = top2_gap(spec_logits) < 2 * eps
    else:
        excused = boundary_distance(spec_logits, u, sampler) < 2 * eps / sampler.temperature
    if excused:
        return Grade(Level.L2, 0.0, 1, note=f"token {token} != spec {spec_token}, within the margin")
    return Grade(Level.FAIL, float("inf"), note=f"sampled token {token} != spec {spec_token} (outside the margin)")


def top2_gap(z: np.ndarray) -> float:
    if z.size < 2:
        return float("inf")
    top = np.sort(z.astype(np.float64))[-2:]
    return float(top[1] - top[0])


def boundary_distance(z: np.ndarray, u: float, s: Sampler) -> float:
    """|target - nearest bucket boundary| / c_{m-1}, following SPEC.md §3 steps 1-6 in float32."""
    f32 = np.float32
    y = z.astype(np.float32) / f32(s.temperature)
    order = np.argsort(-y, kind="stable")
    sy = y[order]
    k = len(z) if s.top_k == 0 else min(s.top_k, len(z))
    e = np.where(np.arange(len(z)) < k, np.exp(sy - sy[0]), f32(0)).astype(np.float32)
    c = np.cumsum(e, dtype=np.float32)
    prev = np.concatenate([[f32(0)], c[:-1]])
    m = k if s.top_p >= 1 else int(np.sum((prev < c[-1] * f32(s.top_p)) & (np.arange(len(z)) < k)))
    total = float(c[m - 1])
    target = float(f32(u) * f32(total))
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

"""Conformance levels (docs/design.md §5) and how one comparison is graded (docs/checking.md "Levels").

    L0 bitwise      the implementation's float32 numbers have exactly the spec's bits
    L1 numeric      rel_err <= the comparison's bound: FACTOR x the spec's own float32 error on that quantity
                    (against the float64 evaluation of the same functions), at least FLOOR (spec/conformance.py)
    L2 tokens       rel_err <= L2_REL (1% of the logit scale): decisions then agree except at near ties
    L3 distribution tokens drawn with many rands from one state follow the spec's distribution (G-test,
                    p >= 0.001): what an implementation with its own random numbers can reach

The sampler law is graded on the implementation's own logits: its token must be the one SPEC.md §3 draws from the
logits it returned, with the same rand and settings (the sampler is specified to the bit, so any numeric error of
the model cannot excuse it). A different token is L2 only where a change of those logits within the comparison's
L1 bound (plus float32 rounding of the sampler's sums) could give it (:func:`reachable`), and only as often as such
near ties plausibly occur (:func:`plausible_excuses`): a mismatch that repeats is a systematic difference, never
excused. A token the spec gives probability 0 (outside the kept set) fails at every level; any other different
token is L3 at best, decided by the distribution test.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import attrs
import numpy as np

from lmstep.spec import Sampler
from lmstep.spec.conformance import FACTOR, L2_REL, bound, rel_err
from lmstep.spec.errors import LmstepError
from lmstep.spec.sampler import sample_one

U = 2.0**-24  # float32 unit roundoff


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
    err: float  # rel_err of the numbers compared (0 when bitwise); for the sampler 0
    bound: float = 0.0  # the L1 bound of this comparison
    excused: int = 0  # near ties excused (L2)
    plausible: float = 0.0  # expected number of draws that land in a near-tie region (sampler)
    note: str = ""
    wide_err: float = 0.0  # the spec's own float32 error on this quantity (against float64); the bound's basis


def grade_numbers(impl: Any, spec: np.ndarray, limit: float) -> Grade:
    """L0 / L1 / L2 / FAIL for two float arrays: ``limit`` is the comparison's L1 bound."""
    impl = np.asarray(impl)
    if impl.shape != spec.shape:
        return Grade(Level.FAIL, float("inf"), limit, note=f"shape {list(impl.shape)} != spec {list(spec.shape)}")
    if not np.isfinite(impl).all() and not np.array_equal(impl, spec, equal_nan=True):
        return Grade(Level.FAIL, float("inf"), limit, note="non-finite values")
    if impl.dtype == spec.dtype and np.ascontiguousarray(impl).tobytes() == np.ascontiguousarray(spec).tobytes():
        return Grade(Level.L0, 0.0, limit)
    err = rel_err(impl, spec)
    if err <= limit:
        return Grade(Level.L1, err, limit)
    if err <= L2_REL:
        return Grade(Level.L2, err, limit, note=f"rel err {err:.3g} > L1 bound {limit:.3g}")
    return Grade(Level.FAIL, err, limit, note=f"rel err {err:.3g} > L1 bound {limit:.3g} (and > L2's {L2_REL:g})")


def grade_against(impl: Any, spec: np.ndarray, wide: np.ndarray, factor: float = FACTOR) -> Grade:
    """An implementation's numbers against the float32 spec, bounded by the spec's own error against ``wide``."""
    return attrs.evolve(grade_numbers(impl, spec, bound(spec, wide, factor)), wide_err=rel_err(spec, wide))


def grade_logits(impl: Any, spec: np.ndarray, wide: np.ndarray) -> Grade:
    """Logits [.., V]: as grade_numbers; at L2 the rows whose argmax differs are counted (near ties: a flip needs
    a top-2 gap below twice the error, which an error within L2_REL of the scale allows)."""
    g = grade_against(impl, spec, wide)
    if g.level != Level.L2:
        return g
    a = np.asarray(impl).reshape(-1, spec.shape[-1]).argmax(-1)
    b = spec.reshape(-1, spec.shape[-1]).argmax(-1)
    flips = int((a != b).sum())
    return attrs.evolve(
        g, excused=flips, note=g.note + (f"; argmax differs in {flips} rows (near ties)" if flips else "")
    )


# -- the sampler ------------------------------------------------------------------------------------------------
def grade_sample(token: int, logits: np.ndarray, u: float, s: Sampler, eps_rel: float) -> Grade:
    """The implementation's token against SPEC.md §3 on the implementation's own logits (module docstring).

    L0 the same token; L1 a different one that the float32 rounding of the sampler's own arithmetic (exp, the
    cumulative sums, the target) could give; L2 one that a change of the logits within ``eps_rel`` (the L1 bound of
    the comparison they came from, relative to the logit scale) could give; FAIL a token the spec gives
    probability 0, or a greedy token that is not a near tie; else L3 (the distribution test decides)."""
    try:
        want = sample_one(logits, u, s)
    except LmstepError as err:  # NaN / inf logits: the logits comparison fails them; so does this
        return Grade(Level.FAIL, float("inf"), note=f"the sampler cannot draw from these logits ({err})")
    delta = eps_rel * max(1.0, float(np.abs(logits).max()))
    ok, amb = reachable(logits, u, s, delta, token)
    if token == want:
        return Grade(Level.L0, 0.0, eps_rel, plausible=amb)
    where = f"({settings_text(s)}, rand {u!r})"
    if reachable(logits, u, s, 0.0, token)[0]:
        return Grade(Level.L1, 0.0, eps_rel, 1, amb, note=f"token {token} != {want} {where}, within rounding")
    if ok:
        return Grade(Level.L2, 0.0, eps_rel, 1, amb, note=f"token {token} != {want} {where}, a near tie")
    if s.temperature == 0 or _overflows(logits, s):
        return Grade(Level.FAIL, float("inf"), eps_rel, note=f"greedy token {token} != {want} (not a near tie)")
    if token not in kept_distribution(logits, s):
        note = f"token {token} != {want} {where}; the spec gives {token} probability 0"
        return Grade(Level.FAIL, float("inf"), eps_rel, plausible=amb, note=note)
    note = f"sampled token {token} != {want} for the same rand {where}"
    return Grade(Level.L3, 0.0, eps_rel, plausible=amb, note=note)


def settings_text(s: Sampler) -> str:
    return f"T={s.temperature:g} top_k={s.top_k} top_p={s.top_p:g}"


def plausible_excuses(expected: float, alpha: float = 1e-6) -> int:
    """The largest number of near-tie excuses consistent with ``expected`` draws landing in near-tie regions: the
    smallest n with P(Poisson(expected) > n) < alpha. More excuses than this is a systematic difference."""
    n, term = 0, math.exp(-expected)
    cdf = term
    while 1.0 - cdf >= alpha and n < 10_000:
        n += 1
        term *= expected / n
        cdf += term
    return n


def _overflows(z: np.ndarray, s: Sampler) -> bool:
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return not bool(np.isfinite(np.max(z.astype(np.float32) / np.float32(s.temperature))))


def reachable(z: np.ndarray, u: float, s: Sampler, delta: float, token: int) -> tuple[bool, float]:
    """(could a change of every logit by at most ``delta`` make SPEC.md §3 draw ``token`` with rand ``u``,
    the probability over u in [0, 1) that such a change could change the draw at all).

    Greedy: ``token`` is within 2 delta of the maximum. Sampling: with eps = delta / T every e_r / e_q moves by at
    most exp(2 eps), so a normalised CDF boundary b = A / (A + B) stays in [b / (b + (1-b) g), b / (b + (1-b) / g)],
    g = exp(2 eps), widened by the float32 rounding of the sums ((V + 4) units of 2^-24); the kept count m can move
    where the top-p test is that close to its threshold, or top-k's cut to a near tie; and ``token`` can take the
    rank of any token within 2 eps of its own. Sound (a perturbed draw is always found reachable) and tight for
    exact logits."""
    z = np.asarray(z, np.float32)
    V = z.shape[-1]
    if s.temperature == 0 or _overflows(z, s):
        z64 = z.astype(np.float64)
        near = z64 >= z64.max() - 2 * delta
        return bool(near[token]), 1.0 if int(near.sum()) > 1 else 0.0
    T = np.float32(s.temperature)
    y = (z / T).astype(np.float64)
    eps = delta / float(T) + 4 * U * (1.0 + float(np.abs(y).max()))  # + rounding of z / T, s_r - s_0 and exp
    g = math.exp(2 * eps)
    rnd = (V + 4) * U
    order = np.argsort(-y, kind="stable")
    sy = y[order]
    k = V if s.top_k == 0 else min(s.top_k, V)
    e = np.where(np.arange(V) < k, np.exp(sy - sy[0]), 0.0)
    c = np.cumsum(e)

    def lo(b: np.ndarray) -> np.ndarray:
        return b / (b + (1 - b) * g) - rnd

    def hi(b: np.ndarray) -> np.ndarray:
        return b / (b + (1 - b) / g) + rnd

    # the kept count: k (top-k keeps exactly k; which tokens, near its cut, is a near-tie swap below), or the ranks
    # r < k with c_{r-1} < top_p * total, a count that moves where that test is near its threshold
    if s.top_p >= 1:
        m_lo = m_hi = k
    else:
        prev = np.concatenate([[0.0], c[:-1] / c[-1]])[:k]
        m_lo, m_hi = max(1, int(np.sum(hi(prev) < s.top_p))), max(1, int(np.sum(lo(prev) < s.top_p)))
    ranks = np.flatnonzero(np.abs(sy - y[token]) <= 2 * eps)  # where token can stand after a near-tie swap
    found, amb = False, 0.0
    for m in range(m_lo, m_hi + 1):
        cm = np.cumsum(np.exp(sy[:m] - sy[0]))
        b = cm / cm[-1]
        left = np.concatenate([[0.0], lo(b[:-1])])
        right = np.concatenate([hi(b[:-1]), [1.0]])
        for r in ranks[ranks < m]:
            if left[r] <= u < right[r]:
                found = True
        if m == m_lo:  # boundary windows, and buckets of near-tied neighbours
            amb += float(np.sum(hi(b[:-1]) - lo(b[:-1])))
            tied = np.flatnonzero(np.abs(np.diff(sy[:m])) <= 2 * eps)
            width = np.diff(np.concatenate([[0.0], b]))
            amb += float(np.sum(width[tied]) + np.sum(width[np.minimum(tied + 1, m - 1)]))
    if m_hi > m_lo:
        cm = np.cumsum(np.exp(sy[:m_lo] - sy[0]))
        amb += 1.0 - float(cm[max(m_lo - 2, 0)] / cm[-1]) if m_lo > 1 else 1.0
    return found, min(1.0, amb)


def grade_distribution(
    tokens: list[int], logits: list[np.ndarray], rands: list[float], s: Sampler, eps_rel: float
) -> Grade:
    """Many draws from one state with different rands: each against SPEC.md §3 on the implementation's logits
    (L0, or L2 within the plausible number of near ties); else a G-test of the implementation's token counts
    against the spec's probabilities (L3 when p >= 0.001), and never a token of probability 0."""
    per_draw = [grade_sample(t, z, u, s, eps_rel) for t, z, u in zip(tokens, logits, rands)]
    excused, expected = sum(g.excused for g in per_draw), sum(g.plausible for g in per_draw)
    failed = [g for g in per_draw if g.level == Level.FAIL]
    if failed:
        return attrs.evolve(failed[0], note=f"{failed[0].note} (draw {per_draw.index(failed[0])} of {len(tokens)})")
    best = min(g.level for g in per_draw)
    if best >= Level.L2 and excused <= plausible_excuses(expected):
        return Grade(best, 0.0, eps_rel, excused, expected)
    probs = kept_distribution(logits[0], s)
    p_value = g_test(tokens, probs)
    shown = f"{sum(g.level < Level.L0 for g in per_draw)} of {len(tokens)} draws differ for the same rand"
    if p_value >= 1e-3:
        return Grade(Level.L3, 0.0, eps_rel, note=f"{shown}; the distribution agrees (G-test p = {p_value:.3g})")
    return Grade(
        Level.FAIL,
        float("inf"),
        eps_rel,
        note=f"{shown}; token distribution differs (G-test p = {p_value:.2g}, {len(tokens)} draws, {settings_text(s)})",
    )


def kept_distribution(z: np.ndarray, s: Sampler) -> dict[int, float]:
    """The spec's probability of each token under the sampler (SPEC.md §3): bucket width e_r / c_{m-1}."""
    z = np.asarray(z, np.float32)
    if s.temperature == 0 or _overflows(z, s):
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


def top2_gap(z: np.ndarray) -> float:
    if z.size < 2:
        return float("inf")
    top = np.sort(z.astype(np.float64))[-2:]
    return float(top[1] - top[0])


def _buckets(z: np.ndarray, s: Sampler) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """SPEC.md §3 steps 1-5 in float32: the rank order, e, the cumulative c and the kept-prefix size m."""
    f32 = np.float32
    with np.errstate(over="ignore"):
        y = z.astype(np.float32) / f32(s.temperature)
    order = np.argsort(-y, kind="stable")
    sy = y[order]
    k = len(z) if s.top_k == 0 else min(s.top_k, len(z))
    e = np.where(np.arange(len(z)) < k, np.exp(sy - sy[0]), f32(0)).astype(np.float32)
    c = np.cumsum(e, dtype=np.float32)
    prev = np.concatenate([[f32(0)], c[:-1]])
    m = k if s.top_p >= 1 else int(np.sum((prev < c[-1] * f32(s.top_p)) & (np.arange(len(z)) < k)))
    return order, e, c, m


def worst(levels: list[Level]) -> Level:
    return min(levels) if levels else Level.L0


def summarize(grades: list[Grade]) -> dict[str, Any]:
    return {
        "level": worst([g.level for g in grades]),
        "worst_err": max((g.err for g in grades), default=0.0),
        "worst_ratio": max((g.err / g.bound for g in grades if g.bound > 0 and math.isfinite(g.err)), default=0.0),
        "excused": sum(g.excused for g in grades),
        "n": len(grades),
    }

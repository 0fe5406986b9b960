"""Sampler settings and rands that aim at the sampler's decisions (protocol 2 sends both with every decode).

A rand drawn at random lands near a bucket boundary, on the last kept token or past a CDF that rounds below 1
only rarely, so the bugs that live there (a top-k or top-p cut off by one, <= for <, a normalised CDF that runs
out) would pass most checks. The checker knows the spec's logits before it sends a decode, so it aims:

    seed   rand_for(seed, pos + 1), what generation uses
    top    1 - 2^-24, the largest rand: the draw lands in the last kept bucket (a cut that keeps one token too
           many or too few changes it; a CDF normalised to sum 1 that rounds below the rand runs past its end)
    edge   a float32 rand whose target u * c_{m-1} equals a boundary c_r exactly (first kept rank with c_r > target:
           "<" and "<=" disagree there)

and it cycles through SETTINGS: greedy, small top-k at high temperature, top-p alone and with top-k, a
temperature that overflows z / T (the greedy rule of SPEC.md §3 step 1), and a top-p whose threshold
top_p * total rounds exactly onto a c_{r-1} (the strict "<" of step 5 decides), and a top-p cut well inside a
top-k ("inside-top-k": the spec's threshold is a fraction of the top-k mass, placed midway between two cumulative
sums, so no rounding decides it; an engine that takes the fraction of the whole distribution, top-p before top-k,
keeps one more rank and the largest rand draws it: a token the spec gives probability 0).
"""

from __future__ import annotations

import numpy as np

from lmstep.spec import Sampler, rand_for

from .levels import _buckets

TOP = float(np.float32(1 - 2.0**-24))
SETTINGS: tuple[tuple[Sampler, str], ...] = (
    (Sampler(), "seed"),
    (Sampler(temperature=1.0, top_k=2), "top"),
    (Sampler(temperature=0.7, top_p=0.6), "top"),
    (Sampler(temperature=0.5, top_k=40, top_p=0.9), "top"),
    (Sampler(temperature=1.0), "edge"),
    (Sampler(temperature=0.8, top_p=0.5), "exact-top-p"),
    (Sampler(temperature=1e-40), "seed"),
    (Sampler(temperature=1.0), "top"),
    (Sampler(temperature=1.3, top_k=20, top_p=0.7), "seed"),
    (Sampler(temperature=0.9, top_k=5), "edge"),
    (Sampler(temperature=1.0, top_k=8, top_p=0.8), "inside-top-k"),
    (Sampler(temperature=0.6, top_k=10), "seed"),
)
DRAWS = 200  # draws per distribution test: enough for a G-test to see a 10-point probability shift
DISTRIBUTION = Sampler(temperature=1.0, top_k=2)  # a cut with real mass beyond it: a kept k+1 shows within 200 draws


def aim(z: np.ndarray, s: Sampler, kind: str, seed: int, pos: int) -> tuple[Sampler, float]:
    """The settings and rand for one decode whose spec logits are ``z`` at position ``pos``."""
    if s.temperature == 0 or kind == "seed":
        return s, rand_for(seed, pos + 1)
    if kind == "exact-top-p":
        s = exact_top_p(z, s, seed)
        kind = "top"
    if kind == "inside-top-k":
        s = inside_top_k(z, s)
        kind = "top"
    if kind == "top":
        return s, TOP
    return s, edge_rand(z, s, seed) if kind == "edge" else rand_for(seed, pos + 1)


def edge_rand(z: np.ndarray, s: Sampler, seed: int) -> float:
    """A rand whose target lands exactly on an interior bucket boundary c_r (r chosen by ``seed``), if a float32
    near c_r / c_{m-1} does; else the nearest."""
    with np.errstate(over="ignore", invalid="ignore"):
        _, e, c, m = _buckets(np.asarray(z, np.float32), s)
    inner = [r for r in range(m - 1) if e[r + 1] > 0]
    if not inner or not np.isfinite(c[m - 1]):
        return rand_for(seed, 0)
    r = inner[seed % len(inner)]
    total = c[m - 1]
    u0 = np.float32(c[r] / total)
    for u in _neighbours(u0):
        if 0 <= u < 1 and np.float32(u * total) == c[r]:
            return float(u)
    return float(min(u0, np.float32(TOP)))


def exact_top_p(z: np.ndarray, s: Sampler, seed: int) -> Sampler:
    """``s`` with a top_p whose threshold top_p * total (float32) equals some c_{r-1} exactly, so the strict "<"
    of SPEC.md §3 step 5 drops rank r; else the given top_p."""
    with np.errstate(over="ignore", invalid="ignore"):
        _, e, c, _ = _buckets(np.asarray(z, np.float32), Sampler(temperature=s.temperature, top_k=s.top_k))
    total = c[-1]
    k = int(np.sum(e > 0))
    cands = [r for r in range(1, k) if c[r - 1] < total]
    if not cands or not np.isfinite(total):
        return s
    r = cands[seed % len(cands)]
    p0 = np.float32(c[r - 1] / total)
    for p in _neighbours(p0):
        if 0 < p < 1 and np.float32(p * total) == c[r - 1]:
            return Sampler(temperature=s.temperature, top_k=s.top_k, top_p=float(p))
    return s


def inside_top_k(z: np.ndarray, s: Sampler) -> Sampler:
    """``s`` with a top_p that cuts the top-k set at rank r with the widest margin: top_p * c_{k-1} midway between
    c_{r-2} and c_{r-1} (the spec keeps ranks < r, far from rounding either way), chosen so that the same fraction
    of the whole distribution's mass lies clearly above c_{r-1} (applied before top-k it would keep rank r)."""
    if s.top_k < 2:
        return s
    with np.errstate(over="ignore", invalid="ignore"):
        _, e, c, _ = _buckets(np.asarray(z, np.float32), Sampler(temperature=s.temperature, top_k=s.top_k))
        _, _, c_all, _ = _buckets(np.asarray(z, np.float32), Sampler(temperature=s.temperature))
    k = int(np.sum(e > 0))
    total, whole = float(c[-1]), float(c_all[-1])
    if k < 2 or not (np.isfinite(total) and np.isfinite(whole)):
        return s
    best, best_p = 0.0, None
    for r in range(1, k):
        lo, hi = (float(c[r - 2]) if r >= 2 else 0.0), float(c[r - 1])
        p = (lo + hi) / 2 / total
        margin = min(hi - lo, 2 * (p * whole - hi)) / total  # both sides of the spec's cut, and the other order's
        if margin > best:
            best, best_p = margin, p
    if best_p is None or best < 1e-4:  # no cut that rounding cannot decide: keep the given settings
        return s
    return Sampler(temperature=s.temperature, top_k=s.top_k, top_p=float(np.float32(best_p)))


def _neighbours(x: np.float32, n: int = 8) -> list[np.float32]:
    out, up, down = [np.float32(x)], np.float32(x), np.float32(x)
    for _ in range(n):
        up, down = np.nextafter(up, np.float32(2)), np.nextafter(down, np.float32(-1))
        out += [up, down]
    return out

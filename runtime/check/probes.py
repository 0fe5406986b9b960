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
top_p * total rounds exactly onto a c_{r-1} (the strict "<" of step 5 decides).
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
    (Sampler(temperature=1.0, top_k=3, top_p=0.8), "top"),
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


def _neighbours(x: np.float32, n: int = 8) -> list[np.float32]:
    out, up, down = [np.float32(x)], np.float32(x), np.float32(x)
    for _ in range(n):
        up, down = np.nextafter(up, np.float32(2)), np.nextafter(down, np.float32(-1))
        out += [up, down]
    return out

"""The seed -> rand stream: a counter-based function u = rand_for(seed, position), specified to the bit.

Counter-based (JAX's PRNG design, Salmon et al. 2011 "Parallel random numbers: as easy as 1, 2, 3"): the
rand for position p depends on (seed, p) only, never on how many draws came before, so prefill length,
batching, forking and resuming cannot shift the stream.

    mix(x)  = splitmix64 finaliser (Steele, Lea, Flood 2014), all arithmetic mod 2^64:
              z = x + 0x9E3779B97F4A7C15
              z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
              z = (z ^ (z >> 27)) * 0x94D049BB133111EB
              z =  z ^ (z >> 31)
    key            = mix(seed)
    rand_for(s, p) = (mix(key + p) >> 40) / 2^24        # top 24 bits: exact in float32, in [0, 1)

``position`` is the index in the sequence of the token being *sampled*: with a prompt of n tokens the first
generated token is at position n and uses ``rand_for(seed, n)``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
SEED_MAX = MASK64  # seeds are integers in [0, 2^64)
POSITION_MAX = (1 << 63) - 1


def splitmix64(x: int) -> int:
    z = (x + GOLDEN_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
        raise InputError(f"seed must be an integer in [0, 2**64 - 1], got {seed!r}; pass e.g. seed=0")
    return int(seed)


def rand_for(seed: int, position: int) -> float:
    """The rand in [0, 1) used to sample the token at ``position`` (a multiple of 2^-24, exact in float32)."""
    seed = check_seed(seed)
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 0 <= position <= POSITION_MAX:
        raise InputError(f"position must be an integer in [0, 2**63 - 1], got {position!r}")
    key = splitmix64(seed)
    return (splitmix64((key + int(position)) & MASK64) >> 40) / float(1 << 24)


def splitmix64_array(x: np.ndarray) -> np.ndarray:
    """Vectorised :func:`splitmix64` over a uint64 array (numpy wraps uint64 arithmetic mod 2^64)."""
    z = x.astype(np.uint64) + np.uint64(GOLDEN_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_array(seed: int, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """float32 values in [-1, 1): element i (C order) is 2 * (mix(mix(seed) + offset + i) >> 40) / 2^24 - 1.

    Used to generate the built-in models' weights so any implementation can rebuild them bit-exactly.
    """
    key = np.uint64(splitmix64(check_seed(seed)))
    n = int(np.prod(shape, dtype=np.int64))
    counters = key + np.uint64(offset) + np.arange(n, dtype=np.uint64)
    top24 = (splitmix64_array(counters) >> np.uint64(40)).astype(np.float32)
    return (top24 * np.float32(2.0 / (1 << 24)) - np.float32(1.0)).reshape(shape)

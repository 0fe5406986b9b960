"""The seed -> rand stream (spec/rand.py): published test vectors and the laws that make it position-keyed."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmstep.spec import InputError, rand_for
from lmstep.spec.rand import uniform_array

# (seed, position, top 24 bits). Computed by an independent C implementation of SPEC.md §Randomness
# (uint64 arithmetic, gcc 12), not by this package; the same table is published in SPEC.md.
VECTORS = [
    (0, 0, 10946269),
    (0, 1, 2791669),
    (0, 2, 8554350),
    (0, 1000, 14241380),
    (0, 2**63 - 1, 11277845),
    (1, 0, 6177195),
    (1, 1, 8836861),
    (1, 2, 12376539),
    (1, 1000, 8936767),
    (1, 2**63 - 1, 11026425),
    (42, 0, 5759482),
    (42, 1, 16404372),
    (42, 2, 7492501),
    (42, 1000, 7676080),
    (42, 2**63 - 1, 14164386),
    (2**64 - 1, 0, 6144522),
    (2**64 - 1, 1, 6841117),
    (2**64 - 1, 2, 5353501),
    (2**64 - 1, 1000, 15947598),
    (2**64 - 1, 2**63 - 1, 11814575),
]


@pytest.mark.law("rand-stream")  # negative control: the catalogue's rand-mixer-shift misses them (test_spec_mutants)
@pytest.mark.parametrize("seed,position,bits", VECTORS)
def test_published_vectors(seed, position, bits):
    assert rand_for(seed, position) == bits / 2**24


@pytest.mark.law("rand-stream")
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**63 - 1))
def test_range_and_float32_exactness(seed, position):
    u = rand_for(seed, position)
    assert 0.0 <= u < 1.0
    assert float(np.float32(u)) == u  # a multiple of 2^-24: the sampler sees exactly this value
    assert rand_for(seed, position) == u  # a pure function of (seed, position)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "3", None, True])
def test_bad_seed_is_one_clear_error(bad):
    with pytest.raises(InputError, match="seed must be an integer"):
        rand_for(bad, 0)


@pytest.mark.parametrize("bad", [-1, 2**63, 0.5])
def test_bad_position_is_one_clear_error(bad):
    with pytest.raises(InputError, match="position must be an integer"):
        rand_for(0, bad)


def test_stream_looks_uniform():
    """A sanity check on quality (not a proof): 20k draws, chi-square over 20 bins, and lag-1 correlation."""
    u = np.array([rand_for(7, p) for p in range(20000)])
    counts, _ = np.histogram(u, bins=20, range=(0, 1))
    chi2 = ((counts - 1000) ** 2 / 1000).sum()
    assert chi2 < 43.8  # 99.9th percentile of chi-square with 19 degrees of freedom
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.03


def test_uniform_array_matches_scalar_definition():
    """The weight generator is the same stream: element i uses counter key + offset + i."""
    from lmstep.spec.rand import splitmix64

    arr = uniform_array(5, (3, 4), offset=10)
    key = splitmix64(5)
    for i, v in enumerate(arr.ravel()):
        expect = 2 * (splitmix64((key + 10 + i) % 2**64) >> 40) / 2**24 - 1
        assert v == np.float32(expect)

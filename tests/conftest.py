"""Hypothesis profiles: ``quick`` (default, a few minutes for the whole suite on 2 cores) and ``thorough``
(select with ``pytest --hypothesis-profile thorough``, for nightly CI)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "quick",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("LMSTEP_HYPOTHESIS_PROFILE", "quick"))

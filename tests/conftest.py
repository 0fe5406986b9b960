"""Hypothesis profiles: ``quick`` (default, a few minutes for the whole suite on 2 cores) and ``thorough``
(select with ``pytest --hypothesis-profile thorough``, for nightly CI); and lmstep's BLAS thread policy for the
test process, as the command line has it (runtime/threads.py: one thread unless the environment chooses), so
test workers beside each other (pytest-xdist, a busy machine) do not oversubscribe the cores."""

import os

from hypothesis import HealthCheck, settings

from lmstep.runtime.threads import apply_policy

apply_policy()

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

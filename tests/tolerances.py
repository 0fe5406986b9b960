"""Tolerances used by the tests: the spec's published table (lmstep.spec.conformance, measured there)."""

from lmstep.spec.conformance import FORMS, arrays_err, rel_err, state_err  # noqa: F401

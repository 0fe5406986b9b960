"""Proof obligations about the spec, discharged with Z3 (issue 6)."""

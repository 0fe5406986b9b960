"""lmstep: an LLM written down as an equation. See lmstep.spec (the reference), lmstep.runtime, lmstep.proofs."""

__version__ = "0.1.0"

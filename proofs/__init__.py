"""lmstep.proofs: Z3 proof obligations for the laws the tests rely on (see docs/proofs.md)."""

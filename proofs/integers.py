"""Integer scans: chunked prefill (scan each chunk, carry the state) against the recurrence, bit-exactly.

A chunked prefill runs ``mamba._scan`` within each chunk, starting each chunk from the state the previous one
left (the scan's own h0 path, as mamba._mixer_unrolled uses it), exactly as a runtime that prefills a long
prompt in pieces does. With wrap-around (two's complement) arithmetic Z/2^w is a commutative
ring, so every polynomial identity of the reals holds and the chunked scan equals the recurrence bit for bit.
Saturating and Q8.8 fixed-point arithmetic are not rings (saturation breaks associativity of +, truncating
the product breaks associativity of *), and Z3 finds inputs where they differ; each is replayed in numpy with
an integer interpretation of the same ops (``mamba._scan`` run on :class:`IntNumpyOps`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import z3

from lmstep.spec.ops import NumpyOps

from . import scan
from .domains import BitVec
from .obligations import Obligation, Query, register
from .replay import ReplayMismatch
from .symbolic import Z3Ops, all_equal

T_INT, CHUNK = 8, 3  # 8 tokens in chunks of 3, 3, 2: the last chunk is short (docs/design.md §6)


def chunked(o: Any, elems: list[Any], chunk: int, scan_fn: Callable[..., Any] | None = None) -> list[Any]:
    """h_t for every t: the spec's scan within each chunk, from the state the previous chunk left."""
    out, h_prev = [], None
    for start in range(0, len(elems), chunk):
        out += [hh for _, hh in scan.spec_scan(o, elems[start : start + chunk], scan_fn, h_prev)]
        h_prev = out[-1]
    return out


def chunked_query(dom: BitVec, scan_fn: Callable[..., Any] | None = None) -> Query:
    o = Z3Ops(dom)
    elems = scan.elements(o, T_INT)
    seq = [h for _, h in scan.recurrence(o, elems)]
    goal = z3.And(*[all_equal(o, x, y) for x, y in zip(chunked(o, elems, CHUNK, scan_fn), seq)])
    return Query(goal, o.facts, o.checks, {"a": [e[0] for e in elems], "b": [e[1] for e in elems]})


class IntNumpyOps(NumpyOps):
    """numpy interpretation of add/mul in a :class:`BitVec` mode on int{width} arrays (computed in int64, then
    clamped, shifted or wrapped as the domain says) - the replay of a bit-vector counterexample."""

    # The subset of the vocabulary this interpretation gives bit-vector meaning; every other op is NumpyOps' own,
    # exact on the int64 index arithmetic the scan does around them (tests/test_vocabulary.py checks the list).
    BITVECTOR_OPS = frozenset({"add", "mul"})

    def __init__(self, dom: BitVec) -> None:
        self.dom, self.dtype = dom, np.dtype(f"int{dom.width}")

    def _finish(self, wide: np.ndarray) -> np.ndarray:
        lo, hi = -(1 << (self.dom.width - 1)), (1 << (self.dom.width - 1)) - 1
        if self.dom.mode == "saturate":
            wide = np.clip(wide, lo, hi)
        return ((wide - lo) % (1 << self.dom.width) + lo).astype(self.dtype)  # wrap

    def add(self, a: Any, b: Any) -> np.ndarray:
        return self._finish(np.asarray(a, np.int64) + np.asarray(b, np.int64))

    def mul(self, a: Any, b: Any) -> np.ndarray:
        wide = np.asarray(a, np.int64) * np.asarray(b, np.int64)
        return self._finish(wide >> self.dom.frac if self.dom.mode == "fixed" else wide)  # >> floors, as Extract does


def replay(dom: BitVec, model: dict[str, Any]) -> list[str]:
    o = IntNumpyOps(dom)
    elems = [
        (np.array([[a]], o.dtype), np.array([[b]], o.dtype)) for a, b in zip(np.ravel(model["a"]), np.ravel(model["b"]))
    ]
    got = [int(np.ravel(h)[0]) for h in chunked(o, elems, CHUNK)]
    want = [int(np.ravel(h)[0]) for _, h in scan.recurrence(o, elems, o.dtype.type(0))]
    if got == want:
        raise ReplayMismatch(f"numpy {dom.name}: chunked and sequential agree: {got}")
    t = next(i for i in range(len(got)) if got[i] != want[i])
    return [f"numpy {dom.name} (mamba._scan on {o.dtype}): h_{t} chunked {got[t]} != sequential {want[t]}"]


# -- the registry -----------------------------------------------------------------------------------------
# The identity is proved at 32 and 16 bits (word-level rewriting, milliseconds); the counterexample searches
# run at 8 bits (Q4.4), where they take well under a second - at 16 bits they took 2 s to over 30 s.
WRAP32, WRAP16 = BitVec(32, "wrap"), BitVec(16, "wrap")
SAT8, FIXED8 = BitVec(8, "saturate"), BitVec(8, "fixed", frac=4)
BOUNDS = f"T={T_INT} in chunks of {CHUNK} (last chunk short), scalar"
for dom in (WRAP32, WRAP16):
    law = f"integers/chunked-scan-wrap{dom.width}"
    register(
        Obligation(
            law,
            "integers",
            "chunked prefill (scan per chunk + carried state) equals the recurrence bit-exactly",
            f"int{dom.width}, wrap-around (two's complement)",
            BOUNDS,
            "spec: mamba._scan per chunk",
            "proved",
            lambda dom=dom: chunked_query(dom),
            law="split-invariance",
        )
    )
    register(
        Obligation(
            f"{law}~swapped",
            "integers",
            "mutant: the swapped _scan breaks the chunked prefill",
            f"int{dom.width}, wrap-around",
            BOUNDS,
            "spec: mutated mamba._scan",
            "refuted",
            lambda dom=dom: chunked_query(dom, scan.swapped_scan()),
            mutant_of=law,
            mutant="scan-swapped",
        )
    )
register(
    Obligation(
        "integers/chunked-scan-saturate8",
        "integers",
        "with saturating arithmetic, chunked prefill equals the recurrence (it does not)",
        "int8, saturating add and mul",
        BOUNDS,
        "spec: mamba._scan per chunk",
        "refuted",
        lambda: chunked_query(SAT8),
        replay=lambda m: replay(SAT8, m),
        law="split-invariance",
    )
)
register(
    Obligation(
        "integers/chunked-scan-q4.4",
        "integers",
        "with Q4.4 fixed point, chunked prefill equals the recurrence (it does not)",
        "int8 as Q4.4: product >> 4 (floor), wrap-around",
        BOUNDS,
        "spec: mamba._scan per chunk",
        "refuted",
        lambda: chunked_query(FIXED8),
        replay=lambda m: replay(FIXED8, m),
        law="split-invariance",
    )
)

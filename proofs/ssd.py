"""Mamba-2's chunked SSD equals its recurrence (Dao & Gu 2024, §7: "train in parallel, run recurrent").

The recurrence is the spec's own step, ``mamba2.ssm_step`` (h_t = exp(dt_t A) h_{t-1} + (x_t dt_t) B_t^T,
y_t = h_t C_t), applied T times; the chunked form is the spec's own ``mamba2.ssd`` (segment sums within chunks
of Q steps, the recurrence over chunk states as one product over chunk boundaries, the carried state h0 entering
as chunk -1). Both run on Z3 terms over the reals, at every chunk length Q up to a bound and every sequence
length T around it (T < Q, = Q, a few chunks, a ragged last chunk), from the zero state and from a symbolic
carried state. exp is the ``product`` model of symbolic.py: exp of a sum is the product of the summands' exps,
the one law of exp the decays need (exp(a_{s+1} + ... + a_t) = prod exp(a_r)), so what remains is polynomial
identity. Each law has mutants from the catalogue (lmstep/mutants.py) that must come back refuted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import z3

from lmstep.spec import mamba2

from .domains import Real
from .obligations import Obligation, Query, catalogue, register
from .symbolic import Z3Ops, all_equal


def ssd_query(
    length: int,
    chunk: int,
    shape: tuple[int, int, int] = (1, 1, 1),
    carried: bool = False,
    ssd: Callable[..., Any] | None = None,
) -> Query:
    """``ssd`` (default ``mamba2.ssd``, looked up at call time) over ``length`` steps in chunks of ``chunk`` equals
    ``length`` calls of ``mamba2.ssm_step``: every output y_t and the final state. ``shape`` = (H, P, N); every
    input symbolic, h0 symbolic when ``carried`` (else the zero state)."""
    heads, p, n = shape
    o = Z3Ops(Real(), exp="product")
    x, dt, A = o.var("x", (1, length, heads, p)), o.var("dt", (1, length, heads)), o.var("A", (heads,))
    B, C = o.var("B", (1, length, heads, n)), o.var("C", (1, length, heads, n))
    h0 = o.var("h0", (1, heads, p, n)) if carried else np.zeros((1, heads, p, n), dtype=object) + 0.0
    y, h_last = (ssd or mamba2.ssd)(o, x, dt, A, B, C, h0, chunk)
    h, goals = h0, []
    for t in range(length):
        y_t, h = mamba2.ssm_step(o, h, x[:, t], dt[:, t], A, B[:, t], C[:, t])
        goals.append(all_equal(o, y[:, t], y_t))
    goals.append(all_equal(o, h_last, h))
    inputs = {"x": x, "dt": dt, "A": A, "B": B, "C": C} | ({"h0": h0} if carried else {})
    return Query(z3.And(*goals), o.facts, o.checks, inputs, label=f"T={length}, Q={chunk}")


def lengths(chunk: int, chunks: int) -> range:
    """T = 1 .. chunks * chunk + 1: shorter than one chunk, exactly one, and every ragged end up to ``chunks``."""
    return range(1, chunks * chunk + 2)


def every_length(max_chunk: int, chunks: int, **kw: Any) -> list[Query]:
    return [ssd_query(t, q, **kw) for q in range(1, max_chunk + 1) for t in lengths(q, chunks)]


def mutated(mutant: str) -> Callable[..., Any]:
    return catalogue(mutant, "mamba2.ssd")


REAL = "the reals; exp of a sum is the product of exps (symbolic.py, exp model 'product')"
register(
    Obligation(
        "ssd/chunked-eq-recurrence",
        "ssd",
        "mamba2.ssd (chunked SSD) equals T steps of mamba2.ssm_step: every y_t and the final state",
        REAL,
        "Q=1..4, T=1..3Q+1 (every ragged last chunk over three chunks), one scalar head; and H=2, P=2, N=2 "
        "(heads, head dim, state) at Q=1..3, T=1..2Q+1; zero initial state",
        "spec: mamba2.ssd, mamba2.ssm_step",
        "proved",
        lambda: every_length(4, 3) + every_length(3, 2, shape=(2, 2, 2)),
        law="unrolled-eq-recurrent",
    )
)
register(
    Obligation(
        "ssd/chunked-eq-recurrence~state-not-carried",
        "ssd",
        "mutant: a chunked SSD that drops each chunk's end state differs from the recurrence",
        REAL,
        "Q=2, T=1..5",
        "spec: mutated mamba2.ssd",
        "refuted",
        lambda: [ssd_query(t, 2, ssd=mutated("ssd-state-not-carried")) for t in range(1, 6)],
        mutant_of="ssd/chunked-eq-recurrence",
        mutant="ssd-state-not-carried",
    )
)
register(
    Obligation(
        "ssd/chunked-eq-recurrence~chunk-decay-off-by-one",
        "ssd",
        "mutant: the decay between chunks shifted by one chunk differs from the recurrence",
        REAL,
        "Q=2, T=1..7",
        "spec: mutated mamba2.ssd",
        "refuted",
        lambda: [ssd_query(t, 2, ssd=mutated("ssd-chunk-decay-off-by-one")) for t in range(1, 8)],
        mutant_of="ssd/chunked-eq-recurrence",
        mutant="ssd-chunk-decay-off-by-one",
    )
)
register(
    Obligation(
        "ssd/carried-state",
        "ssd",
        "mamba2.ssd from a carried state h0 equals the recurrence from h0 (a prefill after a cache)",
        REAL,
        "Q=1..4, T=1..2Q+1, h0 symbolic; and H=2, P=2, N=2 at Q=1..2, T=1..2Q+1",
        "spec: mamba2.ssd(.., h0), mamba2.ssm_step",
        "proved",
        lambda: every_length(4, 2, carried=True) + every_length(2, 2, shape=(2, 2, 2), carried=True),
        law="split-invariance",
    )
)
register(
    Obligation(
        "ssd/carried-state~h0-undecayed",
        "ssd",
        "mutant: the state entering a chunk without the decay from the chunk's start differs from the recurrence",
        REAL,
        "Q=2, T=1..5, h0 symbolic",
        "spec: mutated mamba2.ssd",
        "refuted",
        lambda: [ssd_query(t, 2, carried=True, ssd=mutated("ssd-h0-undecayed")) for t in range(1, 6)],
        mutant_of="ssd/carried-state",
        mutant="ssd-h0-undecayed",
    )
)

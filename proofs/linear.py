"""Depth collapse and XOR (Minsky & Papert 1969): why the spec's layers need their nonlinearities.

Run through ``layers.linear`` (x @ w + b, weights stored [in, out]) over the reals with symbolic weights:
- two linear layers are one: (x W1 + b1) W2 + b2 = x (W1 W2) + (b1 W2 + b2), so depth without a nonlinearity
  adds nothing; with a ReLU (ONNX Max(x, 0)) in between it is no longer one linear map;
- no affine map separates XOR (proved: no weights exist), while one hidden ReLU layer of width 2 computes it
  exactly (proved by a witness Z3 finds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import z3

from lmstep.spec import layers

from .domains import Real
from .obligations import Obligation, Query, register
from .symbolic import Z3Ops, all_equal

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)  # the four inputs
XOR = [0.0, 1.0, 1.0, 0.0]
OR = [0.0, 1.0, 1.0, 1.0]


def relu(o: Any, x: Any) -> Any:
    return o.max(x, 0.0)


def collapse_query(with_relu: bool = False) -> Query:
    o = Z3Ops(Real())
    x, w1, b1, w2, b2 = (
        o.var("x", (1, 3)),
        o.var("W1", (3, 2)),
        o.var("b1", (2,)),
        o.var("W2", (2, 3)),
        o.var("b2", (3,)),
    )
    hidden = layers.linear(o, x, w1, b1)
    deep = layers.linear(o, relu(o, hidden) if with_relu else hidden, w2, b2)
    w, b = o.matmul(w1, w2), o.add(o.matmul(o.unsqueeze(b1, 0), w2)[0], b2)  # the collapsed layer
    return Query(
        all_equal(o, deep, layers.linear(o, x, w, b)),
        o.facts,
        o.checks,
        {"x": x, "W1": w1, "b1": b1, "W2": w2, "b2": b2},
    )


def separable_query(table: list[float]) -> Query:
    """No (w, b) with x w + b > 0 exactly where table(x) = 1: the goal is 'not separated', for all w, b."""
    o = Z3Ops(Real())
    w, b = o.var("w", (2, 1)), o.var("b", (1,))
    f = layers.linear(o, X, w, b)[:, 0]
    separated = z3.And(*[(f[i] > 0) if t else (f[i] <= 0) for i, t in enumerate(table)])
    return Query(z3.Not(separated), o.facts, o.checks, {"w": w, "b": b})


def hidden_query(with_relu: bool = True) -> Query:
    """Weights exist with linear(relu(linear(X, W1, b1)), W2, b2) == XOR on all four inputs (width 2)."""
    o = Z3Ops(Real())
    w1, b1, w2, b2 = o.var("W1", (2, 2)), o.var("b1", (2,)), o.var("W2", (2, 1)), o.var("b2", (1,))
    hidden = layers.linear(o, X, w1, b1)
    out = layers.linear(o, relu(o, hidden) if with_relu else hidden, w2, b2)
    goal = all_equal(o, out, np.array(XOR, np.float32).reshape(4, 1))
    return Query(goal, o.facts, o.checks, {"W1": w1, "b1": b1, "W2": w2, "b2": b2}, exists=True)


# -- the registry -----------------------------------------------------------------------------------------
REAL = "the reals (exact)"
SPEC = "spec: layers.linear (and ONNX Max as ReLU)"
register(
    Obligation(
        "linear/depth-collapse",
        "linear",
        "two linear layers equal one: (x W1 + b1) W2 + b2 = x (W1 W2) + (b1 W2 + b2)",
        REAL,
        "x [1, 3], hidden width 2",
        SPEC,
        "proved",
        collapse_query,
        law="depth-needs-nonlinearity",
    )
)
register(
    Obligation(
        "linear/depth-collapse~relu",
        "linear",
        "mutant: with a ReLU between them the two layers are not one",
        REAL,
        "x [1, 3], hidden width 2",
        SPEC,
        "refuted",
        lambda: collapse_query(with_relu=True),
        mutant_of="linear/depth-collapse",
    )
)
register(
    Obligation(
        "linear/xor-not-linear",
        "linear",
        "no affine map x w + b is > 0 exactly on XOR's ones",
        REAL,
        "the 4 points of {0,1}^2",
        SPEC,
        "proved",
        lambda: separable_query(XOR),
        law="depth-needs-nonlinearity",
    )
)
register(
    Obligation(
        "linear/xor-not-linear~or",
        "linear",
        "mutant: the same claim for OR is false (OR is linearly separable)",
        REAL,
        "the 4 points of {0,1}^2",
        SPEC,
        "refuted",
        lambda: separable_query(OR),
        mutant_of="linear/xor-not-linear",
    )
)
register(
    Obligation(
        "linear/xor-one-relu-layer",
        "linear",
        "one hidden ReLU layer of width 2 computes XOR exactly (a witness exists)",
        REAL,
        "the 4 points of {0,1}^2",
        SPEC,
        "proved",
        hidden_query,
        law="depth-needs-nonlinearity",
    )
)
register(
    Obligation(
        "linear/xor-one-relu-layer~no-relu",
        "linear",
        "mutant: without the ReLU no weights compute XOR",
        REAL,
        "the 4 points of {0,1}^2",
        SPEC,
        "refuted",
        lambda: hidden_query(with_relu=False),
        mutant_of="linear/xor-one-relu-layer",
    )
)

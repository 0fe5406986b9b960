"""Sampler laws, run through ``sampler.sample`` on symbolic logits over the reals.

The laws refer to the spec's own intermediate values (the sorted order ``idx`` from its TopK and the CDF ``c``
from its CumSum, recorded by Z3Ops.trace) and restate only the *specification* of the result, from the module
docstring of sampler.py: step 5 (the kept set), step 6 (the bracket), step 7 (the fallback never lands on a
zero-probability rank), step 0 (greedy = lowest index among maxima).

exp is uninterpreted, constrained only as any faithful libm exp is (>= 0, exp(0) = 1, <= 1 for x <= 0,
monotone); it may underflow to 0, which is what makes zero-probability ranks inside the top-k possible.

Why the reals: with float32 terms every query bit-blasts the whole sampler (TopK comparisons, the divisions by
the temperature, the CumSum adders) and timed out at 60 s even for V = 2 in bfloat16. The two facts about
float32 rounding these laws rely on are proved separately, in float32, in floats.py: the CDF is nondecreasing
and a zero-probability rank repeats its predecessor exactly (``floats/cdf-add-monotone-float32``), and
u * total < total for u < 1 (``floats/target-below-total-float32``, a --long obligation), so the fallback of step 7
is only reachable with u = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import z3

from lmstep.spec import sampler

from .domains import Float, Real
from .obligations import Obligation, Query, catalogue, register
from .symbolic import Z3Ops, term

V = 4  # vocabulary size: every rank pattern of 4 tokens (ties, underflow, cut-offs) is covered


class Run:
    """One symbolic run of the sampler: inputs, their assumptions, the token and the spec's intermediates."""

    def __init__(
        self,
        dom: Any,
        *,
        temperature: Any = 1.0,
        top_k: Any = 0,
        top_p: Any = 1.0,
        u_le_1: bool = False,
        sample: Callable[..., Any] | None = None,
    ) -> None:
        self.dom = dom
        o = self.o = Z3Ops(dom, shift="exact", exp="libm")
        self.z, self.u = o.var("z", (1, V)), o.var("u", (1,))
        u = term(self.u)
        self.assumptions: list[tuple[str, Any]] = [
            (
                "0 <= u <= 1" if u_le_1 else "0 <= u < 1 (check_rand)",
                z3.And(self.le(0.0, u), (self.le if u_le_1 else self.lt)(u, 1.0)),
            ),
        ]
        if isinstance(dom, Float):
            zs = list(self.z.flat)
            self.assumptions.append(
                (
                    "logits: no NaN, no +inf, one finite (check_logits)",
                    z3.And(
                        *[z3.Not(z3.Or(z3.fpIsNaN(x), z3.And(z3.fpIsInf(x), z3.fpIsPositive(x)))) for x in zs],
                        z3.Or(*[z3.Not(z3.fpIsInf(x)) for x in zs]),
                    ),
                )
            )
        self.inputs: dict[str, Any] = {"logits": self.z, "u": u}
        for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
            if z3.is_expr(value):
                self.inputs[name] = value
        self.token = term((sample or sampler.sample)(o, self.z, self.u, temperature, top_k, top_p))
        if "cumsum" in o.trace:
            ((x, c),) = o.trace["cumsum"]
            self.e, self.c = list(x[0]), list(c[0])
            self.idx = list(o.trace["topk"][0][1][1][0])
        self.inputs["token"] = self.token

    def lt(self, a: Any, b: Any) -> Any:
        return self.dom.lt(*self.o._pair(a, b))

    def le(self, a: Any, b: Any) -> Any:
        return self.dom.le(*self.o._pair(a, b))

    def query(self, goal: Any, extra: list[tuple[str, Any]] = ()) -> Query:
        return Query(goal, [*self.assumptions, *extra, *self.o.facts], self.o.checks, self.inputs)

    def at_rank(self, law: Callable[[int], Any]) -> Any:
        """law(r) for the rank r that the returned token has in the spec's sorted order."""
        return z3.And(*[z3.Implies(self.idx[r] == self.token, law(r)) for r in range(V)])

    def c_prev(self, r: int) -> Any:
        return self.c[r - 1] if r > 0 else self.dom.const(0.0)


def bracket_query(dom: Any, sample: Callable[..., Any] | None = None) -> Query:
    """Step 6: c_{r-1} <= target < c_r for the chosen rank r, target = u * c_{V-1}."""
    run = Run(dom, sample=sample)
    target = dom.mul(term(run.u), run.c[V - 1])
    return run.query(run.at_rank(lambda r: z3.And(run.le(run.c_prev(r), target), run.lt(target, run.c[r]))))


def zero_prob_query(dom: Any, sample: Callable[..., Any] | None = None) -> Query:
    """Step 7: the chosen rank has e_r > 0, even for u = 1 (where u * total reaches the last bucket)."""
    run = Run(dom, u_le_1=True, sample=sample)
    return run.query(run.at_rank(lambda r: run.lt(0.0, run.e[r])))


def kept_query(dom: Any, sample: Callable[..., Any] | None = None) -> Query:
    """Step 5, for every top_k >= 0 and top_p in (0, 1]: the chosen rank r has r < k and, if top_p < 1,
    c_{r-1} < top_p * c_{V-1} - the kept set of the docstring."""
    top_k, top_p = z3.Int("top_k"), dom.var("top_p")
    run = Run(dom, top_k=top_k, top_p=top_p, sample=sample)
    k = z3.If(top_k == 0, V, z3.If(top_k < V, top_k, V))
    bound = dom.mul(run.c[V - 1], top_p)
    law = run.at_rank(lambda r: z3.And(r < k, z3.Or(run.le(1.0, top_p), run.lt(run.c_prev(r), bound))))
    settings = ("top_k >= 0, 0 < top_p <= 1", z3.And(top_k >= 0, run.lt(0.0, top_p), run.le(top_p, 1.0)))
    return run.query(law, [settings])


def greedy_query(dom: Any, sample: Callable[..., Any] | None = None) -> Query:
    """Step 0, through the graph path (a symbolic temperature equal to 0): the token is the lowest index among
    the maxima of the logits."""
    temperature = dom.var("temperature")
    run = Run(dom, temperature=temperature, sample=sample)
    z, t = list(run.z.flat), run.token
    law = z3.And(
        0 <= t,
        t < V,
        *[
            z3.Implies(t == i, z3.And(*[run.le(z[j], z[i]) for j in range(V)], *[run.lt(z[j], z[i]) for j in range(i)]))
            for i in range(V)
        ],
    )
    return run.query(law, [("temperature = 0", run.dom.eq(temperature, run.dom.const(0.0)))])


# -- the registry -----------------------------------------------------------------------------------------
REAL = "the reals (exact); exp uninterpreted with libm properties (>= 0, may underflow to 0); 0 <= u < 1"
SPEC = "spec: sampler.sample (TopK as a symbolic stable permutation)"
MUT = "spec: mutated sampler.sample (the mutant catalogue's)"


def _law(
    name: str,
    statement: str,
    assumes: str,
    bounds: str,
    build: Callable[[], Query],
    via: str = SPEC,
    mutant_of: str | None = None,
    law: str = "",
    mutant: str | None = None,
) -> None:
    register(
        Obligation(
            name,
            "sampler",
            statement,
            assumes,
            bounds,
            via,
            "refuted" if mutant_of else "proved",
            build,
            mutant_of=mutant_of,
            law=law,
            mutant=mutant,
        )
    )


_law(
    "sampler/brackets-u",
    "the chosen rank r has c_{r-1} <= u * total < c_r",
    REAL,
    f"V={V}, temperature 1, top_k 0, top_p 1",
    lambda: bracket_query(Real()),
    law="sampler-bracket",
)
_law(
    "sampler/brackets-u~non-strict",
    "mutant: counting c < target instead of c <= target breaks the bracket",
    REAL,
    f"V={V}",
    lambda: bracket_query(Real(), catalogue("bracket-inclusive", "sampler.sample")),
    MUT,
    "sampler/brackets-u",
    mutant="bracket-inclusive",
)
_law(
    "sampler/zero-prob-never-chosen",
    "a rank with e_r = 0 (cut off, or exp underflowed) is never chosen, even for u = 1",
    REAL.replace("0 <= u < 1", "0 <= u <= 1"),
    f"V={V}, temperature 1, top_k 0, top_p 1",
    lambda: zero_prob_query(Real()),
    law="sampler-no-zero-prob",
)
_law(
    "sampler/zero-prob-never-chosen~fallback-any-kept",
    "mutant: a fallback to the last kept rank (not the last positive one)",
    REAL.replace("0 <= u < 1", "0 <= u <= 1"),
    f"V={V}",
    lambda: zero_prob_query(Real(), catalogue("fallback-any-kept", "sampler.sample")),
    MUT,
    "sampler/zero-prob-never-chosen",
    mutant="fallback-any-kept",
)
_law(
    "sampler/kept-set",
    "the token is in the kept set: rank < k, and c_{r-1} < top_p * total when top_p < 1",
    REAL + "; any top_k >= 0, top_p in (0, 1]",
    f"V={V}, temperature 1",
    lambda: kept_query(Real()),
    law="sampler-keep-set",
)
_law(
    "sampler/kept-set~top-k-off-by-one",
    "mutant: rank <= k keeps one token too many",
    REAL,
    f"V={V}",
    lambda: kept_query(Real(), catalogue("top-k-off-by-one", "sampler.sample")),
    MUT,
    "sampler/kept-set",
    mutant="top-k-off-by-one",
)
_law(
    "sampler/greedy-lowest-max",
    "temperature 0 returns the lowest index among the maxima",
    REAL,
    f"V={V}, symbolic temperature = 0 (the graph's where)",
    lambda: greedy_query(Real()),
    law="sampler-greedy",
)
_law(
    "sampler/greedy-lowest-max~last-index",
    "mutant: greedy breaks ties to the highest index",
    REAL,
    f"V={V}",
    lambda: greedy_query(Real(), catalogue("greedy-last-index", "sampler.sample")),
    MUT,
    "sampler/greedy-lowest-max",
    mutant="greedy-last-index",
)

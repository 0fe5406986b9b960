"""Proof obligations as data, their registry, and the runner that discharges them with Z3.

An :class:`Obligation` names the law it supports (``law``, an id of lmstep.spec.laws), says what it assumes and
for which sizes, how it is checked (through the spec's own code or as restated algebra) and which verdict is
expected. Its ``build`` function returns one or
more :class:`Query` objects (an induction is a base query and a step query). For a universal law the runner
asserts the assumptions and the *negation* of the goal: unsat = proved, sat = refuted (the model is a
counterexample), anything else = unknown. For an existential law (``Query.exists``) it asserts the goal:
sat = proved (the model is a witness), unsat = refuted.

Every query is also checked for vacuity: if its assumptions alone are unsatisfiable, any goal would "prove",
so the verdict becomes ``vacuous`` instead (no proof may pass vacuously, docs/design.md §8). Each law has a mutant
obligation, expected ``refuted``, for the same reason; one that runs broken spec code takes it from the mutant
catalogue (``mutant``, lmstep/mutants.py), so the tests and the checker run the very same bug.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import z3

from lmstep.spec.errors import InputError
from lmstep.spec.laws import BY_ID

from .domains import model_value

TOPICS = ("scan", "attention", "sampler", "floats", "integers", "linear", "model", "algorithm", "ssd")


@dataclasses.dataclass
class Query:
    """One solver call: ``assumptions`` (labelled) imply ``goal`` and the definedness ``checks``."""

    goal: Any
    assumptions: Sequence[tuple[str, Any]] = ()
    checks: Sequence[tuple[str, Any]] = ()
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)  # named terms to report in a model
    exists: bool = False
    label: str = ""
    # Pure bit-vector/IEEE queries: bit-blast straight to SAT (7 s instead of 17 s for floats/target-below-total).
    bitblast: bool = False
    # Counterexample searches over IEEE formats have heavy-tailed run times (measured for the T=4 float32 scan:
    # 3 s to > 30 s by random seed), so they restart with a new seed every attempt_s seconds (Luby et al. 1993).
    attempt_s: float | None = None

    def solver(self, timeout_s: float | None = None) -> z3.Solver:
        """A solver holding exactly what is checked: assumptions and the negated (or, if exists, plain) goal."""
        s = BITBLAST.solver() if self.bitblast else z3.Solver()
        if timeout_s is not None:
            s.set("timeout", max(1, int(timeout_s * 1000)))
        for _, f in self.assumptions:
            s.add(f)
        s.add(self.claim())
        return s

    def claim(self) -> Any:
        body = z3.And(self.goal, *[c for _, c in self.checks]) if self.checks else self.goal
        return body if self.exists else z3.Not(body)


@dataclasses.dataclass(frozen=True)
class Obligation:
    name: str
    topic: str
    statement: str
    assumes: str
    bounds: str
    via: str  # "spec: <the spec functions it runs>" or "algebra: <why it is restated>"
    expected: str  # "proved" or "refuted"
    build: Callable[[], Query | list[Query]]
    mutant_of: str | None = None
    law: str = ""  # the lmstep.spec.laws id it supports; a mutant obligation inherits its law's
    mutant: str | None = None  # the catalogue mutant (lmstep/mutants.py) whose code it runs
    long: bool = False
    timeout_s: float = 30.0
    replay: Callable[[dict[str, Any]], list[str]] | None = None  # replays a counterexample on real hardware

    def __post_init__(self) -> None:
        if self.expected not in ("proved", "refuted"):
            raise ValueError(f"{self.name}: expected must be proved or refuted, not {self.expected!r}")
        if self.topic not in TOPICS:
            raise ValueError(f"{self.name}: unknown topic {self.topic!r}")
        if self.law and self.law not in BY_ID:
            raise ValueError(f"{self.name}: unknown law {self.law!r} (see lmstep.spec.laws)")


@dataclasses.dataclass
class Result:
    name: str
    verdict: str
    expected: str
    seconds: float
    detail: str = ""
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    replay: list[str] = dataclasses.field(default_factory=list)
    queries: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict == self.expected

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}


REGISTRY: dict[str, Obligation] = {}
BITBLAST = z3.Then("simplify", "fpa2bv", "propagate-values", "simplify", "solve-eqs", "bit-blast", "sat")


def register(ob: Obligation) -> Obligation:
    if ob.name in REGISTRY:
        raise ValueError(f"obligation {ob.name!r} registered twice")
    if not ob.law and ob.mutant_of in REGISTRY:
        ob = dataclasses.replace(ob, law=REGISTRY[ob.mutant_of].law)
    if not ob.law:
        raise ValueError(f"obligation {ob.name!r} names no law (Obligation.law, an id of lmstep.spec.laws)")
    REGISTRY[ob.name] = ob
    return ob


def catalogue(mutant: str, target: str) -> Any:
    """The function ``target`` ("mamba._scan") of the catalogue's ``mutant``: the spec's code with that bug."""
    from lmstep.mutants import MUTANTS

    return MUTANTS[mutant].function(target)


def load_all() -> dict[str, Obligation]:
    """Import every topic module (each registers its obligations) and return the registry."""
    for topic in TOPICS:
        importlib.import_module(f"lmstep.proofs.{topic}")
    return REGISTRY


def select(only: str | None = None, long: bool = False) -> list[Obligation]:
    """The obligations to run: all default ones (plus the long ones with ``long``), or those matching ``only``
    (an exact name, else every name containing it; long ones included when asked for by name)."""
    obs = list(load_all().values())
    if only is None:
        return [ob for ob in obs if long or not ob.long]
    if only in REGISTRY:
        return [REGISTRY[only]]
    picked = [ob for ob in obs if only in ob.name and (long or not ob.long)]
    if not picked:
        raise InputError(f"no proof obligation matches {only!r}; `lmstep prove --list` shows their names")
    return picked


def run(ob: Obligation, smt2_dir: str | None = None, vacuity_timeout_s: float = 20.0) -> Result:
    """Discharge one obligation; never raises (a failure to build or solve is the verdict ``error``). With
    ``smt2_dir``, also write its queries as SMT-LIB 2 with the status Z3 found (smt2.py)."""
    start = time.perf_counter()
    try:
        built = ob.build()
        queries = built if isinstance(built, list) else [built]
        verdict, detail, model, records = "proved", "", {}, []
        for q in queries:
            q_start = time.perf_counter()
            v, d, m = _solve(q, ob.timeout_s, vacuity_timeout_s, model_first=(ob.expected == "refuted") != q.exists)
            records.append({"label": q.label, "verdict": v, "seconds": round(time.perf_counter() - q_start, 4)})
            model = m or model
            if v != "proved":
                verdict, detail = v, (f"{q.label}: " if q.label else "") + d
                break
            detail = d
        result = Result(ob.name, verdict, ob.expected, 0.0, detail, model, queries=records)
        if smt2_dir is not None:
            from .smt2 import export

            export(ob, queries, [r["verdict"] for r in records], Path(smt2_dir))
        if verdict == "refuted" and ob.replay is not None and model:
            result.replay = ob.replay(model)
    except Exception as err:  # an obligation that cannot be built is reported, not fatal to the suite
        result = Result(ob.name, "error", ob.expected, 0.0, f"{type(err).__name__}: {err}")
    result.seconds = round(time.perf_counter() - start, 4)
    return result


def _check(q: Query, timeout_s: float) -> tuple[Any, z3.Solver]:
    if q.attempt_s is None:
        s = q.solver(timeout_s)
        return s.check(), s
    deadline, seed = time.perf_counter() + timeout_s, 0
    try:
        while True:
            left = deadline - time.perf_counter()
            z3.set_param("smt.random_seed", seed)
            z3.set_param("sat.random_seed", seed)
            s = q.solver(min(q.attempt_s * (1 + seed // 4), left))  # longer attempts as the seeds run out
            answer = s.check()
            if answer != z3.unknown or deadline - time.perf_counter() <= 0.5:
                return answer, s
            seed += 1
    finally:
        z3.set_param("smt.random_seed", 0)
        z3.set_param("sat.random_seed", 0)


def _witness(q: Query) -> tuple[str, str, dict[str, Any]] | None:
    """A model of the assumptions and the claim found by concrete evaluation and checked by Z3 (witness.py)."""
    from .witness import search

    found = search([f for _, f in q.assumptions] + [q.claim()])
    if found is None:
        return None
    model = _model_values(found, q.inputs)
    if q.exists:
        return "proved", "witness found by evaluation, checked by z3", model
    return "refuted", "counterexample found by evaluation, checked by z3", model


def _solve(
    q: Query, timeout_s: float, vacuity_timeout_s: float, model_first: bool = False
) -> tuple[str, str, dict[str, Any]]:
    """``model_first``: a model is the expected answer (a mutant's counterexample, an existential's witness), so
    look for one by evaluation first; a search whose time runs out also ends with that look."""
    if model_first and (found := _witness(q)) is not None:
        return found
    answer, s = _check(q, timeout_s)
    if answer == z3.unknown:
        found = None if model_first else _witness(q)
        return found if found is not None else ("unknown", f"z3: {s.reason_unknown()}", {})
    if answer == z3.sat:
        model = _model_values(s.model(), q.inputs)
        return ("proved", "witness found", model) if q.exists else ("refuted", "counterexample found", model)
    if q.exists:
        return "refuted", "no witness exists", {}
    # unsat: the law holds in every model of the assumptions - unless there is no such model. Z3's search for
    # one is heavy-tailed on the whole-model queries (the Gemma variant: 0.5 s or past 30 s by process), so a
    # short search comes first, then a model by evaluation (witness.py), then the rest of the time.
    consistent = _consistent(q, min(QUICK_VACUITY_S, vacuity_timeout_s))
    if consistent == z3.unknown:
        from .witness import search

        found = search([f for _, f in q.assumptions])
        consistent = z3.sat if found is not None else _consistent(q, vacuity_timeout_s - QUICK_VACUITY_S)
    if consistent == z3.unsat:
        return (
            "vacuous",
            "the assumptions are contradictory: " + ", ".join(sorted({label for label, _ in q.assumptions})),
            {},
        )
    return "proved", "" if consistent == z3.sat else "assumptions not shown consistent in time", {}


QUICK_VACUITY_S = 2.0


def _consistent(q: Query, timeout_s: float) -> Any:
    """Z3's answer to whether the assumptions have a model (unknown when ``timeout_s`` runs out first)."""
    if timeout_s <= 0:
        return z3.unknown
    base = z3.Solver()
    base.set("timeout", max(1, int(timeout_s * 1000)))
    for _, f in q.assumptions:
        base.add(f)
    return base.check()


def _model_values(model: z3.ModelRef, inputs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, terms in inputs.items():
        arr = np.asarray(terms, dtype=object) if not z3.is_expr(terms) else None
        if arr is None:
            out[name] = model_value(model, terms)
        else:
            out[name] = np.vectorize(lambda t: model_value(model, t), otypes=[object])(arr).tolist() if arr.size else []
    return out


def run_all(
    obligations: Sequence[Obligation],
    jobs: int = 1,
    smt2_dir: str | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run obligations, each in a fresh worker process (``jobs`` at a time), results in the given order.

    A fresh process per obligation keeps z3's global state (term ids, seeds) from one query, or from the caller,
    from changing the next one's search: measured, the float32 target-below-total proof took 6 s alone and timed
    out at 120 s after the other float queries in the same process. A worker runs the registered obligation of
    that name from a fresh import (the expected verdict is the caller's), so changes the caller made to the spec
    in-process reach only ``jobs=0``, which runs in this process (for debugging and spec-mutation tests)."""
    if jobs <= 0:
        results = []
        for ob in obligations:
            results.append(run(ob, smt2_dir))
            if on_result:
                on_result(results[-1])
        return results
    import functools
    import multiprocessing as mp

    # Workers fork from a fresh server process that imported the topic modules, not from the caller: a caller
    # that has built other z3 terms (a test session) would hand its term ids and search state down, and a proof
    # that takes 1 s alone then ran past its timeout (seen for the vacuity check of model/llama-prefill-eq-decode).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([f"lmstep.proofs.{topic}" for topic in TOPICS])
    names = [ob.name for ob in obligations]
    expected = {ob.name: ob.expected for ob in obligations}  # the caller's, which a worker's fresh registry lacks
    done: dict[str, Result] = {}
    with ctx.Pool(jobs, maxtasksperchild=1) as pool:
        for result in pool.imap_unordered(functools.partial(_run_named, smt2_dir=smt2_dir), names):
            done[result.name] = dataclasses.replace(result, expected=expected[result.name])
            if on_result:
                on_result(result)
    return [done[n] for n in names]


def _run_named(name: str, smt2_dir: str | None = None) -> Result:
    return run(REGISTRY[name] if name in REGISTRY else load_all()[name], smt2_dir)
